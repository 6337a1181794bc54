"""python -m jaxsr.main with a bad flag or value: one line on stderr, the traceback only with --verbose."""

import os
import subprocess
import sys

from tests.helpers import REPO

TINY = str(REPO / 'experiments' / 'rrdb_psnr.py') + ':tiny'


def _main(*args, workdir):
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  return subprocess.run(
      [sys.executable, '-m', 'jaxsr.main', '--config', TINY, *args,
       '--workdir', str(workdir)],
      capture_output=True, text=True, cwd=REPO, env=env, timeout=300)


def _one_line(proc) -> str:
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), proc.stderr
  return lines[0]


def test_unknown_key_is_one_line_with_its_section_and_the_valid_keys(
    tmp_path):
  proc = _main('--config.model.nonsense=1', workdir=tmp_path / 'run')
  assert proc.returncode == 2
  line = _one_line(proc)
  assert "unknown config key 'nonsense' in config.model" in line
  for key in ('num_feat', 'num_block', 'num_grow_ch', 'bicubic_skip'):
    assert key in line
  assert not (tmp_path / 'run').exists()


def test_scale_zero_is_one_line_and_nothing_is_written(tmp_path):
  """It used to end in a ZeroDivisionError traceback."""
  proc = _main('--config.scale=0', workdir=tmp_path / 'run')
  assert proc.returncode == 1
  line = _one_line(proc)
  assert 'config.scale=0: expected' in line and '--verbose' in line
  assert not (tmp_path / 'run').exists()


def test_scale_five_is_refused_before_anything_is_built(tmp_path):
  """--verbose shows where the error was raised: in the config check, with
  no method, model, data or training code on the stack."""
  proc = _main('--config.scale=5', '--config.data.hr_patch=40', '--verbose',
               workdir=tmp_path / 'run')
  assert proc.returncode != 0
  assert 'Traceback' in proc.stderr
  assert 'config.scale=5: expected one of 1, 2, 3, 4' in proc.stderr
  frames = [l for l in proc.stderr.splitlines() if l.strip().startswith(
      'File ') and 'jaxsr' in l]
  assert frames and 'config_check.py' in frames[-1], frames
  for late in ('methods', 'models', 'data', 'train.py'):
    assert not any(f'jaxsr/{late}' in f for f in frames), frames
  assert not (tmp_path / 'run').exists()
