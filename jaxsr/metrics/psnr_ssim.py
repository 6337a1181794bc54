"""PSNR, SSIM and L1 in float64 numpy, following the MATLAB SR conventions.

See shared/research/metrics-conventions.md. In short: crop `crop_border`
pixels on every side, PSNR = 10 log10(peak^2 / MSE), SSIM as ssim_index.m
(Wang 2004: 11 x 11 Gaussian, sigma 1.5, 'valid' filtering, mean of the map),
on the BT.601 Y plane; per-image values are averaged over a data set.

Gray HR images (2-D) are used as-is: their values are the "Y" plane. An RGB
output compared with one is first reduced with `rgb_to_gray_luma`.
"""

from typing import Sequence

import numpy as np

from jaxsr.data import color

_SSIM_WINDOW = 11
_SSIM_SIGMA = 1.5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03


def _crop(image: np.ndarray, crop_border: int) -> np.ndarray:
  """Removes crop_border pixels on every side of the first two axes."""
  if crop_border < 0:
    raise ValueError(f'crop_border must be >= 0, found {crop_border}')
  if crop_border == 0:
    return image
  height, width = image.shape[:2]
  if height <= 2 * crop_border or width <= 2 * crop_border:
    raise ValueError(
        f'a {height}x{width} image is too small for crop_border={crop_border}'
    )
  return image[crop_border:-crop_border, crop_border:-crop_border]


def _check_pair(a: np.ndarray, b: np.ndarray, name: str, ndims: Sequence[int]):
  """Checks equal shapes and an allowed rank; returns both as float64."""
  a, b = np.asarray(a), np.asarray(b)
  if a.shape != b.shape:
    raise ValueError(
        f'{name} expects equal shapes, found {a.shape} and {b.shape}'
    )
  if a.ndim not in ndims:
    raise ValueError(
        f'{name} expects {" or ".join(map(str, ndims))}-D arrays, found '
        f'shape {a.shape}'
    )
  return a.astype(np.float64), b.astype(np.float64)


def psnr(
    a: np.ndarray, b: np.ndarray, crop_border: int, peak: float = 255.0
) -> float:
  """PSNR in dB of two H x W[ x C] arrays after cropping the border (float64).

  Identical inputs give inf.
  """
  a, b = _check_pair(a, b, 'psnr', (2, 3))
  mse = np.mean((_crop(a, crop_border) - _crop(b, crop_border)) ** 2)
  if mse == 0:
    return float('inf')
  return float(10.0 * np.log10(peak**2 / mse))


def _gaussian_1d() -> np.ndarray:
  """The 1-D factor of fspecial('gaussian', 11, 1.5), summing to 1."""
  x = np.arange(_SSIM_WINDOW, dtype=np.float64) - (_SSIM_WINDOW - 1) / 2
  g = np.exp(-(x**2) / (2.0 * _SSIM_SIGMA**2))
  return g / g.sum()


def _filter_valid(image: np.ndarray, g: np.ndarray) -> np.ndarray:
  """filter2(outer(g, g), image, 'valid'), done separably along each axis."""
  rows = np.lib.stride_tricks.sliding_window_view(image, g.size, axis=0) @ g
  return np.lib.stride_tricks.sliding_window_view(rows, g.size, axis=1) @ g


def ssim(a: np.ndarray, b: np.ndarray, crop_border: int) -> float:
  """SSIM (ssim_index.m) of two H x W planes in 0..255 after cropping, float64.

  The 11 x 11 Gaussian (sigma 1.5, sum 1) is separable, so it is applied as
  two 1-D passes; 'valid' filtering shrinks the map by 10 pixels per axis.
  """
  a, b = _check_pair(a, b, 'ssim', (2,))
  a, b = _crop(a, crop_border), _crop(b, crop_border)
  if min(a.shape) < _SSIM_WINDOW:
    raise ValueError(
        f'ssim expects planes of at least {_SSIM_WINDOW}x{_SSIM_WINDOW} after '
        f'cropping, found {a.shape[0]}x{a.shape[1]}'
    )
  c1 = (_SSIM_K1 * 255.0) ** 2
  c2 = (_SSIM_K2 * 255.0) ** 2
  g = _gaussian_1d()
  mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
  mu_a2, mu_b2, mu_ab = mu_a * mu_a, mu_b * mu_b, mu_a * mu_b
  sigma_a2 = _filter_valid(a * a, g) - mu_a2
  sigma_b2 = _filter_valid(b * b, g) - mu_b2
  sigma_ab = _filter_valid(a * b, g) - mu_ab
  ssim_map = ((2 * mu_ab + c1) * (2 * sigma_ab + c2)) / (
      (mu_a2 + mu_b2 + c1) * (sigma_a2 + sigma_b2 + c2)
  )
  return float(np.mean(ssim_map))


