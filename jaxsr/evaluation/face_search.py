"""A latent-search run over a set of faces: batches, per-face outputs, results.json, the table.

For each face `name` the workdir gets
  sr/<name>.png      the result (config.search.result: the lowest-loss iterate
                     by default, as PULSE returns),
  best/<name>.png    the lowest-loss iterate, last/<name>.png the final one,
  lr/<name>.png      the LR next to the downscaled SR (both upscaled by
                     pixel repetition to the SR's size, so they can be seen),
  hr/<name>.png      the HR face, when the faces have one (LR | SR | HR
                     grids from the workdir alone),
  curves/<name>.csv  every loss term at every iteration (and a .png plot),
and results.json: per face `lr_l2` (PULSE's L2, the mean squared difference
in [0, 1] of the downscaled result and the LR), `success` (lr_l2 <= eps),
the best iteration, the restart that won, and with HR faces PSNR/SSIM (Y,
MATLAB-rounded, no border crop: a 32 px face has no border to spare) for the
search and for MATLAB bicubic upscaling. `summary` holds the means, the
success rate and NIQE of the mosaic of the set's faces (one 32 px face is
smaller than a NIQE block; see `mosaic_niqe`).

results.json is rewritten (atomically) after every batch; a rerun skips the
faces it already holds, so a killed run resumes where it stopped.
"""

import csv
import json
import math
import os
from collections.abc import Callable, Sequence

from absl import logging
import jax
import numpy as np

from jaxsr.data import color
from jaxsr.data import imresize
from jaxsr.data import io
from jaxsr.methods import latent_search
from jaxsr.metrics import psnr_ssim

# (keys (N,), lr01 (N, h, w, 3)) -> the search's outputs (latent_search).
SearchFn = Callable[[jax.Array, jax.Array], dict]
RESULTS = 'results.json'


def _atomic_json(path: str, obj) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=1)
  os.replace(tmp, path)


def load_results(workdir: str) -> dict:
  """results.json of a (partial) run, {} when there is none."""
  path = os.path.join(workdir, RESULTS)
  if not os.path.exists(path):
    return {}
  try:
    with open(path) as f:
      return json.load(f)
  except ValueError as e:
    raise ValueError(f'{path} is damaged ({e}); move it away to search every '
                     'face again') from None


def _batches(faces: Sequence, batch_size: int):
  """Batches of face indices, faces of one LR size together."""
  by_size = {}
  for i, (_, lr, _) in enumerate(faces):
    by_size.setdefault(lr.shape[:2], []).append(i)
  for indices in by_size.values():
    for s in range(0, len(indices), batch_size):
      yield indices[s:s + batch_size]


def _pixel_repeat(image: np.ndarray, size: int) -> np.ndarray:
  f = size // image.shape[0]
  return np.repeat(np.repeat(image, f, axis=0), f, axis=1)


def save_curves(path_stem: str, curves: dict) -> None:
  """curves/<name>.csv (iteration, term...) and a .png of each term."""
  terms = list(curves)
  n = len(curves[terms[0]])
  with open(path_stem + '.csv', 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['iteration'] + terms)
    for j in range(n):
      w.writerow([j + 1] + [f'{float(curves[t][j]):.6g}' for t in terms])
  # A bare Figure (no pyplot): the caller's backend, e.g. a notebook's
  # inline one, is left as it is.
  from matplotlib import figure  # pylint: disable=g-import-not-at-top
  fig = figure.Figure(figsize=(3 * len(terms), 2.4))
  # Fixed margins: tight_layout renders the figure once more (~1 s a face
  # on a busy 2-core CPU, for every face of every run).
  fig.subplots_adjust(left=0.06, right=0.98, bottom=0.12, top=0.88,
                      wspace=0.35)
  axes = np.atleast_1d(fig.subplots(1, len(terms)))
  for ax, t in zip(axes, terms):
    ax.plot(np.arange(1, n + 1), np.asarray(curves[t]))
    ax.set_title(t, fontsize=9)
    ax.tick_params(labelsize=7)
  fig.savefig(path_stem + '.png', dpi=80)


def mosaic(images: Sequence[np.ndarray]) -> np.ndarray:
  """The images (same size) tiled row-major into a ceil(sqrt(n))-wide grid,
  empty cells black."""
  n = len(images)
  cols = math.ceil(math.sqrt(n))
  rows = math.ceil(n / cols)
  h, w = images[0].shape[:2]
  out = np.zeros((rows * h, cols * w, 3), np.uint8)
  for i, im in enumerate(images):
    r, c = divmod(i, cols)
    out[r * h:(r + 1) * h, c * w:(c + 1) * w] = im
  return out


def mosaic_niqe(images: Sequence[np.ndarray]) -> float | None:
  """NIQE (MATLAB-exact, 96 px blocks, the pristine model) of the mosaic of a
  set's faces, None when the mosaic is smaller than one block or the NIQE
  parameters are not installed (logged)."""
  # pylint: disable=g-import-not-at-top
  from jaxsr.metrics.niqe import BLOCK_SIZE, niqe
  grid = mosaic(images)
  if min(grid.shape[:2]) < BLOCK_SIZE:
    logging.info('NIQE skipped: the mosaic of %d faces is %dx%d, smaller '
                 'than a %d px NIQE block', len(images), *grid.shape[:2],
                 BLOCK_SIZE)
    return None
  try:
    return float(niqe(grid))
  except FileNotFoundError as e:
    logging.warning('NIQE skipped: %s', e)
    return None


