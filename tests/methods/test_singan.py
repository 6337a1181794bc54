"""SinGAN (paper 004): stages, enter (warm start, noise amplitude), losses, attacks, resume, sampling, SR."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr import checkpoint
from jaxsr import methods
from jaxsr import train
from jaxsr.data import imresize
from jaxsr.data import single_image
from jaxsr.methods import base
from jaxsr.methods import singan
from jaxsr.methods import singan_generate
from jaxsr.models import singan as nets
from tests import helpers


def _config(arg='tiny', **overrides):
  return helpers.experiment_config('singan', arg, **overrides)


@pytest.fixture(scope='module')
def tiny():
  config = _config()
  method = methods.build(config)
  _, reals, net = singan.image_and_nets(config)
  return config, method, net, reals, method.init(base.init_key(0))


def test_one_stage_per_scale(tiny):
  config, method, net, reals, state = tiny
  assert [s.name for s in method.stages] == [
      f'scale_{n}' for n in range(len(net.sizes))]
  assert all(s.num_steps == config.singan.iters_per_scale
             for s in method.stages)
  assert method.num_devices == 1 and not method.tileable
  assert [r.shape[:2] for r in reals] == list(net.sizes)
  assert [tuple(r.shape[:2]) for r in state.reals] == list(net.sizes)
  # z_opt: grey N(0, 1) noise at scale 0 (padded by 5), zeros above.
  z0 = np.asarray(state.z_opt[0][0])
  assert z0.shape == (net.sizes[0][0] + 10, net.sizes[0][1] + 10, 3)
  np.testing.assert_array_equal(z0[..., 0], z0[..., 1])
  assert np.all(z0[:5] == 0) and np.std(z0[5:-5, 5:-5]) > 0.5
  assert all(not np.any(np.asarray(z)) for z in state.z_opt[1:])
  np.testing.assert_array_equal(state.noise_amp, 1.0)


def test_enter_sets_the_noise_amplitude_from_the_reconstruction_rmse(tiny):
  """noise_amp_n = 0.1 * RMSE(x_n, reconstruction from the coarser scales),
  recomputed here with G_0 in eval mode and numpy's MATLAB imresize."""
  _, method, net, reals, state = tiny
  entered = jax.jit(method.stages[1].enter)(state)
  z_in = state.z_opt[0]  # noise_amp_0 = 1, no coarser input.
  zeros = jnp.zeros_like(z_in)
  out = nets.Generator(net.gens[0].features).apply(state.g[0], z_in, zeros,
                                                   train=False)
  up = imresize.imresize(np.asarray(out[0], np.float64), 1 / net.factor)
  h, w = net.sizes[1]
  rec = np.clip(up, -1, 1)[:h, :w]
  rmse = np.sqrt(np.mean((np.asarray(reals[1], np.float64) - rec)**2))
  np.testing.assert_allclose(entered.noise_amp[1], 0.1 * rmse, rtol=1e-4)
  assert float(entered.noise_amp[0]) == 1.0


def _nets(widths, sizes):
  return singan_generate.Nets(
      gens=tuple(nets.Generator(w) for w in widths),
      discs=tuple(nets.Discriminator(w) for w in widths),
      sizes=tuple(sizes), factor=0.8)


