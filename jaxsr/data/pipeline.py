"""Paired-patch training batches: aligned random crops, dihedral augmentation, shuffling.

Every batch is a pure function of (seed, step, process): item order is a
seeded permutation per epoch, crops and flips come from a per-sample seed. A
restarted job at step k therefore sees exactly the batches it would have seen,
with no iterator state to checkpoint.
"""

import collections
import concurrent.futures
import functools
import threading

import numpy as np

from jaxsr.data import datasets
from jaxsr.data import imresize

# LR pixels of context kept around a crop before downscaling it: the MATLAB
# bicubic kernel reaches 2 LR pixels, so the core of the crop equals the crop
# of the full-image LR bit for bit.
_LR_MARGIN = 4


def dihedral(image: np.ndarray, k: int) -> np.ndarray:
  """One of the 8 flips/rotations of an HxWxC image (k in 0..7; 0 = identity)."""
  if k >= 4:
    image = image[:, ::-1]
  return np.rot90(image, k % 4, axes=(0, 1))


def random_patch(dataset: datasets.Dataset, i: int, hr_patch: int, scale: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """An aligned (LR, HR) uint8 crop of item i: LR is hr_patch/scale wide."""
  lr_p = hr_patch // scale
  h, w = dataset.sizes[i]
  lh, lw = h // scale, w // scale
  if lh < lr_p or lw < lr_p:
    raise ValueError(f'{dataset.names[i]} is {h}x{w}, smaller than the '
                     f'{hr_patch}x{hr_patch} HR patch')
  y = int(rng.integers(lh - lr_p + 1))
  x = int(rng.integers(lw - lr_p + 1))
  hr = dataset.load_hr(i)
  hr_crop = hr[y * scale:(y + lr_p) * scale, x * scale:(x + lr_p) * scale]
  if dataset.load_lr is not None:
    lr = dataset.load_lr(i)
    return lr[y:y + lr_p, x:x + lr_p], hr_crop
  y0, x0 = max(0, y - _LR_MARGIN), max(0, x - _LR_MARGIN)
  y1, x1 = min(lh, y + lr_p + _LR_MARGIN), min(lw, x + lr_p + _LR_MARGIN)
  region = imresize.imresize(hr[y0 * scale:y1 * scale, x0 * scale:x1 * scale],
                             1 / scale)
  return region[y - y0:y - y0 + lr_p, x - x0:x - x0 + lr_p], hr_crop


class TrainBatches:
  """Iterator over this host's share of the global training batches, from a step.

  Yields {'lr': (b, p/s, p/s, 3), 'hr': (b, p, p, 3)} float32 in [0, 1], where
  b = batch_size / process_count. Decoding and cropping run in a thread pool,
  `prefetch` steps ahead.
  """

  def __init__(self, dataset: datasets.Dataset, *, scale: int, hr_patch: int,
               batch_size: int, seed: int, start_step: int = 0,
               augment: bool = True, process_index: int = 0,
               process_count: int = 1, num_threads: int = 4,
               prefetch: int = 2):
    if hr_patch % scale:
      raise ValueError(f'data.hr_patch={hr_patch} is not a multiple of the '
                       f'scale {scale}')
    if len(dataset) == 0:
      raise ValueError('the training set is empty')
    self._ds = dataset
    self._scale, self._patch, self._seed = scale, hr_patch, seed
    self._augment = augment
    self._global_batch = batch_size
    self._local = batch_size // process_count
    self._offset = process_index * self._local
    self._step = start_step
    # Two pools: batch jobs wait on sample jobs, so they must not share threads.
    self._pool = concurrent.futures.ThreadPoolExecutor(num_threads)
    self._prefetch = max(1, prefetch)
    self._batch_pool = concurrent.futures.ThreadPoolExecutor(self._prefetch)
    self._queue = collections.deque()
    self._lock = threading.Lock()

  @functools.lru_cache(maxsize=4)
  def _permutation(self, epoch: int) -> np.ndarray:
    return np.random.default_rng((self._seed, 0, epoch)).permutation(
        len(self._ds))

  def _sample(self, g: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(self._ds)
    with self._lock:  # lru_cache is not safe to fill from several threads.
      perm = self._permutation(g // n)
    rng = np.random.default_rng((self._seed, 1, g))
    lr, hr = random_patch(self._ds, int(perm[g % n]), self._patch,
                          self._scale, rng)
    if self._augment:
      k = int(rng.integers(8))
      lr, hr = dihedral(lr, k), dihedral(hr, k)
    return lr, hr

  def batch_indices(self, step: int) -> list[int]:
    """Global sample numbers this host loads at `step`."""
    first = step * self._global_batch + self._offset
    return list(range(first, first + self._local))

  def _load(self, step: int) -> dict:
    pairs = list(self._pool.map(self._sample, self.batch_indices(step)))
    lr = np.stack([p[0] for p in pairs]).astype(np.float32) / 255.
    hr = np.stack([p[1] for p in pairs]).astype(np.float32) / 255.
    return {'lr': lr, 'hr': hr}

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    while len(self._queue) < self._prefetch:
      ahead = self._step + len(self._queue)
      self._queue.append(self._batch_pool.submit(self._load, ahead))
    self._step += 1
    return self._queue.popleft().result()

  def close(self):
    self._batch_pool.shutdown(wait=False, cancel_futures=True)
    self._pool.shutdown(wait=False, cancel_futures=True)
