"""The AMGAN-RL rows of benchmarks/amgan.py: configs, step inputs and the twin check of the 'fill' and 'ddpg' stages.

jaxsr's side is `jaxsr.methods.build(experiments/amgan_rl.py:<variant>)`
with the 'fill' stage's `enter` applied to `method.init`'s state (no
init_from: speed and agreement need no trained AMGAN); its stages are found
by name. The twin is benchmarks/torch_twin/amgan_rl.py. `run_check` takes
`fill_steps` 'fill' steps and then `ddpg_steps` 'ddpg' steps in both, from
the same weights (G, the actor and the critic perturbed, G's zero conv_last
redrawn so that the code changes the render, and the pretrained actor set
to the perturbed actor by `enter`), the twin fed the LR, code, exploration
noise and minibatch indices that jaxsr's step draws from fold_in(rng, step)
(reproduced here with the library's own functions), so that both buffers
hold the same transitions and the first critic and actor losses are
computed on the same minibatch.
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import torch

from jaxsr.methods import amgan
from jaxsr.metrics.niqe import default_params_path
from jaxsr.metrics.niqe import load_pristine_params
from jaxsr.metrics.niqe import niqe
from jaxsr.rl import replay

import configs  # benchmarks/configs.py, beside this script.
from torch_twin import amgan_rl as twin
from torch_twin import check as twin_check

STAGES = ('fill', 'ddpg')
REWARDS = ('psnr', 'niqe')
FILL_METRICS = ('reward', 'score', 'code_mse', 'buffer_size')
DDPG_METRICS = FILL_METRICS + ('critic_loss', 'actor_loss', 'box_penalty',
                               'q_mean', 'minibatch_reward')
# Metrics of the updated critic, or after an actor step: check.STEP_RTOL.
AFTER_UPDATE = ('actor_loss',)
# Rewards are differences of two scores of the 8-bit renders: float32
# noise in a render flips a pixel's rounding now and then, which moves a
# 16 px render's PSNR by ~1e-4 dB (the 4-image mean by ~4e-5). The check's
# rewards (code_sensitive G) are ~1e-3 on the tiny config.
REWARD_ATOL = 1e-4
SHARED_NIQE = (configs.REPO.parent / 'shared' / 'data' / 'niqe'
               / 'niqe_pris_params.npz')


def niqe_params_path(path: str = '') -> str | None:
  """The NIQE pristine model: path if given, else $JAXSR_NIQE_PARAMS or the
  assets cache, else ../shared's copy; None when it does not exist."""
  for candidate in ((path,) if path else (default_params_path(),
                                          SHARED_NIQE)):
    if candidate and pathlib.Path(candidate).is_file():
      return str(candidate)
  return None


def config_for(variant: str | None, reward: str, niqe_params: str = ''):
  """experiments/amgan_rl.py:<variant> (unlocked) with config.rl.reward =
  reward; the paper config reads the embedded images (the step never
  does)."""
  if reward not in REWARDS:
    raise ValueError(f'reward {reward!r}; expected one of {REWARDS}')
  config = configs.experiment('amgan_rl', variant)
  config.features.update(vgg19='random', dists='random', dists_vgg16='random')
  if config.data.source == 'folder':
    config.data.source = 'demo'
  config.rl.update(reward=reward, niqe_params=niqe_params)
  return config


def niqe_host(config):
  """uint8 (N, H, W, 3) -> (N,) -NIQE: the numpy function jaxsr's step
  calls back to the host (`jaxsr.rl.rewards.niqe_reward`)."""
  params = load_pristine_params(config.rl.niqe_params or None)
  crop = int(config.rl.crop_border)
  return lambda images: np.asarray(
      [-niqe(im, crop_border=crop, params=params) for im in images],
      np.float32)