def test_warm_start_copies_the_previous_scale_only_when_widths_match():
  net = _nets((4, 4, 8), ((20, 20), (25, 25), (31, 31)))
  rng = np.random.default_rng(0)
  reals = [rng.uniform(-1, 1, (*s, 3)).astype(np.float32) for s in net.sizes]
  tx = singan.optax.adam(1e-3)
  init = functools.partial(singan._init, net=net, reals=reals, g_tx=tx,  # pylint: disable=protected-access
                           d_tx=tx, target='last_layer')
  state = jax.jit(init)(jax.random.key(0))
  enter = jax.jit(singan._enter_scale, static_argnames=('n', 'net',  # pylint: disable=protected-access
                                                       'noise_amp_init'))
  one = enter(state, n=1, net=net, noise_amp_init=0.1)
  jax.tree.map(np.testing.assert_array_equal, one.g[1], state.g[0])
  jax.tree.map(np.testing.assert_array_equal, one.d[1], state.d[0])
  assert not np.array_equal(state.g[1]['params']['tail']['kernel'],
                            state.g[0]['params']['tail']['kernel'])
  two = enter(one, n=2, net=net, noise_amp_init=0.1)
  jax.tree.map(np.testing.assert_array_equal, two.g[2], state.g[2])
  jax.tree.map(np.testing.assert_array_equal, two.d[2], state.d[2])


def test_learning_rates_decay_at_the_official_milestone():
  config = _config('')
  sched = singan._schedule(5e-4, config.optim, 3)  # pylint: disable=protected-access
  # 3 updates per iteration: iteration 1600 starts at update 4800.
  np.testing.assert_allclose([float(sched(c)) for c in (0, 4799, 4800)],
                             [5e-4, 5e-4, 5e-5], rtol=1e-6)


def test_one_iteration_updates_scale_0_only_and_logs_eq_7(tiny):
  config, method, _, _, state = tiny
  new, m = jax.jit(method.stages[0].step)(state, {}, jax.random.key(0), {})
  m = jax.device_get(m)
  np.testing.assert_allclose(m['d_loss'], -m['d_real'] + m['d_fake'] + m['gp'],
                             rtol=1e-5, atol=1e-6)
  adv = config.adversarial  # 'ttur_adaptive': the switch decides.
  assert m['pgd'] == float(m['sigma'] < adv.kappa / (2 * adv.alpha))
  assert 0 < m['delta_norm'] <= max(adv.epsilon, adv.radius) * (1 + 1e-5)
  assert m['g_rec'] > 0 and m['noise_amp'] == 1.0
  for net in ('g', 'd'):
    assert not np.array_equal(
        getattr(new, net)[0]['params']['tail']['kernel'],
        getattr(state, net)[0]['params']['tail']['kernel'])
    jax.tree.map(np.testing.assert_array_equal, getattr(new, net)[1],
                 getattr(state, net)[1])
  assert int(new.step) == 1


@pytest.mark.parametrize('mode,target', [('fgm', 'last_layer'),
                                         ('pgd', 'last_layer'),
                                         ('adaptive', 'last_layer'),
                                         ('fgm', 'input'), ('none', 'input')])
def test_the_critic_step_and_its_attack(tiny, mode, target):
  """One D update of scale 0 (jaxsr.attacks wired to D's tail or input)."""
  config, _, net, _, state = tiny
  adv = config.adversarial
  attack = singan.Attack(mode=mode, target=target, epsilon=adv.epsilon,
                         radius=adv.radius, alpha=adv.alpha, steps=adv.steps,
                         kappa=adv.kappa, power_iters=20)
  losses = singan.Losses(alpha=10., gp_weight=0.1, d_steps=1, g_steps=1,
                         noise_amp=0.1)
  tx = singan.optax.adam(1e-3)
  real = state.reals[0][None]
  fake = jax.random.uniform(jax.random.key(1), real.shape) * 2 - 1
  layer = (state.d[0]['params']['tail']['kernel'] if target == 'last_layer'
           else state.d[0]['params']['body']['head']['conv']['kernel'])
  u = jnp.ones((layer.shape[-1],)) / np.sqrt(layer.shape[-1])
  step = jax.jit(lambda v, o, u: singan._d_step(  # pylint: disable=protected-access
      v, o, u, real, fake, jax.random.key(2), disc=net.discs[0], d_tx=tx,
      losses=losses, attack=attack))
  d_vars, _, _, m = step(state.d[0], tx.init(state.d[0]['params']), u)
  m = jax.device_get(m)
  np.testing.assert_allclose(m['d_loss'], -m['d_real'] + m['d_fake'] + m['gp'],
                             rtol=1e-5, atol=1e-6)
  if mode == 'fgm':
    np.testing.assert_allclose(m['delta_norm'], adv.epsilon, rtol=1e-4)
  elif mode == 'pgd':
    assert 0 < m['delta_norm'] <= adv.radius * (1 + 1e-5) and m['pgd'] == 1
  elif mode == 'adaptive':
    assert m['pgd'] == float(m['sigma'] < adv.kappa / (2 * adv.alpha))
  else:
    assert m['delta_norm'] == 0 and m['pgd'] == 0
  # sigma is the attacked layer's top singular value (before the update).
  w = np.asarray(layer)
  top = np.linalg.svd(w.transpose(3, 2, 0, 1).reshape(w.shape[3], -1),
                      compute_uv=False)[0]
  np.testing.assert_allclose(m['sigma'], top, rtol=1e-3)
  assert not np.array_equal(d_vars['params']['tail']['kernel'],
                            state.d[0]['params']['tail']['kernel'])


