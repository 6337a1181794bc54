"""Times SinGAN's training iteration, jaxsr next to its PyTorch twin.

  python benchmarks/singan.py --quick --check --json /tmp/singan_bench.json
  python benchmarks/singan.py --repeats 5 --json out.json   # paper pyramid
  python benchmarks/singan.py --device gpu

Prints two Markdown tables. Per scale (the coarsest, a middle and the
finest of the pyramid: the demo pyramid with --quick, else the paper
config's on the embedded image), the seconds per 100 iterations of
jaxsr's jitted stage step, compiled as the loop compiles it (steps per call
= the stage's, `steps_per_call_auto()`: 1 on CPU, 50 on GPU), and of the
twin (benchmarks/torch_twin/singan.py) drawing its own noise and coarser
samples, median of --repeats interleaved calls after a warm-up, with JAX's
compile seconds and the ratio JAX/torch (> 1: JAX slower). Then the whole
demo pyramid (`experiments/singan.py:demo`) scale after scale, both
frameworks from the same initial weights: every iteration of the config
(iters_per_scale), or with --pyramid_iters a sample per scale after one
warm-up call, scaled up to iters_per_scale (the output says which); each
scale's warm start and noise amplitude count, JAX's compiles do not. Its
JAX/torch ratio is `ratio` in the --json output.

`--check` first loads the JAX scale-0 variables into the twin and asserts
that the forward outputs of G (training and eval mode) and D agree, and
that one iteration's losses agree for adversarial modes none ('demo,ttur')
and adaptive ('demo'), the twin fed the noise map and GP scalars that the
JAX step draws from its keys.
"""

import argparse
import math
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
from jaxsr.methods import singan
from jaxsr.models import singan as nets

import configs  # benchmarks/configs.py, beside this script.
import report  # benchmarks/report.py.
from torch_twin import check as twin_check
from torch_twin import singan as twin

FORWARD_RTOL = 1e-4  # Of max(1, max |output|), as torch_twin/check.py.
# Last-step losses: they follow Adam steps of D (and G), whose update
# m / (sqrt(v) + eps) amplifies float noise where a gradient is ~eps.
LOSS_RTOL = 2e-3
LOSSES = ('d_loss', 'd_real', 'd_fake', 'gp', 'g_adv', 'g_rec', 'sigma')


def _copy(tree):
  """Fresh buffers of a pytree (the jitted steps donate their state)."""
  return jax.tree.map(jnp.copy, tree)


class JaxSinGAN:
  """One config's jaxsr method, its initial state and compiled stages."""

  def __init__(self, config, device, state=None, variant: str = ''):
    self.config = config
    self.variant = variant  # experiments/singan.py's config string.
    self.device = device
    _, _, self.net = singan.image_and_nets(config)
    self.method = methods.build(config)
    t0 = time.perf_counter()
    if state is None:
      state = self.method.init(base.init_key(config.seed))
    self.state = jax.block_until_ready(jax.device_put(state, device))
    self.init_s = time.perf_counter() - t0
    self.constants = jax.device_put(self.method.constants(), device)
    self.rng = jax.random.fold_in(jax.random.key(config.seed), 1)  # train.py
    self.compiled, self.compile_s = {}, {}

  def stage(self, n: int) -> base.Stage:
    """Scale n's stage of the method."""
    return self.method.stages[n]

  def step(self, n: int, k: int | None = None):
    """Stage n's step, k per call (default: the stage's), compiled once."""
    k = k or self.stage(n).steps_per_call
    if ('step', n, k) not in self.compiled:
      t0 = time.perf_counter()
      # pylint: disable-next=protected-access
      fn = jax.jit(train._runner(self.stage(n), k), donate_argnums=0)
      self.compiled['step', n, k] = fn.lower(
          self.state, {}, self.rng, self.constants).compile()
      self.compile_s['step', n, k] = time.perf_counter() - t0
    return self.compiled['step', n, k]

  def enter(self, n: int):
    """Stage n's enter (warm start, noise amplitude), compiled once."""
    if ('enter', n) not in self.compiled:
      t0 = time.perf_counter()
      fn = jax.jit(self.stage(n).enter, donate_argnums=0)
      self.compiled['enter', n] = fn.lower(self.state).compile()
      self.compile_s['enter', n] = time.perf_counter() - t0
    return self.compiled['enter', n]

  def entered(self, n: int):
    """A copy of the initial state as stage n begins (enter run)."""
    return jax.block_until_ready(self.enter(n)(_copy(self.state)))

  def call(self, n: int, state):
    """One call of stage n's step: (state, metrics), waited for."""
    out = self.step(n)(state, {}, self.rng, self.constants)
    return jax.block_until_ready(out)


