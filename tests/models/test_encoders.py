"""Tests for jaxsr.models.encoders: LSREncoder shapes, names, validation and a numpy forward."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.models import encoders
from tests.models import numpy_nets

# XLA's RngBitGenerator compiles several times faster on CPU than threefry,
# which dominated these tests; initializer statistics do not depend on it.
_key = functools.partial(jax.random.key, impl='rbg')


@pytest.mark.parametrize(
    'scale, cut, extra',
    [
        (4, 'conv4_3', {'conv_up1'}),  # /8, one x2 stage
        (2, 'conv4_3', {'conv_up1', 'conv_up2'}),  # /8, two x2 stages
        (4, 'conv3_3', {'conv_mid'}),  # /4 == scale, no upsampling
        (2, 'conv3_3', {'conv_up1'}),  # /4, one x2 stage
    ],
)
def test_output_shape_and_param_names(scale, cut, extra):
  model = encoders.LSREncoder(scale=scale, cut=cut, num_upsample_feat=8)
  hr = jax.random.uniform(_key(1), (2, 16, 16, 3))
  variables = model.init(_key(0), hr)
  out = model.apply(variables, hr)
  chex.assert_shape(out, (2, 16 // scale, 16 // scale, 3))
  chex.assert_type(out, jnp.float32)
  chex.assert_tree_all_finite(out)

  params = variables['params']
  trunk = encoders.VGG16_CONVS[: encoders.VGG16_CONVS.index(cut) + 1]
  assert set(params) == set(trunk) | extra | {'conv_last'}
  chex.assert_shape(params['conv1_1']['kernel'], (3, 3, 3, 64))
  chex.assert_shape(params['conv2_1']['kernel'], (3, 3, 64, 128))
  width = {'conv3_3': 256, 'conv4_3': 512}[cut]
  chex.assert_shape(params[cut]['kernel'], (3, 3, width, width))
  chex.assert_shape(params['conv_last']['kernel'], (3, 3, 8, 3))


def test_default_is_conv4_3_and_names_cover_conv1_1_to_conv4_3():
  model = encoders.LSREncoder()
  shapes = jax.eval_shape(
      model.init, _key(0), jnp.zeros((1, 32, 32, 3))
  )
  params = shapes['params']
  for name in ('conv1_1', 'conv1_2', 'conv2_1', 'conv2_2', 'conv3_1',
               'conv3_2', 'conv3_3', 'conv4_1', 'conv4_2', 'conv4_3'):
    assert name in params
  assert 'conv5_1' not in params
  chex.assert_shape(params['conv4_3']['kernel'], (3, 3, 512, 512))
  chex.assert_shape(params['conv_up1']['kernel'], (3, 3, 512, 64))
  out = jax.eval_shape(
      model.apply, shapes, jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  )
  chex.assert_shape(out, (1, 8, 8, 3))


@pytest.mark.parametrize('cut', ['pool3', 'conv4_4', 'fc6'])
def test_bad_cut_raises_and_lists_valid_names(cut):
  model = encoders.LSREncoder(cut=cut)
  with pytest.raises(ValueError, match='conv4_3'):
    model.init(_key(0), jnp.zeros((1, 16, 16, 3)))


@pytest.mark.parametrize(
    'scale, cut',
    [(3, 'conv4_3'), (8, 'conv3_3'), (2, 'conv1_2'), (0, 'conv4_3')],
)
def test_impossible_scale_raises(scale, cut):
  model = encoders.LSREncoder(scale=scale, cut=cut)
  with pytest.raises(ValueError, match='power of two'):
    model.init(_key(0), jnp.zeros((1, 16, 16, 3)))


def test_size_not_a_multiple_of_the_trunk_stride_raises():
  model = encoders.LSREncoder(scale=4, cut='conv4_3')
  with pytest.raises(ValueError, match='multiples of 8'):
    model.init(_key(0), jnp.zeros((1, 12, 16, 3)))


def test_imagenet_normalization_before_conv1_1():
  model = encoders.LSREncoder(scale=1, cut='conv1_1', num_upsample_feat=4)
  hr = jax.random.uniform(_key(1), (1, 6, 6, 3))
  variables = model.init(_key(0), hr)
  _, state = model.apply(
      variables, hr, capture_intermediates=True, mutable=['intermediates']
  )
  conv1_1 = state['intermediates']['conv1_1']['__call__'][0]
  p = variables['params']['conv1_1']
  mean = np.array([0.485, 0.456, 0.406])
  std = np.array([0.229, 0.224, 0.225])
  x = (np.asarray(hr, np.float64) - mean) / std
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  w = np.asarray(p['kernel'], np.float64)
  ref = np.zeros((1, 6, 6, 64)) + np.asarray(p['bias'])
  for dy in range(3):
    for dx in range(3):
      ref += xp[:, dy:dy + 6, dx:dx + 6, :] @ w[dy, dx]
  np.testing.assert_allclose(conv1_1, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('scale, cut', [(4, 'conv4_3'), (4, 'conv3_3'),
                                        (2, 'conv2_2')])
def test_forward_matches_an_independent_numpy_forward(scale, cut):
  """The whole encoder (trunk with pools, upsampling or conv_mid, conv_last)
  against tests/models/numpy_nets.lsr_encoder in float64."""
  model = encoders.LSREncoder(scale=scale, cut=cut, num_upsample_feat=4,
                              width_divisor=16)
  hr = np.random.default_rng(5).random((2, 16, 16, 3)).astype(np.float32)
  params = numpy_nets.random_params(
      jax.eval_shape(model.init, _key(0), hr)['params'], seed=6)
  got = np.asarray(jax.jit(model.apply)({'params': params}, jnp.asarray(hr)))
  stages = encoders.num_upsample_stages(scale, cut)
  assert stages == {'conv4_3': 1, 'conv3_3': 0, 'conv2_2': 0}[cut]
  want = numpy_nets.lsr_encoder(params, hr, cut, stages)
  np.testing.assert_allclose(got, want, rtol=0,
                             atol=1e-5 * np.abs(want).max())
