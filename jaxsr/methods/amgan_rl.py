"""AMGAN-RL (paper 003, Algorithm 1): the actor-critic stages 'fill' and 'ddpg' on top of a trained AMGAN.

The environment is the frozen AMGAN renderer G (AMNet, `jaxsr.models.amnet`)
and the degradation sampler of the 'sr' stage: a state s is the LR of a
training HR patch degraded on the fly (random kernel, fold_in(rng, step)),
an action a is a degradation code, the rendered result is s' = G(s, a) and
the reward r a score of s' (`jaxsr.rl.rewards`: -NIQE by default, a host
metric that is never differentiated; PSNR against the HR as an option).
The actor μ is the kernel predictor (pretrained by the 'predictor' stage),
the critic Q(s, a) `jaxsr.models.critic.Critic`. G, D and the PCA are never
updated here.

- 'fill' (Algorithm 1 lines 2-5 without 6-8): each step plays one batch,
  a = μ(s) + exploration noise, and stores (s, a, r, s') in the replay buffer
  kept in the state (`jaxsr.rl.replay`, checkpointed with everything else, so
  a run killed while filling resumes with what it had stored).
- 'ddpg' (lines 2-8): each step plays one batch and stores it, samples a
  minibatch of config.rl.batch_size transitions, takes one critic step
  (`config.rl.critic_loss`) and then one actor step on the deterministic
  policy gradient through the updated critic (`jaxsr.rl.ddpg`).

Choices the paper leaves open (ours, each a config value):
- An episode is one LR image, one code and one reward (a one-step contextual
  bandit): s' (an SR image) is not an LR observation, so nothing is
  bootstrapped, no target networks are used, and the buffer stores a
  placeholder 0 for s' (the render is not needed by either loss).
- Critic loss: 'squared_td' (y = r) by default. Algorithm 1's line 7 as
  written ('as_written') has a gradient that does not depend on r (it pushes
  Q up without bound: jaxsr/rl/ddpg.py), so its critic cannot rank codes
  and the actor cannot improve the reward; it stays available for fidelity.
- The action space is a box, as DDPG's: each code component within the
  range of `spread_samples` training codes (`code_statistics`; the renderer
  never saw codes outside it, and the small PCA components span 1e-4
  where the first spans 1). Played actions are clipped into it; the actor's
  loss adds `box_penalty` (its squared distance outside the box, in units
  of each component's spread), without which the DPG step drove the minor
  components of the demo's codes to 1e4 spreads, where the critic's input
  exploded. Exploration (DDPG's Gaussian action noise) is
  N(0, (explore_std * c)^2) with c the per-component spread, and the
  critic reads the code standardized by the same statistics.
- Critic input ('code_and_pretrained', default): Q(s, a) reads the LR
  through its convs, the code and the pretrained predictor's code for s
  (a fixed function of s, given as a state feature: with the baseline
  below, the critic learns how the score changes as a moves away from
  the pretrained code, which it could otherwise only infer from pixels).
  'code': the code alone.
- Rewards are clipped to [-reward_clip, reward_clip] (DQN's clipping; 0
  turns it off): NIQE of a patch has heavy tails (the demo's relative
  rewards: 1st-99th percentiles -15.5 .. 3.6, extremes -49 and 9.7), which
  dominate a squared loss.
- The reward stored is the score of the render minus the score of the
  pretrained predictor's render of the same LR (`baseline='pretrained'`):
  the baseline depends on s only, so the best code of every image is the
  same as for the raw score, but the image content's large share of the
  score (NIQE of a patch swings by tens between images, the code moves it
  by tenths) is taken out of what the critic has to learn. 'none' stores
  the raw score, as Algorithm 1 reads. The pretrained actor is kept
  (`RLState.actor0_params`, copied when 'fill' or 'ddpg' starts) for this
  and for `finish`, which reports the held-out score of the pretrained
  predictor next to the trained actor's (rl_results.json).
"""

import dataclasses
import json
import os
from typing import Any

from absl import logging
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsr import config_lib
from jaxsr.data import degradations
from jaxsr.metrics.niqe import load_pristine_params
from jaxsr.models import critic as critic_lib
from jaxsr.rl import ddpg
from jaxsr.rl import replay
from jaxsr.rl import rewards

