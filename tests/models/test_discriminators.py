"""Tests for jaxsr.models.discriminators against BasicSR's layout and math."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.models import discriminators

_key = functools.partial(jax.random.key, impl='rbg')
_D = discriminators.VGGStyleDiscriminator


def _count(tree):
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _basicsr_count(nf, cin=3, stages=4):
  """VGGStyleDiscriminator's parameters, layer by layer as in BasicSR."""
  total = 3 * 3 * cin * nf + nf  # conv0_0, the only conv with a bias
  total += 4 * 4 * nf * nf + 2 * nf  # conv0_1 + bn0_1 (weight, bias)
  widths = [nf, 2 * nf, 4 * nf, 8 * nf, 8 * nf, 8 * nf][: stages + 1]
  for cin_i, cout in zip(widths[:-1], widths[1:]):
    total += 3 * 3 * cin_i * cout + 2 * cout  # convi_0 + bni_0
    total += 4 * 4 * cout * cout + 2 * cout  # convi_1 + bni_1
  total += 8 * nf * 4 * 4 * 100 + 100  # linear1
  total += 100 + 1  # linear2
  return total


def _init(model, x):
  """Jitted init: several times faster than eager on a CPU."""
  return jax.jit(functools.partial(model.init, train=False))(_key(0), x)


def _init_shapes(model, size):
  x = jnp.zeros((1, size, size, model.num_in_ch))
  return jax.eval_shape(functools.partial(model.init, train=False), _key(0), x)


def test_parameter_count_is_basicsr():
  variables = _init_shapes(_D(), 128)
  # By hand: conv0_0 1,792; conv0_1 + bn0_1 65,664; stages 1-4 (convs + BN
  # affine) 336,384 + 1,344,512 + 5,376,000 + 6,555,648; linear1 + linear2
  # 819,401; total 14,499,401. The sometimes-quoted 14,502,281 is the old
  # ESRGAN arch (Discriminator_VGG_128), whose convs before BN carry biases:
  # 64 + 2*128 + 2*256 + 4*512 = 2,880 more.
  assert _basicsr_count(64) == 14_499_401
  assert _count(variables['params']) == 14_499_401
  # Running mean and var: one pair per BN channel.
  assert _count(variables['batch_stats']) == 2 * 2880


def test_param_names_and_shapes_mirror_basicsr():
  params = _init_shapes(_D(num_feat=64), 128)['params']
  expected = ['conv0_0', 'conv0_1', 'bn0_1', 'linear1', 'linear2']
  for i in range(1, 5):
    expected += [f'conv{i}_0', f'bn{i}_0', f'conv{i}_1', f'bn{i}_1']
  assert sorted(params) == sorted(expected)
  assert set(params['conv0_0']) == {'kernel', 'bias'}
  assert set(params['conv3_1']) == {'kernel'}  # bias=False before BN
  assert set(params['bn2_0']) == {'scale', 'bias'}
  assert params['conv0_1']['kernel'].shape == (4, 4, 64, 64)
  assert params['conv4_0']['kernel'].shape == (3, 3, 512, 512)
  assert params['linear1']['kernel'].shape == (512 * 4 * 4, 100)
  assert params['linear2']['kernel'].shape == (100, 1)


def test_input_size_256_has_a_fifth_stage():
  variables = _init_shapes(_D(num_feat=8, input_size=256), 256)
  assert 'conv5_1' in variables['params']
  assert _count(variables['params']) == _basicsr_count(8, stages=5)


def test_wrong_input_size_is_a_clear_error():
  model = _D(num_feat=8)
  x = jnp.zeros((1, 96, 96, 3))
  with pytest.raises(ValueError, match='expects 128x128 inputs, got 96x96'):
    jax.eval_shape(functools.partial(model.init, train=False), _key(0), x)
  with pytest.raises(ValueError, match='power of two >= 8, got 192'):
    _init_shapes(_D(num_feat=8, input_size=192), 192)


def test_output_shape_and_batch_norm_modes():
  model = _D(num_feat=8)
  x = jax.random.uniform(_key(1), (2, 128, 128, 3))
  variables = _init(model, x)

  @functools.partial(jax.jit, static_argnums=2)
  def apply(variables, x, train):
    return model.apply(
        variables,
        x,
        train=train,
        mutable=['batch_stats', 'intermediates'],
        capture_intermediates=lambda mdl, _: mdl.name == 'conv0_1',
    )

  out, updates = apply(variables, x, True)
  chex.assert_shape(out, (2, 1))
  assert out.dtype == jnp.float32
  old, new = variables['batch_stats'], updates['batch_stats']
  assert not np.allclose(old['bn0_1']['mean'], new['bn0_1']['mean'])
  assert not np.allclose(old['bn4_1']['var'], new['bn4_1']['var'])
  # Fresh stats are mean 0: new = 0.9 * old + 0.1 * batch mean (PyTorch
  # momentum 0.1).
  conv_out = updates['intermediates']['conv0_1']['__call__'][0]
  np.testing.assert_allclose(
      new['bn0_1']['mean'], 0.1 * conv_out.mean((0, 1, 2)), atol=1e-6
  )
  _, same = apply(variables, x, False)
  chex.assert_trees_all_equal(same['batch_stats'], old)


