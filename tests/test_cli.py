"""The command-line tools on a tiny checkpoint: main, evaluate, upscale."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from jaxsr import evaluate
from jaxsr import upscale
from jaxsr.data import io
from tests.helpers import REPO


@pytest.fixture(scope='module')
def tiny_workdir(tmp_path_factory):
  """A tiny PSNR run trained through the real command line."""
  workdir = tmp_path_factory.mktemp('run')
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  proc = subprocess.run(
      [sys.executable, '-m', 'jaxsr.main',
       '--config', str(REPO / 'experiments' / 'rrdb_psnr.py') + ':tiny',
       '--config.train.num_steps=2', '--workdir', str(workdir)],
      capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'Model vs bicubic' in proc.stderr
  assert (workdir / 'results.md').exists()
  return workdir


def test_unknown_override_is_rejected(tmp_path):
  proc = subprocess.run(
      [sys.executable, '-m', 'jaxsr.main',
       '--config', str(REPO / 'experiments' / 'rrdb_psnr.py') + ':tiny',
       '--config.train.num_stepz=2', '--workdir', str(tmp_path)],
      capture_output=True, text=True, cwd=REPO, timeout=300)
  assert proc.returncode != 0
  assert 'num_stepz' in proc.stderr


def _hr_folder(path, n=2):
  path.mkdir()
  rng = np.random.default_rng(0)
  for i in range(n):
    Image.fromarray(rng.integers(0, 256, (36 + 4 * i, 44, 3), np.uint8)).save(
        path / f'img_{i}.png')
  return path


def test_evaluate_model_and_bicubic(tiny_workdir, tmp_path):
  data = _hr_folder(tmp_path / 'Set2')
  summary, table = evaluate.run([str(tiny_workdir)], 'bicubic', [str(data)], 4,
                                str(tmp_path / 'out'), tile=0)
  by_method = summary['Set2']
  assert set(by_method) == {'bicubic', tiny_workdir.name}
  for means in by_method.values():
    assert np.isfinite(means['psnr']) and 0 < means['ssim'] <= 1
    assert means['num_images'] == 2
  assert 'Set2 PSNR' in table
  assert (tmp_path / 'out' / 'Set2_bicubic.csv').read_text().startswith('name,')
  # One command gives the table and the zoomed-crop grid of a trained model:
  # a header strip, then one row per image of bicubic | model | HR.
  grid = np.asarray(Image.open(tmp_path / 'out' / 'Set2_crops.png'))
  assert grid.shape[0] == 16 + 2 * 192 + 4


def test_evaluate_cli_json(tmp_path):
  data = _hr_folder(tmp_path / 'SetX', 1)
  out = tmp_path / 'summary.json'
  proc = subprocess.run(
      [sys.executable, '-m', 'jaxsr.evaluate', '--baseline', 'bicubic',
       '--data', str(data), '--scale', '4', '--json', str(out),
       '--out', str(tmp_path / 'o')],
      capture_output=True, text=True, cwd=REPO, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  summary = json.loads(out.read_text())
  assert set(summary['SetX']['bicubic']) >= {'psnr', 'ssim'}
  assert '| SetX PSNR |' in proc.stdout


def test_upscale_tiled_matches_untiled(tiny_workdir, tmp_path):
  rng = np.random.default_rng(1)
  src = tmp_path / 'in.png'
  io.write_image(src, rng.integers(0, 256, (40, 52, 3), np.uint8))
  whole = upscale.upscale_files(str(tiny_workdir), [str(src)],
                                str(tmp_path / 'whole.png'), 0, 0)[0]
  tiled = upscale.upscale_files(str(tiny_workdir), [str(src)],
                                str(tmp_path / 'tiled.png'), 16, 24)[0]
  a, b = io.read_image(whole), io.read_image(tiled)
  assert a.shape == (160, 208, 3)
  # The tiny net's receptive field fits in 24 LR pixels: identical up to the
  # uint8 rounding of float noise.
  assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_bicubic_baseline_on_set5_is_the_published_number(shared_data,
                                                          tmp_path):
  """python -m jaxsr.evaluate --baseline bicubic on Set5 gives 28.42 dB."""
  summary, _ = evaluate.run([], 'bicubic',
                            [str(shared_data / 'benchmarks' / 'Set5')], 4,
                            str(tmp_path))
  assert abs(summary['Set5']['bicubic']['psnr'] - 28.42) < 0.01
  assert abs(summary['Set5']['bicubic']['ssim'] - 0.8104) < 0.001


def test_paper_table_bolds_the_best_of_each_row():
  summary = {'Set5': {'a': {'psnr': 30., 'ssim': .8, 'psnr_std': 2., 'l1_y': .4},
                      'b': {'psnr': 31., 'ssim': .7, 'psnr_std': 3., 'l1_y': .3}}}
  table = evaluate.paper_table(summary, ['a', 'b'])
  assert '| Set5 PSNR | 30.0000 | **31.0000** |' in table
  assert '| Set5 SSIM | **0.8000** | 0.7000 |' in table
  assert '| Set5 PSD | **2.0000** | 3.0000 |' in table
  assert '| Set5 L1 (Y) | 0.4000 | **0.3000** |' in table


def test_sigkill_then_rerun_resumes_from_the_last_checkpoint(tmp_path):
  """A job killed with SIGKILL mid-run resumes from its latest checkpoint."""
  import re
  import signal
  import time
  workdir = tmp_path / 'w'
  cmd = [sys.executable, '-m', 'jaxsr.main',
         '--config', str(REPO / 'experiments' / 'rrdb_psnr.py') + ':tiny',
         '--config.train.checkpoint_every=2', '--workdir', str(workdir)]
  proc = subprocess.Popen(cmd + ['--config.train.num_steps=100000'],
                          cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  ckpts = workdir / 'checkpoints'
  deadline = time.time() + 300
  while time.time() < deadline and not (
      ckpts.is_dir() and any(p.name.isdigit() and int(p.name) >= 4
                             for p in ckpts.iterdir())):
    time.sleep(0.2)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  done = sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
  assert done, 'no checkpoint was written before the kill'
  last = done[-1]
  rerun = subprocess.run(cmd + [f'--config.train.num_steps={last + 2}'],
                         capture_output=True, text=True, cwd=REPO, timeout=600)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert re.search(rf'steps {last}\.\.{last + 2}', rerun.stderr)
  final = sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
  assert final[-1] == last + 2
