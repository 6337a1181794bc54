"""The face demo's outputs: the comparison table (hand-written truth), the per-face files of a search run (a stub search), the curve plots, the LFW set."""

import csv
import json

import jax
import numpy as np
import pytest

from jaxsr.data import faces as faces_lib
from jaxsr.data import io
from jaxsr.evaluation import face_compare
from jaxsr.evaluation import face_search
from jaxsr.methods import latent_search


def _summary(**values):
  return {'faces': 2, **values}


def test_gather_and_markdown_against_a_hand_written_table(tmp_path):
  runs = {
      'prior_x8_pulse': _summary(psnr=15.601, ssim=0.41274, niqe=None,
                                 lr_l2=0.029, success_rate=0.0,
                                 bicubic_psnr=20.4, bicubic_ssim=0.37621,
                                 bicubic_niqe=None),
      'prior_x8_ours_no_ls': _summary(psnr=16.15, ssim=0.42, niqe=7.1234,
                                      lr_l2=0.001, success_rate=0.5,
                                      bicubic_psnr=99.0),
      'prior_x8_ours': _summary(psnr=17.0, ssim=0.5, niqe=6.0, lr_l2=0.0015,
                                success_rate=1.0),
  }
  for name, summary in runs.items():
    (tmp_path / name).mkdir()
    (tmp_path / name / 'results.json').write_text(
        json.dumps({'faces': [], 'summary': summary}))
  table = face_compare.gather(str(tmp_path), list(runs))
  # Bicubic's columns come from the first run, whatever the later ones say.
  assert table == {'prior_x8': {
      'pulse': {'psnr': 15.601, 'ssim': 0.41274, 'niqe': None,
                'lr_l2': 0.029, 'success_rate': 0.0},
      'bicubic': {'psnr': 20.4, 'ssim': 0.37621, 'niqe': None},
      'ours_no_ls': {'psnr': 16.15, 'ssim': 0.42, 'niqe': 7.1234,
                     'lr_l2': 0.001, 'success_rate': 0.5},
      'ours': {'psnr': 17.0, 'ssim': 0.5, 'niqe': 6.0, 'lr_l2': 0.0015,
               'success_rate': 1.0}}}
  assert face_compare.markdown(table) == '\n'.join([
      '### prior_x8',
      '',
      '| | bicubic | pulse | ours_no_ls | ours |',
      '|---|---|---|---|---|',
      '| PSNR | 20.40 | 15.60 | 16.15 | 17.00 |',
      '| SSIM | 0.3762 | 0.4127 | 0.4200 | 0.5000 |',
      '| NIQE (mosaic) | - | - | 7.123 | 6.000 |',
      '| LR L2 | - | 0.02900 | 0.00100 | 0.00150 |',
      '| success | - | 0% | 50% | 100% |',
      ''])


def test_save_curves_writes_every_term_and_keeps_the_backend(tmp_path):
  """It used to switch matplotlib to Agg, which silenced a notebook's
  inline plots after the first run."""
  matplotlib = pytest.importorskip('matplotlib')
  before = matplotlib.get_backend()
  matplotlib.use('svg')
  try:
    face_search.save_curves(str(tmp_path / 'face'), {
        'total': [3.0, 2.5], 'l2': [0.125, 0.0625]})
    assert matplotlib.get_backend() == 'svg'
  finally:
    matplotlib.use(before)
  with open(tmp_path / 'face.csv') as f:
    assert list(csv.reader(f)) == [['iteration', 'total', 'l2'],
                                   ['1', '3', '0.125'], ['2', '2.5', '0.0625']]
  assert io.read_image(tmp_path / 'face.png').ndim == 3


def _stub_search(steps=2):
  """A search whose result is the LR upscaled by pixel repetition, with
  lr_l2 = 1e-3 * (face index + 1) read back from the LR's first pixel."""
  def search(keys, lr01):
    n = lr01.shape[0]
    sr = np.repeat(np.repeat(lr01, 4, axis=1), 4, axis=2)
    index = np.round(lr01[:, 0, 0, 0] * 255) - 100  # The faces' marker.
    ones = np.ones((n, steps), np.float32)
    return {'result': sr, 'best': sr, 'last': sr * 0.5,
            'lr_l2': 1e-3 * (index + 1), 'best_step': np.zeros(n, int),
            'best_loss': np.ones(n), 'restart': np.zeros(n, int),
            'curves': {t: ones for t in latent_search.TERMS}}
  return search


def test_run_writes_each_face_with_its_hr_and_scores(tmp_path):
  rng = np.random.default_rng(0)
  faces = []
  for i in range(3):
    lr = rng.integers(0, 256, (4, 4, 3), np.uint8)
    lr[0, 0, 0] = 100 + i
    hr = rng.integers(0, 256, (16, 16, 3), np.uint8)
    faces.append((f'face_{i}', lr, hr))
  results = face_search.run(faces, _stub_search(), str(tmp_path), scale=4,
                            eps=2.5e-3, batch_size=2, key=jax.random.key(0))
  rows = results['faces']
  assert [r['name'] for r in rows] == ['face_0', 'face_1', 'face_2']
  np.testing.assert_allclose([r['lr_l2'] for r in rows], [1e-3, 2e-3, 3e-3])
  assert [r['success'] for r in rows] == [True, True, False]
  assert results['summary']['success_rate'] == pytest.approx(2 / 3)
  for name, lr, hr in faces:
    np.testing.assert_array_equal(
        io.read_image(tmp_path / 'hr' / f'{name}.png'), hr)
    np.testing.assert_array_equal(
        io.read_image(tmp_path / 'sr' / f'{name}.png'),
        np.repeat(np.repeat(lr, 4, axis=0), 4, axis=1))
  assert json.loads((tmp_path / 'results.json').read_text()) == results
  with pytest.raises(ValueError, match='no faces to search'):
    face_search.run([], _stub_search(), str(tmp_path / 'none'), scale=4,
                    eps=1e-3, batch_size=2, key=jax.random.key(0))


def test_the_lfw_set_is_grey_crops_at_the_prior_size():
  skdata = pytest.importorskip('skimage.data')
  faces = faces_lib.lfw_hr(32, count=3)
  assert [name for name, _ in faces] == ['lfw_000', 'lfw_001', 'lfw_002']
  for (_, face), crop in zip(faces, skdata.lfw_subset()[:3]):
    assert face.dtype == np.uint8 and face.shape == (32, 32, 3)
    assert np.array_equal(face[..., 0], face[..., 1])
    assert np.array_equal(face[..., 0], face[..., 2])
    # Resizing 25 -> 32 px keeps the crop's mean brightness.
    assert abs(face.mean() / 255 - crop.mean()) < 0.01
  name, lr, hr = faces_lib.from_hr(*faces[0], 8)
  assert name == 'lfw_000' and lr.shape == (4, 4, 3) and hr is faces[0][1]
