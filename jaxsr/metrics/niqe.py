"""NIQE (Mittal et al. 2013) of H x W[ x 3] images in 0..255, numpy/scipy.

Reproduces MATLAB `computequality.m` (niqe_release) and BasicSR
`calculate_niqe` with the original pristine model (see
shared/research/metrics-conventions.md section 3 and checklist item 11):
- BT.601 Y (MATLAB rgb2ycbcr on uint8, i.e. rounded) or rounded gray; the
  border is cropped, then the plane is cropped to a multiple of 96;
- MSCN: (I - mu) / (sigma + 1) with a 7 x 7 Gaussian (sigma 7/6) and
  'replicate' boundaries;
- per 96 x 96 block (48 x 48 at the second scale), 18 features: an AGGD fit
  of the MSCN values and of their products with the horizontal, vertical and
  two diagonal (circular) neighbours;
- two scales, the second by MATLAB imresize(., 0.5) (bicubic, antialiased)
  on the float plane, computed in the working precision;
- nanmean / nancov over blocks, then
  sqrt((mu_p - mu_d) pinv((cov_p + cov_d) / 2) (mu_p - mu_d)^T).

The pristine model is the basicsr==1.4.2 `niqe_pris_params.npz`, bit-identical
to MATLAB's `modelparameters.mat`; `python -m jaxsr.assets niqe` fetches it.
"""

import functools
import math
import os
import pathlib
from typing import Iterable, Mapping

import numpy as np
from scipy import ndimage
from scipy import special

from jaxsr import assets
from jaxsr.data import color
from jaxsr.data.imresize import resize_matrix

BLOCK_SIZE = 96
NUM_FEATURES = 36
# Environment variable naming the pristine npz (wins over the cache path).
PARAMS_ENV = 'JAXSR_NIQE_PARAMS'

# MATLAB's alpha grid 0.2:0.001:10 and the ratio r(a) = G(2/a)^2 /
# (G(1/a) G(3/a)) that estimateaggdparam.m inverts by table lookup.
_AGGD_ALPHAS = 0.2 + 0.001 * np.arange(9801)
_AGGD_RATIOS = special.gamma(2.0 / _AGGD_ALPHAS) ** 2 / (
    special.gamma(1.0 / _AGGD_ALPHAS) * special.gamma(3.0 / _AGGD_ALPHAS)
)
# Neighbour shifts of computefeature.m; (1, -1) pairs the same pixels as
# MATLAB's (-1, 1) under circular shifting, so the products are identical.
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))
_PRECISIONS = {'float32': np.float32, 'float64': np.float64}


def gaussian_window(size: int = 7, sigma: float = 7.0 / 6.0) -> np.ndarray:
  """fspecial('gaussian', size, sigma): float64 size x size, summing to 1."""
  x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
  window = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2.0 * sigma**2))
  return window / window.sum()


def _float_dtype(precision: str) -> type:
  """The numpy dtype of a precision name."""
  if precision not in _PRECISIONS:
    raise ValueError(
        f'precision must be one of {sorted(_PRECISIONS)}, found {precision!r}'
    )
  return _PRECISIONS[precision]


def mscn(
    plane: np.ndarray,
    window: np.ndarray | None = None,
    precision: str = 'float32',
) -> tuple[np.ndarray, np.ndarray]:
  """MSCN coefficients and local sigma of an H x W plane in 0..255.

  Returns ((I - mu) / (sigma + 1), sigma), both H x W in `precision`; mu and
  sigma come from the normalised 7 x 7 Gaussian `window` with replicate
  boundaries. The filter sums in float64 but stores its output in the
  plane's precision: in float32 that rounding is BasicSR's behaviour, which
  lands nearest to MATLAB (conventions note, section 3).
  """
  dtype = _float_dtype(precision)
  plane = np.asarray(plane).astype(dtype)
  if plane.ndim != 2:
    raise ValueError(f'mscn expects an H x W plane, found {plane.shape}')
  window = gaussian_window() if window is None else np.asarray(window)
  # The window is symmetric, so correlation equals MATLAB's imfilter.
  mu = ndimage.correlate(plane, window, mode='nearest', output=dtype)
  mean_sq = ndimage.correlate(
      np.square(plane), window, mode='nearest', output=dtype
  )
  # abs() as in computequality.m: rounding can make the variance negative.
  sigma = np.sqrt(np.abs(mean_sq - np.square(mu)))
  return (plane - mu) / (sigma + dtype(1.0)), sigma


