"""Times one training step of each method config and prints a Markdown table.

  python benchmarks/train_step.py            # paper-size networks
  python benchmarks/train_step.py --quick    # demo-size networks, a few minutes

For each configuration: compile time, median step time over --repeats steps
after one warm-up, the step's FLOPs from XLA's cost analysis and the achieved
GFLOP/s. The PyTorch comparison (issue 6) will add a torch column.
"""

import argparse
import importlib.util
import json
import pathlib
import statistics
import time

import jax
import numpy as np

from jaxsr import methods
from jaxsr import train

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_config(name: str, arg: str | None):
  spec = importlib.util.spec_from_file_location(
      name, REPO / 'experiments' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg)
  config.unlock()
  if 'perceptual' in config:
    config.perceptual.weights = 'random'  # Speed does not need weights.
    config.psnr_warmup_steps = 0
  return config


def time_step(config, batch_size: int, repeats: int) -> dict:
  """Compile time, median step seconds and FLOPs of one method config."""
  method = methods.build(config)
  state = method.init(train.init_key(0))
  constants = method.constants()
  rng = np.random.default_rng(0)
  p, s = config.data.hr_patch, config.scale
  batch = {'lr': rng.random((batch_size, p // s, p // s, 3), np.float32),
           'hr': rng.random((batch_size, p, p, 3), np.float32)}
  key = jax.random.key(0)
  t0 = time.perf_counter()
  compiled = jax.jit(method.train_step, donate_argnums=0).lower(
      state, batch, key, constants).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  flops = float(cost.get('flops', float('nan'))) if cost else float('nan')
  state, metrics = compiled(state, batch, key, constants)  # Warm-up.
  jax.block_until_ready(metrics)
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    state, metrics = compiled(state, batch, key, constants)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
  step_s = statistics.median(times)
  return {'compile_s': compile_s, 'step_s': step_s, 'gflop': flops / 1e9,
          'gflops_per_s': flops / 1e9 / step_s}


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--quick', action='store_true')
  parser.add_argument('--batch', type=int, default=4)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--json', default=None)
  args = parser.parse_args()
  variant = 'demo' if args.quick else None
  rows = {}
  for name in ('rrdb_psnr', 'esrgan', 'lsrgan', 'clsrgan'):
    rows[name] = time_step(load_config(name, variant), args.batch,
                           args.repeats)
  print(f'{jax.devices()[0].device_kind}, batch {args.batch}, '
        f'{"demo" if args.quick else "paper"} sizes\n')
  print('| config | compile s | step s | GFLOP/step | GFLOP/s |')
  print('|---|---|---|---|---|')
  for name, r in rows.items():
    print(f'| {name} | {r["compile_s"]:.1f} | {r["step_s"]:.3f} | '
          f'{r["gflop"]:.1f} | {r["gflops_per_s"]:.1f} |')
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == '__main__':
  main()