def _torch(x, device) -> torch.Tensor:
  """NHWC array -> NCHW float32 tensor on device."""
  return twin_check.nchw(x).to(device)


def twin_at(config, state, n: int, device) -> twin.SinGANScaleTwin:
  """The twin of scale n with the coarser G's frozen, all from a jaxsr
  state (entered at scale n)."""
  sizes = [tuple(r.shape[:2]) for r in state.reals]
  frozen = twin.FrozenPyramid(sizes[:n + 1], device)
  m = config.model
  for i in range(n):
    g = twin.Generator(twin.features_at(i, m.base_features, m.max_features))
    twin.load(g, state.g[i])
    frozen.add(g.to(device), float(state.noise_amp[i]),
               _torch(state.z_opt[i], device))
  return twin.SinGANScaleTwin(
      config, state.g[n], state.d[n], _torch(state.reals[n][None], device),
      scale=n, u=np.asarray(state.u[n]), coarser=frozen,
      noise_amp=float(state.noise_amp[n]),
      z_opt=_torch(state.z_opt[n], device))


def _sync(device: torch.device) -> None:
  if device.type == 'cuda':
    torch.cuda.synchronize(device)


def _diff(ref, got: torch.Tensor) -> tuple[float, float]:
  """(max |ref - got|, max |ref|) of an NHWC ref and an NCHW twin output."""
  ref = np.asarray(ref, np.float64).transpose(0, 3, 1, 2)
  got = got.detach().cpu().double().numpy()
  if ref.shape != got.shape:
    raise AssertionError(f'jaxsr output {ref.shape} vs twin {got.shape}')
  return float(np.max(np.abs(ref - got))), float(np.max(np.abs(ref)))


# --check ------------------------------------------------------------------

def _perturbed(variables, seed: int):
  """Params + N(0, 0.01^2), BN means + N(0, 0.1^2), variances x e^N(0, 0.1^2)
  (so that eval mode reads non-trivial running statistics)."""
  rng = np.random.default_rng(seed)

  def leaf(path, x):
    x = np.asarray(x, np.float32)
    noise = rng.standard_normal(x.shape).astype(np.float32)
    name = getattr(path[-1], 'key', '')
    if name == 'var':
      return x * np.exp(0.1 * noise)
    return x + (0.1 if name == 'mean' else 0.01) * noise

  return jax.tree_util.tree_map_with_path(leaf, variables)


def forward_diffs(bench: JaxSinGAN, device) -> dict:
  """{net: (max |jaxsr - twin|, max |jaxsr|)} of scale 0's G and D."""
  state = bench.state
  gen, disc = bench.net.gens[0], bench.net.discs[0]
  g_vars, d_vars = _perturbed(state.g[0], 0), _perturbed(state.d[0], 1)
  h, w = bench.net.sizes[0]
  rng = np.random.default_rng(2)
  x = rng.standard_normal((1, h + 2 * nets.PAD, w + 2 * nets.PAD, 3),
                          np.float32)
  y = rng.uniform(-1, 1, x.shape).astype(np.float32)
  real = np.asarray(state.reals[0])[None]
  t_g = twin.load(twin.Generator(gen.features), g_vars).to(device)
  t_d = twin.load(twin.Discriminator(disc.features), d_vars).to(device)
  tx, ty, treal = (_torch(a, device) for a in (x, y, real))
  out = {}
  with torch.no_grad():
    # Eval first: a training-mode call advances the running statistics.
    ref = gen.apply(g_vars, x, y, train=False)
    out['G eval'] = _diff(ref, t_g.eval()(tx, ty))
    ref = gen.apply(g_vars, x, y, train=True, mutable=['batch_stats'])[0]
    out['G train'] = _diff(ref, t_g.train()(tx, ty))
    ref = disc.apply(d_vars, real, train=True, mutable=['batch_stats'])[0]
    out['D train'] = _diff(ref, t_d.train()(treal))
  return out


