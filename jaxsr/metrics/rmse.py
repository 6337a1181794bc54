"""RMSE for SR as paper 004 (via Blau & Michaeli / PIRM-SR) uses it, float64.

Paper 004 (Table 4, BSD100 x4) reports "RMSE" next to NIQE and defines it
only by citing Blau & Michaeli, "The perception-distortion tradeoff" [53],
as the SinGAN paper does. That convention is the PIRM-SR 2018 one
(`roimehrez/PIRM2018`, `evaluate_results.m` / `utils/calc_scores.m`):
  * uint8 images; the Y channel of MATLAB rgb2ycbcr on uint8 (rounded to an
    integer, BT.601 studio swing, 16..235); a gray image is used as-is;
  * `shave_width = 4` pixels removed on every side;
  * per image MSE = immse(Y_sr, Y_hr) on 0..255 values;
  * over a set, RMSE = sqrt(mean of the per-image MSEs) (not the mean of
    per-image RMSEs).
Paper 004's Table 4 values (263 to 1431) are far above this scale (a
4x SR output at ~24-27 dB PSNR has an RMSE of ~11-16 on 0..255) and the
paper gives no formula; they look like squared errors (DBPN's 263.069 is
16.22^2), so `mse_y` is provided too. Which of the two the table holds
cannot be settled from the text.
"""

from typing import Sequence

import numpy as np

from jaxsr.data import color

PIRM_SHAVE = 4


def rmse(a: np.ndarray, b: np.ndarray) -> float:
  """sqrt(mean((a - b)^2)) of two equal-shaped arrays, in float64."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape or a.size == 0:
    raise ValueError(
        f'rmse expects two equal, non-empty shapes, found {a.shape} and '
        f'{b.shape}'
    )
  return float(np.sqrt(np.mean((a - b) ** 2)))


def _y_plane(image: np.ndarray, name: str) -> np.ndarray:
  """uint8 H x W x 3 -> rounded BT.601 Y (rgb2ycbcr); gray H x W as-is."""
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise TypeError(
        f'{name}: expected a uint8 image (saved-PNG values; see '
        f'color.to_uint8), found dtype {image.dtype}'
    )
  if image.ndim == 2:
    return image.astype(np.float64)
  if image.ndim == 3 and image.shape[-1] == 3:
    return color.rgb_to_y(image, rounded=True)
  raise ValueError(
      f'{name}: expected H x W x 3 or gray H x W, found shape {image.shape}'
  )


def mse_y(sr: np.ndarray, hr: np.ndarray, shave: int = PIRM_SHAVE) -> float:
  """PIRM per-image MSE: Y of uint8 SR vs HR in 0..255, `shave` px removed."""
  y_sr, y_hr = _y_plane(sr, 'sr'), _y_plane(hr, 'hr')
  if y_sr.shape != y_hr.shape:
    raise ValueError(
        f'mse_y expects sr and hr of one size, found {y_sr.shape} and '
        f'{y_hr.shape}'
    )
  if shave < 0 or min(y_sr.shape) <= 2 * shave:
    raise ValueError(
        f'mse_y: cannot shave {shave} pixels off a {y_sr.shape[0]}x'
        f'{y_sr.shape[1]} image'
    )
  if shave:
    y_sr = y_sr[shave:-shave, shave:-shave]
    y_hr = y_hr[shave:-shave, shave:-shave]
  return float(np.mean((y_sr - y_hr) ** 2))


def rmse_y(sr: np.ndarray, hr: np.ndarray, shave: int = PIRM_SHAVE) -> float:
  """sqrt(mse_y): one image's RMSE on Y in 0..255 (PIRM conventions)."""
  return float(np.sqrt(mse_y(sr, hr, shave)))


def rmse_over_set(mses: Sequence[float]) -> float:
  """PIRM's data-set RMSE: sqrt(mean(per-image MSE)), 0..255 units."""
  mses = np.asarray(mses, np.float64)
  if mses.ndim != 1 or mses.size == 0 or np.any(mses < 0):
    raise ValueError(
        'rmse_over_set expects a non-empty 1-D list of per-image MSEs >= 0, '
        f'found {mses!r}'
    )
  return float(np.sqrt(np.mean(mses)))
