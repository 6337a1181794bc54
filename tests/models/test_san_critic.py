"""Tests for jaxsr.models.san_critic: counts, crops, padding, norm state."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.models import layers
from jaxsr.models import san_critic
from jaxsr.normalization import san

_key = functools.partial(jax.random.key, impl='rbg')
_Tiny = functools.partial(san_critic.SANCritic, num_features=4,
                          max_features=8, num_blocks=2)


def _count(tree):
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _images(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).random(shape), jnp.float32)


def test_default_parameter_count_is_the_official_d_sanvanilla():
  # Blocks (in, out): (3, 64), (64, 128), (128, 256), (256, 512), (512, 512);
  # each a 3x3 and a 4x4 conv (biases in block 0 only) and two affine BNs;
  # then Linear(512*4*4 -> 64) and Linear(64 -> 1), with biases.
  blocks = [(3, 64), (64, 128), (128, 256), (256, 512), (512, 512)]
  by_hand = 0
  for i, (cin, cout) in enumerate(blocks):
    by_hand += 9 * cin * cout + 16 * cout * cout + 4 * cout
    by_hand += 2 * cout if i == 0 else 0
  by_hand += 8192 * 64 + 64 + 64 + 1
  assert by_hand == 14_204_609
  critic = san_critic.SANCritic()
  assert critic.crop_size == 128
  assert critic.widths() == blocks
  variables = jax.eval_shape(critic.init, _key(0), jnp.zeros((1, 128, 128, 3)))
  assert _count(variables['params']) == by_hand
  # One SAN divisor per conv and FC layer: 10 + 2.
  assert len(jax.tree.leaves(variables['san'])) == 12


@pytest.mark.parametrize('norm', ['san', 'spectral', 'none'])
def test_output_shape_and_collections(norm):
  critic = _Tiny(norm=norm)
  variables = critic.init(_key(0), jnp.zeros((1, 16, 16, 3)))
  expected = {'san': {'params', 'san'}, 'spectral': {'params', 'spectral'},
              'none': {'params'}}[norm]
  assert set(variables) == expected
  out = critic.apply(variables, _images((3, 20, 24, 3)), _key(1))
  assert out.shape == (3, 1) and out.dtype == jnp.float32


def test_crop_uses_the_key():
  x = _images((2, 20, 24, 3))
  same = [san_critic.random_crop(x, 16, _key(5)) for _ in range(2)]
  np.testing.assert_array_equal(same[0], same[1])
  crops = [np.asarray(san_critic.random_crop(x, 16, _key(k)))
           for k in range(8)]
  assert len({c.tobytes() for c in crops}) > 1
  # One offset for the whole batch, inside the image.
  offsets = set()
  for k in range(64):
    crop = np.asarray(san_critic.random_crop(x, 16, _key(k)))
    found = [(t, l) for t in range(5) for l in range(9)
             if np.array_equal(crop, x[:, t:t + 16, l:l + 16])]
    assert len(found) == 1
    offsets.add(found[0])
  # Every offset in [0, H - 16] x [0, W - 16] can be drawn (the last ones
  # too, unlike the official randint(0, H - crop - 1)).
  assert {t for t, _ in offsets} == set(range(5))
  assert max(l for _, l in offsets) == 8


def test_crop_edge_cases():
  x = _images((1, 16, 16, 3))
  np.testing.assert_array_equal(san_critic.random_crop(x, 16, None), x)
  with pytest.raises(ValueError, match='needs a key'):
    san_critic.random_crop(_images((1, 17, 16, 3)), 16, None)
  with pytest.raises(ValueError, match='at least 16'):
    san_critic.random_crop(_images((1, 15, 16, 3)), 16, _key(0))


def test_critic_output_depends_on_the_crop_key():
  critic = _Tiny()
  variables = critic.init(_key(0), jnp.zeros((1, 16, 16, 3)))
  x = _images((2, 24, 24, 3))
  a, b = (critic.apply(variables, x, _key(3)) for _ in range(2))
  np.testing.assert_array_equal(a, b)
  outs = {np.asarray(critic.apply(variables, x, _key(k))).tobytes()
          for k in range(6)}
  assert len(outs) > 1


def _lrelu(x):
  return jnp.where(x >= 0, x, 0.1 * x)


@pytest.mark.parametrize('norm,circular', [('san', True), ('none', False)])
def test_one_block_forward_by_hand(norm, circular):
  """conv-LReLU-conv-LReLU, NCHW flatten, FC-LReLU-FC; padding per norm."""
  critic = san_critic.SANCritic(num_features=4, num_blocks=1, norm=norm,
                                batch_norm=False)
  x = _images((2, 8, 8, 3))
  variables = critic.init(_key(0), x)
  p = variables['params']
  scale = lambda name: (variables['san'][name]['scale'] if norm == 'san'
                        else 1.0)

  def conv(h, name, stride):
    kernel = p[name]['kernel'] / scale(name)
    if circular:
      y = layers.circular_conv(h, kernel, (stride, stride), 1)
    else:
      y = jax.lax.conv_general_dilated(
          h, kernel, (stride, stride), ((1, 1), (1, 1)),
          dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return y + p[name]['bias']

  h = _lrelu(conv(x, 'block_0_conv1', 1))
  h = _lrelu(conv(h, 'block_0_conv2', 2))  # (2, 4, 4, 4)
  h = jnp.transpose(h, (0, 3, 1, 2)).reshape(2, 64)
  h = _lrelu(h @ (p['fc1']['kernel'] / scale('fc1')) + p['fc1']['bias'])
  want = h @ (p['fc2']['kernel'] / scale('fc2')) + p['fc2']['bias']
  np.testing.assert_allclose(critic.apply(variables, x), want, rtol=1e-5,
                             atol=1e-6)


def test_batch_norm_makes_the_convs_scale_invariant():
  """The documented property: BN after each conv cancels its scale."""
  critic = _Tiny(norm='none')
  variables = critic.init(_key(0), jnp.zeros((1, 16, 16, 3)))
  x = _images((4, 16, 16, 3))
  scaled = jax.tree_util.tree_map_with_path(
      lambda path, v: v * 7.0 if 'conv' in str(path[0]) else v,
      variables['params'])
  np.testing.assert_allclose(critic.apply({'params': scaled}, x),
                             critic.apply(variables, x), rtol=1e-4,
                             atol=1e-5)


def test_update_norm_state_matches_lemma_1_on_new_weights():
  critic = _Tiny()
  x = jnp.zeros((1, 16, 16, 3))
  variables = critic.init(_key(0), x)
  params = jax.tree.map(lambda v: v * 3.0 + 0.01, variables['params'])
  state = {'san': variables['san']}
  new = san_critic.update_norm_state(critic, params, state, _key(1))
  shapes = layers.conv_input_shapes(critic, {'params': params, **state}, x)
  assert shapes == {'block_0_conv1': (16, 16), 'block_0_conv2': (16, 16),
                    'block_1_conv1': (8, 8), 'block_1_conv2': (8, 8)}
  for name, hw in shapes.items():
    np.testing.assert_allclose(
        new['san'][name]['scale'],
        san.conv_norm(params[name]['kernel'], hw) + 1e-8, rtol=1e-5)
  for name in ('fc1', 'fc2'):
    np.testing.assert_allclose(
        new['san'][name]['scale'],
        np.linalg.svd(params[name]['kernel'], compute_uv=False)[0],
        rtol=1e-5)


def test_update_norm_state_spectral_and_none():
  x = jnp.zeros((1, 16, 16, 3))
  critic = _Tiny(norm='spectral')
  variables = critic.init(_key(0), x)
  state = {'spectral': variables['spectral']}
  new = san_critic.update_norm_state(critic, variables['params'], state,
                                     _key(1))
  old_u = variables['spectral']['block_1_conv1']['u']
  assert not np.allclose(new['spectral']['block_1_conv1']['u'], old_u)
  critic = _Tiny(norm='none')
  variables = critic.init(_key(0), x)
  assert san_critic.update_norm_state(critic, variables['params'], {},
                                      _key(1)) == {}


def test_bad_norm_is_an_error():
  with pytest.raises(ValueError, match='norm must be one of'):
    _Tiny(norm='batch').init(_key(0), jnp.zeros((1, 16, 16, 3)))
