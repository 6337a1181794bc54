"""SinGAN pyramid sizes against a transcription of the official rules; the SR ratio; the images."""

import math

import numpy as np
import pytest

from jaxsr.data import imresize
from jaxsr.data import pyramid


def _official_sizes(h, w, scale_factor_init=0.75, min_size=25, max_size=250):
  """tamarott/SinGAN functions.adjust_scales2image + creat_reals_pyramid,
  transcribed (image shape (1, 3, h, w); Shocher's resizer: ceil(shape *
  scale) in float64)."""
  shape = (1, 3, h, w)
  num_scales = math.ceil(math.log(math.pow(min_size / min(shape[2], shape[3]),
                                           1), scale_factor_init)) + 1
  scale2stop = math.ceil(math.log(min([max_size, max([shape[2], shape[3]])])
                                  / max([shape[2], shape[3]]),
                                  scale_factor_init))
  stop_scale = num_scales - scale2stop
  scale1 = min(max_size / max([shape[2], shape[3]]), 1)
  real = np.uint(np.ceil(np.array(shape[2:]) * np.array([scale1, scale1])))
  scale_factor = math.pow(min_size / min(real[0], real[1]), 1 / stop_scale)
  sizes = []
  for i in range(0, stop_scale + 1, 1):
    scale = math.pow(scale_factor, stop_scale - i)
    out = np.uint(np.ceil(np.array(real, np.float64) * np.array([scale, scale])))
    sizes.append((int(out[0]), int(out[1])))
  return sizes, scale_factor


@pytest.mark.parametrize('h,w', [(250, 250), (300, 451), (183, 276),
                                 (64, 48), (500, 333), (26, 30)])
def test_sample_pyramid_follows_the_official_rules(h, w):
  want, factor = _official_sizes(h, w)
  got = pyramid.for_samples(h, w)
  assert list(got.sizes) == want
  assert got.factor == pytest.approx(factor, rel=1e-12)
  assert got.sizes[-1] == (min(h, math.ceil(h * got.scale1)),
                           min(w, math.ceil(w * got.scale1)))
  assert min(got.sizes[0]) >= 25


def test_a_250px_image_has_eleven_scales_of_ratio_0794():
  p = pyramid.for_samples(250, 250)
  assert p.num_scales == 11 and p.sizes[0] == (25, 25)
  assert p.factor == pytest.approx(0.1**0.1)


@pytest.mark.parametrize('s,k', [(2, 3), (4, 6), (8, 9)])
def test_sr_ratio_is_the_kth_root_of_the_factor(s, k):
  r, steps = pyramid.sr_steps(s)
  assert steps == k and r**k == pytest.approx(s)
  p = pyramid.for_sr(64, 48, s)
  assert p.factor == pytest.approx(1 / r)
  assert p.sizes[-1] == (64, 48)
  # Each scale is the LR resized by f^(N - n); the coarsest keeps >= 18 px
  # and one more would not.
  n = p.num_scales - 1
  for i, size in enumerate(p.sizes):
    assert size == (math.ceil(64 * p.factor**(n - i)),
                    math.ceil(48 * p.factor**(n - i)))
  assert min(p.sizes[0]) >= 18
  assert min(math.ceil(64 * p.factor**(n + 1)),
             math.ceil(48 * p.factor**(n + 1))) < 18


def test_too_small_images_are_refused():
  with pytest.raises(ValueError, match='smaller than min_size=25'):
    pyramid.for_samples(20, 300)
  # Capped at 250 px, a 40 px side falls under min_size: the official code
  # computes a negative number of scales here.
  with pytest.raises(ValueError, match='is 10x250 at max_size=250'):
    pyramid.for_samples(40, 1000)
  with pytest.raises(ValueError, match='too small'):
    pyramid.for_sr(19, 19, 4)
  with pytest.raises(ValueError, match='> 1'):
    pyramid.sr_steps(1)


def test_images_are_the_float_bicubic_resizes_in_minus1_1():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (300, 451, 3), np.uint8)
  p = pyramid.for_samples(300, 451)
  reals = pyramid.images(image, p)
  assert [r.shape[:2] for r in reals] == list(p.sizes)
  top = imresize.imresize(image.astype(np.float64) / 255, p.scale1)
  np.testing.assert_allclose(reals[-1], np.clip(top, 0, 1) * 2 - 1,
                             atol=1e-6)
  n = p.num_scales - 1
  coarse = imresize.imresize(top, p.factor**n)
  np.testing.assert_allclose(reals[0], np.clip(coarse, 0, 1) * 2 - 1,
                             atol=1e-6)
  assert all(r.dtype == np.float32 and r.min() >= -1 and r.max() <= 1
             for r in reals)
  with pytest.raises(ValueError, match='uint8'):
    pyramid.images(image.astype(np.float32), p)
