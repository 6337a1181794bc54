"""Times AMGAN's and AMGAN-RL's training steps (paper 003), jaxsr next to its PyTorch twin.

  python benchmarks/amgan.py --quick --check --json /tmp/amgan_bench.json
  python benchmarks/amgan.py --json out.json      # the paper config
  python benchmarks/amgan.py --device gpu
  python benchmarks/amgan.py --quick --stages predictor,ddpg --reward psnr

Prints one Markdown table: per stage of `experiments/amgan.py` ('sr': the
realness D update then the AMNet update on L1 + 15 Lvgg + 0.01 Lrealness +
10 LDISTS, with the blur -> MATLAB bicubic degradation and the anchors made
inside the step; 'predictor': the kernel predictor's regression on the true
code, its degradation inside the step too), the seconds per step of jaxsr's
stage step, built by `jaxsr.methods.build(config)` and jitted as
`jaxsr.train` jits it (donated state, one step per call), and of the twin
(benchmarks/torch_twin/amgan.py), which draws its own kernels, noise and
anchors in torch; median of --repeats interleaved calls of --steps steps
each after one warm-up call, with JAX's compile seconds (not counted) and
the ratio JAX/torch (> 1: JAX slower). Both start from the same weights
(jaxsr's init copied into the twin) and train on the same fixed HR batch
(uniform noise: speed does not depend on the content). The loss networks
are random-initialised (config.features = 'random'), as speed needs no
ImageNet weights.

AMGAN-RL's rows ('fill': play one batch and store it; 'ddpg': play and
store, then one critic and one actor Adam step on a sampled minibatch;
benchmarks/amgan_rl_steps.py) come from `experiments/amgan_rl.py` built the
same way, one row pair per reward of --reward: 'psnr' (array math in both
frameworks) and 'niqe' (jaxsr's numpy NIQE on the host in both: through
jax.pure_callback in jaxsr, called directly by the twin, so the same cost
on both sides). 'ddpg' is timed from where 'fill' left both buffers. The
RL check runs with the PSNR reward (NIQE amplifies the renders' rare 8-bit
rounding flips into score differences of ~1e-2).

--quick: `experiments/amgan.py:demo` (AMNet 32 features x 4 blocks, D 16
features with 11 outcomes, HR 64 px x4, batch 4; CPU minutes) and
`experiments/amgan_rl.py:demo` (the same AMNet and predictor, HR 128 px,
batch 4, minibatch 32 of a 1024 buffer); else the paper configs (AMNet
64 x 16, D 64 with 51 outcomes, HR 128 px, batch 16; RL: HR 256 px, batch
16, minibatch 64 of 10,000).

--check first asserts, on the timed config, that the twin is jaxsr's
function: the forward outputs of AMNet, the predictor, D (training mode),
the VGG19 loss features and DISTS agree (every parameter perturbed by
N(0, 0.01^2) and the zero-initialised conv_last drawn at PyTorch's default
scale, so that every layer counts), then that two steps of
each stage give the same losses, the twin fed the LR, code and anchors that
jaxsr's step draws from its keys (reproduced here from the run's rng and
the state's step) and starting from the same (perturbed) weights; first
step's D loss within 1e-4, the rest (after one Adam step of D, or of G) within
2e-3 relative. For the RL stages, two 'fill' and two 'ddpg' steps from the
same perturbed weights, the twin fed the LR, exploration noise and minibatch
positions that jaxsr's steps draw (amgan_rl_steps.run_check). Full float32
on both sides for the check (no TF32 on a GPU).
"""

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

from jaxsr import methods
from jaxsr import train
from jaxsr.methods import base

import amgan_check as check  # benchmarks/amgan_check.py.
import amgan_rl_steps as rl_steps  # benchmarks/amgan_rl_steps.py.
import configs  # benchmarks/configs.py, beside this script.
import report  # benchmarks/report.py.
from torch_twin import check as twin_check

STAGES = ('sr', 'predictor')


def config_for(variant: str | None):
  """experiments/amgan.py:<variant> (unlocked) with random loss networks;
  the paper config reads the embedded images (the step never does)."""
  config = configs.experiment('amgan', variant)
  config.features.update(vgg19='random', dists='random', dists_vgg16='random')
  if config.data.source == 'folder':
    config.data.source = 'demo'
  return config


