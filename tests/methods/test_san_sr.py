"""SAN-SR step: eq. 10 wiring, SAN after the D step, devices, smoke run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr import checkpoint
from jaxsr import methods
from jaxsr import sharding
from jaxsr import train
from jaxsr.losses import perceptual
from jaxsr.methods import base
from jaxsr.methods import san_sr
from jaxsr.models import layers
from jaxsr.models import vgg
from jaxsr.normalization import san
from tests import helpers


def _config(arg='tiny', **overrides):
  return helpers.experiment_config('san_sr', arg, **overrides)


_batch = helpers.random_batch


@pytest.fixture(scope='module')
def gan():
  """A tiny SAN-SR (no warm-up), its state, constants and one step's output."""
  config = _config(psnr_warmup_steps=0)
  method = methods.build(config)
  state = method.init(base.init_key(0))
  constants = method.constants()
  batch = _batch(config)
  rng = jax.random.key(0)
  new, metrics = jax.jit(method.stages[0].step)(state, batch, rng, constants)
  return config, method, state, constants, batch, rng, new, metrics


def test_paper_values_are_the_default():
  config = helpers.load_experiment('san_sr')
  assert (config.loss.content_weight, config.loss.features_weight,
          config.loss.adv_weight) == (1e-2, 1.0, 0.1)
  assert config.loss.feature_layer == 'conv5_4'
  for optim in (config.optim, config.d_optim):
    assert (optim.lr, optim.b1, optim.b2) == (2e-4, 0.5, 0.9)
    # Halved at 12.5/25/50/75% of the 400K iterations: 50K, 100K, 200K, 300K.
    assert tuple(optim.milestone_fractions) == (0.125, 0.25, 0.5, 0.75)
    sched = base.schedule(optim, config.train.num_steps)
    np.testing.assert_allclose(
        [float(sched(s)) for s in (49_999, 50_000, 100_000, 200_000, 300_000)],
        [2e-4, 1e-4, 5e-5, 2.5e-5, 1.25e-5])
  assert (config.train.num_steps, config.data.batch_size) == (400_000, 32)
  assert (config.critic.norm, config.critic.ratio,
          config.critic.normalize_every) == ('san', 1.0, 1)
  assert (config.model.num_feat, config.model.num_block) == (64, 16)
  assert helpers.load_experiment('san_sr', 'adv001').loss.adv_weight == 1e-2
  official = helpers.load_experiment('san_sr', 'official')
  assert (official.loss.content_weight, official.critic.gain,
          official.optim.b1, official.optim.b2) == (1.0, 1.05, 0.9, 0.99)


def test_every_conv_is_san_normalized_after_the_critic_step(gan):
  config, _, _, _, _, _, new, _ = gan
  d = san_sr.build_critic(config)
  crop = jnp.zeros((1, d.crop_size, d.crop_size, 3))
  shapes = layers.conv_input_shapes(d, {'params': new.d_params,
                                        **new.d_norm}, crop)
  assert len(shapes) == 2 * config.critic.num_blocks
  for name, hw in shapes.items():
    w = new.d_params[name]['kernel'] / new.d_norm['san'][name]['scale']
    np.testing.assert_allclose(san.conv_norm(w, hw), 1.0, rtol=1e-5)
  for name in ('fc1', 'fc2'):
    w = new.d_params[name]['kernel'] / new.d_norm['san'][name]['scale']
    np.testing.assert_allclose(np.linalg.svd(w, compute_uv=False)[0], 1.0,
                               rtol=1e-5)


def test_losses_are_wired_as_eq_10(gan):
  config, _, state, constants, batch, rng, new, metrics = gan
  for k, v in metrics.items():
    assert np.isfinite(v), k
  loss = config.loss
  np.testing.assert_allclose(
      metrics['g_total'],
      loss.content_weight * metrics['g_content']
      + loss.features_weight * metrics['g_features']
      + loss.adv_weight * metrics['g_adv'], rtol=1e-5)
  # Recompute each term from the states with the step's keys.
  g, d = san_sr.build_generator(config), san_sr.build_critic(config)
  keys = san_sr.step_keys(rng, state.step)
  sr = g.apply({'params': state.g_params}, batch['lr'])
  old_d = {'params': state.d_params, **state.d_norm}
  real = d.apply(old_d, batch['hr'], keys['real'])
  fake = d.apply(old_d, sr, keys['fake'])
  hinge_d = (np.mean(np.maximum(0, 1 - real))
             + np.mean(np.maximum(0, 1 + fake)))
  np.testing.assert_allclose(metrics['d_loss'], hinge_d, rtol=1e-5)
  # G's adversarial term reads the critic after its update (and refresh).
  gen = d.apply({'params': new.d_params, **new.d_norm}, sr, keys['gen'])
  np.testing.assert_allclose(metrics['g_adv'], -np.mean(gen), rtol=1e-4,
                             atol=1e-6)
  stale = d.apply(old_d, sr, keys['gen'])
  assert not np.allclose(-np.mean(stale), metrics['g_adv'])
  np.testing.assert_allclose(metrics['g_content'],
                             np.mean(np.abs(sr - batch['hr'])), rtol=1e-5)
  feat = vgg.VGG(depth=19, layers=(loss.feature_layer,))
  want = perceptual.perceptual_loss(
      feat.apply({'params': constants}, sr),
      feat.apply({'params': constants}, batch['hr']),
      {loss.feature_layer: 1.0})
  np.testing.assert_allclose(metrics['g_features'], want, rtol=1e-5)


