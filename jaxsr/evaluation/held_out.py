"""Scores SR functions on a set of images, and writes the training run's held-out report.

One image loop serves the evaluation during and after training (a dataset,
model vs bicubic, PSNR/SSIM) and `python -m jaxsr.evaluate` (folders, any
metric suite, any number of models).
"""

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from jaxsr.data import datasets
from jaxsr.evaluation import report
from jaxsr.evaluation import scoring

# uint8 LR -> uint8 SR.
SRFn = Callable[[np.ndarray], np.ndarray]
# (name, hr, {method: sr}, lr, {method: scores}) -> grid rows for one image.
GridFn = Callable[[str, np.ndarray, dict, np.ndarray, dict], list]


def dataset_images(dataset: datasets.Dataset, scale: int
                   ) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
  """(name, uint8 HR, uint8 LR) of every image of a dataset."""
  for i, name in enumerate(dataset.names):
    yield name, dataset.load_hr(i), datasets.lr_of(dataset, i, scale)


def score_images(images: Iterable[tuple[str, np.ndarray, np.ndarray]],
                 sr_fns: dict[str, SRFn], scorer, grid_fn: GridFn | None = None,
                 grid_images: int = 0) -> tuple[dict, list]:
  """({method: per-image rows}, grid rows) of SR functions on (name, HR, LR)s.

  Each row is {'name': name, **scorer(sr, hr, lr)}; grid_fn gives the grid rows
  of each of the first `grid_images` images. A ValueError while an image is
  upscaled or scored is raised again with the image's name.
  """
  rows = {m: [] for m in sr_fns}
  grid = []
  for i, (name, hr, lr) in enumerate(images):
    try:
      srs = {m: fn(lr) for m, fn in sr_fns.items()}
      scores = {m: scorer(sr, hr, lr) for m, sr in srs.items()}
    except ValueError as e:
      raise ValueError(f'image {name} (HR {hr.shape[0]}x{hr.shape[1]}, LR '
                       f'{lr.shape[0]}x{lr.shape[1]}): {e}') from e
    for m, s in scores.items():
      rows[m].append({'name': name, **s})
    if grid_fn is not None and i < grid_images:
      grid += grid_fn(name, hr, srs, lr, scores)
  return rows, grid


GRID_HEADER = ('bicubic', 'model', 'HR')


def score_caption(scores: dict) -> str:
  """The text under an SR tile: 'PSNR 27.13 dB  SSIM 0.7612' (Y channel)."""
  return f'PSNR {scores["psnr"]:.2f} dB  SSIM {scores["ssim"]:.4f}'


def _whole_and_centre(name, hr, srs, lr, scores):
  """Two rows, bicubic | SR | HR: the whole images, named, with PSNR/SSIM
  under each SR; then their 96x96 centre crops."""
  del lr
  tiles = [srs['bicubic'], srs['model'], hr]
  captions = [score_caption(scores['bicubic']), score_caption(scores['model']),
              'ground truth']
  return [report.Row(tiles, name, captions),
          report.Row([report.center_crop(x, 96) for x in tiles],
                     f'{name}: centre 96x96')]


def evaluate_model(sr_fn: SRFn, dataset: datasets.Dataset, scale: int,
                   eval_config) -> tuple[list[dict], list]:
  """Per-image rows (model scores, and bicubic's as bicubic_<key>) and grid rows.

  The grid holds, for each of the first eval_config.grid_images images, the
  whole image (named, PSNR/SSIM under each SR) and a 96x96 centre crop,
  bicubic | SR | HR, as report.Rows.
  """
  def scorer(sr, hr, lr):
    del lr
    return scoring.score_pair(sr, hr, scale, eval_config.rounded_y)
  rows, grid = score_images(
      dataset_images(dataset, scale),
      {'model': sr_fn, 'bicubic': lambda lr: scoring.bicubic(lr, scale)},
      scorer, _whole_and_centre, eval_config.grid_images)
  merged = [{**m, **{f'bicubic_{k}': v for k, v in b.items() if k != 'name'}}
            for m, b in zip(rows['model'], rows['bicubic'])]
  return merged, grid


def summaries(rows: list[dict], grid: list, prefix: str
              ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
  """TensorBoard scalars (mean PSNR/SSIM) and images (the grid, as a batch of
  one) of evaluate_model's output, named <prefix>/psnr ... <prefix>/grid."""
  scalars = {f'{prefix}/{k}': float(np.mean([r[k] for r in rows]))
             for k in ('psnr', 'ssim')}
  images = ({f'{prefix}/grid': report.annotated_grid(GRID_HEADER, grid)[None]}
            if grid else {})
  return scalars, images


def _write_json(path: str, value) -> None:
  """Writes JSON through a temporary file and a rename (never half a file)."""
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(value, f, indent=2)
  os.replace(tmp, path)


def stage_results_path(workdir: str, stage: str) -> str:
  """Where a stage's held-out table is kept (Stage.evaluate_at_end)."""
  return os.path.join(workdir, f'results_{stage}.json')


def write_stage_results(workdir: str, stage: str, step: int,
                        rows: list[dict]) -> None:
  """Keeps the held-out rows of a stage that just ended."""
  _write_json(stage_results_path(workdir, stage), {'step': step,
                                                   'images': rows})


MEAN_KEYS = ('bicubic_psnr', 'psnr', 'bicubic_ssim', 'ssim')


def final_report(workdir: str, rows: list[dict], grid: list, step: int,
                 stages: Sequence[str] = ()) -> str:
  """Writes results.md/.json and grid.png; returns the Markdown text.

  grid.png has the column labels (bicubic | model | HR) on top, each image's
  name above its row and PSNR/SSIM under each SR tile.

  The table has bicubic, each named stage's model as it was when the stage
  ended (results_<stage>.json, e.g. the PSNR model a GAN stage starts from)
  and the final model, for PSNR and SSIM.
  """
  models = []
  for name in stages:
    path = stage_results_path(workdir, name)
    if os.path.exists(path):
      with open(path) as f:
        saved = json.load(f)
      if saved['step'] != step:
        by_name = {r['name']: r for r in saved['images']}
        models.append((f'{name} stage', [by_name[r['name']] for r in rows]))
  models.append(('model', rows))
  columns = []
  for metric, label in (('psnr', 'PSNR'), ('ssim', 'SSIM')):
    columns.append((f'bicubic {label}', f'bicubic_{metric}', rows))
    columns += [(f'{m} {label}', metric, src) for m, src in models]
  table_rows = [[r['name']] + [src[i][key] for _, key, src in columns]
                for i, r in enumerate(rows)]
  table_rows.append(['**mean**'] + [float(np.mean([r[key] for r in src]))
                                    for _, key, src in columns])
  table = report.markdown_table(['image'] + [c[0] for c in columns],
                                table_rows)
  mean = {k: float(np.mean([r[k] for r in rows])) for k in MEAN_KEYS}
  gain = mean['psnr'] - mean['bicubic_psnr']
  text = (f'{table}\n\nY channel, border = scale. Model vs bicubic: '
          f'{gain:+.3f} dB PSNR.\n')
  with open(os.path.join(workdir, 'results.md'), 'w') as f:
    f.write(text)
  _write_json(os.path.join(workdir, 'results.json'),
              {'step': step, 'images': rows, 'mean': mean})
  if grid:
    Image.fromarray(report.annotated_grid(GRID_HEADER, grid)).save(
        os.path.join(workdir, 'grid.png'))
  return text
