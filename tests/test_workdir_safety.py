"""No workdir lost: changed flags on a rerun, damaged checkpoints, read-only restores (issue 16 items 1, 2, 5)."""

import json
import logging
import os
import pathlib
import shutil

import jax
import numpy as np
import pytest

from jaxsr import checkpoint
from jaxsr import methods
from jaxsr import restore
from jaxsr import train
from jaxsr import workdir as workdir_lib
from tests import helpers
from tests.methods import toy_config
from tests.methods import toy_methods


@pytest.fixture(autouse=True)
def toys(monkeypatch):
  monkeypatch.setitem(methods.METHODS, 'toy_pyramid', toy_methods.build_pyramid)


def _toy(**overrides):
  """The toy pyramid, one step per stage, a checkpoint after every step."""
  config = toy_config.get_config('pyramid')
  config.unlock()
  config.toy.steps = (1, 1, 1)
  for key, value in overrides.items():
    section, _, field = key.rpartition('.')
    (config[section] if section else config)[field] = value
  return config


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """(workdir, final state) of an uninterrupted 3-step toy run: steps 1, 2, 3."""
  with pytest.MonkeyPatch.context() as mp:
    mp.setitem(methods.METHODS, 'toy_pyramid', toy_methods.build_pyramid)
    workdir = tmp_path_factory.mktemp('toy') / 'run'
    state = train.train_and_evaluate(_toy(), str(workdir))
  assert checkpoint.steps_on_disk(str(workdir)) == [1, 2, 3]
  return workdir, jax.device_get(state)


def _copy(trained, tmp_path) -> pathlib.Path:
  workdir = tmp_path / 'run'
  shutil.copytree(trained[0], workdir)
  return workdir


def _snapshot(folder) -> dict:
  """{relative path: (size, mtime_ns, bytes)} of everything under folder."""
  out = {}
  for root, dirs, files in os.walk(folder):
    for name in dirs + files:
      path = os.path.join(root, name)
      st = os.stat(path)
      data = None
      if os.path.isfile(path):
        with open(path, 'rb') as f:
          data = f.read()
      out[os.path.relpath(path, folder)] = (st.st_size, st.st_mtime_ns, data)
  return out