RL_KEYS = {'fill_steps', 'ddpg_steps', 'capacity', 'batch_size',
           'explore_std', 'reward', 'niqe_params', 'crop_border',
           'critic_loss', 'gamma', 'critic_lr', 'actor_lr', 'critic_features',
           'critic_hidden', 'eval_widths', 'spread_samples', 'baseline',
           'reward_clip', 'critic_input'}
CRITIC_INPUTS = ('code', 'code_and_pretrained')
BASELINES = ('pretrained', 'none')
RESULTS_FILE = 'rl_results.json'


@flax.struct.dataclass
class RLState:
  """The actor-critic's part of AMGANState (the actor's weights are
  AMGANState.p_params)."""
  q_params: Any
  q_opt_state: Any
  actor_opt_state: Any
  actor0_params: Any
  code_mean: jax.Array
  code_spread: jax.Array
  code_low: jax.Array
  code_high: jax.Array
  buffer: replay.BufferState


@dataclasses.dataclass(frozen=True)
class Settings:
  """config.rl as the steps read it (static)."""
  fill_steps: int
  ddpg_steps: int
  capacity: int
  batch_size: int
  explore_std: float
  reward: str
  niqe_params: str
  crop_border: int
  critic_loss: str
  gamma: float
  critic_lr: float
  actor_lr: float
  critic_features: tuple[int, ...]
  critic_hidden: tuple[int, ...]
  eval_widths: tuple[float, ...]
  spread_samples: int
  baseline: str
  reward_clip: float
  critic_input: str

  @classmethod
  def from_config(cls, config) -> 'Settings':
    if 'rl' not in config:  # A workdir written before AMGAN-RL existed.
      return cls(0, 0, 1, 1, 0.0, 'psnr', '', 0, 'squared_td', 0.0, 1e-3,
                 1e-4, (32,), (), (1.3,), 2, 'none', 0.0, 'code')
    rl = config.rl
    config_lib.check_keys(rl, RL_KEYS, 'rl')
    if rl.reward not in rewards.REWARDS:
      raise ValueError(f'config.rl.reward={rl.reward!r}; expected one of '
                       f'{rewards.REWARDS}')
    if rl.baseline not in BASELINES:
      raise ValueError(f'config.rl.baseline={rl.baseline!r}; expected one of '
                       f'{BASELINES}')
    if rl.critic_input not in CRITIC_INPUTS:
      raise ValueError(f'config.rl.critic_input={rl.critic_input!r}; '
                       f'expected one of {CRITIC_INPUTS}')
    if rl.critic_loss not in ddpg.CRITIC_LOSSES:
      raise ValueError(f'config.rl.critic_loss={rl.critic_loss!r}; expected '
                       f'one of {ddpg.CRITIC_LOSSES}')
    if min(rl.fill_steps, rl.ddpg_steps, rl.capacity - 1,
           rl.batch_size - 1) < 0:
      raise ValueError('config.rl: fill_steps and ddpg_steps must be >= 0, '
                       'capacity and batch_size >= 1')
    settings = cls(
        fill_steps=int(rl.fill_steps), ddpg_steps=int(rl.ddpg_steps),
        capacity=int(rl.capacity), batch_size=int(rl.batch_size),
        explore_std=float(rl.explore_std), reward=rl.reward,
        niqe_params=rl.niqe_params, crop_border=int(rl.crop_border),
        critic_loss=rl.critic_loss, gamma=float(rl.gamma),
        critic_lr=float(rl.critic_lr), actor_lr=float(rl.actor_lr),
        critic_features=tuple(rl.critic_features),
        critic_hidden=tuple(rl.critic_hidden),
        eval_widths=tuple(float(w) for w in rl.eval_widths),
        spread_samples=int(rl.spread_samples), baseline=rl.baseline,
        reward_clip=float(rl.reward_clip), critic_input=rl.critic_input)
    if settings.enabled:
      rewards.check_render_size(settings.reward, config.data.hr_patch,
                                settings.crop_border)
      if config.data.batch_size > settings.capacity:
        raise ValueError(
            f'config.rl.capacity={settings.capacity} is smaller than one '
            f'played batch (config.data.batch_size={config.data.batch_size})')
    return settings

  @property
  def enabled(self) -> bool:
    return bool(self.fill_steps or self.ddpg_steps)

  def critic(self) -> critic_lib.Critic:
    return critic_lib.Critic(features=self.critic_features,
                             hidden=self.critic_hidden)

  def reward_fn(self):
    """(sr, hr) -> (N,) rewards; loads the NIQE model now (host)."""
    if self.reward == 'psnr':
      return rewards.psnr_reward
    params = load_pristine_params(self.niqe_params or None)
    score = rewards.niqe_reward(params, self.crop_border)
    return lambda sr, hr: score(sr)


