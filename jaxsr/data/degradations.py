"""Blind-SR degradations: Gaussian blur kernels -> MATLAB bicubic downscale -> noise, and the kernel PCA code.

The protocol of IKC/DAN (yuanjunchai/IKC `codes/utils/util.py`), which the
AMGAN paper compares against; the choices that paper leaves open:

- Kernels are `size` x `size` (21 by default, odd only), sampled on integer
  offsets -r..r (r = size // 2) around the centre and normalized to sum 1.
  Isotropic: exp(-(x^2 + y^2) / (2 sigma^2)); "kernel width W" means sigma = W.
  Anisotropic: covariance R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T in
  (x = column, y = row) coordinates, rows pointing down, so theta > 0 turns
  the sigma_x axis from +x towards +y (clockwise on screen). Random kernels
  follow IKC's sampler: with probability `rate_iso` isotropic with
  sigma ~ U(lo, hi) (lo, hi = 0.2, 4.0 for x4); otherwise theta ~ U(-pi, pi),
  sigma_x ~ U(lo, hi), sigma_y = clip(U(0, 1) * scaling * sigma_x, lo, hi).
- Blur is a CORRELATION (out[y, x] = sum_ij k[i, j] in[y + i - r, x + j - r],
  what torch's F.conv2d in IKC's BatchBlur computes) after REFLECT padding by
  r (torch ReflectionPad2d = numpy 'reflect': the edge pixel is not repeated).
  Correlation and convolution differ only for kernels that are not
  point-symmetric; Gaussians are point-symmetric, but a user-supplied kernel
  is used as correlation.
- Downscale: MATLAB-exact bicubic (jaxsr.data.imresize, the float path: no
  rounding between the passes). IKC uses PIL bicubic instead; the AMGAN
  paper says bicubic, and MATLAB's is the benchmark convention.
- Noise (optional): additive white Gaussian noise in [0, 1] image units
  (0.08 = 20.4/255), per image level 0 with probability `rate_clean`, else
  U(0, noise_max), as IKC's random_batch_noise; the LR is then clipped to
  [0, 1] as IKC's b_GaussianNoising clamps. The code gets the level appended,
  times `noise_code_scale` (10, as IKC's SRMDPreprocessing).
- Kernel PCA: the principal axes of the centred flattened kernels (as IKC's
  PCA()). IKC then encodes WITHOUT subtracting the mean (code = k @ U); here
  the mean is subtracted by default (code = (k - mean) @ U), which makes
  decode(encode(k)) the best rank-`dim` reconstruction; center=False stores a
  zero mean and reproduces IKC's encoder. The axes are signed so that each
  one's largest-magnitude entry is positive, so the fit is the same on every
  machine for the same seed. The fitted `KernelPCA` is a pytree of two
  arrays, meant to be kept in the method's checkpointed state.
- Test sets (deterministic, numpy float64): blur with the isotropic kernel of
  width W, MATLAB bicubic downscale of the float image, one final rounding to
  uint8 (as DAN's generate_mod_blur_LR_bic script saves its float LR). Table 1
  of the AMGAN supplement averages W = 0.2, 1.3, 2.6; IKC's Gaussian8 is 8
  widths evenly over [1.8, 3.2] (x4), [1.35, 2.40] (x3), [0.80, 1.60] (x2).
"""

import functools
import math
from collections.abc import Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np

from jaxsr.data import imresize as imresize_lib

KERNEL_SIZE = 21
# IKC's training range of the kernel width for x4 (util.random_batch_kernel).
SIGMA_RANGE_X4 = (0.2, 4.0)
# The AMGAN supplement's Table 1 averages these widths.
TABLE1_WIDTHS = (0.2, 1.3, 2.6)
# IKC's Gaussian8: 8 widths evenly over these ranges, per scale.
GAUSSIAN8_RANGES = {2: (0.80, 1.60), 3: (1.35, 2.40), 4: (1.80, 3.20)}
PROTOCOLS = ('gaussian', 'gaussian8')


def check_kernel_size(size: int) -> int:
  """The kernel size as an int; raises ValueError unless odd and positive."""
  if int(size) != size or size < 1 or size % 2 == 0:
    raise ValueError(
        f'kernel size must be a positive odd integer, found {size}')
  return int(size)


def _check_width(name: str, value) -> None:
  """Raises ValueError for a concrete width <= 0 (traced values pass)."""
  if isinstance(value, (int, float, np.floating, np.integer)) and not (
      math.isfinite(value) and value > 0):
    raise ValueError(f'{name} must be a positive kernel width, found {value}')


