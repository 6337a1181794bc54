"""AMGAN's realness discriminator: ESRGAN's D with K outcome logits (jaxsr.models.discriminators)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.models import discriminators

_key = functools.partial(jax.random.key, impl='rbg')
_D = discriminators.VGGStyleDiscriminator


def _shapes(tree):
  return jax.tree.map(lambda a: a.shape, tree)


def _init_shapes(model, size, **kw):
  x = jnp.zeros((1, size, size, model.num_in_ch))
  return jax.eval_shape(
      functools.partial(model.init, train=False, **kw), _key(0), x)


@pytest.mark.parametrize('size', [128, 256])
def test_trunk_is_esrgans_d_with_a_k_outcome_head(size):
  ours = _init_shapes(_D(num_feat=8, input_size=size, num_outputs=11), size)
  esrgan = _init_shapes(
      discriminators.VGGStyleDiscriminator(num_feat=8, input_size=size), size)
  ours_p, esr_p = dict(_shapes(ours['params'])), dict(
      _shapes(esrgan['params']))
  # Same names and shapes everywhere except the last layer: (100, 1) -> K.
  assert esr_p.pop('linear2') == {'kernel': (100, 1), 'bias': (1,)}
  assert ours_p.pop('linear2') == {'kernel': (100, 11), 'bias': (11,)}
  assert ours_p == esr_p
  assert _shapes(ours['batch_stats']) == _shapes(esrgan['batch_stats'])


def test_outputs_are_per_outcome_logits():
  model = _D(num_feat=4, input_size=16, num_outputs=5)
  x = jax.random.uniform(_key(1), (3, 16, 16, 3))
  variables = jax.jit(functools.partial(model.init, train=False))(_key(0), x)
  assert set(variables['params']) == {
      'conv0_0', 'conv0_1', 'bn0_1', 'conv1_0', 'bn1_0', 'conv1_1', 'bn1_1',
      'linear1', 'linear2'}  # 16 -> 8 -> 4: one stage after conv0_1.
  logits, _ = jax.jit(
      functools.partial(model.apply, train=True, mutable=['batch_stats'])
  )(variables, x)
  assert logits.shape == (3, 5) and logits.dtype == jnp.float32
  probs = np.asarray(jax.nn.softmax(logits, axis=-1), np.float64)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
  assert np.ptp(np.asarray(logits), axis=-1).min() > 0  # Not one value.
  # Per image: changing image 0 leaves the eval-mode logits of image 1.
  ev = jax.jit(functools.partial(model.apply, train=False))
  a = ev(variables, x)
  b = ev(variables, x.at[0].set(0.0))
  np.testing.assert_allclose(a[1:], b[1:], rtol=1e-6)
  assert not np.allclose(a[0], b[0])


def test_spectral_without_bn_runs():
  # RealnessGAN's own D: spectral norm, no BN.
  model = _D(num_feat=4, input_size=8, num_outputs=3, norm='spectral',
             batch_norm=False)
  x = jnp.ones((2, 8, 8, 3))
  variables = jax.jit(functools.partial(model.init, train=False))(_key(0), x)
  assert 'batch_stats' not in variables and 'spectral' in variables
  out = jax.jit(functools.partial(model.apply, train=True))(variables, x)
  assert out.shape == (2, 3) and np.isfinite(out).all()


def test_reparam_is_mu_plus_std_times_noise():
  model = _D(num_feat=4, input_size=8, num_outputs=3, reparam=True)
  x = jax.random.uniform(_key(1), (2, 8, 8, 3))
  variables = jax.jit(functools.partial(model.init, train=False))(
      {'params': _key(0), 'reparam': _key(9)}, x)
  assert 'reparam' in variables['params']
  assert 'linear2' not in variables['params']
  assert variables['params']['reparam']['kernel'].shape == (100, 6)

  @jax.jit
  def apply(variables, key):
    return model.apply(variables, x, train=False, rngs={'reparam': key},
                       capture_intermediates=True)

  def run(variables, key):
    out, inter = apply(variables, key)
    stats = inter['intermediates']['reparam']['__call__'][0]
    return np.asarray(out), np.asarray(stats[:, :3]), np.asarray(stats[:, 3:])

  out1, mu, _ = run(variables, _key(1))
  out1b, _, _ = run(variables, _key(1))
  out2, _, _ = run(variables, _key(2))
  np.testing.assert_array_equal(out1, out1b)
  assert not np.allclose(out1, out2)
  # Raising the log-variance bias by 2 log 2 doubles std: out - mu doubles.
  params = jax.tree.map(lambda a: a, variables['params'])  # A new tree.
  bias = params['reparam']['bias']
  params['reparam']['bias'] = bias.at[3:].add(2 * np.log(2.0))
  out3, mu3, _ = run({**variables, 'params': params}, _key(1))
  np.testing.assert_allclose(mu3, mu, rtol=1e-6)
  np.testing.assert_allclose(out3 - mu, 2 * (out1 - mu), rtol=1e-4,
                             atol=1e-6)


def test_bad_configs_name_the_problem():
  x = jnp.zeros((1, 24, 24, 3))
  with pytest.raises(ValueError, match='power of two >= 8, got 24'):
    _D(input_size=24).init(_key(0), x, train=False)
  with pytest.raises(ValueError, match='num_outputs must be >= 1'):
    _D(input_size=8, num_outputs=0).init(
        _key(0), jnp.zeros((1, 8, 8, 3)), train=False)
  with pytest.raises(ValueError, match='expects 8x8 inputs, got 16x16'):
    _D(input_size=8).init(_key(0), jnp.zeros((1, 16, 16, 3)), train=False)
  with pytest.raises(ValueError, match='norm must be one of'):
    _D(input_size=8, norm='weight').init(
        _key(0), jnp.zeros((1, 8, 8, 3)), train=False)