def code_statistics(key, pca, degradation, num: int) -> dict:
  """Per code component over `num` codes drawn from the training
  degradations (the noise level's column included): 'mean', 'spread' (the
  standard deviation) and the action box 'low'/'high' (the range drawn)."""
  size = int(np.sqrt(pca.basis.shape[0]))
  k_kernel, k_noise = jax.random.split(key)
  kernels = degradations.random_kernels(
      k_kernel, num, degradation.sigma_range, degradation.rate_iso,
      degradation.scaling, size)
  codes = degradations.encode(pca, kernels)
  if degradation.noise_max > 0:
    k_level, k_clean = jax.random.split(k_noise)
    level = jax.random.uniform(k_level, (num,), maxval=degradation.noise_max)
    clean = jax.random.uniform(k_clean, (num,)) < degradation.rate_clean
    noise = jnp.where(clean, 0.0, level) * degradation.noise_code_scale
    codes = jnp.concatenate([codes, noise[:, None]], axis=1)
  return {'mean': jnp.mean(codes, axis=0),
          'spread': jnp.maximum(jnp.std(codes, axis=0), 1e-6),
          'low': jnp.min(codes, axis=0), 'high': jnp.max(codes, axis=0)}


def init_state(key, *, settings: Settings, critic, actor_tx, critic_tx,
               p_params, pca, degradation, lr_size: int,
               dim: int) -> RLState:
  """A fresh critic, empty buffer and optimizer states (actor0 = p_params)."""
  q_key, spread_key = jax.random.split(key)
  lr = jnp.zeros((1, lr_size, lr_size, 3), jnp.float32)
  width = dim * (2 if settings.critic_input == 'code_and_pretrained' else 1)
  q_params = critic.init(q_key, lr, jnp.zeros((1, width),
                                              jnp.float32))['params']
  example = replay.Transition(
      s=lr[0], a=jnp.zeros((dim,), jnp.float32), r=jnp.zeros((), jnp.float32),
      s_next=jnp.zeros((), jnp.float32))
  return RLState(
      q_params=q_params, q_opt_state=critic_tx.init(q_params),
      actor_opt_state=actor_tx.init(p_params), actor0_params=p_params,
      **{f'code_{k}': v for k, v in code_statistics(
          spread_key, pca, degradation, settings.spread_samples).items()},
      buffer=replay.init(settings.capacity, example))


def enter(state):
  """Before the first RL step: the pretrained actor is kept as actor0 and
  the actor's optimizer restarts from it (init_from replaced p_params)."""
  rl = state.rl
  return state.replace(rl=rl.replace(actor0_params=state.p_params))


def _play(state, batch, key, *, g, p, degradation, settings, reward_fn,
          scale, explore: bool):
  """One played batch: (transitions, metrics) with G, μ frozen."""
  k_deg, k_noise = jax.random.split(key)
  data = degradation.batch(k_deg, batch['hr'], state.pca, scale)
  lr = data['lr']
  action = p.apply({'params': state.p_params}, lr)
  if explore:
    action = action + (settings.explore_std * state.rl.code_spread
                       * jax.random.normal(k_noise, action.shape))
  action = jax.lax.stop_gradient(in_box(state.rl, action))
  render = lambda a: g.apply({'params': state.g_params}, lr, a)
  hr = data['hr']
  if settings.baseline == 'pretrained':
    # One call scores both renders (one host round trip per step).
    baseline_action = in_box(state.rl,
                             p.apply({'params': state.rl.actor0_params}, lr))
    both = reward_fn(jnp.concatenate([render(action),
                                      render(baseline_action)]),
                     jnp.concatenate([hr, hr]))
    score, baseline = jnp.split(both, 2)
  else:
    score = reward_fn(render(action), hr)
    baseline = jnp.zeros_like(score)
  r = score - baseline
  if settings.reward_clip:
    r = jnp.clip(r, -settings.reward_clip, settings.reward_clip)
  r = jax.lax.stop_gradient(r)
  transitions = replay.Transition(
      s=lr, a=action, r=r, s_next=jnp.zeros((lr.shape[0],), jnp.float32))
  return transitions, {
      'reward': jnp.mean(r), 'score': jnp.mean(score),
      'code_mse': jnp.mean(jnp.square(action - data['code']))}