def test_normalize_every_refreshes_on_multiples_only(gan):
  config, _, _, _, _, _, new, _ = gan
  d = san_sr.build_critic(config)
  params = jax.tree.map(lambda v: 2.0 * v, new.d_params)
  key = jax.random.key(1)
  kept = san_sr.refresh_critic_norm(d, params, new.d_norm, 3, key, 2)
  jax.tree.map(np.testing.assert_array_equal, kept, new.d_norm)
  fresh = san_sr.refresh_critic_norm(d, params, new.d_norm, 4, key, 2)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, 2.0 * b, rtol=1e-5),
               fresh, new.d_norm)


@pytest.mark.parametrize('norm', ['spectral', 'none'])
def test_other_norms_train(norm):
  config = _config(**{'psnr_warmup_steps': 0, 'critic.norm': norm,
                      'critic.circular': False})
  method = methods.build(config)
  state = method.init(base.init_key(0))
  new, metrics = jax.jit(method.stages[0].step)(
      state, _batch(config), jax.random.key(0), method.constants())
  assert set(new.d_norm) == ({'spectral'} if norm == 'spectral' else set())
  for k, v in metrics.items():
    assert np.isfinite(v), k
  if norm == 'spectral':  # The power-iteration vectors moved.
    assert not np.allclose(new.d_norm['spectral']['fc1']['u'],
                           state.d_norm['spectral']['fc1']['u'])


def test_warmup_trains_g_only():
  config = _config(psnr_warmup_steps=2)
  method = methods.build(config)
  warm, gan = method.stages
  assert (warm.name, warm.num_steps, gan.num_steps) == ('psnr', 2, 2)
  assert method.init_fields == ('g_params',)
  state = method.init(base.init_key(0))
  new, metrics = jax.jit(warm.step)(state, _batch(config), jax.random.key(0),
                                    {})
  jax.tree.map(np.testing.assert_array_equal, state.d_params, new.d_params)
  assert set(metrics) == {'g_l1', 'learning_rate'}
  assert not np.array_equal(state.g_params['conv_last']['kernel'],
                            new.g_params['conv_last']['kernel'])


def test_linked_values_follow_train_num_steps():
  """':psnr' stays all warm-up, and the paper's milestones stay at 12.5%..75%
  of the GAN stage, when train.num_steps is overridden."""
  psnr_only = helpers.load_experiment('san_sr', 'psnr')
  psnr_only.unlock()
  psnr_only.train.num_steps = 1000
  assert psnr_only.psnr_warmup_steps == 1000
  assert [(s.name, s.num_steps) for s in methods.build(psnr_only).stages] == [
      ('psnr', 1000)]
  fractions = (0.125, 0.25, 0.5, 0.75)  # The paper's, as in the default.
  config = _config(**{'train.num_steps': 8001, 'psnr_warmup_steps': 1,
                      'optim.milestone_fractions': fractions,
                      'd_optim.milestone_fractions': fractions})
  method = methods.build(config)
  warm, gan = method.stages
  assert (warm.num_steps, gan.num_steps) == (1, 8000)
  state = method.init(base.init_key(0))
  step = jax.jit(gan.step)
  logged = [float(step(state.replace(step=jnp.int32(1 + k)), _batch(config),
                       jax.random.key(0), method.constants())[1]
                  ['learning_rate']) for k in (999, 1000, 2000, 4000, 6000)]
  np.testing.assert_allclose(logged, [2e-4, 1e-4, 5e-5, 2.5e-5, 1.25e-5],
                             rtol=1e-6)