def check_sigma_range(sigma_range: Sequence[float]) -> tuple[float, float]:
  """(lo, hi) with 0 < lo <= hi, or ValueError."""
  if len(sigma_range) != 2:
    raise ValueError(f'sigma_range must be (lo, hi), found {sigma_range!r}')
  lo, hi = float(sigma_range[0]), float(sigma_range[1])
  _check_width('sigma_range lo', lo)
  _check_width('sigma_range hi', hi)
  if lo > hi:
    raise ValueError(f'sigma_range must have lo <= hi, found ({lo}, {hi})')
  return lo, hi


def gaussian_kernel(sigma_x, sigma_y=None, theta=0.0,
                    size: int = KERNEL_SIZE) -> jax.Array:
  """A (size, size) float32 Gaussian kernel summing to 1 (jittable in sigmas).

  Args:
    sigma_x: width along the (rotated) x axis, in pixels.
    sigma_y: width along the (rotated) y axis; None: isotropic (= sigma_x).
    theta: rotation in radians of the sigma_x axis from +x (columns) towards
      +y (rows, pointing down).
    size: odd kernel side.
  """
  size = check_kernel_size(size)
  sigma_y = sigma_x if sigma_y is None else sigma_y
  _check_width('sigma_x', sigma_x)
  _check_width('sigma_y', sigma_y)
  r = size // 2
  y, x = jnp.mgrid[-r:r + 1, -r:r + 1].astype(jnp.float32)
  c, s = jnp.cos(theta), jnp.sin(theta)
  u = c * x + s * y  # Coordinates on the kernel's own axes: R^T (x, y).
  v = -s * x + c * y
  k = jnp.exp(-0.5 * ((u / sigma_x)**2 + (v / sigma_y)**2))
  return k / jnp.sum(k)


def gaussian_kernel_np(width: float, size: int = KERNEL_SIZE) -> np.ndarray:
  """The isotropic test-set kernel of a width, float64 (size, size), sum 1."""
  size = check_kernel_size(size)
  _check_width('kernel width', width)
  r = size // 2
  g = np.exp(-np.arange(-r, r + 1, dtype=np.float64)**2 / (2.0 * width**2))
  k = np.outer(g, g)
  return k / k.sum()


def sample_kernel_params(key: jax.Array, batch: int,
                         sigma_range=SIGMA_RANGE_X4, rate_iso: float = 1.0,
                         scaling: float = 3.0):
  """IKC's random kernel parameters: (sigma_x, sigma_y, theta), each (B,)."""
  lo, hi = check_sigma_range(sigma_range)
  k_iso, k_theta, k_x, k_y = jax.random.split(key, 4)
  iso = jax.random.uniform(k_iso, (batch,)) < rate_iso
  theta = jax.random.uniform(k_theta, (batch,), minval=-jnp.pi, maxval=jnp.pi)
  sx = jax.random.uniform(k_x, (batch,), minval=lo, maxval=hi)
  sy = jnp.clip(jax.random.uniform(k_y, (batch,)) * scaling * sx, lo, hi)
  return sx, jnp.where(iso, sx, sy), jnp.where(iso, 0.0, theta)


def random_kernels(key: jax.Array, batch: int, sigma_range=SIGMA_RANGE_X4,
                   rate_iso: float = 1.0, scaling: float = 3.0,
                   size: int = KERNEL_SIZE) -> jax.Array:
  """(batch, size, size) random Gaussian kernels (see sample_kernel_params)."""
  sx, sy, theta = sample_kernel_params(key, batch, sigma_range, rate_iso,
                                       scaling)
  make = functools.partial(gaussian_kernel, size=size)
  return jax.vmap(make)(sx, sy, theta)


def _check_blur_shapes(hw: Sequence[int], size: int) -> None:
  """Reflect padding by size // 2 needs both sides longer than that."""
  r = size // 2
  if min(hw) <= r:
    raise ValueError(f'blur with a {size}x{size} kernel needs images larger '
                     f'than {r} pixels on each side, found {hw[0]}x{hw[1]}')


