"""Tests of PSNR/SSIM/L1 against hand values, a brute-force SSIM, and the
published bicubic x4 baselines (shared/research/metrics-conventions.md)."""

import csv
import math

import numpy as np
import pytest
from scipy import signal

from jaxsr import metrics
from jaxsr.data import color
from jaxsr.data import io
from jaxsr.data.imresize import imresize
from jaxsr.data.imresize import modcrop
from jaxsr.metrics import psnr_ssim

C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2


def _ssim_brute_force(a, b):
  """ssim_index.m literally: 2-D fspecial window, filter2 'valid'."""
  x = np.arange(11) - 5.0
  window = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 1.5**2))
  window /= window.sum()
  filt = lambda img: signal.correlate2d(img, window, mode='valid')
  mu1, mu2 = filt(a), filt(b)
  s1 = filt(a * a) - mu1**2
  s2 = filt(b * b) - mu2**2
  s12 = filt(a * b) - mu1 * mu2
  ssim_map = ((2 * mu1 * mu2 + C1) * (2 * s12 + C2)) / (
      (mu1**2 + mu2**2 + C1) * (s1 + s2 + C2)
  )
  return ssim_map.mean()


def test_psnr_hand_values():
  a = np.full((6, 5, 3), 100, np.uint8)
  # A constant offset of 1 gives MSE 1, so PSNR = 10 log10(255^2).
  assert metrics.psnr(a, a + 1, crop_border=0) == pytest.approx(
      10 * math.log10(255**2), abs=1e-12
  )
  # One pixel off by 16 in a 4 x 4 plane: MSE = 256 / 16 = 16.
  b = np.zeros((4, 4))
  b[1, 2] = 16
  assert metrics.psnr(np.zeros((4, 4)), b, 0) == pytest.approx(
      10 * math.log10(255**2 / 16), abs=1e-12
  )
  assert metrics.psnr(a, a, 0) == math.inf
  assert metrics.psnr(np.zeros((2, 2)), np.full((2, 2), 0.1), 0,
                      peak=1.0) == pytest.approx(20.0)


def test_psnr_crops_the_border():
  a = np.zeros((10, 12))
  b = a.copy()
  b[:2] = 50  # only in the border
  b[:, -2:] = 50
  assert metrics.psnr(a, b, crop_border=2) == math.inf
  b[5, 5] = 8  # inside: MSE = 64 / (6 * 8)
  assert metrics.psnr(a, b, crop_border=2) == pytest.approx(
      10 * math.log10(255**2 * 48 / 64)
  )
  with pytest.raises(ValueError, match='too small'):
    metrics.psnr(a, b, crop_border=5)
  with pytest.raises(ValueError, match='equal shapes'):
    metrics.psnr(a, b[1:], crop_border=0)


def test_ssim_identical_and_constant_images():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (40, 30)).astype(np.float64)
  assert metrics.ssim(image, image, 0) == pytest.approx(1.0, abs=1e-12)
  # Constant planes: every sigma is 0, so the map is (2 a b + C1) /
  # (a^2 + b^2 + C1) everywhere.
  a, b = 100.0, 120.0
  expected = (2 * a * b + C1) / (a * a + b * b + C1)
  got = metrics.ssim(np.full((20, 20), a), np.full((20, 20), b), 2)
  assert got == pytest.approx(expected, abs=1e-10)


def test_ssim_matches_brute_force_ssim_index():
  rng = np.random.default_rng(1)
  a = rng.integers(0, 256, (37, 45)).astype(np.float64)
  b = np.clip(a + rng.normal(0, 20, a.shape), 0, 255)
  expected = _ssim_brute_force(a[3:-3, 3:-3], b[3:-3, 3:-3])
  assert metrics.ssim(a, b, crop_border=3) == pytest.approx(expected, abs=1e-10)
  with pytest.raises(ValueError, match='2-D'):
    metrics.ssim(np.zeros((20, 20, 3)), np.zeros((20, 20, 3)), 0)


def test_y_metrics_conventions():
  rng = np.random.default_rng(2)
  hr = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
  sr = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
  y_hr = color.rgb_to_y(hr, rounded=True)
  y_sr = color.rgb_to_y(sr, rounded=True)
  assert metrics.psnr_y(sr, hr, 4) == pytest.approx(
      metrics.psnr(y_sr, y_hr, 4)
  )
  assert metrics.ssim_y(sr, hr, 4) == pytest.approx(
      metrics.ssim(y_sr, y_hr, 4)
  )
  # A gray HR is used as-is: a 2-D output is compared directly, an RGB one
  # through its luma (a replicated gray image is its own luma).
  gray_hr = hr[..., 0]
  gray_sr = sr[..., 0]
  assert metrics.psnr_y(gray_sr, gray_hr, 4) == pytest.approx(
      metrics.psnr(gray_sr, gray_hr, 4)
  )
  assert metrics.psnr_y(color.gray_to_rgb(gray_hr), gray_hr, 4) == math.inf
  with pytest.raises(TypeError, match='uint8'):
    metrics.psnr_y(sr / 255.0, hr, 4)
  with pytest.raises(ValueError, match='RGB output'):
    metrics.psnr_y(gray_sr, hr, 4)


