"""Per-conv profile: each 3x3 conv shape of the paper nets, three ways.

  python benchmarks/convs.py                 # batch 4, all shapes
  python benchmarks/convs.py --quick         # three shapes, fewer repeats
  python benchmarks/convs.py --ynn both      # XLA with and without YNNPACK

For every 3x3 stride-1 'SAME' conv shape of RRDBNet (LR 32x32, x4), the LSR
encoder L (VGG16 trunk on 128x128 HR) and the VGG-style D, prints median
milliseconds of the forward pass, the input gradient and the kernel gradient
(each jitted on its own) for

  * xla:  lax.conv_general_dilated, under this process's XLA:CPU flags
          (`import jaxsr` turns YNNPACK fusions off, jaxsr/xla_flags.py);
  * ynn:  the same conv with YNNPACK's conv fusions on (jaxlib's default),
          timed in a subprocess started with that flag (--ynn both);
  * wino: Winograd F(4x4, 3x3) (jaxsr.models.winograd), gradients by autodiff;
  * torch: F.conv2d in NCHW and its autograd (all cores), when installed.

and the GFLOP/s of the whole fwd + both gradients (3x the forward FLOPs).
The 'count' column is how often the shape occurs in one RRDBNet + L step,
so count x ms says where a step's time goes. Reads like RESULTS.md's
"Where the time goes".
"""

import argparse
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from jaxsr import xla_flags
from jaxsr.models import winograd

import train_step  # benchmarks/train_step.py, beside this script.

try:
  import torch
except ImportError:
  torch = None

# (name, H, W, cin, cout, count per RRDBNet + L step at batch 4, LR 32).
SHAPES = (
    ('rdb conv1 (LR)', 32, 32, 64, 32, 69),
    ('rdb conv2', 32, 32, 96, 32, 69),
    ('rdb conv3', 32, 32, 128, 32, 69),
    ('rdb conv4', 32, 32, 160, 32, 69),
    ('rdb conv5', 32, 32, 192, 64, 69),
    ('conv_up1 (64x64)', 64, 64, 64, 64, 1),
    ('conv_up2/hr, L conv1_2', 128, 128, 64, 64, 3),
    ('conv_last', 128, 128, 64, 3, 1),
    ('L conv2_2', 64, 64, 128, 128, 1),
    ('L conv3_x', 32, 32, 256, 256, 2),
    ('L conv4_x', 16, 16, 512, 512, 2),
)
QUICK = ('rdb conv5', 'conv_up2/hr, L conv1_2', 'L conv3_x')
YNN_ON = '--xla_cpu_experimental_ynn_fusion_type=+individual_convolution'


def _xla(x, k):
  return jax.lax.conv_general_dilated(
      x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=('NHWC', 'HWIO',
                                                         'NHWC'))


def _median_ms(fn, repeats: int) -> float:
  """Median milliseconds of fn() after one warm-up call."""
  return 1e3 * train_step.median_s(fn, repeats)


def time_jax(conv, x, k, gy, repeats: int) -> dict:
  """fwd / dx / dk milliseconds of conv(x, k), each compiled alone."""
  fwd = jax.jit(conv)
  dx = jax.jit(lambda x, k, g: jax.vjp(lambda x: conv(x, k), x)[1](g)[0])
  dk = jax.jit(lambda x, k, g: jax.vjp(lambda k: conv(x, k), k)[1](g)[0])
  return {
      'fwd': _median_ms(lambda: fwd(x, k).block_until_ready(), repeats),
      'dx': _median_ms(lambda: dx(x, k, gy).block_until_ready(), repeats),
      'dk': _median_ms(lambda: dk(x, k, gy).block_until_ready(), repeats),
  }


def time_torch(x, k, gy, repeats: int) -> dict:
  """fwd / dx / dk milliseconds of torch's conv2d (NCHW) and its grads."""
  tx = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())
  tk = torch.from_numpy(np.asarray(k).transpose(3, 2, 0, 1).copy())
  tg = torch.from_numpy(np.asarray(gy).transpose(0, 3, 1, 2).copy())
  f = torch.nn.functional
  grad = torch.nn.grad

  def fwd():
    with torch.no_grad():
      f.conv2d(tx, tk, padding=1)

  return {
      'fwd': _median_ms(fwd, repeats),
      'dx': _median_ms(lambda: grad.conv2d_input(tx.shape, tk, tg, padding=1),
                       repeats),
      'dk': _median_ms(lambda: grad.conv2d_weight(tx, tk.shape, tg, padding=1),
                       repeats),
  }


