"""Tests of NIQE: its pieces against independent truth (generalized-Gaussian
samples, brute-force filtering, imresize), MATLAB's baboon value and the
Set5 table of shared/research/metrics-conventions.md section 3."""

import csv
import importlib

import numpy as np
import pytest
from scipy import signal
from scipy import stats

from jaxsr import metrics
from jaxsr.data import color
from jaxsr.data import io
from jaxsr.data.imresize import imresize

# jaxsr.metrics.niqe is the function (re-exported); this is its module.
niqe_lib = importlib.import_module('jaxsr.metrics.niqe')

# MATLAB R2021a computequality.m on baboon.png (BasicSR's docstring).
BABOON_MATLAB = 5.72957338
# Float64 value of the conventions note (section 3).
BABOON_FLOAT64 = 5.72996
# The note's float32 Set5 HR values at crop 4 (Y); bird and head are
# numerically fragile (flat regions), so only the mean uses them.
SET5_CROP4 = {'baby': 3.3219, 'butterfly': 5.2050, 'woman': 4.6351}
SET5_NAMES = ('baby', 'bird', 'butterfly', 'head', 'woman')
SET5_CROP4_MEAN = 5.4372


def _params(shared_data):
  return niqe_lib.load_pristine_params(
      shared_data / 'niqe' / 'niqe_pris_params.npz'
  )


def _set5(shared_data):
  folder = shared_data / 'benchmarks' / 'Set5'
  paths = sorted(folder.glob('img_00*_SRF_4_HR.png'))
  if len(paths) != 5:
    pytest.skip(f'Set5 HR images are absent from {folder}')
  return dict(zip(SET5_NAMES, (io.read_image(p) for p in paths)))


def _aggd_samples(rng, alpha, beta_l, beta_r, n):
  """AGGD samples: side chosen with mass beta/(beta_l + beta_r), magnitude
  beta * |G| with G ~ generalized normal of shape alpha and scale 1."""
  magnitude = np.abs(stats.gennorm.rvs(alpha, size=n, random_state=rng))
  left = rng.random(n) < beta_l / (beta_l + beta_r)
  return np.where(left, -beta_l * magnitude, beta_r * magnitude)


@pytest.mark.parametrize('alpha', [0.6, 1.0, 2.0, 3.5])
def test_aggd_fit_recovers_symmetric_gennorm(alpha):
  rng = np.random.default_rng(0)
  x = stats.gennorm.rvs(alpha, scale=1.7, size=200_000, random_state=rng)
  a, beta_l, beta_r = niqe_lib.estimate_aggd_params(x)
  assert a == pytest.approx(alpha, rel=0.03)
  assert beta_l == pytest.approx(1.7, rel=0.03)
  assert beta_r == pytest.approx(1.7, rel=0.03)


def test_aggd_fit_recovers_asymmetric_parameters():
  rng = np.random.default_rng(1)
  x = _aggd_samples(rng, 1.3, 0.5, 2.0, 400_000)
  a, beta_l, beta_r = niqe_lib.estimate_aggd_params(x)
  assert a == pytest.approx(1.3, rel=0.03)
  assert beta_l == pytest.approx(0.5, rel=0.03)
  assert beta_r == pytest.approx(2.0, rel=0.03)


def test_aggd_fit_vectorized_matches_rows_and_one_sided_is_nan():
  rng = np.random.default_rng(2)
  rows = rng.standard_normal((3, 500)) * np.array([[1.0], [2.0], [0.5]])
  together = niqe_lib.estimate_aggd_params(rows)
  for i, row in enumerate(rows):
    single = niqe_lib.estimate_aggd_params(row)
    np.testing.assert_allclose(
        [t[i] for t in together], single, rtol=1e-12
    )
  # No negative sample: the left RMS is undefined, as in MATLAB (NaN).
  alpha, beta_l, _ = niqe_lib.estimate_aggd_params(np.abs(rows[0]))
  assert np.isnan(alpha) and np.isnan(beta_l)


@pytest.mark.parametrize('precision', ['float32', 'float64'])
def test_mscn_of_a_constant_image_is_zero(precision):
  coeffs, sigma = niqe_lib.mscn(np.full((40, 50), 117.0), precision=precision)
  assert coeffs.dtype == np.dtype(precision)
  np.testing.assert_allclose(coeffs, 0.0, atol=1e-5)
  np.testing.assert_allclose(sigma, 0.0, atol=5e-2)


