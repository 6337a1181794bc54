"""The ESRGAN/LSRGAN stages: update order, warm-up, EMA, schedules, LSR sign, devices, smoke runs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr import checkpoint
from jaxsr import methods
from jaxsr import sharding
from jaxsr import train
from jaxsr.losses import lsr
from jaxsr.methods import base
from jaxsr.models import discriminators
from tests import helpers


def _config(name='lsrgan', **overrides):
  return helpers.experiment_config(name, 'tiny', **overrides)


_batch = helpers.random_batch


@pytest.fixture(scope='module')
def gan():
  """A tiny LSRGAN (no warm-up), its state, constants and compiled step."""
  config = _config(psnr_warmup_steps=0)
  method = methods.build(config)
  assert [s.name for s in method.stages] == ['gan']
  state = method.init(base.init_key(0))
  constants = method.constants()
  step = jax.jit(method.stages[0].step)
  return config, method, state, constants, step


def test_one_step_updates_every_network_and_the_ema(gan):
  config, method, state, constants, step = gan
  # The stage's enter restarts the EMA from G (here: from a stale EMA).
  stale = state.replace(ema_params=jax.tree.map(lambda x: x + 1.,
                                                state.g_params))
  entered = jax.jit(method.stages[0].enter)(stale)
  jax.tree.map(np.testing.assert_array_equal, entered.ema_params,
               state.g_params)
  new, metrics = step(entered, _batch(config), jax.random.key(0), constants)
  changed = lambda a, b: any(not np.array_equal(x, y) for x, y in zip(
      jax.tree.leaves(a), jax.tree.leaves(b)))
  assert changed(state.g_params, new.g_params)
  assert changed(state.d_params, new.d_params)
  assert changed(state.l_params, new.l_params)
  assert changed(state.d_batch_stats, new.d_batch_stats)
  # First GAN step after the restart: ema = d*G_old + (1-d)*G_new.
  decay = config.ema.decay
  jax.tree.map(lambda e, g0, g1: np.testing.assert_allclose(
      e, decay * np.asarray(g0) + (1 - decay) * np.asarray(g1), rtol=1e-5,
      atol=1e-7), new.ema_params, state.g_params, new.g_params)
  for k, v in metrics.items():
    assert np.isfinite(v), k
  # The total is the paper's weighted sum of the logged terms (eq. 10).
  loss = config.loss
  expected = (loss.perceptual_weight * metrics['g_perceptual']
              + loss.adv_weight * metrics['g_adv']
              + loss.pixel_weight * metrics['g_pixel']
              - loss.latent_weight * metrics['g_latent'])
  np.testing.assert_allclose(metrics['g_total'], expected, rtol=1e-5)


def _softplus(x):
  return np.logaddexp(0.0, x)


def test_g_step_reads_the_updated_d(gan):
  """§4.1 "alternately update the D, G, and L": G's RaGAN term (eq. 1,
  (BCE(C_r - mean C_f, 0) + BCE(C_f - mean C_r, 1)) / 2 with BCE(z, 1) =
  softplus(-z), BCE(z, 0) = softplus(z)) is that of the D after this step's
  update, not of the D the step started with."""
  config, _, state, constants, step = gan
  batch = _batch(config)
  new, metrics = step(state, batch, jax.random.key(0), constants)
  g = methods.psnr.build_generator(config)
  d = discriminators.VGGStyleDiscriminator(
      num_feat=config.disc.num_feat, input_size=config.data.hr_patch,
      norm=config.disc.norm, batch_norm=config.disc.batch_norm)
  sr = jax.jit(g.apply)({'params': state.g_params}, batch['lr'])
  # Train mode: BN on each call's batch statistics (no running stats read).
  d_logits = jax.jit(lambda p, x: d.apply(
      {'params': p, 'batch_stats': state.d_batch_stats}, x, train=True,
      mutable=['batch_stats'])[0])

  def ragan_g(d_params):
    real, fake = (np.asarray(d_logits(d_params, x), np.float64)
                  for x in (batch['hr'], sr))
    return (np.mean(_softplus(real - fake.mean()))
            + np.mean(_softplus(-(fake - real.mean())))) / 2

  np.testing.assert_allclose(metrics['g_adv'], ragan_g(new.d_params),
                             rtol=1e-4)
  assert abs(ragan_g(state.d_params) - ragan_g(new.d_params)) > 1e-3
  assert not np.isclose(metrics['g_adv'], ragan_g(state.d_params), rtol=1e-4)


def test_encoder_step_minimizes_eq9_on_this_steps_output(gan):
  config, _, state, constants, step = gan
  batch = _batch(config)
  new, metrics = step(state, batch, jax.random.key(0), constants)
  g = methods.psnr.build_generator(config)
  l = methods.psnr.build_encoder(config)
  sr = g.apply({'params': state.g_params}, batch['lr'])
  loss = lambda p: lsr.encoder_loss(l.apply({'params': p}, sr),
                                    l.apply({'params': p}, batch['hr']))
  np.testing.assert_allclose(metrics['l_loss'], loss(state.l_params),
                             rtol=1e-5)
  assert loss(new.l_params) < loss(state.l_params)


def test_latent_sign_flips_the_latent_gradient():
  """μ's sign (eq. 10: minus) decides whether G pushes L-codes apart."""
  grads = {}
  for sign in (-1.0, 1.0):
    config = _config(**{'psnr_warmup_steps': 0, 'loss.latent_sign': sign,
                        'loss.adv_weight': 0.0, 'loss.perceptual_weight': 0.0,
                        'loss.pixel_weight': 0.0, 'loss.latent_weight': 1.0})
    method = methods.build(config)
    state = method.init(base.init_key(0))
    new, _ = jax.jit(method.stages[0].step)(
        state, _batch(config), jax.random.key(0), method.constants())
    grads[sign] = jax.tree.map(lambda a, b: np.sign(np.asarray(b - a)),
                               state.g_params, new.g_params)
  # Adam's first step moves each weight by -lr*sign(grad): opposite signs
  # wherever the latent term reaches (conv_last starts at zero, so at first
  # only it moves).
  a = np.concatenate([x.ravel() for x in jax.tree.leaves(grads[-1.0])])
  b = np.concatenate([x.ravel() for x in jax.tree.leaves(grads[1.0])])
  moved = a != 0
  assert moved.sum() > 50
  assert np.mean(a[moved] == -b[moved]) > 0.99


