"""Tests for jaxsr.losses.latent: PULSE's geodesic cross loss.

Truths: hand values (orthogonal, equal, opposite rows), the angle arccos of
the cosine for rows of equal norm, a float64 double loop over the pairs
written from PULSE's loss.py, central finite differences of that loop, and
(with torch installed) PULSE's `_loss_geocross` run as written.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.losses import latent

# Jitted once per shape (op-by-op dispatch is slower on a busy CPU).
_pairwise = jax.jit(latent.pairwise_geodesic)
_raw = jax.jit(latent.geocross_raw)
_pulse = jax.jit(latent.geocross_pulse)

def _brute(rows, eps=0.0):
  """mean over all n x n ordered pairs of d², d from PULSE's formula."""
  rows = np.asarray(rows, np.float64)
  n = len(rows)
  total = 0.0
  for i in range(n):
    for j in range(n):
      a = math.sqrt(((rows[i] - rows[j])**2).sum() + eps)
      b = math.sqrt(((rows[i] + rows[j])**2).sum() + eps)
      total += (2 * math.atan2(a, b))**2
  return total / n**2


def test_hand_values():
  e = np.eye(3, dtype=np.float32)
  d = _pairwise(np.stack([e[0], e[1], -e[0], e[0]]))
  np.testing.assert_allclose(d[0, 1], math.pi / 2, rtol=1e-6)   # orthogonal
  np.testing.assert_allclose(d[0, 2], math.pi, rtol=1e-6)       # opposite
  assert float(d[0, 3]) == 0.0                                   # equal
  np.testing.assert_allclose(np.diag(d), 0.0, atol=0)
  # Two orthogonal rows: d² is 0, π²/4, π²/4, 0 over the 4 ordered pairs.
  two = e[:2] * 7.0
  np.testing.assert_allclose(_raw(two), math.pi**2 / 8,
                             rtol=1e-6)
  # PULSE: mean(d² · 512) / 8.
  np.testing.assert_allclose(_pulse(two),
                             512 / 8 * math.pi**2 / 8, rtol=1e-6)


def test_equal_norm_rows_give_the_angle_and_scale_invariance():
  rng = np.random.default_rng(0)
  rows = rng.normal(size=(6, 16))
  rows = (rows / np.linalg.norm(rows, axis=1, keepdims=True) * 3.0)
  cos = np.clip(rows @ rows.T / 9.0, -1, 1)
  angle = np.arccos(cos)
  np.fill_diagonal(angle, 0.0)
  rows = rows.astype(np.float32)
  np.testing.assert_allclose(_pairwise(rows), angle,
                             atol=2e-3)
  for c in (1e-3, 50.0):
    np.testing.assert_allclose(_raw(rows * c),
                               _raw(rows), rtol=1e-5)


@pytest.mark.parametrize('shape', [(18, 32), (5, 7), (2, 3)])
def test_against_a_double_loop(shape):
  rng = np.random.default_rng(sum(shape))
  rows = (rng.normal(size=shape) * rng.uniform(0.5, 2, (shape[0], 1))
          + 0.3).astype(np.float32)
  np.testing.assert_allclose(_raw(rows), _brute(rows),
                             rtol=1e-5)
  np.testing.assert_allclose(_pulse(rows),
                             _brute(rows, 1e-9) * 512 / 8, rtol=1e-5)


def test_single_row_is_zero():
  one = np.ones((1, 100), np.float32)
  assert float(_raw(one)) == 0.0
  assert float(_pulse(one)) == 0.0
  with pytest.raises(ValueError, match=r'\(rows, dim\)'):
    _raw(np.ones((2, 3, 4)))


def test_gradients_finite_and_zero_at_equal_rows():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(5,)).astype(np.float32)
  for fn in (latent.geocross_raw, latent.geocross_pulse):
    grad = jax.jit(jax.grad(fn))
    g = grad(jnp.stack([x] * 5))   # every pair equal: the minimum
    np.testing.assert_allclose(g, 0.0, atol=1e-5)
    g = grad(jnp.stack([x, x, -x, 0 * x, rng.normal(size=5)]))
    assert np.isfinite(np.asarray(g)).all(), fn.__name__


def test_gradient_against_finite_differences():
  rng = np.random.default_rng(2)
  rows = rng.normal(size=(4, 6))
  g = np.asarray(jax.jit(jax.grad(latent.geocross_raw))(
      rows.astype(np.float32)))
  h = 1e-6
  fd = np.zeros_like(rows)
  for idx in np.ndindex(rows.shape):
    up, dn = rows.copy(), rows.copy()
    up[idx] += h
    dn[idx] -= h
    fd[idx] = (_brute(up) - _brute(dn)) / (2 * h)
  np.testing.assert_allclose(g, fd, rtol=1e-3, atol=1e-5)


def test_matches_pulse_loss_py_in_torch():
  torch = pytest.importorskip('torch')
  rows = np.random.default_rng(3).normal(size=(18, 512)).astype(np.float32)
  latent_t = torch.tensor(rows[None])
  # loss.py, LossBuilder._loss_geocross, as written.
  X = latent_t.view(-1, 1, 18, 512)
  Y = latent_t.view(-1, 18, 1, 512)
  A = ((X - Y).pow(2).sum(-1) + 1e-9).sqrt()
  B = ((X + Y).pow(2).sum(-1) + 1e-9).sqrt()
  D = 2 * torch.atan2(A, B)
  D = ((D.pow(2) * 512).mean((1, 2)) / 8.).sum()
  np.testing.assert_allclose(_pulse(rows), D.item(), rtol=1e-5)
