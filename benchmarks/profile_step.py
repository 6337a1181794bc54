"""Where a jaxsr training step's time goes, by kind of HLO op.

  python benchmarks/profile_step.py                      # paper PSNR step
  python benchmarks/profile_step.py --only lsrgan --steps 2
  python benchmarks/profile_step.py --quick --set model.kernel_grad=xla

Compiles the step of each config as train_step.py does, runs it once, then
traces --steps steps with jax.profiler and reads the trace's XLA thunk
events (one per executed HLO instruction, named as in the compiled module).
Prints per config a Markdown table: for each op category (convolutions,
dot = matmuls, reductions, data movement = copies / transposes / concats /
pads / slices, elementwise fusions, other) the thunks per step, their share
of the step's wall time (each instant split among the thunks running then)
and their own start-to-result times summed (overlapping and async thunks
count in full); then the heaviest (category, result shape) groups. The
header line gives the step's wall time (untraced median, and traced) and
how much of the traced time some thunk was running (the rest is dispatch
and idle time between thunks).
"""

import argparse
import glob
import json
import os
import sys
import tempfile
import time

import jax

import hlo_profile  # benchmarks/hlo_profile.py, beside this script.
import train_step  # benchmarks/train_step.py, beside this script.

try:
  from tensorflow.tsl.profiler.protobuf import xplane_pb2
except ImportError as e:  # tensorflow-cpu is a dependency of jaxsr.
  sys.exit(f'profile_step.py reads the trace with tensorflow\'s xplane_pb2 '
           f'({e})')


def trace_events(trace_dir: str) -> list[tuple[str, int, int]]:
  """(name, start, duration) in ps of the events off the Python line."""
  files = glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'),
                    recursive=True)
  if len(files) != 1:
    raise RuntimeError(f'expected one .xplane.pb under {trace_dir}, found '
                       f'{files}')
  space = xplane_pb2.XSpace()
  with open(files[0], 'rb') as f:
    space.ParseFromString(f.read())
  events = []
  for plane in space.planes:
    names = {k: v.name for k, v in plane.event_metadata.items()}
    for line in plane.lines:
      if line.name == 'python':
        continue
      events.extend((names[e.metadata_id],
                     line.timestamp_ns * 1000 + e.offset_ps, e.duration_ps)
                    for e in line.events)
  return events


def profile(name: str, args) -> dict:
  """The category summary of one config's step, with its wall times."""
  config = train_step.load_config(name, 'demo' if args.quick else None,
                                  args.batch, args.set)
  batch = train_step.make_batch(config, args.batch)
  step = train_step.JaxStep(config, batch, jax.devices()[0])
  wall_s = train_step.median_s(step, args.repeats)  # Includes a warm-up.
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      t0 = time.perf_counter()
      for _ in range(args.steps):
        step()
      traced_s = (time.perf_counter() - t0) / args.steps
    events = trace_events(trace_dir)
  instructions, computations = hlo_profile.parse_hlo(step.compiled.as_text())
  summary = hlo_profile.summarize(events, instructions, computations,
                                  args.steps)
  summary.update(compile_s=step.compile_s, wall_ms=1e3 * wall_s,
                 traced_ms=1e3 * traced_s, gflop=step.flops / 1e9,
                 instructions=len(instructions))
  return summary


def print_summary(name: str, s: dict) -> None:
  """Header line and the two Markdown tables of one config."""
  thunk_total = sum(c['thunk_ms'] for c in s['categories'].values())
  print(f'\n{name}: step {s["wall_ms"]:.0f} ms untraced, {s["traced_ms"]:.0f}'
        f' ms traced, of which some thunk runs {s["covered_ms"]:.0f} ms '
        f'(the rest: dispatch and idle); thunks\' own times summed '
        f'{thunk_total:.0f} ms; {s["gflop"]:.1f} GFLOP, {s["instructions"]} '
        f'HLO instructions, compile {s["compile_s"]:.1f} s\n')
  print('| category | thunks/step | wall ms/step | share | thunk ms/step |')
  print('|---|---|---|---|---|')
  for category, c in s['categories'].items():
    print(f'| {category} | {c["thunks"]:.0f} | {c["ms"]:.1f} | '
          f'{100 * c["ms"] / s["covered_ms"]:.1f}% | {c["thunk_ms"]:.1f} |')
  print('\n| category | result type | wall ms/step |')
  print('|---|---|---|')
  for category, result, ms in s['top_shapes']:
    print(f'| {category} | `{result.split("{")[0]}` | {ms:.1f} |')


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument('--quick', action='store_true',
                      help='demo-size networks')
  parser.add_argument('--only', choices=train_step.CONFIGS, action='append',
                      help='profile only this config (repeatable; default '
                      'rrdb_psnr)')
  parser.add_argument('--batch', type=int, default=4)
  parser.add_argument('--steps', type=int, default=2,
                      help='traced steps (after the timed ones)')
  parser.add_argument('--repeats', type=int, default=2,
                      help='untraced timed steps, after one warm-up')
  parser.add_argument('--json', default=None, help='write the summaries here')
  parser.add_argument('--set', action='append', metavar='KEY=VALUE',
                      help='config override, e.g. model.kernel_grad=xla')
  args = parser.parse_args()
  if args.steps < 1 or args.repeats < 1:
    parser.error('--steps and --repeats must be >= 1')
  print(f'{jax.default_backend()} ({os.cpu_count()} CPUs), jax '
        f'{jax.__version__}, batch {args.batch}, '
        f'{"demo" if args.quick else "paper"} sizes, XLA_FLAGS='
        f'{os.environ.get("XLA_FLAGS", "")!r}, overrides {args.set or []}')
  summaries = {}
  for name in args.only or ['rrdb_psnr']:
    summaries[name] = profile(name, args)
    print_summary(name, summaries[name])
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(summaries, f, indent=1)


if __name__ == '__main__':
  main()