def test_a_scale_killed_midway_resumes_exactly(singan_tiny_run, tmp_path,
                                               monkeypatch):
  """Stopped right after the checkpoint of step 3 (inside scale 1, entered
  at step 2, one of its 2 iterations done): the rerun must not enter scale
  1 again, and ends where an uninterrupted run of the same config (the
  session's, tests/conftest.py) ends."""
  config = _config()
  _, straight = singan_tiny_run
  save = checkpoint.save

  class Killed(Exception):
    pass

  def save_then_die(mngr, step, state):
    save(mngr, step, state)
    if step == 3:
      mngr.wait_until_finished()
      raise Killed()

  monkeypatch.setattr(checkpoint, 'save', save_then_die)
  with pytest.raises(Killed):
    train.train_and_evaluate(config, str(tmp_path / 'b'))
  monkeypatch.setattr(checkpoint, 'save', save)
  resumed = train.train_and_evaluate(config, str(tmp_path / 'b'))
  assert int(resumed.step) == int(straight.step) == 2 * len(config_sizes(
      config)) == 4
  jax.tree.map(np.testing.assert_array_equal, straight,
               jax.device_get(resumed))


def config_sizes(config):
  return singan.image_and_nets(config)[2].sizes


def test_samples_at_any_size_and_from_a_start_scale(tiny):
  _, _, net, _, state = tiny
  key = jax.random.key(0)
  wide = jax.jit(lambda s, k: singan_generate.sample(
      s, k, net=net, num=3, scale_v=1.0, scale_h=1.5))
  samples = wide(state, key)
  h, w = net.sizes[-1]
  assert samples.shape == (3, h, round(1.5 * w), 3)
  assert not np.allclose(samples[0], samples[1])
  np.testing.assert_array_equal(samples, wide(state, key))
  # From the last scale: every coarser scale is the reconstruction, so the
  # samples differ only by the finest scale's noise.
  fine = jax.jit(lambda s, k: singan_generate.sample(
      s, k, net=net, num=2, start_scale=len(net.sizes) - 1))(state, key)
  assert fine.shape == (2, h, w, 3)
  with pytest.raises(ValueError, match='reconstruction noise'):
    singan_generate.sample(state, key, net=net, scale_v=2.0, start_scale=1)


@pytest.mark.parametrize('factor,size', [(4, (21, 17)), (2, (21, 17))])
def test_sr_is_exactly_factor_times_the_input(tiny, factor, size):
  _, method, net, _, state = tiny
  lr = jax.random.uniform(jax.random.key(1), (1, *size, 3)) * 2 - 1
  if factor == 4:  # The config's scale: what predict (evaluate) runs.
    sr = jax.jit(method.predict)(state, {'lr': (lr + 1) / 2},
                                 jax.random.key(2))
  else:
    sr = jax.jit(lambda s, x, k: singan_generate.super_resolve(
        s, x, k, net=net, factor=factor))(state, lr, jax.random.key(2))
  assert sr.shape == (1, factor * size[0], factor * size[1], 3)


