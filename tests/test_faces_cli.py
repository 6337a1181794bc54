"""python -m jaxsr.faces: sample (rendered latents against a numpy transcription of the DCGAN), its one-line errors, compare's table."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from jaxsr import faces as faces_cli
from jaxsr.data import imresize
from jaxsr.data import io
from jaxsr.evaluation import face_compare
from jaxsr.pretrained import torch_pickle
from tests import conftest
from tests.helpers import REPO
from tests.pretrained.test_dcgan import numpy_generator

PRIOR = conftest.SHARED_DATA / 'face_prior'


@pytest.fixture
def face_prior():
  if not PRIOR.is_dir():
    pytest.skip(f'{PRIOR} is absent')
  return PRIOR


def _start(*args) -> subprocess.Popen:
  """python -m jaxsr.faces args, started (not waited for), on one CPU
  device (nothing is sharded; the runs say so in their logs)."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS='')
  return subprocess.Popen(
      [sys.executable, '-m', 'jaxsr.faces', *map(str, args)],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
      env=env)


def _wait(proc: subprocess.Popen, timeout: int = 600):
  out, err = proc.communicate(timeout=timeout)
  return proc.returncode, out, err


def _one_line(err: str) -> str:
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), err[-3000:]
  return lines[0]


def _numpy_faces(z: np.ndarray) -> np.ndarray:
  """The README's G (float64 numpy, from the torch files) -> uint8 NHWC."""
  sd = torch_pickle.load_torch_file(PRIOR / 'generator.pt')
  images = numpy_generator(sd, z).transpose(0, 2, 3, 1)  # NCHW -> NHWC
  return np.floor((images + 1.0) / 2.0 * 255.0 + 0.5).astype(np.uint8)


def _assert_rendered(out_dir, z):
  names = sorted(p.name for p in out_dir.glob('*.png'))
  assert names == [f'{i:04d}.png' for i in range(len(z))]
  truth = _numpy_faces(z)
  for i, name in enumerate(names):
    image = io.read_image(out_dir / name)
    assert image.shape == (32, 32, 3)
    # float32 vs float64: a value near a rounding boundary may flip by one.
    diff = np.abs(image.astype(int) - truth[i].astype(int))
    assert diff.max() <= 1 and np.mean(diff) < 0.05, (name, diff.max())


def test_sample_renders_the_given_latents(face_prior, tmp_path):
  z = np.random.default_rng(0).uniform(-1, 1, (3, 100)).astype(np.float32)
  np.save(tmp_path / 'z.npy', z)
  rc, out, err = _wait(_start('sample', '--prior', 'dcgan', '--weights',
                              face_prior, '--latents', tmp_path / 'z.npy',
                              '--out', tmp_path / 'samples'))
  assert rc == 0, err[-3000:]
  assert 'wrote 3 images' in out
  _assert_rendered(tmp_path / 'samples', z)
  assert not (tmp_path / 'samples' / 'latents.npy').exists()


def test_sample_without_latents_draws_uniform_rows_and_saves_them(
    face_prior, tmp_path):
  rc, _, err = _wait(_start('sample', '--weights', face_prior, '--num', 2,
                            '--seed', 5, '--out', tmp_path / 's'))
  assert rc == 0, err[-3000:]
  z = np.load(tmp_path / 's' / 'latents.npy')
  assert z.dtype == np.float32 and z.shape == (2, 100)
  assert np.all(np.abs(z) <= 1) and not np.array_equal(z[0], z[1])
  _assert_rendered(tmp_path / 's', z)