def step_inputs(bench: JaxSinGAN, state):
  """Scale 0's noise map (1, H+10, W+10, 3) and the d_steps GP scalars
  that `_scale_step` / `_d_step` draw at state.step from the run's rng."""
  key = jax.random.fold_in(bench.rng, state.step)
  k_noise, k_d = jax.random.split(key)
  h, w = bench.net.sizes[0]
  # singan_generate.noise at scale 0: one grey channel; then .pad.
  z = jnp.broadcast_to(jax.random.normal(k_noise, (1, h, w, 1)), (1, h, w, 3))
  p = nets.PAD
  z = jnp.pad(z, ((0, 0), (p, p), (p, p), (0, 0)))
  alphas = []
  for j in range(int(bench.config.loss.d_steps)):
    _, k_gp = jax.random.split(jax.random.fold_in(k_d, j))
    # pixel_gradient_penalty: one U[0, 1) scalar for the batch.
    alphas.append(float(jax.random.uniform(k_gp, (), dtype=jnp.float32)))
  return np.asarray(z), alphas


def step_diffs(bench: JaxSinGAN, device) -> dict:
  """{loss: (jaxsr, twin)} after one scale-0 iteration from the same state."""
  state = bench.entered(0)
  t = twin_at(bench.config, state, 0, device)
  z, alphas = step_inputs(bench, state)
  zeros = torch.zeros_like(t.z_opt)
  got = t.iteration(_torch(z, device), zeros,
                    float(state.noise_amp[0]) * t.z_opt, zeros, alphas)
  _, metrics = jax.device_get(
      bench.step(0, 1)(state, {}, bench.rng, bench.constants))
  return {k: (float(metrics[k]), got[k]) for k in LOSSES if k in got}


def run_check(bench: JaxSinGAN, device) -> tuple[dict, list]:
  """Forward and one-iteration agreement for modes none and adaptive."""
  results, bad = {'forward': forward_diffs(bench, device)}, []
  print('\nscale 0 forward outputs (max |jaxsr - twin|, max |jaxsr|)')
  for name, (diff, scale) in results['forward'].items():
    print(f'  {name:<8} {diff:.3g}  ({scale:.3g})')
    if diff > FORWARD_RTOL * max(1., scale):
      bad.append(f'{name}: max |diff| {diff:.3g}')
  for variant in ('demo,ttur', 'demo'):
    config = configs.experiment('singan', variant)
    # The same pyramid and widths: the timed state serves every variant.
    checked = bench if variant == bench.variant else JaxSinGAN(
        config, bench.device, bench.state, variant)
    mode = config.adversarial.mode
    losses = step_diffs(checked, device)
    results[mode] = losses
    print(f'scale 0, one iteration, mode {mode} (jaxsr, twin, |diff|)')
    for name, (ref, got) in losses.items():
      print(f'  {name:<7} {ref:+.7f}  {got:+.7f}  {abs(ref - got):.2g}')
      if abs(ref - got) > LOSS_RTOL * max(1., abs(ref)):
        bad.append(f'mode {mode} {name}: jaxsr {ref:.7g} vs twin {got:.7g}')
  return results, bad


# Timing ------------------------------------------------------------------

def time_scale(bench: JaxSinGAN, n: int, repeats: int, device) -> dict:
  """Seconds per 100 iterations at scale n, JAX and twin interleaved."""
  k = bench.stage(n).steps_per_call
  bench.step(n)  # Compiled before anything is timed.
  state = bench.entered(n)
  t = twin_at(bench.config, state, n, device)

  def jax_call():
    nonlocal state
    state, _ = bench.call(n, state)

  def torch_call():
    for _ in range(k):
      t.free_iteration()
    _sync(device)

  jax_call()
  torch_call()
  times = report.alternating_times({'jax': jax_call, 'torch': torch_call},
                                   repeats)
  jax_s = 100 * statistics.median(times['jax']) / k
  torch_s = 100 * statistics.median(times['torch']) / k
  h, w = bench.net.sizes[n]
  return {'scale': n, 'size': [h, w], 'features': bench.net.gens[n].features,
          'steps_per_call': k, 'compile_s': bench.compile_s['step', n, k],
          'jax_s_per_100': jax_s, 'torch_s_per_100': torch_s,
          'ratio': jax_s / torch_s,
          # max / min call time: > 1.5 says another process disturbed it.
          'jax_spread': max(times['jax']) / min(times['jax']),
          'torch_spread': max(times['torch']) / min(times['torch'])}


