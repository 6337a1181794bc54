"""Paper 004's Table 4 protocol: one SinGAN pyramid per LR image of a folder, SR by `scale`, RMSE and NIQE next to bicubic.

For each HR image: modcrop to the scale, LR = MATLAB-exact bicubic
downscale (uint8, `jaxsr.data.imresize`), a SinGAN pyramid trained on that
LR alone (`python -m jaxsr.main` semantics: its own workdir under
OUT/runs/<name>, so a rerun resumes; LRs of one size are trained together
as one stacked, vmapped run, each pyramid as if alone, when
config.singan.stack_images says so: by default on GPU/TPU, not on CPU),
its SR by `scale`
(`jaxsr.methods.singan_generate.super_resolve`), and bicubic upscaling of
the same LR.

Scores (`jaxsr.metrics.rmse`, `jaxsr.metrics.niqe`): RMSE on the Y channel
of uint8 images (MATLAB rgb2ycbcr, 0..255) with `scale` pixels shaved, per
image, and NIQE (MATLAB-exact, its pristine model file from
`python -m jaxsr.assets niqe` or $JAXSR_NIQE_PARAMS) on the SR's Y with the
same border. Paper 004 states no unit for its RMSE (see jaxsr/metrics/rmse.py:
its values look like squared errors), so both the per-image RMSE and MSE
are kept.

Writes OUT/summary.json ({'singan': {'rmse', 'mse', 'niqe', 'images': [...]},
'bicubic': {...}, 'protocol': {...}}; 'rmse' is the mean of the per-image
RMSEs), OUT/results.md (the table) and OUT/grid.png (per image: LR, nearest-
upscaled | bicubic | SinGAN | HR), and OUT/lr/<name>.png, OUT/sr/<name>.png.
"""

import copy
import json
import os

from absl import logging
import numpy as np

from jaxsr import config_lib
from jaxsr.data import color
from jaxsr.data import imresize
from jaxsr.data import io
from jaxsr.evaluation import metric_suite
from jaxsr.evaluation import report
from jaxsr.evaluation import scoring
from jaxsr.metrics import rmse as rmse_lib

METHODS = ('singan', 'bicubic')


def _nearest(image: np.ndarray, scale: int) -> np.ndarray:
  return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def _summary(rows: list[dict]) -> dict:
  return {'rmse': float(np.mean([r['rmse'] for r in rows])),
          'mse': float(np.mean([r['mse'] for r in rows])),
          'niqe': float(np.mean([r['niqe'] for r in rows])),
          'images': rows}


def _train_and_sr(base_config, lr_paths: list[str], scale: int,
                  workdir: str) -> list[np.ndarray]:
  """Trains one pyramid per LR of lr_paths (same size: one stacked run,
  `jaxsr.methods.stacked`) in workdir; their uint8 SRs by scale."""
  from jaxsr import restore  # pylint: disable=g-import-not-at-top
  from jaxsr import train  # pylint: disable=g-import-not-at-top
  config = copy.deepcopy(base_config)
  # The LRs as they are: no demo crop or downscale of them.
  if len(lr_paths) == 1:
    config.data.update(image=lr_paths[0], images=(), crop=0, downscale=1)
  else:
    config.data.update(image='', images=tuple(lr_paths), crop=0, downscale=1)
  config.scale = scale
  config.lock()
  train.train_and_evaluate(config, workdir)
  model = restore.load_model(workdir)
  lrs = [io.read_image(p) for p in lr_paths]
  if len(lrs) == 1:
    return [scoring.model_sr(model.predict, lrs[0], scale)]
  batch = np.stack(lrs).astype(np.float32) / 255.
  return [color.to_uint8(sr) for sr in np.asarray(model.predict(batch))]


def groups(shapes: list[tuple], stack: bool) -> list[list[int]]:
  """Indices of the images trained as one run: those of one shape together
  (in order of first appearance) when stack, else each alone."""
  if not stack:
    return [[i] for i in range(len(shapes))]
  by_shape = {}
  for i, shape in enumerate(shapes):
    by_shape.setdefault(tuple(shape), []).append(i)
  return list(by_shape.values())


