"""SinGAN's image pyramid: the official size rules, the SR ratio r = s^(1/k), the scaled images.

Sizes follow imresize's ceil(scale * size) (MATLAB, and SinGAN's resizer).

- Random samples (official `adjust_scales2image` + `creat_reals_pyramid`):
  num_scales = ceil(log(min_size / min(H, W)) / log(f0)) + 1,
  scale2stop = ceil(log(min(max_size, max(H, W)) / max(H, W)) / log(f0)),
  N = num_scales - scale2stop; the image is first resized by
  scale1 = min(max_size / max(H, W), 1), then f = (min_size / min(H1, W1))^(1/N)
  and scale n (0 = coarsest) is the resized image at f^(N - n). With the
  defaults f0 = 0.75, min_size 25, max_size 250, a 250 px image gets N = 10
  and f = 0.794 (the paper's "r closely to 4/3" varies with the image).
- Super-resolution (paper 004 §5.4, official SR.py `calc_init_scale`):
  k = round(log(1/s) / log((1/2)^(1/3))) steps of r = s^(1/k) (x4: 6 steps of
  1.2599), and the LR image's pyramid uses exactly f = 1/r down to min_size
  18 (the official recomputes f from min_size after picking N, and reads a
  batch axis as the height there, so its training ratio drifts from its
  inference ratio; we keep r for both), without the max_size cap (the
  official caps SR outputs at 4 * 250 px, tamarott/SinGAN#46).
"""

import dataclasses
import math

import numpy as np

from jaxsr.data import imresize


@dataclasses.dataclass(frozen=True)
class Pyramid:
  """Scale sizes (coarsest first), the ratio f < 1 between consecutive
  scales, and scale1, the resize of the input image to the finest scale."""
  sizes: tuple[tuple[int, int], ...]
  factor: float
  scale1: float

  @property
  def num_scales(self) -> int:
    return len(self.sizes)


def _log(x: float, base: float) -> float:
  return math.log(x) / math.log(base)


def for_samples(height: int, width: int, scale_factor: float = 0.75,
                min_size: int = 25, max_size: int = 250) -> Pyramid:
  """The official pyramid of an H x W training image (see the module doc)."""
  _check(height, width, min_size)
  short, long = min(height, width), max(height, width)
  num_scales = math.ceil(_log(min_size / short, scale_factor)) + 1
  scale2stop = math.ceil(_log(min(max_size, long) / long, scale_factor))
  stop = num_scales - scale2stop
  scale1 = min(max_size / long, 1.0)
  h1, w1 = _resized((height, width), scale1)
  if min(h1, w1) < min_size:
    raise ValueError(f'a {height}x{width} image is {h1}x{w1} at max_size='
                     f'{max_size}, smaller than min_size={min_size}')
  if stop < 1:
    raise ValueError(f'a {height}x{width} image gives a single scale with '
                     f'min_size={min_size}: expected an image larger than it')
  factor = (min_size / min(h1, w1))**(1.0 / stop)
  return Pyramid(sizes=tuple(_resized((h1, w1), factor**(stop - n))
                             for n in range(stop + 1)),
                 factor=factor, scale1=scale1)


def sr_steps(sr_factor: float) -> tuple[float, int]:
  """(r, k): k upscalings by r = s^(1/k), k = round(log(1/s)/log(2^(-1/3)))."""
  if sr_factor <= 1:
    raise ValueError(f'the SR factor must be > 1, got {sr_factor}')
  k = max(1, round(_log(1.0 / sr_factor, 0.5**(1.0 / 3.0))))
  return sr_factor**(1.0 / k), k


def for_sr(height: int, width: int, sr_factor: float,
           min_size: int = 18) -> Pyramid:
  """The pyramid of an LR image for x`sr_factor` SR: ratio f = 1/r exactly,
  as many scales as keep the shorter side >= min_size, no max_size cap."""
  _check(height, width, min_size)
  r, _ = sr_steps(sr_factor)
  factor = 1.0 / r
  stop = 0
  while min(_resized((height, width), factor**(stop + 1))) >= min_size:
    stop += 1
  if stop < 1:
    raise ValueError(f'a {height}x{width} LR image is too small for a '
                     f'pyramid with min_size={min_size} and r={r:.4f}')
  return Pyramid(sizes=tuple(_resized((height, width), factor**(stop - n))
                             for n in range(stop + 1)),
                 factor=factor, scale1=1.0)


def _check(height: int, width: int, min_size: int) -> None:
  if min(height, width) < min_size:
    raise ValueError(f'the image is {height}x{width}, smaller than '
                     f'min_size={min_size}')


def _resized(hw: tuple[int, int], scale: float) -> tuple[int, int]:
  """imresize's output size: ceil(scale * size), in float64 as MATLAB."""
  return (math.ceil(scale * hw[0]), math.ceil(scale * hw[1]))


def images(image: np.ndarray, pyramid: Pyramid) -> list[np.ndarray]:
  """float32 (H_n, W_n, 3) in [-1, 1] of each scale, coarsest first.

  `image` is uint8 RGB; it is resized in float (no rounding) by MATLAB-exact
  bicubic: first by scale1, then by f^(N - n) for scale n.
  """
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f'expected a uint8 H x W x 3 image, got {image.dtype} '
                     f'{image.shape}')
  real = image.astype(np.float64) / 255.
  if pyramid.scale1 != 1.0:
    real = imresize.imresize(real, pyramid.scale1)
  stop = pyramid.num_scales - 1
  out = []
  for n, size in enumerate(pyramid.sizes):
    scaled = real if n == stop else imresize.imresize(
        real, pyramid.factor**(stop - n))
    if scaled.shape[:2] != size:
      raise AssertionError(f'scale {n}: {scaled.shape[:2]} != {size}')
    out.append((np.clip(scaled, 0., 1.) * 2. - 1.).astype(np.float32))
  return out
