"""Tests for jaxsr.models.alexnet against a numpy NCHW torchvision AlexNet."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.models import alexnet

_key = functools.partial(jax.random.key, impl='rbg')

# torchvision's printed alexnet().features: (index, out, kernel, stride, pad)
# of each Conv2d; every other entry is a ReLU or MaxPool2d(3, 2).
_TORCHVISION_CONVS = (
    (0, 64, 11, 4, 2),
    (3, 192, 5, 1, 2),
    (6, 384, 3, 1, 1),
    (8, 256, 3, 1, 1),
    (10, 256, 3, 1, 1),
)
_POOLS_AFTER = (0, 3, 10)  # MaxPool2d(3, 2) follows the ReLU of these convs.


def conv_nchw(x, weight, bias, stride, pad):
  """torch Conv2d in numpy float64: x (N, I, H, W), weight OIHW."""
  n, _, h, w = x.shape
  _, _, kh, kw = weight.shape
  ho, wo = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
  xp = np.pad(np.asarray(x, np.float64), ((0, 0), (0, 0), (pad,) * 2,
                                          (pad,) * 2))
  # im2col: patches (N, I, kh * kw, ho, wo), in the OIHW weight's order.
  cols = np.stack([
      xp[:, :, dy : dy + stride * (ho - 1) + 1 : stride,
         dx : dx + stride * (wo - 1) + 1 : stride]
      for dy in range(kh) for dx in range(kw)
  ], axis=2).reshape(n, -1, ho * wo)
  # y[n, o] = sum over (i, dy, dx) of weight[o, i, dy, dx] * patch.
  y = np.matmul(np.asarray(weight, np.float64).reshape(len(weight), -1), cols)
  y = y.reshape(n, len(weight), ho, wo)
  return y + np.asarray(bias, np.float64)[None, :, None, None]


def maxpool_nchw(x, k=3, s=2):
  """torch MaxPool2d(k, s) (no padding, floor) by explicit windows."""
  n, c, h, w = x.shape
  ho, wo = (h - k) // s + 1, (w - k) // s + 1
  y = np.empty((n, c, ho, wo))
  for i in range(ho):
    for j in range(wo):
      y[:, :, i, j] = x[:, :, i * s : i * s + k, j * s : j * s + k].max(
          axis=(2, 3))
  return y


def numpy_alexnet(weights, x_nchw):
  """torchvision AlexNet features; weights {features index: (OIHW, bias)}.

  x is what `features` receives (already normalized). Returns the LPIPS
  taps {'relu1': NCHW, ...} and 'pool5', float64.
  """
  x = np.asarray(x_nchw, np.float64)
  out = {}
  for k, (index, _, _, stride, pad) in enumerate(_TORCHVISION_CONVS, 1):
    x = np.maximum(conv_nchw(x, *weights[index], stride, pad), 0.0)
    out[f'relu{k}'] = x
    if index in _POOLS_AFTER:
      x = maxpool_nchw(x)
  out['pool5'] = x
  return out


def random_torch_weights(rng):
  """{features index: (OIHW float32, bias)} with torch-default magnitudes."""
  weights = {}
  cin = 3
  for index, cout, k, _, _ in _TORCHVISION_CONVS:
    # He-normal (fan_in) keeps the ReLU activations O(1) through five convs.
    std = np.sqrt(2.0 / (cin * k * k))
    w = rng.standard_normal((cout, cin, k, k), np.float32) * np.float32(std)
    b = rng.standard_normal(cout, np.float32) * np.float32(0.1)
    weights[index] = (w, b)
    cin = cout
  return weights


def to_flax(weights):
  """{features index: (OIHW, bias)} -> AlexNet params by hand."""
  names = {0: 'conv1', 3: 'conv2', 6: 'conv3', 8: 'conv4', 10: 'conv5'}
  return {
      names[i]: {'kernel': w.transpose(2, 3, 1, 0), 'bias': b}
      for i, (w, b) in weights.items()
  }


def test_torchvision_indices_and_layout():
  assert alexnet.TORCHVISION_INDEX == {
      'conv1': 0, 'conv2': 3, 'conv3': 6, 'conv4': 8, 'conv5': 10}
  # LPIPS slices features at [0, 2), [2, 5), [5, 8), [8, 10), [10, 12):
  # each slice ends just after a ReLU, at features 1, 4, 7, 9 and 11.
  taps = [alexnet.LAYER_NAMES[n] for n in (1, 4, 7, 9, 11)]
  assert tuple(taps) == alexnet.LPIPS_TAPS
  assert alexnet.LAYER_NAMES[12] == 'pool5'
  for index, cout, k, stride, pad in _TORCHVISION_CONVS:
    name = alexnet.LAYER_NAMES[index]
    assert alexnet.CONVS[name] == (cout, k, stride, pad)


def test_shapes_at_224_match_torchvision():
  # torchvision's AlexNet on 224x224: 55 -> 27 -> 13 -> 6 (its avgpool 6x6).
  want = {'relu1': (2, 55, 55, 64), 'pool1': (2, 27, 27, 64),
          'relu2': (2, 27, 27, 192), 'pool2': (2, 13, 13, 192),
          'relu3': (2, 13, 13, 384), 'relu4': (2, 13, 13, 256),
          'relu5': (2, 13, 13, 256), 'pool5': (2, 6, 6, 256)}
  model = alexnet.AlexNet(layers=tuple(want))
  x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
  variables = jax.eval_shape(model.init, _key(0), x)
  out = jax.eval_shape(model.apply, variables, x)
  chex.assert_trees_all_equal_shapes_and_dtypes(
      out, {k: jax.ShapeDtypeStruct(v, jnp.float32) for k, v in want.items()})
  params = variables['params']
  chex.assert_shape(params['conv1']['kernel'], (11, 11, 3, 64))
  chex.assert_shape(params['conv2']['kernel'], (5, 5, 64, 192))
  chex.assert_shape(params['conv5']['bias'], (256,))


def test_truncates_after_deepest_layer():
  model = alexnet.AlexNet(layers=('pool1', 'relu2'))
  x = jax.ShapeDtypeStruct((1, 40, 40, 3), jnp.float32)
  variables = jax.eval_shape(model.init, _key(0), x)
  assert tuple(variables['params']) == ('conv1', 'conv2')


def test_min_input_size_matches_the_size_formula():
  # conv1 (H + 4 - 11) // 4 + 1 >= 7 so that pool1 and pool2 are >= 1:
  # H >= 31 for relu3..relu5; relu2 needs conv1 >= 3 (H >= 15).
  assert [alexnet.min_input_size(n) for n in alexnet.LPIPS_TAPS] == [
      7, 15, 31, 31, 31]
  model = alexnet.AlexNet()
  variables = jax.eval_shape(
      model.init, _key(0), jax.ShapeDtypeStruct((1, 31, 40, 3), jnp.float32))
  with pytest.raises(ValueError, match='at least 31x31 pixels, got 30x40'):
    model.apply(variables, jnp.zeros((1, 30, 40, 3)))


def test_bad_layers_and_inputs_raise():
  with pytest.raises(ValueError, match='relu5'):
    alexnet.AlexNet(layers=('relu6',)).init(_key(0), jnp.zeros((1, 64, 64, 3)))
  with pytest.raises(ValueError, match='at least one layer'):
    alexnet.AlexNet(layers=()).init(_key(0), jnp.zeros((1, 64, 64, 3)))
  with pytest.raises(ValueError, match=r'\(N, H, W, 3\)'):
    alexnet.AlexNet().init(_key(0), jnp.zeros((1, 64, 64, 1)))


@pytest.mark.parametrize('use_input_norm', [False, True])
def test_matches_numpy_nchw_forward(use_input_norm):
  rng = np.random.default_rng(1)
  weights = random_torch_weights(rng)
  # Odd, non-square input: conv1 gives 16x17, so both pools floor.
  x = rng.uniform(size=(2, 67, 71, 3)).astype(np.float32)
  layers = alexnet.LPIPS_TAPS + ('pool5',)
  model = alexnet.AlexNet(layers=layers, use_input_norm=use_input_norm)
  out = model.apply({'params': to_flax(weights)}, jnp.asarray(x))
  ref_in = x.astype(np.float64)
  if use_input_norm:
    ref_in = (ref_in - np.array([0.485, 0.456, 0.406])) / np.array(
        [0.229, 0.224, 0.225])
  ref = numpy_alexnet(weights, ref_in.transpose(0, 3, 1, 2))
  assert ref['relu1'].shape[2:] == (16, 17)
  for name in layers:
    want = ref[name].transpose(0, 2, 3, 1)
    scale = np.abs(want).max()
    assert scale > 0, name
    np.testing.assert_allclose(out[name], want, atol=1e-4 * scale,
                               err_msg=name)
