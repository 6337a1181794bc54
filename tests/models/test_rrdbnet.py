"""Tests for jaxsr.models.rrdbnet against BasicSR's counts, layout and init."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.data import imresize
from jaxsr.models import rrdbnet

# XLA's RngBitGenerator compiles several times faster on CPU than threefry,
# which dominated these tests; initializer statistics do not depend on it.
_key = functools.partial(jax.random.key, impl='rbg')

# Test-only preset: small enough for eager forward passes on a CPU.
_TinyRRDBNet = functools.partial(
    rrdbnet.RRDBNet, num_feat=8, num_block=1, num_grow_ch=4
)


# bfloat16 keeps 8 significant bits: unit roundoff u = 2^-8. Measured (CPU,
# 4 seeds each) max|bf16 - f32| / max|f32|: 0.0037-0.0074 (1-1.9 u) for the
# tiny net, 0.0046-0.0077 (1.2-2 u) for the 2-block one. 4u is twice the
# worst of them (the old bounds, 5e-2 absolute and 3%, were 60x and 4x).
_BF16_TOL = 4 * 2.0**-8


def _conv_count(cin, cout):
  """Weights plus biases of a 3x3 conv."""
  return 3 * 3 * cin * cout + cout


def _basicsr_count(nf, nb, gc, cin=3, cout=3, unshuffle=1, num_up=2):
  """RRDBNet's parameter count, layer by layer as in rrdbnet_arch.py."""
  # conv1..conv4 see nf + i*gc channels and grow gc; conv5 maps back to nf.
  rdb = sum(_conv_count(nf + i * gc, gc) for i in range(4))
  rdb += _conv_count(nf + 4 * gc, nf)
  return (
      _conv_count(cin * unshuffle**2, nf)  # conv_first
      + nb * 3 * rdb  # body: nb RRDBs of 3 RDBs
      + _conv_count(nf, nf) * (1 + num_up + 1)  # conv_body, conv_up*, conv_hr
      + _conv_count(nf, cout)  # conv_last
  )


def _count(tree):
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _param_shapes(model, hw=8):
  x = jnp.zeros((1, hw, hw, model.num_in_ch))
  return jax.eval_shape(model.init, _key(0), x)['params']


def test_default_x4_parameter_count_is_basicsr():
  params = _param_shapes(rrdbnet.RRDBNet())
  # By hand: RDB = 18464 + 27680 + 36896 + 46112 + 110656 = 239808;
  # 23 * 3 * 239808 = 16546752; + 1792 + 4 * 36928 + 1731 = 16697987.
  assert _basicsr_count(nf=64, nb=23, gc=32) == 16_697_987
  assert _count(params) == 16_697_987


def test_default_x4_param_names_mirror_basicsr():
  params = _param_shapes(rrdbnet.RRDBNet())
  expected = {'conv_first', 'conv_body', 'conv_up1', 'conv_up2', 'conv_hr'}
  expected |= {'conv_last'} | {f'body_{i}' for i in range(23)}
  assert set(params) == expected
  assert set(params['body_22']) == {'rdb1', 'rdb2', 'rdb3'}
  rdb = params['body_0']['rdb3']
  assert set(rdb) == {f'conv{k}' for k in range(1, 6)}
  chex.assert_shape(rdb['conv2']['kernel'], (3, 3, 96, 32))
  chex.assert_shape(rdb['conv5']['kernel'], (3, 3, 192, 64))
  chex.assert_shape(params['conv_last']['bias'], (3,))


@pytest.mark.parametrize(
    'scale, unshuffle, num_up', [(1, 4, 2), (2, 2, 2), (3, 1, 1), (4, 1, 2)]
)
def test_parameter_count_per_scale(scale, unshuffle, num_up):
  params = _param_shapes(_TinyRRDBNet(scale=scale), hw=12)
  expected = _basicsr_count(8, 1, 4, unshuffle=unshuffle, num_up=num_up)
  assert _count(params) == expected
  assert ('conv_up2' in params) == (scale != 3)


@pytest.mark.parametrize('scale', [1, 2, 3, 4])
def test_output_shapes(scale):
  model = _TinyRRDBNet(scale=scale)
  lr = jax.random.uniform(_key(1), (1, 12, 12, 3))
  variables = model.init(_key(0), lr)
  sr = model.apply(variables, lr)
  chex.assert_shape(sr, (1, 12 * scale, 12 * scale, 3))
  chex.assert_type(sr, jnp.float32)
  chex.assert_tree_all_finite(sr)


