"""Tests for jaxsr.losses.lsr: values, the paper's sign of mu, and eq. 9 (and the library's L step on it)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxsr.losses import lsr
from jaxsr.methods import lsrgan
from jaxsr.models import encoders
from tests.models import numpy_nets

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


def test_library_encoder_update_is_a_gradient_step_on_eq9():
  """methods.lsrgan.encoder_update (the L step of every LSRGAN step) on a
  small LSREncoder: its loss is eq. 9 of a float64 numpy forward of L, and,
  with plain SGD as the transform, it moves L's parameters by -lr times the
  finite-difference gradient of that numpy eq. 9."""
  l = encoders.LSREncoder(scale=2, cut='conv2_1', num_upsample_feat=2,
                          width_divisor=16)
  rng = np.random.default_rng(0)
  sr, hr = (rng.random((2, 8, 8, 3)).astype(np.float32) for _ in range(2))
  params = numpy_nets.random_params(
      jax.eval_shape(l.init, _key(0), hr)['params'], seed=1)
  stages = encoders.num_upsample_stages(2, 'conv2_1')

  def eq9(p):  # mean|L(y) - L(G(z))| in float64 numpy.
    return np.mean(np.abs(numpy_nets.lsr_encoder(p, hr, 'conv2_1', stages)
                          - numpy_nets.lsr_encoder(p, sr, 'conv2_1', stages)))

  lr = 0.1
  tx = optax.sgd(lr)
  update = jax.jit(functools.partial(lsrgan.encoder_update, l, tx))
  new, _, loss = update(params, tx.init(params), jnp.asarray(sr),
                        jnp.asarray(hr))
  assert float(loss) == pytest.approx(eq9(params), rel=1e-5)
  leaves, treedef = jax.tree.flatten(params)
  flat = np.concatenate([x.ravel() for x in leaves]).astype(np.float64)

  def eq9_flat(v):
    parts, i = [], 0
    for x in leaves:
      parts.append(v[i:i + x.size].reshape(x.shape))
      i += x.size
    return eq9(jax.tree.unflatten(treedef, parts))

  step = np.concatenate([np.ravel(b - a) for a, b in zip(
      leaves, jax.tree.leaves(new))])
  # Directional derivatives along random directions (central differences;
  # one wrong gradient entry changes every projection).
  h = 1e-6
  for v in rng.normal(size=(6, flat.size)):
    fd = (eq9_flat(flat + h * v) - eq9_flat(flat - h * v)) / (2 * h)
    assert step @ v == pytest.approx(-lr * fd, rel=1e-3)
  assert np.mean(step != 0) > 0.9  # Every layer of L moves.


def test_shape_mismatch_is_an_error():
  sr, hr, l_sr, _ = _batch()
  with pytest.raises(ValueError, match='equal shapes'):
    lsr.lsr_generator_terms(sr, hr, l_sr, sr, eta=1.0, mu=1.0)
