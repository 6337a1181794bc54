"""Tests for jaxsr.models.dists_vgg: L2 pooling by hand, a numpy forward."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.models import dists_vgg
from jaxsr.models import vgg
from tests.models import test_vgg

_key = functools.partial(jax.random.key, impl='rbg')

# The official stage boundaries, as torchvision `features` indices.
_OFFICIAL_STAGES = {'relu1_2': 3, 'relu2_2': 8, 'relu3_3': 15, 'relu4_3': 22,
                    'relu5_3': 29}  # pyformat: disable


def numpy_l2pool(x):
  """Official L2pooling in float64 loops: x (N, C, H, W) -> (N, C, h, w)."""
  g = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], np.float64) / 16
  n, c, h, w = x.shape
  xp = np.pad(np.asarray(x, np.float64) ** 2,
              ((0, 0), (0, 0), (1, 1), (1, 1)))
  oh, ow = (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1
  out = np.zeros((n, c, oh, ow))
  for i in range(oh):
    for j in range(ow):
      window = xp[:, :, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3]
      out[:, :, i, j] = np.einsum('ncyx,yx->nc', window, g)
  return np.sqrt(out + 1e-12)


def numpy_dists_features(weights, x_nhwc):
  """DISTS_pt.forward_once in numpy float64 -> {stage: NHWC}.

  weights: {conv name: (OIHW, bias)} for VGG16 conv1_1 ... conv5_3.
  """
  x = np.asarray(x_nhwc, np.float64)
  out = {'input': x}
  h = (x - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
  h = h.transpose(0, 3, 1, 2)
  for block, convs in enumerate((2, 2, 3, 3, 3), start=1):
    if block > 1:
      h = numpy_l2pool(h)
    for k in range(1, convs + 1):
      h = np.maximum(test_vgg.conv_nchw(h, *weights[f'conv{block}_{k}']), 0)
    out[f'relu{block}_{convs}'] = h.transpose(0, 2, 3, 1)
  return out


@functools.lru_cache(maxsize=None)
def random_vgg16(seed=0):
  """{conv: (OIHW, bias)} of a random torchvision-like VGG16 (cached)."""
  return test_vgg.random_torch_weights(16, np.random.default_rng(seed))


def test_filter_is_normalized_inner_hanning_window():
  expected = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16
  np.testing.assert_allclose(dists_vgg.l2pool_filter(), expected, atol=1e-7)


def test_l2pool_hand_values():
  # A 2x2 map -> 1x1: the window centred on (0, 0) sees 1, 2, 3, 4 with
  # weights 4, 2, 2, 1 (/16) and zero padding elsewhere.
  x = jnp.array([[1.0, 2.0], [3.0, 4.0]])[None, :, :, None]
  out = dists_vgg.l2pool(x)
  chex.assert_shape(out, (1, 1, 1, 1))
  np.testing.assert_allclose(out[0, 0, 0, 0], np.sqrt((4 + 8 + 18 + 16) / 16),
                             rtol=1e-6)
  # A 3x3 map of ones -> 2x2: every window keeps 4 + 2 + 2 + 1 = 9 of 16.
  out = dists_vgg.l2pool(jnp.ones((1, 3, 3, 2)))
  np.testing.assert_allclose(out, np.full((1, 2, 2, 2), 0.75), rtol=1e-6)
  # Zeros give sqrt(1e-12) = 1e-6 and a finite (zero) gradient.
  np.testing.assert_allclose(dists_vgg.l2pool(jnp.zeros((1, 4, 4, 1))), 1e-6,
                             rtol=1e-3)
  grad = jax.grad(lambda z: dists_vgg.l2pool(z).sum())(jnp.zeros((1, 4, 4, 1)))
  np.testing.assert_array_equal(grad, 0.0)


@pytest.mark.parametrize('h, w', [(5, 6), (8, 7), (1, 2)])
def test_l2pool_matches_loops_and_takes_ceil(h, w):
  x = np.random.default_rng(h * w).normal(size=(2, h, w, 3)).astype(np.float32)
  out = dists_vgg.l2pool(jnp.asarray(x))
  chex.assert_shape(out, (2, -(-h // 2), -(-w // 2), 3))
  ref = numpy_l2pool(x.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match=r'\(N, H, W, C\)'):
    dists_vgg.l2pool(jnp.zeros((3, 3)))


def test_layers_stop_at_relu5_3_with_l2_pools():
  names = dists_vgg.layer_names()
  assert names[-1] == 'relu5_3' and 'pool5' not in ''.join(names)
  pools = [n for n in names if 'pool' in n]
  assert pools == ['l2pool1', 'l2pool2', 'l2pool3', 'l2pool4']
  # The official stages end at these torchvision `features` indices.
  for stage, index in _OFFICIAL_STAGES.items():
    assert vgg.vgg_layer_names(16).index(stage) == index
  assert sum(dists_vgg.STAGE_CHANNELS) == dists_vgg.NUM_CHANNELS == 1475


def test_params_are_the_vgg16_tree():
  x = jax.ShapeDtypeStruct((1, 16, 16, 3), jnp.float32)
  ours = jax.eval_shape(dists_vgg.DistsVGG().init, _key(0), x)['params']
  theirs = jax.eval_shape(
      vgg.VGG(depth=16, layers=('relu5_3',)).init, _key(0), x)['params']
  chex.assert_trees_all_equal_shapes_and_dtypes(ours, theirs)
  assert tuple(ours) == vgg.vgg_conv_names(16)


def test_matches_numpy_forward_on_odd_sizes():
  weights = random_vgg16()
  x = np.random.default_rng(3).uniform(size=(2, 21, 18, 3)).astype(np.float32)
  out = jax.jit(dists_vgg.DistsVGG().apply)(
      {'params': test_vgg.to_flax(weights)}, jnp.asarray(x))
  ref = numpy_dists_features(weights, x)
  assert tuple(out) == dists_vgg.STAGES
  # Sides: 21 -> 11 -> 6 -> 3 -> 2 and 18 -> 9 -> 5 -> 3 -> 2 (ceil).
  sides = [(21, 18), (21, 18), (11, 9), (6, 5), (3, 3), (2, 2)]
  for (stage, width), (h, w) in zip(
      zip(dists_vgg.STAGES, dists_vgg.STAGE_CHANNELS), sides):
    chex.assert_shape(out[stage], (2, h, w, width))
    chex.assert_type(out[stage], jnp.float32)
    scale = np.abs(ref[stage]).max()
    assert scale > 0, stage
    np.testing.assert_allclose(out[stage], ref[stage], atol=2e-4 * scale,
                               err_msg=stage)
  # Stage 0 is the raw input, not the ImageNet-normalized one.
  np.testing.assert_array_equal(out['input'], x)


def test_rejects_non_rgb():
  with pytest.raises(ValueError, match=r'\(N, H, W, 3\)'):
    dists_vgg.DistsVGG().init(_key(0), jnp.zeros((1, 8, 8, 1)))
