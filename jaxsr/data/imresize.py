"""MATLAB-exact bicubic imresize (numpy, H x W[ x C]) and a JAX twin (NHWC).

MATLAB's `imresize(I, scale, 'bicubic')` is reproduced exactly:
- cubic kernel with a = -0.5 and support 4, widened by 1/scale when
  downscaling (antialiasing);
- output pixel x (1-based) samples input u = x/scale + 0.5(1 - 1/scale);
- out-of-range taps are mirrored symmetrically ([1..n, n..1] repeated);
- output size ceil(scale * size);
- the axis with the smaller scale is resized first (height on ties), and an
  integer input is rounded half away from zero and saturated after EACH
  pass. The rounding between the passes is what makes the uint8 result equal
  MATLAB bit for bit (the Set5 x4 LR files are checked in the tests).
"""

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# Support of the cubic kernel at scale >= 1, in input pixels.
_KERNEL_WIDTH = 4.0

# (axis, in_length, out_length, scale) for one separable pass.
_Pass = tuple[int, int, int, float]


def cubic(x: np.ndarray) -> np.ndarray:
  """MATLAB's bicubic kernel (Keys, a = -0.5) of float64 offsets, any shape."""
  absx = np.abs(np.asarray(x, dtype=np.float64))
  absx2 = absx**2
  absx3 = absx**3
  inner = (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1.0)
  outer = (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0) * (
      (absx > 1.0) & (absx <= 2.0)
  )
  return inner + outer


@functools.lru_cache(maxsize=256)
def contributions(
    in_length: int, out_length: int, scale: float
) -> tuple[np.ndarray, np.ndarray]:
  """MATLAB's contributions(): float64 weights, 0-based int indices, (out, P).

  Row o holds the P taps of output pixel o; indices are already mirrored into
  [0, in_length). Rows sum to 1. The arrays are cached and read-only.
  """
  kernel_width = _KERNEL_WIDTH
  if scale < 1.0:
    # Antialiasing: stretch the kernel by 1/scale so it low-passes the input.
    kernel = lambda t: scale * cubic(scale * t)
    kernel_width = kernel_width / scale
  else:
    kernel = cubic
  # 1-based coordinates, as in MATLAB, so the formula matches it literally.
  x = np.arange(1, out_length + 1, dtype=np.float64)
  u = x / scale + 0.5 * (1.0 - 1.0 / scale)
  left = np.floor(u - kernel_width / 2.0)
  taps = int(math.ceil(kernel_width)) + 2
  ind = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
  weights = kernel(u[:, None] - ind)
  weights = weights / np.sum(weights, axis=1, keepdims=True)
  # Symmetric mirroring: MATLAB indexes aux = [1:n, n:-1:1] cyclically.
  aux = np.concatenate([np.arange(in_length), np.arange(in_length)[::-1]])
  indices = aux[np.mod(ind.astype(np.int64) - 1, 2 * in_length)]
  weights.flags.writeable = False
  indices.flags.writeable = False
  return weights, indices


@functools.lru_cache(maxsize=256)
def resize_matrix(in_length: int, out_length: int, scale: float) -> np.ndarray:
  """Dense float64 (out_length, in_length) matrix of one MATLAB resize pass."""
  weights, indices = contributions(in_length, out_length, scale)
  matrix = np.zeros((out_length, in_length), dtype=np.float64)
  rows = np.broadcast_to(np.arange(out_length)[:, None], indices.shape)
  # Mirrored taps can land on the same input pixel: accumulate, not assign.
  np.add.at(matrix, (rows, indices), weights)
  matrix.flags.writeable = False
  return matrix


def _plan(
    in_hw: Sequence[int],
    scale: float | None,
    output_shape: Sequence[int] | None,
) -> list[_Pass]:
  """The ordered resize passes for an image of spatial size in_hw."""
  if (scale is None) == (output_shape is None):
    raise ValueError(
        'imresize expects exactly one of scale or output_shape, found '
        f'scale={scale!r} and output_shape={output_shape!r}'
    )
  in_h, in_w = int(in_hw[0]), int(in_hw[1])
  if in_h < 1 or in_w < 1:
    raise ValueError(f'imresize expects a non-empty image, found {in_h}x{in_w}')
  if scale is not None:
    scale = float(scale)
    if not math.isfinite(scale) or scale <= 0:
      raise ValueError(f'imresize expects a positive scale, found {scale}')
    scales = (scale, scale)
    # MATLAB: outputSize = ceil(scale .* inputSize), in double precision.
    out_hw = (math.ceil(scale * in_h), math.ceil(scale * in_w))
  else:
    if len(output_shape) != 2 or min(output_shape) < 1:
      raise ValueError(
          'imresize expects output_shape=(height, width) of positive ints, '
          f'found {output_shape!r}'
      )
    out_hw = (int(output_shape[0]), int(output_shape[1]))
    scales = (out_hw[0] / in_h, out_hw[1] / in_w)
  # MATLAB sorts the axes by scale (stable): the stronger shrink goes first,
  # the height pass first on ties.
  order = (0, 1) if scales[0] <= scales[1] else (1, 0)
  return [
      (axis, (in_h, in_w)[axis], out_hw[axis], scales[axis]) for axis in order
  ]


