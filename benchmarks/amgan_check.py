"""The jaxsr-vs-twin check of AMGAN's 'sr' and 'predictor' steps (benchmarks/amgan.py --check).

`bench` is benchmarks/amgan.py's JaxAMGAN (the method built from a config,
its state, the jitted stage steps). The twin (benchmarks/torch_twin/amgan.py)
is loaded with the same (perturbed) weights and fed the LR, code and anchors
that jaxsr's step draws from fold_in(rng, step); the forward outputs of every
network and the losses of two steps of each stage must agree.
"""

import jax
import jax.numpy as jnp
import numpy as np
import torch

from jaxsr.losses import dists as dists_lib
from jaxsr.losses import realness
from jaxsr.methods import amgan
from jaxsr.models import vgg

from torch_twin import amgan as twin
from torch_twin import check as twin_check

FIRST_RTOL = 1e-4  # Step 0's D loss: no update precedes it.
SR_LOSSES = ('d_loss', 'g_total', 'g_pixel', 'g_vgg', 'g_adv', 'g_dists')


def step_inputs(bench, name: str, state, hr) -> tuple[dict, tuple]:
  """The degraded batch ({'lr', 'code'}) and anchors (A1, A0) or None that
  stage `name`'s step draws at state.step: jaxsr.methods.amgan's keys."""
  c = bench.config
  key = jax.random.fold_in(bench.rng, state.step)
  anchors = None
  if name == 'sr':
    key, anchor_key = jax.random.split(key)
    anchors = realness.sample_anchors(anchor_key, int(c.disc.num_outcomes),
                                      c.loss.anchors)
  # The method's own sampler of config.degradation (amgan.Degradation).
  data = amgan.Degradation.from_config(c.degradation).batch(
      key, hr, state.pca, int(c.scale))
  return {k: data[k] for k in ('lr', 'code')}, anchors


def perturbed(params, seed: int):
  """params + N(0, 0.01^2) (torch_twin.check._perturbed), and every
  all-zero kernel (the demo G's conv_last under bicubic_skip) drawn at
  PyTorch's default scale N(0, 1 / fan_in), so that the body's output
  weighs as much as the bicubic skip's in the comparisons; float32 numpy."""
  rng = np.random.default_rng(seed + 100)

  def restart(p, q):
    p = np.asarray(p)
    if p.ndim < 2 or np.any(p):
      return q
    fan_in = int(np.prod(p.shape[:-1]))
    return rng.normal(0., fan_in**-0.5, p.shape).astype(np.float32)

  # pylint: disable-next=protected-access
  return jax.tree.map(restart, params, twin_check._perturbed(params, seed))


def _perturbed_state(state):
  """The state with G, D and P params perturbed (host arrays)."""
  state = jax.device_get(state)
  return state.replace(g_params=perturbed(state.g_params, 0),
                       d_params=perturbed(state.d_params, 1),
                       p_params=perturbed(state.p_params, 2))


def twin_of(bench, state, device) -> twin.AMGANTwin:
  t = twin.AMGANTwin(bench.config, state.pca.mean, state.pca.basis, device)
  t.load(jax.device_get(state), jax.device_get(bench.constants))
  return t


def _jax_forward(bench):
  """A jitted (state, constants, lr, code, hr) -> {network: output}."""
  g, p, d = amgan.build_networks(bench.config)
  feat = vgg.VGG(depth=19, layers=tuple(bench.config.loss.vgg_layers))

  def forward(state, consts, lr, code, hr):
    sr = g.apply({'params': state.g_params}, lr, code)
    out = {'AMNet': sr, 'predictor': p.apply({'params': state.p_params}, lr)}
    out['D (train)'], _ = d.apply(
        {'params': state.d_params, 'batch_stats': state.d_batch_stats}, hr,
        train=True, mutable=['batch_stats'])
    feats = feat.apply({'params': consts['vgg19']}, hr)
    out.update({f'vgg19 {k}': v for k, v in feats.items()})
    if 'dists' in consts:
      out['DISTS'] = dists_lib.dists(sr, hr, consts['dists'])
    return out
  return jax.jit(forward)


