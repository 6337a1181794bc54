"""The Method/Stage interface and the loop's handling of it, on two toy methods.

A three-stage pyramid whose 'fine' stage grows the network in use (enter),
killed with SIGKILL at a stage boundary and inside a stage and resumed, and a
method with no stage whose prediction is an optimization with an rng, both
through `python -m jaxsr.main`, then evaluated.
"""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr import checkpoint
from jaxsr import evaluate
from jaxsr import methods
from jaxsr import restore
from jaxsr import train
from jaxsr import upscale
from jaxsr.data import imresize
from jaxsr.data import io
from jaxsr.methods import base
from tests import helpers
from tests.methods import toy_config
from tests.methods import toy_methods

CONFIG = str(helpers.REPO / 'tests' / 'methods' / 'toy_config.py')


@pytest.fixture(autouse=True)
def toys(monkeypatch):
  monkeypatch.setitem(methods.METHODS, 'toy_pyramid', toy_methods.build_pyramid)
  monkeypatch.setitem(methods.METHODS, 'toy_backproject',
                      toy_methods.build_backproject)


def _noop(state, batch, rng, constants):
  del batch, rng, constants
  return state, {}


def test_stage_at_walks_the_cumulative_steps():
  stages = tuple(base.Stage(n, k, _noop) for n, k in (('a', 2), ('b', 1),
                                                      ('c', 3)))
  method = base.Method(init=None, stages=stages, predict=None)
  assert method.num_steps == 6
  got = [(method.stage_at(s)[0].name, method.stage_at(s)[1]) for s in range(6)]
  assert got == [('a', 0), ('a', 0), ('b', 2), ('c', 3), ('c', 3), ('c', 3)]
  with pytest.raises(ValueError, match='past the last stage'):
    method.stage_at(6)
  assert base.Method(init=None, stages=(), predict=None).num_steps == 0


def test_bad_stages_are_refused():
  with pytest.raises(ValueError, match='num_steps=0'):
    base.Stage('gan', 0, _noop)
  with pytest.raises(ValueError, match='lower-case identifier'):
    base.Stage('GAN stage', 1, _noop)
  with pytest.raises(ValueError, match='unique'):
    base.Method(init=None, stages=(base.Stage('a', 1, _noop),) * 2,
                predict=None)


def _config(arg, **overrides):
  config = toy_config.get_config(arg)
  config.unlock()
  for key, value in overrides.items():
    section, _, field = key.rpartition('.')
    (config[section] if section else config)[field] = value
  return config


def _main(workdir, arg, *flags):
  return subprocess.run(
      [sys.executable, '-m', 'jaxsr.main', '--config', f'{CONFIG}:{arg}',
       '--workdir', str(workdir), *flags],
      capture_output=True, text=True, cwd=helpers.REPO, timeout=600)


def _steps(workdir):
  mngr = checkpoint.manager(str(workdir))
  steps = list(mngr.all_steps())
  mngr.close()
  return steps


@pytest.fixture(scope='module')
def straight(tmp_path_factory):
  """The pyramid trained without interruption, in this process."""
  workdir = tmp_path_factory.mktemp('straight')
  with pytest.MonkeyPatch.context() as mp:
    mp.setitem(methods.METHODS, 'toy_pyramid', toy_methods.build_pyramid)
    state = train.train_and_evaluate(_config('pyramid'), str(workdir))
  return workdir, state


def test_pyramid_stages_log_checkpoint_and_report(straight):
  workdir, state = straight
  assert int(state.step) == 6
  scalars = helpers.train_scalars(workdir)
  assert set(scalars[2]) == {'coarse/l1_half'}
  assert set(scalars[4]) == {'fine/l1'} and set(scalars[6]) == {'joint/l1'}
  assert _steps(workdir) == [1, 2, 3, 4, 5, 6]
  saved = json.loads((workdir / 'results_coarse.json').read_text())
  assert saved['step'] == 2 and saved['images'][0]['name'] == 'chelsea'
  text = (workdir / 'results.md').read_text()
  assert 'coarse stage PSNR' in text and 'model PSNR' in text
  assert 'fine stage' not in text  # Only stages with evaluate_at_end.


def test_enter_ran_once_at_the_boundary(straight):
  """At step 2 (coarse done) G1 is still its own init; the 'fine' enter made
  it a copy of G0 before step 2's update, not again at step 3."""
  workdir, _ = straight
  method = methods.build(_config('pyramid'))
  mngr = checkpoint.manager(str(workdir))
  abstract = jax.eval_shape(method.init, base.init_key(0))
  at = {s: mngr.restore(s, args=checkpoint.ocp.args.StandardRestore(abstract))
        for s in (2, 3)}
  mngr.close()
  init = method.init(base.init_key(0))
  jax.tree.map(np.testing.assert_array_equal, at[2].g1_params, init.g1_params)
  # One Adam step from G0(step 2) moves every weight by ~lr at most.
  step = 0.
  for a, b in zip(jax.tree.leaves(at[3].g1_params),
                  jax.tree.leaves(at[2].g0_params)):
    step = max(step, float(np.max(np.abs(np.asarray(a) - np.asarray(b)))))
  assert 0 < step <= 1.01 * _config('pyramid').toy.lr
  # G0 is frozen during 'fine'.
  jax.tree.map(np.testing.assert_array_equal, at[3].g0_params, at[2].g0_params)


