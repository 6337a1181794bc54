"""The training images of a single-image method (SinGAN): a file or an embedded photo, cropped, downscaled, and their pyramid.

config.data of such a run (`KEYS`): `image` (a path; empty: the embedded
`demo_image`), or `images` (several paths of one size, trained together as
one stacked run), `crop` (a centre square, 0: none) and `downscale` (a
MATLAB-bicubic 1/downscale of it, 1: none; the SR demo's LR). Images are
uint8 (H, W, 3) here; the pyramid's are float32 in [-1, 1]
(`jaxsr.data.pyramid.images`).
"""

import numpy as np

from jaxsr import config_lib
from jaxsr.data import demo
from jaxsr.data import imresize
from jaxsr.data import io
from jaxsr.data import pyramid as pyramid_lib

KEYS = {'image', 'images', 'demo_image', 'crop', 'downscale'}


def check(data_config) -> None:
  """Raises ValueError for unknown keys, or for both image and images."""
  config_lib.check_keys(data_config, KEYS, 'data')
  if data_config.get('images') and data_config.image:
    raise ValueError('give config.data.image (one run) or config.data.images '
                     '(several, stacked), not both')


def source_image(data_config, path: str = '') -> np.ndarray:
  """path, else config.data.image, else the embedded demo image,
  centre-cropped to a crop x crop square when data.crop > 0: the HR of
  `load_image`."""
  path = path or data_config.image
  if path:
    image = io.read_image(path)
  else:
    (_, image), = demo.load([data_config.demo_image])
  crop = int(data_config.get('crop', 0))
  if crop:
    h, w = image.shape[:2]
    if crop > min(h, w):
      raise ValueError(f'config.data.crop={crop} is larger than the '
                       f'{h}x{w} image')
    top, left = (h - crop) // 2, (w - crop) // 2
    image = image[top:top + crop, left:left + crop]
  return image


def load_image(data_config, path: str = '') -> np.ndarray:
  """The training image: `source_image`, MATLAB-bicubic downscaled by
  data.downscale (after a modcrop) when it is > 1, so that an SR run's
  output can be scored against the source (the demo's x4 SR)."""
  image = source_image(data_config, path)
  factor = int(data_config.get('downscale', 1))
  if factor > 1:
    image = imresize.imresize(imresize.modcrop(image, factor), 1 / factor)
  return image


def load_images(data_config) -> list[np.ndarray]:
  """The training images: each of data.images (runs trained together, one
  size), else the one `load_image`."""
  paths = tuple(data_config.get('images', ()) or ())
  images = [load_image(data_config, p) for p in paths] or [
      load_image(data_config)]
  shapes = sorted({im.shape for im in images})
  if len(shapes) > 1:
    raise ValueError('config.data.images are trained as one stacked run and '
                     f'must share one size; got {shapes}')
  return images


def make_pyramid(pyramid_config, scale: int, height: int, width: int
                 ) -> pyramid_lib.Pyramid:
  """The pyramid of the task: 'samples' (official rules) or 'sr' (r = s^(1/k))."""
  if pyramid_config.task == 'samples':
    return pyramid_lib.for_samples(height, width, pyramid_config.scale_factor,
                                   pyramid_config.min_size,
                                   pyramid_config.max_size)
  if pyramid_config.task == 'sr':
    return pyramid_lib.for_sr(height, width, scale, pyramid_config.sr_min_size)
  raise ValueError(f'config.pyramid.task={pyramid_config.task!r}; expected '
                   "'samples' or 'sr'")


def load(data_config, pyramid_config, scale: int
         ) -> tuple[list[np.ndarray], pyramid_lib.Pyramid]:
  """The training images (`load_images`, one size) and the pyramid of that
  size (`make_pyramid`); each image's scales are
  `jaxsr.data.pyramid.images(image, pyramid)`."""
  images = load_images(data_config)
  return images, make_pyramid(pyramid_config, scale, *images[0].shape[:2])