def test_bad_latents_and_commands_are_one_line(tmp_path):
  """The processes run at once (their imports dominate). The latents are
  checked before the prior loads, so only the width case needs the real
  prior; the other cases of read_latents are tested in-process below."""
  good = np.zeros((2, 100), np.float32)
  np.save(tmp_path / 'wide.npy', np.zeros((2, 99), np.float32))
  nan = good.copy()
  nan[1, 7] = np.nan
  np.save(tmp_path / 'nan.npy', nan)
  (tmp_path / 'z.txt').write_text('0.1 0.2\n')
  none = tmp_path / 'no_prior'
  cases = {  # name -> (args, exit status, what the line must say)
      'missing': (('sample', '--weights', none, '--latents',
                   tmp_path / 'gone.npy'), 1, 'gone.npy: no such file'),
      'nan': (('sample', '--weights', none, '--latents',
               tmp_path / 'nan.npy'), 1, 'NaN or infinite'),
      'not_npy': (('sample', '--weights', none, '--latents',
                   tmp_path / 'z.txt'), 1, 'z.txt is not a .npy file'),
      'command': (('samples', '--weights', none, '--out', tmp_path), 2,
                  "expected one command of ('sample', 'compare')"),
  }
  if PRIOR.is_dir():
    cases['width'] = (('sample', '--weights', PRIOR, '--latents',
                       tmp_path / 'wide.npy'), 1,
                      "2 rows of 99 values: this prior's latent has 100")
  procs = {}
  for name, (args, _, _) in cases.items():
    if '--out' not in args:
      args = (*args, '--out', tmp_path / f'out_{name}')
    procs[name] = _start(*args)
  for name, proc in procs.items():
    rc, _, err = _wait(proc, 300)
    _, status, says = cases[name]
    assert rc == status, (name, err[-2000:])
    assert says in _one_line(err), name
    if name != 'command':
      assert not (tmp_path / f'out_{name}').exists(), name


@pytest.mark.parametrize('content, says', [
    ('npz', 'an .npz archive'),
    ('empty', 'float32 (0, 100)'),
    ('int', 'int64 (2, 100)'),
    ('vector', 'float32 (100,)'),
    ('objects', 'unreadable .npy'),
    ('truncated', 'unreadable .npy'),
])
def test_read_latents_refuses(tmp_path, content, says):
  path = tmp_path / 'z.npy'
  if content == 'npz':
    np.savez(tmp_path / 'z.npz', z=np.zeros((2, 100), np.float32))
    os.replace(tmp_path / 'z.npz', path)
  elif content == 'empty':
    np.save(path, np.zeros((0, 100), np.float32))
  elif content == 'int':
    np.save(path, np.zeros((2, 100), np.int64))
  elif content == 'vector':
    np.save(path, np.zeros(100, np.float32))
  elif content == 'objects':
    np.save(path, np.array([{'z': 1}], dtype=object), allow_pickle=True)
  else:
    np.save(path, np.zeros((4, 100), np.float32))
    path.write_bytes(path.read_bytes()[:300])
  with pytest.raises(ValueError, match=re.escape(says)) as e:
    faces_cli.read_latents(str(path), 100)
  assert '\n' not in str(e.value)


def test_read_latents_keeps_the_values_as_float32(tmp_path):
  z = np.random.default_rng(1).uniform(-1, 1, (5, 100))  # float64
  np.save(tmp_path / 'z.npy', z)
  got = faces_cli.read_latents(str(tmp_path / 'z.npy'), 100)
  assert got.dtype == np.float32
  np.testing.assert_array_equal(got, z.astype(np.float32))
  assert faces_cli.read_latents(str(tmp_path / 'z.npy')).shape == (5, 100)


def _recomputed_lr_l2(run_dir, name) -> float:
  """PULSE's L2 of a saved result, from the PNGs alone: the SR downscaled
  (MATLAB bicubic, float) against the LR of the saved LR | down(SR) pair."""
  sr = io.read_image(run_dir / 'sr' / f'{name}.png').astype(np.float64) / 255
  pair = io.read_image(run_dir / 'lr' / f'{name}.png')
  lr = pair[::8, :32:8].astype(np.float64) / 255  # x8 pixel repetition.
  small = imresize.imresize(sr, output_shape=lr.shape[:2])
  return float(np.mean((small - lr) ** 2))


def _markdown_rows(text: str) -> dict[str, list[str]]:
  """{row label: its cells} of a Markdown table (the header row too)."""
  rows = {}
  for line in text.splitlines():
    if line.startswith('|') and not line.startswith('|---'):
      cells = [c.strip() for c in line.strip().strip('|').split('|')]
      rows[cells[0]] = cells[1:]
  return rows


_TINY_COMPARE = {}


