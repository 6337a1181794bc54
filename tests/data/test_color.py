"""Tests of the colour conversions against the BT.601 formula by hand."""

import numpy as np
import pytest

from jaxsr.data import color


def _y_formula(r, g, b):
  return 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255


def test_y_of_white_and_black():
  image = np.array([[[255, 255, 255], [0, 0, 0]]], dtype=np.uint8)
  for rounded in (False, True):
    y = color.rgb_to_y(image, rounded=rounded)
    assert y.shape == (1, 2) and y.dtype == np.float64
    # 65.481 + 128.553 + 24.966 = 219, so white is 16 + 219 = 235.
    np.testing.assert_allclose(y, [[235.0, 16.0]], atol=1e-12)


@pytest.mark.parametrize(
    'rgb, rounded_y',
    [
        ((255, 0, 0), 81),  # 16 + 65.481
        ((0, 0, 255), 41),  # 16 + 24.966
        ((10, 200, 30), 122),  # 122.3309...
        ((128, 128, 128), 126),  # 16 + 219 * 128 / 255 = 125.929...
    ],
)
def test_y_of_single_pixels(rgb, rounded_y):
  image = np.array(rgb, dtype=np.uint8).reshape(1, 1, 3)
  assert color.rgb_to_y(image, rounded=False)[0, 0] == pytest.approx(
      _y_formula(*rgb), abs=1e-10
  )
  assert color.rgb_to_y(image, rounded=True)[0, 0] == rounded_y
  # Float input in [0, 255] gives the same as uint8.
  assert color.rgb_to_y(image.astype(np.float32), rounded=False)[
      0, 0
  ] == pytest.approx(_y_formula(*rgb), abs=1e-10)


def test_y_rejects_non_rgb():
  with pytest.raises(ValueError, match='H x W x 3'):
    color.rgb_to_y(np.zeros((4, 4)), rounded=False)


def test_gray_luma_and_replication():
  image = np.array([[[10, 200, 30]]], dtype=np.uint8)
  expected = 0.299 * 10 + 0.587 * 200 + 0.114 * 30  # 123.81
  assert color.rgb_to_gray_luma(image)[0, 0] == pytest.approx(expected)
  assert color.rgb_to_gray_luma(image, rounded=True)[0, 0] == 124
  gray = np.array([[0, 7], [128, 255]], dtype=np.uint8)
  rgb = color.gray_to_rgb(gray)
  assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
  for channel in range(3):
    np.testing.assert_array_equal(rgb[..., channel], gray)
  # A replicated gray image comes back as itself (weights sum to 1).
  np.testing.assert_allclose(color.rgb_to_gray_luma(rgb), gray, atol=1e-12)


def test_to_uint8_rounds_half_up_and_clips():
  # For even k, (k + 0.5) / 255 * 255 is exactly k + 0.5 in float64: MATLAB
  # rounds it up to k + 1 where np.round would give k.
  k = np.arange(0, 254, 2)
  ties = (k + 0.5) / 255
  assert np.all(ties * 255 == k + 0.5)
  np.testing.assert_array_equal(color.to_uint8(ties), k + 1)
  out = color.to_uint8(np.array([-0.2, 0.0, 1.0, 1.7, 0.25], np.float32))
  assert out.dtype == np.uint8
  np.testing.assert_array_equal(out, [0, 0, 255, 255, 64])  # 63.75 -> 64
  with pytest.raises(TypeError, match='uint8'):
    color.to_uint8(np.zeros(3, np.uint8))
