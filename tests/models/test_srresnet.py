"""Tests for jaxsr.models.srresnet: counts, torch bilinear, pixel shuffle, a numpy forward."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.models import srresnet
from tests.models import numpy_nets

_key = functools.partial(jax.random.key, impl='rbg')


def _conv_count(k, cin, cout, bias=True):
  return k * k * cin * cout + (cout if bias else 0)


def _count(tree):
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _shapes(model, hw=8):
  x = jnp.zeros((1, hw, hw, model.num_in_ch))
  return jax.eval_shape(model.init, _key(0), x)['params']


def test_default_parameter_count_is_the_official_g_srgan():
  # Layer list of g_srgan: image_to_features 5x5 3->64 (bias); 16 ResBlocks
  # of two bias-free 3x3 64->64; 2 UpsampleX2 3x3 64->256 (bias); hrconv
  # 3x3 64->64 (bias); features_to_image 5x5 64->3 (bias).
  by_hand = (_conv_count(5, 3, 64) + 16 * 2 * _conv_count(3, 64, 64, False)
             + 2 * _conv_count(3, 64, 256) + _conv_count(3, 64, 64)
             + _conv_count(5, 64, 3))
  # 4864 + 1179648 + 295424 + 36928 + 4803: the paper's "1.5M".
  assert by_hand == 1_521_667
  assert _count(_shapes(srresnet.SRResNet())) == by_hand


def test_param_names_and_shapes():
  params = _shapes(srresnet.SRResNet(num_feat=16, num_block=2))
  shapes = jax.tree.map(lambda x: x.shape, params)
  assert shapes['conv_first'] == {'kernel': (5, 5, 3, 16), 'bias': (16,)}
  assert shapes['body_1'] == {'conv1': {'kernel': (3, 3, 16, 16)},
                              'conv2': {'kernel': (3, 3, 16, 16)}}
  assert shapes['up_0']['kernel'] == (3, 3, 16, 64)
  assert shapes['conv_last']['kernel'] == (5, 5, 16, 3)
  assert sorted(shapes) == ['body_0', 'body_1', 'conv_first', 'conv_hr',
                            'conv_last', 'up_0', 'up_1']


@pytest.mark.parametrize('scale', [2, 4, 8])
def test_output_shape(scale):
  model = srresnet.SRResNet(scale=scale, num_feat=8, num_block=1)
  lr = jnp.zeros((2, 5, 7, 3))
  out = jax.eval_shape(lambda: model.init_with_output(_key(0), lr)[0])
  assert out.shape == (2, 5 * scale, 7 * scale, 3)
  assert out.dtype == jnp.float32


def test_bad_scale_and_input_are_errors():
  with pytest.raises(ValueError, match='scale'):
    srresnet.SRResNet(scale=3).init(_key(0), jnp.zeros((1, 4, 4, 3)))
  with pytest.raises(ValueError, match='expects'):
    srresnet.SRResNet().init(_key(0), jnp.zeros((1, 4, 4, 1)))


@pytest.mark.parametrize('shape,scale', [((2, 5, 7, 3), 4), ((1, 3, 2, 2), 2),
                                         ((1, 1, 4, 1), 4)])
def test_bilinear_matches_torch_align_corners_false(shape, scale):
  x = np.random.default_rng(0).random(shape).astype(np.float32)
  got = srresnet.bilinear_upsample(jnp.asarray(x), scale)
  want = numpy_nets.torch_bilinear(x.astype(np.float64), scale)
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_bilinear_known_values():
  # 1-D [0, 1] at x4: sources (i + .5) / 4 - .5 = -.375 (-> 0), -.125 (-> 0),
  # .125, .375, .625, .875, 1.125, 1.375 (last taps clamp at index 1).
  x = jnp.asarray([0.0, 1.0]).reshape(1, 1, 2, 1)
  got = srresnet.bilinear_upsample(x, 4)[0, 0, :, 0]
  np.testing.assert_allclose(
      got, [0, 0, .125, .375, .625, .875, 1, 1], atol=1e-7)


def test_pixel_shuffle_is_pytorchs_channel_order():
  r, c, h, w = 2, 3, 2, 3
  x = np.random.default_rng(1).random((1, h, w, c * r * r)).astype(np.float32)
  got = np.asarray(srresnet.pixel_shuffle(jnp.asarray(x), r))
  # nn.PixelShuffle: out[c, h*r + i, w*r + j] = in[c*r*r + i*r + j, h, w].
  for ch in range(c):
    for i in range(r):
      for j in range(r):
        np.testing.assert_array_equal(
            got[0, i::r, j::r, ch], x[0, :, :, ch * r * r + i * r + j])


def test_global_skip_is_bilinear():
  model = srresnet.SRResNet(num_feat=8, num_block=1)
  lr = jnp.asarray(np.random.default_rng(2).random((1, 6, 5, 3)), jnp.float32)
  params = model.init(_key(0), lr)['params']
  params['conv_last'] = jax.tree.map(jnp.zeros_like, params['conv_last'])
  np.testing.assert_allclose(model.apply({'params': params}, lr),
                             srresnet.bilinear_upsample(lr, 4), atol=1e-7)


def test_init_is_kaiming_normal_fan_in_with_zero_biases():
  params = srresnet.SRResNet(num_block=2).init(
      _key(0), jnp.zeros((1, 8, 8, 3)))['params']
  kernel = np.asarray(params['body_0']['conv1']['kernel'])
  # kaiming_normal_(a=0, mode='fan_in'): std sqrt(2 / (3 * 3 * 64)).
  np.testing.assert_allclose(kernel.std(), math.sqrt(2 / 576), rtol=0.03)
  assert abs(kernel.mean()) < 0.002
  for name in ('conv_first', 'up_0', 'conv_hr', 'conv_last'):
    assert not np.any(params[name]['bias'])


def test_forward_matches_an_independent_numpy_forward():
  """The whole G against tests/models/numpy_nets.srresnet (float64): a
  removed ReLU, a changed LeakyReLU slope or a lost skip changes the output
  by far more than the float32 tolerance."""
  scale = 4
  model = srresnet.SRResNet(scale=scale, num_feat=4, num_block=2)
  lr = np.random.default_rng(3).random((2, 5, 6, 3)).astype(np.float32)
  params = numpy_nets.random_params(_shapes(model), seed=4)
  got = np.asarray(jax.jit(model.apply)({'params': params}, jnp.asarray(lr)))
  want = numpy_nets.srresnet(params, lr, scale, num_block=2)
  # The residual body grows the features (no BN): compare at their scale.
  np.testing.assert_allclose(got, want, rtol=0,
                             atol=1e-5 * np.abs(want).max())
