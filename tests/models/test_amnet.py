"""Tests for jaxsr.models.amnet: counts, shapes, a numpy forward, the modulation, gradients to the code."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.models import amnet
from tests.models import numpy_nets

_key = functools.partial(jax.random.key, impl='rbg')
# The tiny network of the numeric tests: 4 features, 2 blocks, 3-dim code.
_TINY = dict(num_feat=4, num_block=2, code_dim=3, mod_hidden=5)


def _count(tree):
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _conv(k, cin, cout):
  return k * k * cin * cout + cout


def _dense(cin, cout):
  return cin * cout + cout


def _amnet_shapes(model, hw=6):
  lr = jnp.zeros((1, hw, hw, model.num_in_ch))
  code = jnp.zeros((1, model.code_dim))
  return jax.eval_shape(model.init, _key(0), lr, code)['params']


def _random_params(model, seed):
  return jax.tree.map(jnp.asarray,
                      numpy_nets.random_params(_amnet_shapes(model), seed))


# An independent float64 forward, written from the layer list in amnet's
# docstring: conv_first; per block x + conv2(ReLU(AM(conv1(x)))) with
# AM(h) = h * (1 + Δγ) + β, [Δγ | β] from Dense -> LReLU 0.2 -> Dense heads;
# conv_body plus the long skip; conv -> pixel shuffle stages; conv_last.
def _np_modulation(p, code):
  hidden = numpy_nets.leaky_relu(
      code @ np.asarray(p['mlp']['kernel'], np.float64) + p['mlp']['bias'],
      0.2)
  d_scale = hidden @ np.asarray(p['to_scale']['kernel'], np.float64)
  shift = hidden @ np.asarray(p['to_shift']['kernel'], np.float64)
  d_scale = d_scale + p['to_scale']['bias']
  shift = shift + p['to_shift']['bias']
  return d_scale, shift


def _np_amnet(params, lr, code, scale, num_block, modulate=True):
  params = jax.tree.map(np.asarray, params)
  lr = np.asarray(lr, np.float64)
  code = np.asarray(code, np.float64)

  def conv(x, name, p=params):
    return numpy_nets.conv(x, p[name], 1)

  feat = conv(lr, 'conv_first')
  body = feat
  for i in range(num_block):
    p = params[f'body_{i}']
    h = conv(body, 'conv1', p)
    if modulate:
      d_scale, shift = _np_modulation(p['am'], code)
      for n in range(h.shape[0]):
        h[n] = h[n] * (1 + d_scale[n]) + shift[n]
    body = body + conv(numpy_nets.relu(h), 'conv2', p)
  feat = feat + conv(body, 'conv_body')
  factors = [2, 2] if scale == 4 else [scale]
  for i, f in enumerate(factors):
    feat = numpy_nets.pixel_shuffle(conv(feat, f'up_{i}'), f)
  return conv(feat, 'conv_last')


def _lr_and_code(n=2, hw=(5, 4), code_dim=3, seed=0):
  rng = np.random.default_rng(seed)
  lr = rng.random((n, *hw, 3)).astype(np.float32)
  code = rng.normal(0, 1, (n, code_dim)).astype(np.float32)
  return jnp.asarray(lr), jnp.asarray(code)


def test_default_parameter_count_by_hand():
  # x4, F = 64, 16 blocks, code 10, MLP width 64. Per block: conv1, conv2
  # (3x3 64->64) and an AMLayer: Dense 10->64, two heads Dense 64->64.
  block = 2 * _conv(3, 64, 64) + _dense(10, 64) + 2 * _dense(64, 64)
  assert block == 73_856 + 9_024
  by_hand = (_conv(3, 3, 64) + 16 * block + _conv(3, 64, 64)  # conv_body
             + 2 * _conv(3, 64, 256)  # two x2 stages, 64 -> 4 * 64
             + _conv(3, 64, 3))
  # 1792 + 1326080 + 36928 + 295424 + 1731.
  assert by_hand == 1_661_955
  assert _count(_amnet_shapes(amnet.AMNet())) == by_hand


def test_predictor_parameter_count_by_hand():
  # conv_first 3->64, three stride-2 convs and conv_last 64->64, fc1 64->64,
  # fc2 64->10.
  by_hand = (_conv(3, 3, 64) + 4 * _conv(3, 64, 64) + _dense(64, 64)
             + _dense(64, 10))
  assert by_hand == 154_314
  shapes = jax.eval_shape(amnet.KernelPredictor().init, _key(0),
                          jnp.zeros((1, 16, 16, 3)))['params']
  assert _count(shapes) == by_hand


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_output_shapes(scale):
  model = amnet.AMNet(scale=scale, num_feat=8, num_block=1, mod_hidden=4)
  lr, code = jnp.zeros((2, 5, 7, 3)), jnp.zeros((2, 10))
  out = jax.eval_shape(lambda: model.init_with_output(_key(0), lr, code)[0])
  assert out.shape == (2, 5 * scale, 7 * scale, 3)
  assert out.dtype == jnp.float32


def test_bad_inputs_are_errors():
  lr, code = jnp.zeros((2, 4, 4, 3)), jnp.zeros((2, 10))
  with pytest.raises(ValueError, match='scale'):
    jax.eval_shape(amnet.AMNet(scale=8).init, _key(0), lr, code)
  with pytest.raises(ValueError, match=r'code of shape \(2, 10\)'):
    jax.eval_shape(amnet.AMNet().init, _key(0), lr, jnp.zeros((2, 11)))
  with pytest.raises(ValueError, match='LR of shape'):
    jax.eval_shape(amnet.AMNet().init, _key(0), lr[..., :1], code)
  with pytest.raises(ValueError, match='bound'):
    jax.eval_shape(amnet.KernelPredictor(bound=0.0).init, _key(0), lr)


@pytest.mark.parametrize('scale', [3, 4])
def test_forward_matches_an_independent_numpy_forward(scale):
  model = amnet.AMNet(scale=scale, **_TINY)
  params = _random_params(model, seed=scale)
  lr, code = _lr_and_code()
  got = model.apply({'params': params}, lr, code)
  want = _np_amnet(params, lr, code, scale, _TINY['num_block'])
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_zero_heads_give_exactly_the_unmodulated_network():
  # Heads at zero: scale 1 + 0, shift 0, whatever the code.
  model = amnet.AMNet(scale=2, **_TINY)
  params = _random_params(model, seed=3)
  for i in range(_TINY['num_block']):
    am = params[f'body_{i}']['am']
    for head in ('to_scale', 'to_shift'):
      am[head] = jax.tree.map(jnp.zeros_like, am[head])
  lr, code = _lr_and_code(seed=1)
  got = model.apply({'params': params}, lr, code)
  want = _np_amnet(params, lr, code, 2, _TINY['num_block'], modulate=False)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  np.testing.assert_array_equal(
      got, model.apply({'params': params}, lr, 5.0 * code + 1.0))


def test_amlayer_modulates_each_channel_by_hand():
  # mlp = identity, code (1, -1) -> hidden LReLU_0.2 = (1, -0.2). Δγ reads
  # hidden[0] into channel 0 (x 0.5); β reads hidden[1] into channel 2.
  layer = amnet.AMLayer(num_feat=3, hidden=2)
  params = {
      'mlp': {'kernel': jnp.eye(2), 'bias': jnp.zeros(2)},
      'to_scale': {'kernel': jnp.array([[0.5, 0, 0], [0, 0, 0]]),
                   'bias': jnp.zeros(3)},
      'to_shift': {'kernel': jnp.array([[0, 0, 0], [0, 0, 1.0]]),
                   'bias': jnp.zeros(3)},
  }
  x = jnp.asarray(np.random.default_rng(4).normal(size=(1, 2, 3, 3)),
                  jnp.float32)
  out = layer.apply({'params': params}, x, jnp.array([[1.0, -1.0]]))
  np.testing.assert_allclose(out[..., 0], 1.5 * x[..., 0], rtol=1e-6)
  np.testing.assert_array_equal(out[..., 1], x[..., 1])
  np.testing.assert_allclose(out[..., 2], x[..., 2] - 0.2, rtol=1e-6)


def test_the_code_changes_the_output_per_image():
  model = amnet.AMNet(scale=2, **_TINY)
  params = _random_params(model, seed=5)
  lr, code = _lr_and_code(seed=2)
  # The same LR twice, with two different codes.
  lr = jnp.concatenate([lr[:1], lr[:1]])
  out = model.apply({'params': params}, lr, code)
  assert float(jnp.max(jnp.abs(out[0] - out[1]))) > 1e-3
  # Each image sees only its own code.
  alone = model.apply({'params': params}, lr[:1], code[:1])
  np.testing.assert_allclose(out[:1], alone, rtol=1e-5, atol=1e-5)


def test_gradient_to_the_code_equals_finite_differences_of_numpy():
  model = amnet.AMNet(scale=2, **_TINY)
  params = _random_params(model, seed=6)
  lr, code = _lr_and_code(n=1, seed=3)
  weights = np.random.default_rng(7).normal(size=(1, 10, 8, 3))

  def loss(c):
    return jnp.sum(model.apply({'params': params}, lr, c) * weights)

  grad = np.asarray(jax.jit(jax.grad(loss))(code))
  eps, fd = 1e-4, np.zeros(code.shape)
  for j in range(code.shape[1]):
    step = np.zeros(code.shape)
    step[0, j] = eps
    plus = _np_amnet(params, lr, np.asarray(code) + step, 2, 2)
    minus = _np_amnet(params, lr, np.asarray(code) - step, 2, 2)
    fd[0, j] = np.sum((plus - minus) * weights) / (2 * eps)
  assert np.all(np.abs(fd) > 1e-3)
  np.testing.assert_allclose(grad, fd, rtol=2e-3, atol=1e-3)


def test_gradients_reach_code_and_predictor_at_init():
  # The blind path LR -> predictor -> code -> AMNet, at AMNet's real init
  # (its small modulation heads must still pass a gradient to the code).
  model = amnet.AMNet(scale=2, num_feat=8, num_block=1, mod_hidden=8)
  predictor = amnet.KernelPredictor(code_dim=10, num_feat=8, num_down=2)
  lr, code = _lr_and_code(n=2, hw=(8, 8), code_dim=10, seed=4)
  g_params = jax.jit(model.init)(_key(0), lr, code)['params']
  p_params = jax.tree.map(jnp.asarray, numpy_nets.random_params(
      jax.eval_shape(predictor.init, _key(1), lr)['params'], 9))

  def blind_l1(p, offset):
    c = predictor.apply({'params': p}, lr) + offset
    return jnp.mean(jnp.abs(model.apply({'params': g_params}, lr, c)))

  d_pred, d_code = jax.jit(jax.grad(blind_l1, argnums=(0, 1)))(
      p_params, jnp.zeros_like(code))
  assert np.all(np.isfinite(d_code)) and np.all(np.abs(d_code) > 0)
  leaves = jax.tree.leaves(d_pred)
  assert all(np.all(np.isfinite(g)) for g in leaves)
  assert all(float(jnp.max(jnp.abs(g))) > 0 for g in leaves)


def _np_predictor(params, lr, num_down):
  params = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  x = np.asarray(lr, np.float64)
  x = numpy_nets.leaky_relu(numpy_nets.conv(x, params['conv_first'], 1), 0.2)
  for i in range(num_down):
    # Stride 2, padding 1: every other output of the stride-1 conv.
    full = numpy_nets.conv(x, params[f'down_{i}'], 1)
    x = numpy_nets.leaky_relu(full[:, ::2, ::2], 0.2)
  x = numpy_nets.leaky_relu(numpy_nets.conv(x, params['conv_last'], 1), 0.2)
  x = x.mean(axis=(1, 2))
  x = numpy_nets.leaky_relu(x @ params['fc1']['kernel'] + params['fc1']['bias'],
                            0.2)
  return x @ params['fc2']['kernel'] + params['fc2']['bias']


@pytest.mark.parametrize('hw', [(9, 7), (3, 2)])
def test_predictor_matches_numpy_and_has_the_code_shape(hw):
  predictor = amnet.KernelPredictor(code_dim=5, num_feat=6, num_down=2)
  lr, _ = _lr_and_code(n=3, hw=hw, seed=5)
  shapes = jax.eval_shape(predictor.init, _key(0), lr)['params']
  params = jax.tree.map(jnp.asarray, numpy_nets.random_params(shapes, 8))
  got = predictor.apply({'params': params}, lr)
  assert got.shape == (3, 5) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, _np_predictor(params, lr, 2), rtol=1e-4,
                             atol=1e-5)
  # Bounded: bound * tanh(y / bound) of the same network's raw output.
  bounded = amnet.KernelPredictor(code_dim=5, num_feat=6, num_down=2,
                                  bound=0.3).apply({'params': params}, lr)
  want = 0.3 * np.tanh(_np_predictor(params, lr, 2) / 0.3)
  np.testing.assert_allclose(bounded, want, rtol=1e-4, atol=1e-5)
  assert np.all(np.abs(np.asarray(bounded)) < 0.3)


def test_bicubic_skip_starts_at_bicubic():
  from jaxsr.data import imresize  # pylint: disable=g-import-not-at-top
  model = amnet.AMNet(scale=3, num_feat=4, num_block=1, code_dim=3,
                      bicubic_skip=True)
  lr, code = _lr_and_code(n=1, seed=6)
  out, _ = jax.jit(model.init_with_output)(_key(0), lr, code)
  want = imresize.imresize(np.asarray(lr[0], np.float64), 3)
  np.testing.assert_allclose(out[0], want, atol=1e-5)
