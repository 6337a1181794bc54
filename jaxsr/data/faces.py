"""The faces a latent-search run super-resolves: (name, LR, HR or None) from config.data.

Sources (exactly one):
- `lr_dir`: LR faces used as they are (no HR: no reference scores);
- `hr_dir`: HR faces, each LR its MATLAB-exact bicubic downscale by `scale`
  (sizes must be multiples of `scale`);
- `demo='prior'`: faces the prior itself draws at fixed seeds (HR = G(z*)
  rounded to uint8): the search can reach them exactly, PULSE's
  self-consistency check;
- `demo='lfw'`: scikit-image's `lfw_subset` (shipped in the wheel), its
  first 100 images: grey 25x25 face crops (the other 100 are non-faces),
  MATLAB-bicubic resized to the prior's resolution and repeated to RGB.
"""

from collections.abc import Callable

import numpy as np

from jaxsr.data import imresize
from jaxsr.data import io

Face = tuple[str, np.ndarray, np.ndarray | None]
LFW_FACES = 100  # lfw_subset: 100 faces, then 100 non-faces.


def _check_hr(name: str, hr: np.ndarray, scale: int) -> None:
  h, w = hr.shape[:2]
  if h % scale or w % scale:
    raise ValueError(f'HR face {name} is {h}x{w}: not a multiple of '
                     f'config.scale={scale} (crop it, or give LR faces with '
                     'data.lr_dir)')


def from_hr(name: str, hr: np.ndarray, scale: int) -> Face:
  """(name, MATLAB-bicubic LR, HR) of a uint8 HR face."""
  _check_hr(name, hr, scale)
  return name, imresize.imresize(hr, 1.0 / scale), hr


def lfw_hr(resolution: int, count: int = LFW_FACES) -> list[tuple[str, np.ndarray]]:
  """scikit-image's LFW face crops as uint8 RGB HR faces of the prior's size."""
  from skimage import data as skdata  # pylint: disable=g-import-not-at-top
  crops = skdata.lfw_subset()[:min(count, LFW_FACES)]  # float64 [0, 1] 25x25.
  out = []
  for i, crop in enumerate(crops):
    grey = np.clip(np.round(crop * 255.0), 0, 255).astype(np.uint8)
    hr = imresize.imresize(grey, output_shape=(resolution, resolution))
    out.append((f'lfw_{i:03d}', np.repeat(hr[..., None], 3, axis=-1)))
  return out


def load(data_config, scale: int, resolution: int,
         prior_faces: Callable[[int], list[np.ndarray]] | None = None
         ) -> list[Face]:
  """The faces of config.data (sorted by name, at most data.num_faces).

  prior_faces(n) returns n uint8 HR faces drawn from the prior at fixed
  seeds (demo='prior').
  """
  sources = [k for k in ('lr_dir', 'hr_dir', 'demo') if data_config[k]]
  if len(sources) != 1:
    raise ValueError('give exactly one of config.data.lr_dir, data.hr_dir, '
                     f'data.demo (found {sources or "none"})')
  limit = data_config.num_faces or None
  if data_config.lr_dir:
    faces = [(p.stem, io.read_image(p), None)
             for p in io.list_images(data_config.lr_dir)[:limit]]
  elif data_config.hr_dir:
    faces = [from_hr(p.stem, io.read_image(p), scale)
             for p in io.list_images(data_config.hr_dir)[:limit]]
  elif data_config.demo == 'lfw':
    faces = [from_hr(n, hr, scale)
             for n, hr in lfw_hr(resolution, limit or LFW_FACES)]
  elif data_config.demo == 'prior':
    if prior_faces is None:
      raise ValueError("data.demo='prior' needs the prior's generator")
    faces = [from_hr(f'prior_{i:03d}', hr, scale)
             for i, hr in enumerate(prior_faces(limit or 16))]
  else:
    raise ValueError(f"config.data.demo={data_config.demo!r}: expected "
                     "'prior' or 'lfw'")
  for name, lr, _ in faces:
    h, w = lr.shape[:2]
    if h * scale > resolution or w * scale > resolution:
      raise ValueError(
          f'face {name}: LR {h}x{w} x{scale} = {h * scale}x{w * scale} is '
          f'larger than the prior ({resolution}x{resolution}); give LR faces '
          f'of at most {resolution // scale} px a side at this scale')
  return faces
