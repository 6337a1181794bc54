"""Scores SR images against HR on the published conventions (Y, border = scale).

Shared by the evaluation during training and by `python -m jaxsr.evaluate`.
"""

from collections.abc import Callable

import numpy as np

from jaxsr.evaluation import inference
from jaxsr.data import color
from jaxsr.data import imresize
from jaxsr.metrics import psnr_ssim


def score_pair(sr: np.ndarray, hr: np.ndarray, scale: int,
               rounded_y: bool = True) -> dict:
  """PSNR/SSIM/L1 on Y and RGB PSNR of uint8 images, border = scale.

  A 2-D (gray) HR is compared as-is with the SR's luma (convention A of
  metrics-conventions.md); RGB PSNR is then reported on that plane too.
  """
  if sr.shape[:2] != hr.shape[:2]:
    raise ValueError(f'SR is {sr.shape[:2]}, HR is {hr.shape[:2]}')
  return {
      'psnr': psnr_ssim.psnr_y(sr, hr, scale, rounded_y=rounded_y),
      'ssim': psnr_ssim.ssim_y(sr, hr, scale, rounded_y=rounded_y),
      'psnr_rgb': psnr_ssim.psnr_rgb(sr, hr, scale),
      'l1_y': psnr_ssim.l1_y(sr, hr, scale),
  }


def bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
  """MATLAB bicubic upscaling of a uint8 LR image (the baseline)."""
  return imresize.imresize(lr, scale)


def model_sr(predict: Callable[[np.ndarray], np.ndarray], lr: np.ndarray,
             scale: int, tile: int = 0, overlap: int = 16) -> np.ndarray:
  """A model's uint8 SR of a uint8 LR image (gray LR is fed as RGB)."""
  x = lr if lr.ndim == 3 else np.repeat(lr[..., None], 3, axis=-1)
  sr = inference.upscale(predict, x.astype(np.float32) / 255., scale, tile,
                         overlap)
  return color.to_uint8(sr)


def summarize(rows: list[dict], keys=('psnr', 'ssim', 'psnr_rgb', 'l1_y')
              ) -> dict:
  """Means of the per-image rows, plus the PSNR standard deviation ('psnr_std')."""
  out = {k: float(np.mean([r[k] for r in rows])) for k in keys}
  out['psnr_std'] = psnr_ssim.summarize([r['psnr'] for r in rows])['std']
  out['num_images'] = len(rows)
  return out
