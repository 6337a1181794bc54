"""Scores trained models (or plain bicubic) on benchmark folders.

  python -m jaxsr.evaluate --workdir runs/demo --data ../shared/data/benchmarks/Set5 --scale 4
  python -m jaxsr.evaluate --baseline bicubic --data .../Set5 --data .../Set14 --json out.json
  python -m jaxsr.evaluate --workdir runs/a --workdir runs/b --baseline bicubic \
      --data DIV2K_valid_HR:DIV2K_valid_LR_bicubic/X4 --metrics all \
      --niqe_params niqe_pris_params.npz --ma_model model.mat \
      --lpips_lin alex.pth --lpips_backbone alexnet-owt-7be5be79.pth \
      --dists_weights weights.pt --dists_vgg16 vgg16-397923af.pth --out eval
  python -m jaxsr.evaluate --workdir runs/amgan --data .../Set5 --scale 4 \
      --degradation gaussian --kernel_width 0.2,1.3,2.6 --save_lr lr_set5
  python -m jaxsr.evaluate --baseline bicubic --data .../Set5 \
      --degradation gaussian8

A --data folder holds HR images (modcropped to the scale and downscaled with
MATLAB-exact bicubic), or is `HR:LR` for paired folders, used as given. By
default (--pair name) an LR file is named as its HR file, or `{name}x{scale}`
as DIV2K. The benchmark releases that name them differently (Set5's
`img_001_SRF_4_HR.png` vs `babyx4.png`) need --pair sorted: the i-th HR file
by sorted name goes with the i-th LR file (the counts must match, and every
LR must be the HR's size / scale). Each model's column is its workdir's
folder name, with parent folders added when two are alike (`a/run`,
`b/run`), or the --name given for each --workdir. Every image's size is
checked before any model loads. Metrics
(`--metrics`, see jaxsr.evaluation.metric_suite): PSNR/SSIM on Y (BT.601), border =
scale, SR rounded to uint8. By default Y is rounded as MATLAB's rgb2ycbcr on
uint8 and a gray HR is used as-is (compared with the SR's luma): convention A
of metrics-conventions.md, which reproduces the published bicubic numbers
(Set5 28.42 dB). --y=float and --gray=rgb give convention C (BasicSR/RCAN:
Set14 26.09 dB).

Writes to --out: per-image CSVs `{set}_{method}.csv`, `summary.json`,
`results.md` (the papers' layout: methods as columns, sets as row groups,
best value bold, the conventions used underneath) and `{set}_crops.png`
(for each image, its most detailed HR window zoomed: bicubic | each model |
HR).

Blind SR (jaxsr.evaluation.blind): --degradation gaussian --kernel_width W
(or W1,W2,...) or --degradation gaussian8 makes each LR from its HR by
blurring with the isotropic Gaussian of width W (21x21, sum 1) and the
MATLAB bicubic downscale; every model and the bicubic baseline get that LR.
Set values pool all widths (Table 1's average), summary.json keeps each
width's under 'per_width', the CSVs get a kernel_width column, and the
default metrics become PSNR, SSIM, NIQE (+ LPIPS when --lpips_lin is given).
--save_lr DIR writes the LR images used, as DIR[/set][/sigmaW]/{HR name}.png
(a sub-folder per set or width only when there are several).
"""

import csv
import json
import os
from collections.abc import Sequence

from absl import app
from absl import flags
from absl import logging
import numpy as np
from PIL import Image

from jaxsr import cli
from jaxsr.data import datasets
from jaxsr.data import degradations
from jaxsr.data import imresize
from jaxsr.data import io
from jaxsr.evaluation import blind
from jaxsr.evaluation import held_out
from jaxsr.evaluation import metric_suite
from jaxsr.evaluation import receptive_field
from jaxsr.evaluation import report
from jaxsr.evaluation import scoring

FLAGS = flags.FLAGS
PAIRINGS = ('name', 'sorted')