def measure(names, batch: int, repeats: int, columns) -> dict:
  """{shape name: {column: {'fwd', 'dx', 'dk'} ms}} in this process."""
  rng = np.random.default_rng(0)
  rows = {}
  for name, h, w, ci, co, _ in SHAPES:
    if name not in names:
      continue
    x = jnp.asarray(rng.random((batch, h, w, ci), np.float32))
    k = jnp.asarray(rng.standard_normal((3, 3, ci, co), np.float32) * 0.05)
    gy = jnp.asarray(rng.standard_normal((batch, h, w, co), np.float32))
    row = {}
    if 'xla' in columns:
      row['xla'] = time_jax(_xla, x, k, gy, repeats)
    if 'wino' in columns:
      row['wino'] = time_jax(winograd.conv3x3, x, k, gy, repeats)
    if 'torch' in columns and torch is not None:
      row['torch'] = time_torch(x, k, gy, repeats)
    rows[name] = row
  return rows


def _ynn_rows(names, batch, repeats) -> dict:
  """measure(..., ['xla']) in a subprocess with YNNPACK conv fusions on."""
  env = dict(os.environ)
  env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') + ' ' + YNN_ON).strip()
  out = subprocess.run(
      [sys.executable, __file__, '--_child', json.dumps(
          {'names': list(names), 'batch': batch, 'repeats': repeats})],
      env=env, check=True, capture_output=True, text=True)
  rows = json.loads(out.stdout.strip().splitlines()[-1])
  return {name: {'ynn': row['xla']} for name, row in rows.items()}


def print_table(rows: dict, batch: int, columns) -> None:
  """Markdown: per shape and column fwd / dx / dk ms and fwd+bwd GFLOP/s."""
  head = ' | '.join(f'{c} fwd / dx / dk ms (GF/s)' for c in columns)
  print(f'| conv (batch {batch}) | count | {head} |')
  print('|---|---|' + '---|' * len(columns))
  for name, h, w, ci, co, count in SHAPES:
    if name not in rows:
      continue
    flop = 2.0 * batch * h * w * 9 * ci * co
    cells = []
    for c in columns:
      t = rows[name].get(c)
      if t is None:
        cells.append('n/a')
        continue
      total = t['fwd'] + t['dx'] + t['dk']
      cells.append(f'{t["fwd"]:.1f} / {t["dx"]:.1f} / {t["dk"]:.1f} '
                   f'({3 * flop / total / 1e6:.0f})')
    print(f'| {name} {h}x{w} {ci}->{co} | {count} | {" | ".join(cells)} |')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--quick', action='store_true')
  parser.add_argument('--batch', type=int, default=4)
  parser.add_argument('--repeats', type=int, default=7)
  parser.add_argument('--ynn', choices=('off', 'both'), default='off',
                      help="'both' adds the YNNPACK column (a subprocess)")
  parser.add_argument('--json', default=None)
  parser.add_argument('--_child', default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args._child:  # pylint: disable=protected-access
    spec = json.loads(args._child)  # pylint: disable=protected-access
    print(json.dumps(measure(spec['names'], spec['batch'], spec['repeats'],
                             ['xla'])))
    return
  names = QUICK if args.quick else [s[0] for s in SHAPES]
  repeats = 3 if args.quick else args.repeats
  if torch is not None:
    torch.set_num_threads(os.cpu_count())
  columns = ['xla', 'wino', 'torch']
  rows = measure(names, args.batch, repeats, columns)
  if args.ynn == 'both':
    for name, row in _ynn_rows(names, args.batch, repeats).items():
      rows[name].update(row)
    columns = ['ynn', *columns]
  print(f'{jax.devices()[0].device_kind}, jax {jax.__version__}; this '
        f'process: YNNPACK convs {"on" if xla_flags.cpu_convs_use_ynn() else "off"}'
        f'; torch {torch.__version__ if torch else "absent"}\n')
  print_table(rows, args.batch, columns)
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(rows, f, indent=2)


if __name__ == '__main__':
  main()
