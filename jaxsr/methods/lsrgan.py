"""ESRGAN, LSRGAN, CESRGAN and CLSRGAN fine-tuning (paper 000, stage 2), one builder.

G loss (eqs. 1, 10, 12, 13):
  percep_w * P(G(z), y) + λ L_G^Ra + η |y − G(z)|₁ + sign·μ |L(y) − L(G(z))|₁
with P the VGG19 conv5_4 L1 loss (ESRGAN, LSRGAN) or the cosine contextual loss
on conv3_4 (CESRGAN, CLSRGAN), the μ term only when the encoder L is enabled
(LSRGAN, CLSRGAN; sign −1 as the paper writes it). L minimizes eq. 9. One
jitted step updates D, then G, then L (§4.1: "we alternately update the D, G,
and L"), then the EMA of G.

`config.disc.norm='spectral'` gives paper 002's ESRGAN* baseline (D with
spectral normalization); its power-iteration vectors travel in
`GANState.d_norm` like the BN statistics, refreshed on every training call
of D as torch's spectral_norm does in train mode.
"""

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from jaxsr.losses import adversarial
from jaxsr.losses import contextual
from jaxsr.losses import lsr
from jaxsr.losses import perceptual
from jaxsr.losses import pixel
from jaxsr.methods import base
from jaxsr.methods import psnr
from jaxsr.models import discriminators
from jaxsr.models import vgg
from jaxsr.pretrained import vgg as vgg_import

PERCEPTUAL_KINDS = ('vgg', 'contextual')
LOSS_KEYS = {'perceptual', 'perceptual_weight', 'vgg_layer_weights',
             'cx_layer', 'cx_band_width', 'cx_max_samples', 'gan_type',
             'adv_weight', 'pixel_weight', 'latent_weight', 'latent_sign'}


@flax.struct.dataclass
class GANState:
  """G, D (with BN statistics), L, their Adam states and the EMA of G."""
  step: jax.Array
  g_params: Any
  g_opt_state: Any
  d_params: Any
  d_batch_stats: Any
  d_norm: Any  # {} or {'spectral': u vectors} / {'san': divisors}.
  d_opt_state: Any
  l_params: Any
  l_opt_state: Any
  ema_params: Any


def _check(config) -> None:
  base.check_keys(config.loss, LOSS_KEYS, 'loss')
  base.check_keys(config.disc, {'num_feat', 'norm', 'batch_norm'}, 'disc')
  discriminators.norm_collections(config.disc.norm)  # Validates the name.
  base.check_keys(config.perceptual, {'weights'}, 'perceptual')
  base.check_keys(config.optim, {'lr', 'b1', 'b2', 'eps', 'decay_every',
                                 'decay_factor', 'milestones'}, 'optim')
  if config.loss.perceptual not in PERCEPTUAL_KINDS:
    raise ValueError(f'config.loss.perceptual={config.loss.perceptual!r}; '
                     f'expected one of {PERCEPTUAL_KINDS}')
  if config.loss.gan_type not in ('ragan', 'vanilla'):
    raise ValueError(f'config.loss.gan_type={config.loss.gan_type!r}; '
                     "expected 'ragan' (ESRGAN) or 'vanilla'")
  if config.loss.latent_weight and not config.encoder.enabled:
    raise ValueError('config.loss.latent_weight (μ) > 0 needs '
                     'config.encoder.enabled=True')
  if config.psnr_warmup_steps < 0:
    raise ValueError('config.psnr_warmup_steps must be >= 0')
  base.check_keys(config.ema, {'decay', 'predict'}, 'ema')
  if not 0. <= config.ema.decay < 1.:
    raise ValueError(f'config.ema.decay={config.ema.decay} not in [0, 1)')


def _feature_layers(loss_config) -> tuple[str, ...]:
  if loss_config.perceptual == 'vgg':
    return tuple(loss_config.vgg_layer_weights.keys())
  return (loss_config.cx_layer,)


def _adv_d(real, fake, gan_type):
  if gan_type == 'ragan':
    return adversarial.ragan_d_loss(real, fake)  # BasicSR's detached means.
  return adversarial.gan_d_loss(real, fake)


def _adv_g(real, fake, gan_type):
  if gan_type == 'ragan':
    return adversarial.ragan_g_loss(jax.lax.stop_gradient(real), fake)
  return adversarial.gan_g_loss(fake)


