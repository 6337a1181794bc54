"""Face SR by latent exploration (paper 001) end to end: the run's outputs, resume, restore, the real DCGAN prior's self-consistency."""

import json
import os

import jax
import numpy as np
import pytest

from jaxsr import restore
from jaxsr import train
from jaxsr.data import imresize
from jaxsr.data import io
from jaxsr.methods import latent_search
from tests import conftest
from tests import helpers


@pytest.fixture(scope='module')
def demo_run(tmp_path_factory):
  """The 'demo,tiny' run (2 prior faces, 3 iterations) on the real DCGAN."""
  shared_data = conftest.SHARED_DATA
  if not (shared_data / 'face_prior').is_dir():
    pytest.skip(f'{shared_data / "face_prior"} is absent')
  workdir = str(tmp_path_factory.mktemp('faces') / 'run')
  config = helpers.experiment_config(
      'face_explore', 'demo,tiny',
      **{'prior.weights': str(shared_data / 'face_prior')})
  train.train_and_evaluate(config, workdir)
  return config, workdir


def test_the_run_writes_every_output(demo_run):
  config, workdir = demo_run
  results = json.loads(open(os.path.join(workdir, 'results.json')).read())
  names = [r['name'] for r in results['faces']]
  assert names == ['prior_000', 'prior_001']
  for name in names:
    for folder in ('sr', 'best', 'last'):
      image = io.read_image(os.path.join(workdir, folder, name + '.png'))
      assert image.shape == (32, 32, 3)
    assert io.read_image(os.path.join(workdir, 'lr', name + '.png')).shape == (
        32, 64, 3)
    lines = open(os.path.join(workdir, 'curves', name + '.csv')).readlines()
    assert lines[0].strip() == 'iteration,total,l2,semantic,geocross'
    assert len(lines) == 1 + config.search.steps
    assert os.path.exists(os.path.join(workdir, 'curves', name + '.png'))
  for row in results['faces']:
    assert row['success'] == (row['lr_l2'] <= config.search.eps)
    assert {'psnr', 'ssim', 'bicubic_psnr', 'bicubic_ssim'} <= set(row)
  summary = results['summary']
  assert summary['faces'] == 2
  assert summary['success_rate'] == np.mean([r['success']
                                             for r in results['faces']])
  assert summary['niqe'] is None  # A 2-face mosaic is below a NIQE block.


def test_lr_l2_is_the_written_result_downscaled(demo_run):
  """results.json's lr_l2 against the saved SR and the LR, recomputed."""
  _, workdir = demo_run
  results = json.loads(open(os.path.join(workdir, 'results.json')).read())
  row = results['faces'][0]
  sr = io.read_image(os.path.join(workdir, 'sr', row['name'] + '.png'))
  pair = io.read_image(os.path.join(workdir, 'lr', row['name'] + '.png'))
  lr = pair[::8, :32:8].astype(np.float64) / 255  # Pixel-repeated LR.
  small = imresize.imresize(sr.astype(np.float64) / 255, output_shape=(4, 4))
  # The saved SR is rounded to uint8 (1/255 steps), so ~1e-5 apart.
  np.testing.assert_allclose(row['lr_l2'], np.mean((small - lr) ** 2),
                             atol=3e-5)


def test_a_rerun_keeps_the_searched_faces(demo_run):
  config, workdir = demo_run
  path = os.path.join(workdir, 'sr', 'prior_000.png')
  before = os.stat(path).st_mtime_ns
  train.train_and_evaluate(config, workdir)
  assert os.stat(path).st_mtime_ns == before


def test_restored_workdir_predicts_the_scale(demo_run):
  _, workdir = demo_run
  model = restore.load_model(workdir)
  assert not model.tileable
  lr = np.full((1, 4, 4, 3), 0.5, np.float32)
  assert np.asarray(model.predict(lr)).shape == (1, 32, 32, 3)


@pytest.mark.slow
@pytest.mark.parametrize('lambda_s', [0.5, 0.0])
def test_search_reaches_a_prior_face_within_eps(shared_data, lambda_s):
  """PULSE's self-consistency on the real prior: G(z*) downscaled x8 is
  matched within eps by a search started elsewhere, in the paper's 100
  iterations (with and without L_s)."""
  from jaxsr.pretrained import dcgan  # pylint: disable=g-import-not-at-top
  prior = dcgan.load_prior(str(shared_data / 'face_prior'))
  cfg = latent_search.SearchConfig(lambda_s=lambda_s)
  keys = jax.random.split(jax.random.key(123), 2)
  hr = jax.vmap(lambda k: (prior.generate(
      prior.g_params, prior.g_buffers, prior.sample_latent(k)) + 1) / 2)(keys)
  lr = jax.vmap(lambda x: latent_search.down(x, (4, 4)))(hr)
  out = jax.jit(lambda k, x: latent_search.search_batch(
      k, x, prior.g_params, prior=prior, g_buffers=prior.g_buffers,
      d_params=prior.d_params, scale=8, cfg=cfg))(
          jax.random.split(jax.random.key(7), 2), lr)
  assert np.all(np.asarray(out['lr_l2']) <= cfg.eps), out['lr_l2']
  # Started elsewhere: the first iterate was far from the LR.
  assert np.all(np.asarray(out['curves']['l2'][:, 0]) > 10 * cfg.eps)