def fill_step(state, batch, rng, constants, *, g, p, degradation, settings,
              reward_fn, scale):
  """Algorithm 1 lines 2-5: play one batch and store it."""
  del constants
  key = jax.random.fold_in(rng, state.step)
  transitions, metrics = _play(state, batch, key, g=g, p=p,
                               degradation=degradation, settings=settings,
                               reward_fn=reward_fn, scale=scale, explore=True)
  buffer = replay.add(state.rl.buffer, transitions)
  metrics['buffer_size'] = replay.size(buffer).astype(jnp.float32)
  return (state.replace(step=state.step + 1,
                        rl=state.rl.replace(buffer=buffer)),
          metrics)


def critic_fn(critic, p, rl: RLState, settings: Settings):
  """(params, s, a) -> Q: the critic reads the code clipped to the box and
  standardized ((a - mean) / spread), and with
  critic_input='code_and_pretrained' also the pretrained predictor's code
  for s (a fixed function of s: a state feature), the same way."""
  def standard(a):
    return (in_box(rl, a) - rl.code_mean) / rl.code_spread

  def apply(params, s, a):
    x = standard(a)
    if settings.critic_input == 'code_and_pretrained':
      a0 = jax.lax.stop_gradient(p.apply({'params': rl.actor0_params}, s))
      x = jnp.concatenate([x, standard(a0)], axis=-1)
    return critic.apply({'params': params}, s, x)
  return apply


def in_box(rl: RLState, a: jax.Array) -> jax.Array:
  """a clipped to the action box (the range of the training codes)."""
  return jnp.clip(a, rl.code_low, rl.code_high)


def box_penalty(rl: RLState, a: jax.Array) -> jax.Array:
  """mean_i sum_d (distance of a_id outside the box / spread_d)^2: keeps the
  actor's codes where the renderer was trained (0 inside the box)."""
  out = (jax.nn.relu(a - rl.code_high) + jax.nn.relu(rl.code_low - a))
  return jnp.mean(jnp.sum(jnp.square(out / rl.code_spread), axis=-1))


def ddpg_step(state, batch, rng, constants, *, g, p, critic, actor_tx,
              critic_tx, degradation, settings, reward_fn, scale):
  """Algorithm 1 lines 2-8: play and store one batch, then one critic and
  one actor update on a sampled minibatch."""
  del constants
  key = jax.random.fold_in(rng, state.step)
  play_key, sample_key = jax.random.split(key)
  transitions, metrics = _play(state, batch, play_key, g=g, p=p,
                               degradation=degradation, settings=settings,
                               reward_fn=reward_fn, scale=scale, explore=True)
  rl = state.rl
  buffer = replay.add(rl.buffer, transitions)
  minibatch = replay.sample(buffer, sample_key, settings.batch_size)
  critic_apply = critic_fn(critic, p, rl, settings)

  def actor_apply(params, s):
    return p.apply({'params': params}, s)

  critic_loss, q_grads = jax.value_and_grad(ddpg.critic_objective)(
      rl.q_params, minibatch, critic_apply=critic_apply,
      kind=settings.critic_loss, gamma=settings.gamma)
  updates, q_opt_state = critic_tx.update(q_grads, rl.q_opt_state,
                                          rl.q_params)
  q_params = optax.apply_updates(rl.q_params, updates)
  def actor_objective(params):
    dpg = ddpg.actor_loss(params, q_params, minibatch.s,
                          actor_apply=actor_apply, critic_apply=critic_apply)
    penalty = box_penalty(rl, actor_apply(params, minibatch.s))
    return dpg + penalty, (dpg, penalty)

  (_, (actor_loss, penalty)), a_grads = jax.value_and_grad(
      actor_objective, has_aux=True)(state.p_params)
  updates, actor_opt_state = actor_tx.update(a_grads, rl.actor_opt_state,
                                             state.p_params)
  p_params = optax.apply_updates(state.p_params, updates)
  q = critic_apply(rl.q_params, minibatch.s, minibatch.a)
  metrics.update({
      'critic_loss': critic_loss, 'actor_loss': actor_loss,
      'box_penalty': penalty,
      'q_mean': jnp.mean(q), 'minibatch_reward': jnp.mean(minibatch.r),
      'buffer_size': replay.size(buffer).astype(jnp.float32)})
  rl = rl.replace(q_params=q_params, q_opt_state=q_opt_state,
                  actor_opt_state=actor_opt_state, buffer=buffer)
  return state.replace(step=state.step + 1, p_params=p_params, rl=rl), metrics