def sizes(config, stage: str) -> str:
  """The table's config column."""
  m, p, rl = config.model, config.predictor, config.rl
  hr, s = config.data.hr_patch, config.scale
  text = (f'{rl.reward} reward, AMNet {m.num_feat}f x {m.num_block} renders '
          f'2 x HR {hr} px x{s}, actor predictor {p.num_feat}f')
  if stage == 'ddpg':
    text += (f', critic {tuple(rl.critic_features)} + '
             f'{tuple(rl.critic_hidden)}, minibatch {rl.batch_size} of '
             f'{rl.capacity}')
  return text


def entered(bench, state):
  """state after the 'fill' stage's enter (the pretrained actor kept)."""
  return jax.jit(bench.stage('fill').enter)(state)


def code_sensitive(g_params, spread):
  """G's params with every AMLayer's input weights divided by the code's
  spread per component and its heads at fan-in scale (x 10, undoing
  amnet.head_init's 0.1; host arrays): the code then moves the render as a
  trained AMNet's would (one spread of any component changes the
  modulation by O(1)), so that the rewards the check compares stand well
  above the 8-bit rounding of the renders."""
  def walk(tree):
    tree = dict(tree)
    for key, value in tree.items():
      if key == 'am':
        mlp = dict(value['mlp'])
        mlp['kernel'] = (np.asarray(mlp['kernel'])
                         / np.asarray(spread)[:, None]).astype(np.float32)
        heads = {k: {**value[k], 'kernel': 10. * np.asarray(value[k]['kernel'])}
                 for k in ('to_scale', 'to_shift')}
        tree[key] = {**value, 'mlp': mlp, **heads}
      elif isinstance(value, dict):
        tree[key] = walk(value)
    return tree
  return walk(g_params)


def perturbed_state(bench, state, perturbed):
  """The entered state with G, the actor and the critic `perturbed`, G made
  `code_sensitive`."""
  state = jax.device_get(state)
  rl = state.rl.replace(q_params=perturbed(state.rl.q_params, 3))
  g_params = code_sensitive(perturbed(state.g_params, 0), rl.code_spread)
  state = state.replace(g_params=g_params,
                        p_params=perturbed(state.p_params, 2), rl=rl)
  return jax.device_get(entered(bench, state))


def step_inputs(bench, name: str, state, hr) -> dict:
  """What stage `name`'s step draws at state.step (jaxsr.methods.amgan_rl's
  keys): {'lr', 'code', 'noise' (B, D) N(0, 1)} and, for 'ddpg', 'indices':
  the buffer positions of its minibatch."""
  c = bench.config
  key = jax.random.fold_in(bench.rng, state.step)
  if name == 'ddpg':
    key, sample_key = jax.random.split(key)
  deg_key, noise_key = jax.random.split(key)
  # The method's own sampler of config.degradation (amgan.Degradation).
  data = amgan.Degradation.from_config(c.degradation).batch(
      deg_key, hr, state.pca, int(c.scale))
  out = {'lr': data['lr'], 'code': data['code'],
         'noise': jax.random.normal(noise_key, data['code'].shape)}
  if name == 'ddpg':
    # The same draw on a buffer that holds its own positions.
    buffer = state.rl.buffer
    capacity = replay.capacity(buffer)
    positions = lambda b: b.replace(experience=jnp.arange(capacity)[None])
    added = replay.add(positions(buffer),
                       jnp.zeros((hr.shape[0],), jnp.int32))
    out['indices'] = replay.sample(positions(added), sample_key,
                                   int(c.rl.batch_size))
  return out


def make_twin(bench, state, device) -> twin.AMGANRLTwin:
  """The twin of bench.config with state's weights and buffer."""
  config = bench.config
  niqe = niqe_host(config) if config.rl.reward == 'niqe' else None
  t = twin.AMGANRLTwin(config, state.pca.mean, state.pca.basis, device,
                       niqe=niqe)
  t.load(jax.device_get(state))
  return t


def twin_step(t: twin.AMGANRLTwin, name: str):
  """The twin's step of stage `name`: (hr, inputs=None) -> metrics."""
  return t.fill_step if name == 'fill' else t.ddpg_step