def estimate_aggd_params(
    x: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """AGGD fit (alpha, beta_left, beta_right) over the last axis of x, float64.

  estimateaggdparam.m vectorised over leading axes: the shape alpha is the
  grid value 0.2:0.001:10 whose ratio r(alpha) is nearest the moment estimate
  (corrected for asymmetry); each beta is the one-sided RMS times
  sqrt(G(1/alpha) / G(3/alpha)). Zeros count in neither side; a side with no
  samples gives NaN, as in MATLAB.
  """
  x = np.asarray(x).astype(np.float64)
  sq = x * x
  neg, pos = x < 0, x > 0
  with np.errstate(invalid='ignore', divide='ignore'):
    left_std = np.sqrt(np.sum(sq * neg, -1) / np.sum(neg, -1))
    right_std = np.sqrt(np.sum(sq * pos, -1) / np.sum(pos, -1))
    gamma_hat = left_std / right_std
    r_hat = np.mean(np.abs(x), -1) ** 2 / np.mean(sq, -1)
    r_hat_norm = (
        r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    )
  # argmin of the squared distance, first index on ties, like MATLAB's min.
  index = np.argmin(np.square(_AGGD_RATIOS - r_hat_norm[..., None]), -1)
  alpha = np.where(np.isnan(r_hat_norm), np.nan, _AGGD_ALPHAS[index])
  scale = np.sqrt(special.gamma(1.0 / alpha) / special.gamma(3.0 / alpha))
  return alpha, left_std * scale, right_std * scale


def _blocks(plane: np.ndarray, block_h: int, block_w: int) -> np.ndarray:
  """Splits an (nh*bh) x (nw*bw) plane into (nh*nw, bh, bw), row-major."""
  height, width = plane.shape
  nh, nw = height // block_h, width // block_w
  blocks = plane.reshape(nh, block_h, nw, block_w).transpose(0, 2, 1, 3)
  return blocks.reshape(nh * nw, block_h, block_w)


def block_features(blocks: np.ndarray) -> np.ndarray:
  """The 18 computefeature.m features of each MSCN block: (N, h, w) -> (N, 18).

  [alpha, (beta_l + beta_r) / 2] of the block, then for each neighbour
  product [alpha, mean, beta_l, beta_r] with mean = (beta_r - beta_l)
  G(2/alpha) / G(1/alpha). Products stay in the blocks' dtype (BasicSR).
  """
  blocks = np.asarray(blocks)
  flat = blocks.reshape(blocks.shape[0], -1)
  alpha, beta_l, beta_r = estimate_aggd_params(flat)
  features = [alpha, (beta_l + beta_r) / 2.0]
  for shift in _SHIFTS:
    product = blocks * np.roll(blocks, shift, axis=(1, 2))
    alpha, beta_l, beta_r = estimate_aggd_params(
        product.reshape(blocks.shape[0], -1)
    )
    mean = (beta_r - beta_l) * special.gamma(2.0 / alpha) / special.gamma(
        1.0 / alpha
    )
    features.extend([alpha, mean, beta_l, beta_r])
  return np.stack(features, axis=-1)


def half_scale(plane: np.ndarray) -> np.ndarray:
  """MATLAB imresize(plane, 0.5) of a float H x W plane, in its own dtype.

  The float path of `jaxsr.data.imresize.imresize` as two dense passes
  (height first, as MATLAB on ties); in float32 the arithmetic stays float32
  like BasicSR's torch port, which lands nearest MATLAB's NIQE.
  """
  plane = np.asarray(plane)
  height, width = plane.shape
  rows = resize_matrix(height, math.ceil(height / 2), 0.5)
  cols = resize_matrix(width, math.ceil(width / 2), 0.5)
  return (rows.astype(plane.dtype) @ plane) @ cols.T.astype(plane.dtype)


def _multiscale_features(
    plane: np.ndarray,
    block_size: int,
    window: np.ndarray,
    precision: str,
) -> tuple[np.ndarray, np.ndarray]:
  """(N, 36) features and (N,) scale-1 block sharpness of a cropped plane."""
  dtype = _float_dtype(precision)
  plane = np.asarray(plane).astype(dtype)
  features, sharpness = [], None
  for scale in (1, 2):
    coeffs, sigma = mscn(plane, window, precision)
    size = block_size // scale
    features.append(block_features(_blocks(coeffs, size, size)))
    if scale == 1:
      sharpness = _blocks(sigma, size, size).mean(axis=(1, 2), dtype=np.float64)
      # BasicSR's /255 and *255 around the resize, in the working precision.
      plane = half_scale(plane / dtype(255.0)) * dtype(255.0)
  return np.concatenate(features, axis=1), sharpness


def _to_plane(image: np.ndarray, convert_to: str) -> np.ndarray:
  """The rounded float64 H x W plane (Y or gray) of an image in 0..255."""
  image = np.asarray(image)
  if convert_to not in ('y', 'gray'):
    raise ValueError(f"convert_to must be 'y' or 'gray', found {convert_to!r}")
  if not np.issubdtype(image.dtype, np.number) or np.iscomplexobj(image):
    raise TypeError(f'niqe expects a real image, found {image.dtype}')
  if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
    raise ValueError(
        f'niqe expects H x W x 3 RGB or gray H x W, found shape {image.shape}'
    )
  if image.size and (image.min() < 0 or image.max() > 255):
    raise ValueError(
        f'niqe expects values in 0..255, found [{image.min()}, {image.max()}]'
    )
  if image.ndim == 2:
    # Rounded like the RGB paths (BasicSR rounds whatever plane it gets).
    return np.floor(image.astype(np.float64) + 0.5)
  if convert_to == 'y':
    return color.rgb_to_y(image, rounded=True)
  return color.rgb_to_gray_luma(image, rounded=True)


def _prepare(
    image: np.ndarray, crop_border: int, convert_to: str, block_size: int
) -> np.ndarray:
  """Plane, border crop and crop to a multiple of block_size (top-left)."""
  if block_size < 2 or block_size % 2:
    # The second scale uses blocks of block_size / 2.
    raise ValueError(f'block_size must be even and >= 2, found {block_size}')
  if crop_border < 0:
    raise ValueError(f'crop_border must be >= 0, found {crop_border}')
  plane = _to_plane(image, convert_to)
  if crop_border:
    plane = plane[crop_border:-crop_border, crop_border:-crop_border]
  height, width = plane.shape
  if height < block_size or width < block_size:
    raise ValueError(
        f'niqe expects at least {block_size}x{block_size} pixels after '
        f'crop_border={crop_border}, found {height}x{width} (image '
        f'{image.shape[0]}x{image.shape[1]})'
    )
  return plane[: height - height % block_size, : width - width % block_size]


def _nan_mean_cov(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """nanmean, and nancov over the rows without NaN (MATLAB's default)."""
  with np.errstate(invalid='ignore'):
    count = np.sum(~np.isnan(features), axis=0)
    mean = np.where(
        count > 0, np.nansum(features, axis=0) / np.maximum(count, 1), np.nan
    )
  complete = features[~np.isnan(features).any(axis=1)]
  if len(complete) < 2:
    # One observation has no spread; np.cov would return NaN. A zero
    # covariance leaves the pristine one alone in the distance.
    return mean, np.zeros((features.shape[1],) * 2)
  return mean, np.cov(complete, rowvar=False)


def _check_params(params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Validates a pristine model dict; fills in the default Gaussian window."""
  missing = {'mu_pris_param', 'cov_pris_param'} - set(params)
  if missing:
    raise KeyError(f'NIQE params lack {sorted(missing)}; found {list(params)}')
  mu = np.asarray(params['mu_pris_param'], dtype=np.float64).reshape(1, -1)
  cov = np.asarray(params['cov_pris_param'], dtype=np.float64)
  if mu.shape != (1, NUM_FEATURES) or cov.shape != (NUM_FEATURES,) * 2:
    raise ValueError(
        f'NIQE params expect mu 1x{NUM_FEATURES} and cov '
        f'{NUM_FEATURES}x{NUM_FEATURES}, found {mu.shape} and {cov.shape}'
    )
  window = params.get('gaussian_window')
  window = gaussian_window() if window is None else np.asarray(window)
  return {
      'mu_pris_param': mu,
      'cov_pris_param': cov,
      'gaussian_window': window.astype(np.float64),
  }


def default_params_path() -> pathlib.Path:
  """$JAXSR_NIQE_PARAMS, else ~/.cache/jaxsr/niqe_pris_params.npz."""
  env = os.environ.get(PARAMS_ENV)
  return pathlib.Path(env) if env else assets.default_niqe_params_path()


@functools.lru_cache(maxsize=8)
def _load_npz(path: str) -> dict[str, np.ndarray]:
  """Reads and validates the npz once per path; arrays are read-only."""
  with np.load(path, allow_pickle=False) as data:
    params = _check_params({key: data[key] for key in data.files})
  for array in params.values():
    array.flags.writeable = False
  return params


def load_pristine_params(
    path: str | os.PathLike | None = None,
) -> dict[str, np.ndarray]:
  """Reads a pristine-model npz: mu 1x36, cov 36x36, gaussian_window 7x7.

  path=None uses $JAXSR_NIQE_PARAMS, else ~/.cache/jaxsr/niqe_pris_params.npz.
  A missing file raises FileNotFoundError saying how to get it.
  """
  path = pathlib.Path(path) if path is not None else default_params_path()
  if not path.is_file():
    raise FileNotFoundError(
        f'no NIQE pristine parameters at {path}. Fetch the original MATLAB '
        'model (basicsr/metrics/niqe_pris_params.npz inside the '
        'basicsr==1.4.2 source package on PyPI) with `python -m jaxsr.assets '
        'niqe` (from pip\'s package index; nothing is built), or download '
        'basicsr-1.4.2.tar.gz from https://pypi.org/project/basicsr/1.4.2/'
        '#files and run `python -m jaxsr.assets niqe --sdist PATH`, or '
        f'extract {assets.NIQE_MEMBER} yourself and pass its path or set '
        f'${PARAMS_ENV}.'
    )
  return _load_npz(str(path.resolve()))


def niqe_features(
    image: np.ndarray,
    crop_border: int = 0,
    convert_to: str = 'y',
    precision: str = 'float32',
    window: np.ndarray | None = None,
    block_size: int = BLOCK_SIZE,
) -> np.ndarray:
  """The (blocks, 36) two-scale NIQE features of one image (see `niqe`)."""
  plane = _prepare(image, crop_border, convert_to, block_size)
  window = gaussian_window() if window is None else window
  return _multiscale_features(plane, block_size, window, precision)[0]


def niqe(
    image: np.ndarray,
    crop_border: int = 0,
    params: Mapping[str, np.ndarray] | None = None,
    convert_to: str = 'y',
    precision: str = 'float32',
) -> float:
  """NIQE (lower is better) of an H x W x 3 RGB or H x W gray image in 0..255.

  Args:
    image: uint8 (or float in 0..255) RGB H x W x 3, or a gray H x W used
      as-is; planes are rounded to integers as MATLAB/BasicSR do.
    crop_border: pixels removed on every side first (the SR scale, e.g. 4).
    params: a pristine model {'mu_pris_param', 'cov_pris_param'[,
      'gaussian_window']}; None loads `load_pristine_params()`.
    convert_to: 'y' (BT.601 Y, the SR convention) or 'gray' (Rec.601 luma,
      what MATLAB's computequality gets after rgb2gray).
    precision: 'float32' keeps the MSCN and the second scale in float32 as
      BasicSR does (baboon 5.72957 vs MATLAB 5.72957338); 'float64' gives
      5.72996. Flat images move by up to ~0.4 between the two.

  Returns:
    The NIQE value; NaN if every block's features are undefined (flat
    image). With a single 96 x 96 block the image's covariance is taken as 0.
  """
  params = _check_params(load_pristine_params() if params is None else params)
  features = niqe_features(
      image, crop_border, convert_to, precision, params['gaussian_window']
  )
  mu_d, cov_d = _nan_mean_cov(features)
  diff = params['mu_pris_param'][0] - mu_d
  inv = np.linalg.pinv((params['cov_pris_param'] + cov_d) / 2.0)
  return float(np.sqrt(diff @ inv @ diff))


def fit_pristine_model(
    images: Iterable[np.ndarray],
    block_size: int = BLOCK_SIZE,
    sharpness_threshold: float = 0.75,
    crop_border: int = 0,
    convert_to: str = 'y',
    precision: str = 'float64',
) -> dict[str, np.ndarray]:
  """Fits a NIQE pristine model to pristine images (as `niqe` takes them).

  Follows MATLAB estimatemodelparam.m with zero overlap: the two-scale
  features of every block, keeping in each image the blocks whose mean
  local sigma (scale 1) exceeds sharpness_threshold times that image's
  sharpest block; then nanmean and nancov over the kept blocks of all
  images. MATLAB fits in double, hence the float64 default; it converts
  colour with rgb2gray, here Y unless convert_to='gray'.

  Returns:
    {'mu_pris_param': 1 x 36, 'cov_pris_param': 36 x 36, 'gaussian_window'}.
  """
  if not 0 <= sharpness_threshold < 1:
    raise ValueError(
        f'sharpness_threshold must be in [0, 1), found {sharpness_threshold}'
    )
  window = gaussian_window()
  kept = []
  for image in images:
    plane = _prepare(image, crop_border, convert_to, block_size)
    features, sharpness = _multiscale_features(
        plane, block_size, window, precision
    )
    # MATLAB's strict '>': threshold 0 still drops perfectly flat blocks.
    keep = sharpness > sharpness_threshold * sharpness.max()
    kept.append(features[keep])
  if not kept:
    raise ValueError('fit_pristine_model expects at least one image')
  features = np.concatenate(kept, axis=0)
  if np.sum(~np.isnan(features).any(axis=1)) < 2:
    raise ValueError(
        'fit_pristine_model needs at least 2 blocks with defined features, '
        f'found {len(features)} kept blocks'
    )
  mean, cov = _nan_mean_cov(features)
  return {
      'mu_pris_param': mean[None, :],
      'cov_pris_param': cov,
      'gaussian_window': window,
  }
