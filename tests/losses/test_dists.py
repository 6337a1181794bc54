"""Tests for jaxsr.losses.dists against a numpy DISTS_pt transcription."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.losses import dists
from jaxsr.models import dists_vgg
from tests.models import test_dists_vgg
from tests.models import test_vgg

_CHANNELS = (3, 64, 128, 256, 512, 512)


def numpy_dists(feats_x, feats_y, alpha, beta):
  """DISTS_pt.forward in numpy float64, on {stage: NHWC} features -> (N,)."""
  alpha = np.asarray(alpha, np.float64).reshape(-1)
  beta = np.asarray(beta, np.float64).reshape(-1)
  w_sum = alpha.sum() + beta.sum()
  bounds = np.cumsum((0,) + _CHANNELS)
  c1 = c2 = 1e-6
  dist1 = dist2 = 0.0
  for k, stage in enumerate(dists_vgg.STAGES):
    a = alpha[bounds[k] : bounds[k + 1]] / w_sum
    b = beta[bounds[k] : bounds[k + 1]] / w_sum
    fx = np.asarray(feats_x[stage], np.float64)
    fy = np.asarray(feats_y[stage], np.float64)
    x_mean, y_mean = fx.mean((1, 2)), fy.mean((1, 2))
    s1 = (2 * x_mean * y_mean + c1) / (x_mean**2 + y_mean**2 + c1)
    dist1 = dist1 + (a * s1).sum(1)
    x_var = ((fx - x_mean[:, None, None]) ** 2).mean((1, 2))
    y_var = ((fy - y_mean[:, None, None]) ** 2).mean((1, 2))
    # The official form of the covariance: E[xy] - E[x] E[y].
    xy_cov = (fx * fy).mean((1, 2)) - x_mean * y_mean
    s2 = (2 * xy_cov + c2) / (x_var + y_var + c2)
    dist2 = dist2 + (b * s2).sum(1)
  return 1 - (dist1 + dist2)


def numpy_dists_images(weights, alpha, beta, x, y):
  """Whole numpy DISTS of NHWC images with {conv: (OIHW, bias)} weights."""
  return numpy_dists(test_dists_vgg.numpy_dists_features(weights, x),
                     test_dists_vgg.numpy_dists_features(weights, y),
                     alpha, beta)


@functools.lru_cache(maxsize=None)
def synthetic_alpha_beta(seed=0):
  """Positive alpha, beta (1475,) float32 of unequal sizes, not summing to 1."""
  rng = np.random.default_rng(seed)
  alpha = rng.uniform(0, 0.02, 1475).astype(np.float32)
  beta = rng.uniform(0, 0.005, 1475).astype(np.float32)
  return alpha, beta


# One shape and few compiled functions: compiling VGG16 on CPU
# dominates these tests' time. Odd sides: 17 -> 9 -> 5 -> 3 -> 2 and
# 14 -> 7 -> 4 -> 2 -> 1 exercise the pooling's padding.
SHAPE = (2, 17, 14, 3)
dists_jit = jax.jit(dists.dists)


@pytest.fixture(scope='module')
def params():
  alpha, beta = synthetic_alpha_beta()
  vgg = test_vgg.to_flax(test_dists_vgg.random_vgg16())
  return dists.make_params(vgg, alpha, beta)


def _images(seed, noise=0.1):
  rng = np.random.default_rng(seed)
  x = rng.uniform(size=SHAPE).astype(np.float32)
  y = np.clip(x + noise * rng.normal(size=SHAPE), 0, 1).astype(np.float32)
  return x, y


def test_matches_numpy_transcription(params):
  x, y = _images(0, noise=0.3)
  got = dists_jit(x, y, params)
  chex.assert_shape(got, (2,))
  chex.assert_type(got, jnp.float32)
  ref = numpy_dists_images(test_dists_vgg.random_vgg16(),
                           *synthetic_alpha_beta(), x, y)
  assert np.all(ref > 0.01), ref
  np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)


def test_identity_symmetry_and_range(params):
  x, y = _images(1, noise=0.05)
  far = np.random.default_rng(2).uniform(size=SHAPE).astype(np.float32)
  np.testing.assert_allclose(dists_jit(x, x, params), 0.0, atol=1e-6)
  d_xy, d_yx = dists_jit(x, y, params), dists_jit(y, x, params)
  np.testing.assert_allclose(d_xy, d_yx, atol=1e-6)
  d_far = dists_jit(x, far, params)
  assert np.all((d_xy > 0) & (d_xy < d_far) & (d_far <= 1)), (d_xy, d_far)


def test_closed_form_with_input_stage_only(params):
  # Only stage 0 (the raw RGB input) weighted: no VGG feature counts.
  alpha = np.zeros(1475, np.float32)
  beta = np.zeros(1475, np.float32)
  alpha[:3] = (1.0, 2.0, 1.0)
  only_alpha = dists.make_params(params['vgg'], alpha, beta)
  x = np.broadcast_to(np.float32([0.2, 0.4, 0.6]), SHAPE)
  y = np.broadcast_to(np.float32([0.6, 0.4, 0.3]), SHAPE)
  # S1 = 2 mu_x mu_y / (mu_x^2 + mu_y^2): 0.24 / 0.4, 1, 0.36 / 0.45.
  expected = 1 - (1 * 0.6 + 2 * 1.0 + 1 * 0.8) / 4
  np.testing.assert_allclose(dists_jit(x, y, only_alpha), [expected] * 2,
                             atol=1e-5)
  # Structure only: y = 1 - x has cov = -var, so S2 = -1 and DISTS = 2
  # (beyond [0, 1]: the bound is rough, for anti-correlated images).
  only_beta = dists.make_params(params['vgg'], beta, alpha)
  x = np.random.default_rng(3).uniform(size=SHAPE).astype(np.float32)
  np.testing.assert_allclose(dists_jit(x, 1 - x, only_beta), [2.0] * 2,
                             atol=1e-4)


def test_weights_are_normalized_by_their_joint_sum(params):
  x, y = _images(4)
  scaled = dict(params, alpha=7 * params['alpha'], beta=7 * params['beta'])
  base = dists_jit(x, y, params)
  # 1 - similarity: absolute float32 rounding of a sum near 1.
  np.testing.assert_allclose(dists_jit(x, y, scaled), base, atol=1e-6)
  # Weighting beta more changes the score: the two parts are not tied.
  tilted = dict(params, beta=7 * params['beta'])
  assert np.all(np.abs(dists_jit(x, y, tilted) - base) > 1e-3)


@functools.partial(jax.jit, static_argnames='h')
def _loss_grads_and_difference(x, y, v, params, h):
  """Loss, its gradients in sr and hr, and a central difference along v."""
  loss, grads = jax.value_and_grad(dists.dists_loss, argnums=(0, 1))(
      x, y, params, x.dtype)
  plus = dists.dists(x + h * v, y, params, x.dtype)
  minus = dists.dists(x - h * v, y, params, x.dtype)
  return loss, grads, jnp.mean(plus - minus) / (2 * h)


def test_loss_gradient_matches_finite_difference(params):
  # float64 throughout: the random VGG's ReLU kinks make float32 central
  # differences too coarse (a few % off at any usable step).
  x, y = _images(5, noise=0.2)
  v = np.random.default_rng(6).normal(size=SHAPE)
  with jax.enable_x64(True):
    params64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    x64, y64 = jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64)
    loss, (g_sr, g_hr), fd = _loss_grads_and_difference(
        x64, y64, jnp.asarray(v), params64, h=1e-5)
    directional = float(jnp.sum(g_sr * v))
  chex.assert_tree_all_finite(g_sr)
  # hr is a target: no gradient flows into it.
  np.testing.assert_array_equal(g_hr, 0.0)
  assert abs(directional) > 1e-3, directional
  np.testing.assert_allclose(directional, float(fd), rtol=1e-5)
  # The float64 loss agrees with the float32 one.
  np.testing.assert_allclose(loss, np.mean(dists_jit(x, y, params)),
                             atol=1e-6)


def test_gradient_at_the_minimum_is_finite_and_small(params):
  x, _ = _images(7)
  v = np.random.default_rng(8).normal(size=SHAPE)
  with jax.enable_x64(True):
    params64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    x64 = jnp.asarray(x, jnp.float64)
    loss, (g_sr, _), fd = _loss_grads_and_difference(
        x64, x64, jnp.asarray(v), params64, h=1e-5)
  np.testing.assert_allclose(loss, 0.0, atol=1e-12)
  chex.assert_tree_all_finite(g_sr)
  # D(x, x) = 0 is the minimum: zero slope, up to rounding.
  assert np.abs(np.asarray(g_sr)).max() < 1e-8
  assert abs(float(fd)) < 1e-6


def test_bad_inputs_and_params_name_what_was_expected(params):
  x = jnp.zeros((1, 8, 8, 3))
  with pytest.raises(ValueError, match='one shape'):
    dists.dists(x, jnp.zeros((1, 8, 9, 3)), params)
  with pytest.raises(ValueError, match=r'\(N, H, W, 3\)'):
    dists.dists(x[..., :1], x[..., :1], params)
  with pytest.raises(ValueError, match='missing'):
    dists.dists(x, x, {'vgg': params['vgg']})
  with pytest.raises(ValueError, match=r'\(1475,\).*\(1474,\)'):
    dists.make_params(params['vgg'], np.ones(1474), np.ones(1475))
  with pytest.raises(ValueError, match='non-zero'):
    dists.make_params(params['vgg'], np.zeros(1475), np.zeros(1475))
  partial = {k: v for k, v in params['vgg'].items() if k != 'conv5_3'}
  with pytest.raises(ValueError, match='conv5_3'):
    dists.make_params(partial, params['alpha'], params['beta'])
  # The official (1, 1475, 1, 1) layout is accepted as stored.
  made = dists.make_params(params['vgg'], params['alpha'][None, :, None, None],
                           params['beta'])
  chex.assert_shape(made['alpha'], (1475,))


def test_init_params_follows_official_init():
  made = dists.init_params(jax.random.key(0, impl='rbg'))
  chex.assert_trees_all_equal_shapes(
      made['vgg'], test_vgg.to_flax(test_dists_vgg.random_vgg16()))
  for name in ('alpha', 'beta'):
    chex.assert_shape(made[name], (1475,))
    assert abs(made[name].mean() - 0.1) < 2e-3
    assert abs(made[name].std() - 0.01) < 2e-3
