"""Colour conversions for evaluation: BT.601 Y, luma, gray/RGB, float->uint8."""

import numpy as np

# ITU-R BT.601 studio-swing Y row of MATLAB rgb2ycbcr, for R, G, B in 0..255.
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0
_Y_OFFSET = 16.0
# Rec.601 luma (no offset, full range), as the brief's gray evaluation uses.
_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])


def _round_half_up(x: np.ndarray) -> np.ndarray:
  """MATLAB round for x >= 0 (np.round would round half to even)."""
  return np.floor(x + 0.5)


def _weighted_sum(image: np.ndarray, weights: np.ndarray, name: str):
  """w0 R + w1 G + w2 B in float64, summed left to right like imlincomb."""
  image = np.asarray(image)
  if image.ndim < 3 or image.shape[-1] != 3:
    raise ValueError(f'{name} expects an H x W x 3 image, found {image.shape}')
  image = image.astype(np.float64)
  return (
      weights[0] * image[..., 0]
      + weights[1] * image[..., 1]
      + weights[2] * image[..., 2]
  )


def rgb_to_y(image: np.ndarray, rounded: bool) -> np.ndarray:
  """BT.601 Y in [16, 235], float64 H x W, of an RGB image in 0..255.

  Args:
    image: H x W x 3 (any leading axes), uint8 or float in [0, 255].
    rounded: round Y to an integer, as MATLAB rgb2ycbcr does on uint8 input
      (SelfExSR/VDSR convention); False gives the float Y of
      rgb2ycbcr(im2double(.)) * 255 (RCAN/EDSR/BasicSR convention).

  Returns:
    float64 array of the input's shape without the last axis.
  """
  y = _weighted_sum(image, _Y_WEIGHTS, 'rgb_to_y') + _Y_OFFSET
  return _round_half_up(y) if rounded else y


def rgb_to_gray_luma(image: np.ndarray, rounded: bool = False) -> np.ndarray:
  """0.299 R + 0.587 G + 0.114 B as float64 H x W, in the input's range.

  Used to compare an RGB model output with a grayscale HR used as-is; with
  rounded=True it rounds half up like MATLAB rgb2gray on uint8.
  """
  gray = _weighted_sum(image, _LUMA_WEIGHTS, 'rgb_to_gray_luma')
  return _round_half_up(gray) if rounded else gray


def gray_to_rgb(image: np.ndarray) -> np.ndarray:
  """Replicates an H x W gray image to H x W x 3, keeping its dtype."""
  image = np.asarray(image)
  if image.ndim != 2:
    raise ValueError(f'gray_to_rgb expects an H x W image, found {image.shape}')
  return np.repeat(image[..., None], 3, axis=-1)


def to_uint8(image: np.ndarray) -> np.ndarray:
  """Float image in [0, 1] (any shape) -> uint8: clip, x255, round half up.

  Half-up rounding (not numpy's half-to-even) matches MATLAB im2uint8 and the
  saved-PNG convention of published SR tables.
  """
  image = np.asarray(image)
  if not np.issubdtype(image.dtype, np.floating):
    raise TypeError(
        f'to_uint8 expects a float image in [0, 1], found {image.dtype}'
    )
  scaled = np.clip(image.astype(np.float64), 0.0, 1.0) * 255.0
  return _round_half_up(scaled).astype(np.uint8)