def forward_diffs(bench, state, device) -> dict:
  """{network: (max |jaxsr - twin|, max |jaxsr|)} on one degraded batch."""
  # pylint: disable=protected-access
  t = twin_of(bench, state, device)
  hr = jnp.asarray(bench.hr(1))
  data, _ = _inputs_fn(bench, 'predictor')(state, hr)
  lr, code = data['lr'], data['code']
  ref = jax.device_get(_jax_forward(bench)(state, bench.constants, lr, code,
                                           hr))
  t_lr, t_hr = (twin_check.nchw(x).to(device) for x in (lr, hr))
  t_code = _tensor(code, device)
  with torch.no_grad():
    sr = t.g(t_lr, t_code)
    got = {'AMNet': sr, 'predictor': t.p(t_lr), 'D (train)': t.d(t_hr)}
    got.update({f'vgg19 {k}': v for k, v in t.feat(t_hr).items()})
    if t.alpha is not None:
      # On jaxsr's SR, so that only DISTS' own difference shows.
      got['DISTS'] = twin.dists(t.dists_vgg, twin_check.nchw(
          ref['AMNet']).to(device), t_hr, t.alpha, t.beta)
  return {k: twin_check._diff(ref[k], got[k]) for k in ref}


def _tensor(x, device) -> torch.Tensor:
  """An array as a float32 tensor on device (a copy: jax arrays are
  read-only)."""
  return torch.tensor(np.asarray(x), dtype=torch.float32, device=device)


def _inputs_fn(bench, name: str):
  """step_inputs of stage `name`, jitted: (state, hr) -> (data, anchors)."""
  return jax.jit(lambda state, hr: step_inputs(bench, name, state, hr))


def jax_steps(bench, name: str, state, num_steps: int = 2
              ) -> dict:
  """num_steps jaxsr steps of stage `name` from (host) state, with what the
  twin needs to repeat them: {'hr', 'inputs': [(data, anchors)],
  'metrics': [{name: float}]}, all on the host."""
  hr = bench.hr(2)
  batch = {'hr': jax.device_put(hr, bench.device)}
  state = jax.device_put(state, bench.device)
  compiled = bench.compile(name, state, batch)
  inputs_fn = _inputs_fn(bench, name)
  ref = {'hr': hr, 'inputs': [], 'metrics': []}
  for _ in range(num_steps):
    ref['inputs'].append(jax.device_get(inputs_fn(state, batch['hr'])))
    state, metrics = compiled(state, batch, bench.rng, bench.constants)
    ref['metrics'].append({k: float(v)
                           for k, v in jax.device_get(metrics).items()})
  return ref


def twin_steps(t: twin.AMGANTwin, name: str, ref: dict, device
               ) -> list[dict]:
  """[{loss: (jaxsr, twin)}]: the twin's steps of stage `name` on the
  inputs of `ref` (jax_steps), against its metrics."""
  t_hr = twin_check.nchw(ref['hr']).to(device)
  t_step = t.sr_step if name == 'sr' else t.predictor_step
  rows = []
  for (data, anchors), metrics in zip(ref['inputs'], ref['metrics']):
    t_data = {'lr': twin_check.nchw(data['lr']).to(device),
              'code': _tensor(data['code'], device)}
    kwargs = {} if anchors is None else {
        'anchors': tuple(_tensor(a, device) for a in anchors)}
    got = t_step(t_hr, t_data, **kwargs)
    rows.append({k: (metrics[k], float(v)) for k, v in got.items()})
  return rows


def loss_failures(name: str, rows: list[dict]) -> list[str]:
  """Lines naming each loss of twin_steps' rows outside its tolerance."""
  bad = []
  for j, row in enumerate(rows):
    for k, (ref, got) in row.items():
      first = j == 0 and k in ('d_loss', 'p_code_mse')
      rtol = FIRST_RTOL if first else twin_check.STEP_RTOL
      if abs(ref - got) > rtol * max(1., abs(ref)):
        bad.append(f'stage {name} step {j} {k}: jaxsr {ref:.7g} vs twin '
                   f'{got:.7g}')
  return bad


def run_check(bench, device, num_steps: int = 2,
              stages=('sr', 'predictor')) -> tuple[dict, list[str]]:
  """Forward and num_steps-step agreement of the stages; (results, bad)."""
  state = _perturbed_state(bench.state)
  forward = forward_diffs(bench, state, device)
  results, bad = {'forward': forward, 'steps': {}}, []
  bad += twin_check.failures(forward, {})
  print('\nforward outputs, perturbed weights (max |jaxsr - twin|, max '
        '|jaxsr|)')
  for k, (diff, scale) in forward.items():
    print(f'  {k:<15} {diff:.3g}  ({scale:.3g})')
  for name in stages:
    ref = jax_steps(bench, name, state, num_steps)
    rows = twin_steps(twin_of(bench, state, device), name, ref, device)
    results['steps'][name] = rows
    bad += loss_failures(name, rows)
    print(f'stage {name}, {num_steps} steps (jaxsr, twin, |diff|)')
    for j, row in enumerate(rows):
      for k, (r, g) in row.items():
        print(f'  step {j} {k:<10} {r:+.7f}  {g:+.7f}  {abs(r - g):.2g}')
  return results, bad


# Timing -------------------------------------------------------------------