def test_evaluate_scores_lr_consistency(demo_run, tmp_path):
  """python -m jaxsr.evaluate on a face workdir: PSNR/SSIM and PULSE's LR
  consistency and success rate, next to bicubic."""
  from jaxsr import evaluate  # pylint: disable=g-import-not-at-top
  _, workdir = demo_run
  hr_dir = tmp_path / 'faces_32px'
  for name in ('prior_000', 'prior_001'):
    io.write_image(hr_dir / f'{name}.png',
                   io.read_image(os.path.join(workdir, 'sr', name + '.png')))
  summary, _ = evaluate.run([workdir], 'bicubic', [str(hr_dir)], 8,
                            str(tmp_path / 'eval'), metrics='psnr,ssim,'
                            'lr_consistency', crop=0)
  scores = summary['faces_32px']
  for column in ('bicubic', 'run'):
    assert scores[column]['num_images'] == 2
    assert 0.0 <= scores[column]['success'] <= 1.0
    assert scores[column]['lr_l2'] >= 0.0
  # MATLAB bicubic up then down is near the identity on smooth faces.
  assert scores['bicubic']['lr_l2'] < 2e-3


def test_lr_l2_metric_on_known_values():
  from jaxsr.evaluation import metric_suite  # pylint: disable=g-import-not-at-top
  sr = np.full((16, 16, 3), 200, np.uint8)
  lr = np.full((4, 4, 3), 100, np.uint8)
  want = (100 / 255) ** 2  # imresize keeps a constant image constant.
  assert metric_suite.lr_l2(sr, lr) == pytest.approx(want, rel=1e-9)
  scorer = metric_suite.Scorer(('lr_l2', 'success'), 4, lr_eps=want * 1.01)
  assert scorer(sr, sr, lr) == {'lr_l2': pytest.approx(want), 'success': 1.0}
  scorer = metric_suite.Scorer(('success',), 4, lr_eps=want * 0.99)
  assert scorer(sr, sr, lr) == {'success': 0.0}
  with pytest.raises(ValueError, match='need the LR'):
    scorer(sr, sr)


@pytest.mark.slow
def test_a_stylegan2_file_runs_the_method(tmp_path):
  """The same method over a StyleGAN2 prior (a generated rosinality .pt of
  the real key layout, 16 px to keep the compile short): W+ rows, trainable
  noise, the geodesic loss, D's block features."""
  # pylint: disable=g-import-not-at-top
  from tests.models import numpy_stylegan2 as ref
  from tests.pretrained import test_stylegan2 as sg2
  rng = np.random.default_rng(0)
  res, style, mlp, channels = 16, 8, 2, (6, 5, 4)
  sds = (ref.random_generator_sd(rng, res, style, mlp, channels),
         ref.random_discriminator_sd(rng, res, channels),
         ref.random_generator_sd(rng, res, style, mlp, channels),
         rng.standard_normal(style).astype(np.float32))
  weights = tmp_path / 'ffhq-16.pt'
  sg2._save_rosinality(weights, sds)  # pylint: disable=protected-access
  config = helpers.experiment_config(
      'face_explore', 'tiny', **{
          'prior.weights': str(weights), 'prior.stats_samples': 2000,
          'prior.trainable_noise': 2, 'data.demo': 'prior', 'scale': 4,
          'search.blocks': 2, 'data.num_faces': 1, 'data.batch_size': 1})
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  results = json.loads(open(os.path.join(workdir, 'results.json')).read())
  assert [r['name'] for r in results['faces']] == ['prior_000']
  lines = open(os.path.join(workdir, 'curves', 'prior_000.csv')).readlines()
  rows = [[float(v) for v in line.split(',')] for line in lines[1:]]
  assert min(r[4] for r in rows) > 0  # 6 W+ rows: the geodesic loss is on.
  assert min(r[3] for r in rows) > 0  # D's features: the semantic loss too.
  assert io.read_image(os.path.join(workdir, 'sr', 'prior_000.png')).shape == (
      16, 16, 3)
