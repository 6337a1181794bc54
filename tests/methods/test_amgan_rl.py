"""AMGAN-RL (paper 003, Algorithm 1): the 'fill' and 'ddpg' stages on the tiny config.

Truth: the transitions and rewards are recomputed independently (the
degradation from its key, the reward in numpy), the critic's loss from the
sampled transitions, the frozen parts compared bit for bit, and a run killed
during 'fill' resumes to the uninterrupted run's state.
"""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr import checkpoint
from jaxsr import methods
from jaxsr import restore
from jaxsr import train
from jaxsr.data import degradations
from jaxsr.methods import amgan
from jaxsr.rl import replay
from tests import helpers


def _config(**overrides):
  return helpers.experiment_config('amgan_rl', 'tiny', **overrides)


def _changed(a, b) -> bool:
  return any(not np.array_equal(x, y) for x, y in zip(
      jax.tree.leaves(a), jax.tree.leaves(b)))


def _psnr_np(sr, hr):
  sr = np.round(np.clip(np.asarray(sr, np.float64), 0, 1) * 255)
  hr = np.round(np.clip(np.asarray(hr, np.float64), 0, 1) * 255)
  mse = np.mean((sr - hr) ** 2, axis=(1, 2, 3))
  return 10 * np.log10(255.0**2 / mse)


def _critic_code(p, state, s, a):
  """What the critic reads besides s: the code and the pretrained
  predictor's code of s, both divided by the codes' spread."""
  rl = state.rl
  a0 = p.apply({'params': rl.actor0_params}, s)
  standard = lambda x: (np.clip(x, rl.code_low, rl.code_high)
                        - rl.code_mean) / rl.code_spread
  return jnp.concatenate([standard(a), standard(a0)], axis=-1)


@pytest.fixture(scope='module')
def played():
  """(config, method, state0, (state after one fill step, metrics), (after
  one ddpg step on top, metrics), batch, rng) from a fresh tiny state."""
  config = _config(**{'rl.fill_steps': 1, 'rl.ddpg_steps': 1})
  method = methods.build(config)
  assert [s.name for s in method.stages] == ['fill', 'ddpg']
  fill, ddpg_stage = method.stages
  state0 = jax.jit(fill.enter)(method.init(jax.random.key(0)))
  batch = {'hr': jnp.asarray(np.random.default_rng(0).random(
      (4, 16, 16, 3), np.float32))}
  rng = jax.random.key(1)
  state1, m1 = jax.jit(fill.step)(state0, batch, rng, {})
  state2, m2 = jax.jit(ddpg_stage.step)(state1, batch, rng, {})
  return config, method, state0, (state1, m1), (state2, m2), batch, rng


def test_fill_stores_the_played_transitions(played):
  config, _, state0, (state1, metrics), _, batch, rng = played
  buf = state1.rl.buffer
  assert int(replay.size(buf)) == 4
  # The states are the batch's LR, degraded with the step's key.
  key = jax.random.fold_in(rng, state0.step)
  k_deg, k_noise = jax.random.split(key)
  data = degradations.random_degradation(
      k_deg, batch['hr'], scale=4, pca=state0.pca, sigma_range=(0.2, 4.0))
  s = np.asarray(buf.experience.s[0, :4])
  np.testing.assert_allclose(s, data['lr'], atol=1e-6)
  # Actions: the predictor's code plus N(0, (0.3 * spread)^2) noise.
  g, p, _ = amgan.build_networks(config)
  mu = p.apply({'params': state0.p_params}, data['lr'])
  noise = np.asarray(jax.random.normal(k_noise, mu.shape))
  a = np.asarray(buf.experience.a[0, :4])
  rl = state0.rl
  np.testing.assert_allclose(
      a, np.clip(np.asarray(mu) + 0.3 * np.asarray(rl.code_spread) * noise,
                 rl.code_low, rl.code_high), atol=1e-5)
  # Rewards: PSNR (tiny's score) of the render of (s, a), less that of the
  # pretrained predictor's render (the baseline), in numpy.
  sr = g.apply({'params': state0.g_params}, data['lr'], jnp.asarray(a))
  sr0 = g.apply({'params': state0.g_params}, data['lr'],
                np.clip(mu, rl.code_low, rl.code_high))
  want = _psnr_np(sr, batch['hr']) - _psnr_np(sr0, batch['hr'])
  np.testing.assert_allclose(buf.experience.r[0, :4], want, rtol=1e-4,
                             atol=1e-4)
  np.testing.assert_allclose(metrics['reward'], want.mean(), rtol=1e-4,
                             atol=1e-4)
  np.testing.assert_allclose(metrics['score'],
                             _psnr_np(sr, batch['hr']).mean(), rtol=1e-5)
  # Nothing but the buffer (and the step) moved.
  for field in ('g_params', 'd_params', 'p_params', 'pca'):
    assert not _changed(getattr(state0, field), getattr(state1, field)), field
  assert not _changed(state0.rl.q_params, state1.rl.q_params)