def load_hr(path: str, scale: int, gray: str) -> np.ndarray:
  """A modcropped uint8 HR image; gray stays 2-D when gray == 'asis'."""
  image = io.read_image(path, keep_gray=(gray == 'asis'))
  return imresize.modcrop(image, scale)


def split_folder(spec: str) -> tuple[str, str]:
  """'HR' -> (HR, ''); 'HR:LR' -> (HR, LR)."""
  hr_dir, _, lr_dir = spec.partition(':')
  for d in (hr_dir, lr_dir):
    if d and not os.path.isdir(d):
      raise FileNotFoundError(f'benchmark folder {d} does not exist')
  return hr_dir, lr_dir


def pair_lr(lr_dir: str, hr_paths: Sequence, scale: int, pair: str
            ) -> list[str]:
  """The LR file of each HR file: by name (DIV2K layout) or by sorted order."""
  if pair not in PAIRINGS:
    raise ValueError(f'--pair must be one of {PAIRINGS}, found {pair!r}')
  if pair == 'name':
    try:
      return datasets.paired_lr_paths(lr_dir, hr_paths, scale)
    except FileNotFoundError as e:
      raise FileNotFoundError(
          f'{e}; for releases whose LR names differ from the HR ones, pair '
          'the files by sorted order with --pair sorted') from e
  lr_paths = io.list_images(lr_dir)
  if len(lr_paths) != len(hr_paths):
    raise ValueError(f'--pair sorted needs as many LR as HR images: {lr_dir} '
                     f'holds {len(lr_paths)}, the HR folder {len(hr_paths)}')
  return [str(p) for p in lr_paths]


def _header_size(path) -> tuple[int, int]:
  """(H, W) from an image file's header, without decoding it."""
  try:
    with Image.open(path) as im:
      w, h = im.size
  except (OSError, SyntaxError, ValueError) as e:
    raise ValueError(f'{path}: cannot read the image ({e})') from e
  return h, w


