"""Whole-image super-resolution with a batched predict function, tiled for big images."""

from collections.abc import Callable

import numpy as np


def _starts(size: int, core: int, window: int) -> list[tuple[int, int]]:
  """(core start, window start) pairs covering [0, size) with fixed windows."""
  out = []
  for c in range(0, size, core):
    w = min(max(c - (window - core) // 2, 0), max(size - window, 0))
    out.append((c, w))
  return out


def upscale(predict: Callable[[np.ndarray], np.ndarray], lr: np.ndarray,
            scale: int, tile: int = 0, overlap: int = 16) -> np.ndarray:
  """SR of one float32 HxWx3 LR image in [0, 1] -> (H*scale, W*scale, 3) float32.

  `predict` maps an NHWC batch to its NHWC SR batch. With `tile` > 0 the image
  is cut into tile x tile LR cores, each run with `overlap` LR pixels of context
  on every side (one window shape, so one compilation) and only the core of
  each output kept. Tiled output equals the untiled one wherever the network's
  receptive field fits inside the overlap.
  """
  if lr.ndim != 3:
    raise ValueError(f'expected an HxWxC image, got shape {lr.shape}')
  h, w, _ = lr.shape
  if tile <= 0 or (h <= tile + 2 * overlap and w <= tile + 2 * overlap):
    return np.asarray(predict(lr[None]))[0]
  win_h, win_w = min(h, tile + 2 * overlap), min(w, tile + 2 * overlap)
  out = None
  for cy, wy in _starts(h, tile, win_h):
    for cx, wx in _starts(w, tile, win_w):
      sr = np.asarray(predict(lr[None, wy:wy + win_h, wx:wx + win_w]))[0]
      if out is None:
        out = np.zeros((h * scale, w * scale, sr.shape[-1]), sr.dtype)
      ch, cw = min(tile, h - cy), min(tile, w - cx)
      oy, ox = (cy - wy) * scale, (cx - wx) * scale
      out[cy * scale:(cy + ch) * scale, cx * scale:(cx + cw) * scale] = (
          sr[oy:oy + ch * scale, ox:ox + cw * scale])
  return out
