"""ESRGAN, LSRGAN, CESRGAN and CLSRGAN fine-tuning (paper 000, stage 2), one builder.

G loss (eqs. 1, 10, 12, 13):
  percep_w * P(G(z), y) + λ L_G^Ra + η |y − G(z)|₁ + sign·μ |L(y) − L(G(z))|₁
with P the VGG19 conv5_4 L1 loss (ESRGAN, LSRGAN) or the cosine contextual loss
on relu3_4 (CESRGAN, CLSRGAN: the CX code's conv3_4 is post-ReLU), the μ term
only when the encoder L is enabled (LSRGAN, CLSRGAN; sign −1 as the paper
writes it). D's RaGAN loss follows `config.loss.ragan_detach_means`. L
minimizes eq. 9. One jitted step updates D, then G, then L (§4.1: "we
alternately update the D, G, and L"), then the EMA of G.

Stages: 'gan', preceded by a 'psnr' L1 warm-up of G and L (`psnr.stage`)
for runs without `init_from` (`config.psnr_warmup_steps`); the 'gan' stage's
enter restarts the EMA from the G it starts with. G's and L's Adam moments
carry over from the warm-up; every learning-rate schedule of the 'gan' stage
counts its own steps, as the paper's separate stage-2 run does. Training
refuses a 'gan' stage that would start from a random G (no init_from, no
warm-up) unless `config.allow_random_g` (`base.pretrained_g_check`).

`config.disc.norm='spectral'` gives paper 002's ESRGAN* baseline (D with
spectral normalization); its power-iteration vectors travel in
`GANState.d_norm` like the BN statistics, refreshed on every training call
of D as torch's spectral_norm does in train mode.
"""

import dataclasses
import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from jaxsr import config_lib
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
             'ragan_detach_means', 'adv_weight', 'pixel_weight',
             'latent_weight', 'latent_sign'}


@dataclasses.dataclass(frozen=True)
class GanLoss:
  """G's objective (eqs. 1, 10, 12, 13) and D's adversarial loss, as the
  jitted step reads them (static, hashable)."""
  gan_type: adversarial.GanType
  ragan_detach_means: bool  # adversarial.ragan_d_loss's stop_mean_gradient.
  perceptual: str  # 'vgg' (eqs. 1, 10) or 'contextual' (eqs. 12, 13).
  perceptual_weight: float
  vgg_layer_weights: tuple[tuple[str, float], ...]
  cx_layer: str
  cx_band_width: float
  cx_max_samples: int
  adv_weight: float  # λ.
  pixel_weight: float  # η.
  latent_weight: float  # μ.
  latent_sign: float  # −1: eq. 10's −μ.

  @classmethod
  def from_config(cls, loss_config) -> 'GanLoss':
    """Validated from config.loss."""
    config_lib.check_keys(loss_config, LOSS_KEYS, 'loss')
    if loss_config.perceptual not in PERCEPTUAL_KINDS:
      raise ValueError(f'config.loss.perceptual={loss_config.perceptual!r}; '
                       f'expected one of {PERCEPTUAL_KINDS}')
    return cls(
        gan_type=adversarial.gan_type(loss_config.gan_type),
        # A config.json written before this key existed trained with the
        # means detached.
        ragan_detach_means=bool(
            loss_config.get('ragan_detach_means', True)),
        perceptual=loss_config.perceptual,
        perceptual_weight=float(loss_config.perceptual_weight),
        vgg_layer_weights=tuple(
            (k, float(v)) for k, v in loss_config.vgg_layer_weights.items()),
        cx_layer=loss_config.cx_layer,
        cx_band_width=float(loss_config.cx_band_width),
        cx_max_samples=int(loss_config.cx_max_samples),
        adv_weight=float(loss_config.adv_weight),
        pixel_weight=float(loss_config.pixel_weight),
        latent_weight=float(loss_config.latent_weight),
        latent_sign=float(loss_config.latent_sign))

  def d_term(self, real_logits, fake_logits):
    """D's adversarial loss on its logits for HR and stop_gradient(SR)."""
    return adversarial.d_loss(self.gan_type, real_logits, fake_logits,
                              ragan_detach_means=self.ragan_detach_means)

  @property
  def feature_layers(self) -> tuple[str, ...]:
    """The VGG19 layers the perceptual term reads."""
    if self.perceptual == 'vgg':
      return tuple(k for k, _ in self.vgg_layer_weights)
    return (self.cx_layer,)

  def perceptual_term(self, sr_feats, hr_feats, key):
    """The VGG L1 (eq. 1) or cosine contextual loss (eq. 12), a scalar."""
    if self.perceptual == 'vgg':
      return perceptual.perceptual_loss(sr_feats, hr_feats,
                                        dict(self.vgg_layer_weights))
    return contextual.contextual_loss(
        sr_feats[self.cx_layer], hr_feats[self.cx_layer], key=key,
        band_width=self.cx_band_width, max_samples=self.cx_max_samples)


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
  config_lib.check_keys(config.disc, {'num_feat', 'norm', 'batch_norm'},
                        'disc')
  discriminators.norm_collections(config.disc.norm)  # Validates the name.
  config_lib.check_keys(config.perceptual, {'weights'}, 'perceptual')
  config_lib.check_keys(config.optim, base.OPTIM_KEYS, 'optim')
  if config.loss.latent_weight and not config.encoder.enabled:
    raise ValueError('config.loss.latent_weight (μ) > 0 needs '
                     'config.encoder.enabled=True')
  if config.psnr_warmup_steps < 0:
    raise ValueError('config.psnr_warmup_steps must be >= 0')
  config_lib.check_keys(config.ema, {'decay', 'predict'}, 'ema')
  if not 0. <= config.ema.decay < 1.:
    raise ValueError(f'config.ema.decay={config.ema.decay} not in [0, 1)')


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