def test_mscn_matches_brute_force_replicate_filter():
  rng = np.random.default_rng(3)
  plane = rng.integers(0, 256, (30, 41)).astype(np.float64)
  x = np.arange(7) - 3.0
  window = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * (7 / 6) ** 2))
  window /= window.sum()
  padded = lambda a: np.pad(a, 3, mode='edge')  # MATLAB 'replicate'
  mu = signal.correlate2d(padded(plane), window, mode='valid')
  var = signal.correlate2d(padded(plane**2), window, mode='valid') - mu**2
  expected = (plane - mu) / (np.sqrt(np.abs(var)) + 1)
  coeffs, _ = niqe_lib.mscn(plane, precision='float64')
  np.testing.assert_allclose(coeffs, expected, atol=1e-10)


def test_gaussian_window_equals_the_pristine_npz(shared_data):
  np.testing.assert_allclose(
      niqe_lib.gaussian_window(),
      _params(shared_data)['gaussian_window'],
      atol=1e-15,
  )


def test_half_scale_is_matlab_imresize():
  rng = np.random.default_rng(4)
  plane = rng.random((192, 288))
  np.testing.assert_allclose(
      niqe_lib.half_scale(plane), imresize(plane, scale=0.5), atol=1e-12
  )
  out32 = niqe_lib.half_scale(plane.astype(np.float32))
  assert out32.dtype == np.float32
  np.testing.assert_allclose(out32, imresize(plane, scale=0.5), atol=1e-5)


def test_diagonal_shift_matches_matlabs_direction():
  # computefeature.m shifts by (-1, 1); (1, -1) pairs the same pixels.
  block = np.random.default_rng(5).standard_normal((48, 48))
  ours = block * np.roll(block, (1, -1), axis=(0, 1))
  matlab = block * np.roll(block, (-1, 1), axis=(0, 1))
  np.testing.assert_allclose(
      niqe_lib.estimate_aggd_params(ours.ravel()),
      niqe_lib.estimate_aggd_params(matlab.ravel()),
      rtol=1e-12,
  )


def test_block_features_shape_and_first_pair():
  blocks = np.random.default_rng(6).standard_normal((4, 48, 48))
  features = niqe_lib.block_features(blocks)
  assert features.shape == (4, 18)
  alpha, beta_l, beta_r = niqe_lib.estimate_aggd_params(blocks[2].ravel())
  np.testing.assert_allclose(
      features[2, :2], [alpha, (beta_l + beta_r) / 2], rtol=1e-12
  )


def test_baboon_matches_matlab(shared_data):
  image = io.read_image(shared_data / 'niqe' / 'baboon.png')
  params = _params(shared_data)
  f32 = metrics.niqe(image, crop_border=0, params=params)
  f64 = metrics.niqe(image, crop_border=0, params=params, precision='float64')
  assert f32 == pytest.approx(BABOON_MATLAB, abs=2e-4)
  assert f64 == pytest.approx(BABOON_FLOAT64, abs=1e-3)


def test_set5_hr_crop4_matches_the_note(shared_data):
  params = _params(shared_data)
  values = {
      name: metrics.niqe(image, crop_border=4, params=params)
      for name, image in _set5(shared_data).items()
  }
  for name, expected in SET5_CROP4.items():
    assert values[name] == pytest.approx(expected, abs=0.01), name
  # Loose: bird and head move with float rounding (see the note).
  assert np.mean(list(values.values())) == pytest.approx(
      SET5_CROP4_MEAN, abs=0.02
  )


def test_gray_plane_input_equals_rgb_input(shared_data):
  image = _set5(shared_data)['butterfly']
  params = _params(shared_data)
  y = color.rgb_to_y(image, rounded=True).astype(np.uint8)
  assert metrics.niqe(y, 4, params) == metrics.niqe(image, 4, params)
  luma = color.rgb_to_gray_luma(image, rounded=True).astype(np.uint8)
  assert metrics.niqe(luma, 4, params) == metrics.niqe(
      image, 4, params, convert_to='gray'
  )


def test_too_small_after_cropping_is_a_clear_error():
  params = {'mu_pris_param': np.zeros((1, 36)), 'cov_pris_param': np.eye(36)}
  image = np.zeros((100, 120, 3), np.uint8)
  with pytest.raises(ValueError, match=r'96x96 .*crop_border=4, found 92x112'):
    metrics.niqe(image, crop_border=4, params=params)