def time_pyramid(bench: JaxSinGAN, sample: int, device) -> dict:
  """The whole pyramid in both frameworks, scale after scale."""
  iters = int(bench.config.singan.iters_per_scale)
  scales = range(len(bench.net.sizes))
  for n in scales:  # Every compile before the clock starts.
    bench.step(n)
    bench.enter(n)
  compile_s = sum(bench.compile_s['step', n, bench.stage(n).steps_per_call]
                  + bench.compile_s['enter', n] for n in scales)
  init = jax.device_get(bench.state)  # Host copies: JAX donates `state`.
  state = _copy(bench.state)
  pyramid = twin.TwinPyramid(
      bench.config, [_torch(r[None], device) for r in init.reals],
      g_vars=init.g, d_vars=init.d, z_opt0=_torch(init.z_opt[0], device))
  rows = []
  for n in scales:
    k = bench.stage(n).steps_per_call
    calls = math.ceil((sample or iters) / k)
    done = calls * k  # Iterations timed at this scale.
    factor = iters / done if sample else 1.

    def run_jax():
      nonlocal state
      t0 = time.perf_counter()
      state = jax.block_until_ready(bench.enter(n)(state))
      enter_s = time.perf_counter() - t0
      if sample:
        state, _ = bench.call(n, state)  # Warm-up, untimed.
      t0 = time.perf_counter()
      for _ in range(calls):
        state, _ = bench.call(n, state)
      return enter_s, time.perf_counter() - t0

    def run_torch():
      t0 = time.perf_counter()
      t = pyramid.start_scale(n)
      _sync(device)
      enter_s = time.perf_counter() - t0
      for _ in range(k if sample else 0):
        t.free_iteration()  # Warm-up, untimed.
      _sync(device)
      t0 = time.perf_counter()
      for _ in range(done):
        t.free_iteration()
      _sync(device)
      run_s = time.perf_counter() - t0
      pyramid.finish_scale()
      return enter_s, run_s

    if n % 2 == 0:  # Alternating which framework goes first.
      (je, jr), (te, tr) = run_jax(), run_torch()
    else:
      (te, tr), (je, jr) = run_torch(), run_jax()
    rows.append({'scale': n, 'size': list(bench.net.sizes[n]),
                 'iters_timed': done, 'jax_s': je + jr * factor,
                 'torch_s': te + tr * factor, 'jax_enter_s': je,
                 'torch_enter_s': te})
    rows[-1]['ratio'] = rows[-1]['jax_s'] / rows[-1]['torch_s']
  jax_s = sum(r['jax_s'] for r in rows)
  torch_s = sum(r['torch_s'] for r in rows)
  return {'iters_per_scale': iters, 'sampled': bool(sample),
          'compile_s': compile_s, 'jax_s': jax_s, 'torch_s': torch_s,
          'ratio': jax_s / torch_s, 'scales': rows}