def test_warmup_trains_g_and_l_only():
  # A warm-up as long as the run is the whole run (4 steps in 'tiny').
  (warm,) = methods.build(_config(psnr_warmup_steps=5)).stages
  assert (warm.name, warm.num_steps, warm.evaluate_at_end) == ('psnr', 4, True)
  config = _config(**{'psnr_warmup_steps': 2, 'train.num_steps': 5})
  method = methods.build(config)
  warm, gan = method.stages
  assert (warm.num_steps, warm.evaluate_at_end) == (2, True)
  assert (gan.name, gan.num_steps) == ('gan', 3)
  assert method.stage_at(1) == (warm, 0) and method.stage_at(2) == (gan, 2)
  state = method.init(base.init_key(0))
  new, metrics = jax.jit(warm.step)(state, _batch(config), jax.random.key(0),
                                    method.constants())
  jax.tree.map(np.testing.assert_array_equal, state.d_params, new.d_params)
  assert set(metrics) == {'g_l1', 'l_l1', 'learning_rate'}
  assert float(metrics['g_l1']) > 0 and float(metrics['l_l1']) > 0
  assert not np.array_equal(state.g_params['conv_last']['kernel'],
                            new.g_params['conv_last']['kernel'])


@pytest.mark.parametrize('name', ['lsrgan', 'san_sr'])
def test_gan_stage_schedules_count_its_own_steps(name):
  """After a 2-step warm-up, G's (and L's) learning rate equals D's at every
  GAN step: milestone 2 of the stage halves both at GAN step 2, not G's at
  its global step 2 (read off the Adam states of a real run)."""
  overrides = {'psnr_warmup_steps': 2, 'train.num_steps': 6,
               'optim.milestones': (2,)}
  if name == 'san_sr':
    overrides['d_optim.milestones'] = (2,)
    overrides['optim.milestone_fractions'] = ()
    overrides['d_optim.milestone_fractions'] = ()
  config = helpers.experiment_config(name, 'tiny', **overrides)
  method = methods.build(config)
  batches = lambda step: _batch(config, seed=step)
  lr = config.optim.lr
  d_optim = config.d_optim if name == 'san_sr' else config.optim
  nets = [('g', config.optim), ('d', d_optim)]
  if name == 'lsrgan':
    nets.append(('l', config.optim))
  state = helpers.run_stages(method, batches, 2)
  for gan_step, want in ((0, lr), (1, lr), (2, lr / 2), (3, lr / 2)):
    before = state
    state = helpers.run_stages(method, batches, 3 + gan_step, state=state)
    for net, optim in nets:
      got = helpers.implied_adam_lr(
          getattr(before, f'{net}_params'), getattr(state, f'{net}_params'),
          getattr(state, f'{net}_opt_state'), optim.b1, optim.b2, optim.eps)
      np.testing.assert_allclose(got, want, rtol=1e-3,
                                 err_msg=f'{net} at GAN step {gan_step}')