def test_four_devices_match_one_device(gan):
  _, method, state, constants, batch, rng, s1, m1 = gan  # One device.
  mesh = sharding.make_mesh()
  assert mesh.devices.size == 4
  repl, data = sharding.replicated(mesh), sharding.data_sharded(mesh)
  step = jax.jit(method.stages[0].step,
                 in_shardings=(repl, data, repl, repl),
                 out_shardings=(repl, repl))
  s4, m4 = step(jax.device_put(state, repl), jax.device_put(batch, data), rng,
                jax.device_put(constants, repl))
  for k in m1:
    np.testing.assert_allclose(m1[k], m4[k], rtol=2e-4, atol=1e-6)
  close = lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-5)
  jax.tree.map(close, s1.g_params, s4.g_params)
  jax.tree.map(close, s1.d_norm, s4.d_norm)
  # Block 0's conv biases feed a BN, which removes them: their gradient is
  # zero up to round-off, which Adam scales to steps of ±lr in either
  # direction. Every other critic parameter must match.
  for name, leaves in s1.d_params.items():
    for leaf, value in leaves.items():
      if not (name.startswith('block_0_conv') and leaf == 'bias'):
        close(value, s4.d_params[name][leaf])


def test_experiment_trains_checkpoints_and_resumes(tmp_path):
  """A 1-step warm-up and 2 GAN steps, resumed after the first: the losses
  and final state of the code before Method/Stage."""
  workdir = str(tmp_path / 'san_sr')
  first = train.train_and_evaluate(
      _config(**{'train.num_steps': 2, 'train.log_every': 1}), workdir)
  assert int(first.step) == 2
  resumed = train.train_and_evaluate(
      _config(**{'train.num_steps': 3, 'train.log_every': 1}), workdir)
  assert int(resumed.step) == 3
  mngr = checkpoint.manager(workdir)
  assert list(mngr.all_steps()) == [1, 2, 3]
  mngr.close()
  helpers.assert_matches_pre_stage('san_sr', workdir, resumed)


def test_bad_configs_are_errors():
  with pytest.raises(ValueError, match='critic crop'):
    methods.build(_config(**{'data.hr_patch': 12}))
  with pytest.raises(ValueError, match='normalize_every'):
    methods.build(_config(**{'critic.normalize_every': 0}))
  with pytest.raises(ValueError, match='norm must be one of'):
    methods.build(_config(**{'critic.norm': 'batch'}))


def test_nobn_variant_is_the_paper_critic_and_changes_nothing_else():
  """':nobn' (the paper's text: no BN) differs from each recipe and size
  only in critic.batch_norm and the table name; bad combinations are errors."""
  for base_arg in ('', 'adv001', 'official', 'demo', 'tiny'):
    base_config = helpers.load_experiment('san_sr', base_arg or None)
    paper = helpers.load_experiment('san_sr', ','.join(
        t for t in ('nobn', base_arg) if t))
    assert base_config.critic.batch_norm and not paper.critic.batch_norm
    a, b = base_config.to_dict(), paper.to_dict()
    for d in (a, b):
      del d['critic']['batch_norm'], d['name']
    assert a == b, base_arg
  # Any order; the builder accepts it.
  swapped = helpers.load_experiment('san_sr', 'tiny,nobn')
  assert not swapped.critic.batch_norm and swapped.model.num_feat == 8
  methods.build(swapped)
  for bad in ('demo,tiny', 'adv001,official', 'nobn,bn'):
    with pytest.raises(ValueError, match='variant'):
      helpers.load_experiment('san_sr', bad)


@pytest.mark.parametrize('arg,sensitive', [('tiny', False),
                                           ('nobn,tiny', True)])
def test_critic_output_depends_on_conv_divisors_only_without_bn(arg,
                                                               sensitive):
  """BN after every conv removes each conv's scale, so the official critic
  ignores SAN's conv divisors; the paper's critic (no BN) follows them.
  Every conv divisor is multiplied by a factor in [0.5, 2] (FC layers keep
  theirs): the BN critic's logits move by < 1e-3 relative (BN's epsilon),
  the paper's by more than 10%."""
  config = _config(arg)
  d = san_sr.build_critic(config)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.random((4, d.crop_size, d.crop_size, 3)), jnp.float32)
  variables = d.init(base.init_key(0), x)
  out = np.asarray(d.apply(variables, x), np.float64)
  factors = iter(rng.uniform(0.5, 2.0, 100))
  san_state = {
      name: ({'scale': s['scale'] * next(factors)} if 'conv' in name else s)
      for name, s in variables['san'].items()}
  assert sum('conv' in n for n in san_state) == 2 * config.critic.num_blocks
  moved = np.asarray(d.apply({**variables, 'san': san_state}, x), np.float64)
  change = np.abs(moved - out).max() / np.abs(out).max()
  if sensitive:
    assert change > 0.1
  else:
    assert change < 1e-3
