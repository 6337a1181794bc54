"""python -m jaxsr.singan on a tiny trained pyramid: sample, sr, paint2image, sr_benchmark."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxsr import singan as cli
from jaxsr.evaluation import singan_benchmark
from jaxsr.methods import singan
from jaxsr.methods import singan_generate
from jaxsr.data import imresize
from jaxsr.data import io
from tests import helpers


@pytest.fixture
def workdir(singan_tiny_run):
  """A 2-scale SinGAN trained 2 iterations per scale (experiments ':tiny'),
  trained once per session (tests/conftest.py); the commands only read it."""
  return singan_tiny_run[0]


def test_sample_writes_numbered_pngs_at_the_asked_size(workdir, tmp_path):
  paths = cli.sample_files(str(workdir), 3, (1.0, 1.5), 0,
                           str(tmp_path / 'samples'))
  assert [p.rsplit('/', 1)[1] for p in paths] == ['0000.png', '0001.png',
                                                   '0002.png']
  _, net, state = cli.load(str(workdir))
  h, w = net.sizes[-1]
  images = [io.read_image(p) for p in paths]
  assert all(im.shape == (h, round(1.5 * w), 3) for im in images)
  assert (tmp_path / 'samples' / 'grid.png').exists()
  # Different noise, different samples (compared before rounding to uint8:
  # the 4-iteration tiny pyramid's samples vary by less than a grey level).
  floats = np.asarray(singan_generate.sample(
      state, jax.random.key(0), net=net, num=2, scale_h=1.5))
  assert not np.array_equal(floats[0], floats[1])
  assert state.reals[-1].shape == (h, w, 3)


def test_sr_of_the_training_image_and_of_a_file(workdir, tmp_path):
  _, net, _ = cli.load(str(workdir))
  h, w = net.sizes[-1]
  out = cli.sr_file(str(workdir), 4, str(tmp_path / 'sr.png'))
  assert io.read_image(out).shape == (4 * h, 4 * w, 3)
  rng = np.random.default_rng(0)
  io.write_image(tmp_path / 'odd.png', rng.integers(0, 256, (13, 11, 3),
                                                     np.uint8))
  out = cli.sr_file(str(workdir), 2, str(tmp_path / 'sr2.png'),
                    str(tmp_path / 'odd.png'))
  assert io.read_image(out).shape == (26, 22, 3)


def test_paint2image_and_its_scale_check(workdir, tmp_path):
  rng = np.random.default_rng(1)
  io.write_image(tmp_path / 'paint.png', rng.integers(0, 256, (50, 70, 3),
                                                       np.uint8))
  _, net, _ = cli.load(str(workdir))
  out = cli.paint_file(str(workdir), str(tmp_path / 'paint.png'), 1,
                       str(tmp_path / 'out.png'))
  assert io.read_image(out).shape == (*net.sizes[-1], 3)
  with pytest.raises(ValueError, match='inject_scale'):
    cli.paint_file(str(workdir), str(tmp_path / 'paint.png'), 0,
                   str(tmp_path / 'bad.png'))


def test_parse_size():
  assert cli.parse_size('1.0,1.5') == (1.0, 1.5)
  assert cli.parse_size('2') == (2.0, 2.0)
  with pytest.raises(ValueError, match='V,H'):
    cli.parse_size('1,2,3')


def test_sample_command_line(workdir, tmp_path):
  proc = subprocess.run(
      [sys.executable, '-m', 'jaxsr.singan', 'sample', '--workdir',
       str(workdir), '--num', '2', '--out', str(tmp_path / 's')],
      capture_output=True, text=True, cwd=helpers.REPO, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert sorted(p.name for p in (tmp_path / 's').iterdir()) == [
      '0000.png', '0001.png', 'grid.png']
  bad = subprocess.run([sys.executable, '-m', 'jaxsr.singan', 'samples',
                        '--out', 'x'], capture_output=True, text=True,
                       cwd=helpers.REPO, timeout=300)
  assert bad.returncode != 0 and 'usage' in bad.stderr


_CONFIG = '''
import importlib.util
spec = importlib.util.spec_from_file_location('singan_experiment', {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)


def get_config(arg=None):
  # TTUR without the attack: the stacked (vmapped) adaptive step compiles
  # for minutes on 2 cores; tests/methods/test_singan.py tests the attack.
  config = module.get_config('sr,tiny,ttur')
  config.unlock()
  config.pyramid.sr_min_size = 20  # Two scales for a 26 px LR.
  config.singan.stack_images = 'always'  # 'auto' trains one by one on CPU.
  config.lock()
  return config
'''


def test_sr_benchmark_writes_the_table_4_summary(shared_data, tmp_path,
                                                 monkeypatch):
  monkeypatch.setenv('JAXSR_NIQE_PARAMS',
                     str(shared_data / 'niqe' / 'niqe_pris_params.npz'))
  hr_dir = tmp_path / 'hr'
  demo = __import__('jaxsr.data.demo', fromlist=['demo'])
  images = dict(demo.load(['coffee', 'astronaut', 'chelsea']))
  # coffee and astronaut: 104 x 156 HR, one stacked run; chelsea alone.
  io.write_image(hr_dir / 'coffee.png',
                 imresize.imresize(images['coffee'], 0.26)[:105])
  io.write_image(hr_dir / 'astronaut.png',
                 imresize.imresize(images['astronaut'], 0.305)[:104, :156])
  io.write_image(hr_dir / 'chelsea.png',
                 imresize.imresize(images['chelsea'], 0.4))
  config = tmp_path / 'singan_test.py'
  config.write_text(_CONFIG.format(
      path=str(helpers.REPO / 'experiments' / 'singan.py')))
  out = tmp_path / 'out'
  proc = subprocess.run(
      [sys.executable, '-m', 'jaxsr.singan', 'sr_benchmark', '--data',
       str(hr_dir), '--scale', '4', '--config', str(config), '--out',
       str(out)], capture_output=True, text=True, cwd=helpers.REPO,
      timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.loads((out / 'summary.json').read_text())
  assert {'singan', 'bicubic'} <= set(summary)
  for method in ('singan', 'bicubic'):
    means = summary[method]
    assert np.isfinite(means['rmse']) and np.isfinite(means['niqe'])
    assert [r['name'] for r in means['images']] == ['astronaut', 'chelsea',
                                                     'coffee']
    assert means['rmse'] == pytest.approx(
        np.mean([r['rmse'] for r in means['images']]))
  assert sorted(p.name for p in (out / 'runs').iterdir()) == [
      'astronaut+1', 'chelsea']
  for name in ('astronaut', 'chelsea', 'coffee'):
    # The LR is the MATLAB bicubic downscale of the modcropped HR.
    hr = imresize.modcrop(io.read_image(hr_dir / f'{name}.png'), 4)
    np.testing.assert_array_equal(io.read_image(out / 'lr' / f'{name}.png'),
                                  imresize.imresize(hr, 1 / 4))
    assert io.read_image(out / 'sr' / f'{name}.png').shape == hr.shape
  # The stacked run's SR of coffee is its own pyramid's, not astronaut's.
  sr = {n: io.read_image(out / 'sr' / f'{n}.png').astype(float)
        for n in ('astronaut', 'coffee')}
  hr = {n: imresize.modcrop(io.read_image(hr_dir / f'{n}.png'), 4)
        for n in ('astronaut', 'coffee')}
  assert np.mean(np.abs(sr['coffee'] - hr['coffee'])) < np.mean(
      np.abs(sr['coffee'] - hr['astronaut']))
  assert '| singan |' in proc.stdout and '| bicubic |' in proc.stdout
  assert (out / 'grid.png').exists() and (out / 'results.md').exists()


def test_sr_benchmark_groups_same_size_lrs_only_when_stacking():
  shapes = [(26, 39, 3), (32, 32, 3), (26, 39, 3), (26, 40, 3)]
  assert singan_benchmark.groups(shapes, True) == [[0, 2], [1], [3]]
  assert singan_benchmark.groups(shapes, False) == [[0], [1], [2], [3]]
  config = helpers.experiment_config('singan', 'sr_demo')
  assert config.singan.stack_images == 'auto'
  # On this CPU backend 'auto' trains one by one (faster there).
  assert not singan.stacks_images(config)
  config.singan.stack_images = 'always'
  assert singan.stacks_images(config)
  config.singan.stack_images = 'yes'
  with pytest.raises(ValueError, match='stack_images'):
    singan.stacks_images(config)


def test_sample_scores_sifid_with_a_local_inception_file(workdir, tmp_path):
  from jaxsr.metrics import sifid  # pylint: disable=g-import-not-at-top
  from jaxsr.pretrained import torch_writer  # pylint: disable=g-import-not-at-top
  from tests.models import test_inception as ref  # pylint: disable=g-import-not-at-top
  # Generated weights in torchvision's layout, only the layers SIFID reads.
  state_dict = ref.torch_state_dict(np.random.default_rng(3), ref.STEM)
  weights = tmp_path / 'inception.pth'
  torch_writer.save_torch_file(weights, state_dict)
  with pytest.raises(FileNotFoundError, match='no such file'):
    cli.sample_files(str(workdir), 2, (1.0, 1.0), 0, str(tmp_path / 'x'),
                     inception=str(tmp_path / 'missing.pth'))
  assert not (tmp_path / 'x').exists()  # Refused before generating.
  paths = cli.sample_files(str(workdir), 2, (1.0, 1.0), 0,
                           str(tmp_path / 'samples'), inception=str(weights))
  scores = json.loads((tmp_path / 'samples' / 'sifid.json').read_text())
  _, _, state = cli.load(str(workdir))
  real = cli.to_uint8(state.reals[-1][None])[0]
  variables = ref.to_variables(state_dict)
  want = [sifid.sifid(real, io.read_image(p), variables) for p in paths]
  np.testing.assert_allclose(scores['samples'], want, rtol=1e-5)
  assert scores['layer'] == 'conv2d_2b' and min(want) > 0
  assert scores['mean'] == pytest.approx(np.mean(want))
