"""Scores trained models (or plain bicubic) on benchmark folders.

  python -m jaxsr.evaluate --workdir runs/demo --data ../shared/data/benchmarks/Set5 --scale 4
  python -m jaxsr.evaluate --baseline bicubic --data .../Set5 --data .../Set14 --json out.json

HR images are modcropped to the scale and downscaled with MATLAB-exact bicubic.
Metrics: PSNR/SSIM on Y (BT.601), border = scale, SR rounded to uint8. By
default Y is rounded as MATLAB's rgb2ycbcr on uint8 and a gray HR is used as-is
(compared with the SR's luma): convention A of metrics-conventions.md, which
reproduces the published bicubic numbers (Set5 28.42 dB). --y=float and
--gray=rgb give convention C (BasicSR/RCAN: Set14 26.09 dB).
"""

import csv
import json
import os

from absl import app
from absl import flags
from absl import logging
import numpy as np

from jaxsr import report
from jaxsr import scoring
from jaxsr.data import imresize
from jaxsr.data import io

FLAGS = flags.FLAGS


def load_hr(path: str, scale: int, gray: str) -> np.ndarray:
  """A modcropped uint8 HR image; gray stays 2-D when gray == 'asis'."""
  image = io.read_image(path, keep_gray=(gray == 'asis'))
  return imresize.modcrop(image, scale)


def score_folder(name_to_sr, folder: str, scale: int, rounded_y: bool,
                 gray: str) -> dict[str, list[dict]]:
  """{method: per-image rows} for every HR image of `folder`."""
  rows = {m: [] for m in name_to_sr}
  for path in io.list_images(folder):
    hr = load_hr(path, scale, gray)
    lr = imresize.imresize(hr, 1 / scale)
    name = os.path.splitext(os.path.basename(path))[0]
    for method, sr_fn in name_to_sr.items():
      sr = sr_fn(lr)
      rows[method].append({'name': name, **scoring.score_pair(
          sr, hr, scale, rounded_y)})
  return rows


# Rows of the paper-style table (paper 000 Tables 1-2): name, key, better.
TABLE_ROWS = (('PSNR', 'psnr', max), ('SSIM', 'ssim', max),
              ('PSD', 'psnr_std', min), ('L1 (Y)', 'l1_y', min))


def paper_table(summary: dict, methods: list[str]) -> str:
  """Markdown: methods as columns, sets as row groups, the best value bold."""
  rows = []
  for set_name, by_method in summary.items():
    for label, key, better in TABLE_ROWS:
      values = [by_method[m][key] for m in methods]
      best = better(values)
      cells = [f'**{v:.4f}**' if len(values) > 1 and v == best else f'{v:.4f}'
               for v in values]
      rows.append([f'{set_name} {label}'] + cells)
  return report.markdown_table(['set'] + methods, rows)


def run(workdirs, baseline, folders, scale, out_dir, tile=128, overlap=32,
        rounded_y=True, gray='asis') -> dict:
  """Evaluates and writes CSV/Markdown; returns ({set: {method: means}}, table)."""
  from jaxsr import restore  # pylint: disable=g-import-not-at-top
  sr_fns = {}
  if baseline == 'bicubic':
    sr_fns['bicubic'] = lambda lr: scoring.bicubic(lr, scale)
  for w in workdirs:
    model = restore.load_model(w)
    if model.scale != scale:
      raise ValueError(f'{w} was trained for x{model.scale}, not x{scale}')
    name = os.path.basename(os.path.normpath(w))
    sr_fns[name] = (lambda m: lambda lr: scoring.model_sr(
        m.predict, lr, scale, tile, overlap))(model)
  if not sr_fns:
    raise ValueError('nothing to evaluate: give --workdir and/or --baseline')
  os.makedirs(out_dir, exist_ok=True)
  summary = {}
  for folder in folders:
    set_name = os.path.basename(os.path.normpath(folder))
    rows = score_folder(sr_fns, folder, scale, rounded_y, gray)
    summary[set_name] = {}
    for method, method_rows in rows.items():
      summary[set_name][method] = scoring.summarize(method_rows)
      with open(os.path.join(out_dir, f'{set_name}_{method}.csv'), 'w',
                newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(method_rows[0]))
        writer.writeheader()
        writer.writerows(method_rows)
  table = paper_table(summary, list(sr_fns))
  with open(os.path.join(out_dir, 'results.md'), 'w') as f:
    f.write(table + '\n')
  logging.info('Y channel (%s), border %d, gray %s:\n%s',
               'rounded' if rounded_y else 'float', scale, gray, table)
  return summary, table


def _define_flags():
  """Command-line flags; defined only when run as a program."""
  flags.DEFINE_multi_string('workdir', [], 'Trained workdir(s).')
  flags.DEFINE_enum('baseline', None, ['bicubic'],
                    'Also (or only) score plain bicubic upscaling.')
  flags.DEFINE_multi_string('data', [], 'HR benchmark folder(s).')
  flags.DEFINE_integer('scale', 4, 'Upscaling factor.')
  flags.DEFINE_string('out', 'eval_results', 'Folder for CSV/Markdown.')
  flags.DEFINE_string('json', None, 'Write the summary to this file.')
  flags.DEFINE_integer('tile', 128, 'LR tile size (0: whole image).')
  flags.DEFINE_integer('overlap', 32, 'LR context around each tile.')
  flags.DEFINE_enum('y', 'rounded', ['rounded', 'float'],
                    'Y of uint8 RGB: MATLAB-rounded or float.')
  flags.DEFINE_enum('gray', 'asis', ['asis', 'rgb'],
                    'Gray HR: compare as-is, or replicate to RGB first.')


def main(argv):
  del argv
  if not FLAGS.data:
    raise app.UsageError('give at least one --data folder')
  summary, table = run(FLAGS.workdir, FLAGS.baseline, FLAGS.data,
                       FLAGS.scale, FLAGS.out, FLAGS.tile, FLAGS.overlap,
                       FLAGS.y == 'rounded', FLAGS.gray)
  print(table)  # The table is this command's output.
  if FLAGS.json:
    with open(FLAGS.json, 'w') as f:
      json.dump(summary, f, indent=2)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