def _face_row(name, out, i, lr, hr, scale, eps) -> tuple[dict, np.ndarray]:
  sr = color.to_uint8(np.asarray(out['result'][i]))
  row = {'name': name, 'lr_l2': float(out['lr_l2'][i]),
         'success': bool(out['lr_l2'][i] <= eps),
         'best_step': int(out['best_step'][i]) + 1,
         'best_loss': float(out['best_loss'][i]),
         'restart': int(out['restart'][i])}
  if hr is not None:
    bic = imresize.imresize(lr, scale)
    row.update(psnr=psnr_ssim.psnr_y(sr, hr, 0), ssim=psnr_ssim.ssim_y(sr, hr, 0),
               bicubic_psnr=psnr_ssim.psnr_y(bic, hr, 0),
               bicubic_ssim=psnr_ssim.ssim_y(bic, hr, 0))
  return row, sr


def _write_face(workdir, name, out, i, lr, hr, sr) -> None:
  io.write_image(os.path.join(workdir, 'sr', name + '.png'), sr)
  if hr is not None:
    io.write_image(os.path.join(workdir, 'hr', name + '.png'), hr)
  for which in ('best', 'last'):
    io.write_image(os.path.join(workdir, which, name + '.png'),
                   color.to_uint8(np.asarray(out[which][i])))
  small = imresize.imresize(sr.astype(np.float64) / 255.0,
                            output_shape=lr.shape[:2])
  small = color.to_uint8(small)
  pair = np.concatenate([_pixel_repeat(lr, sr.shape[0]),
                         _pixel_repeat(small, sr.shape[0])], axis=1)
  io.write_image(os.path.join(workdir, 'lr', name + '.png'), pair)
  os.makedirs(os.path.join(workdir, 'curves'), exist_ok=True)
  curves = out['curves']  # jax sorts dict keys; keep the search's order.
  save_curves(os.path.join(workdir, 'curves', name),
              {k: np.asarray(curves[k][i]) for k in latent_search.TERMS})


def summarize(rows: list[dict], srs: list, bicubics: list) -> dict:
  """Means over the faces, the success rate and the mosaic NIQEs."""
  summary = {'faces': len(rows),
             'success_rate': float(np.mean([r['success'] for r in rows])),
             'lr_l2': float(np.mean([r['lr_l2'] for r in rows]))}
  for key in ('psnr', 'ssim', 'bicubic_psnr', 'bicubic_ssim'):
    if rows and key in rows[0]:
      summary[key] = float(np.mean([r[key] for r in rows]))
  if srs:
    summary['niqe'] = mosaic_niqe(srs)
  if bicubics:
    summary['bicubic_niqe'] = mosaic_niqe(bicubics)
  return summary


def run(faces: Sequence, search: SearchFn, workdir: str, *, scale: int,
        eps: float, batch_size: int, key: jax.Array) -> dict:
  """Searches every face not in workdir/results.json yet; returns the results.

  Face i of `faces` (name, uint8 LR, uint8 HR or None) searches with
  fold_in(key, i), whatever batch it lands in. A batch smaller than
  batch_size is padded with copies of its last face (one compiled shape).
  """
  if not faces:
    raise ValueError(f'no faces to search for {workdir} (an empty '
                     'data.lr_dir or data.hr_dir?)')
  results = load_results(workdir)
  done = {r['name']: r for r in results.get('faces', [])}
  todo = [i for i, (name, _, _) in enumerate(faces) if name not in done
          or not os.path.exists(os.path.join(workdir, 'sr', name + '.png'))]
  logging.info('Latent search: %d faces, %d done before, %d to go',
               len(faces), len(faces) - len(todo), len(todo))
  todo_faces = [faces[i] for i in todo]
  for batch in _batches(todo_faces, batch_size):
    indices = [todo[b] for b in batch]
    padded = indices + [indices[-1]] * (batch_size - len(indices))
    lr01 = np.stack([faces[i][1] for i in padded]).astype(np.float32) / 255.0
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(np.asarray(padded))
    out = jax.device_get(search(keys, lr01))
    for j, i in enumerate(indices):
      name, lr, hr = faces[i]
      row, sr = _face_row(name, out, j, lr, hr, scale, eps)
      _write_face(workdir, name, out, j, lr, hr, sr)
      done[name] = row
      if not row['success']:
        logging.warning('face %s: lr_l2 %.5f > eps %.5f: no face found that '
                        'downscales to the LR within eps', name,
                        row['lr_l2'], eps)
    rows = [done[n] for n, _, _ in faces if n in done]
    _atomic_json(os.path.join(workdir, RESULTS),
                 {'faces': rows, 'eps': eps, 'scale': scale})
  rows = [done[n] for n, _, _ in faces]
  srs = [io.read_image(os.path.join(workdir, 'sr', n + '.png'))
         for n, _, _ in faces]
  with_hr = all(hr is not None for _, _, hr in faces)
  bicubics = ([imresize.imresize(lr, scale) for _, lr, _ in faces]
              if with_hr else [])
  results = {'faces': rows, 'eps': eps, 'scale': scale,
             'summary': summarize(rows, srs, bicubics)}
  _atomic_json(os.path.join(workdir, RESULTS), results)
  logging.info('Latent search done:\n%s', table(results['summary']))
  return results


def table(summary: dict) -> str:
  """The summary as a small Markdown table (search vs bicubic)."""
  def fmt(v, spec):
    return '-' if v is None else format(v, spec)
  lines = ['| | search | bicubic |', '|---|---|---|']
  for key, spec in (('psnr', '.2f'), ('ssim', '.4f'), ('niqe', '.3f')):
    if key in summary or f'bicubic_{key}' in summary:
      lines.append(f'| {key.upper()} | {fmt(summary.get(key), spec)} | '
                   f'{fmt(summary.get("bicubic_" + key), spec)} |')
  lines.append(f'| LR L2 | {summary["lr_l2"]:.5f} | |')
  lines.append(f'| success | {summary["success_rate"]:.0%} | |')
  return '\n'.join(lines)