def _init(rng, *, g, d, l, g_tx, d_tx, l_tx, hr_patch, scale):
  g_rng, d_rng, l_rng = jax.random.split(rng, 3)
  lr = jnp.zeros((1, hr_patch // scale, hr_patch // scale, 3), jnp.float32)
  hr = jnp.zeros((1, hr_patch, hr_patch, 3), jnp.float32)
  g_params = g.init(g_rng, lr)['params']
  d_vars = flax.core.unfreeze(d.init(d_rng, hr, train=False))
  d_params = d_vars.pop('params')
  d_stats = d_vars.pop('batch_stats', {})
  l_params = l.init(l_rng, hr)['params'] if l is not None else {}
  return GANState(
      step=jnp.zeros((), jnp.int32), g_params=g_params,
      g_opt_state=g_tx.init(g_params), d_params=d_params,
      d_batch_stats=d_stats, d_norm=d_vars,
      d_opt_state=d_tx.init(d_params), l_params=l_params,
      l_opt_state=l_tx.init(l_params),
      ema_params=jax.tree.map(jnp.copy, g_params))


def _apply_d(d, params, state, x):
  """D in training mode, as BasicSR's net_d.train(): BN on batch statistics,
  one power iteration (spectral norm). state = (batch_stats, norm state)."""
  stats, norm = state
  mutable = ['batch_stats', *norm]
  logits, updates = d.apply({'params': params, 'batch_stats': stats, **norm},
                            x, train=True, update_stats=True, mutable=mutable)
  return logits, (updates.get('batch_stats', stats),
                  {name: updates[name] for name in norm})


def _gan_step(state, batch, rng, constants, *, g, d, l, feat, g_tx, d_tx,
              l_tx, loss_cfg, ema_decay, gan_start):
  lr_img, hr = batch['lr'], batch['hr']
  cx_key = jax.random.fold_in(rng, state.step)

  # 1. D on real and on the current G's (frozen) output.
  sr = jax.lax.stop_gradient(g.apply({'params': state.g_params}, lr_img))

  def d_loss_fn(d_params):
    real, stats = _apply_d(d, d_params, (state.d_batch_stats, state.d_norm),
                           hr)
    fake, stats = _apply_d(d, d_params, stats, sr)
    return _adv_d(real, fake, loss_cfg.gan_type), (stats, real, fake)

  (d_loss, (d_stats, real, fake)), d_grads = jax.value_and_grad(
      d_loss_fn, has_aux=True)(state.d_params)
  d_updates, d_opt_state = d_tx.update(d_grads, state.d_opt_state,
                                       state.d_params)
  d_params = optax.apply_updates(state.d_params, d_updates)

  # 2. G against the updated D, with the perceptual and LSR terms.
  hr_feats = jax.lax.stop_gradient(feat.apply({'params': constants}, hr))
  l_hr = (jax.lax.stop_gradient(l.apply({'params': state.l_params}, hr))
          if l is not None else None)

  def g_loss_fn(g_params):
    out = g.apply({'params': g_params}, lr_img)
    real_logits, stats = _apply_d(d, d_params, d_stats, hr)
    fake_logits, stats = _apply_d(d, d_params, stats, out)
    adv = _adv_g(real_logits, fake_logits, loss_cfg.gan_type)
    sr_feats = feat.apply({'params': constants}, out)
    if loss_cfg.perceptual == 'vgg':
      percep = perceptual.perceptual_loss(
          sr_feats, hr_feats, dict(loss_cfg.vgg_layer_weights))
    else:
      percep = contextual.contextual_loss(
          sr_feats[loss_cfg.cx_layer], hr_feats[loss_cfg.cx_layer],
          key=cx_key, band_width=loss_cfg.cx_band_width,
          max_samples=loss_cfg.cx_max_samples)
    if l is not None:
      terms = lsr.lsr_generator_terms(
          out, hr, l.apply({'params': state.l_params}, out), l_hr,
          eta=loss_cfg.pixel_weight, mu=loss_cfg.latent_weight,
          mu_sign=loss_cfg.latent_sign)
    else:
      pix = pixel.l1(out, hr)
      terms = {'pixel': pix, 'latent': jnp.zeros(()),
               'total': loss_cfg.pixel_weight * pix}
    total = (loss_cfg.perceptual_weight * percep
             + loss_cfg.adv_weight * adv + terms['total'])
    aux = {'g_total': total, 'g_perceptual': percep, 'g_adv': adv,
           'g_pixel': terms['pixel'], 'g_latent': terms['latent']}
    return total, (aux, stats, out)

  (_, (g_metrics, d_stats, out)), g_grads = jax.value_and_grad(
      g_loss_fn, has_aux=True)(state.g_params)
  g_updates, g_opt_state = g_tx.update(g_grads, state.g_opt_state,
                                       state.g_params)
  g_params = optax.apply_updates(state.g_params, g_updates)

  # 3. L minimizes eq. 9 on the G(z) of this step.
  l_params, l_opt_state, l_loss = state.l_params, state.l_opt_state, 0.
  if l is not None:
    out = jax.lax.stop_gradient(out)

    def l_loss_fn(p):
      return lsr.encoder_loss(l.apply({'params': p}, out),
                              l.apply({'params': p}, hr))

    l_loss, l_grads = jax.value_and_grad(l_loss_fn)(state.l_params)
    l_updates, l_opt_state = l_tx.update(l_grads, state.l_opt_state,
                                         state.l_params)
    l_params = optax.apply_updates(state.l_params, l_updates)

  # The EMA starts from G as it enters GAN training (the PSNR model).
  first = state.step == gan_start
  ema = jax.tree.map(
      lambda e, p0, p: ema_decay * jnp.where(first, p0, e)
      + (1. - ema_decay) * p, state.ema_params, state.g_params, g_params)
  metrics = {'d_loss': d_loss, 'd_real': jnp.mean(real),
             'd_fake': jnp.mean(fake), 'l_loss': l_loss, **g_metrics}
  metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
  state = state.replace(
      step=state.step + 1, g_params=g_params, g_opt_state=g_opt_state,
      d_params=d_params, d_batch_stats=d_stats[0], d_norm=d_stats[1],
      d_opt_state=d_opt_state,
      l_params=l_params, l_opt_state=l_opt_state, ema_params=ema)
  return state, metrics


def _warmup_step(state, batch, rng, constants, *, g, l, g_tx, l_tx, keys):
  """PSNR warm-up (L1 for G, L1 to the LR for L) for runs without init_from.

  Returns the same metric keys as the GAN step (zeros for the GAN terms), so
  logs and checks see one schema.
  """
  del rng, constants
  g_params, g_opt_state, g_l1 = psnr._l1_update(  # pylint: disable=protected-access
      state.g_params, state.g_opt_state, g_tx, g.apply, batch['lr'],
      batch['hr'])
  l_params, l_opt_state, l_l1 = state.l_params, state.l_opt_state, 0.
  if l is not None:
    l_params, l_opt_state, l_l1 = psnr._l1_update(  # pylint: disable=protected-access
        state.l_params, state.l_opt_state, l_tx, l.apply, batch['hr'],
        batch['lr'])
  metrics = {k: jnp.zeros((), jnp.float32) for k in keys}
  metrics.update(g_pixel=g_l1, l_loss=jnp.asarray(l_l1, jnp.float32))
  state = state.replace(step=state.step + 1, g_params=g_params,
                        g_opt_state=g_opt_state, l_params=l_params,
                        l_opt_state=l_opt_state)
  return state, metrics


_METRIC_KEYS = ('d_loss', 'd_real', 'd_fake', 'l_loss', 'g_total',
                'g_perceptual', 'g_adv', 'g_pixel', 'g_latent')


def _predict(state, lr, *, g, use_ema):
  params = state.ema_params if use_ema else state.g_params
  return g.apply({'params': params}, lr)


def build(config) -> base.Method:
  """ESRGAN/LSRGAN/CESRGAN/CLSRGAN from config.{loss,encoder,disc,optim,...}."""
  _check(config)
  g = psnr.build_generator(config)
  l = psnr.build_encoder(config)
  d = discriminators.VGGStyleDiscriminator(
      num_feat=config.disc.num_feat, input_size=config.data.hr_patch,
      norm=config.disc.norm, batch_norm=config.disc.batch_norm)
  feat = vgg.VGG(depth=19, layers=_feature_layers(config.loss))
  lr_schedule = base.schedule(config.optim)
  warmup = int(config.psnr_warmup_steps)
  tx = base.adam(config.optim, lr_schedule)
  gan_step = functools.partial(
      _gan_step, g=g, d=d, l=l, feat=feat, g_tx=tx, d_tx=tx, l_tx=tx,
      loss_cfg=config.loss, ema_decay=config.ema.decay, gan_start=warmup)
  warmup_step = functools.partial(_warmup_step, g=g, l=l, g_tx=tx, l_tx=tx,
                                  keys=_METRIC_KEYS)
  return base.Method(
      init=functools.partial(_init, g=g, d=d, l=l, g_tx=tx, d_tx=tx, l_tx=tx,
                             hr_patch=config.data.hr_patch, scale=config.scale),
      train_step=base.with_learning_rate(gan_step, lr_schedule),
      warmup_step=base.with_learning_rate(warmup_step, lr_schedule) if warmup else None,
      warmup_steps=warmup,
      predict=functools.partial(_predict, g=g, use_ema=config.ema.predict),
      init_fields=('g_params', 'l_params'),
      constants=functools.partial(vgg_import.feature_params, feat,
                                  config.perceptual.weights))