def test_ddpg_trains_actor_and_critic_never_the_renderer(played):
  _, _, _, (state1, _), (state2, metrics), _, _ = played
  assert _changed(state1.p_params, state2.p_params)  # The actor.
  assert _changed(state1.rl.q_params, state2.rl.q_params)  # The critic.
  for field in ('g_params', 'g_opt_state', 'd_params', 'd_batch_stats',
                'p_opt_state', 'pca'):
    assert not _changed(getattr(state1, field), getattr(state2, field)), field
  assert not _changed(state1.rl.actor0_params, state2.rl.actor0_params)
  assert int(replay.size(state2.rl.buffer)) == 8
  for k in ('critic_loss', 'actor_loss', 'q_mean', 'reward'):
    assert np.isfinite(metrics[k]), k


def test_the_critic_regresses_the_sampled_rewards(played):
  # squared_td with one-step episodes: the loss is mean (r_i - Q(s_i, a_i))^2
  # over the minibatch drawn from the buffer after this step's batch is in.
  config, _, _, (state1, _), (state2, metrics), _, rng = played
  key = jax.random.fold_in(rng, state1.step)
  _, sample_key = jax.random.split(key)
  minibatch = replay.sample(state2.rl.buffer, sample_key, 4)
  critic = amgan.amgan_rl.Settings.from_config(config).critic()
  _, p, _ = amgan.build_networks(config)
  q = critic.apply({'params': state1.rl.q_params}, minibatch.s,
                   _critic_code(p, state1, minibatch.s, minibatch.a))
  want = np.mean((np.asarray(minibatch.r, np.float64) - np.asarray(q)) ** 2)
  np.testing.assert_allclose(metrics['critic_loss'], want, rtol=1e-4)
  # The actor's loss is -mean Q(s, mu(s)) through the updated critic.
  a = p.apply({'params': state1.p_params}, minibatch.s)
  q_new = critic.apply({'params': state2.rl.q_params}, minibatch.s,
                       _critic_code(p, state1, minibatch.s, a))
  np.testing.assert_allclose(metrics['actor_loss'], -np.mean(q_new),
                             rtol=1e-4, atol=1e-6)


def test_the_critic_loss_as_written():
  config = _config(**{'rl.critic_loss': 'as_written', 'rl.fill_steps': 1,
                      'rl.ddpg_steps': 1})
  method = methods.build(config)
  fill, ddpg_stage = method.stages
  state = method.init(jax.random.key(0))
  batch = {'hr': jnp.asarray(np.random.default_rng(2).random(
      (4, 16, 16, 3), np.float32))}
  rng = jax.random.key(3)
  state, _ = jax.jit(fill.step)(state, batch, rng, {})
  state2, metrics = jax.jit(ddpg_stage.step)(state, batch, rng, {})
  _, sample_key = jax.random.split(jax.random.fold_in(rng, state.step))
  minibatch = replay.sample(state2.rl.buffer, sample_key, 4)
  critic = amgan.amgan_rl.Settings.from_config(config).critic()
  _, p, _ = amgan.build_networks(config)
  q = np.asarray(critic.apply({'params': state.rl.q_params}, minibatch.s,
                              _critic_code(p, state, minibatch.s,
                                           minibatch.a)), np.float64)
  r = np.asarray(minibatch.r, np.float64)
  # Algorithm 1 line 7: 1/N sum_i max(0, -gamma Q_i) + (r_i - Q_i), gamma .99.
  want = np.mean(np.maximum(0.0, -0.99 * q) + (r - q))
  np.testing.assert_allclose(metrics['critic_loss'], want, rtol=1e-4)


def test_rl_needs_a_trained_amgan(tmp_path):
  with pytest.raises(ValueError, match='init_from'):
    train.train_and_evaluate(_config(), str(tmp_path / 'rl'))
  assert not os.path.exists(tmp_path / 'rl' / 'config.json')


@pytest.mark.parametrize('overrides, match', [
    ({'rl.reward': 'lpips'}, 'config.rl.reward'),
    ({'rl.critic_loss': 'huber'}, 'config.rl.critic_loss'),
    ({'rl.tau': 0.1}, 'unknown key'),
    ({'rl.reward': 'niqe'}, '96'),  # 16 px renders: no NIQE block.
])
def test_bad_rl_configs_name_the_problem(overrides, match):
  with pytest.raises(ValueError, match=match):
    methods.build(_config(**overrides))