def _copy(tree):
  """Fresh buffers of a pytree (the jitted steps donate their state)."""
  return jax.tree.map(jnp.copy, tree)


def _sync(device: torch.device) -> None:
  if device.type == 'cuda':
    torch.cuda.synchronize(device)


class JaxAMGAN:
  """One config's jaxsr method, initial state, constants and stage steps."""

  def __init__(self, config, device, label: str = ''):
    self.config, self.device, self.label = config, device, label
    self.method = methods.build(config)
    t0 = time.perf_counter()
    self.state = jax.block_until_ready(jax.device_put(
        self.method.init(base.init_key(config.seed)), device))
    self.constants = jax.device_put(self.method.constants(), device)
    self.init_s = time.perf_counter() - t0
    self.rng = jax.random.fold_in(jax.random.key(config.seed), 1)  # train.py
    self.compile_s = {}

  def stage(self, name: str) -> base.Stage:
    """The stage called `name` (the method may add stages around it)."""
    for stage in self.method.stages:
      if stage.name == name:
        return stage
    raise ValueError(f"AMGAN has no stage {name!r}; its stages are "
                     f"{[s.name for s in self.method.stages]}")

  def compile(self, name: str, state, batch):
    """The stage's step, one step per call, jitted as jaxsr.train jits it."""
    t0 = time.perf_counter()
    # pylint: disable-next=protected-access
    fn = jax.jit(train._runner(self.stage(name), 1), donate_argnums=0)
    compiled = fn.lower(state, batch, self.rng, self.constants).compile()
    self.compile_s[name] = time.perf_counter() - t0
    return compiled

  def hr(self, seed: int = 0) -> np.ndarray:
    """A fixed (B, P, P, 3) HR batch, uniform in [0, 1]."""
    d = self.config.data
    return np.random.default_rng(seed).random(
        (d.batch_size, d.hr_patch, d.hr_patch, 3), np.float32)


def sizes(config, stage: str) -> str:
  """The table's config column."""
  m, d, p = config.model, config.disc, config.predictor
  hr, s = config.data.hr_patch, config.scale
  if stage == 'sr':
    return (f'AMNet {m.num_feat}f x {m.num_block} blocks, D {d.num_feat}f '
            f'K={d.num_outcomes}, HR {hr} px x{s}')
  return f'predictor {p.num_feat}f, {p.num_down} down, LR {hr // s} px'


# --check ------------------------------------------------------------------

def time_steps(bench: JaxAMGAN, name: str, state, t_step, hr: np.ndarray,
               repeats: int, steps: int, device) -> tuple[dict, object]:
  """(row, jaxsr's state after the timed calls): seconds per step of stage
  `name` from state, jaxsr's and the twin's `t_step(hr)` interleaved."""
  batch = {'hr': jax.device_put(hr, bench.device)}
  compiled = bench.compile(name, state, batch)
  t_hr = twin_check.nchw(hr).to(device)

  def jax_call():
    nonlocal state
    for _ in range(steps):
      state, metrics = compiled(state, batch, bench.rng, bench.constants)
    jax.block_until_ready((state, metrics))

  def torch_call():
    for _ in range(steps):
      t_step(t_hr)
    _sync(device)

  jax_call()  # Warm-up, untimed.
  torch_call()
  times = report.alternating_times({'jax': jax_call, 'torch': torch_call},
                                   repeats)
  per = lambda k: statistics.median(times[k]) / steps
  row = {'stage': name, 'config': bench.label,
         'batch': int(bench.config.data.batch_size), 'steps_per_call': steps,
         'compile_s': bench.compile_s[name], 'jax_s_per_step': per('jax'),
         'torch_s_per_step': per('torch'),
         'jax_spread': max(times['jax']) / min(times['jax']),
         'torch_spread': max(times['torch']) / min(times['torch'])}
  row['ratio'] = row['jax_s_per_step'] / row['torch_s_per_step']
  return row, state


def time_stage(bench: JaxAMGAN, name: str, repeats: int, steps: int,
               device) -> dict:
  """The row of AMGAN stage `name` ('sr' or 'predictor')."""
  t = check.twin_of(bench, bench.state, device)
  t_step = t.sr_step if name == 'sr' else t.predictor_step
  row, _ = time_steps(bench, name, _copy(bench.state), t_step, bench.hr(0),
                      repeats, steps, device)
  return {**row, 'sizes': sizes(bench.config, name)}