def policy_code(state, lr: jax.Array, *, p) -> jax.Array:
  """The code an AMGAN(-RL) state reads from lr: the predictor's output,
  clipped to the action box when the state has trained with RL."""
  code = p.apply({'params': state.p_params}, lr)
  return code if state.rl is None else in_box(state.rl, code)


COLUMNS = ('pretrained', 'pretrained_in_box', 'trained', 'true_code')


def held_out_rewards(state, dataset, *, g, p, settings: Settings, scale: int,
                     kernel_size: int) -> dict:
  """Per image and width, the score of the render (no baseline) with the
  code of: the pretrained predictor as AMGAN uses it ('pretrained'), the
  same clipped to the action box ('pretrained_in_box': what the box alone
  gives), the trained actor as `predict` uses it ('trained', clipped), and
  the true kernel ('true_code', an oracle); on whole held-out images
  degraded deterministically (`degradations.degrade_image`)."""
  reward_fn = jax.jit(settings.reward_fn())
  render = jax.jit(lambda lr, code: g.apply({'params': state.g_params}, lr,
                                            code))
  codes = jax.jit(lambda params, lr: p.apply({'params': params}, lr))
  noise_coded = state.pca.basis.shape[1] != state.rl.code_spread.shape[0]
  rows = []
  for i, name in enumerate(dataset.names):
    hr = dataset.load_hr(i)
    hr_x = jnp.asarray(hr[None], jnp.float32) / 255.0
    for width in settings.eval_widths:
      lr = jnp.asarray(degradations.degrade_image(hr, width, scale,
                                                  kernel_size)[None],
                       jnp.float32) / 255.0
      kernel = jnp.asarray(degradations.gaussian_kernel_np(
          width, kernel_size)[None], jnp.float32)
      true = degradations.encode(state.pca, kernel)
      if noise_coded:
        true = jnp.concatenate([true, jnp.zeros_like(true[:, :1])], axis=1)
      pretrained = codes(state.rl.actor0_params, lr)
      row = {'image': name, 'width': width}
      for label, code in zip(COLUMNS, (
          pretrained, in_box(state.rl, pretrained),
          in_box(state.rl, codes(state.p_params, lr)), true)):
        row[label] = float(reward_fn(render(lr, code), hr_x)[0])
      rows.append(row)
  mean = {k: float(np.mean([r[k] for r in rows])) for k in COLUMNS}
  return {'reward': settings.reward, 'rows': rows, 'mean': mean}


def finish(state, workdir: str, *, g, p, settings: Settings, held_out, scale,
           kernel_size) -> None:
  """Writes rl_results.json (held_out_rewards) once per final step."""
  path = os.path.join(workdir, RESULTS_FILE)
  step = int(state.step)
  if os.path.exists(path):
    with open(path) as f:
      if json.load(f).get('step') == step:
        return
  dataset = held_out()
  if dataset is None:
    logging.warning('AMGAN-RL: no held-out images, %s not written',
                    RESULTS_FILE)
    return
  results = held_out_rewards(state, dataset, g=g, p=p, settings=settings,
                             scale=scale, kernel_size=kernel_size)
  results['step'] = step
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(results, f, indent=1)
  os.replace(tmp, path)
  m = results['mean']
  logging.info(
      'AMGAN-RL held-out score (%s, %d images x widths %s): pretrained '
      'predictor %.4f (%.4f in the box), trained actor %.4f, true code %.4f',
      settings.reward, len(dataset.names), settings.eval_widths,
      m['pretrained'], m['pretrained_in_box'], m['trained'], m['true_code'])