def run(data_dir: str, scale: int, config_spec: str, out_dir: str
        ) -> tuple[dict, str]:
  """Trains and scores one pyramid per image of data_dir; (summary, table).

  Images whose LRs share a size train together as one stacked run (one
  vmapped program, workdir OUT/runs/<first name>+<n>) when
  `singan.stacks_images(config)`; the others alone (OUT/runs/<name>). Each
  pyramid is the same as trained alone.
  """
  if not os.path.isdir(data_dir):
    raise FileNotFoundError(f'no HR folder {data_dir}')
  paths = io.list_images(data_dir)
  if not paths:
    raise ValueError(f'no images in {data_dir}')
  base_config = config_lib.load_file(config_spec)
  if base_config.method != 'singan':
    raise ValueError(f'{config_spec} is a {base_config.method!r} config; '
                     'expected experiments/singan.py:sr (or a variant)')
  # Every model file is read before any training starts.
  scorer = metric_suite.Scorer(('niqe',), scale)
  names, hrs, lrs = [], [], []
  for path in paths:
    names.append(os.path.splitext(os.path.basename(path))[0])
    hrs.append(imresize.modcrop(io.read_image(path), scale))
    lrs.append(imresize.imresize(hrs[-1], 1 / scale))
    io.write_image(os.path.join(out_dir, 'lr', f'{names[-1]}.png'), lrs[-1])
  srs = [None] * len(paths)
  from jaxsr.methods import singan  # pylint: disable=g-import-not-at-top
  stack = singan.stacks_images(base_config)
  for members in groups([lr.shape for lr in lrs], stack):
    first = names[members[0]]
    workdir = os.path.join(out_dir, 'runs', first if len(members) == 1
                           else f'{first}+{len(members) - 1}')
    lr_paths = [os.path.join(out_dir, 'lr', f'{names[i]}.png')
                for i in members]
    for i, sr in zip(members, _train_and_sr(base_config, lr_paths, scale,
                                            workdir)):
      srs[i] = sr
  rows = {m: [] for m in METHODS}
  grid = []
  for name, hr, lr, sr in zip(names, hrs, lrs, srs):
    outputs = {'singan': sr, 'bicubic': scoring.bicubic(lr, scale)}
    io.write_image(os.path.join(out_dir, 'sr', f'{name}.png'), sr)
    for method, image in outputs.items():
      rows[method].append({
          'name': name,
          'rmse': float(np.sqrt(rmse_lib.mse_y(image, hr, shave=scale))),
          'mse': rmse_lib.mse_y(image, hr, shave=scale),
          'niqe': scorer(image, hr)['niqe']})
    grid.append([_nearest(lr, scale), outputs['bicubic'], sr, hr])
    logging.info('%s: SinGAN NIQE %.3f RMSE %.2f | bicubic NIQE %.3f RMSE '
                 '%.2f', name, rows['singan'][-1]['niqe'],
                 rows['singan'][-1]['rmse'], rows['bicubic'][-1]['niqe'],
                 rows['bicubic'][-1]['rmse'])
  summary = {m: _summary(rows[m]) for m in METHODS}
  summary['protocol'] = {
      'data': data_dir, 'scale': scale, 'config': config_spec,
      'lr': 'MATLAB bicubic downscale of the modcropped HR (uint8)',
      'rmse': f'Y of uint8 rgb2ycbcr (0..255), {scale} px shaved, per image; '
              "'rmse' is the mean over images, 'mse' the mean squared error",
      'niqe': f'MATLAB-exact NIQE on Y, border {scale}'}
  table = report.markdown_table(
      ['method', 'RMSE', 'MSE', 'NIQE'],
      [[m, summary[m]['rmse'], summary[m]['mse'], summary[m]['niqe']]
       for m in METHODS])
  text = (f'{table}\n\n{len(paths)} image(s) of {data_dir}, x{scale}, '
          f'config {config_spec}. {summary["protocol"]["rmse"]}; NIQE: '
          f'{summary["protocol"]["niqe"]}.\n')
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, 'results.md'), 'w') as f:
    f.write(text)
  with open(os.path.join(out_dir, 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  io.write_image(os.path.join(out_dir, 'grid.png'), report.labeled_grid(
      ['LR', 'bicubic', 'SinGAN', 'HR'], grid))
  return summary, text
