"""Result tables (Markdown) and comparison image grids (uint8 PNG arrays)."""

import dataclasses
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


def detail_box(hr: np.ndarray, size: int, stride: int | None = None
               ) -> tuple[int, int, int, int]:
  """(top, left, height, width) of the size x size HR window with the most
  detail (sum of |horizontal| + |vertical| luma differences), scanned on a
  stride grid (default size // 2); ties go to the first window."""
  h, w = hr.shape[:2]
  size_h, size_w = min(size, h), min(size, w)
  stride = stride or max(1, size // 2)
  gray = hr.astype(np.float64)
  if gray.ndim == 3:
    gray = gray @ np.array([0.299, 0.587, 0.114])
  energy = np.zeros((h, w))
  energy[:, 1:] += np.abs(np.diff(gray, axis=1))
  energy[1:, :] += np.abs(np.diff(gray, axis=0))
  # Summed-area table: each window's energy in O(1).
  sat = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
  best, box = -1.0, (0, 0, size_h, size_w)
  tops = sorted(set(range(0, h - size_h + 1, stride)) | {h - size_h})
  lefts = sorted(set(range(0, w - size_w + 1, stride)) | {w - size_w})
  for t in tops:
    for l in lefts:
      e = (sat[t + size_h, l + size_w] - sat[t, l + size_w]
           - sat[t + size_h, l] + sat[t, l])
      if e > best:
        best, box = e, (t, l, size_h, size_w)
  return box


def crop_box(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
  """image[top:top + height, left:left + width]."""
  t, l, h, w = box
  return image[t:t + h, l:l + w]


def _text_strip(labels: Sequence[str], widths: Sequence[int], gap: int,
                height: int = 16) -> np.ndarray:
  """A white strip with each label written left-aligned over its column."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from PIL import ImageDraw  # pylint: disable=g-import-not-at-top
  total = sum(widths) + gap * (len(widths) - 1)
  strip = Image.new('RGB', (total, height), (255, 255, 255))
  draw = ImageDraw.Draw(strip)
  x = 0
  for label, w in zip(labels, widths):
    draw.text((x + 2, 2), label, fill=(0, 0, 0))
    x += w + gap
  return np.asarray(strip)


def labeled_grid(header: Sequence[str], rows: Sequence[Sequence[np.ndarray]],
                 row_height: int = 192, gap: int = 4) -> np.ndarray:
  """`image_grid` of equally shaped rows under a header of column labels."""
  if any(len(r) != len(header) for r in rows):
    raise ValueError(f'every row needs {len(header)} images, one per label '
                     f'{list(header)}')
  grid = image_grid(rows, row_height, gap)
  first = rows[0]
  widths = [_fit(im if im.ndim == 3 else np.repeat(im[..., None], 3, -1),
                 row_height).shape[1] for im in first]
  strip = _text_strip(header, widths, gap)
  pad = grid.shape[1] - strip.shape[1]
  if pad > 0:
    strip = np.pad(strip, ((0, 0), (0, pad), (0, 0)), constant_values=255)
  return np.concatenate([strip[:, :grid.shape[1]], grid], axis=0)


@dataclasses.dataclass(frozen=True)
class Row:
  """One row of an annotated grid: its uint8 tiles, a title written above
  them (e.g. the image name) and a caption under each tile (e.g. scores)."""
  tiles: Sequence[np.ndarray]
  title: str = ''
  captions: Sequence[str] = ()


def _tile_widths(tiles: Sequence[np.ndarray], row_height: int) -> list[int]:
  return [_fit(im if im.ndim == 3 else np.repeat(im[..., None], 3, -1),
               row_height).shape[1] for im in tiles]


def annotated_grid(header: Sequence[str], rows: Sequence, row_height: int = 256,
                   gap: int = 4) -> np.ndarray:
  """Column labels, then per row its title, its tiles and their captions.

  rows: `Row`s, or plain sequences of tiles (no title, no captions). Strips
  of text are 16 pixels high; blocks are separated by `gap` white pixels.
  """
  if not rows:
    raise ValueError('no images to put in the grid')
  rows = [r if isinstance(r, Row) else Row(tuple(r)) for r in rows]
  if any(len(r.tiles) != len(header) for r in rows):
    raise ValueError(f'every row needs {len(header)} images, one per label '
                     f'{list(header)}')
  blocks = [_text_strip(header, _tile_widths(rows[0].tiles, row_height), gap)]
  for r in rows:
    widths = _tile_widths(r.tiles, row_height)
    if r.title:
      blocks.append(_text_strip([r.title], [sum(widths)], 0))
    blocks.append(image_grid([r.tiles], row_height, gap))
    if r.captions:
      blocks.append(_text_strip(r.captions, widths, gap))
  width = max(b.shape[1] for b in blocks)
  out = []
  for b in blocks:
    out += [np.pad(b, ((0, 0), (0, width - b.shape[1]), (0, 0)),
                   constant_values=255),
            np.full((gap, width, 3), 255, np.uint8)]
  return np.concatenate(out[:-1], axis=0)
