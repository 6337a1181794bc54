"""jaxsr.evaluate with metric sets, paired folders and zoomed-crop grids."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from jaxsr import evaluate
from jaxsr.evaluation import metric_suite
from jaxsr.evaluation import report
from jaxsr.data import io
from jaxsr.metrics import niqe
from tests.metrics.test_ma import _one_leaf
from tests.metrics.test_ma import _save_model

SET5_LR_NAMES = ('baby', 'bird', 'butterfly', 'head', 'woman')


def test_parse_expands_sets_and_rejects_unknown_names():
  assert metric_suite.parse('default') == ('psnr', 'ssim', 'psnr_rgb', 'l1_y')
  assert metric_suite.parse('psnr, lpips,psnr') == ('psnr', 'lpips')
  assert set(metric_suite.parse('all')) == {
      'psnr', 'ssim', 'psnr_rgb', 'l1_y', 'rmse', 'niqe', 'ma', 'pi', 'lpips',
      'dists', 'lr_l2', 'success'}
  assert metric_suite.parse('lr_consistency') == ('lr_l2', 'success')
  with pytest.raises(ValueError, match="unknown metric 'fid'"):
    metric_suite.parse('psnr,fid')
  with pytest.raises(ValueError, match='no metric'):
    metric_suite.parse(' , ')


def test_set_rmse_is_pirm_sqrt_of_mean_mse():
  rows = [{'psnr': 30., 'rmse': 3.}, {'psnr': 32., 'rmse': 4.}]
  out = metric_suite.summarize(rows, ('psnr', 'rmse'))
  assert out['rmse'] == pytest.approx(np.sqrt((9 + 16) / 2))
  assert out['psnr'] == pytest.approx(31.)
  assert out['psnr_std'] == pytest.approx(1.)  # Population std of 30, 32.


def test_rmse_of_a_constant_offset(tmp_path):
  hr = np.full((24, 24, 3), 100, np.uint8)
  sr = hr.copy()
  sr[..., :] = 110  # Y = 16 + (65.481 + 128.553 + 24.966) * v / 255.
  scorer = metric_suite.Scorer(('rmse',), 4)
  dy = round(16 + 219 * 110 / 255) - round(16 + 219 * 100 / 255)
  assert scorer(sr, hr)['rmse'] == pytest.approx(dy)


def test_pi_row_is_ma_and_niqe_of_the_cropped_sr(shared_data, tmp_path):
  """A constant Ma model (forests of one leaf: 1, 2, 3; linear 0.5, 1, 1, 1)
  gives Ma = 6.5, so PI = (3.5 + NIQE) / 2 with NIQE at border = scale."""
  model = _save_model(tmp_path / 'model.mat',
                      [_one_leaf(1.), _one_leaf(2.), _one_leaf(3.)],
                      [0.5, 1., 1., 1.])
  params = shared_data / 'niqe' / 'niqe_pris_params.npz'
  files = metric_suite.MetricFiles(niqe_params=str(params),
                                   ma_model=str(model))
  scorer = metric_suite.Scorer(('pi', 'ma', 'niqe'), 4, files=files)
  sr = io.read_image(shared_data / 'niqe' / 'baboon.png')[:200, :200]
  row = scorer(sr, sr)
  assert row['ma'] == pytest.approx(6.5)
  want_niqe = niqe(sr, 4, dict(np.load(params)))
  assert row['niqe'] == pytest.approx(want_niqe, rel=1e-6)
  assert row['pi'] == pytest.approx((10 - 6.5 + want_niqe) / 2)


def test_ma_without_a_model_file_says_where_to_get_it():
  with pytest.raises(ValueError, match='ma_model.*sr-metric'):
    metric_suite.Scorer(('ma',), 4)


def test_lpips_and_dists_rows_zero_on_identical_and_gray_as_rgb():
  files = metric_suite.MetricFiles(lpips_lin='random', lpips_backbone='random',
                                   dists_weights='random', dists_vgg16='random')
  scorer = metric_suite.Scorer(('lpips', 'dists'), 4, files=files)
  rng = np.random.default_rng(0)
  hr = rng.integers(0, 256, (64, 64, 3), np.uint8)
  same = scorer(hr, hr)
  assert abs(same['lpips']) < 1e-6 and abs(same['dists']) < 1e-5
  noisy = np.clip(hr + rng.normal(0, 40, hr.shape), 0, 255).astype(np.uint8)
  far = scorer(noisy, hr)
  assert far['lpips'] > 0 and far['dists'] > 0
  gray = hr[..., 0]
  as_rgb = np.repeat(gray[..., None], 3, -1)
  assert scorer(noisy, gray) == pytest.approx(scorer(noisy, as_rgb))


def test_detail_box_finds_the_textured_quarter():
  rng = np.random.default_rng(0)
  image = np.full((128, 160, 3), 90, np.uint8)
  image[64:, 96:] = rng.integers(0, 256, (64, 64, 3), np.uint8)
  assert report.detail_box(image, 64) == (64, 96, 64, 64)
  assert report.detail_box(image[:40, :50], 64) == (0, 0, 40, 50)


def test_labeled_grid_has_a_header_strip_and_one_row_per_image():
  tiles = [[np.zeros((32, 32, 3), np.uint8)] * 3] * 2
  grid = report.labeled_grid(['bicubic', 'model', 'HR'], tiles, row_height=64)
  assert grid.shape == (16 + 2 * 64 + 4, 3 * 64 + 2 * 4, 3)
  assert (grid[:16] < 128).any()  # Some label text was drawn.
  with pytest.raises(ValueError, match='3 images'):
    report.labeled_grid(['a', 'b', 'c'], [[tiles[0][0]]])


def _paired_set5(shared_data, tmp_path):
  """Set5 HR and the official MATLAB LR files renamed to the HR names."""
  hr_dir = shared_data / 'benchmarks' / 'Set5'
  lr_src = shared_data / 'benchmarks' / 'Set5_LR_bicubic_X4'
  lr_dir = tmp_path / 'Set5_LR'
  lr_dir.mkdir()
  for hr_path, name in zip(io.list_images(hr_dir), SET5_LR_NAMES):
    shutil.copy(lr_src / f'{name}x4.png', lr_dir / hr_path.name)
  return hr_dir, lr_dir


def test_paired_set5_scores_as_the_on_the_fly_lr(shared_data, tmp_path):
  """The official LR files give the published bicubic row too (28.42)."""
  hr_dir, lr_dir = _paired_set5(shared_data, tmp_path)
  paired, table = evaluate.run([], 'bicubic', [f'{hr_dir}:{lr_dir}'], 4,
                               str(tmp_path / 'a'), metrics='distortion')
  fly, _ = evaluate.run([], 'bicubic', [str(hr_dir)], 4, str(tmp_path / 'b'),
                        metrics='distortion')
  assert paired == fly
  assert abs(paired['Set5']['bicubic']['psnr'] - 28.42) < 0.01
  assert '| Set5 RMSE |' in table
  crops = np.asarray(Image.open(tmp_path / 'a' / 'Set5_crops.png'))
  assert crops.shape[0] == 16 + 5 * 192 + 4 * 4  # Header + 5 images.
  md = (tmp_path / 'a' / 'results.md').read_text()
  assert 'rgb2ycbcr' in md and 'border 4' in md
  summary = json.loads((tmp_path / 'a' / 'summary.json').read_text())
  assert summary['Set5']['bicubic']['num_images'] == 5


def test_missing_folder_and_wrong_lr_size_are_clear_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match='nope'):
    evaluate.run([], 'bicubic', [str(tmp_path / 'nope')], 4, str(tmp_path))
  hr, lr = tmp_path / 'hr', tmp_path / 'lr'
  hr.mkdir()
  lr.mkdir()
  io.write_image(hr / 'a.png', np.zeros((32, 32, 3), np.uint8))
  io.write_image(lr / 'a.png', np.zeros((7, 8, 3), np.uint8))
  with pytest.raises(ValueError, match=r'lr/a.png is 7x8, expected 8x8'):
    evaluate.run([], 'bicubic', [f'{hr}:{lr}'], 4, str(tmp_path / 'o'))


def test_a_tiny_hr_image_is_named_before_any_model_loads(tmp_path):
  """A 3x17 HR is 0x4 at x4: named with its size, before the (missing)
  workdir is opened."""
  hr = tmp_path / 'hr'
  hr.mkdir()
  rng = np.random.default_rng(0)
  io.write_image(hr / 'big.png', rng.integers(0, 256, (40, 40, 3), np.uint8))
  io.write_image(hr / 'tiny.png', np.zeros((3, 17, 3), np.uint8))
  with pytest.raises(ValueError, match=r'hr/tiny.png is 3x17: too small to '
                     r'score at x4 \(at least 20x20'):
    evaluate.run([str(tmp_path / 'no_workdir')], 'bicubic', [str(hr)], 4,
                 str(tmp_path / 'o'))
  # 20x20 is the smallest: a 4-pixel border on each side, SSIM's 11x11
  # window, rounded up to a multiple of 4.
  io.write_image(hr / 'tiny.png', rng.integers(0, 256, (20, 22, 3), np.uint8))
  summary, _ = evaluate.run([], 'bicubic', [str(hr)], 4, str(tmp_path / 'o'))
  assert summary['hr']['bicubic']['num_images'] == 2


def test_pair_sorted_pairs_the_benchmark_release(shared_data, tmp_path):
  """Set5's img_001_SRF_4_HR.png ... with babyx4.png ...: by sorted order the
  official LR files give the published bicubic row (28.42 dB)."""
  hr_dir = shared_data / 'benchmarks' / 'Set5'
  lr_dir = shared_data / 'benchmarks' / 'Set5_LR_bicubic_X4'
  with pytest.raises(FileNotFoundError, match='--pair sorted'):
    evaluate.run([], 'bicubic', [f'{hr_dir}:{lr_dir}'], 4, str(tmp_path))
  summary, _ = evaluate.run([], 'bicubic', [f'{hr_dir}:{lr_dir}'], 4,
                            str(tmp_path), metrics='psnr', pair='sorted')
  assert abs(summary['Set5']['bicubic']['psnr'] - 28.42) < 0.01
  rows = (tmp_path / 'Set5_bicubic.csv').read_text().splitlines()
  assert rows[1].startswith('img_001_SRF_4_HR,')


def test_pair_sorted_refuses_unequal_counts_and_wrong_sizes(tmp_path):
  hr, lr = tmp_path / 'hr', tmp_path / 'lr'
  hr.mkdir()
  lr.mkdir()
  io.write_image(hr / 'a.png', np.zeros((32, 32, 3), np.uint8))
  io.write_image(hr / 'b.png', np.zeros((32, 40, 3), np.uint8))
  io.write_image(lr / 'x.png', np.zeros((8, 10, 3), np.uint8))
  with pytest.raises(ValueError, match='as many LR as HR images.*holds 1.*2'):
    evaluate.run([], 'bicubic', [f'{hr}:{lr}'], 4, str(tmp_path / 'o'),
                 pair='sorted')
  io.write_image(lr / 'y.png', np.zeros((8, 8, 3), np.uint8))
  # Sorted: a <-> x (8x10, expected 8x8) is caught before anything is scored.
  with pytest.raises(ValueError, match=r'lr/x.png is 8x10, expected 8x8 .*'
                     r'sorted order'):
    evaluate.run([], 'bicubic', [f'{hr}:{lr}'], 4, str(tmp_path / 'o'),
                 pair='sorted')


def test_column_names_are_unique_folder_suffixes_or_given_names():
  assert evaluate.column_names(['runs/a', 'runs/b']) == ['a', 'b']
  assert evaluate.column_names(['x/run', 'y/run/', 'z']) == [
      'x/run', 'y/run', 'z']
  assert evaluate.column_names(['p/x/run', 'q/x/run', 'r']) == [
      'p/x/run', 'q/x/run', 'r']
  assert evaluate.column_names(['w/bicubic'], baseline='bicubic') == [
      'w/bicubic']
  assert evaluate.column_names(['x/run', 'y/run'], ['psnr', 'gan']) == [
      'psnr', 'gan']
  with pytest.raises(ValueError, match='one --name per --workdir'):
    evaluate.column_names(['x/run', 'y/run'], ['psnr'])
  with pytest.raises(ValueError, match='distinct --name'):
    evaluate.column_names(['x/run', 'y/run'], ['a', 'a'])
  with pytest.raises(ValueError, match='given twice'):
    evaluate.column_names(['x/run', 'x/run/'])
