"""SinGAN's per-scale G and D: shapes, eq. 6's skip, the 11x11 receptive field, widths, init."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.models import singan


def test_widths_double_every_four_scales_up_to_128():
  assert [singan.features_at(n) for n in range(14)] == (
      [32] * 4 + [64] * 4 + [128] * 6)
  assert singan.features_at(5, base=4, cap=6) == 6


def test_generator_is_the_cropped_input_plus_tanh_of_the_convs():
  g = singan.Generator(features=8)
  x = jax.random.normal(jax.random.key(0), (2, 31, 27, 3))
  y = jax.random.normal(jax.random.key(1), (2, 31, 27, 3))
  variables = g.init(jax.random.key(2), x, y, train=False)
  out = g.apply(variables, x, y, train=False)
  assert out.shape == (2, 21, 17, 3)  # Five VALID 3x3 convs: -10.
  # A zero tail leaves exactly the centre crop of y (eq. 6's skip) ...
  params = jax.tree.map(lambda v: v, variables['params'])
  params['tail'] = jax.tree.map(jnp.zeros_like, params['tail'])
  plain = g.apply({**variables, 'params': params}, x, y, train=False)
  np.testing.assert_allclose(plain, y[:, 5:-5, 5:-5], atol=1e-6)
  # ... and the residual is a tanh: within (-1, 1) of it.
  diff = np.asarray(out - y[:, 5:-5, 5:-5])
  assert np.all(np.abs(diff) < 1) and np.abs(diff).max() > 0


def test_discriminator_sees_11x11_patches():
  d = singan.Discriminator(features=4)
  x = jnp.zeros((1, 25, 25, 3))
  variables = d.init(jax.random.key(0), x, train=False)
  assert d.apply(variables, x, train=False).shape == (1, 15, 15, 1)
  # The critic value at (7, 7) depends on inputs 7..17 in each direction.
  grad = jax.grad(lambda v: d.apply(variables, v, train=False)[0, 7, 7, 0])(
      jax.random.normal(jax.random.key(1), (1, 25, 25, 3)))
  rows = np.nonzero(np.abs(np.asarray(grad[0])).sum(axis=(1, 2)))[0]
  cols = np.nonzero(np.abs(np.asarray(grad[0])).sum(axis=(0, 2)))[0]
  assert (rows.min(), rows.max(), cols.min(), cols.max()) == (7, 17, 7, 17)
  assert singan.RECEPTIVE_FIELD == 11


def test_init_is_the_official_weights_init():
  g = singan.Generator(features=64)
  x = jnp.zeros((1, 40, 40, 3))
  v = g.init(jax.random.key(0), x, x, train=False)
  kernels = np.concatenate([np.ravel(v['params']['body'][b]['conv']['kernel'])
                            for b in ('head', 'block1', 'block2', 'block3')])
  assert np.std(kernels) == pytest.approx(0.02, rel=0.05)
  assert abs(np.mean(kernels)) < 1e-3
  scales = np.concatenate([np.ravel(v['params']['body'][b]['norm']['scale'])
                           for b in ('head', 'block1', 'block2', 'block3')])
  assert np.mean(scales) == pytest.approx(1.0, abs=0.01)
  assert np.std(scales) == pytest.approx(0.02, rel=0.3)
  bias = np.asarray(v['params']['body']['block1']['conv']['bias'])
  bound = 1 / np.sqrt(9 * 64)  # PyTorch's default conv bias.
  assert np.all(np.abs(bias) <= bound) and np.abs(bias).max() > bound / 2
  assert set(v['batch_stats']['body']['head']['norm']) == {'mean', 'var'}


def test_batch_norm_uses_batch_statistics_in_training():
  g = singan.Generator(features=4)
  x = jax.random.normal(jax.random.key(0), (1, 20, 20, 3))
  v = g.init(jax.random.key(1), x, x, train=False)
  out, updates = g.apply(v, 3 * x + 1, x, train=True, mutable=['batch_stats'])
  eval_out = g.apply(v, 3 * x + 1, x, train=False)
  assert not np.allclose(out, eval_out)
  head = updates['batch_stats']['body']['head']['norm']
  conv = v['params']['body']['head']['conv']
  y = jax.lax.conv_general_dilated(
      3 * x + 1, conv['kernel'], (1, 1), 'VALID',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + conv['bias']
  y = np.asarray(y, np.float64)
  # PyTorch momentum 0.1: 10% of the batch statistic, from (0, 1).
  np.testing.assert_allclose(head['mean'], 0.1 * y.mean(axis=(0, 1, 2)),
                             rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(head['var'],
                             0.9 + 0.1 * y.var(axis=(0, 1, 2)), rtol=1e-4)


def test_winograd_kernel_grad_changes_no_value_or_gradient():
  """kernel_grad='winograd' computes the same G, D and gradients, the WGAN-GP
  penalty's second order included (float64: to rounding)."""
  from jaxsr.losses import adversarial  # pylint: disable=g-import-not-at-top
  with jax.enable_x64(True):
    keys = jax.random.split(jax.random.key(3), 4)
    real = jax.random.uniform(keys[0], (1, 16, 14, 3), jnp.float64, -1, 1)
    fake = jax.random.uniform(keys[1], (1, 16, 14, 3), jnp.float64, -1, 1)
    d_xla = singan.Discriminator(features=8)
    d_win = singan.Discriminator(features=8, kernel_grad='winograd')
    variables = d_xla.init(keys[2], real, train=False)

    def loss(params, disc):
      def critic(x):
        return disc.apply({'params': params,
                           'batch_stats': variables['batch_stats']}, x,
                          train=True, mutable=['batch_stats'])[0]
      wgan = jnp.mean(critic(fake)) - jnp.mean(critic(real))
      return wgan + adversarial.pixel_gradient_penalty(critic, real, fake,
                                                       keys[3], 0.1)

    want = jax.grad(loss)(variables['params'], d_xla)
    got = jax.grad(loss)(variables['params'], d_win)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-9,
                                 atol=1e-12)
    x = jax.random.uniform(keys[0], (1, 20, 18, 3), jnp.float64, -1, 1)
    g_xla = singan.Generator(features=8)
    g_vars = g_xla.init(keys[1], x, x, train=False)

    def g_loss(params, gen):
      out = gen.apply({'params': params,
                       'batch_stats': g_vars['batch_stats']}, x, x,
                      train=True, mutable=['batch_stats'])[0]
      return jnp.sum(jnp.square(out))

    want = jax.grad(g_loss)(g_vars['params'], g_xla)
    got = jax.grad(g_loss)(g_vars['params'],
                           singan.Generator(features=8, kernel_grad='winograd'))
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-9,
                                 atol=1e-12)
  with pytest.raises(ValueError, match='kernel_grad'):
    singan.Discriminator(features=8, kernel_grad='auto').init(
        keys[2], real, train=False)
