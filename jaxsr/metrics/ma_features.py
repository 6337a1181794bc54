"""Ma et al. (2017) NRQM features of an H x W luminance plane in 0..255.

The three groups of `chaoma99/sr-metric` as ported by pyiqa
(`pyiqa/archs/nrqm_arch.py`, after the fix of IQA-PyTorch#67), all float64:
- f1 (18): local frequency statistics. A 3-level Gaussian pyramid of
  plane / 255 (3 x 3 fspecial sigma 0.5, zero padding, keep odd pixels);
  on each level the 2-D orthonormal DCT of 7 x 7 blocks taken every 3
  pixels (MATLAB blkproc [3 3] with a 2-pixel border); per level six
  numbers: the generalized-Gaussian shape of the AC coefficients (mean of
  the lowest 10 % and of all blocks), their coefficient of variation (mean
  of the highest 10 % and of all) and the variance across three oriented
  coefficient groups of that ratio (highest 10 % and all).
- f2 (45): global frequency statistics (DIIVINE-style). A 2-level, 6-band
  steerable pyramid of the plane; its 12 oriented bands divisively
  normalised (Gaussian scale mixture); 12 shapes of the normalised bands,
  6 shapes of each band pooled over both scales, 12 SSIM contrast-structure
  terms of each band (resized) against the high-pass residual, 15 between
  the normalised orientations of the finest scale.
- f3 (75): spatial discontinuity. The 25 singular values of the matrix of
  distinct 5 x 5 patches of each pyramid level.
"""

import functools
import math

import numpy as np
from scipy import fft
from scipy import ndimage
from scipy import special

from jaxsr.data.imresize import resize_matrix

NUM_SCALES = 3
NUM_BANDS = 6
# Smallest side for which every step is defined: the finest normalised
# band is side - 2 - 2 * 16 wide and must still hold an 11 x 11 SSIM window.
MIN_SIZE = 45

# gama_gen_gauss.m's shape grid 0.03:0.001:10 and the ratio
# r(g) = G(1/g) G(3/g) / G(2/g)^2 = var / E|x - mean|^2 it inverts.
_GGD_SHAPES = 0.03 + 0.001 * np.arange(9971)
_GGD_RATIOS = np.exp(
    special.gammaln(1.0 / _GGD_SHAPES)
    + special.gammaln(3.0 / _GGD_SHAPES)
    - 2.0 * special.gammaln(2.0 / _GGD_SHAPES)
)
# r(g) falls monotonically, so the nearest entry is found by bisection.
_GGD_RATIOS_ASC = _GGD_RATIOS[::-1]

# (row, first column) runs of the three oriented DCT groups of a 7 x 7
# block (pyiqa oriented_dct_rho): near-horizontal, diagonal, near-vertical.
_ORIENTED_ROWS = (
    ((0, 1, 7), (1, 2, 7), (2, 4, 7), (3, 5, 7)),
    ((1, 1, 2), (2, 2, 4), (3, 2, 5), (4, 3, 7), (5, 4, 7), (6, 4, 7)),
)