def time_rl_stages(bench: JaxAMGAN, names, repeats: int, steps: int,
                   device) -> list[dict]:
  """Rows of the AMGAN-RL stages `names` in order ('fill', 'ddpg'), each
  from where the previous one left both states (buffers included)."""
  state = rl_steps.entered(bench, _copy(bench.state))
  t = rl_steps.make_twin(bench, state, device)
  rows = []
  for name in names:
    row, state = time_steps(bench, name, state, rl_steps.twin_step(t, name),
                            bench.hr(0), repeats, steps, device)
    rows.append({**row, 'sizes': rl_steps.sizes(bench.config, name)})
  return rows


def print_table(rows: list) -> None:
  print('\nSeconds per training step (JAX compile not counted)\n')
  print('| stage | config | sizes | batch | JAX compile s | JAX s/step | '
        'torch s/step | JAX/torch |')
  print('|---|---|---|---|---|---|---|---|')
  for r in rows:
    print(f'| {r["stage"]} | {r["config"]} | {r["sizes"]} | {r["batch"]} | '
          f'{r["compile_s"]:.1f} | {r["jax_s_per_step"]:.4g} | '
          f'{r["torch_s_per_step"]:.4g} | {r["ratio"]:.2f} |')
  spread = max(max(r['jax_spread'], r['torch_spread']) for r in rows)
  if spread > 1.5:
    print(f'\nNOTE: the slowest timed call was {spread:.1f}x the fastest of '
          "its row: the machine was busy (torch's OpenMP threads slow down "
          'most when another process shares the cores); rerun when idle.')


def _stage_names(text: str) -> tuple[str, ...]:
  names = tuple(n for n in text.split(',') if n)
  unknown = sorted(set(names) - set(STAGES + rl_steps.STAGES))
  if unknown or not names:
    raise ValueError(f'--stages {text!r}: expected names from '
                     f'{STAGES + rl_steps.STAGES}')
  return names


def _rewards(text: str, niqe_params: str | None) -> tuple[str, ...]:
  """--reward: 'auto' = psnr, plus niqe when its pristine model is found."""
  if text == 'auto':
    return ('psnr', 'niqe') if niqe_params else ('psnr',)
  rewards = tuple(r for r in text.split(',') if r)
  if not rewards or set(rewards) - set(rl_steps.REWARDS):
    raise ValueError(f'--reward {text!r}: expected auto or names from '
                     f'{rl_steps.REWARDS}')
  if 'niqe' in rewards and not niqe_params:
    raise ValueError('--reward niqe: no NIQE pristine model found (pass '
                     '--niqe_params, set $JAXSR_NIQE_PARAMS or run `python -m '
                     'jaxsr.assets niqe`)')
  return rewards