def min_hr_side(names: Sequence[str], scale: int) -> int:
  """The smallest HR side the chosen metrics can score, a multiple of scale:
  a border of `scale` on each side, then SSIM's 11x11 window or NIQE's
  96x96 blocks."""
  inner = 1
  if set(names) & {'psnr', 'ssim', 'psnr_rgb', 'l1_y'}:
    inner = 11  # score_pair computes SSIM whenever any of these is asked.
  if set(names) & {'niqe', 'pi'}:
    inner = 96
  return -(-(2 * scale + inner) // scale) * scale


def check_sizes(spec: str, scale: int, names: Sequence[str],
                pair: str = 'name') -> int:
  """The longest LR side of a folder spec, from the file headers only.

  Raises ValueError naming the first HR image too small for the metrics, or
  LR image of the wrong size.
  """
  hr_dir, lr_dir = split_folder(spec)
  hr_paths = io.list_images(hr_dir)
  lr_paths = pair_lr(lr_dir, hr_paths, scale, pair) if lr_dir else []
  need = min_hr_side(names, scale)
  longest = 0
  for i, path in enumerate(hr_paths):
    h, w = _header_size(path)
    hc, wc = h - h % scale, w - w % scale
    if min(hc, wc) < need:
      raise ValueError(
          f'{path} is {h}x{w}: too small to score at x{scale} (at least '
          f'{need}x{need} after cropping to a multiple of {scale}, for a '
          f'{scale}-pixel border and the metrics window); remove it from '
          f'{hr_dir}')
    if lr_paths:
      lh, lw = _header_size(lr_paths[i])
      if (lh, lw) != (hc // scale, wc // scale):
        raise ValueError(
            f'{lr_paths[i]} is {lh}x{lw}, expected {hc // scale}x'
            f'{wc // scale} for {path} at x{scale}'
            + (' (paired by sorted order)' if pair == 'sorted' else ''))
    longest = max(longest, hc // scale, wc // scale)
  return longest


def images_of(spec: str, scale: int, gray: str, pair: str = 'name'):
  """Yields (name, hr, lr) uint8 for every HR image of a folder spec."""
  hr_dir, lr_dir = split_folder(spec)
  hr_paths = io.list_images(hr_dir)
  if not hr_paths:
    raise ValueError(f'no images in {hr_dir}')
  lr_paths = (pair_lr(lr_dir, hr_paths, scale, pair) if lr_dir
              else [None] * len(hr_paths))
  for path, lr_path in zip(hr_paths, lr_paths):
    hr = load_hr(path, scale, gray)
    if lr_path is None:
      lr = imresize.imresize(hr, 1 / scale)
    else:
      lr = io.read_image(lr_path)
      want = (hr.shape[0] // scale, hr.shape[1] // scale)
      if lr.shape[:2] != want:
        raise ValueError(f'{lr_path} is {lr.shape[0]}x{lr.shape[1]}, '
                         f'expected {want[0]}x{want[1]} for {path} at x{scale}')
    yield os.path.splitext(os.path.basename(path))[0], hr, lr


def column_names(workdirs: Sequence[str], names: Sequence[str] = (),
                 baseline: str | None = None) -> list[str]:
  """One unique table column per workdir: its folder name, with as many
  parent folders as tell it apart from the others ('a/run', 'b/run'), or
  the given names (one per workdir)."""
  reserved = {baseline} if baseline else set()
  if names:
    if len(names) != len(workdirs):
      raise ValueError(f'give one --name per --workdir: {len(names)} names '
                       f'for {len(workdirs)} workdirs')
    chosen = list(names)
  else:
    paths = [os.path.abspath(w) for w in workdirs]
    for i, p in enumerate(paths):
      if p in paths[:i]:
        raise ValueError(f'--workdir {workdirs[i]} is given twice')
    parts = [p.strip(os.sep).split(os.sep) for p in paths]
    depth = [1] * len(parts)
    while True:
      chosen = ['/'.join(q[-d:]) for q, d in zip(parts, depth)]
      clash = [i for i, c in enumerate(chosen)
               if chosen.count(c) > 1 or c in reserved]
      if not clash or all(depth[i] >= len(parts[i]) for i in clash):
        break
      for i in clash:
        depth[i] = min(depth[i] + 1, len(parts[i]))
  for i, c in enumerate(chosen):
    if not c or chosen.count(c) > 1 or c in reserved:
      raise ValueError(f'column name {c!r} of --workdir {workdirs[i]} is '
                       'empty, repeated or a baseline\'s: give each workdir '
                       'a distinct --name')
  return chosen


def _file_safe(name: str) -> str:
  """A column name as part of a file name ('a/run' -> 'a_run')."""
  return name.replace('/', '_').replace(os.sep, '_')


def score_folder(name_to_sr, spec: str, scale: int, scorer, gray: str,
                 crop: int = 64, grid_rows: int = 16, pair: str = 'name',
                 images=None):
  """({method: per-image rows}, crop-grid rows) for one folder spec.

  Each grid row is the most detailed crop x crop window of an image's HR:
  bicubic | each model | HR. `images` ((name, hr, lr) tuples) replaces the
  folder's own.
  """
  def crops(name, hr, srs, lr, scores):
    del name, scores
    box = report.detail_box(hr, crop)
    bic = srs.get('bicubic')
    bic = scoring.bicubic(lr, scale) if bic is None else bic
    return [[report.crop_box(x, box) for x in (
        bic, *(srs[m] for m in name_to_sr if m != 'bicubic'), hr)]]

  if images is None:
    images = images_of(spec, scale, gray, pair)
  return held_out.score_images(images, name_to_sr, scorer, crops, grid_rows)


def paper_table(summary: dict, methods: list[str], names=None) -> str:
  """Markdown: methods as columns, sets as row groups, the best value bold."""
  rows = []
  for set_name, by_method in summary.items():
    present = set(by_method[methods[0]])
    keys = [k for k in metric_suite.METRICS
            if k in present and k != 'psnr_rgb'
            and (names is None or k in names or k == 'psnr_std')]
    for key in keys:
      label, better = metric_suite.METRICS[key]
      values = [by_method[m][key] for m in methods]
      best = better(values)
      cells = [f'**{v:.4f}**' if len(values) > 1 and v == best else f'{v:.4f}'
               for v in values]
      rows.append([f'{set_name} {label}'] + cells)
  return report.markdown_table(['set'] + methods, rows)


def conventions(scale: int, rounded_y: bool, gray: str) -> str:
  """One line saying how Y, borders and gray images were handled."""
  y = ('Y = round(BT.601 of uint8 RGB) as MATLAB rgb2ycbcr' if rounded_y
       else 'Y = float BT.601 (BasicSR)')
  g = ('a gray HR is compared as-is with the SR luma' if gray == 'asis'
       else 'a gray HR is replicated to RGB first')
  return (f'{y}; border {scale} px cropped (NIQE/Ma/PI: Y, border {scale}; '
          f'LPIPS/DISTS: whole RGB image); {g}; SR rounded to uint8.')


def _saving(images, folder: str):
  """Passes (name, hr, lr) tuples on, writing each LR to folder/name.png."""
  for name, hr, lr in images:
    io.write_image(os.path.join(folder, f'{name}.png'), lr)
    yield name, hr, lr


def _write_grid(grid, crop: int, sr_fns, out_dir: str, filename: str) -> None:
  """Saves the zoomed-crop grid (bicubic | each model | HR), if any."""
  if grid and crop > 0:
    header = ['bicubic', *(m for m in sr_fns if m != 'bicubic'), 'HR']
    Image.fromarray(report.labeled_grid(header, grid)).save(
        os.path.join(out_dir, filename))


def _score_blind(sr_fns, models, spec, widths, scale, scorer, gray, crop,
                 grid_rows, out_dir, save_lr, several_sets):
  """(set summary, per-image rows with a kernel_width column) of a HR folder
  degraded at each width (jaxsr.evaluation.blind)."""
  hr_dir = split_folder(spec)[0]
  set_name = os.path.basename(os.path.normpath(hr_dir))
  hr_paths = io.list_images(hr_dir)
  code_models = {m: x for m, x in models.items() if blind.has_code(x)}
  per_width, all_rows = {}, {m: [] for m in sr_fns}
  for w in widths:
    errors = {}
    images = blind.degraded_images(
        hr_paths, lambda p: load_hr(p, scale, gray), w, scale,
        blind.lr_folder(save_lr, set_name, w, several_sets, len(widths) > 1),
        code_models, errors)
    rows, grid = score_folder(sr_fns, spec, scale, scorer, gray, crop,
                              grid_rows, images=images)
    blind.add_kernel_errors(rows, errors)
    per_width[w] = rows
    for m, method_rows in rows.items():
      all_rows[m] += [{'name': r['name'], 'kernel_width': w, **r}
                      for r in method_rows]
    _write_grid(grid, crop, sr_fns, out_dir,
                f'{set_name}_{blind.label(w)}_crops.png')
  return blind.summarize(per_width, scorer.names), all_rows


def run(workdirs, baseline, folders, scale, out_dir, tile=128, overlap=32,
        rounded_y=True, gray='asis', metrics='default',
        files=metric_suite.MetricFiles(), crop=64, grid_rows=16, names=(),
        pair='name', lr_eps=2e-3, degradation=None, kernel_widths=(),
        save_lr=None):
  """Evaluates, writes CSV/JSON/Markdown/PNG; returns (summary, table).

  Flags, folders, every image's size, the column names and the metric files
  are checked before any model is loaded. `degradation` ('gaussian' with
  `kernel_widths`, or 'gaussian8') scores blind SR (module docstring);
  `save_lr` is a folder for the LR images used.
  """
  from jaxsr import restore  # pylint: disable=g-import-not-at-top
  widths = blind.widths(degradation, scale, kernel_widths)
  if widths:
    paired = [spec for spec in folders if split_folder(spec)[1]]
    if paired:
      raise ValueError(f'--degradation makes the LR from the HR: give HR '
                       f'folders only, found {paired[0]}')
    if metrics == 'default':
      metrics = blind.default_metrics(files)
  metric_names = metric_suite.parse(metrics)
  receptive_field.check_tiling(tile, overlap)
  columns = column_names(workdirs, names, baseline)
  longest = max(check_sizes(spec, scale, metric_names, pair)
                for spec in folders) if folders else 0
  geos = []
  for w in workdirs:
    config = restore.load_config(w)
    if int(config.scale) != scale:
      raise ValueError(f'{w} was trained for x{config.scale}, not x{scale}')
    geos.append(receptive_field.geometry(config))
    receptive_field.check_tiling(tile, overlap, geos[-1])
  scorer = metric_suite.Scorer(metric_names, scale, rounded_y, files, lr_eps)
  sr_fns = {}
  models = {}
  if baseline == 'bicubic':
    sr_fns['bicubic'] = lambda lr: scoring.bicubic(lr, scale)
  for w, name, geo in zip(workdirs, columns, geos):
    model = restore.load_model(w)
    models[name] = model
    model_tile = tile if model.tileable else 0
    warning = receptive_field.overlap_warning(model_tile, overlap, geo)
    if warning and longest > model_tile + 2 * overlap:
      logging.warning('%s: %s', name, warning)
    sr_fns[name] = (lambda m, t: lambda lr: scoring.model_sr(
        m.predict, lr, scale, t, overlap))(model, model_tile)
  if not sr_fns:
    raise ValueError('nothing to evaluate: give --workdir and/or --baseline')
  os.makedirs(out_dir, exist_ok=True)
  summary = {}
  for spec in folders:
    set_name = os.path.basename(os.path.normpath(split_folder(spec)[0]))
    if widths:
      summary[set_name], rows = _score_blind(
          sr_fns, models, spec, widths, scale, scorer, gray, crop, grid_rows,
          out_dir, save_lr, len(folders) > 1)
    else:
      images = images_of(spec, scale, gray, pair)
      lr_dir = blind.lr_folder(save_lr, set_name, None, len(folders) > 1,
                               False)
      if lr_dir:
        images = _saving(images, lr_dir)
      rows, grid = score_folder(sr_fns, spec, scale, scorer, gray, crop,
                                grid_rows, pair, images)
      summary[set_name] = {
          m: metric_suite.summarize(r, metric_names) for m, r in rows.items()}
      _write_grid(grid, crop, sr_fns, out_dir, f'{set_name}_crops.png')
    for method, method_rows in rows.items():
      path = os.path.join(out_dir, f'{set_name}_{_file_safe(method)}.csv')
      with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=list(method_rows[0]))
        writer.writeheader()
        writer.writerows(method_rows)
  table = paper_table(summary, list(sr_fns), metric_names)
  note = conventions(scale, rounded_y, gray)
  if widths:
    per_width = paper_table(blind.per_width_sets(summary), list(sr_fns),
                            metric_names)
    table = (f'Averaged over kernel widths {", ".join(map(str, widths))}:\n'
             f'{table}\n\nPer kernel width:\n{per_width}')
    errors = blind.kernel_error_table(summary)
    table += f'\n\n{errors}' if errors else ''
    note = f'{blind.protocol_note(degradation, widths, scale)}\n{note}'
  with open(os.path.join(out_dir, 'results.md'), 'w') as f:
    f.write(f'{table}\n\n{note}\n')
  with open(os.path.join(out_dir, 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  logging.info('%s\n%s', note, table)
  return summary, table


def _define_flags():
  """Command-line flags; defined only when run as a program."""
  flags.DEFINE_multi_string('workdir', [], 'Trained workdir(s).')
  flags.DEFINE_multi_string('name', [], 'Table column of each --workdir, in '
                            'order (default: its folder name, made unique).')
  flags.DEFINE_enum('pair', 'name', PAIRINGS, 'HR:LR folders: pair files by '
                    'name (LR as HR, or {name}x{scale}) or by sorted order.')
  flags.DEFINE_enum('baseline', None, ['bicubic'],
                    'Also (or only) score plain bicubic upscaling.')
  flags.DEFINE_multi_string('data', [], 'HR benchmark folder(s), or HR:LR.')
  flags.DEFINE_integer('scale', 4, 'Upscaling factor.')
  flags.DEFINE_string('out', 'eval_results', 'Folder for CSV/JSON/MD/PNG.')
  flags.DEFINE_string('json', None, 'Also write the summary to this file.')
  flags.DEFINE_integer('tile', 128, 'LR tile size (0: whole image).')
  flags.DEFINE_integer('overlap', 32, 'LR context around each tile.')
  flags.DEFINE_enum('y', 'rounded', ['rounded', 'float'],
                    'Y of uint8 RGB: MATLAB-rounded or float.')
  flags.DEFINE_enum('gray', 'asis', ['asis', 'rgb'],
                    'Gray HR: compare as-is, or replicate to RGB first.')
  flags.DEFINE_string('metrics', 'default',
                      'Comma-separated metrics or sets: ' + ', '.join(
                          [*metric_suite.METRIC_SETS,
                           *(k for k in metric_suite.METRICS
                             if k != 'psnr_std')]))
  flags.DEFINE_float('lr_eps', 2e-3, "Metric 'success': lr_l2 <= lr_eps "
                     "(PULSE's -eps).")
  flags.DEFINE_enum('degradation', None, list(degradations.PROTOCOLS),
                    'Blind SR: make each LR from its HR by this blur '
                    'protocol (gaussian needs --kernel_width; gaussian8 is '
                    "IKC's 8 widths); default metrics become psnr,ssim,niqe"
                    ' (+lpips with --lpips_lin).')
  flags.DEFINE_string('kernel_width', None, 'Gaussian kernel width(s) for '
                      '--degradation gaussian: 1.3, or 0.2,1.3,2.6 to '
                      'average several (Table 1 of the AMGAN supplement).')
  flags.DEFINE_string('save_lr', None, 'Write the LR images used here as PNG '
                      '(named after the HR files; a sub-folder per set or '
                      'kernel width when there are several).')
  flags.DEFINE_integer('crop', 64, 'HR size of the zoomed crops (0: none).')
  flags.DEFINE_integer('grid_rows', 16, 'Images per crop grid.')
  for field in metric_suite.MetricFiles.__dataclass_fields__.values():
    flags.DEFINE_string(field.name, field.default,
                        f'Metric model file / option ({field.name}).')


def main(argv):
  del argv
  if not FLAGS.data:
    raise app.UsageError('give at least one --data folder')
  files = metric_suite.MetricFiles(**{
      k: getattr(FLAGS, k)
      for k in metric_suite.MetricFiles.__dataclass_fields__})
  summary, table = run(FLAGS.workdir, FLAGS.baseline, FLAGS.data,
                       FLAGS.scale, FLAGS.out, FLAGS.tile, FLAGS.overlap,
                       FLAGS.y == 'rounded', FLAGS.gray, FLAGS.metrics, files,
                       FLAGS.crop, FLAGS.grid_rows, FLAGS.name, FLAGS.pair,
                       FLAGS.lr_eps, FLAGS.degradation, FLAGS.kernel_width,
                       FLAGS.save_lr)
  print(table)  # The table is this command's output.
  if FLAGS.json:
    with open(FLAGS.json, 'w') as f:
      json.dump(summary, f, indent=2)


if __name__ == '__main__':
  _define_flags()
  cli.run(main)