def jax_steps(bench, state, hr: np.ndarray, fill_steps: int = 2,
              ddpg_steps: int = 2) -> dict:
  """fill_steps 'fill' then ddpg_steps 'ddpg' jaxsr steps from (host)
  state: {'hr', name: [(inputs, {metric: float})]}, on the host."""
  batch = {'hr': jax.device_put(hr, bench.device)}
  state = jax.device_put(state, bench.device)
  inputs_fn = jax.jit(step_inputs, static_argnums=(0, 1))
  ref = {'hr': hr}
  for name, num in (('fill', fill_steps), ('ddpg', ddpg_steps)):
    compiled = bench.compile(name, state, batch)
    ref[name] = []
    for _ in range(num):
      inputs = jax.device_get(inputs_fn(bench, name, state, batch['hr']))
      state, metrics = compiled(state, batch, bench.rng, bench.constants)
      ref[name].append((inputs, {k: float(v) for k, v in
                                 jax.device_get(metrics).items()}))
  return ref


def twin_steps(t: twin.AMGANRLTwin, ref: dict, device) -> dict:
  """{name: [{metric: (jaxsr, twin)}]}: the twin's steps on ref's inputs."""
  tensor = lambda x: torch.tensor(np.asarray(x), dtype=torch.float32,
                                  device=device)
  t_hr = twin_check.nchw(ref['hr']).to(device)
  out = {}
  for name in STAGES:
    out[name] = []
    for inputs, metrics in ref.get(name, ()):
      kwargs = {'data': {'lr': twin_check.nchw(inputs['lr']).to(device),
                         'code': tensor(inputs['code'])},
                'noise': tensor(inputs['noise'])}
      if 'indices' in inputs:
        kwargs['indices'] = torch.as_tensor(np.array(inputs['indices']),
                                            dtype=torch.long, device=device)
      got = twin_step(t, name)(t_hr, **kwargs)
      out[name].append({k: (metrics[k], float(v)) for k, v in got.items()})
  return out


def failures(rows: dict, first_rtol: float) -> list[str]:
  """Lines naming each metric of twin_steps' rows outside its tolerance:
  what comes before any update (every 'fill' metric, 'ddpg' step 0's but
  its actor loss) within first_rtol, the rest within check.STEP_RTOL,
  relative to max(1, |jaxsr|); rewards within REWARD_ATOL + rtol |jaxsr|."""
  bad = []
  for name, steps in rows.items():
    expected = set(FILL_METRICS if name == 'fill' else DDPG_METRICS)
    for j, row in enumerate(steps):
      if set(row) != expected:
        bad.append(f'stage {name} step {j}: metrics {sorted(row)}, expected '
                   f'{sorted(expected)}')
      for k, (ref, got) in row.items():
        first = name == 'fill' or (j == 0 and k not in AFTER_UPDATE)
        rtol = first_rtol if first else twin_check.STEP_RTOL
        tol = (REWARD_ATOL + rtol * abs(ref) if k.endswith('reward')
               else rtol * max(1., abs(ref)))
        if abs(ref - got) > tol:
          bad.append(f'stage {name} step {j} {k}: jaxsr {ref:.7g} vs twin '
                     f'{got:.7g}')
  return bad


def run_check(bench, device, perturbed, first_rtol: float,
              fill_steps: int = 2, ddpg_steps: int = 2
              ) -> tuple[dict, list[str]]:
  """The stages' agreement from perturbed weights; (results, bad)."""
  state = perturbed_state(bench, bench.state, perturbed)
  ref = jax_steps(bench, state, bench.hr(2), fill_steps, ddpg_steps)
  rows = twin_steps(make_twin(bench, state, device), ref, device)
  for name, steps in rows.items():
    print(f'stage {name} ({bench.config.rl.reward} reward), {len(steps)} '
          'steps (jaxsr, twin, |diff|)')
    for j, row in enumerate(steps):
      for k, (r, g) in row.items():
        print(f'  step {j} {k:<16} {r:+.7f}  {g:+.7f}  {abs(r - g):.2g}')
  return rows, failures(rows, first_rtol)