def test_pyramid_killed_at_and_inside_a_stage_resumes_exactly(straight,
                                                             tmp_path):
  """SIGKILL right after the checkpoint of step 2 (the coarse/fine boundary:
  the resumed run must enter 'fine'), then of step 3 (inside 'fine': it must
  not enter again); the final state equals the uninterrupted run's."""
  workdir = tmp_path / 'w'
  for kill_at in (2, 3):
    proc = _main(workdir, 'pyramid', f'--config.toy.kill_at={kill_at}',
                 f'--config.toy.workdir={workdir}')
    assert proc.returncode == -9, proc.stderr[-3000:]
    assert _steps(workdir)[-1] == kill_at
  proc = _main(workdir, 'pyramid')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'steps 3..6' in proc.stderr
  assert 'Model vs bicubic' in proc.stderr
  resumed = restore.load_state(str(workdir))
  _, want = straight
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(want),
               jax.device_get(resumed))


def test_no_stage_method_checkpoints_step_0_and_evaluates(tmp_path):
  workdir = tmp_path / 'bp'
  for _ in range(2):  # The rerun finds the checkpoint and only evaluates.
    proc = _main(workdir, 'backproject')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _steps(workdir) == [0]
    assert (workdir / 'results.md').exists()
  model = restore.load_model(str(workdir))
  assert model.step == 0 and not model.tileable
  rng = np.random.default_rng(0)
  lr = rng.random((1, 12, 10, 3)).astype(np.float32)
  sr = np.asarray(model.predict(lr))
  assert sr.shape == (1, 48, 40, 3)
  np.testing.assert_array_equal(sr, model.predict(lr))  # Fixed default rng.
  other = np.asarray(model.predict(lr, jax.random.key(7)))
  assert not np.allclose(other, sr)
  # The search reduces the LR inconsistency of its noisy bicubic start.
  config = _config('backproject')
  start = imresize.imresize_jax(jnp.asarray(lr), 4)
  start = start + config.toy.noise * jax.random.normal(
      jax.random.fold_in(jax.random.key(config.seed), 2), start.shape)
  err = lambda x: float(np.linalg.norm(
      np.asarray(imresize.imresize_jax(jnp.asarray(x), 1 / 4)) - lr))
  assert err(sr) < 0.2 * err(start)
  # evaluate and upscale use it whole (tile ignored), with its default rng.
  data = tmp_path / 'Set1'
  io.write_image(data / 'a.png', rng.integers(0, 256, (40, 36, 3), np.uint8))
  summary, _ = evaluate.run([str(workdir)], 'bicubic', [str(data)], 4,
                            str(tmp_path / 'eval'), tile=8, overlap=2)
  assert np.isfinite(summary['Set1']['bp']['psnr'])
  src = tmp_path / 'in.png'
  io.write_image(src, rng.integers(0, 256, (9, 11, 3), np.uint8))
  out = upscale.upscale_files(str(workdir), [str(src)],
                              str(tmp_path / 'out.png'), tile=4, overlap=1)
  assert io.read_image(out[0]).shape == (36, 44, 3)
  assert os.path.getsize(out[0]) > 0


def test_single_image_method_runs_on_a_one_device_mesh(tmp_path, monkeypatch):
  """Batch 1 cannot be split over the 4 test devices: a data-parallel method
  says so before its first step; one with num_devices=1 trains."""
  config = _config('pyramid', **{'data.batch_size': 1, 'toy.steps': (1, 1, 1)})
  with pytest.raises(ValueError, match=r'batch_size=1 must be a multiple of '
                     r'the number of devices \(4\)'):
    train.train_and_evaluate(config, str(tmp_path / 'a'))
  assert _steps(tmp_path / 'a') == []
  monkeypatch.setitem(
      methods.METHODS, 'toy_pyramid',
      lambda c: dataclasses.replace(toy_methods.build_pyramid(c),
                                    num_devices=1))
  state = train.train_and_evaluate(config, str(tmp_path / 'b'))
  assert int(state.step) == 3
  assert {d for x in jax.tree.leaves(state) for d in x.devices()} == {
      jax.devices()[0]}


def test_blocks_of_steps_in_one_call_match_single_steps(straight, tmp_path,
                                                       monkeypatch):
  """steps_per_call=2 (lax.scan over 2 batches): the same states and
  per-step metrics as one step per call, one compile per stage, and
  checkpoints on block ends only."""
  traced = []
  build = toy_methods.build_pyramid

  def counting(config):
    method = build(config)
    stages = []
    for stage in method.stages:
      def step(*args, inner=stage.step, name=stage.name):
        traced.append(name)
        return inner(*args)
      stages.append(dataclasses.replace(stage, step=step))
    return dataclasses.replace(method, stages=tuple(stages))

  monkeypatch.setitem(methods.METHODS, 'toy_pyramid', counting)
  workdir = tmp_path / 'blocks'
  state = train.train_and_evaluate(
      _config('pyramid', **{'toy.steps_per_call': 2}), str(workdir))
  assert traced == ['coarse', 'fine', 'joint']
  assert _steps(workdir) == [2, 4, 6]
  want_dir, want = straight
  # Up to float noise (the scanned program fuses differently), which Adam
  # turns into steps of up to 1% of lr=1e-2 where a gradient is ~eps.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                       atol=1e-4),
               jax.device_get(state), jax.device_get(want))
  got, expected = helpers.train_scalars(workdir), helpers.train_scalars(
      want_dir)
  assert sorted(got) == [1, 2, 3, 4, 5, 6]
  for step in got:
    assert set(got[step]) == set(expected[step])
    for key, value in got[step].items():
      np.testing.assert_allclose(value, expected[step][key], rtol=1e-4)
  with pytest.raises(ValueError, match='steps_per_call=0'):
    base.Stage('a', 1, _noop, steps_per_call=0)
