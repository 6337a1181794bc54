"""The training loop: 1 vs 4 devices, resume after a kill, NaN guard, init_from, stages."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr import checkpoint
from jaxsr import methods
from jaxsr import sharding
from jaxsr import train
from jaxsr.methods import base
from tests import helpers

REPO = helpers.REPO
load_experiment = helpers.load_experiment


def tiny_config(**train_overrides):
  config = load_experiment('rrdb_psnr', 'tiny')
  config.unlock()
  config.train.update(train_overrides)
  return config


_batch = helpers.random_batch


def _run_step(method, mesh, batch):
  repl, data = sharding.replicated(mesh), sharding.data_sharded(mesh)
  state = jax.device_put(method.init(base.init_key(0)), repl)
  step = jax.jit(method.stages[0].step, in_shardings=(repl, data, repl, repl),
                 out_shardings=(repl, repl))
  batch = jax.device_put(batch, data)
  return step(state, batch, jax.random.key(1), {})


def test_four_devices_match_one_device():
  assert jax.device_count() == 4
  config = tiny_config()
  method = methods.build(config)
  batch = _batch(config)
  s1, m1 = _run_step(method, sharding.make_mesh(jax.devices()[:1]), batch)
  s4, m4 = _run_step(method, sharding.make_mesh(), batch)
  for k in m1:
    np.testing.assert_allclose(m1[k], m4[k], rtol=1e-5, atol=1e-7)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=1e-6),
               s1.g_params, s4.g_params)
  # The batch really is split: each device holds a quarter.
  data = jax.device_put(batch['hr'], sharding.data_sharded(sharding.make_mesh()))
  assert {s.data.shape[0] for s in data.addressable_shards} == {1}


def _event_tags(workdir):
  from tensorboard.backend.event_processing import event_accumulator
  acc = event_accumulator.EventAccumulator(str(workdir))
  acc.Reload()
  return set(acc.Tags()['scalars']) | set(acc.Tags()['images']) | set(
      acc.Tags()['tensors'])


def test_resume_after_stop_equals_uninterrupted_run(tmp_path):
  straight = train.train_and_evaluate(tiny_config(num_steps=4, eval_every=2),
                                      str(tmp_path / 'a'))
  tags = _event_tags(tmp_path / 'a')
  assert {'train/psnr/g_l1', 'eval/val/psnr', 'eval/val/grid'} <= tags, tags
  workdir = str(tmp_path / 'b')
  first = train.train_and_evaluate(tiny_config(num_steps=2), workdir)
  assert int(first.step) == 2
  resumed = train.train_and_evaluate(tiny_config(num_steps=4), workdir)
  assert int(resumed.step) == 4
  # Same data order and rng after the restart: the same weights.
  jax.tree.map(np.testing.assert_array_equal, straight.g_params,
               resumed.g_params)
  jax.tree.map(np.testing.assert_array_equal, straight.l_params,
               resumed.l_params)
  mngr = checkpoint.manager(workdir)
  assert list(mngr.all_steps()) == [2, 4]
  mngr.close()
  assert (tmp_path / 'b' / 'results.md').exists()
  assert (tmp_path / 'b' / 'grid.png').exists()


def test_nan_stops_training_and_keeps_last_good_checkpoint(tmp_path,
                                                           monkeypatch):
  real_build = methods.METHODS['psnr']

  def poisoned_build(config):
    method = real_build(config)
    stage = method.stages[0]

    def step(state, batch, rng, constants):
      state, metrics = stage.step(state, batch, rng, constants)
      bad = state.step >= 3  # Poison the weights from step 3 on.
      g = jax.tree.map(lambda x: jnp.where(bad, jnp.nan, x), state.g_params)
      metrics['g_l1'] = jnp.where(bad, jnp.nan, metrics['g_l1'])
      return state.replace(g_params=g), metrics

    return dataclasses.replace(
        method, stages=(dataclasses.replace(stage, step=step),))

  monkeypatch.setitem(methods.METHODS, 'psnr', poisoned_build)
  workdir = str(tmp_path / 'w')
  with pytest.raises(FloatingPointError, match='non-finite g_l1 at step 3'):
    train.train_and_evaluate(tiny_config(num_steps=4), workdir)
  mngr = checkpoint.manager(workdir)
  assert mngr.latest_step() == 2
  mngr.close()


def test_refuses_to_save_non_finite_state(tmp_path):
  mngr = checkpoint.manager(str(tmp_path), async_save=False)
  with pytest.raises(FloatingPointError, match='NaN'):
    checkpoint.save(mngr, 1, {'w': jnp.array([1., jnp.nan])})
  assert mngr.latest_step() is None


def test_init_from_copies_generator_weights(tmp_path):
  source = train.train_and_evaluate(tiny_config(num_steps=2),
                                    str(tmp_path / 'src'))
  config = tiny_config(num_steps=0)
  config.init_from = str(tmp_path / 'src')
  state = train.train_and_evaluate(config, str(tmp_path / 'dst'))
  assert int(state.step) == 0
  jax.tree.map(np.testing.assert_array_equal, source.g_params, state.g_params)
  # A run with nothing to train still leaves a checkpoint (step 0) to
  # evaluate and upscale with.
  mngr = checkpoint.manager(str(tmp_path / 'dst'))
  assert list(mngr.all_steps()) == [0]
  mngr.close()


def test_unknown_config_key_is_named():
  config = tiny_config()
  config.train.bogus = 1
  with pytest.raises(ValueError, match='bogus'):
    train.train_and_evaluate(config, '/tmp/unused')


def test_training_compiles_the_step_once(tmp_path, monkeypatch):
  """Evals and checkpoints between steps never retrace the jitted step."""
  import chex  # pylint: disable=g-import-not-at-top
  build = methods.build
  traces = []

  def counting_build(config):
    method = build(config)
    stage = method.stages[0]

    def step(*args):
      traces.append(1)  # Runs once per trace, never per call.
      return stage.step(*args)

    return dataclasses.replace(method, stages=(dataclasses.replace(
        stage, step=chex.assert_max_traces(step, n=1)),))

  monkeypatch.setattr(methods, 'build', counting_build)
  state = train.train_and_evaluate(
      tiny_config(num_steps=5, eval_every=2, checkpoint_every=2),
      str(tmp_path / 'w'))
  assert int(state.step) == 5
  assert len(traces) == 1


def test_psnr_run_matches_the_pre_stage_code(tmp_path):
  """The same losses on the same seeds as the code before Method/Stage, and
  a resumed run matches the straight run recorded then."""
  workdir = str(tmp_path / 'w')
  train.train_and_evaluate(tiny_config(num_steps=2, log_every=1), workdir)
  state = train.train_and_evaluate(tiny_config(num_steps=3, log_every=1),
                                   workdir)
  helpers.assert_matches_pre_stage('rrdb_psnr', workdir, state)