def encoder_update(l, l_tx, l_params, l_opt_state, sr, hr):
  """L's step on eq. 9, mean|L(y) − L(G(z))|, with G(z) = sr as data.

  sr and hr: (N, H, W, 3); returns (l_params, l_opt_state, the loss before
  the update). No gradient reaches G through sr.
  """
  sr = jax.lax.stop_gradient(sr)

  def loss_fn(p):
    return lsr.encoder_loss(l.apply({'params': p}, sr),
                            l.apply({'params': p}, hr))

  loss, grads = jax.value_and_grad(loss_fn)(l_params)
  updates, l_opt_state = l_tx.update(grads, l_opt_state, l_params)
  return optax.apply_updates(l_params, updates), l_opt_state, loss


def _gan_step(state, batch, rng, constants, *, g, d, l, feat, g_tx, d_tx,
              l_tx, loss: GanLoss, ema_decay: float):
  lr_img, hr = batch['lr'], batch['hr']
  cx_key = jax.random.fold_in(rng, state.step)

  # 1. D on real and on the current G's (frozen) output.
  sr = jax.lax.stop_gradient(g.apply({'params': state.g_params}, lr_img))

  def d_loss_fn(d_params):
    real, stats = _apply_d(d, d_params, (state.d_batch_stats, state.d_norm),
                           hr)
    fake, stats = _apply_d(d, d_params, stats, sr)
    return (loss.d_term(real, fake),
            (stats, real, fake))

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
    # real_logits do not depend on G: constants of this gradient.
    adv = adversarial.g_loss(loss.gan_type, real_logits, fake_logits)
    percep = loss.perceptual_term(feat.apply({'params': constants}, out),
                                  hr_feats, cx_key)
    if l is not None:
      terms = lsr.lsr_generator_terms(
          out, hr, l.apply({'params': state.l_params}, out), l_hr,
          eta=loss.pixel_weight, mu=loss.latent_weight,
          mu_sign=loss.latent_sign)
    else:
      pix = pixel.l1(out, hr)
      terms = {'pixel': pix, 'latent': jnp.zeros(()),
               'total': loss.pixel_weight * pix}
    total = (loss.perceptual_weight * percep
             + loss.adv_weight * adv + terms['total'])
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
    l_params, l_opt_state, l_loss = encoder_update(
        l, l_tx, state.l_params, state.l_opt_state, out, hr)

  ema = jax.tree.map(lambda e, p: ema_decay * e + (1. - ema_decay) * p,
                     state.ema_params, g_params)
  metrics = {'d_loss': d_loss, 'd_real': jnp.mean(real),
             'd_fake': jnp.mean(fake), 'l_loss': l_loss, **g_metrics}
  metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
  state = state.replace(
      step=state.step + 1, g_params=g_params, g_opt_state=g_opt_state,
      d_params=d_params, d_batch_stats=d_stats[0], d_norm=d_stats[1],
      d_opt_state=d_opt_state,
      l_params=l_params, l_opt_state=l_opt_state, ema_params=ema)
  return state, metrics


