"""jaxsr.evaluate --degradation: blurred LR made from HR, saved, scored per kernel width."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxsr import checkpoint
from jaxsr import evaluate
from jaxsr import methods
from jaxsr import restore
from jaxsr import workdir as workdir_lib
from jaxsr.data import degradations
from jaxsr.data import imresize
from jaxsr.data import io
from jaxsr.evaluation import metric_suite
from jaxsr.methods import base
from tests import helpers


def _hr_folder(path, sizes=((40, 44), (36, 48))):
  """Random-texture HR images (not multiples of 4 everywhere: modcropped)."""
  rng = np.random.default_rng(0)
  for i, (h, w) in enumerate(sizes):
    small = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)
    smooth = imresize.imresize(small, output_shape=(h, w))
    io.write_image(path / f'img_{i}.png', smooth)
  return path


@pytest.fixture(scope='module')
def tiny_workdir(tmp_path_factory):
  """An untrained rrdb_psnr:tiny state checkpointed at step 0 (no training)."""
  workdir = tmp_path_factory.mktemp('blind_run')
  config = helpers.experiment_config('rrdb_psnr', 'tiny',
                                     **{'encoder.enabled': False})
  state = methods.build(config).init(base.init_key(config.seed))
  mngr = checkpoint.manager(str(workdir), async_save=False)
  checkpoint.save(mngr, 0, state)
  mngr.wait_until_finished()
  mngr.close()
  workdir_lib.write_config(config, str(workdir), {}, 0)
  return workdir


def test_saved_lr_is_the_degradation_and_bicubic_scores_it(tmp_path):
  data = _hr_folder(tmp_path / 'Set2')
  save = tmp_path / 'lr'
  summary, table = evaluate.run(
      [], 'bicubic', [str(data)], 4, str(tmp_path / 'out'), metrics='psnr,ssim',
      degradation='gaussian', kernel_widths='0.2,2.6', save_lr=str(save))
  scorer = metric_suite.Scorer(('psnr', 'ssim'), 4)
  per_width = {}
  for width in (0.2, 2.6):
    folder = save / f'sigma{width:g}'
    assert sorted(os.listdir(folder)) == ['img_0.png', 'img_1.png']
    psnrs = []
    for path in io.list_images(data):
      hr = imresize.modcrop(io.read_image(path), 4)
      lr = io.read_image(folder / path.name)
      np.testing.assert_array_equal(lr, degradations.degrade_image(hr, width,
                                                                   4))
      if width == 0.2:  # A near-delta kernel: the plain bicubic LR.
        plain = imresize.imresize(hr.astype(np.float64), 1 / 4)
        assert np.abs(lr - np.clip(plain, 0, 255)).max() <= 0.51
      psnrs.append(scorer(imresize.imresize(lr, 4), hr)['psnr'])
    per_width[width] = np.mean(psnrs)
  got = summary['Set2']['bicubic']
  assert got['per_width']['0.2']['psnr'] == pytest.approx(per_width[0.2])
  assert got['per_width']['2.6']['psnr'] == pytest.approx(per_width[2.6])
  assert per_width[2.6] < per_width[0.2] - 1  # Blur costs bicubic dBs.
  # Table 1's layout: the set value is the average over the widths.
  assert got['psnr'] == pytest.approx((per_width[0.2] + per_width[2.6]) / 2)
  assert got['num_images'] == 4 and got['widths'] == [0.2, 2.6]
  assert 'Set2 sigma2.6 PSNR' in table and 'Set2 PSNR' in table
  md = (tmp_path / 'out' / 'results.md').read_text()
  assert "degradation 'gaussian'" in md and 'reflect padding' in md
  on_disk = json.loads((tmp_path / 'out' / 'summary.json').read_text())
  assert on_disk['Set2']['bicubic']['psnr'] == pytest.approx(got['psnr'])
  with open(tmp_path / 'out' / 'Set2_bicubic.csv') as f:
    rows = list(csv.DictReader(f))
  assert [r['kernel_width'] for r in rows] == ['0.2', '0.2', '2.6', '2.6']
  assert (tmp_path / 'out' / 'Set2_sigma2.6_crops.png').exists()


def test_gaussian8_scores_eight_widths_and_saves_a_folder_each(tmp_path):
  data = _hr_folder(tmp_path / 'One', sizes=((24, 28),))
  save = tmp_path / 'lr'
  summary, _ = evaluate.run([], 'bicubic', [str(data)], 4, str(tmp_path / 'o'),
                            metrics='psnr', degradation='gaussian8',
                            save_lr=str(save), crop=0)
  got = summary['One']['bicubic']
  assert list(got['per_width']) == ['1.8', '2', '2.2', '2.4', '2.6', '2.8',
                                    '3', '3.2']
  assert got['num_images'] == 8
  assert sorted(os.listdir(save)) == sorted(f'sigma{w}'
                                            for w in got['per_width'])
  hr = imresize.modcrop(io.read_image(data / 'img_0.png'), 4)
  np.testing.assert_array_equal(io.read_image(save / 'sigma3.2' / 'img_0.png'),
                                degradations.degrade_image(hr, 3.2, 4))


class _WithCode:
  """A restored model plus the kernel-code hooks of a blind method: the
  'predicted code' is the LR's mean, the 'true code' the kernel's centre."""

  def __init__(self, model):
    self._model = model
    self.config, self.predict, self.tileable = (model.config, model.predict,
                                                model.tileable)

  def predict_code(self, lr):
    return np.asarray(lr).mean(keepdims=True).reshape(1, 1)

  def encode_kernel(self, kernels):
    return np.asarray(kernels)[:, 10, 10].reshape(1, 1)


def test_a_trained_workdir_gets_the_blurred_lr_and_its_kernel_error(
    tiny_workdir, tmp_path, monkeypatch):
  load = restore.load_model
  monkeypatch.setattr(restore, 'load_model', lambda w: _WithCode(load(w)))
  data = _hr_folder(tmp_path / 'Set2')
  save = tmp_path / 'lr'
  summary, table = evaluate.run(
      [str(tiny_workdir)], 'bicubic', [str(data)], 4, str(tmp_path / 'o'),
      metrics='psnr', degradation='gaussian', kernel_widths='1.3', tile=0,
      save_lr=str(save), crop=0)
  by_method = summary['Set2']
  assert set(by_method) == {'bicubic', tiny_workdir.name}
  model = by_method[tiny_workdir.name]
  assert np.isfinite(model['psnr']) and model['num_images'] == 2
  centre = degradations.gaussian_kernel_np(1.3)[10, 10]
  want = np.mean([(io.read_image(p).astype(np.float32).mean() / 255 - centre)
                  ** 2 for p in io.list_images(save)])
  assert model['kernel_error'] == pytest.approx(want, rel=1e-5)
  assert 'kernel_error' not in by_method['bicubic']
  assert f'| Set2 | {tiny_workdir.name} | {model["kernel_error"]:.4f} |' in table
  # The model saw the saved LR: its SR of that file gives the same PSNR.
  real = load(str(tiny_workdir))
  scorer = metric_suite.Scorer(('psnr',), 4)
  from jaxsr.evaluation import scoring  # pylint: disable=g-import-not-at-top
  psnrs = [scorer(scoring.model_sr(real.predict, io.read_image(save / p.name),
                                   4), imresize.modcrop(io.read_image(p), 4))
           ['psnr'] for p in io.list_images(data)]
  assert model['psnr'] == pytest.approx(np.mean(psnrs), abs=1e-6)


@pytest.mark.parametrize('kwargs, match', [
    (dict(kernel_widths='1.3'), 'needs --degradation gaussian'),
    (dict(degradation='gaussian'), 'needs --kernel_width'),
    (dict(degradation='gaussian', kernel_widths='1.3,x'), 'comma-separated'),
    (dict(degradation='gaussian', kernel_widths='0'), 'positive kernel width'),
    (dict(degradation='gaussian', kernel_widths='1.3,1.3'), 'widths repeat'),
    (dict(degradation='gaussian8', kernel_widths='1.3'), 'drop --kernel_width'),
    (dict(degradation='motion'), 'unknown degradation protocol'),
])
def test_bad_blind_flags_fail_before_any_model_loads(tmp_path, kwargs, match):
  data = _hr_folder(tmp_path / 'Set2', sizes=((24, 24),))
  with pytest.raises(ValueError, match=match):
    evaluate.run([str(tmp_path / 'no_workdir')], 'bicubic', [str(data)], 4,
                 str(tmp_path / 'o'), **kwargs)


def test_paired_folders_are_refused_with_a_degradation(tmp_path):
  data = _hr_folder(tmp_path / 'hr', sizes=((24, 24),))
  (tmp_path / 'lr').mkdir()
  with pytest.raises(ValueError, match='give HR folders only'):
    evaluate.run([], 'bicubic', [f'{data}:{tmp_path / "lr"}'], 4,
                 str(tmp_path / 'o'), degradation='gaussian',
                 kernel_widths='1.3')


def test_cli_default_blind_metrics_are_psnr_ssim_niqe(shared_data, tmp_path):
  data = _hr_folder(tmp_path / 'Big', sizes=((104, 108),))
  proc = subprocess.run(
      [sys.executable, '-m', 'jaxsr.evaluate', '--baseline', 'bicubic',
       '--data', str(data), '--scale', '4', '--degradation', 'gaussian',
       '--kernel_width', '1.3', '--out', str(tmp_path / 'o'), '--crop', '0',
       '--niqe_params', str(shared_data / 'niqe' / 'niqe_pris_params.npz'),
       '--save_lr', str(tmp_path / 'lr')],
      capture_output=True, text=True, cwd=helpers.REPO,
      env=dict(os.environ, JAX_PLATFORMS='cpu'), timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'Big sigma1.3 NIQE' in proc.stdout
  means = json.loads((tmp_path / 'o' / 'summary.json').read_text())
  assert {'psnr', 'ssim', 'niqe'} <= set(means['Big']['bicubic'])
  assert 'lpips' not in means['Big']['bicubic']
  assert (tmp_path / 'lr' / 'img_0.png').exists()  # One width: no sub-folder.
