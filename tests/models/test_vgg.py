"""Tests for jaxsr.models.vgg against a numpy NCHW VGG and torchvision."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.models import vgg

# XLA's RngBitGenerator compiles several times faster on CPU than threefry.
_key = functools.partial(jax.random.key, impl='rbg')

# torchvision's printed `features` of vgg19 (cfg 'E'): the Conv2d indices.
_TORCHVISION_VGG19_CONVS = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30,
                            32, 34)  # pyformat: disable
_TORCHVISION_VGG16_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def conv_nchw(x, weight, bias):
  """A 3x3 zero-padded conv in numpy float64: x (N, I, H, W), weight OIHW."""
  h, w = x.shape[2:]
  xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
  y = np.zeros((x.shape[0], weight.shape[0], h, w))
  for dy in range(3):
    for dx in range(3):
      tap = xp[:, :, dy : dy + h, dx : dx + w]
      y += np.einsum('oi,nihw->nohw', weight[:, :, dy, dx], tap, optimize=True)
  return y + np.asarray(bias, np.float64)[None, :, None, None]


def numpy_vgg(weights, x_nhwc, depth, norm='imagenet'):
  """torchvision VGG features in numpy: weights {conv name: (OIHW, bias)}.

  Returns {layer: NHWC float64} for every layer up to the last given conv.
  """
  x = np.asarray(x_nhwc, np.float64)
  if norm == 'imagenet':
    x = (x - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
  else:  # Keras' Caffe preprocessing: BGR, [0, 255], minus the BGR mean.
    x = x[..., ::-1] * 255.0 - np.array([103.939, 116.779, 123.68])
  x = x.transpose(0, 3, 1, 2)
  out = {}
  per_block = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}[depth]
  for block, convs in enumerate(per_block, start=1):
    for k in range(1, convs + 1):
      name = f'conv{block}_{k}'
      if name not in weights:
        return out
      x = conv_nchw(x, *weights[name])
      out[name] = x.transpose(0, 2, 3, 1)
      x = np.maximum(x, 0)
      out[f'relu{block}_{k}'] = x.transpose(0, 2, 3, 1)
    n, c, h, w = x.shape
    x = x[:, :, : h // 2 * 2, : w // 2 * 2]
    x = x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))
    out[f'pool{block}'] = x.transpose(0, 2, 3, 1)
  return out


def random_torch_weights(depth, rng, upto=None):
  """{conv name: (OIHW float32, bias)} with torchvision-like magnitudes."""
  weights = {}
  cin = 3
  for name in vgg.vgg_conv_names(depth):
    cout = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}[int(name[4])]
    # kaiming-normal fan_out keeps activations O(1) through 16 ReLU convs.
    std = np.sqrt(2.0 / (9 * cout))
    w = rng.standard_normal((cout, cin, 3, 3), np.float32) * np.float32(std)
    b = rng.standard_normal(cout, np.float32) * np.float32(0.1)
    weights[name] = (w, b)
    cin = cout
    if name == upto:
      break
  return weights


def to_flax(weights):
  return {
      n: {'kernel': w.transpose(2, 3, 1, 0), 'bias': b}
      for n, (w, b) in weights.items()
  }


def test_layer_names_and_torchvision_indices():
  names19 = vgg.vgg_layer_names(19)
  assert len(names19) == 16 * 2 + 5
  assert names19[:5] == ('conv1_1', 'relu1_1', 'conv1_2', 'relu1_2', 'pool1')
  assert names19[-3:] == ('conv5_4', 'relu5_4', 'pool5')
  assert len(vgg.vgg_layer_names(16)) == 13 * 2 + 5
  assert tuple(vgg.torchvision_index(19).values()) == _TORCHVISION_VGG19_CONVS
  assert tuple(vgg.torchvision_index(16).values()) == _TORCHVISION_VGG16_CONVS
  # BasicSR's VGG feature extractor cuts ESRGAN's conv5_4 at index 34.
  assert vgg.torchvision_index(19)['conv5_4'] == 34
  with pytest.raises(ValueError, match='16 or 19'):
    vgg.vgg_layer_names(11)


@pytest.mark.parametrize(
    'depth, layers, last_conv',
    [
        (19, ('conv2_2',), 'conv2_2'),
        (19, ('relu3_1', 'pool1'), 'conv3_1'),
        (16, ('pool4',), 'conv4_3'),
        (19, ('conv5_4',), 'conv5_4'),
    ],
)
def test_truncates_after_deepest_layer(depth, layers, last_conv):
  model = vgg.VGG(depth=depth, layers=layers)
  x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
  variables = jax.eval_shape(model.init, _key(0), x)
  convs = vgg.vgg_conv_names(depth)
  expected = convs[: convs.index(last_conv) + 1]
  assert tuple(variables['params']) == expected
  chex.assert_shape(variables['params']['conv1_1']['kernel'], (3, 3, 3, 64))
  out = jax.eval_shape(model.apply, variables, x)
  assert set(out) == set(layers)


def test_unknown_layer_lists_valid_names():
  model = vgg.VGG(depth=16, layers=('conv5_4',))
  with pytest.raises(ValueError, match='conv5_3'):
    model.init(_key(0), jnp.zeros((1, 8, 8, 3)))
  with pytest.raises(ValueError, match='input_norm'):
    vgg.VGG(layers=('conv1_1',), input_norm='bgr').init(
        _key(0), jnp.zeros((1, 8, 8, 3))
    )
  with pytest.raises(ValueError, match=r'\(N, H, W, 3\)'):
    vgg.VGG(layers=('conv1_1',)).init(_key(0), jnp.zeros((1, 8, 8, 1)))


@pytest.mark.parametrize('norm', ['imagenet', 'caffe'])
def test_matches_numpy_nchw_forward(norm):
  rng = np.random.default_rng(0)
  weights = random_torch_weights(19, rng, upto='conv3_1')
  layers = ('conv1_2', 'relu1_2', 'pool1', 'conv2_2', 'pool2', 'relu3_1')
  model = vgg.VGG(depth=19, layers=layers, input_norm=norm)
  # Odd size: pools floor, as torch's MaxPool2d(2, 2) does.
  x = rng.uniform(size=(2, 13, 10, 3)).astype(np.float32)
  out = model.apply({'params': to_flax(weights)}, jnp.asarray(x))
  ref = numpy_vgg(weights, x, 19, norm)
  assert set(out) == set(layers)
  for name in layers:
    chex.assert_type(out[name], jnp.float32)
    scale = np.abs(ref[name]).max()
    np.testing.assert_allclose(out[name], ref[name], atol=1e-4 * scale,
                               err_msg=name)
  chex.assert_shape(out['pool2'], (2, 3, 2, 128))


def test_without_input_norm_feeds_raw_pixels():
  rng = np.random.default_rng(1)
  weights = random_torch_weights(16, rng, upto='conv1_1')
  x = rng.uniform(size=(1, 6, 6, 3)).astype(np.float32)
  model = vgg.VGG(depth=16, layers=('conv1_1',), use_input_norm=False)
  out = model.apply({'params': to_flax(weights)}, jnp.asarray(x))['conv1_1']
  ref = conv_nchw(x.transpose(0, 3, 1, 2).astype(np.float64), *weights[
      'conv1_1']).transpose(0, 2, 3, 1)
  np.testing.assert_allclose(out, ref, atol=1e-5)


def test_init_is_torchvision_kaiming_fan_out():
  model = vgg.VGG(depth=16, layers=('conv2_1',))
  params = model.init(_key(0), jnp.zeros((1, 8, 8, 3)))['params']
  w = np.asarray(params['conv2_1']['kernel'])
  assert abs(w.std() / np.sqrt(2.0 / (9 * 128)) - 1) < 0.05
  np.testing.assert_array_equal(params['conv2_1']['bias'], 0.0)


def test_bfloat16_compute_returns_float32_features():
  model = vgg.VGG(depth=16, layers=('conv1_2',), dtype=jnp.bfloat16)
  x = jax.random.uniform(_key(1), (1, 8, 8, 3))
  variables = model.init(_key(0), x)
  chex.assert_type(variables['params']['conv1_1']['kernel'], jnp.float32)
  out = jax.jit(model.apply)(variables, x)['conv1_2']
  chex.assert_type(out, jnp.float32)
  ref = vgg.VGG(depth=16, layers=('conv1_2',)).apply(variables, x)['conv1_2']
  np.testing.assert_allclose(out, ref, atol=0.05 * float(jnp.abs(ref).max()))