def blur(images: jax.Array, kernels: jax.Array) -> jax.Array:
  """Reflect-padded correlation of each image with its own kernel.

  Args:
    images: (B, H, W, C) float.
    kernels: (B, k, k), k odd.

  Returns:
    (B, H, W, C): out[b, y, x] = sum_ij kernels[b, i, j] pad[b, y + i, x + j].
  """
  b, h, w, c = images.shape
  if kernels.ndim != 3 or kernels.shape[0] != b or (
      kernels.shape[1] != kernels.shape[2]):
    raise ValueError(f'blur expects kernels of shape ({b}, k, k), found '
                     f'{kernels.shape}')
  size = check_kernel_size(kernels.shape[1])
  _check_blur_shapes((h, w), size)
  r = size // 2
  padded = jnp.pad(images, ((0, 0), (r, r), (r, r), (0, 0)), mode='reflect')
  # One depthwise conv over B*C groups: (1, Hp, Wp, B*C) with (k, k, 1, B*C).
  lhs = jnp.transpose(padded, (1, 2, 0, 3)).reshape(1, h + 2 * r, w + 2 * r,
                                                    b * c)
  rhs = jnp.broadcast_to(jnp.transpose(kernels, (1, 2, 0))[..., None],
                         (size, size, b, c)).reshape(size, size, 1, b * c)
  # XLA convolutions are correlations (no kernel flip), as torch's conv2d.
  out = jax.lax.conv_general_dilated(
      lhs, rhs.astype(images.dtype), (1, 1), 'VALID',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=b * c,
      precision=jax.lax.Precision.HIGHEST)
  return jnp.transpose(out.reshape(h, w, b, c), (2, 0, 1, 3))


def degrade(hr: jax.Array, kernels: jax.Array, scale: int,
            noise: jax.Array | None = None, key: jax.Array | None = None,
            clip: bool = True) -> jax.Array:
  """blur -> MATLAB bicubic x(1/scale) -> + noise * N(0, 1) [-> clip to [0, 1]].

  Args:
    hr: (B, H, W, C) float32 in [0, 1].
    kernels: (B, k, k) blur kernels.
    scale: integer downscaling factor.
    noise: (B,) noise standard deviations in [0, 1] units, or None.
    key: the noise key (needed when noise is given).
    clip: clip the LR to [0, 1] (as an image file would be).

  Returns:
    (B, ceil(H / scale), ceil(W / scale), C) LR.
  """
  if int(scale) != scale or scale < 1:
    raise ValueError(f'scale must be a positive integer, found {scale}')
  lr = imresize_lib.imresize_jax(blur(hr, kernels), 1 / int(scale))
  if noise is not None:
    if key is None:
      raise ValueError('degrade needs a key when noise levels are given')
    lr = lr + noise[:, None, None, None] * jax.random.normal(key, lr.shape,
                                                             lr.dtype)
  return jnp.clip(lr, 0.0, 1.0) if clip else lr


@flax.struct.dataclass
class KernelPCA:
  """A fitted kernel PCA: mean (k*k,), orthonormal basis (k*k, dim); float32."""
  mean: jax.Array
  basis: jax.Array


def fit_pca(kernels, dim: int = 10, center: bool = True) -> KernelPCA:
  """The top-`dim` principal axes of (N, k, k) kernels (float64 eigh).

  The axes are those of the centred data either way (as IKC's PCA());
  `center` only decides whether the stored mean is the data mean or zero.
  """
  return _as_pca(*_pca_arrays(kernels, dim, center))


def _pca_arrays(kernels, dim: int, center: bool
                ) -> tuple[np.ndarray, np.ndarray]:
  """(mean, basis) float32 numpy of fit_pca (numpy only: safe while tracing)."""
  x = np.asarray(kernels, dtype=np.float64)
  if x.ndim != 3 or x.shape[1] != x.shape[2]:
    raise ValueError(f'fit_pca expects (N, k, k) kernels, found {x.shape}')
  x = x.reshape(x.shape[0], -1)
  if x.shape[0] < 2 or not 1 <= dim <= x.shape[1]:
    raise ValueError(f'PCA dim must be in [1, {x.shape[1]}] with at least 2 '
                     f'kernels, found dim {dim} and {x.shape[0]} kernels')
  mean = x.mean(axis=0)
  xc = x - mean
  _, vectors = np.linalg.eigh(xc.T @ xc)
  basis = vectors[:, ::-1][:, :dim]  # eigh sorts ascending.
  # Deterministic signs: each axis's largest-magnitude entry is positive.
  peak = basis[np.argmax(np.abs(basis), axis=0), np.arange(dim)]
  basis = basis * np.where(peak < 0, -1.0, 1.0)
  if not center:
    mean = np.zeros_like(mean)
  return mean.astype(np.float32), basis.astype(np.float32)


def _as_pca(mean: np.ndarray, basis: np.ndarray) -> KernelPCA:
  """KernelPCA of float32 jax arrays from numpy arrays."""
  return KernelPCA(mean=jnp.asarray(mean, jnp.float32),
                   basis=jnp.asarray(basis, jnp.float32))


