"""Tests for jaxsr.optim.spherical: PULSE's spherical optimizer.

Truths: per-row norms computed in numpy from the initial values, the
tangent-plane projection of the gradient (first order), and PULSE's loop
(torch Adam, LambdaLR, SphericalOptimizer) transcribed in float64 numpy from
its source.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxsr.optim import schedules
from jaxsr.optim import spherical


def _latent(seed, rows=4, dim=8, noise=((4, 4), (8, 8))):
  rng = np.random.default_rng(seed)
  scales = rng.uniform(0.5, 3.0, size=(rows, 1))   # rows of different radii
  z = (rng.normal(size=(rows, dim)) * scales).astype(np.float32)
  maps = tuple((rng.normal(size=s) * (i + 1)).astype(np.float32)
               for i, s in enumerate(noise))
  return {'z': z, 'noise': maps}


def _norms(latent):
  """Row norms of 'z' and whole norms of each noise map, in float64."""
  z = np.asarray(latent['z'], np.float64)
  return (np.sqrt((z**2).sum(-1)),
          [np.sqrt((np.asarray(m, np.float64)**2).sum())
           for m in latent['noise']])


def test_rows_and_noise_maps_keep_their_initial_radius_under_adam():
  faces = [_latent(0), _latent(1)]
  batch = jax.tree.map(lambda *x: jnp.stack(x), *faces)
  tx = spherical.spherical(optax.adam(0.3))

  steps = 200
  rng = np.random.default_rng(9)
  # Random gradients drawn up front (each step, each face, each leaf).
  grads = jax.tree.map(
      lambda x: (5.0 * rng.normal(size=(steps,) + x.shape)).astype(np.float32),
      batch)

  @jax.jit
  def run(params, grads):
    def step(carry, g):
      p, s = carry
      u, s = jax.vmap(tx.update)(g, s, p)
      return (optax.apply_updates(p, u), s), None

    (p, _), _ = jax.lax.scan(step, (params, jax.vmap(tx.init)(params)), grads)
    return p

  out = run(batch, grads)
  for f, face in enumerate(faces):
    moved = jax.tree.map(lambda x: np.asarray(x[f]), out)
    rows0, maps0 = _norms(face)
    rows1, maps1 = _norms(moved)
    np.testing.assert_allclose(rows1, rows0, rtol=2e-6)
    np.testing.assert_allclose(maps1, maps0, rtol=2e-6)
    # It did move: 200 Adam steps of lr 0.3 on random gradients.
    assert np.abs(moved['z'] - face['z']).max() > 0.5


def test_zero_gradient_leaves_params_unchanged():
  params = _latent(2)
  tx = spherical.spherical(optax.adam(0.4))   # Adam's step is 0 for g = 0
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = jax.jit(tx.update)(zeros, tx.init(params), params)
  for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
    # Re-projecting a point already on its sphere: at most float rounding.
    np.testing.assert_allclose(u, 0.0, atol=1e-6 * np.abs(p).max())


def test_small_step_follows_the_tangential_part_of_the_inner_direction():
  params = _latent(3)
  grads = _latent(4)
  lr = 1e-3
  tx = spherical.spherical(optax.sgd(lr))
  updates, _ = tx.update(grads, tx.init(params), params)

  def tangential(x, g):   # -g minus its radial part, per sphere (numpy)
    x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
    xh = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return -(g - (g * xh).sum(-1, keepdims=True) * xh)

  def close(u, expect):   # equal up to the O(lr) second-order radial term
    err = np.linalg.norm(np.asarray(u, np.float64) / lr - expect)
    assert err <= 1e-2 * np.linalg.norm(expect), (err, np.linalg.norm(expect))

  expect_z = tangential(params['z'], grads['z'])
  close(updates['z'], expect_z)
  for x, g, u in zip(params['noise'], grads['noise'], updates['noise']):
    close(u, tangential(x.reshape(1, -1), g.reshape(1, -1)).reshape(x.shape))
  # The radial part of -g is large here: a plain step fails the same check.
  with pytest.raises(AssertionError):
    close(-lr * grads['z'], expect_z)


def test_sphere_axes_prefix_callable_and_errors():
  params = _latent(5)
  # The whole of 'z' as one sphere: its total norm kept, not each row's.
  tx = spherical.spherical(optax.sgd(0.5), {'z': (0, 1), 'noise': 'all'})
  g = _latent(6)
  u, _ = tx.update(g, tx.init(params), params)
  new = optax.apply_updates(params, u)
  np.testing.assert_allclose(np.linalg.norm(new['z']),
                             np.linalg.norm(params['z']), rtol=2e-6)
  assert not np.allclose(np.linalg.norm(new['z'], axis=-1),
                         np.linalg.norm(params['z'], axis=-1), rtol=1e-3)
  # A callable: one sphere per column of 'z'.
  by_column = lambda path, leaf: 0 if path[0].key == 'z' else 'all'
  assert spherical.leaf_axes(params, by_column)[-1] == (0,)
  # The default needs no 'noise' key (DCGAN: z of shape (1, 100)).
  assert spherical.leaf_axes({'z': np.ones((1, 100))}) == [(1,)]
  with pytest.raises(ValueError, match='out of range'):
    spherical.leaf_axes(params, 2)
  with pytest.raises(ValueError, match="'all'"):
    spherical.leaf_axes(params, 'rows')
  tx = spherical.spherical(optax.sgd(0.1))
  with pytest.raises(ValueError, match='needs params'):
    tx.update(g, tx.init(params), None)


def test_project_recovers_axes_from_the_radii_shape():
  x = {'z': np.array([[3.0, 4.0], [0.0, 2.0]], np.float32),
       'noise': (np.full((2, 2), 1.0, np.float32),)}
  r = {'z': np.array([[1.0], [10.0]], np.float32),
       'noise': (np.array([[4.0]], np.float32),)}
  out = spherical.project(x, r)
  np.testing.assert_allclose(out['z'], [[0.6, 0.8], [0.0, 10.0]], rtol=1e-6)
  np.testing.assert_allclose(out['noise'][0], np.full((2, 2), 2.0), rtol=1e-6)


def _pulse_adam_sphere(init, target, lr, steps):
  """PULSE's loop in float64 numpy: torch Adam steps, LambdaLR(f) (step i at
  lr f(i)), then SphericalOptimizer's x / sqrt(Σ x² + 1e-9) · r, with the sum
  over every axis after (batch, row): the row of 'z', the whole noise map.
  Loss Σ (x - target)²."""
  def f(x):   # PULSE.py's 'linear1cycledrop'
    if x < 0.9 * steps:
      return (9 * (1 - np.abs(x / (0.9 * steps) - 1 / 2) * 2) + 1) / 10
    return 1 / 10 + (x - 0.9 * steps) / (0.1 * steps) * (1 / 1000 - 1 / 10)

  # (B=1, rows, dim) and (B=1, 1, H, W), as PULSE holds them.
  xs = [np.asarray(init['z'], np.float64)[None]] + [
      np.asarray(m, np.float64)[None, None] for m in init['noise']]
  ts = [np.asarray(target['z'], np.float64)[None]] + [
      np.asarray(m, np.float64)[None, None] for m in target['noise']]
  norm = lambda p: np.sqrt((p**2).sum(tuple(range(2, p.ndim)), keepdims=True)
                           + 1e-9)
  radii = [norm(x) for x in xs]
  m = [np.zeros_like(x) for x in xs]
  v = [np.zeros_like(x) for x in xs]
  b1, b2, eps = 0.9, 0.999, 1e-8
  for i in range(steps):
    for k, (x, t) in enumerate(zip(xs, ts)):
      g = 2 * (x - t)
      m[k] = b1 * m[k] + (1 - b1) * g
      v[k] = b2 * v[k] + (1 - b2) * g * g
      step = lr * f(i) / (1 - b1**(i + 1))
      denom = np.sqrt(v[k]) / np.sqrt(1 - b2**(i + 1)) + eps
      x = x - step * m[k] / denom
      xs[k] = x / norm(x) * radii[k]
  return xs[0][0], [x[0, 0] for x in xs[1:]]


def test_matches_pulse_loop_with_adam_and_linear1cycledrop():
  steps, lr = 20, 0.4
  init, target = _latent(7), _latent(8)
  z, maps = _pulse_adam_sphere(init, target, lr, steps)

  tx = spherical.spherical(optax.adam(schedules.linear1cycledrop(lr, steps)))
  loss = lambda p: sum(jnp.sum((a - b)**2) for a, b in zip(
      jax.tree.leaves(p), jax.tree.leaves(target)))

  def step(carry, _):
    params, state = carry
    u, state = tx.update(jax.grad(loss)(params), state, params)
    return (optax.apply_updates(params, u), state), None

  params = jax.tree.map(jnp.asarray, init)
  (params, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, length=steps))(
      (params, tx.init(params)))
  np.testing.assert_allclose(params['z'], z, rtol=1e-4, atol=1e-5)
  for got, want in zip(params['noise'], maps):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  # The search moved well away from the start (a real trajectory).
  assert np.abs(z - init['z']).max() > 0.3