def test_paint_input_and_generation(tiny):
  _, _, net, _, state = tiny
  paint = jax.random.uniform(jax.random.key(3), (1, 40, 50, 3)) * 2 - 1
  start = singan_generate.paint_input(state, paint, 1, net=net)
  assert start.shape == (1, *net.sizes[1], 3)
  out = singan_generate.sample(state, jax.random.key(0), net=net,
                               start_scale=1, inject=start)
  assert out.shape == (1, *net.sizes[-1], 3)
  with pytest.raises(ValueError, match='inject_scale'):
    singan_generate.paint_input(state, paint, 0, net=net)


def test_bad_configs_are_named():
  with pytest.raises(ValueError, match='adversarial.mode'):
    methods.build(_config(**{'adversarial.mode': 'fgsm'}))
  with pytest.raises(ValueError, match='adversarial.target'):
    methods.build(_config(**{'adversarial.target': 'first'}))
  with pytest.raises(ValueError, match='pyramid.task'):
    methods.build(_config(**{'pyramid.task': 'harmonize'}))
  with pytest.raises(ValueError, match='unknown variant'):
    helpers.load_experiment('singan', 'sr,ttur_pgdd')
  with pytest.raises(ValueError, match='one training variant'):
    helpers.load_experiment('singan', 'ttur,ttur_pgd')


def test_paper_values_are_the_default():
  config = helpers.load_experiment('singan')
  assert (config.pyramid.scale_factor, config.pyramid.min_size,
          config.pyramid.max_size) == (0.75, 25, 250)
  assert (config.loss.alpha, config.loss.gp_weight, config.loss.d_steps,
          config.loss.g_steps) == (10.0, 0.1, 3, 3)
  assert (config.optim.b1, config.optim.milestone, config.optim.gamma) == (
      0.5, 1600, 0.1)
  assert config.singan.iters_per_scale == 2000
  assert config.adversarial.mode == 'adaptive'
  assert config.adversarial.target == 'last_layer'
  sr = helpers.load_experiment('singan', 'sr')
  assert (sr.pyramid.task, sr.loss.alpha, sr.scale) == ('sr', 100.0, 4)
  plain = helpers.load_experiment('singan', 'singan')
  assert (plain.optim.lr_g, plain.optim.lr_d, plain.adversarial.mode) == (
      5e-4, 5e-4, 'none')
  assert helpers.load_experiment('singan', 'sr,ttur_pgd').adversarial.mode == (
      'pgd')


def test_demo_sr_trains_on_the_bicubic_lr_of_a_centre_crop():
  from jaxsr.data import demo  # pylint: disable=g-import-not-at-top
  config = _config('sr_demo')
  assert (config.data.crop, config.data.downscale) == (256, 4)
  assert helpers.load_experiment('singan', 'sr').data.downscale == 1
  (_, chelsea), = demo.load(['chelsea'])
  assert chelsea.shape == (300, 451, 3)
  hr = single_image.source_image(config.data)
  # Centre 256 x 256: rows 22..277, columns 97..352.
  np.testing.assert_array_equal(hr, chelsea[22:278, 97:353])
  lr = single_image.load_image(config.data)
  assert lr.shape == (64, 64, 3) and lr.dtype == np.uint8
  # MATLAB bicubic x1/4 with antialiasing: close to the 4x4 box mean.
  box = hr.reshape(64, 4, 64, 4, 3).astype(np.float64).mean((1, 3))
  assert np.mean(np.abs(lr - box)) < 4.0
  with pytest.raises(ValueError, match='crop=400 is larger'):
    single_image.source_image(_config('sr_demo', **{'data.crop': 400}).data)