def test_bad_inputs_raise():
  lr = jnp.zeros((1, 10, 10, 3))
  with pytest.raises(ValueError, match='divisible by 4'):
    _TinyRRDBNet(scale=1).init(_key(0), lr)
  with pytest.raises(ValueError, match='scale must be'):
    _TinyRRDBNet(scale=8).init(_key(0), lr)
  with pytest.raises(ValueError, match='num_in_ch == num_out_ch'):
    _TinyRRDBNet(num_out_ch=1, bicubic_skip=True).init(_key(0), lr)


def test_pixel_unshuffle_matches_pytorch_order():
  x = np.arange(2 * 3 * 4 * 6, dtype=np.float32).reshape(2, 4, 6, 3)
  # BasicSR's pixel_unshuffle, written in NCHW with numpy.
  nchw = x.transpose(0, 3, 1, 2)
  ref = nchw.reshape(2, 3, 2, 2, 3, 2).transpose(0, 1, 3, 5, 2, 4)
  ref = ref.reshape(2, 12, 2, 3).transpose(0, 2, 3, 1)
  np.testing.assert_array_equal(rrdbnet.pixel_unshuffle(jnp.asarray(x), 2), ref)


def _sq_loss_grad(model, params, lr):
  """Jitted gradient of sum(model(lr)²): one compile instead of op by op."""
  loss = lambda p: jnp.sum(model.apply({'params': p}, lr) ** 2)
  return jax.jit(jax.grad(loss))(params)


def _apply(model, params, lr):
  return jax.jit(model.apply)({'params': params}, lr)


def _small_net(**kwargs) -> rrdbnet.RRDBNet:
  return rrdbnet.RRDBNet(num_feat=16, num_block=2, num_grow_ch=8, **kwargs)


def _scaled_params_and_input():
  """A small RRDBNet's params, 5x its 0.1-scaled init so that the dense paths
  matter, and an odd-sized LR input."""
  lr = jax.random.uniform(jax.random.key(1), (2, 12, 10, 3))
  params = _small_net().init(jax.random.key(0), lr)['params']
  return jax.tree.map(lambda p: p * 5.0, params), lr


def _assert_same_gradient(ga, gb):
  jax.tree.map(lambda u, v: np.testing.assert_allclose(
      u, v, rtol=1e-3, atol=1e-4 * float(np.abs(u).max())), ga, gb)