def _checked(fn):
  """fn() in full float32 on both sides (no TF32)."""
  tf32 = (torch.backends.cudnn.allow_tf32,
          torch.backends.cuda.matmul.allow_tf32)
  torch.backends.cudnn.allow_tf32 = False
  torch.backends.cuda.matmul.allow_tf32 = False
  try:
    with jax.default_matmul_precision('highest'):
      return fn()
  finally:
    (torch.backends.cudnn.allow_tf32,
     torch.backends.cuda.matmul.allow_tf32) = tf32


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument('--quick', action='store_true',
                      help='the demo configs (CPU minutes)')
  parser.add_argument('--check', action='store_true',
                      help='assert the twin matches jaxsr before timing')
  parser.add_argument('--device', choices=('cpu', 'gpu'), default='cpu')
  parser.add_argument('--stages', default=','.join(STAGES + rl_steps.STAGES),
                      help='comma-separated stages to check and time')
  parser.add_argument('--reward', default='auto',
                      help="AMGAN-RL rewards, comma-separated (psnr, niqe); "
                      "'auto': psnr, and niqe when its model is found")
  parser.add_argument('--niqe_params', default='',
                      help='the NIQE pristine model (.npz; default '
                      '$JAXSR_NIQE_PARAMS, the assets cache, ../shared)')
  parser.add_argument('--repeats', type=int, default=5,
                      help='timed calls per stage and framework')
  parser.add_argument('--steps', type=int, default=None,
                      help='steps per timed call (default 1 on CPU, 20 on '
                      'GPU)')
  parser.add_argument('--torch_threads', type=int, default=os.cpu_count())
  parser.add_argument('--json', default=None, help='write the results here')
  args = parser.parse_args()
  if args.repeats < 1:
    parser.error(f'--repeats must be >= 1, got {args.repeats}')
  steps = args.steps or (20 if args.device == 'gpu' else 1)
  if steps < 1:
    parser.error(f'--steps must be >= 1, got {steps}')
  niqe_params = rl_steps.niqe_params_path(args.niqe_params)
  if args.niqe_params and not niqe_params:
    parser.error(f'--niqe_params {args.niqe_params}: no such file')
  try:
    names = _stage_names(args.stages)
    rl_names = tuple(n for n in rl_steps.STAGES if n in names)
    rewards = _rewards(args.reward, niqe_params) if rl_names else ()
  except ValueError as e:
    parser.error(str(e))
  if args.device == 'cpu':
    jax.config.update('jax_platforms', 'cpu')
  jax_device = jax.devices(args.device)[0]
  if args.device == 'gpu' and not torch.cuda.is_available():
    parser.error(f'torch {torch.__version__} sees no CUDA device')
  torch_device = torch.device('cuda' if args.device == 'gpu' else 'cpu')
  torch.set_num_threads(args.torch_threads)
  torch.set_flush_denormal(True)  # XLA:CPU flushes denormals too.
  torch.backends.cudnn.benchmark = True
  torch.manual_seed(0)
  load_start = os.getloadavg()

  variant = 'demo' if args.quick else None
  label = variant or 'paper'
  results, failures, rows, init_s = {'check': {}}, [], [], {}
  with jax.default_device(jax_device):
    sr_names = tuple(n for n in STAGES if n in names)
    if sr_names:
      bench = JaxAMGAN(config_for(variant), jax_device, label)
      init_s['amgan'] = bench.init_s
      if args.check:
        results['check']['amgan'], bad = _checked(
            lambda: check.run_check(bench, torch_device, stages=sr_names))
        failures += bad
      for name in sr_names:
        rows.append(time_stage(bench, name, args.repeats, steps,
                               torch_device))
        print(f'  {rows[-1]}', flush=True)
    # The RL check runs on the PSNR reward: NIQE is the same numpy function
    # on both sides, and it turns the rare 8-bit rounding flips of the
    # renders into score changes of ~1e-2 (on the check's renders).
    check_rewards = ('psnr',) if args.check and rl_names else ()
    for reward in dict.fromkeys(check_rewards + rewards):
      bench = JaxAMGAN(
          rl_steps.config_for(variant, reward, niqe_params or ''),
          jax_device, f'rl:{label}')
      init_s[f'amgan_rl {reward}'] = bench.init_s
      if reward in check_rewards:
        results['check'][f'amgan_rl {reward}'], bad = _checked(
            lambda: rl_steps.run_check(bench, torch_device, check.perturbed,
                                       check.FIRST_RTOL))
        failures += bad
      if reward not in rewards:
        continue
      for row in time_rl_stages(bench, rl_names, args.repeats, steps,
                                torch_device):
        rows.append(row)
        print(f'  {row}', flush=True)

  load = ', '.join(f'{x:.1f}' for x in os.getloadavg())
  inits = ', '.join(f'{k} {v:.1f} s' for k, v in init_s.items())
  print(f'\n{jax_device.device_kind} ({os.cpu_count()} CPUs, load '
        f'{", ".join(f"{x:.1f}" for x in load_start)} at start, {load} at '
        f'end), jax {jax.__version__}, torch {torch.__version__} with '
        f'{torch.get_num_threads()} threads; JAX init {inits}; median of '
        f'{args.repeats} interleaved calls of {steps} step(s)')
  print_table(rows)
  results.update(rows=rows, device=jax_device.device_kind, config=label,
                 repeats=args.repeats, steps_per_call=steps,
                 load_average_start=load_start,
                 load_average=os.getloadavg(), quick=args.quick)
  report.finish(results, args.json, failures, args.check,
                "forward outputs and two steps' losses of every stage agree "
                'within tolerance')


if __name__ == '__main__':
  main()