def tiny_compare(tmp_path_factory):
  """(exit status, stdout, stderr, out folder) of `python -m jaxsr.faces
  compare` on 2 prior faces, x8, 'tiny' (3 iterations): 3 runs, once per
  session (tests/test_faces_notebook.py resumes a copy of them). Only
  read the folder."""
  if not _TINY_COMPARE:
    out = tmp_path_factory.mktemp('faces_compare') / 'cmp'
    rc, stdout, err = _wait(_start(
        'compare', '--weights', PRIOR, '--out', out, '--variant', 'tiny',
        '--num', 2, '--scales', 8, '--sets', 'prior'), 900)
    _TINY_COMPARE['run'] = (rc, stdout, err, out)
  return _TINY_COMPARE['run']


@pytest.mark.slow
def test_compare_writes_the_table_of_every_method(face_prior,
                                                  tmp_path_factory):
  rc, stdout, err, out = tiny_compare(tmp_path_factory)
  assert rc == 0, err[-3000:]
  header = '| | bicubic | pulse | ours_no_ls | ours |'
  assert header in stdout
  text = (out / 'results.md').read_text()
  assert text.splitlines()[:3] == ['### prior_x8', '', header]
  table = json.loads((out / 'summary.json').read_text())
  assert list(table) == ['prior_x8']
  row = table['prior_x8']
  assert list(row) == ['pulse', 'bicubic', 'ours_no_ls', 'ours']
  cells = _markdown_rows(text)
  assert cells['LR L2'][0] == cells['success'][0] == '-'  # Bicubic's.
  bicubic = []
  for column in ('pulse', 'ours_no_ls', 'ours'):
    run = out / f'prior_x8_{column}'
    results = json.loads((run / 'results.json').read_text())
    faces = results['faces']
    assert [f['name'] for f in faces] == ['prior_000', 'prior_001']
    lr_l2 = [_recomputed_lr_l2(run, f['name']) for f in faces]
    # The saved SR is rounded to uint8, so ~1e-5 from the float search's.
    np.testing.assert_allclose([f['lr_l2'] for f in faces], lr_l2, atol=3e-5)
    np.testing.assert_allclose(row[column]['lr_l2'], np.mean(lr_l2),
                               atol=3e-5)
    assert row[column]['success_rate'] == np.mean(
        [f['lr_l2'] <= results['eps'] for f in faces])
    assert row[column]['psnr'] == pytest.approx(
        np.mean([f['psnr'] for f in faces]))
    bicubic.append([f['bicubic_psnr'] for f in faces])
    # results.md shows the run's own numbers in the column's cell.
    i = ['bicubic', 'pulse', 'ours_no_ls', 'ours'].index(column)
    assert cells['LR L2'][i] == f'{row[column]["lr_l2"]:.5f}'
    assert cells['PSNR'][i] == f'{row[column]["psnr"]:.2f}'
  # Bicubic depends on the faces only: the same in the three runs.
  assert bicubic[0] == bicubic[1] == bicubic[2]
  assert row['bicubic']['psnr'] == pytest.approx(np.mean(bicubic[0]))


def test_compare_configs_are_the_paper_s_three_methods():
  runs = dict(face_compare.configs(face_compare.CONFIG_FILE, '/w', [8, 4],
                                   ['prior', 'lfw'], 5))
  assert list(runs)[:3] == ['prior_x8_pulse', 'prior_x8_ours_no_ls',
                            'prior_x8_ours']
  assert len(runs) == 12
  for name, config in runs.items():
    assert config.prior.kind == 'dcgan' and config.prior.weights == '/w'
    assert config.scale == int(name.split('_')[1][1:])
    assert config.data.demo == name.split('_')[0]
    assert config.data.num_faces == 5 and config.data.batch_size == 5
    assert config.search.steps == 100  # §3.
    column = name.split('_', 2)[2]
    # PULSE: no L_s, G frozen; the paper: G fine-tuned, λ_s 0.5 or 0.
    assert config.loss.lambda_s == {'pulse': 0, 'ours_no_ls': 0,
                                    'ours': 0.5}[column]
    assert config.search.finetune_g == (column != 'pulse')
  with pytest.raises(ValueError, match='face set'):
    face_compare.configs(face_compare.CONFIG_FILE, '/w', [8], ['celeba'], 2)
  with pytest.raises(ValueError, match='scale 3'):
    face_compare.configs(face_compare.CONFIG_FILE, '/w', [3], ['prior'], 2)