def test_psnr_rgb_and_l1_y_by_hand():
  black = np.zeros((10, 10, 3), np.uint8)
  white = np.full((10, 10, 3), 255, np.uint8)
  # Y spans 16..235, so the normalised L1 is 219 / 255.
  assert metrics.l1_y(black, white, 2) == pytest.approx(219 / 255)
  gray = np.full((10, 10), 40, np.uint8)
  assert metrics.l1_y(gray + 3, gray, 2) == pytest.approx(3 / 255)
  assert metrics.psnr_rgb(black, black + 1, 2) == pytest.approx(
      10 * math.log10(255**2)
  )
  # A gray HR is replicated for RGB PSNR.
  assert metrics.psnr_rgb(color.gray_to_rgb(gray), gray, 0) == math.inf


def test_summarize_uses_population_std():
  stats = metrics.summarize([1.0, 2.0, 3.0, 4.0])
  assert stats['mean'] == 2.5
  # sqrt(((1.5^2 + 0.5^2) * 2) / 4), not the ddof=1 value sqrt(5 / 3).
  assert stats['std'] == pytest.approx(math.sqrt(1.25))
  with pytest.raises(ValueError, match='non-empty'):
    metrics.summarize([])


def _bicubic_baseline(folder, count, rounded_y, gray_as_is):
  """Mean PSNR/SSIM of MATLAB bicubic x4 on Y, border 4 (uint8 passes)."""
  psnrs, ssims = [], []
  for i in range(1, count + 1):
    hr = io.read_image(folder / f'img_{i:03d}_SRF_4_HR.png',
                       keep_gray=gray_as_is)
    hr = modcrop(hr, 4)
    sr = imresize(imresize(hr, 1 / 4), 4)
    psnrs.append(metrics.psnr_y(sr, hr, 4, rounded_y=rounded_y))
    ssims.append(metrics.ssim_y(sr, hr, 4, rounded_y=rounded_y))
  return np.mean(psnrs), np.mean(ssims)


@pytest.mark.parametrize(
    'name, count, rounded_y, gray_as_is, expected',
    [
        # Convention A: MATLAB-rounded Y, the gray bridge used as-is.
        ('Set5', 5, True, True, (28.4165, 0.81008)),
        ('Set14', 14, True, True, (25.9903, 0.70226)),
        # Convention C: float Y, gray replicated to RGB (BasicSR, RCAN).
        ('Set5', 5, False, False, (28.4290, 0.81114)),
        ('Set14', 14, False, False, (26.0884, 0.70480)),
    ],
)
def test_bicubic_x4_baseline(shared_data, name, count, rounded_y, gray_as_is,
                             expected):
  mean_psnr, mean_ssim = _bicubic_baseline(
      shared_data / 'benchmarks' / name, count, rounded_y, gray_as_is
  )
  assert mean_psnr == pytest.approx(expected[0], abs=0.005)
  assert mean_ssim == pytest.approx(expected[1], abs=0.0002)


def test_iqa_calibration_psnr_and_ssim_rows(shared_data):
  """IQA-PyTorch's listed values for five TID2013 pairs: its 'psnr' row is
  RGB PSNR on the whole image, its 'ssim' row our SSIM on the rounded
  0.299 R + 0.587 G + 0.114 B luma (MATLAB rgb2gray)."""
  folder = shared_data / 'iqa-calibration'
  with open(folder / 'results_official.csv') as f:
    rows = {r['Method']: r for r in csv.DictReader(f)}
  for name in ('I03', 'I04', 'I06', 'I08', 'I19'):
    ref = io.read_image(folder / 'ref_dir' / f'{name}.bmp')
    dist = io.read_image(folder / 'dist_dir' / f'{name}.bmp')
    want_psnr = float(rows['psnr'][f'{name}.bmp'])
    assert psnr_ssim.psnr_rgb(dist, ref, 0) == pytest.approx(want_psnr,
                                                             abs=0.006)
    luma = lambda im: np.round(im.astype(np.float64)
                               @ np.array([0.299, 0.587, 0.114]))
    want_ssim = float(rows['ssim'][f'{name}.bmp'])
    assert psnr_ssim.ssim(luma(dist), luma(ref), 0) == pytest.approx(
        want_ssim, abs=6e-5)
