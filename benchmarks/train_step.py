"""Times one training step per method config, jaxsr next to its PyTorch twin.

  python benchmarks/train_step.py                  # paper-size networks
  python benchmarks/train_step.py --quick --check  # demo sizes, twin checked
  python benchmarks/train_step.py --only rrdb_psnr --repeats 5 --json out.json
  python benchmarks/train_step.py --only rrdb_psnr --set model.dense=fused

Prints a header line with the measured f32 matmul peak (n x n, both
frameworks) and a Markdown table: per configuration the JAX compile time,
the median JAX and PyTorch step times (interleaved A/B runs after warm-up:
one JAX step, one torch step, alternating which goes first), their ratio
JAX/torch (> 1: JAX slower), the step's FLOPs from XLA's cost analysis and
the GFLOP/s and fraction of the matmul peak each framework reaches. The
torch twin (benchmarks/torch_twin, `pip install -e ".[bench]"`) starts from
the JAX state's parameters; `--check` first asserts that every network's
forward output and the first step's losses agree (max abs diff printed).
Without torch, or for a config the twin does not cover, the torch columns
read n/a. `--device gpu` runs both on the first GPU (jax gpu + torch cuda).
"""

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from jaxsr import methods
from jaxsr.methods import base

import configs  # benchmarks/configs.py, beside this script.
import report  # benchmarks/report.py.

try:
  import torch
  from torch_twin import check as twin_check
  from torch_twin import steps as twin_steps
except ImportError as e:  # PyTorch is the optional `bench` extra.
  torch = None
  _TORCH_MISSING = f'PyTorch not importable ({e})'

# RRDBNet PSNR step; ESRGAN / LSRGAN / CLSRGAN D+G(+L) steps; SAN-SR step.
CONFIGS = ('rrdb_psnr', 'esrgan', 'lsrgan', 'clsrgan', 'san_sr')


def apply_overrides(config, overrides) -> None:
  """--set section.key=value pairs, the value parsed like the config's own."""
  for item in overrides or ():
    key, _, value = item.partition('=')
    *path, leaf = key.split('.')
    node = config
    for part in path:
      node = node[part]
    if leaf not in node:
      raise ValueError(f'--set {item}: the config has no {key}')
    old = node[leaf]
    node[leaf] = (value.lower() in ('1', 'true') if isinstance(old, bool)
                  else type(old)(value))


def load_config(name: str, arg: str | None, batch_size: int,
                overrides=()):
  """The experiment's config with random VGG weights and no warm-up."""
  config = configs.for_speed(configs.experiment(name, arg))
  config.data.batch_size = batch_size
  apply_overrides(config, overrides)
  return config