def _restart_ema(state):
  """The gan stage's enter: the EMA starts from G as it enters GAN training
  (the PSNR model, trained here or loaded by init_from)."""
  return state.replace(ema_params=jax.tree.map(jnp.copy, state.g_params))


def build(config) -> base.Method:
  """ESRGAN/LSRGAN/CESRGAN/CLSRGAN: stages 'psnr' (the warm-up, only for
  runs without init_from) and 'gan', from config.{loss,encoder,disc,optim,...}."""
  _check(config)
  loss = GanLoss.from_config(config.loss)
  g = psnr.build_generator(config)
  l = psnr.build_encoder(config)
  d = discriminators.VGGStyleDiscriminator(
      num_feat=config.disc.num_feat, input_size=config.data.hr_patch,
      norm=config.disc.norm, batch_norm=config.disc.batch_norm)
  feat = vgg.VGG(depth=19, layers=loss.feature_layers)
  total = int(config.train.num_steps)
  warmup = min(int(config.psnr_warmup_steps), total)
  warm_schedule = base.schedule(config.optim, warmup)
  warm_tx = base.adam(config.optim, warm_schedule)
  stages = []
  if warmup:
    stages.append(psnr.stage('psnr', warmup, g=g, l=l, g_tx=warm_tx,
                             l_tx=warm_tx, lr_schedule=warm_schedule,
                             evaluate_at_end=True))
  # §4.1's milestones count GAN iterations for D, G and L alike: G and L
  # made `warmup` updates before, so their schedule is counted from there.
  gan_schedule = base.schedule(config.optim, total - warmup)
  gl_tx = base.adam(config.optim, base.counted_from(gan_schedule, warmup))
  d_tx = base.adam(config.optim, gan_schedule)
  if total > warmup:
    gan_step = functools.partial(
        _gan_step, g=g, d=d, l=l, feat=feat, g_tx=gl_tx, d_tx=d_tx, l_tx=gl_tx,
        loss=loss, ema_decay=float(config.ema.decay))
    stages.append(base.Stage(
        'gan', total - warmup,
        step=base.with_learning_rate(gan_step, gan_schedule, warmup),
        enter=_restart_ema))
  predict_field = 'ema_params' if config.ema.predict else 'g_params'
  return base.Method(
      init=functools.partial(_init, g=g, d=d, l=l, g_tx=gl_tx, d_tx=d_tx,
                             l_tx=gl_tx, hr_patch=config.data.hr_patch,
                             scale=config.scale),
      stages=tuple(stages),
      predict=functools.partial(base.generator_predict, g=g,
                                field=predict_field),
      init_fields=('g_params', 'l_params'),
      constants=functools.partial(vgg_import.feature_params, feat,
                                  config.perceptual.weights),
      check_start=base.pretrained_g_check(config, warmup, total - warmup,
                                          'experiments/rrdb_psnr.py'),
      **base.patch_data(config))