def _round_saturate(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
  """Casts float64 to an integer dtype as MATLAB does: clip, round half away."""
  info = np.iinfo(dtype)
  x = np.clip(x, info.min, info.max)
  return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(dtype)


def imresize(
    image: np.ndarray,
    scale: float | None = None,
    output_shape: tuple[int, int] | None = None,
) -> np.ndarray:
  """MATLAB imresize(image, scale, 'bicubic') of an H x W[ x C ...] array.

  Args:
    image: H x W or H x W x C (more trailing axes are fine). uint8 (or any
      integer dtype) is rounded and saturated after each pass, as MATLAB does,
      and returned in that dtype; a float image is resized in float64 without
      rounding or clipping and returned in its own dtype.
    scale: the factor for both axes (e.g. 1/4 or 4); the output is
      ceil(scale * H) x ceil(scale * W).
    output_shape: (height, width) instead of scale; each axis then uses the
      scale out/in, as in MATLAB.

  Returns:
    The resized array, same dtype and trailing axes as the input.
  """
  image = np.asarray(image)
  if image.ndim < 2:
    raise ValueError(f'imresize expects H x W[ x C], found shape {image.shape}')
  dtype = image.dtype
  if np.issubdtype(dtype, np.integer):
    to_dtype = functools.partial(_round_saturate, dtype=dtype)
  elif np.issubdtype(dtype, np.floating):
    to_dtype = lambda x: x
  else:
    raise TypeError(
        f'imresize expects an integer or float image, found {dtype}'
    )
  out = image
  for axis, in_length, out_length, axis_scale in _plan(
      image.shape[:2], scale, output_shape
  ):
    weights, indices = contributions(in_length, out_length, axis_scale)
    # MATLAB's imresizemex: per output pixel, accumulate the taps in order in
    # double precision; the tap order keeps ties rounding as MATLAB's do.
    src = np.moveaxis(out.astype(np.float64, copy=False), axis, 0)
    bshape = (out_length,) + (1,) * (src.ndim - 1)
    acc = np.zeros((out_length,) + src.shape[1:], dtype=np.float64)
    for tap in range(weights.shape[1]):
      acc += weights[:, tap].reshape(bshape) * src[indices[:, tap]]
    out = to_dtype(np.moveaxis(acc, 0, axis))
  return out.astype(dtype, copy=False)


def imresize_jax(
    x: jax.Array,
    scale: float | None = None,
    output_shape: tuple[int, int] | None = None,
    precision: jax.lax.Precision = jax.lax.Precision.HIGHEST,
) -> jax.Array:
  """Differentiable MATLAB bicubic resize of a float N x H x W x C batch.

  The float path of `imresize` (no rounding or clipping) as two dense matmuls
  whose weights are built in numpy from the static shapes at trace time, so it
  jits, differentiates, and matches the numpy float path to ~1e-6 in float32.

  Args:
    x: float array N x H x W x C (any range, e.g. [0, 1]).
    scale: the factor for both axes (2, 3, 4 or 1/4 ...).
    output_shape: (height, width) instead of scale.
    precision: matmul precision; HIGHEST keeps float32 accuracy on TPU/GPU,
      where the default would round the operands to bfloat16.

  Returns:
    N x ceil(scale H) x ceil(scale W) x C, in x's dtype.
  """
  if x.ndim != 4:
    raise ValueError(f'imresize_jax expects N x H x W x C, found {x.shape}')
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise TypeError(f'imresize_jax expects a float array, found {x.dtype}')
  out = x
  for axis, in_length, out_length, axis_scale in _plan(
      x.shape[1:3], scale, output_shape
  ):
    matrix = jnp.asarray(
        resize_matrix(in_length, out_length, axis_scale), dtype=x.dtype
    )
    spec = 'oh,nhwc->nowc' if axis == 0 else 'ow,nhwc->nhoc'
    out = jnp.einsum(spec, matrix, out, precision=precision)
  return out


def modcrop(image: np.ndarray, scale: int) -> np.ndarray:
  """Crops H x W[ x C] to a multiple of scale, keeping the top-left corner."""
  if int(scale) != scale or scale < 1:
    raise ValueError(f'modcrop expects a positive integer scale, found {scale}')
  scale = int(scale)
  height, width = image.shape[:2]
  return image[: height - height % scale, : width - width % scale]