def _check_uint8(sr: np.ndarray, hr: np.ndarray, name: str):
  """SR and HR must be saved-PNG uint8 images (metrics convention 3)."""
  sr, hr = np.asarray(sr), np.asarray(hr)
  for label, image in (('sr', sr), ('hr', hr)):
    if image.dtype != np.uint8:
      raise TypeError(
          f'{name} expects uint8 images (see color.to_uint8), found {label} '
          f'of dtype {image.dtype}'
      )
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
      raise ValueError(
          f'{name} expects H x W x 3 or gray H x W, found {label} of shape '
          f'{image.shape}'
      )
  if sr.ndim == 2 and hr.ndim == 3:
    raise ValueError(
        f'{name} expects an RGB output for an RGB HR, found sr {sr.shape} and '
        f'hr {hr.shape}'
    )
  return sr, hr


def _y_planes(sr: np.ndarray, hr: np.ndarray, rounded_y: bool, name: str):
  """float64 Y planes in 0..255; a gray HR is used as-is (see module doc)."""
  sr, hr = _check_uint8(sr, hr, name)
  if hr.ndim == 2:
    if sr.ndim == 3:
      sr = color.rgb_to_gray_luma(sr, rounded=rounded_y)
    return sr.astype(np.float64), hr.astype(np.float64)
  return color.rgb_to_y(sr, rounded_y), color.rgb_to_y(hr, rounded_y)


def psnr_y(
    sr: np.ndarray, hr: np.ndarray, crop_border: int, rounded_y: bool = True
) -> float:
  """PSNR (dB) on Y of uint8 SR vs HR (H x W x 3, or gray H x W used as-is).

  rounded_y=True rounds Y like MATLAB rgb2ycbcr on uint8 (SelfExSR/VDSR,
  convention A); False is the float Y of RCAN/EDSR/BasicSR.
  """
  y_sr, y_hr = _y_planes(sr, hr, rounded_y, 'psnr_y')
  return psnr(y_sr, y_hr, crop_border)


def ssim_y(
    sr: np.ndarray, hr: np.ndarray, crop_border: int, rounded_y: bool = True
) -> float:
  """SSIM on Y of uint8 SR vs HR (H x W x 3, or gray H x W used as-is)."""
  y_sr, y_hr = _y_planes(sr, hr, rounded_y, 'ssim_y')
  return ssim(y_sr, y_hr, crop_border)


def psnr_rgb(sr: np.ndarray, hr: np.ndarray, crop_border: int) -> float:
  """PSNR (dB) over all three channels of uint8 H x W x 3 images.

  A gray H x W HR (or SR) is replicated to RGB first.
  """
  sr, hr = _check_uint8(sr, hr, 'psnr_rgb')
  if hr.ndim == 2:
    hr = color.gray_to_rgb(hr)
  if sr.ndim == 2:
    sr = color.gray_to_rgb(sr)
  return psnr(sr, hr, crop_border)


def l1_y(
    sr: np.ndarray, hr: np.ndarray, crop_border: int, rounded_y: bool = False
) -> float:
  """Mean |Y_sr - Y_hr| with Y / 255 in [0, 1], of uint8 SR vs HR, float64.

  Float Y by default (a Python-side metric, as in paper 000 Table 2).
  """
  y_sr, y_hr = _y_planes(sr, hr, rounded_y, 'l1_y')
  diff = _crop(y_sr, crop_border) - _crop(y_hr, crop_border)
  return float(np.mean(np.abs(diff)) / 255.0)


def summarize(values: Sequence[float]) -> dict[str, float]:
  """Mean and population std (ddof=0, numpy's default) of per-image values.

  The std is the paper's PSNR standard deviation (PSD) over a data set.
  """
  values = np.asarray(values, dtype=np.float64)
  if values.ndim != 1 or values.size == 0:
    raise ValueError(
        f'summarize expects a non-empty 1-D list of values, found shape '
        f'{values.shape}'
    )
  return {'mean': float(np.mean(values)), 'std': float(np.std(values))}