def test_four_devices_match_one_device(gan):
  config, method, state, constants, _ = gan
  batch = _batch(config)
  results = []
  for mesh in (sharding.make_mesh(jax.devices()[:1]), sharding.make_mesh()):
    repl, data = sharding.replicated(mesh), sharding.data_sharded(mesh)
    step = jax.jit(method.stages[0].step,
                   in_shardings=(repl, data, repl, repl),
                   out_shardings=(repl, repl))
    results.append(step(jax.device_put(state, repl),
                        jax.device_put(batch, data), jax.random.key(0),
                        jax.device_put(constants, repl)))
  (s1, m1), (s4, m4) = results
  for k in m1:
    np.testing.assert_allclose(m1[k], m4[k], rtol=2e-4, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3,
                                                       atol=1e-5),
               s1.g_params, s4.g_params)


# Resuming is run once per state layout: no encoder, spectral u vectors,
# encoder L; the contextual variants share those layouts (their loss differs).
# LSRGAN stops at the warm-up's end (a run of 1 step has only the 'psnr'
# stage), so its rerun lands on the 'gan' boundary and must enter it.
@pytest.mark.parametrize('name,stop', [
    ('esrgan', 2), ('esrgan_sn', 2), ('lsrgan', 1), ('cesrgan', None),
    ('clsrgan', None)])
def test_experiment_trains_checkpoints_and_resumes(name, stop, tmp_path):
  """A 1-step warm-up and 2 GAN steps (stopped after `stop` steps and
  resumed): the losses and final state of the code before Method/Stage,
  run with that code's settings (issue 16 changed two defaults since)."""
  workdir = str(tmp_path / name)
  old = {'loss.ragan_detach_means': True}  # The pre-stage D loss.
  if name in ('cesrgan', 'clsrgan'):
    old['loss.cx_layer'] = 'conv1_1'  # The tiny variant's pre-ReLU layer.
  if stop:
    first = train.train_and_evaluate(
        _config(name, **{'train.num_steps': stop, 'train.log_every': 1},
                **old), workdir)
    assert int(first.step) == stop
  state = train.train_and_evaluate(
      _config(name, **{'train.num_steps': 3, 'train.log_every': 1}, **old),
      workdir)
  assert int(state.step) == 3
  mngr = checkpoint.manager(workdir)
  # Every 2 steps, at the end of the warm-up stage and of the run.
  assert list(mngr.all_steps()) == [1, 2, 3]
  mngr.close()
  helpers.assert_matches_pre_stage(name, workdir, state)
  # The final table puts the PSNR warm-up model next to bicubic and the GAN.
  assert 'psnr stage PSNR' in (tmp_path / name / 'results.md').read_text()


def test_esrgan_has_no_encoder_and_rejects_mu():
  config = _config('esrgan')
  assert not config.encoder.enabled and config.loss.latent_weight == 0
  config.loss.latent_weight = 1e-3
  with pytest.raises(ValueError, match='encoder'):
    methods.build(config)


def test_esrgan_sn_step_runs_power_iterations_on_d():
  """ESRGAN* (paper 002): D's u vectors advance with each training call."""
  config = _config('esrgan_sn', psnr_warmup_steps=0)
  assert config.disc.norm == 'spectral'
  method = methods.build(config)
  state = method.init(base.init_key(0))
  assert set(state.d_norm) == {'spectral'}
  new, metrics = jax.jit(method.stages[0].step)(
      state, _batch(config), jax.random.key(0), method.constants())
  for k, v in metrics.items():
    assert np.isfinite(v), k
  for old_u, new_u in zip(jax.tree.leaves(state.d_norm),
                          jax.tree.leaves(new.d_norm)):
    if old_u.size > 1:  # linear2's u is the scalar ±1.
      assert not np.allclose(old_u, new_u)
    np.testing.assert_allclose(np.linalg.norm(new_u), 1.0, rtol=1e-4)


