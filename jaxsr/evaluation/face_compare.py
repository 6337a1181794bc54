"""The offline face demo's comparison: bicubic, PULSE, the paper's method with and without L_s, per scale and face set.

Each (method, scale, set) is an ordinary run of experiments/face_explore.py
(`jaxsr.train.train_and_evaluate`) in <out>/<set>_x<scale>_<method>, so a
killed comparison resumes where it stopped and every run's faces, curves and
results.json stay for inspection; <out>/summary.json and <out>/results.md
gather the summaries (bicubic is the same in every run of a (set, scale) and
is taken from the first).
"""

import json
import os
import pathlib
from collections.abc import Sequence

from jaxsr import config_lib
from jaxsr.models import dcgan

# The repository's experiment file (found from the package, not the cwd).
CONFIG_FILE = str(pathlib.Path(__file__).resolve().parents[2] / 'experiments'
                  / 'face_explore.py')
# Column name -> experiments/face_explore.py variant added to the base one.
METHODS = {'pulse': 'pulse', 'ours_no_ls': 'no_semantic', 'ours': ''}
SETS = {'prior': 'demo', 'lfw': 'demo_lfw'}
KEYS = (('psnr', 'PSNR', '.2f'), ('ssim', 'SSIM', '.4f'),
        ('niqe', 'NIQE (mosaic)', '.3f'), ('lr_l2', 'LR L2', '.5f'),
        ('success_rate', 'success', '.0%'))


def configs(config_file: str, weights: str, scales: Sequence[int],
            sets: Sequence[str], faces: int, extra: str = ''):
  """[(run name, config)] of the comparison from config_file
  (experiments/face_explore.py) with `extra` variants added to each."""
  if not sets or not scales:
    raise ValueError(f'nothing to compare: sets {list(sets)}, scales '
                     f'{list(scales)}')
  for face_set in sets:
    if face_set not in SETS:
      raise ValueError(f'face set {face_set!r}: expected one of {list(SETS)}')
  for scale in scales:  # The demo sets' prior is the 32 px DCGAN.
    if scale < 1 or dcgan.RESOLUTION % scale:
      raise ValueError(f'scale {scale}: expected a divisor of the DCGAN '
                       f"prior's size, {dcgan.RESOLUTION} px")
  out = []
  for face_set in sets:
    for scale in scales:
      for column, variant in METHODS.items():
        arg = ','.join(t for t in (SETS[face_set], variant, extra) if t)
        config = config_lib.load_file(f'{config_file}:{arg}')
        config.prior.weights = weights
        config.scale = scale
        config.data.num_faces = faces
        if faces:  # A batch never pads beyond the faces there are.
          config.data.batch_size = min(config.data.batch_size, faces)
        out.append((f'{face_set}_x{scale}_{column}', config))
  return out


def gather(out_dir: str, names: Sequence[str]) -> dict:
  """{set_xscale: {method: summary}} with bicubic's columns as 'bicubic'."""
  table = {}
  for name in names:
    face_set, scale, column = name.split('_', 2)
    with open(os.path.join(out_dir, name, 'results.json')) as f:
      summary = json.load(f)['summary']
    row = table.setdefault(f'{face_set}_{scale}', {})
    row[column] = {k: summary.get(k) for k, _, _ in KEYS}
    if 'bicubic' not in row and 'bicubic_psnr' in summary:
      row['bicubic'] = {k: summary.get(f'bicubic_{k}') for k, _, _ in KEYS[:3]}
  return table


def markdown(table: dict) -> str:
  """One block per (set, scale): metrics as rows, methods as columns."""
  columns = ['bicubic', *METHODS]
  lines = []
  for group, row in table.items():
    lines += [f'### {group}', '', '| | ' + ' | '.join(columns) + ' |',
              '|---' * (len(columns) + 1) + '|']
    for key, label, spec in KEYS:
      cells = []
      for c in columns:
        v = row.get(c, {}).get(key)
        cells.append('-' if v is None else format(v, spec))
      lines.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    lines.append('')
  return '\n'.join(lines)


def run(weights: str, out_dir: str, scales=(8, 4), sets=('prior', 'lfw'),
        faces: int = 16, extra: str = '',
        config_file: str = CONFIG_FILE) -> str:
  """Runs (or resumes) every run of the comparison; returns the Markdown."""
  # pylint: disable=g-import-not-at-top
  from jaxsr import config_check
  runs = configs(config_file, weights, scales, sets, faces, extra)
  for _, config in runs:  # Every config is checked before any run starts.
    config.lock()
    config_check.validate(config)
  from jaxsr import train  # After the checks: it imports TensorFlow (~10 s).
  for name, config in runs:
    train.train_and_evaluate(config, os.path.join(out_dir, name))
  table = gather(out_dir, [n for n, _ in runs])
  text = markdown(table)
  with open(os.path.join(out_dir, 'summary.json'), 'w') as f:
    json.dump(table, f, indent=1)
  with open(os.path.join(out_dir, 'results.md'), 'w') as f:
    f.write(text)
  return text
