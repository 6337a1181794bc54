"""Image sources: HR folders (LR made on the fly), paired HR/LR folders, in-memory sets.

A dataset is a sequence of (name, HR, LR-or-None) with uint8 HxWx3 RGB images;
LR None means "downscale HR with MATLAB bicubic". Sizes are checked up front
from the file headers and, for training, every file is decoded once
(jaxsr.data.verify), so a bad file stops the run before training starts.
"""

import dataclasses
import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence

from absl import logging
import numpy as np
from PIL import Image

from jaxsr.data import imresize
from jaxsr.data import io
from jaxsr.data import verify as verify_lib


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Random access to named HR images and, for paired sets, their LR images."""
  names: Sequence[str]
  sizes: Sequence[tuple[int, int]]  # HR (H, W) per image.
  load_hr: Callable[[int], np.ndarray]
  load_lr: Callable[[int], np.ndarray] | None = None

  def __len__(self):
    return len(self.names)


def _header_size(path: str) -> tuple[int, int]:
  try:
    with Image.open(path) as im:
      w, h = im.size
  except FileNotFoundError:
    raise
  except Exception as e:  # PIL raises several types for bad files.
    raise ValueError(f'{path}: not a readable image ({e})') from e
  return h, w


def paired_lr_paths(lr_dir: str, hr_paths: Sequence[str], scale: int) -> list[str]:
  """DIV2K-layout LR files for HR files: 0001.png -> 0001x4.png (or 0001.png)."""
  by_stem = {os.path.splitext(os.path.basename(c))[0]: c
             for c in io.list_images(lr_dir)}
  out = []
  for p in hr_paths:
    stem = os.path.splitext(os.path.basename(p))[0]
    cand = by_stem.get(f'{stem}x{scale}', by_stem.get(stem))
    if cand is None:
      raise FileNotFoundError(
          f'no LR image for {p} in {lr_dir}: expected {stem}x{scale}.png '
          f'(DIV2K layout) or {stem}.png')
    out.append(cand)
  return out


def cached_loader(load: Callable[[str], np.ndarray], cache_dir: str
                  ) -> Callable[[str], np.ndarray]:
  """load(path) memoized on disk: decoded once to an .npy, then memory-mapped.

  Decoding a 2K PNG costs ~75 ms, 96% of a training sample's CPU time
  (benchmarks/pipeline.py); reading a crop of a memory-mapped .npy ~1 ms.
  The cache file is keyed by the source's absolute path, size and mtime, so
  an edited image is decoded again. Written atomically (temporary file, then
  rename), so concurrent loader threads never read a partial file.
  """
  os.makedirs(cache_dir, exist_ok=True)

  def cached(path: str) -> np.ndarray:
    st = os.stat(path)
    key = hashlib.sha1(
        f'{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}'.encode()
    ).hexdigest()[:16]
    stem = os.path.splitext(os.path.basename(path))[0]
    target = os.path.join(cache_dir, f'{stem}-{key}.npy')
    if not os.path.exists(target):
      array = load(path)
      fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix='.npy.tmp')
      with os.fdopen(fd, 'wb') as f:
        np.save(f, array)
      os.replace(tmp, target)
    return np.load(target, mmap_mode='r')

  return cached


def _describe(problems: dict[str, str], total: int, what: str) -> str:
  """One line naming every bad file and why."""
  return (f'{len(problems)} of {total} {what} cannot be used (fix or remove '
          'them): ' + '; '.join(
              why if why.startswith(p) else f'{p}: {why}'
              for p, why in problems.items()))


def from_folders(hr_dir: str, scale: int, lr_dir: str = '',
                 min_size: int = 0, cache_dir: str = '', verify: bool = False,
                 record_dir: str = '', num_threads: int = 4) -> Dataset:
  """HR images of a folder (modcropped to `scale`), paired with `lr_dir` if given.

  Raises one ValueError naming every file whose header cannot be read, that
  is smaller than `min_size`, or whose LR is not exactly HR/scale. With
  `verify`, every file is also decoded first (`verify.verify_images`, which
  remembers decoded files in `record_dir`), so a truncated image stops the
  run before step 0, named with every other bad file. With `cache_dir`, each
  image is decoded once into an .npy there and memory-mapped afterwards
  (verification then fills that cache).
  """
  hr_paths = [str(p) for p in io.list_images(hr_dir)]
  lr_paths = None
  if lr_dir:
    lr_paths = [str(p) for p in paired_lr_paths(lr_dir, hr_paths, scale)]
  read = io.read_image
  if cache_dir:
    read = cached_loader(io.read_image, cache_dir)
  problems = {}
  if verify:
    problems = verify_lib.verify_images(
        hr_paths + (lr_paths or []), read,
        '' if cache_dir else record_dir, num_threads)
  sizes = []
  for p in hr_paths:
    try:
      h, w = _header_size(p) if p not in problems else (0, 0)
    except ValueError as e:
      problems[p] = str(e)
      h = w = 0
    if p not in problems and min(h, w) < min_size:
      problems[p] = (f'{p} is {h}x{w}, smaller than the {min_size}x{min_size}'
                     ' HR patch')
    sizes.append((h - h % scale, w - w % scale))
  for p, q, (h, w) in zip(hr_paths, lr_paths or [], sizes):
    if p in problems or q in problems:
      continue
    try:
      lh, lw = _header_size(q)
    except ValueError as e:
      problems[q] = str(e)
      continue
    if (lh * scale, lw * scale) != (h, w):
      problems[q] = (
          f'{q} is {lh}x{lw} but {p} is {h}x{w} after modcrop: expected an '
          f'LR of {h // scale}x{w // scale} for scale {scale}')
  if problems:
    total = len(hr_paths) + len(lr_paths or [])
    raise ValueError(_describe(problems, total, f'images in {hr_dir}' + (
        f' and {lr_dir}' if lr_dir else '')))
  logging.info('%s: %d images%s', hr_dir, len(hr_paths),
               f' paired with {lr_dir}' if lr_dir else '')

  def load_hr(i):
    return imresize.modcrop(read(hr_paths[i]), scale)

  load_lr = None
  if lr_paths is not None:
    def load_lr(i):
      return read(lr_paths[i])

  names = [os.path.splitext(os.path.basename(p))[0] for p in hr_paths]
  return Dataset(names=names, sizes=sizes, load_hr=load_hr, load_lr=load_lr)


def from_arrays(named_images: Sequence[tuple[str, np.ndarray]], scale: int,
                lr_images: Sequence[np.ndarray] | None = None,
                min_size: int = 0) -> Dataset:
  """An in-memory dataset of uint8 RGB images (modcropped to `scale`)."""
  names, images = [], []
  for name, im in named_images:
    if im.dtype != np.uint8 or im.ndim != 3 or im.shape[-1] != 3:
      raise ValueError(f'{name}: expected uint8 HxWx3, got {im.dtype} '
                       f'{im.shape}')
    if min(im.shape[:2]) < min_size:
      raise ValueError(f'{name} is {im.shape[0]}x{im.shape[1]}, smaller than '
                       f'the {min_size}x{min_size} HR patch')
    names.append(name)
    images.append(imresize.modcrop(im, scale))
  load_lr = None
  if lr_images is not None:
    lr_images = list(lr_images)
    for name, im, lr in zip(names, images, lr_images):
      if tuple(lr.shape[:2]) != (im.shape[0] // scale, im.shape[1] // scale):
        raise ValueError(f'{name}: LR is {lr.shape[:2]}, expected '
                         f'{(im.shape[0] // scale, im.shape[1] // scale)}')
    load_lr = lr_images.__getitem__
  return Dataset(names=names, sizes=[im.shape[:2] for im in images],
                 load_hr=images.__getitem__, load_lr=load_lr)


def lr_of(dataset: Dataset, i: int, scale: int) -> np.ndarray:
  """The LR image of item i: the paired file, or MATLAB bicubic of the HR."""
  if dataset.load_lr is not None:
    return dataset.load_lr(i)
  return imresize.imresize(dataset.load_hr(i), 1 / scale)
