"""The PSNR pre-training step against hand-derived Adam and L1 math."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxsr import methods
from jaxsr.methods import base
from tests.test_train import tiny_config


def _setup():
  config = tiny_config()
  method = methods.build(config)
  state = method.init(base.init_key(0))
  rng = np.random.default_rng(0)
  p, s = config.data.hr_patch, config.scale
  batch = {'lr': jnp.asarray(rng.random((2, p // s, p // s, 3), np.float32)),
           'hr': jnp.asarray(rng.random((2, p, p, 3), np.float32))}
  return config, method, state, batch


def test_losses_are_l1_of_g_and_l():
  config, method, state, batch = _setup()
  g, l = methods.psnr.build_generator(config), methods.psnr.build_encoder(
      config)
  step = jax.jit(method.stages[0].step)
  _, metrics = step(state, batch, jax.random.key(0), {})
  sr = np.asarray(g.apply({'params': state.g_params}, batch['lr']))
  down = np.asarray(l.apply({'params': state.l_params}, batch['hr']))
  np.testing.assert_allclose(metrics['g_l1'],
                             np.abs(sr - np.asarray(batch['hr'])).mean(),
                             rtol=1e-5)
  np.testing.assert_allclose(metrics['l_l1'],
                             np.abs(down - np.asarray(batch['lr'])).mean(),
                             rtol=1e-5)
  np.testing.assert_allclose(metrics['learning_rate'], config.optim.lr)


def test_first_adam_step_moves_each_weight_by_lr_times_sign_of_gradient():
  """Adam's first update is -lr * g / (|g| + eps) (bias corrections cancel)."""
  config, method, state, batch = _setup()
  g = methods.psnr.build_generator(config)
  grads = jax.grad(lambda p: jnp.mean(jnp.abs(
      g.apply({'params': p}, batch['lr']) - batch['hr'])))(state.g_params)
  step = jax.jit(method.stages[0].step)
  new_state, _ = step(state, batch, jax.random.key(0), {})
  lr, eps = config.optim.lr, config.optim.eps

  def check(old, new, grad):
    grad = np.asarray(grad, np.float64)
    expected = np.asarray(old) - lr * grad / (np.abs(grad) + eps)
    np.testing.assert_allclose(new, expected, atol=1e-7)

  jax.tree.map(check, state.g_params, new_state.g_params, grads)
  assert int(new_state.step) == 1


def test_training_reduces_both_losses_on_a_fixed_batch():
  _, method, state, batch = _setup()
  step = jax.jit(method.stages[0].step)
  _, first = step(state, batch, jax.random.key(0), {})
  for _ in range(30):
    state, metrics = step(state, batch, jax.random.key(0), {})
  assert metrics['g_l1'] < first['g_l1']
  assert metrics['l_l1'] < first['l_l1']


def test_step_decay_halves_the_learning_rate():
  from jaxsr.optim import schedules
  sched = schedules.step_decay(2e-4, 200_000)
  np.testing.assert_allclose(
      [float(sched(s)) for s in (0, 199_999, 200_000, 400_000)],
      [2e-4, 2e-4, 1e-4, 5e-5])
  multi = schedules.multistep(1e-4, (50_000, 100_000))
  np.testing.assert_allclose(
      [float(multi(s)) for s in (0, 49_999, 50_000, 100_001)],
      [1e-4, 1e-4, 5e-5, 2.5e-5])
  # A repeated milestone halves twice (MultiStepLR's Counter); milestones
  # as fractions of a stage's length.
  twice = schedules.multistep(1.0, (0, 0, 2))
  np.testing.assert_allclose([float(twice(s)) for s in (0, 1, 2)],
                             [0.25, 0.25, 0.125])
  from jaxsr import config_lib  # pylint: disable=g-import-not-at-top
  fractions = config_lib.adam(2e-4, milestone_fractions=(0.125, 0.5))
  sched = base.schedule(fractions, 400_000)
  np.testing.assert_allclose(
      [float(sched(s)) for s in (49_999, 50_000, 199_999, 200_000)],
      [2e-4, 1e-4, 1e-4, 5e-5])
  fractions.milestones = (10,)
  with np.testing.assert_raises_regex(ValueError, 'not both'):
    base.schedule(fractions, 100)


def test_microbatches_give_the_whole_batch_gradient():
  """Micro-batches (scanned, interleaved samples) average to the same L1 and
  gradient, hence the same Adam step, on 1 and 4 devices."""
  from jaxsr import sharding  # pylint: disable=g-import-not-at-top
  from tests import helpers  # pylint: disable=g-import-not-at-top
  batch = helpers.random_batch(tiny_config(), n=8)
  results = {}
  for m in (1, 2, 4):
    config = tiny_config()
    config.optim.microbatch_size = 8 // m
    config.data.batch_size = 8
    method = methods.build(config)
    mesh = sharding.make_mesh()
    repl, data = sharding.replicated(mesh), sharding.data_sharded(mesh)
    step = jax.jit(method.stages[0].step,
                   in_shardings=(repl, data, repl, repl))
    state = method.init(base.init_key(0))
    results[m] = step(state, jax.device_put(batch, data), jax.random.key(0),
                      {})
  x = methods.psnr.microbatched(jnp.arange(8), 4)
  np.testing.assert_array_equal(x, [[0, 4], [1, 5], [2, 6], [3, 7]])
  for m in (2, 4):
    for k in ('g_l1', 'l_l1'):
      np.testing.assert_allclose(results[m][1][k], results[1][1][k],
                                 rtol=1e-5)
    # Adam's first step is ~ -lr * sign(gradient): equal gradients move
    # every weight alike, except where a gradient is ~0 (float noise).
    a = np.concatenate([np.ravel(v) for v in jax.tree.leaves(
        results[m][0].g_params)])
    b = np.concatenate([np.ravel(v) for v in jax.tree.leaves(
        results[1][0].g_params)])
    assert np.mean(np.isclose(a, b, rtol=1e-4, atol=1e-6)) > 0.999
  config = tiny_config()
  config.optim.microbatch_size = 3
  with np.testing.assert_raises_regex(ValueError, 'microbatch_size=3'):
    methods.build(config)
