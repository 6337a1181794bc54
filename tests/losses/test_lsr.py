"""Tests for jaxsr.losses.lsr: values, the paper's sign of mu, and eq. 9."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.losses import lsr

_key = functools.partial(jax.random.key, impl='rbg')


def _batch():
  ks = jax.random.split(_key(0), 4)
  sr = jax.random.uniform(ks[0], (2, 8, 8, 3))
  hr = jax.random.uniform(ks[1], (2, 8, 8, 3))
  l_sr = jax.random.uniform(ks[2], (2, 2, 2, 3))
  l_hr = jax.random.uniform(ks[3], (2, 2, 2, 3))
  return sr, hr, l_sr, l_hr


def test_terms_by_hand():
  sr, hr, l_sr, l_hr = _batch()
  terms = lsr.lsr_generator_terms(sr, hr, l_sr, l_hr, eta=1e-2, mu=1e-3)
  pixel = np.mean(np.abs(np.asarray(hr) - np.asarray(sr)))
  latent = np.mean(np.abs(np.asarray(l_hr) - np.asarray(l_sr)))
  assert terms['pixel'] == pytest.approx(pixel, rel=1e-6)
  assert terms['latent'] == pytest.approx(latent, rel=1e-6)
  # Eq. 8 / 10: + eta * pixel - mu * latent.
  assert terms['total'] == pytest.approx(1e-2 * pixel - 1e-3 * latent, rel=1e-5)
  plus = lsr.lsr_generator_terms(
      sr, hr, l_sr, l_hr, eta=1e-2, mu=1e-3, mu_sign=1.0
  )
  assert plus['total'] == pytest.approx(1e-2 * pixel + 1e-3 * latent, rel=1e-5)
  assert lsr.encoder_loss(l_sr, l_hr) == pytest.approx(latent, rel=1e-6)


def test_total_decreases_as_the_latents_move_apart():
  """d total / d latent = -mu: the paper's sign rewards a larger distance."""
  sr, hr, l_sr, l_hr = _batch()
  mu = 1e-3
  direction = jnp.sign(l_sr - l_hr)  # moving along it grows the distance

  def total_along(t, sr=sr, hr=hr, l_sr=l_sr, l_hr=l_hr, direction=direction):
    return lsr.lsr_generator_terms(
        sr, hr, l_sr + t * direction, l_hr, eta=1e-2, mu=mu
    )['total']

  def latent_along(t):
    return lsr.encoder_loss(l_sr + t * direction, l_hr)

  # latent(t) = latent(0) + t (no sign crossings for t >= 0), so the
  # derivative of total w.r.t. latent is d total / dt.
  assert jax.grad(latent_along)(0.0) == pytest.approx(1.0, rel=1e-6)
  assert jax.grad(total_along)(0.0) == pytest.approx(-mu, rel=1e-4)
  with jax.enable_x64(True):
    arrays64 = [
        jnp.asarray(np.asarray(a), jnp.float64)
        for a in (sr, hr, l_sr, l_hr, direction)
    ]
    h = 1e-3
    fd = (total_along(h, *arrays64) - total_along(-h, *arrays64)) / (2 * h)
  assert float(fd) == pytest.approx(-mu, rel=1e-9)
  # One gradient step of G's objective on L(G(z)) pushes it away from L(y).
  grad = jax.grad(
      lambda l: lsr.lsr_generator_terms(sr, hr, l, l_hr, eta=0.0, mu=mu)[
          'total'
      ]
  )(l_sr)
  np.testing.assert_allclose(grad, -mu * direction / l_sr.size, rtol=1e-6)
  moved = lsr.encoder_loss(l_sr - 10.0 * grad, l_hr)
  assert moved > lsr.encoder_loss(l_sr, l_hr)


def test_gradient_wrt_sr_by_finite_differences():
  sr, hr, l_sr, l_hr = _batch()

  def total(sr):
    # A fixed linear "encoder": 4x4 average pooling, applied to sr and hr.
    def enc(img):
      return img.reshape(2, 2, 4, 2, 4, 3).mean((2, 4))

    return lsr.lsr_generator_terms(
        sr, hr, enc(sr), enc(hr), eta=1e-2, mu=1e-3
    )['total']

  grad = jax.grad(total)(sr)
  v = jax.random.normal(_key(5), sr.shape)
  with jax.enable_x64(True):
    sr64 = jnp.asarray(np.asarray(sr), jnp.float64)
    hr = jnp.asarray(np.asarray(hr), jnp.float64)
    v64 = jnp.asarray(np.asarray(v), jnp.float64)
    h = 1e-6
    fd = (total(sr64 + h * v64) - total(sr64 - h * v64)) / (2 * h)
  assert float(jnp.vdot(grad, v)) == pytest.approx(float(fd), rel=1e-4)


def test_encoder_gradient_descent_decreases_eq9():
  """An L update by plain gradient descent on eq. 9 lowers it."""
  sr, hr, _, _ = _batch()
  sr = jax.lax.stop_gradient(sr)  # the L step sees G(z) as data
  w = jax.random.normal(_key(7), (3, 3)) * 0.5

  def loss(w):
    def enc(img):  # a 1x1-conv encoder: (N, H, W, 3) @ (3, 3)
      return img @ w

    return lsr.encoder_loss(enc(sr), enc(hr))

  before = loss(w)
  for _ in range(3):
    w = w - 0.5 * jax.grad(loss)(w)
  assert loss(w) < before


def test_shape_mismatch_is_an_error():
  sr, hr, l_sr, _ = _batch()
  with pytest.raises(ValueError, match='equal shapes'):
    lsr.lsr_generator_terms(sr, hr, l_sr, sr, eta=1.0, mu=1.0)