def print_tables(rows: list, pyramid: dict, title: str) -> None:
  print(f'\nPer-scale iteration, {title} pyramid (s per 100 iterations)\n')
  print('| scale | size | width | steps/call | JAX compile s | JAX s/100 it | '
        'torch s/100 it | JAX/torch |')
  print('|---|---|---|---|---|---|---|---|')
  for r in rows:
    print(f'| {r["scale"]} | {r["size"][0]}x{r["size"][1]} | '
          f'{r["features"]} | {r["steps_per_call"]} | {r["compile_s"]:.1f} | '
          f'{r["jax_s_per_100"]:.2f} | {r["torch_s_per_100"]:.2f} | '
          f'{r["ratio"]:.2f} |')
  spread = max(max(r['jax_spread'], r['torch_spread']) for r in rows)
  if spread > 1.5:
    print(f'\nNOTE: the slowest timed call was {spread:.1f}x the fastest of '
          'its row: the machine was busy (torch\'s OpenMP threads slow down '
          'most when another process shares the cores); rerun when idle.')
  iters = pyramid['iters_per_scale']
  scales = pyramid['scales']
  how = (f'{scales[0]["iters_timed"]} timed iterations per scale after one '
         f'warm-up call, scaled up to {iters}' if pyramid['sampled'] else
         f'all {iters} iterations per scale timed')
  print(f'\nWhole demo pyramid, {len(scales)} scales x {iters} iterations '
        f'({how}; JAX compiles {pyramid["compile_s"]:.1f} s, not counted)\n')
  print('| scale | size | JAX s | torch s | JAX/torch |')
  print('|---|---|---|---|---|')
  for r in scales:
    print(f'| {r["scale"]} | {r["size"][0]}x{r["size"][1]} | '
          f'{r["jax_s"]:.1f} | {r["torch_s"]:.1f} | {r["ratio"]:.2f} |')
  print(f'| all | | {pyramid["jax_s"]:.1f} | {pyramid["torch_s"]:.1f} | '
        f'**{pyramid["ratio"]:.2f}** |')


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument('--quick', action='store_true',
                      help='per-scale rows on the demo pyramid, the whole '
                      'pyramid sampled (a few CPU minutes)')
  parser.add_argument('--check', action='store_true',
                      help='assert the twin matches jaxsr before timing')
  parser.add_argument('--device', choices=('cpu', 'gpu'), default='cpu')
  parser.add_argument('--repeats', type=int, default=5,
                      help='timed calls per scale and framework')
  parser.add_argument('--pyramid_iters', type=int, default=None,
                      help='iterations timed per scale of the whole pyramid '
                      '(0: all of them; default 10 with --quick, else 0)')
  parser.add_argument('--torch_threads', type=int, default=os.cpu_count())
  parser.add_argument('--json', default=None, help='write the results here')
  args = parser.parse_args()
  if args.repeats < 1:
    parser.error(f'--repeats must be >= 1, got {args.repeats}')
  sample = args.pyramid_iters
  if sample is None:
    sample = 10 if args.quick else 0
  if args.device == 'cpu':
    # steps_per_call_auto() reads the default backend: make it the CPU's.
    jax.config.update('jax_platforms', 'cpu')
  jax_device = jax.devices(args.device)[0]
  if args.device == 'gpu' and not torch.cuda.is_available():
    parser.error(f'torch {torch.__version__} sees no CUDA device')
  torch_device = torch.device('cuda' if args.device == 'gpu' else 'cpu')
  torch.set_num_threads(args.torch_threads)
  # XLA:CPU flushes denormals; torch's Adam crawls on denormal moments.
  torch.set_flush_denormal(True)
  torch.backends.cudnn.benchmark = True
  torch.manual_seed(0)

  with jax.default_device(jax_device):
    demo = JaxSinGAN(configs.experiment('singan', 'demo'), jax_device,
                     variant='demo')
    results, failures = {}, []
    if args.check:
      results['check'], failures = run_check(demo, torch_device)
    if args.quick:
      bench, title = demo, 'demo'
    else:
      bench = JaxSinGAN(configs.experiment('singan'), jax_device)
      title = 'paper'
    last = len(bench.net.sizes) - 1
    rows = [time_scale(bench, n, args.repeats, torch_device)
            for n in sorted({0, (last + 1) // 2, last})]
    pyramid = time_pyramid(demo, sample, torch_device)

  load = ', '.join(f'{x:.1f}' for x in os.getloadavg())
  print(f'\n{jax_device.device_kind} ({os.cpu_count()} CPUs, load {load}), '
        f'jax {jax.__version__}, torch {torch.__version__} with '
        f'{torch.get_num_threads()} threads; method ttur_adaptive; JAX init '
        f'{bench.init_s:.1f} s; median of {args.repeats} interleaved calls')
  print_tables(rows, pyramid, title)
  results.update(ratio=pyramid['ratio'], pyramid=pyramid, scales=rows,
                 pyramid_config='demo', scales_config=title,
                 device=jax_device.device_kind, repeats=args.repeats,
                 load_average=os.getloadavg())
  report.finish(results, args.json, failures, args.check,
                "forward outputs and one iteration's losses agree within "
                'tolerance')


if __name__ == '__main__':
  main()