def _oriented_indices() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Flat indices (into 49) of the three 16-coefficient oriented groups."""
  groups = []
  for runs in _ORIENTED_ROWS:
    groups.append(
        np.concatenate([r * 7 + np.arange(a, b) for r, a, b in runs])
    )
  # The third group is the transpose of the first (column runs).
  rows, cols = np.divmod(groups[0], 7)
  groups.append(cols * 7 + rows)
  return tuple(groups)


_ORIENTED = _oriented_indices()


def ggd_shape(x: np.ndarray) -> np.ndarray:
  """Generalized-Gaussian shape on the grid 0.03:0.001:10, over the last axis.

  gama_gen_gauss: rho = var (unbiased) / (mean|x - mean| ^ 2 + 1e-7), and
  the grid shape whose r(g) is nearest rho (first on ties).
  """
  x = np.asarray(x, dtype=np.float64)
  if x.shape[-1] < 2:
    raise ValueError(f'ggd_shape needs >= 2 samples, found {x.shape[-1]}')
  mean = x.mean(axis=-1, keepdims=True)
  var = x.var(axis=-1, ddof=1)
  mean_abs = np.mean(np.abs(x - mean), axis=-1) ** 2
  rho = var / (mean_abs + 1e-7)
  # Nearest of the two bracketing entries of the ascending table.
  hi = np.clip(np.searchsorted(_GGD_RATIOS_ASC, rho), 1, len(_GGD_SHAPES) - 1)
  lo = hi - 1
  # Equal distances go to the larger ratio, i.e. the smaller shape, which
  # is the first index of the descending table (argmin's choice).
  pick_hi = (_GGD_RATIOS_ASC[hi] - rho) <= (rho - _GGD_RATIOS_ASC[lo])
  asc = np.where(pick_hi, hi, lo)
  return _GGD_SHAPES[len(_GGD_SHAPES) - 1 - asc]


def abs_variation(x: np.ndarray, eps: float = 1e-7) -> np.ndarray:
  """std(|x|) (unbiased) / (mean(|x|) + eps) over the last axis, float64."""
  a = np.abs(np.asarray(x, dtype=np.float64))
  return a.std(axis=-1, ddof=1) / (a.mean(axis=-1) + eps)


def gaussian_pyramid(plane: np.ndarray) -> list[np.ndarray]:
  """[plane, 1/2, 1/4]: 3 x 3 Gaussian (sigma 0.5), zero border, odd pixels."""
  x = (np.arange(3) - 1.0) ** 2
  kernel = np.exp(-(x[:, None] + x[None, :]) / (2 * 0.5**2))
  kernel /= kernel.sum()
  levels = [np.asarray(plane, dtype=np.float64)]
  for _ in range(NUM_SCALES - 1):
    blurred = ndimage.correlate(levels[-1], kernel, mode='constant')
    levels.append(blurred[1::2, 1::2])
  return levels


def dct_blocks(plane: np.ndarray) -> np.ndarray:
  """(N, 7, 7) orthonormal DCT-II of 7 x 7 blocks at stride 3 of an H x W plane.

  Blocks start every 3 pixels; the plane is zero-padded so that there are
  ceil(H / 3) x ceil(W / 3) of them, the padding split as TensorFlow's
  'same' (pyiqa extract_2d_patches): 2 on top when H is a multiple of 3.
  """
  plane = np.asarray(plane, dtype=np.float64)
  pads = []
  for size in plane.shape:
    total = (math.ceil(size / 3) - 1) * 3 + 7 - size
    pads.append((total // 2, total - total // 2))
  padded = np.pad(plane, pads)
  windows = np.lib.stride_tricks.sliding_window_view(padded, (7, 7))
  blocks = windows[::3, ::3].reshape(-1, 7, 7)
  return fft.dctn(blocks, type=2, norm='ortho', axes=(1, 2))


def _tail_means(values: np.ndarray) -> tuple[float, float, float]:
  """Sorted values' mean of the first ceil(n/10)+1, the last n - floor(0.9n),
  and all (pyiqa's p10 / p10_last / p100 slices)."""
  values = np.sort(values)
  n = len(values)
  return (
      float(values[: math.ceil(0.1 * n) + 1].mean()),
      float(values[math.floor(0.9 * n) :].mean()),
      float(values.mean()),
  )


def block_dct_features(level: np.ndarray) -> np.ndarray:
  """The 6 DCT statistics of one pyramid level (values 0..1): float64 (6,)."""
  coeffs = dct_blocks(level).reshape(-1, 49)
  ac = coeffs[:, 1:]
  shape_low, _, shape_all = _tail_means(ggd_shape(ac))
  _, cv_high, cv_all = _tail_means(abs_variation(ac))
  oriented = np.stack(
      [abs_variation(coeffs[:, idx], eps=1e-8) for idx in _ORIENTED], axis=-1
  )
  _, ori_high, ori_all = _tail_means(oriented.var(axis=-1, ddof=1))
  return np.array(
      [shape_low, shape_all, cv_high, cv_all, ori_high, ori_all]
  )


def dct_features(plane: np.ndarray) -> np.ndarray:
  """f1: float64 (18,) local frequency features of an H x W plane in 0..255."""
  levels = gaussian_pyramid(np.asarray(plane, dtype=np.float64) / 255.0)
  return np.concatenate([block_dct_features(lv) for lv in levels])


def pca_features(plane: np.ndarray) -> np.ndarray:
  """f3: float64 (75,) singular values of distinct 5 x 5 patches per level.

  MATLAB im2col(level, [5 5], 'distinct') zero-pads right and bottom to a
  multiple of 5; the 25 singular values of the (patches, 25) matrix, in
  descending order (zero-filled below 25 patches), for each of the 3 levels
  of plane / 255.
  """
  out = []
  for level in gaussian_pyramid(np.asarray(plane, dtype=np.float64) / 255.0):
    h, w = level.shape
    padded = np.pad(level, ((0, -h % 5), (0, -w % 5)))
    ph, pw = padded.shape[0] // 5, padded.shape[1] // 5
    patches = padded.reshape(ph, 5, pw, 5).transpose(0, 2, 1, 3)
    values = np.linalg.svd(patches.reshape(-1, 25), compute_uv=False)
    # Under 25 patches (sides < 81 at the coarsest level) svd gives fewer
    # values; the rest are those of zero patches, 0, so a level gives 25.
    out.append(np.pad(values, (0, 25 - len(values))))
  return np.concatenate(out)


def _interp(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
  """pointOp: linear lookup of x in the table (xp, fp), clamped at its ends."""
  return np.interp(x.ravel(), xp, fp).reshape(x.shape)


def _polar_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
  """log2 radius and angle of the centred frequency grid (matlabPyrTools)."""
  def axis(m):
    return np.linspace(
        -(m // 2) / (m / 2), (m // 2) / (m / 2) - (1 - m % 2) * 2 / m, num=m
    )

  xv, yv = np.meshgrid(axis(width), axis(height))
  angle = np.arctan2(yv, xv)
  rad = np.sqrt(xv**2 + yv**2)
  # The DC sample borrows its left neighbour's radius so log2 stays finite.
  rad[height // 2, width // 2] = rad[height // 2, width // 2 - 1]
  return np.log2(rad), angle


def _raised_cosine() -> tuple[np.ndarray, np.ndarray]:
  """rcosFn(1, -0.5): the log-radius transition table, sqrt of cos^2."""
  n = 256
  x = np.pi * np.arange(-n - 1, 2) / 2 / n
  y = np.cos(x) ** 2
  y[0], y[n + 2] = y[1], y[n + 1]
  return -0.5 + 2 / np.pi * (x + np.pi / 4), np.sqrt(y)


def steerable_pyramid(
    plane: np.ndarray, levels: int = 2, bands: int = NUM_BANDS
) -> tuple[np.ndarray, list[list[np.ndarray]]]:
  """Frequency-domain steerable pyramid (pyiqa SCFpyr, real parts) of H x W.

  Returns (high-pass residual H x W, [[bands of level 0, H x W], [bands of
  level 1, ceil(H/2 - 1/4) x ...]]): the real part of each complex band
  (angular mask on one half-plane, times (-i)^(bands - 1)).
  """
  plane = np.asarray(plane, dtype=np.float64)
  height, width = plane.shape
  log_rad, angle = _polar_grid(height, width)
  xrcos, yrcos = _raised_cosine()
  yircos = np.sqrt(1.0 - yrcos**2)
  dft = np.fft.fftshift(np.fft.fft2(plane))
  hi0 = np.fft.ifft2(np.fft.ifftshift(dft * _interp(log_rad, xrcos, yrcos)))
  lodft = dft * _interp(log_rad, xrcos, yircos)

  order = bands - 1
  lut = 1024
  xcosn = np.pi * np.arange(-(2 * lut + 1), lut + 2) / lut
  alpha = np.mod(xcosn + np.pi, 2 * np.pi) - np.pi
  const = (2 ** (2 * order)) * math.factorial(order) ** 2 / (
      bands * math.factorial(2 * order)
  )
  ycosn = (
      2 * np.sqrt(const) * np.cos(xcosn) ** order
      * (np.abs(alpha) < np.pi / 2)
  )
  phase = (-1j) ** order

  pyramid = []
  for _ in range(levels):
    xrcos = xrcos - 1.0
    himask = _interp(log_rad, xrcos, yrcos)
    level = []
    for b in range(bands):
      anglemask = _interp(angle, xcosn + np.pi * b / bands, ycosn)
      band = np.fft.ifft2(np.fft.ifftshift(lodft * anglemask * himask * phase))
      level.append(band.real)
    pyramid.append(level)
    # Keep the central half of the spectrum (matlabPyrTools index formula).
    dims = np.array(lodft.shape, dtype=np.float64)
    half = np.ceil((dims - 0.5) / 2)
    start = (np.ceil((dims + 0.5) / 2) - np.ceil((half + 0.5) / 2)).astype(int)
    end = start + half.astype(int)
    crop = (slice(start[0], end[0]), slice(start[1], end[1]))
    log_rad, angle, lodft = log_rad[crop], angle[crop], lodft[crop]
    lodft = lodft * _interp(log_rad, xrcos, yircos)
  return hi0.real, pyramid


def imresize_to(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  """MATLAB imresize(x, shape, 'bicubic') of a float H x W array, float64."""
  h, w = x.shape
  out = np.asarray(x, dtype=np.float64)
  if shape[0] != h:
    out = resize_matrix(h, shape[0], shape[0] / h) @ out
  if shape[1] != w:
    out = out @ resize_matrix(w, shape[1], shape[1] / w).T
  return out


def _windows3(band: np.ndarray) -> np.ndarray:
  """(n, 9) row-major 3 x 3 neighbourhoods of the interior pixels of a band."""
  view = np.lib.stride_tricks.sliding_window_view(band, (3, 3))
  return view.reshape(-1, 9)


def divisive_normalization(
    bands: list[list[np.ndarray]], eps: float = 1e-12
) -> list[np.ndarray]:
  """DIIVINE norm_sender_normalized of 2 x 6 bands: 12 zero-mean planes.

  Each coefficient is divided by sqrt(v^T C^-1 v / N), v its 3 x 3
  neighbourhood, its parent (bicubic-upsampled coarser band, finest level
  only) and the other orientations at the same position, C the PSD-projected
  covariance of v (eigenvalues clipped at 0, their sum kept), N the count of
  neighbourhood + parent entries; then a guard band of 16 / 2^level pixels
  is cut and the mean removed.
  """
  out = []
  for si, level in enumerate(bands):
    for bi, band in enumerate(level):
      cols = [_windows3(band)]
      n = 9
      if si + 1 < len(bands):
        parent = imresize_to(bands[si + 1][bi], band.shape)
        cols.append(parent[1:-1, 1:-1].reshape(-1, 1))
        n += 1
      for ni, other in enumerate(level):
        if ni != bi:
          cols.append(other[1:-1, 1:-1].reshape(-1, 1))
      v = np.concatenate(cols, axis=1)
      cov = v.T @ v / v.shape[0]
      eigval, eigvec = np.linalg.eigh(cov)
      positive = eigval * (eigval > 0)
      total = positive.sum()
      eigval = positive * eigval.sum() / (total + (total == 0))
      cov = (eigvec * eigval) @ eigvec.T
      centre = band[1:-1, 1:-1].ravel()
      centre = centre - centre.mean()
      # v C^-1 v^T row by row; the pseudo-inverse is lstsq's min-norm answer.
      z = np.sqrt(np.sum((v @ np.linalg.pinv(cov)) * v, axis=1) / n)
      mask = z != 0
      g = (centre * mask / (z * mask + eps)).reshape(
          band.shape[0] - 2, band.shape[1] - 2
      )
      gb = 16 // 2**si
      g = g[gb:-gb, gb:-gb]
      out.append(g - g.mean())
  return out


@functools.lru_cache(maxsize=1)
def _ssim_window() -> np.ndarray:
  """fspecial('gaussian', 11, 1.5) as its normalised 1-D factor."""
  x = np.arange(11) - 5.0
  g = np.exp(-(x**2) / (2 * 1.5**2))
  return g / g.sum()


def ssim_cs(x: np.ndarray, y: np.ndarray, data_range: float = 255.0) -> float:
  """Mean SSIM contrast-structure term over the 'valid' 11 x 11 windows.

  (2 s_xy + C2) / (s_x^2 + s_y^2 + C2), C2 = (0.03 L)^2, local moments from
  the 11 x 11 Gaussian window (sigma 1.5), each map value clipped at 0.
  """
  g = _ssim_window()

  def blur(a):
    a = ndimage.correlate1d(a, g, axis=0, mode='constant')
    a = ndimage.correlate1d(a, g, axis=1, mode='constant')
    return a[5:-5, 5:-5]

  x = np.asarray(x, dtype=np.float64)
  y = np.asarray(y, dtype=np.float64)
  if x.shape != y.shape or min(x.shape) < 11:
    raise ValueError(
        f'ssim_cs expects equal shapes of at least 11 x 11, found {x.shape} '
        f'and {y.shape}'
    )
  c2 = (0.03 * data_range) ** 2
  mx, my = blur(x), blur(y)
  sxx = blur(x * x) - mx * mx
  syy = blur(y * y) - my * my
  sxy = blur(x * y) - mx * my
  cs = np.maximum((2 * sxy + c2) / (sxx + syy + c2), 0.0)
  return float(cs.mean())


def gsm_features(plane: np.ndarray) -> np.ndarray:
  """f2: float64 (45,) global frequency features of an H x W plane in 0..255."""
  plane = np.asarray(plane, dtype=np.float64)
  hp, bands = steerable_pyramid(plane)
  normed = divisive_normalization(bands)
  feats = [ggd_shape(g.ravel()) for g in normed]
  for i in range(NUM_BANDS):
    pooled = np.concatenate([normed[i].ravel(), normed[i + NUM_BANDS].ravel()])
    feats.append(ggd_shape(pooled))
  # After IQA-PyTorch#67: raw (not normalised) bands against the residual,
  # and only the contrast-structure term of SSIM.
  for level in bands:
    for band in level:
      feats.append(ssim_cs(imresize_to(band, hp.shape), hp))
  for i in range(NUM_BANDS):
    for j in range(i + 1, NUM_BANDS):
      feats.append(ssim_cs(normed[i], normed[j]))
  return np.array(feats, dtype=np.float64)


def ma_features(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(f1 (18,), f2 (45,), f3 (75,)) of an H x W luminance plane in 0..255."""
  plane = np.asarray(plane, dtype=np.float64)
  if plane.ndim != 2:
    raise ValueError(f'ma_features expects an H x W plane, found {plane.shape}')
  if min(plane.shape) < MIN_SIZE:
    raise ValueError(
        f'ma_features expects at least {MIN_SIZE}x{MIN_SIZE} pixels, found '
        f'{plane.shape[0]}x{plane.shape[1]}'
    )
  return dct_features(plane), gsm_features(plane), pca_features(plane)