def _torch_style_forward(params, lr, scale):
  """BasicSR's RRDBNet.forward in numpy float64, NCHW with OIHW weights."""

  def conv(p, x):
    w = np.asarray(p['kernel'], np.float64).transpose(3, 2, 0, 1)  # OIHW
    h, w_ = x.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    y = np.zeros((x.shape[0], w.shape[0], h, w_))
    for dy in range(3):
      for dx in range(3):
        y += np.einsum('oi,nihw->nohw', w[:, :, dy, dx],
                       xp[:, :, dy:dy + h, dx:dx + w_])
    return y + np.asarray(p['bias'])[None, :, None, None]

  def lrelu(x):
    return np.where(x >= 0, x, 0.2 * x)

  def up(x):
    return x.repeat(2, axis=2).repeat(2, axis=3)

  x = np.asarray(lr, np.float64).transpose(0, 3, 1, 2)
  f = {1: 4, 2: 2}.get(scale)
  if f:
    b, c, hh, hw = x.shape
    x = x.reshape(b, c, hh // f, f, hw // f, f).transpose(0, 1, 3, 5, 2, 4)
    x = x.reshape(b, c * f * f, hh // f, hw // f)
  feat = conv(params['conv_first'], x)
  body = feat
  for i in range(len([k for k in params if k.startswith('body_')])):
    rrdb_in = body
    for j in range(1, 4):
      rdb = params[f'body_{i}'][f'rdb{j}']
      xs = [body]
      for k in range(1, 5):
        xs.append(lrelu(conv(rdb[f'conv{k}'], np.concatenate(xs, axis=1))))
      body = conv(rdb['conv5'], np.concatenate(xs, axis=1)) * 0.2 + body
    body = body * 0.2 + rrdb_in
  feat = feat + conv(params['conv_body'], body)
  feat = lrelu(conv(params['conv_up1'], up(feat)))
  feat = lrelu(conv(params['conv_up2'], up(feat)))
  out = conv(params['conv_last'], lrelu(conv(params['conv_hr'], feat)))
  return out.transpose(0, 2, 3, 1)


@pytest.mark.parametrize('scale', [1, 2, 4])
def test_matches_basicsr_forward_written_in_nchw(scale):
  model = _TinyRRDBNet(scale=scale, num_block=2)
  lr = jax.random.uniform(_key(1), (2, 8, 8, 3))
  params = model.init(_key(0), lr)['params']
  # Larger RDB weights than the 0.1-scaled init, so the body matters.
  params = jax.tree_util.tree_map_with_path(
      lambda path, p: p * 10 if 'body_' in jax.tree_util.keystr(path) else p,
      params,
  )
  sr = model.apply({'params': params}, lr)
  ref = _torch_style_forward(params, lr, scale)
  np.testing.assert_allclose(sr, ref, atol=1e-5, rtol=1e-4)


def test_rdb_init_is_scaled_kaiming_normal_with_zero_bias():
  block = rrdbnet.ResidualDenseBlock(num_feat=64, num_grow_ch=32)
  params = block.init(_key(0), jnp.zeros((1, 4, 4, 64)))['params']
  for k, cin in [(1, 64), (5, 192)]:
    w = np.asarray(params[f'conv{k}']['kernel'])
    expected_std = 0.1 * math.sqrt(2.0 / (9 * cin))
    assert abs(w.std() / expected_std - 1) < 0.1, (k, w.std(), expected_std)
    assert abs(w.mean()) < 0.1 * expected_std
  for k in range(1, 6):
    np.testing.assert_array_equal(params[f'conv{k}']['bias'], 0.0)


def test_other_convs_use_pytorch_default_init():
  model = rrdbnet.RRDBNet(num_feat=64, num_block=0)
  params = model.init(_key(0), jnp.zeros((1, 2, 2, 3)))['params']
  for name, cin in [('conv_first', 3), ('conv_body', 64), ('conv_last', 64)]:
    bound = 1.0 / math.sqrt(9 * cin)
    w = np.asarray(params[name]['kernel'])
    b = np.asarray(params[name]['bias'])
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound, name
    assert np.abs(w).max() > 0.9 * bound, name  # uniform, not tiny
    assert np.abs(b).max() > 0, name  # bias is not zero-initialized
  # U(-b, b) has std b / sqrt(3); conv_body has 36864 weights.
  w = np.asarray(params['conv_body']['kernel'])
  assert abs(w.std() * math.sqrt(3) * 24 - 1) < 0.1


def test_rdb_with_zero_conv5_is_identity_and_rrdb_scales_by_1_2():
  x = jax.random.normal(_key(1), (2, 5, 5, 8))
  block = rrdbnet.ResidualDenseBlock(num_feat=8, num_grow_ch=4)
  params = block.init(_key(0), x)['params']
  params['conv5'] = jax.tree.map(jnp.zeros_like, params['conv5'])
  np.testing.assert_array_equal(block.apply({'params': params}, x), x)

  rrdb = rrdbnet.RRDB(num_feat=8, num_grow_ch=4)
  params = rrdb.init(_key(0), x)['params']
  for j in range(1, 4):
    conv5 = params[f'rdb{j}']['conv5']
    params[f'rdb{j}']['conv5'] = jax.tree.map(jnp.zeros_like, conv5)
  # Identity RDBs leave out * 0.2 + x = 1.2 x.
  np.testing.assert_allclose(rrdb.apply({'params': params}, x), 1.2 * x,
                             rtol=1e-6)


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_bicubic_skip_untrained_output_is_bicubic(scale):
  model = _TinyRRDBNet(scale=scale, bicubic_skip=True)
  lr = jax.random.uniform(_key(1), (2, 8, 8, 3))
  variables = model.init(_key(0), lr)
  np.testing.assert_array_equal(variables['params']['conv_last']['kernel'], 0)
  sr = model.apply(variables, lr)
  np.testing.assert_allclose(
      sr, imresize.imresize_jax(lr, scale), atol=1e-6, rtol=0
  )


def test_bfloat16_compute_keeps_float32_params_and_output():
  lr = jax.random.uniform(_key(1), (2, 8, 8, 3))
  model = _TinyRRDBNet(dtype=jnp.bfloat16)
  variables = model.init(_key(0), lr)
  chex.assert_trees_all_equal_dtypes(
      variables, jax.tree.map(lambda p: p.astype(jnp.float32), variables)
  )
  # One compile is cheaper here than many eager bfloat16 ops.
  sr = jax.jit(model.apply)(variables, lr)
  chex.assert_type(sr, jnp.float32)
  ref = _TinyRRDBNet().apply(variables, lr)
  np.testing.assert_allclose(sr, ref, rtol=0,
                             atol=_BF16_TOL * float(jnp.abs(ref).max()))


def test_fused_dense_blocks_compute_the_same_function_and_gradient():
  """dense='fused' (pieces convolved once with stacked kernel slices) is
  BasicSR's concatenation formulation rewritten by linearity."""
  concat, fused = _small_net(), _small_net(dense='fused')
  params, lr = _scaled_params_and_input()
  a = _apply(concat, params, lr)
  b = _apply(fused, params, lr)
  np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(jnp.abs(a).max()))
  _assert_same_gradient(_sq_loss_grad(concat, params, lr),
                        _sq_loss_grad(fused, params, lr))
  with pytest.raises(ValueError, match='dense must be one of'):
    rrdbnet.RRDBNet(num_block=1, dense='scan').init(jax.random.key(0), lr)


def test_winograd_kernel_grad_keeps_forward_and_gradient():
  """kernel_grad='winograd' changes how dL/dkernel is computed, not what."""
  params, lr = _scaled_params_and_input()
  for dense in ('concat', 'fused'):
    base = _small_net(dense=dense, kernel_grad='xla')
    wino = _small_net(dense=dense, kernel_grad='winograd')
    np.testing.assert_array_equal(_apply(base, params, lr),
                                  _apply(wino, params, lr))
    _assert_same_gradient(_sq_loss_grad(base, params, lr),
                          _sq_loss_grad(wino, params, lr))
  with pytest.raises(ValueError, match='kernel_grad must be one of'):
    rrdbnet.RRDBNet(num_block=1, kernel_grad='fft').init(jax.random.key(0), lr)


def test_auto_kernel_grad_is_winograd_on_cpu_only(monkeypatch):
  assert rrdbnet.RRDBNet().kernel_grad == 'auto'
  assert rrdbnet.resolve_kernel_grad('auto') == (
      'winograd' if jax.default_backend() == 'cpu' else 'xla')
  for backend, want in (('cpu', 'winograd'), ('gpu', 'xla'), ('tpu', 'xla')):
    monkeypatch.setattr(jax, 'default_backend', lambda b=backend: b)
    assert rrdbnet.resolve_kernel_grad('auto') == want
    assert rrdbnet.resolve_kernel_grad('xla') == 'xla'
    assert rrdbnet.resolve_kernel_grad('winograd') == 'winograd'


def test_remat_and_bfloat16_options():
  """remat recomputes the same gradient; bfloat16 compute stays close to
  float32 with float32 parameters and outputs."""
  net = rrdbnet.RRDBNet(num_feat=16, num_block=2, num_grow_ch=8)
  lr = jax.random.uniform(jax.random.key(1), (2, 12, 12, 3))
  params = net.init(jax.random.key(0), lr)['params']
  remat = rrdbnet.RRDBNet(num_feat=16, num_block=2, num_grow_ch=8, remat=True)
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5,
                                                       atol=1e-7),
               _sq_loss_grad(net, params, lr), _sq_loss_grad(remat, params, lr))
  bf16 = rrdbnet.RRDBNet(num_feat=16, num_block=2, num_grow_ch=8,
                         dtype=jnp.bfloat16, dense='fused',
                         kernel_grad='winograd')
  a = _apply(net, params, lr)
  b = _apply(bf16, params, lr)
  assert b.dtype == jnp.float32
  assert float(jnp.abs(a - b).max()) < _BF16_TOL * float(jnp.abs(a).max())
  # Its gradients (Winograd kernel gradients from bfloat16 activations,
  # computed in float32) are float32 and no further from the float32 ones
  # than bfloat16 with XLA's kernel gradients.
  bf16_xla = bf16.clone(kernel_grad='xla')
  grads = [_sq_loss_grad(m, params, lr) for m in (net, bf16, bf16_xla)]
  for u, v, w in zip(*(jax.tree.leaves(g) for g in grads)):
    assert v.dtype == jnp.float32
    err_wino = float(jnp.linalg.norm(u - v))
    err_xla = float(jnp.linalg.norm(u - w))
    assert err_wino <= 1.5 * err_xla + 1e-3 * float(jnp.linalg.norm(u))