def test_invalid_inputs():
  params = {'mu_pris_param': np.zeros((1, 36)), 'cov_pris_param': np.eye(36)}
  image = np.zeros((96, 96, 3), np.uint8)
  with pytest.raises(ValueError, match='0..255'):
    metrics.niqe(np.full((96, 96), 300.0), params=params)
  with pytest.raises(ValueError, match='H x W x 3'):
    metrics.niqe(np.zeros((96, 96, 4), np.uint8), params=params)
  with pytest.raises(ValueError, match='precision'):
    metrics.niqe(image, params=params, precision='float16')
  with pytest.raises(ValueError, match='convert_to'):
    metrics.niqe(image, params=params, convert_to='lab')
  with pytest.raises(ValueError, match='mu 1x36'):
    metrics.niqe(image, params={'mu_pris_param': np.zeros(35),
                                'cov_pris_param': np.eye(36)})


def test_missing_params_explain_how_to_get_them(tmp_path, monkeypatch):
  monkeypatch.setenv(niqe_lib.PARAMS_ENV, str(tmp_path / 'absent.npz'))
  with pytest.raises(FileNotFoundError, match=r'jaxsr\.assets niqe') as e:
    metrics.niqe(np.zeros((96, 96, 3), np.uint8))
  assert 'basicsr==1.4.2' in str(e.value)
  assert 'absent.npz' in str(e.value)


def test_env_var_names_the_default_params(shared_data, monkeypatch):
  path = shared_data / 'niqe' / 'niqe_pris_params.npz'
  monkeypatch.setenv(niqe_lib.PARAMS_ENV, str(path))
  image = _set5(shared_data)['butterfly']
  assert metrics.niqe(image, 4) == metrics.niqe(image, 4, _params(shared_data))


def test_fit_pristine_model(shared_data):
  folder = shared_data / 'benchmarks' / 'Set14'
  names = ('img_001', 'img_002', 'img_005', 'img_014')  # textured images
  images = [io.read_image(folder / f'{n}_SRF_4_HR.png') for n in names]
  model = niqe_lib.fit_pristine_model(images)
  mu, cov = model['mu_pris_param'], model['cov_pris_param']
  assert mu.shape == (1, 36) and cov.shape == (36, 36)
  assert np.all(np.isfinite(mu)) and np.all(np.isfinite(cov))
  np.testing.assert_allclose(cov, cov.T, atol=1e-12)
  eigenvalues = np.linalg.eigvalsh(cov)
  assert eigenvalues.min() >= -1e-9 * eigenvalues.max()
  own = [metrics.niqe(im, params=model) for im in images]
  # x4 bicubic down and up: the blurred copies are far from the model
  # (measured: own 2.9-5.8, blurred 26-207).
  blurred = [
      metrics.niqe(imresize(imresize(im, 0.25), 4.0), params=model)
      for im in images
  ]
  assert all(np.isfinite(own)) and max(own) < 7.0
  assert min(b - o for b, o in zip(blurred, own)) > 10.0
  # Keeping every block fits the images' own blocks more closely
  # (measured mean 2.6 vs 4.3 with the 0.75 sharpness selection).
  every_block = niqe_lib.fit_pristine_model(images, sharpness_threshold=0.0)
  own_all = [metrics.niqe(im, params=every_block) for im in images]
  assert np.mean(own_all) < np.mean(own)
  with pytest.raises(ValueError, match='sharpness_threshold'):
    niqe_lib.fit_pristine_model(images, sharpness_threshold=1.0)


def test_calibration_images_against_the_official_rows(shared_data):
  folder = shared_data / 'iqa-calibration'
  with open(folder / 'results_official.csv', newline='') as f:
    rows = {row['Method']: row for row in csv.DictReader(f)}
  names = [n for n in rows['niqe'] if n != 'Method']
  params = _params(shared_data)
  images = {n: io.read_image(folder / 'dist_dir' / n) for n in names}
  # pyiqa's 'niqe' row: the same original model on YIQ luma, float64.
  ours = {
      n: metrics.niqe(im, 0, params, convert_to='gray', precision='float64')
      for n, im in images.items()
  }
  for n in ('I04.bmp', 'I06.bmp', 'I08.bmp'):
    assert ours[n] == pytest.approx(float(rows['niqe'][n]), abs=0.02), n
  for n in names:  # I03/I19: fragile, implementation noise up to ~0.4
    assert ours[n] == pytest.approx(float(rows['niqe'][n]), abs=0.5), n
  # 'niqe_matlab' is MATLAB's built-in niqe() with MathWorks' own model,
  # not computequality.m: only the two worst images agree.
  y_values = {n: metrics.niqe(im, 0, params) for n, im in images.items()}
  worst = lambda d: set(sorted(d, key=d.get)[-2:])
  matlab = {n: float(rows['niqe_matlab'][n]) for n in names}
  assert worst(y_values) == worst(matlab) == {'I03.bmp', 'I19.bmp'}
