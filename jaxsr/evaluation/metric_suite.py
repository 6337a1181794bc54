"""Named metric sets for `jaxsr.evaluate`: uint8 (SR, HR) pairs -> scores.

Full-reference metrics follow the published SR conventions (Y of BT.601,
border = scale): 'psnr', 'ssim', 'psnr_rgb', 'l1_y' (as `scoring.score_pair`)
and 'rmse' (PIRM: Y in 0..255, shave = scale; the set value is
sqrt(mean MSE)). Perceptual ones: 'niqe' and 'ma' on the Y of rgb2ycbcr
with the border cropped (PIRM 2018), 'pi' = ((10 - Ma) + NIQE) / 2, and
'lpips' / 'dists' on the whole RGB image in [0, 1] (a gray HR is replicated
to RGB for them). LR consistency (PULSE, paper 001): 'lr_l2', the mean over
pixels and channels of (imresize(SR, 1/scale) - LR)^2 in [0, 1] units
(MATLAB bicubic, float), and 'success', lr_l2 <= lr_eps (the set value is
the success rate). Sets: 'default' (the paper-000 table), 'distortion',
'perceptual', 'lr_consistency', 'all'; or any comma-separated mix.

The model files these need are read once, before any image is scored, from
`MetricFiles`; each names where to get it when missing. 'random' backbones
(LPIPS, DISTS) are allowed for smoke tests only and are logged loudly.
"""

import dataclasses
import functools
import importlib

import jax
import numpy as np

from jaxsr.data import imresize
from jaxsr.evaluation import scoring
from jaxsr.losses import dists as dists_loss
from jaxsr.metrics import lpips as lpips_metric
from jaxsr.metrics import ma
from jaxsr.metrics import rmse as rmse_lib
from jaxsr.pretrained import dists as dists_import
from jaxsr.pretrained import lpips as lpips_import

# jaxsr.metrics re-exports the niqe function under the module's name.
niqe_lib = importlib.import_module('jaxsr.metrics.niqe')

# key -> (table label, which value is better).
METRICS = {
    'psnr': ('PSNR', max),
    'ssim': ('SSIM', max),
    'psnr_std': ('PSD', min),  # Not computed per image: the set's PSNR std.
    'psnr_rgb': ('PSNR (RGB)', max),
    'l1_y': ('L1 (Y)', min),
    'rmse': ('RMSE', min),
    'niqe': ('NIQE', min),
    'ma': ('Ma', max),
    'pi': ('PI', min),
    'lpips': ('LPIPS', min),
    'dists': ('DISTS', min),
    'lr_l2': ('LR L2', min),
    'success': ('success', max),
}
DISTORTION = ('psnr', 'ssim', 'psnr_rgb', 'l1_y', 'rmse')
PERCEPTUAL = ('niqe', 'ma', 'pi', 'lpips', 'dists')
# LR consistency (PULSE): how far the SR, MATLAB-bicubic downscaled, is from
# the LR it came from; success = lr_l2 <= Scorer.lr_eps.
LR_CONSISTENCY = ('lr_l2', 'success')
METRIC_SETS = {
    'default': ('psnr', 'ssim', 'psnr_rgb', 'l1_y'),
    'distortion': DISTORTION,
    'perceptual': PERCEPTUAL,
    'lr_consistency': LR_CONSISTENCY,
    'all': DISTORTION + PERCEPTUAL + LR_CONSISTENCY,
}
_BASE = ('psnr', 'ssim', 'psnr_rgb', 'l1_y')  # From scoring.score_pair.


def parse(spec: str) -> tuple[str, ...]:
  """'default', 'all', 'psnr,lpips', 'distortion,niqe' -> metric keys."""
  names = []
  for part in (p.strip() for p in spec.split(',')):
    if not part:
      continue
    expanded = METRIC_SETS.get(part, (part,))
    for name in expanded:
      if name not in METRICS or name == 'psnr_std':
        valid = sorted(set(METRICS) - {'psnr_std'}) + sorted(METRIC_SETS)
        raise ValueError(f'unknown metric {name!r} in {spec!r}; expected a '
                         f'comma-separated list of {valid}')
      if name not in names:
        names.append(name)
  if not names:
    raise ValueError(f'no metric named in {spec!r}')
  return tuple(names)


@dataclasses.dataclass(frozen=True)
class MetricFiles:
  """Model files of the perceptual metrics ('' = the default / an error)."""

  niqe_params: str = ''  # '' -> $JAXSR_NIQE_PARAMS or the cache folder.
  ma_model: str = ''  # Ma et al.'s model.mat (see jaxsr.metrics.ma).
  lpips_net: str = 'alex'  # 'alex' or 'vgg'.
  lpips_lin: str = ''  # The v0.1 linear weights ({net}.pth) or 'random'.
  lpips_backbone: str = ''  # torchvision AlexNet / VGG16 .pth or 'random'.
  dists_weights: str = ''  # DISTS weights.pt (alpha, beta) or 'random'.
  dists_vgg16: str = ''  # torchvision VGG16 .pth or 'random'.