def _damage(step_dir: pathlib.Path, how: str) -> None:
  """Damages a step folder as a full disk, a killed copy or a user would."""
  if how == 'truncated':
    # Every array data file loses its second half.
    for path in step_dir.rglob('*'):
      if path.is_file() and path.parent.name == 'd':
        with open(path, 'r+b') as f:
          f.truncate(path.stat().st_size // 2)
  elif how == 'no_metadata':
    (step_dir / 'default' / '_METADATA').unlink()
  elif how == 'no_default':
    shutil.rmtree(step_dir / 'default')


# Item 1: a rerun with changed flags.


def _workdir_with_checkpoint(tmp_path, config) -> pathlib.Path:
  """A workdir as a run of `config` left it (config.json, a step folder);
  the refusal comes before any checkpoint is read, so the folder is a stub."""
  workdir = tmp_path / 'w'
  (workdir / 'checkpoints' / '2' / 'default').mkdir(parents=True)
  (workdir / 'config.json').write_text(config.to_json_best_effort(indent=2))
  return workdir


def test_changed_model_flag_is_refused_before_config_json_changes(tmp_path):
  config = helpers.experiment_config('rrdb_psnr', 'tiny')
  workdir = _workdir_with_checkpoint(tmp_path, config)
  before = _snapshot(workdir)
  changed = helpers.experiment_config(
      'rrdb_psnr', 'tiny', **{'model.num_feat': 16, 'optim.lr': 1e-3,
                              'train.num_steps': 9})
  with pytest.raises(ValueError) as info:
    train.train_and_evaluate(changed, str(workdir))
  message = str(info.value)
  # Both refused keys with their stored and new values, not the allowed one.
  assert 'model.num_feat (stored 8, now 16)' in message
  assert 'optim.lr (stored 0.0002, now 0.001)' in message
  assert 'num_steps' not in message
  assert f'--workdir {workdir}-2' in message  # How to start a new workdir.
  assert _snapshot(workdir) == before  # config.json untouched.


def test_refused_rerun_leaves_a_working_workdir(trained, tmp_path):
  """The issue's sequence: a rerun with a changed method flag, then the
  read-only commands on the same workdir."""
  workdir = _copy(trained, tmp_path)
  before = _snapshot(workdir)
  with pytest.raises(ValueError, match=r'toy.lr \(stored 0.01, now 0.5\)'):
    train.train_and_evaluate(_toy(**{'toy.lr': 0.5}), str(workdir))
  assert _snapshot(workdir) == before
  assert restore.load_model(str(workdir)).step == 3


def test_resumable_keys_are_a_documented_rule():
  """The decisions of jaxsr/workdir.py's RESUMABLE, key by key."""
  allowed = ['train.num_steps', 'train.log_every', 'train.checkpoint_every',
             'eval.tile', 'data.num_threads', 'data.val_dir', 'name',
             'init_from', 'model.remat', 'optim.microbatch_size',
             'ema.predict']
  refused = ['method', 'scale', 'seed', 'model.num_feat', 'model.dtype',
             'encoder.enabled', 'disc.num_feat', 'critic.norm',
             'loss.adv_weight', 'loss.pixel_weight', 'optim.lr', 'optim.b1',
             'd_optim.lr', 'ema.decay', 'data.train_dir', 'data.hr_patch',
             'data.batch_size', 'perceptual.weights', 'singan.iters_per_scale']
  assert all(workdir_lib.resumable(k, 1, 2, 10) for k in allowed)
  assert not any(workdir_lib.resumable(k, 1, 2, 10) for k in refused)
  # The warm-up may move only while the run has not passed its end.
  assert workdir_lib.resumable('psnr_warmup_steps', 600, 1000, 400)
  assert workdir_lib.resumable('psnr_warmup_steps', 600, 400, 400)
  assert not workdir_lib.resumable('psnr_warmup_steps', 600, 300, 400)
  assert not workdir_lib.resumable('psnr_warmup_steps', 600, 1000, 800)


def test_no_checkpoint_yet_allows_any_change(tmp_path):
  config = helpers.experiment_config('rrdb_psnr', 'tiny')
  (tmp_path / 'config.json').write_text(config.to_json_best_effort())
  changed = helpers.experiment_config('rrdb_psnr', 'tiny',
                                      **{'model.num_feat': 16})
  assert workdir_lib.check_rerun(changed, str(tmp_path), None) == {}
  with pytest.raises(ValueError, match='model.num_feat'):
    workdir_lib.check_rerun(changed, str(tmp_path), 0)


def test_allowed_change_resumes_and_is_recorded(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  state = train.train_and_evaluate(_toy(**{'train.log_every': 2}),
                                   str(workdir))
  assert int(state.step) == 3
  assert json.loads((workdir / 'config.json').read_text())['train'][
      'log_every'] == 2
  lines = (workdir / 'config_history.jsonl').read_text().splitlines()
  assert len(lines) == 1
  record = json.loads(lines[0])
  assert record['resumed_at_step'] == 3
  assert record['changes'] == {'train.log_every': {'stored': 1, 'now': 2}}


# Item 2: a damaged newest checkpoint.


def test_resume_skips_a_truncated_newest_step_and_keeps_it(trained, tmp_path,
                                                           caplog):
  workdir = _copy(trained, tmp_path)
  _damage(workdir / 'checkpoints' / '3', 'truncated')
  damaged = _snapshot(workdir / 'checkpoints' / '3')
  with caplog.at_level(logging.WARNING):
    state = train.train_and_evaluate(_toy(), str(workdir))
  # Resumed from step 2 and retrained step 3: the uninterrupted run's state.
  assert int(state.step) == 3
  jax.tree.map(np.testing.assert_array_equal, trained[1],
               jax.device_get(state))
  assert str(workdir / 'checkpoints' / '3') in caplog.text
  # The damaged folder is kept, byte for byte, next to the new step 3.
  kept = workdir / checkpoint.DAMAGED_DIR / '3'
  assert {k: v[0::2] for k, v in _snapshot(kept).items()} == {
      k: v[0::2] for k, v in damaged.items()}
  assert checkpoint.steps_on_disk(str(workdir)) == [1, 2, 3]


@pytest.mark.parametrize('how', ['truncated', 'no_metadata', 'no_default'])
def test_restore_falls_back_to_newest_intact_step_read_only(trained, tmp_path,
                                                            caplog, how):
  workdir = _copy(trained, tmp_path)
  step_dir = workdir / 'checkpoints' / '3'
  _damage(step_dir, how)
  before = _snapshot(workdir)
  with caplog.at_level(logging.WARNING):
    state = restore.load_state(str(workdir))
  assert int(state.step) == 2
  assert f'checkpoint {step_dir} is damaged' in caplog.text
  assert _snapshot(workdir) == before  # Nothing moved, nothing written.
  raw = checkpoint.load_raw(str(workdir))  # init_from's path.
  assert int(raw['step']) == 2


def test_every_step_damaged_names_each_folder(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  _damage(workdir / 'checkpoints' / '3', 'no_metadata')
  for step in (1, 2):
    _damage(workdir / 'checkpoints' / str(step), 'truncated')
  config_json = (workdir / 'config.json').read_bytes()
  with pytest.raises(ValueError) as info:
    restore.load_state(str(workdir))
  message = str(info.value)
  assert 'default/_METADATA missing' in message
  for step in (1, 2, 3):
    assert str(workdir / 'checkpoints' / str(step)) in message
  # Training refuses too (no silent start from scratch), and writes nothing.
  with pytest.raises(ValueError, match='none of the 3 checkpoint'):
    train.train_and_evaluate(_toy(**{'train.log_every': 2}), str(workdir))
  assert (workdir / 'config.json').read_bytes() == config_json
  assert checkpoint.steps_on_disk(str(workdir)) == [1, 2, 3]


# Item 5: read-only commands write nothing into a workdir.


def test_restore_creates_nothing_in_a_workdir_without_checkpoints(tmp_path):
  workdir = tmp_path / 'w'
  workdir.mkdir()
  (workdir / 'config.json').write_text(
      helpers.experiment_config('rrdb_psnr', 'tiny').to_json_best_effort())
  before = _snapshot(workdir)
  with pytest.raises(FileNotFoundError, match='no checkpoint under'):
    restore.load_model(str(workdir))
  with pytest.raises(FileNotFoundError, match='no checkpoint under'):
    restore.load_state(str(workdir))
  with pytest.raises(FileNotFoundError, match='no checkpoint under'):
    checkpoint.load_raw(str(workdir))
  assert _snapshot(workdir) == before
  assert not (workdir / 'checkpoints').exists()


def test_loading_and_predicting_leave_a_workdir_unchanged(trained, tmp_path):
  workdir = _copy(trained, tmp_path)
  before = _snapshot(workdir)
  model = restore.load_model(str(workdir))
  assert model.step == 3
  model.predict(np.zeros((1, 4, 4, 3), np.float32))
  assert _snapshot(workdir) == before
