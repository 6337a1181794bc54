"""Training-step images/s vs number of forced CPU devices on a ('data',) mesh.

  python benchmarks/scaling.py                  # 1, 2, 4, 8 devices
  python benchmarks/scaling.py --quick          # per-device batch 1, 2 repeats
  python benchmarks/scaling.py --json out.json

For each N a fresh subprocess runs with
XLA_FLAGS=--xla_force_host_platform_device_count=N and times, for the demo
configs (experiments/rrdb_psnr.py:demo, the small RRDBNet L1 step, and
experiments/lsrgan.py:demo, the full D+G+L LSRGAN step with a random VGG19),
one training step compiled exactly as jaxsr/train.py compiles it: state
replicated as the loop places it, batch placed by sharding.put_batch, and
jax.jit(step, in_shardings=(repl, data, repl, repl), out_shardings=(repl,
repl), donate_argnums=0). The global batch is per-device batch x N.

Proof that the batch is split, not duplicated: the 'shard' column is the
shape each device holds (from the compiled input sharding and the placed
array's addressable shards, which must agree), and 'all-reduce' counts the
cross-device reductions XLA inserted for the gradients (0 on one device).

On a CPU, forced devices are slices of the same cores: N devices share the
machine's cores, so images/s can only grow while one device's small program
leaves cores idle (and with the load of other jobs), not with N.
The table proves that the same code runs on any mesh size; real scaling needs
real devices (GPUs, a TPU slice).
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

import configs  # benchmarks/configs.py, beside this script.

CONFIGS = (('rrdb_psnr', 'demo'), ('lsrgan', 'demo'))


def load_config(name: str, arg: str | None):
  """experiments/<name>.py:arg with the GAN step from step 0 (no warm-up)."""
  return configs.for_speed(configs.experiment(name, arg))


def child(per_device_batch: int, repeats: int, names: list[str]) -> list:
  """Runs in the subprocess: times each config on all visible devices."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jaxsr import methods  # pylint: disable=g-import-not-at-top
  from jaxsr import sharding  # pylint: disable=g-import-not-at-top
  from jaxsr.methods import base  # pylint: disable=g-import-not-at-top

  mesh = sharding.make_mesh()
  n = mesh.devices.size
  rows = []
  for name, arg in CONFIGS:
    if name not in names:
      continue
    config = load_config(name, arg)
    global_batch = per_device_batch * n
    sharding.check_batch_size(global_batch, mesh)
    method = methods.build(config)
    state = jax.device_put(method.init(base.init_key(config.seed)),
                           sharding.replicated(mesh))
    repl, data = sharding.replicated(mesh), sharding.data_sharded(mesh)
    constants = jax.device_put(method.constants(), repl)
    rng = jax.random.fold_in(jax.random.key(config.seed), 1)
    p, s = config.data.hr_patch, config.scale
    gen = np.random.default_rng(0)
    host = {'lr': gen.random((global_batch, p // s, p // s, 3), np.float32),
            'hr': gen.random((global_batch, p, p, 3), np.float32)}
    batch = sharding.put_batch(host, mesh)
    step = jax.jit(method.stages[-1].step,
                   in_shardings=(repl, data, repl, repl),
                   out_shardings=(repl, repl), donate_argnums=0)
    t0 = time.perf_counter()
    compiled = step.lower(state, batch, rng, constants).compile()
    compile_s = time.perf_counter() - t0
    in_batch = compiled.input_shardings[0][1]['lr']
    shard = in_batch.shard_shape(host['lr'].shape)
    placed = {tuple(x.data.shape) for x in batch['lr'].addressable_shards}
    devices = {x.device for x in batch['lr'].addressable_shards}
    if placed != {shard} or len(devices) != n:
      raise RuntimeError(f'batch shards {placed} on {len(devices)} devices; '
                         f'expected {shard} on {n}')
    all_reduce = compiled.as_text().count(' all-reduce(')
    all_reduce += compiled.as_text().count(' all-reduce-start(')
    state, metrics = compiled(state, batch, rng, constants)  # Warm-up.
    jax.block_until_ready(metrics)
    times = []
    for _ in range(repeats):
      t0 = time.perf_counter()
      state, metrics = compiled(state, batch, rng, constants)
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    finite = all(bool(np.all(np.isfinite(v)))
                 for v in jax.device_get(metrics).values())
    rows.append({'config': f'{name}:{arg}', 'method': config.method,
                 'devices': n, 'global_batch': global_batch,
                 'shard': list(shard), 'all_reduce': all_reduce,
                 'compile_s': compile_s, 'step_s': step_s,
                 'images_per_s': global_batch / step_s, 'finite': finite})
  return rows


def run_child(n: int, per_device_batch: int, repeats: int,
              names: list[str]) -> list:
  """One subprocess with n forced CPU devices; returns its rows."""
  env = dict(os.environ)
  flags = env.get('XLA_FLAGS', '').split()
  flags = [f for f in flags
           if not f.startswith('--xla_force_host_platform_device_count')]
  env['XLA_FLAGS'] = ' '.join(
      flags + [f'--xla_force_host_platform_device_count={n}'])
  env['JAX_PLATFORMS'] = 'cpu'
  cmd = [sys.executable, __file__, '--_child', '--per_device_batch',
         str(per_device_batch), '--repeats', str(repeats), '--configs',
         ','.join(names)]
  out = subprocess.run(cmd, env=env, capture_output=True, text=True,
                       check=False)
  if out.returncode:
    raise RuntimeError(f'{n}-device run failed:\n{out.stderr[-3000:]}')
  return json.loads(out.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument('--quick', action='store_true')
  parser.add_argument('--devices', default='1,2,4,8')
  parser.add_argument('--per_device_batch', type=int, default=None,
                      help='default 2, --quick 1')
  parser.add_argument('--repeats', type=int, default=None,
                      help='timed steps after a warm-up (default 3, --quick 2)')
  parser.add_argument('--configs', default=','.join(n for n, _ in CONFIGS))
  parser.add_argument('--json', default=None)
  parser.add_argument('--_child', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args()
  per_device = args.per_device_batch or (1 if args.quick else 2)
  repeats = args.repeats or (2 if args.quick else 3)
  names = args.configs.split(',')
  if args._child:  # pylint: disable=protected-access
    print(json.dumps(child(per_device, repeats, names)))
    return

  load0 = os.getloadavg()[0]
  rows = []
  for n in (int(v) for v in args.devices.split(',')):
    t0 = time.perf_counter()
    rows += run_child(n, per_device, repeats, names)
    print(f'{n} device(s) done in {time.perf_counter() - t0:.0f} s',
          file=sys.stderr)
  print(f'\nForced CPU devices on {os.cpu_count()} cores: the N devices '
        'share these cores, so images/s here measures how well N small '
        'programs fill the cores, not added hardware; the table proves the '
        'same sharded step runs on every mesh size. 1-min '
        f'load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end '
        '(other jobs on the machine make timings noisy).\n')
  print('| config | devices | global batch | shard per device | all-reduce '
        '| compile s | step s | images/s | finite |')
  print('|---|---|---|---|---|---|---|---|---|')
  for r in rows:
    print(f'| {r["config"]} | {r["devices"]} | {r["global_batch"]} '
          f'| {"x".join(map(str, r["shard"]))} | {r["all_reduce"]} '
          f'| {r["compile_s"]:.1f} | {r["step_s"]:.3f} '
          f'| {r["images_per_s"]:.2f} | {r["finite"]} |')
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == '__main__':
  main()