def fit_kernel_pca(seed: int, dim: int = 10, num_kernels: int = 30000,
                   sigma_range=SIGMA_RANGE_X4, rate_iso: float = 1.0,
                   scaling: float = 3.0, size: int = KERNEL_SIZE,
                   center: bool = True) -> KernelPCA:
  """The PCA of `num_kernels` random kernels drawn with numpy's default_rng(seed).

  DAN fits its matrix the same way, on 30000 kernels of the training range.
  Pure numpy (IKC's sampler, as sample_kernel_params), so a method's init may
  call it under jit or jax.eval_shape; the result is cached per arguments.
  """
  mean, basis = _fit_kernel_pca(
      int(seed), int(dim), int(num_kernels), check_sigma_range(sigma_range),
      float(rate_iso), float(scaling), check_kernel_size(size), bool(center))
  return _as_pca(mean, basis)


@functools.lru_cache(maxsize=8)
def _fit_kernel_pca(seed, dim, num_kernels, sigma_range, rate_iso, scaling,
                    size, center) -> tuple[np.ndarray, np.ndarray]:
  """(mean, basis) float32 numpy of fit_kernel_pca (hashable arguments)."""
  lo, hi = sigma_range
  rng = np.random.default_rng(seed)
  iso = rng.random(num_kernels) < rate_iso
  theta = rng.uniform(-np.pi, np.pi, num_kernels)
  sx = rng.uniform(lo, hi, num_kernels)
  sy = np.clip(rng.random(num_kernels) * scaling * sx, lo, hi)
  sy, theta = np.where(iso, sx, sy), np.where(iso, 0.0, theta)
  # The kernels of gaussian_kernel, in float64.
  sx, sy, theta = (p[:, None, None] for p in (sx, sy, theta))
  r = size // 2
  y, x = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float64)
  u = np.cos(theta) * x + np.sin(theta) * y
  v = -np.sin(theta) * x + np.cos(theta) * y
  kernels = np.exp(-0.5 * ((u / sx)**2 + (v / sy)**2))
  kernels /= kernels.sum(axis=(1, 2), keepdims=True)
  # Numpy in the cache: never an array made while some caller traces.
  return _pca_arrays(kernels, dim, center)


def encode(pca: KernelPCA, kernels: jax.Array) -> jax.Array:
  """(B, k, k) kernels -> (B, dim) codes: (flat - mean) @ basis."""
  flat = kernels.reshape(kernels.shape[0], -1)
  if flat.shape[1] != pca.basis.shape[0]:
    raise ValueError(f'the PCA was fitted on {pca.basis.shape[0]}-pixel '
                     f'kernels, found kernels of shape {kernels.shape[1:]}')
  return jnp.dot(flat - pca.mean, pca.basis,
                 precision=jax.lax.Precision.HIGHEST)


def decode(pca: KernelPCA, codes: jax.Array) -> jax.Array:
  """(B, dim) codes -> (B, k, k) kernels: mean + code @ basis^T."""
  size = math.isqrt(pca.basis.shape[0])
  flat = pca.mean + jnp.dot(codes, pca.basis.T,
                            precision=jax.lax.Precision.HIGHEST)
  return flat.reshape(codes.shape[0], size, size)