def make_batch(config, batch_size: int) -> dict[str, np.ndarray]:
  """Uniform [0, 1) float32 NHWC 'lr' and 'hr' patches of the config's size."""
  rng = np.random.default_rng(0)
  p, s = config.data.hr_patch, config.scale
  return {'lr': rng.random((batch_size, p // s, p // s, 3), np.float32),
          'hr': rng.random((batch_size, p, p, 3), np.float32)}


def median_s(fn, repeats: int) -> float:
  """Median wall seconds of fn() over repeats calls, after one warm-up."""
  fn()
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def matmul_peak(n: int, repeats: int, jax_device, torch_device) -> dict:
  """GFLOP/s of an n x n float32 matmul in JAX and torch (None if absent)."""
  rng = np.random.default_rng(0)
  a, b = (rng.standard_normal((n, n), np.float32) for _ in range(2))
  flop = 2.0 * n**3
  ja, jb = jax.device_put(a, jax_device), jax.device_put(b, jax_device)
  mm = jax.jit(jnp.matmul)
  out = {'jax': flop / median_s(
      lambda: mm(ja, jb).block_until_ready(), repeats) / 1e9, 'torch': None}
  if torch is not None and torch_device is not None:
    ta = torch.from_numpy(a).to(torch_device)
    tb = torch.from_numpy(b).to(torch_device)

    def torch_mm():
      torch.mm(ta, tb)
      _sync(torch_device)

    out['torch'] = flop / median_s(torch_mm, repeats) / 1e9
  return out


def _sync(device) -> None:
  """Waits for queued torch work on a CUDA device (no-op on the CPU)."""
  if device is not None and device.type == 'cuda':
    torch.cuda.synchronize(device)


class JaxStep:
  """The jitted, donating jaxsr step of one config with its live state."""

  def __init__(self, config, batch, device):
    self.method = methods.build(config)
    self.state = self.method.init(base.init_key(0))
    self.constants = self.method.constants()
    self.batch = jax.device_put(batch, device)
    self.key = jax.random.key(0)
    t0 = time.perf_counter()
    step = self.method.stages[-1].step  # The GAN stage of GAN methods.
    self.compiled = jax.jit(step, donate_argnums=0).lower(
        self.state, self.batch, self.key, self.constants).compile()
    self.compile_s = time.perf_counter() - t0
    cost = self.compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    self.flops = float(cost.get('flops', float('nan'))) if cost else float(
        'nan')
    self.metrics = {}

  def __call__(self) -> None:
    """One step, waited for (state and metrics)."""
    self.state, self.metrics = self.compiled(self.state, self.batch, self.key,
                                             self.constants)
    jax.block_until_ready((self.state, self.metrics))


class TorchStep:
  """The PyTorch twin of one config, loaded with the JAX state's params."""

  def __init__(self, config, batch, device, jax_step: JaxStep):
    self.twin = twin_steps.build(config, device)
    self.load_error = None
    try:
      self.twin.load(jax_step.state, jax_step.constants)
    except ValueError as e:
      # A jaxsr layout the twin does not mirror (say, a fused dense block):
      # the timing stands with the twin's own init (denormals are flushed),
      # but the networks can then not be compared.
      self.load_error = str(e)
    self.device = device
    self.lr = twin_check.nchw(batch['lr']).to(device)
    self.hr = twin_check.nchw(batch['hr']).to(device)
    self.metrics = {}

  def __call__(self, crops=None) -> None:
    """One step, waited for."""
    self.metrics = self.twin(self.lr, self.hr, crops)
    _sync(self.device)


def check(name, config, jax_step: JaxStep, torch_step: TorchStep, batch):
  """Forward and first-step agreement; prints them, returns failure lines."""
  forward = twin_check.forward_diffs(config, jax_step.state,
                                     jax_step.constants, torch_step.twin,
                                     batch)
  # The step reads state.step = 0, as crop_offsets assumes.
  crops = twin_check.crop_offsets(config, jax_step.key, 0)
  jax_step()
  torch_step(crops)
  losses = twin_check.step_diffs(jax_step.metrics, torch_step.metrics)
  print(f'\n{name}: forward outputs (max |jaxsr - twin|, max |jaxsr|)')
  for net, (diff, scale) in forward.items():
    print(f'  {net:<18} {diff:.3g}  ({scale:.3g})')
  print(f'{name}: first-step losses (jaxsr, twin)')
  for loss, (ref, got) in losses.items():
    print(f'  {loss:<18} {ref:.7g}  {got:.7g}')
  return [f'{name}: {line}' for line in twin_check.failures(forward, losses)]


def run(name: str, args, jax_device, torch_device,
        torch_note: str) -> tuple[dict, list]:
  """Times one config; returns its row and any --check failures."""
  config = load_config(name, 'demo' if args.quick else None, args.batch,
                       args.set)
  batch = make_batch(config, args.batch)
  with jax.default_device(jax_device):
    jax_step = JaxStep(config, batch, jax_device)
  torch_step, note, failed = None, None, []
  if torch_device is None:
    note = torch_note
  else:
    try:
      torch_step = TorchStep(config, batch, torch_device, jax_step)
    except ValueError as e:  # A config the twin does not cover.
      note = f'{name}: no torch twin: {e}'
  if torch_step is not None and torch_step.load_error:
    note = (f'{name}: the twin runs on its own init, the jaxsr params do not '
            f'load: {torch_step.load_error}')
    if args.check:
      failed = [f'{name}: cannot check, {note}']
  elif args.check and torch_step is not None:
    failed = check(name, config, jax_step, torch_step, batch)
  for _ in range(args.warmup):
    jax_step()
    if torch_step is not None:
      torch_step()
  calls = {'jax': jax_step}
  if torch_step is not None:
    calls['torch'] = torch_step
  times = report.alternating_times(calls, args.repeats)
  jax_times, torch_times = times['jax'], times.get('torch', [])
  jax_s = statistics.median(jax_times)
  torch_s = statistics.median(torch_times) if torch_times else None
  gflop = jax_step.flops / 1e9
  row = {'compile_s': jax_step.compile_s, 'jax_s': jax_s, 'torch_s': torch_s,
         'ratio': jax_s / torch_s if torch_s else None, 'gflop': gflop,
         'jax_gflops_per_s': gflop / jax_s,
         'torch_gflops_per_s': gflop / torch_s if torch_s else None,
         # The pre-twin key names, kept for older readers of the JSON.
         'step_s': jax_s, 'gflops_per_s': gflop / jax_s}
  if note:
    row['torch_note'] = note
  return row, failed


def _fmt(value, spec: str) -> str:
  """value formatted by spec, or n/a for None."""
  return 'n/a' if value is None else format(value, spec)


def print_table(rows: dict, peak: float) -> None:
  """The Markdown table of all configs (fractions of the matmul peak)."""
  print('| config | compile s | JAX step s | torch step s | JAX/torch | '
        'GFLOP/step | JAX GFLOP/s | torch GFLOP/s | JAX % peak | '
        'torch % peak |')
  print('|---|---|---|---|---|---|---|---|---|---|')
  for name, r in rows.items():
    t_rate = r['torch_gflops_per_s']
    print(f'| {name} | {r["compile_s"]:.1f} | {r["jax_s"]:.3f} | '
          f'{_fmt(r["torch_s"], ".3f")} | {_fmt(r["ratio"], ".2f")} | '
          f'{r["gflop"]:.1f} | {r["jax_gflops_per_s"]:.1f} | '
          f'{_fmt(t_rate, ".1f")} | '
          f'{100 * r["jax_gflops_per_s"] / peak:.0f}% | '
          f'{_fmt(t_rate and 100 * t_rate / peak, ".0f")}'
          f'{"" if t_rate is None else "%"} |')


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument('--quick', action='store_true',
                      help='demo-size networks (a few minutes in all)')
  parser.add_argument('--check', action='store_true',
                      help='assert the twin matches jaxsr before timing')
  parser.add_argument('--only', choices=CONFIGS, action='append',
                      help='run only this config (repeatable)')
  parser.add_argument('--device', choices=('cpu', 'gpu'), default='cpu')
  parser.add_argument('--batch', type=int, default=4)
  parser.add_argument('--repeats', type=int, default=3,
                      help='timed steps per framework')
  parser.add_argument('--warmup', type=int, default=1,
                      help='untimed steps per framework after compiling')
  parser.add_argument('--matmul', type=int, default=4096,
                      help='side of the peak-measuring matmul')
  parser.add_argument('--torch_threads', type=int, default=os.cpu_count(),
                      help='torch intra-op threads (default: all CPUs)')
  parser.add_argument('--json', default=None, help='write the rows here')
  parser.add_argument('--set', action='append', metavar='KEY=VALUE',
                      help='config override, e.g. model.dense=fused')
  args = parser.parse_args()
  if args.repeats < 1:
    parser.error(f'--repeats must be >= 1, got {args.repeats}')

  jax_device = jax.devices(args.device)[0]  # RuntimeError names the backend.
  torch_device, torch_note = None, None
  if torch is None:
    torch_note = _TORCH_MISSING
  elif args.device == 'gpu' and not torch.cuda.is_available():
    torch_note = f'torch {torch.__version__} sees no CUDA device'
  else:
    torch_device = torch.device('cuda' if args.device == 'gpu' else 'cpu')
    torch.set_num_threads(args.torch_threads)
    # XLA:CPU runs with denormals flushed to zero (FTZ/DAZ); without the
    # same mode, torch's Adam and convs crawl on denormal moments.
    torch.set_flush_denormal(True)
    # Fixed shapes: let cuDNN autotune its kernels, the usual training setting.
    torch.backends.cudnn.benchmark = True
  if args.check and torch_device is None:
    parser.error(f'--check needs the torch twin: {torch_note}')

  # Measured before and after the configs, the best kept: on a shared
  # machine one measurement can land in a busy moment.
  peaks = matmul_peak(args.matmul, 3, jax_device, torch_device)
  rows, failures, notes = {}, [], []
  for name in args.only or CONFIGS:
    rows[name], failed = run(name, args, jax_device, torch_device,
                              torch_note)
    failures += failed
    if 'torch_note' in rows[name]:
      notes.append(rows[name]['torch_note'])
  again = matmul_peak(args.matmul, 3, jax_device, torch_device)
  peaks = {k: v and max(v, again[k]) for k, v in peaks.items()}
  peak = max(v for v in peaks.values() if v)
  for row in rows.values():
    row['peak_gflops_per_s'] = peak

  threads = (f', torch {torch.__version__} with {torch.get_num_threads()} '
             'threads' if torch_device is not None else '')
  print(f'\n{jax_device.device_kind} ({os.cpu_count()} CPUs), jax '
        f'{jax.__version__}{threads}; batch {args.batch}, '
        f'{"demo" if args.quick else "paper"} sizes, median of '
        f'{args.repeats} interleaved steps after {args.warmup} warm-up')
  print(f'f32 matmul {args.matmul}^2 (best of two runs): JAX {peaks["jax"]:.1f} GFLOP/s, torch '
        f'{_fmt(peaks["torch"], ".1f")} GFLOP/s; peak = {peak:.1f} GFLOP/s\n')
  print_table(rows, peak)
  for note in dict.fromkeys(notes):
    print(f'\n{note}')
  report.finish(rows, args.json, failures, args.check,
                'every forward output and first-step loss agrees within '
                'tolerance')


if __name__ == '__main__':
  main()