def test_kills_during_fill_and_ddpg_resume_to_the_same_run(tmp_path, amgan_tiny_run):
  config = _config(init_from=str(amgan_tiny_run), **{'rl.fill_steps': 3})
  workdir = str(tmp_path / 'rl')
  first = train.train_and_evaluate(config, workdir)
  assert int(first.step) == 5  # 3 fill + 2 ddpg (no step is copied).
  # The renderer, D and the PCA are the AMGAN run's, untouched.
  source = checkpoint.load_raw(str(amgan_tiny_run))
  for a, b in zip(jax.tree.leaves(first.g_params),
                  jax.tree.leaves(source['g_params'])):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(first.pca.basis, source['pca']['basis'])
  # The pretrained actor is kept; the trained one moved.
  for a, b in zip(jax.tree.leaves(first.rl.actor0_params),
                  jax.tree.leaves(source['p_params'])):
    np.testing.assert_array_equal(a, b)
  assert _changed(first.p_params, first.rl.actor0_params)
  # A kill after step 2 (inside 'fill', 2 x 4 transitions stored): the
  # rerun resumes there, buffer and all, and ends in the same state.
  for step in (3, 4, 5):
    shutil.rmtree(os.path.join(checkpoint.checkpoint_dir(workdir), str(step)))
  os.remove(os.path.join(workdir, 'rl_results.json'))
  again = train.train_and_evaluate(config, workdir)
  assert int(replay.size(again.rl.buffer)) == 16
  for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5,
                               atol=1e-6)
  # And a kill inside 'ddpg' (after its first step): no `enter` on resume,
  # the same last step.
  shutil.rmtree(os.path.join(checkpoint.checkpoint_dir(workdir), '5'))
  os.remove(os.path.join(workdir, 'rl_results.json'))
  third = train.train_and_evaluate(config, workdir)
  for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(third)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5,
                               atol=1e-6)
  # The held-out report: pretrained vs trained actor vs true code.
  import json  # pylint: disable=g-import-not-at-top
  with open(os.path.join(workdir, 'rl_results.json')) as f:
    results = json.load(f)
  assert results['step'] == 5 and results['reward'] == 'psnr'
  assert [r['width'] for r in results['rows']] == [1.3]
  assert set(results['mean']) == {'pretrained', 'pretrained_in_box',
                                  'trained', 'true_code'}
  # A restored RL run super-resolves with its trained actor.
  model = restore.load_model(workdir)
  lr = np.random.default_rng(1).random((1, 5, 6, 3), np.float32)
  assert model.predict(lr).shape == (1, 20, 24, 3)
  _, p, _ = amgan.build_networks(config)
  # ... with its trained actor's code clipped to the action box.
  rl = again.rl
  np.testing.assert_allclose(
      model.predict_code(lr),
      np.clip(p.apply({'params': again.p_params}, jnp.asarray(lr)),
              rl.code_low, rl.code_high), atol=1e-6)


def test_the_action_box_clips_and_penalizes_by_hand():
  import types  # pylint: disable=g-import-not-at-top
  rl = types.SimpleNamespace(code_low=jnp.array([-1.0, 0.0]),
                             code_high=jnp.array([1.0, 2.0]),
                             code_spread=jnp.array([0.5, 2.0]))
  a = jnp.array([[2.0, 1.0], [-1.5, 3.0], [0.0, 0.5]])
  np.testing.assert_array_equal(amgan.amgan_rl.in_box(rl, a),
                                [[1, 1], [-1, 2], [0, 0.5]])
  # Outside by (1, 0), (0.5, 1), (0, 0) -> / spread -> squares summed:
  # 4, 1 + 0.25, 0; mean 5.25 / 3.
  np.testing.assert_allclose(amgan.amgan_rl.box_penalty(rl, a), 5.25 / 3,
                             rtol=1e-6)


def test_code_statistics_of_the_training_codes():
  config = _config()
  pca = amgan.fit_pca(config)
  deg = amgan.Degradation.from_config(config.degradation)
  key = jax.random.key(5)
  stats = amgan.amgan_rl.code_statistics(key, pca, deg, 512)
  # The same draws, encoded in numpy: (flat - mean) @ basis.
  kernels = np.asarray(degradations.random_kernels(
      jax.random.split(key)[0], 512, (0.2, 4.0), 1.0, 3.0, 21), np.float64)
  codes = ((kernels.reshape(512, -1) - np.asarray(pca.mean, np.float64))
           @ np.asarray(pca.basis, np.float64))
  np.testing.assert_allclose(stats['mean'], codes.mean(0), atol=1e-5)
  np.testing.assert_allclose(stats['spread'], codes.std(0), rtol=1e-3)
  np.testing.assert_allclose(stats['low'], codes.min(0), atol=1e-5)
  np.testing.assert_allclose(stats['high'], codes.max(0), atol=1e-5)
