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


def test_evaluate_cli_json(tiny_workdir, tmp_path):
  data = _hr_folder(tmp_path / 'SetX', 1)
  out = tmp_path / 'summary.json'
  proc = subprocess.run(
      [sys.executable, '-m', 'jaxsr.evaluate', '--baseline', 'bicubic',
       '--workdir', str(tiny_workdir), '--name', 'tiny',
       '--data', str(data), '--scale', '4', '--json', str(out),
       '--out', str(tmp_path / 'o')],
      capture_output=True, text=True, cwd=REPO, timeout=300,
      env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert proc.returncode == 0, proc.stderr[-2000:]
  summary = json.loads(out.read_text())
  assert set(summary['SetX']['bicubic']) >= {'psnr', 'ssim'}
  assert set(summary['SetX']) == {'bicubic', 'tiny'}
  assert '| SetX PSNR |' in proc.stdout
  # Restoring the model logs no Orbax INFO lines (as jaxsr.main).
  assert 'orbax' not in proc.stderr.lower(), proc.stderr[-3000:]


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


# Issue 16: upscale and evaluate check their inputs before loading a model,
# never overwrite one output with another, and keep gray images gray.


@pytest.fixture(scope='module')
def tiny_model(tiny_workdir):
  from jaxsr import restore  # pylint: disable=g-import-not-at-top
  return restore.load_model(str(tiny_workdir))


def _image(path, shape, seed=0):
  rng = np.random.default_rng(seed)
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(rng.integers(0, 256, shape, np.uint8)).save(path)
  return str(path)


def test_upscale_refuses_outputs_that_collide_before_loading(tmp_path):
  """No model is loaded (the workdir does not exist): every error is first."""
  nowork = str(tmp_path / 'no_workdir')
  a = _image(tmp_path / 'a' / 'img.png', (8, 8, 3))
  b = _image(tmp_path / 'b' / 'img.png', (8, 8, 3))
  with pytest.raises(ValueError, match=r'a/img.png and .*b/img.png would both '
                     r'be written to .*out/img.png'):
    upscale.upscale_files(nowork, [a, b], str(tmp_path / 'out'), 0, 0)
  with pytest.raises(ValueError, match='would overwrite the input'):
    upscale.upscale_files(nowork, [a], a, 0, 0)
  with pytest.raises(ValueError, match=r"extension '.xyz'"):
    upscale.upscale_files(nowork, [a], str(tmp_path / 'x.xyz'), 0, 0)
  with pytest.raises(ValueError, match='2 inputs need an output folder'):
    upscale.upscale_files(nowork, [a, _image(tmp_path / 'c.png', (8, 8, 3))],
                          str(tmp_path / 'x.jpg'), 0, 0)
  with pytest.raises(ValueError, match='--quality must be in 1..100'):
    upscale.upscale_files(nowork, [a], str(tmp_path / 'x.jpg'), 0, 0,
                          quality=0)
  assert not (tmp_path / 'out').exists() and not (tmp_path / 'x.jpg').exists()


def test_upscale_checks_flags_and_inputs_before_loading(tmp_path):
  nowork = str(tmp_path / 'no_workdir')
  a = _image(tmp_path / 'a.png', (8, 8, 3))
  with pytest.raises(ValueError, match='--overlap must be >= 0.*-10'):
    upscale.upscale_files(nowork, [a], str(tmp_path / 'o.png'), 128, -10)
  with pytest.raises(FileNotFoundError, match='missing.png'):
    upscale.upscale_files(nowork, [a, str(tmp_path / 'missing.png')],
                          str(tmp_path / 'o'), 128, 32)
  (tmp_path / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n broken')
  with pytest.raises(ValueError, match='broken.png: cannot decode'):
    upscale.upscale_files(nowork, [str(tmp_path / 'broken.png')],
                          str(tmp_path / 'o'), 128, 32)


def test_upscale_writes_jpeg_with_its_quality_and_gray_as_gray(tiny_model,
                                                               tmp_path):
  rgb = np.random.default_rng(2).integers(0, 256, (20, 24, 3), np.uint8)
  gray = rgb[..., 1]
  Image.fromarray(rgb).save(tmp_path / 'rgb.png')
  Image.fromarray(gray).save(tmp_path / 'gray.png')  # Mode L.
  Image.fromarray(np.repeat(gray[..., None], 3, -1)).save(
      tmp_path / 'gray_as_rgb.png')
  jobs = upscale.plan([str(tmp_path / n) for n in (
      'rgb.png', 'gray.png', 'gray_as_rgb.png')], str(tmp_path / 'out'),
                      'png', 95)
  upscale.run_jobs(tiny_model, jobs, 0, 0)
  out = tmp_path / 'out'
  jpg, = upscale.run_jobs(tiny_model, upscale.plan(
      [str(tmp_path / 'rgb.png')], str(tmp_path / 'sr.jpg'), 'png', 50), 0, 0,
                          quality=50)
  # The JPEG is Pillow's quality-50 encoding of the same SR.
  reference = tmp_path / 'reference.jpg'
  Image.open(out / 'rgb.png').save(reference, quality=50)
  got = Image.open(jpg)
  assert got.format == 'JPEG' and got.size == (96, 80)
  np.testing.assert_array_equal(np.asarray(got),
                                np.asarray(Image.open(reference)))
  # A gray input comes back gray: the Rec.601 luma of the RGB SR of the same
  # pixels (Pillow's own RGB -> L conversion, to within its rounding).
  sr_gray = Image.open(out / 'gray.png')
  assert sr_gray.mode == 'L'
  luma = np.asarray(Image.open(out / 'gray_as_rgb.png').convert('L'))
  assert np.abs(np.asarray(sr_gray).astype(int) - luma).max() <= 1


def test_upscale_warns_when_the_overlap_is_below_the_receptive_field(
    tiny_model, tmp_path, caplog):
  """The tiny RRDBNet (1 block, x4) reads 19 LR pixels on each side
  (tests/evaluation/test_receptive_field.py); overlaps of 19 and more are
  not warned about (test_bad_tiles_are_refused_and_small_overlaps_warned)."""
  src = [_image(tmp_path / 'in.png', (24, 30, 3))]
  with caplog.at_level('WARNING'):
    upscale.run_jobs(tiny_model, upscale.plan(src, str(tmp_path / 'a.png'),
                                              'png', 95), 8, 0)
  assert '--overlap 0 is below the receptive field' in caplog.text
  assert 'use --overlap 19' in caplog.text


def test_upscale_cli_is_quiet_and_its_errors_one_line(
    tiny_workdir, tmp_path):
  src = _image(tmp_path / 'in.png', (12, 16, 3))
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  cmd = [sys.executable, '-m', 'jaxsr.upscale', '--workdir', str(tiny_workdir),
         '-o', str(tmp_path / 'out.png'), src]
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO,
                        env=env, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert (tmp_path / 'out.png').exists()
  assert 'orbax' not in proc.stderr.lower(), proc.stderr[-3000:]
  cmd[cmd.index('-o') + 1] = str(tmp_path / 'folder')
  proc = subprocess.run(cmd + [str(tmp_path / 'nope.png')],
                        capture_output=True, text=True, cwd=REPO, env=env,
                        timeout=300)
  assert proc.returncode == 1
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr
  assert lines[0].startswith(f'error: no image file at {tmp_path / "nope.png"}')


def test_evaluate_keeps_one_column_per_workdir_of_the_same_name(
    tiny_workdir, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  runs = [tmp_path / 'a' / 'run', tmp_path / 'b' / 'run']
  for r in runs:
    shutil.copytree(tiny_workdir, r)
  data = _hr_folder(tmp_path / 'Set1', 1)
  summary, table = evaluate.run([str(r) for r in runs], 'bicubic', [str(data)],
                                4, str(tmp_path / 'out'), tile=0)
  assert list(summary['Set1']) == ['bicubic', 'a/run', 'b/run']
  assert '| set | bicubic | a/run | b/run |' in table
  assert (tmp_path / 'out' / 'Set1_a_run.csv').exists()
  assert (tmp_path / 'out' / 'Set1_b_run.csv').exists()
