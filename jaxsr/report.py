"""Result tables (Markdown) and comparison image grids (uint8 PNG arrays)."""

from collections.abc import Sequence

import numpy as np


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
  """A Markdown table; floats printed with 4 decimals."""
  def fmt(v):
    return f'{v:.4f}' if isinstance(v, (float, np.floating)) else str(v)
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + '|'.join('---' for _ in header) + '|']
  lines += ['| ' + ' | '.join(fmt(v) for v in row) + ' |' for row in rows]
  return '\n'.join(lines)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
  """The central size x size window of an image (smaller images unchanged)."""
  h, w = image.shape[:2]
  y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
  return image[y:y + size, x:x + size]


def _fit(image: np.ndarray, height: int) -> np.ndarray:
  """Nearest-neighbour resize of a uint8 HxWx3 image to the given height."""
  h, w = image.shape[:2]
  width = max(1, round(w * height / h))
  ys = (np.arange(height) * h // height).clip(0, h - 1)
  xs = (np.arange(width) * w // width).clip(0, w - 1)
  return image[ys][:, xs]


def image_grid(rows: Sequence[Sequence[np.ndarray]], row_height: int = 256,
               gap: int = 4) -> np.ndarray:
  """Rows of uint8 RGB images side by side (each row scaled to row_height)."""
  if not rows:
    raise ValueError('no images to put in the grid')
  built = []
  for row in rows:
    tiles = [_fit(im if im.ndim == 3 else np.repeat(im[..., None], 3, -1),
                  row_height) for im in row]
    spaced = []
    for t in tiles:
      spaced += [t, np.full((row_height, gap, 3), 255, np.uint8)]
    built.append(np.concatenate(spaced[:-1], axis=1))
  width = max(r.shape[1] for r in built)
  padded = []
  for r in built:
    pad = np.full((row_height, width - r.shape[1], 3), 255, np.uint8)
    padded += [np.concatenate([r, pad], axis=1),
               np.full((gap, width, 3), 255, np.uint8)]
  return np.concatenate(padded[:-1], axis=0)