def _conv_nchw(x, w, stride):
  """PyTorch Conv2d(padding=1, no bias): x (N, I, H, W), w (O, I, kh, kw)."""
  kh, kw = w.shape[2:]
  xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
  ho = (xp.shape[2] - kh) // stride + 1
  wo = (xp.shape[3] - kw) // stride + 1
  out = np.zeros((x.shape[0], w.shape[0], ho, wo))
  for a in range(kh):
    for b in range(kw):
      rows = slice(a, a + stride * ho, stride)
      cols = slice(b, b + stride * wo, stride)
      patch = xp[:, :, rows, cols]
      out += np.einsum('nchw,oc->nohw', patch, w[:, :, a, b])
  return out


def _lrelu(x):
  return np.where(x >= 0, x, 0.2 * x)


def test_eval_forward_matches_a_numpy_nchw_port():
  """Weights moved to PyTorch layouts, run NCHW: checks padding and flatten."""
  nf = 4
  model = _D(num_feat=nf)
  x = np.asarray(jax.random.uniform(_key(1), (2, 128, 128, 3)), np.float64)
  variables = _init(model, jnp.asarray(x, jnp.float32))
  # Non-trivial running statistics and affine params.
  rng = np.random.default_rng(0)
  params = jax.tree.map(np.asarray, variables['params'])
  stats = jax.tree.map(np.asarray, variables['batch_stats'])
  for name in stats:
    c = stats[name]['mean'].shape[0]
    stats[name] = {
        'mean': rng.normal(0, 0.1, c).astype(np.float32),
        'var': rng.uniform(0.5, 2.0, c).astype(np.float32),
    }
    params[name] = {
        'scale': rng.uniform(0.5, 1.5, c).astype(np.float32),
        'bias': rng.normal(0, 0.1, c).astype(np.float32),
    }
  out = model.apply(
      {'params': params, 'batch_stats': stats},
      jnp.asarray(x, jnp.float32),
      train=False,
  )

  def conv(h, name, stride):
    w = params[name]['kernel'].astype(np.float64).transpose(3, 2, 0, 1)
    h = _conv_nchw(h, w, stride)
    if 'bias' in params[name]:
      h = h + params[name]['bias'][None, :, None, None]
    return h

  def bn(h, name):
    s, p = stats[name], params[name]
    inv = p['scale'] / np.sqrt(s['var'].astype(np.float64) + 1e-5)
    return (h - s['mean'][None, :, None, None]) * inv[
        None, :, None, None
    ] + p['bias'][None, :, None, None]

  h = _lrelu(conv(x.transpose(0, 3, 1, 2), 'conv0_0', 1))
  h = _lrelu(bn(conv(h, 'conv0_1', 2), 'bn0_1'))
  for i in range(1, 5):
    h = _lrelu(bn(conv(h, f'conv{i}_0', 1), f'bn{i}_0'))
    h = _lrelu(bn(conv(h, f'conv{i}_1', 2), f'bn{i}_1'))
  assert h.shape == (2, 8 * nf, 4, 4)
  h = h.reshape(2, -1)  # torch's feat.view(N, -1) on NCHW
  w1 = params['linear1']['kernel'].T  # torch Linear weight (out, in)
  h = _lrelu(h @ w1.T + params['linear1']['bias'])
  ref = h @ params['linear2']['kernel'] + params['linear2']['bias']
  np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-4, atol=1e-5)


def _top_singular_value(kernel):
  """σ_max of the kernel as torch's spectral_norm reshapes it (O, I*kh*kw)."""
  k = np.asarray(kernel, np.float64)
  return np.linalg.svd(k.reshape(-1, k.shape[-1]), compute_uv=False)[0]


def test_spectral_d_equals_plain_d_with_kernels_over_sigma():
  """ESRGAN* (paper 002): after enough power iterations the spectral D is the
  plain D with every kernel divided by its exact top singular value."""
  x = jax.random.uniform(_key(1), (2, 128, 128, 3))
  sn = _D(num_feat=4, norm='spectral')
  variables = _init(sn, x)
  plain_shapes = _init_shapes(_D(num_feat=4), 128)
  chex.assert_trees_all_equal_shapes(variables['params'],
                                     plain_shapes['params'])
  assert set(variables) == {'params', 'batch_stats', 'spectral'}

  @jax.jit
  def power_iteration(variables):
    _, upd = sn.apply(variables, x, train=False, update_stats=True,
                      mutable=['spectral'])
    return {**variables, 'spectral': upd['spectral']}

  for _ in range(60):
    variables = power_iteration(variables)
  out = sn.apply(variables, x, train=False)
  divided = jax.tree.map(lambda a: a, variables['params'])
  for layer in divided.values():
    if 'kernel' not in layer:
      continue  # BN scale and bias.
    layer['kernel'] = layer['kernel'] / _top_singular_value(layer['kernel'])
  expected = _D(num_feat=4).apply(
      {'params': divided, 'batch_stats': variables['batch_stats']}, x,
      train=False)
  np.testing.assert_allclose(out, expected, rtol=2e-3, atol=1e-5)
  # Without update_stats the vectors are only read, never written.
  _, same = sn.apply(variables, x, train=False, mutable=['spectral'])
  chex.assert_trees_all_equal(same['spectral'], variables['spectral'])


def test_norm_variants_and_no_batch_norm():
  x = jnp.zeros((1, 128, 128, 3))
  shapes = _init_shapes(_D(num_feat=4, norm='san', batch_norm=False), 128)
  assert set(shapes) == {'params', 'san'}
  assert not any(k.startswith('bn') for k in shapes['params'])
  with pytest.raises(ValueError, match='norm must be one of'):
    _D(num_feat=4, norm='weight').init(_key(0), x, train=False)
