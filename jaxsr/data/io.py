"""Image files <-> numpy arrays with Pillow: uint8 RGB, 16-bit gray, listing.

Decoding rules:
- RGB(A), palette, CMYK, YCbCr ... -> H x W x 3 RGB; alpha is dropped (not
  composited), with an info log naming the file (once per file and process,
  however often the training pipeline reads it).
- Gray ('1', 'L', 'LA', 16-bit 'I;16*'/'I') -> H x W x 3 replicated, or H x W
  with keep_gray=True so evaluation can use gray images as-is.
- 16-bit gray keeps its precision in `read_image_float`; `read_image` scales
  it to uint8 as round(v * 255 / 65535). Pillow itself keeps only the high
  byte of 16-bit RGB PNGs (a warning is logged, once per file): at most one
  level off.
- EXIF orientation is ignored, like MATLAB imread and the SR benchmarks.
"""

import os
import pathlib
import threading

from absl import logging
import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')

_GRAY_MODES = ('1', 'L', 'LA', 'La')
_GRAY16_MODES = ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I')
_ALPHA_MODES = ('LA', 'La', 'PA', 'RGBA', 'RGBa')

PathLike = str | os.PathLike

# (file, note) pairs already logged: a training run reads each file many
# times (one decode per sampled patch), a note about it is logged once.
_LOGGED: set[tuple[str, str]] = set()
_LOGGED_LOCK = threading.Lock()


def _log_once(level: int, path: pathlib.Path, note: str, *args) -> None:
  """logging.log(level, '%s: ' + note, path, *args), once per (file, note)."""
  key = (os.path.abspath(path), note)
  with _LOGGED_LOCK:
    if key in _LOGGED:
      return
    _LOGGED.add(key)
  logging.log(level, '%s: ' + note, path, *args)


def _decode(path: PathLike, keep_gray: bool) -> np.ndarray:
  """Decodes to uint8 or uint16, H x W x 3 (or H x W for gray if keep_gray)."""
  path = pathlib.Path(path)
  if not path.exists():
    raise FileNotFoundError(f'no image file at {path}')
  if not path.is_file():
    raise ValueError(f'expected an image file, found a directory: {path}')
  try:
    with Image.open(path) as im:
      # The raw tile modes ('RGB;16B' ...) are only known before decoding.
      tile_modes = str(getattr(im, 'tile', ''))
      im.load()
      mode = im.mode
      if mode in ('F', 'I;32', 'I;32B', 'I;32L'):
        raise ValueError(f'unsupported pixel mode {mode}')
      if mode in _ALPHA_MODES or (mode == 'P' and 'transparency' in im.info):
        _log_once(logging.INFO, path,
                  'dropping the alpha channel of a %s image', mode)
      if mode in _GRAY16_MODES:
        array = np.asarray(im)
      elif mode in _GRAY_MODES:
        array = np.asarray(im.convert('L'))
      else:
        if mode in ('RGB', 'RGBA') and ';16' in tile_modes:
          _log_once(logging.WARNING, path, '16-bit RGB; Pillow keeps only '
                    'the high byte of each sample')
        array = np.asarray(im.convert('RGB'))
  except (OSError, SyntaxError, ValueError) as e:
    raise ValueError(f'{path}: cannot decode image: {e}') from e
  if mode in _GRAY16_MODES:
    if array.min() < 0 or array.max() > 65535:
      raise ValueError(
          f'{path}: expected 16-bit gray values in [0, 65535], found '
          f'[{array.min()}, {array.max()}]'
      )
    array = array.astype(np.uint16)
  if array.ndim == 2 and not keep_gray:
    array = np.repeat(array[..., None], 3, axis=-1)
  return array


def read_image(path: PathLike, keep_gray: bool = False) -> np.ndarray:
  """Reads an image file as uint8 RGB H x W x 3 (H x W for gray if keep_gray).

  16-bit gray is scaled by round(v * 255 / 65535).
  Raises FileNotFoundError for a missing file and ValueError for one Pillow
  cannot decode (naming the file and Pillow's message).
  """
  array = _decode(path, keep_gray)
  if array.dtype == np.uint16:
    # round(v / 257) in exact integers; v / 257 is never a tie (257 is odd).
    array = ((array.astype(np.int64) * 2 + 257) // 514).astype(np.uint8)
  return array


def read_image_float(path: PathLike, keep_gray: bool = False) -> np.ndarray:
  """Reads an image as float32 [0, 1] H x W x 3 (H x W if gray and keep_gray).

  Keeps the full precision of 16-bit gray files (v / 65535).
  """
  array = _decode(path, keep_gray)
  peak = 65535.0 if array.dtype == np.uint16 else 255.0
  return (array.astype(np.float64) / peak).astype(np.float32)


def write_image(path: PathLike, image: np.ndarray) -> None:
  """Writes a uint8 H x W (gray) or H x W x 3 (RGB) array as a PNG file.

  Creates missing parent folders.
  """
  path = pathlib.Path(path)
  image = np.asarray(image)
  if path.suffix.lower() != '.png':
    raise ValueError(f'write_image writes PNG files, found the name {path}')
  if image.dtype != np.uint8:
    raise TypeError(
        f'write_image expects uint8 (see color.to_uint8), found {image.dtype}'
    )
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 3)):
    raise ValueError(
        f'write_image expects H x W or H x W x 3, found {image.shape}'
    )
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(np.ascontiguousarray(image)).save(path, format='PNG')


def list_images(folder: PathLike) -> list[pathlib.Path]:
  """The image files directly in folder, sorted by name.

  Extensions png/jpg/jpeg/bmp/tif/tiff in any case; hidden files (macOS '._*'
  resource forks among them) are skipped. Raises FileNotFoundError for a
  missing folder and ValueError when it holds no image.
  """
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    raise FileNotFoundError(f'no image folder at {folder}')
  paths = sorted(
      p
      for p in folder.iterdir()
      if p.is_file()
      and p.suffix.lower() in IMAGE_EXTENSIONS
      and not p.name.startswith('.')
  )
  if not paths:
    raise ValueError(
        f'{folder} holds no image file (expected one of {IMAGE_EXTENSIONS})'
    )
  return paths