def _rgb(image: np.ndarray) -> np.ndarray:
  """uint8 H x W (gray) or H x W x 3 -> float32 (1, H, W, 3) in [0, 1]."""
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  return (image.astype(np.float32) / 255.)[None]


class Scorer:
  """Scores uint8 (SR, HR) pairs on the chosen metrics; loads models once."""

  def __init__(self, names, scale: int, rounded_y: bool = True,
               files: MetricFiles = MetricFiles(), lr_eps: float = 2e-3):
    self.names = tuple(names)
    self.scale = scale
    self.rounded_y = rounded_y
    self.lr_eps = lr_eps
    needs = set(self.names)
    if 'pi' in needs:
      needs |= {'ma', 'niqe'}
    self._needs = needs
    self._niqe_params = self._ma_model = None
    self._lpips = self._dists = None
    if 'niqe' in needs:
      self._niqe_params = niqe_lib.load_pristine_params(
          files.niqe_params or None)
    if 'ma' in needs:
      if not files.ma_model:
        raise ValueError(f'metric ma/pi needs --ma_model: {ma.WHERE_TO_GET}')
      self._ma_model = ma.load_model(files.ma_model)
    if 'lpips' in needs:
      params = lpips_import.load_lpips(files.lpips_net, files.lpips_lin,
                                       files.lpips_backbone)
      self._lpips = (jax.jit(functools.partial(lpips_metric.lpips,
                                               net=files.lpips_net)),
                     jax.device_put(params))
    if 'dists' in needs:
      params = dists_import.load_params(files.dists_weights,
                                        files.dists_vgg16)
      self._dists = (jax.jit(dists_loss.dists), jax.device_put(params))

  def __call__(self, sr: np.ndarray, hr: np.ndarray,
               lr: np.ndarray | None = None) -> dict[str, float]:
    """uint8 SR (H, W, 3), HR (H, W[, 3]) and the LR the SR was made from
    (needed by lr_l2/success) -> {metric: value}."""
    out = {}
    if self._needs & set(LR_CONSISTENCY):
      if lr is None:
        raise ValueError('lr_l2/success need the LR image')
      out['lr_l2'] = lr_l2(sr, lr)
      out['success'] = float(out['lr_l2'] <= self.lr_eps)
    if self._needs & set(_BASE):
      out.update(scoring.score_pair(sr, hr, self.scale, self.rounded_y))
    if 'rmse' in self._needs:
      out['rmse'] = rmse_lib.rmse_y(sr, hr, shave=self.scale)
    if 'niqe' in self._needs:
      out['niqe'] = float(niqe_lib.niqe(sr, self.scale, self._niqe_params))
    if 'ma' in self._needs:
      out['ma'] = ma.ma_score(sr, self._ma_model, self.scale)
    if 'pi' in self._needs:
      out['pi'] = ma.perceptual_index(out['ma'], out['niqe'])
    if self._lpips is not None:
      fn, params = self._lpips
      out['lpips'] = float(fn(_rgb(sr), _rgb(hr), params)[0])
    if self._dists is not None:
      fn, params = self._dists
      out['dists'] = float(fn(_rgb(sr), _rgb(hr), params)[0])
    return {k: float(out[k]) for k in self.names}


def lr_l2(sr: np.ndarray, lr: np.ndarray) -> float:
  """PULSE's LR consistency of uint8 images: mean squared difference in
  [0, 1] of the SR MATLAB-bicubic downscaled to the LR's size (float, no
  rounding) and the LR (a gray LR is compared with each SR channel)."""
  small = imresize.imresize(sr.astype(np.float64) / 255.0,
                            output_shape=lr.shape[:2])
  target = lr.astype(np.float64) / 255.0
  if target.ndim == 2:
    target = target[..., None]
  return float(np.mean((small - target) ** 2))


def summarize(rows: list[dict], names) -> dict:
  """Set values of per-image rows: means, PIRM's sqrt(mean MSE) for RMSE,
  and the PSNR standard deviation ('psnr_std') when PSNR is there."""
  out = {}
  for k in names:
    values = np.asarray([r[k] for r in rows], np.float64)
    if k == 'rmse':
      out[k] = rmse_lib.rmse_over_set(values**2)
    else:
      out[k] = float(np.mean(values))
  if 'psnr' in names:
    out['psnr_std'] = scoring.summarize(rows, keys=('psnr',))['psnr_std']
  out['num_images'] = len(rows)
  return out