def random_degradation(key: jax.Array, hr: jax.Array, *, scale: int,
                       pca: KernelPCA, sigma_range=SIGMA_RANGE_X4,
                       rate_iso: float = 1.0, scaling: float = 3.0,
                       noise_max: float = 0.0, rate_clean: float = 0.2,
                       noise_code_scale: float = 10.0) -> dict:
  """An on-the-fly blind-SR batch from an HR batch and a key (jittable).

  Args:
    key: this batch's key (e.g. fold_in(rng, step)).
    hr: (B, H, W, C) float32 in [0, 1], H and W multiples of scale.
    scale: integer factor.
    pca: the fitted KernelPCA (its kernel size is the one drawn).
    sigma_range, rate_iso, scaling: the kernel sampler's (sample_kernel_params).
    noise_max: largest noise level in [0, 1] units; 0 turns noise off.
    rate_clean: probability of a noise-free image when noise is on.
    noise_code_scale: the noise level's factor in the code.

  Returns:
    {'lr': (B, H/s, W/s, C), 'hr': hr, 'kernel': (B, k, k), 'noise': (B,),
     'code': (B, dim), or (B, dim + 1) with the scaled noise level last when
     noise_max > 0}.
  """
  if hr.ndim != 4:
    raise ValueError(f'random_degradation expects (B, H, W, C), found '
                     f'{hr.shape}')
  if hr.shape[1] % scale or hr.shape[2] % scale:
    raise ValueError(f'HR batch is {hr.shape[1]}x{hr.shape[2]}, not a '
                     f'multiple of the scale {scale}')
  if noise_max < 0:
    raise ValueError(f'noise_max must be >= 0, found {noise_max}')
  batch = hr.shape[0]
  size = math.isqrt(pca.basis.shape[0])
  k_kernel, k_level, k_clean, k_noise = jax.random.split(key, 4)
  kernels = random_kernels(k_kernel, batch, sigma_range, rate_iso, scaling,
                           size)
  code = encode(pca, kernels)
  if noise_max > 0:
    level = jax.random.uniform(k_level, (batch,), maxval=noise_max)
    noisy = jax.random.uniform(k_clean, (batch,)) >= rate_clean
    noise = jnp.where(noisy, level, 0.0)
    lr = degrade(hr, kernels, scale, noise, k_noise)
    code = jnp.concatenate([code, noise_code_scale * noise[:, None]], axis=1)
  else:
    noise = jnp.zeros((batch,), jnp.float32)
    lr = degrade(hr, kernels, scale)
  return {'lr': lr, 'hr': hr, 'kernel': kernels, 'code': code, 'noise': noise}


def protocol_widths(protocol: str, scale: int,
                    kernel_widths: Sequence[float] = ()) -> tuple[float, ...]:
  """The test kernel widths of a named protocol.

  'gaussian': the given widths (e.g. TABLE1_WIDTHS); 'gaussian8': IKC's 8
  widths evenly over GAUSSIAN8_RANGES[scale] (no widths may be given).
  """
  if protocol == 'gaussian':
    if not kernel_widths:
      raise ValueError("--degradation gaussian needs --kernel_width (e.g. 1.3 "
                       "or 0.2,1.3,2.6)")
    for w in kernel_widths:
      _check_width('kernel width', w)
    if len(set(kernel_widths)) != len(kernel_widths):
      raise ValueError(f'kernel widths repeat: {tuple(kernel_widths)}')
    return tuple(float(w) for w in kernel_widths)
  if protocol == 'gaussian8':
    if kernel_widths:
      raise ValueError('--degradation gaussian8 fixes its own widths: drop '
                       '--kernel_width')
    if scale not in GAUSSIAN8_RANGES:
      raise ValueError(f'Gaussian8 is defined for x2, x3 and x4, not x{scale}')
    lo, hi = GAUSSIAN8_RANGES[scale]
    return tuple(round(float(w), 6) for w in np.linspace(lo, hi, 8))
  raise ValueError(f'unknown degradation protocol {protocol!r}; expected one '
                   f'of {PROTOCOLS}')


def blur_np(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
  """Float64 reflect-padded correlation of an H x W[ x C] image and a kernel."""
  size = check_kernel_size(kernel.shape[0])
  if kernel.shape != (size, size):
    raise ValueError(f'blur_np expects a square kernel, found {kernel.shape}')
  image = np.asarray(image, dtype=np.float64)
  _check_blur_shapes(image.shape[:2], size)
  r = size // 2
  pad = [(r, r), (r, r)] + [(0, 0)] * (image.ndim - 2)
  padded = np.pad(image, pad, mode='reflect')
  h, w = image.shape[:2]
  out = np.zeros_like(image)
  for i in range(size):
    for j in range(size):
      out += kernel[i, j] * padded[i:i + h, j:j + w]
  return out


def degrade_image(hr: np.ndarray, width: float, scale: int,
                  size: int = KERNEL_SIZE) -> np.ndarray:
  """The deterministic test-set LR (uint8) of a uint8 H x W[ x C] HR image.

  Isotropic Gaussian of `width` on size x size, reflect-padded correlation,
  MATLAB bicubic x(1/scale) in float64, one rounding (half up) to uint8.
  """
  if hr.dtype != np.uint8:
    raise ValueError(f'degrade_image expects a uint8 image, found {hr.dtype}')
  if hr.shape[0] % scale or hr.shape[1] % scale:
    raise ValueError(f'HR image is {hr.shape[0]}x{hr.shape[1]}, not a '
                     f'multiple of the scale {scale} (modcrop it first)')
  blurred = blur_np(hr.astype(np.float64), gaussian_kernel_np(width, size))
  lr = imresize_lib.imresize(blurred, 1 / scale)
  return np.floor(np.clip(lr, 0.0, 255.0) + 0.5).astype(np.uint8)