def test_unknown_disc_norm_is_rejected():
  with pytest.raises(ValueError, match='norm must be one of'):
    methods.build(_config('esrgan', **{'disc.norm': 'weight'}))


# Paper 000 (LSRGAN) §4.1 and eq. 10, verbatim (whitespace aside), with the
# values each sentence fixes; checked against the paper's text when
# ../shared/papers is present.
_PAPER_000 = (
    'All experiments are performed with an upscaling factor of 4',
    'HR patches of size 128x128 are cropped',
    'The mini-batch size is set to 16',
    r'$\beta_1 = 0.9$ , $\beta_2 = 0.999$ and $\epsilon = 10^{-8}$ , '
    'without weight decaying',
    r'with $\lambda = 5 \times 10^{-3}$ , $\eta = 10^{-2}$ , and '
    r'$\mu = 10^{-3}$',
    r'The learning rate is set to $1 \times 10^{-4}$ and halved at '
    '[50k, 100k, 200k, 300k] iterations',
    r'We again use the Adam optimizer with the same $\beta_1$ , $\beta_2$ '
    r'and $\epsilon$',
    'or up to 500000 iterations',
    r'\lambda * L_G^{Ra} + \eta * |y - G(z)|_1 - \mu * |L(y) - L(G(z))|_1',
)


def test_paper_000_sentences_are_quoted_verbatim():
  papers = sorted((helpers.REPO.parent / 'shared' / 'papers').glob('000_*'))
  if not papers:
    pytest.skip('../shared/papers/000_* is absent')
  text = ' '.join(papers[0].read_text().split())
  for sentence in _PAPER_000:
    assert ' '.join(sentence.split()) in text, sentence


@pytest.mark.parametrize('name,perceptual,mu', [
    ('lsrgan', 'vgg', 1e-3), ('clsrgan', 'contextual', 1e-3),
    ('esrgan', 'vgg', 0.0), ('cesrgan', 'contextual', 0.0)])
def test_paper_000_hyperparameters_are_the_default(name, perceptual, mu):
  """The default configs hold the numbers of _PAPER_000 (§4.1, eqs. 10-13)."""
  config = helpers.load_experiment(name)
  assert config.scale == 4  # "an upscaling factor of 4".
  assert config.data.hr_patch == 128  # "HR patches of size 128x128".
  assert config.data.batch_size == 16  # "The mini-batch size is set to 16".
  assert (config.data.augment, config.data.train_lr_dir) == (True, '')
  loss = config.loss
  assert loss.adv_weight == 5e-3  # λ.
  assert loss.pixel_weight == 1e-2  # η.
  assert loss.latent_weight == mu  # μ (LSR models only).
  assert loss.latent_sign == -1.0  # Eq. 10: "- \mu * |L(y) - L(G(z))|_1".
  assert config.encoder.enabled == bool(mu)
  assert (loss.perceptual, loss.perceptual_weight, loss.gan_type) == (
      perceptual, 1.0, 'ragan')  # Eqs. 1, 10, 12, 13: unweighted L_percep.
  optim = config.optim  # The same Adam for D, G and L.
  assert (optim.b1, optim.b2, optim.eps) == (0.9, 0.999, 1e-8)
  assert optim.lr == 1e-4
  sched = base.schedule(optim, config.train.num_steps)
  np.testing.assert_allclose(
      [float(sched(s)) for s in (0, 49_999, 50_000, 99_999, 100_000,
                                 200_000, 300_000, 499_999)],
      [1e-4, 1e-4, 5e-5, 5e-5, 2.5e-5, 1.25e-5, 6.25e-6, 6.25e-6])
  assert config.train.num_steps == 500_000  # "up to 500000 iterations".
  # Stage 2 starts from stage 1's PSNR models.
  assert (config.init_from, config.psnr_warmup_steps) == ('', 0)
  assert config.allow_random_g is False
