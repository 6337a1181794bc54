"""SAN-SR (paper 002, §Single Image Super Resolution): SRResNet G, SAN critic.

G loss, eq. 10 with the hinge adversarial term:
  λ_content |G(x) − y|₁ + λ_features |φ(G(x)) − φ(y)|₁ − λ_adv mean D(G(x))
with φ the VGG19 conv5_4 features (pre-ReLU, ImageNet input norm) and
λ_features = 1 (eq. 10 leaves it unweighted; the official README sets all
three weights). The critic minimizes the hinge loss
mean relu(1 − D(y)) + mean relu(1 + D(G(x))). One jitted step updates D
once, refreshes D's normalization state (SAN divisors or spectral vectors)
from the updated weights every `normalize_every` steps, then updates G
against the updated D (the official trainer's order, `num_critic` 1: "for
every update step of the generator, we perform only one update step of the
critic"). Each critic call crops its input at its own random offset, as the
official critic does on each of its forward calls.

Stages: 'gan', preceded by a 'psnr' L1 warm-up of G (`psnr.stage`) for runs
without `init_from` (`config.psnr_warmup_steps`; the ':psnr' variant is that
stage alone). The learning-rate milestones are fractions of the 'gan'
stage's length (12.5/25/50/75%), so they follow `train.num_steps`. Training
refuses a 'gan' stage that would start from a random G (no init_from, no
warm-up) unless `config.allow_random_g` (`base.pretrained_g_check`).
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
from jaxsr.losses import perceptual
from jaxsr.losses import pixel
from jaxsr.methods import base
from jaxsr.methods import psnr
from jaxsr.models import san_critic
from jaxsr.models import srresnet
from jaxsr.models import vgg
from jaxsr.pretrained import vgg as vgg_import

MODEL_KEYS = {'num_feat', 'num_block'}
CRITIC_KEYS = {'num_features', 'max_features', 'num_blocks', 'norm',
               'batch_norm', 'circular', 'gain', 'ratio', 'subset',
               'momentum', 'legacy_rownorm', 'normalize_every'}
LOSS_KEYS = {'content_weight', 'features_weight', 'feature_layer',
             'adv_weight'}


@dataclasses.dataclass(frozen=True)
class SanLoss:
  """The weights of eq. 10 and the VGG19 layer of its features term."""
  content_weight: float  # λ_content.
  features_weight: float
  feature_layer: str
  adv_weight: float  # λ_adversarial.

  @classmethod
  def from_config(cls, loss_config) -> 'SanLoss':
    """Validated from config.loss."""
    config_lib.check_keys(loss_config, LOSS_KEYS, 'loss')
    return cls(content_weight=float(loss_config.content_weight),
               features_weight=float(loss_config.features_weight),
               feature_layer=loss_config.feature_layer,
               adv_weight=float(loss_config.adv_weight))


@flax.struct.dataclass
class SANState:
  """G and D parameters, their Adam states and D's normalization state."""
  step: jax.Array
  g_params: Any
  g_opt_state: Any
  d_params: Any
  d_norm: Any  # {'san': divisors} | {'spectral': vectors u} | {}.
  d_opt_state: Any


def _check(config) -> None:
  config_lib.check_keys(config.model, MODEL_KEYS, 'model')
  config_lib.check_keys(config.critic, CRITIC_KEYS, 'critic')
  config_lib.check_keys(config.perceptual, {'weights'}, 'perceptual')
  config_lib.check_keys(config.optim, base.OPTIM_KEYS, 'optim')
  config_lib.check_keys(config.d_optim, base.OPTIM_KEYS, 'd_optim')
  san_critic.norm_collections(config.critic.norm)  # Validates the name.
  if config.critic.normalize_every < 1:
    raise ValueError('config.critic.normalize_every must be >= 1, got '
                     f'{config.critic.normalize_every}')
  if config.psnr_warmup_steps < 0:
    raise ValueError('config.psnr_warmup_steps must be >= 0')
  crop = 4 * 2**config.critic.num_blocks
  if config.data.hr_patch < crop:
    raise ValueError(
        f'config.data.hr_patch={config.data.hr_patch} is smaller than the '
        f'critic crop {crop} (4 * 2^critic.num_blocks)')


def build_generator(config) -> srresnet.SRResNet:
  """The SRResNet G described by config.model and config.scale."""
  return srresnet.SRResNet(scale=config.scale,
                           num_feat=config.model.num_feat,
                           num_block=config.model.num_block)


def build_critic(config) -> san_critic.SANCritic:
  """The critic described by config.critic (gain 0 means eq. 9's g)."""
  c = config.critic
  return san_critic.SANCritic(
      num_features=c.num_features, max_features=c.max_features,
      num_blocks=c.num_blocks, norm=c.norm, batch_norm=c.batch_norm,
      circular=c.circular, gain=c.gain or None, ratio=c.ratio,
      subset=c.subset, momentum=c.momentum, legacy_rownorm=c.legacy_rownorm)


def step_keys(rng: jax.Array, step: jax.Array) -> dict[str, jax.Array]:
  """The step's named keys: critic crops of real / fake / G-step, SAN draw."""
  names = ('real', 'fake', 'gen', 'norm')
  keys = jax.random.split(jax.random.fold_in(rng, step), len(names))
  return dict(zip(names, keys))


def _init(rng, *, g, d, g_tx, d_tx, hr_patch, scale):
  g_rng, d_rng = jax.random.split(rng)
  lr = jnp.zeros((1, hr_patch // scale, hr_patch // scale, 3), jnp.float32)
  g_params = g.init(g_rng, lr)['params']
  # At the crop size the critic needs no crop key; its SAN divisors (or
  # spectral vectors) start from the initial weights.
  crop = jnp.zeros((1, d.crop_size, d.crop_size, 3), jnp.float32)
  d_vars = flax.core.unfreeze(d.init(d_rng, crop))
  d_params = d_vars.pop('params')
  return SANState(step=jnp.zeros((), jnp.int32), g_params=g_params,
                  g_opt_state=g_tx.init(g_params), d_params=d_params,
                  d_norm=d_vars, d_opt_state=d_tx.init(d_params))


def refresh_critic_norm(d, d_params, d_norm, step, key, every: int):
  """D's norm state from d_params if step % every == 0 (Fig. 6), else d_norm."""
  if every == 1:
    return san_critic.update_norm_state(d, d_params, d_norm, key)
  return jax.lax.cond(
      jnp.asarray(step) % every == 0,
      lambda n: san_critic.update_norm_state(d, d_params, n, key),
      lambda n: n, d_norm)


def _gan_step(state, batch, rng, constants, *, g, d, feat, g_tx, d_tx,
              loss: SanLoss, every: int):
  lr_img, hr = batch['lr'], batch['hr']
  keys = step_keys(rng, state.step)

  # 1. The critic's hinge step on HR and on the current G's (frozen) output.
  sr = jax.lax.stop_gradient(g.apply({'params': state.g_params}, lr_img))

  def d_loss_fn(d_params):
    variables = {'params': d_params, **state.d_norm}
    real = d.apply(variables, hr, keys['real'])
    fake = d.apply(variables, sr, keys['fake'])
    return adversarial.hinge_d_loss(real, fake), (real, fake)

  (d_loss, (real, fake)), d_grads = jax.value_and_grad(
      d_loss_fn, has_aux=True)(state.d_params)
  d_updates, d_opt_state = d_tx.update(d_grads, state.d_opt_state,
                                       state.d_params)
  d_params = optax.apply_updates(state.d_params, d_updates)
  # "Normalizes the weights after every update step": s (or u) now matches
  # the updated weights, which the G step and the next critic step read.
  d_norm = refresh_critic_norm(d, d_params, state.d_norm, state.step,
                               keys['norm'], every)

  # 2. G on eq. 10 against the updated critic.
  hr_feats = jax.lax.stop_gradient(feat.apply({'params': constants}, hr))
  layer = {loss.feature_layer: 1.0}

  def g_loss_fn(g_params):
    out = g.apply({'params': g_params}, lr_img)
    fake_logits = d.apply({'params': d_params, **d_norm}, out, keys['gen'])
    adv = adversarial.hinge_g_loss(fake_logits)
    content = pixel.l1(out, hr)
    features = perceptual.perceptual_loss(
        feat.apply({'params': constants}, out), hr_feats, layer)
    total = (loss.content_weight * content
             + loss.features_weight * features
             + loss.adv_weight * adv)
    return total, {'g_total': total, 'g_content': content,
                   'g_features': features, 'g_adv': adv}

  (_, g_metrics), g_grads = jax.value_and_grad(
      g_loss_fn, has_aux=True)(state.g_params)
  g_updates, g_opt_state = g_tx.update(g_grads, state.g_opt_state,
                                       state.g_params)
  g_params = optax.apply_updates(state.g_params, g_updates)

  metrics = {'d_loss': d_loss, 'd_real': jnp.mean(real),
             'd_fake': jnp.mean(fake), **g_metrics}
  metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
  state = state.replace(step=state.step + 1, g_params=g_params,
                        g_opt_state=g_opt_state, d_params=d_params,
                        d_norm=d_norm, d_opt_state=d_opt_state)
  return state, metrics


def build(config) -> base.Method:
  """SAN-SR from config.{model,critic,loss,perceptual,optim,d_optim}: stages
  'psnr' (warm-up, runs without init_from only) and 'gan'."""
  _check(config)
  loss = SanLoss.from_config(config.loss)
  g = build_generator(config)
  d = build_critic(config)
  feat = vgg.VGG(depth=19, layers=(loss.feature_layer,))
  total = int(config.train.num_steps)
  warmup = min(int(config.psnr_warmup_steps), total)
  warm_schedule = base.schedule(config.optim, warmup)
  stages = []
  if warmup:
    warm_tx = base.adam(config.optim, warm_schedule)
    stages.append(psnr.stage('psnr', warmup, g=g, l=None, g_tx=warm_tx,
                             l_tx=None, lr_schedule=warm_schedule,
                             evaluate_at_end=True))
  g_schedule = base.schedule(config.optim, total - warmup)
  # G made `warmup` updates before: its schedule counts the 'gan' stage's
  # steps, as D's does.
  g_tx = base.adam(config.optim, base.counted_from(g_schedule, warmup))
  d_tx = base.adam(config.d_optim,
                   base.schedule(config.d_optim, total - warmup))
  if total > warmup:
    gan_step = functools.partial(
        _gan_step, g=g, d=d, feat=feat, g_tx=g_tx, d_tx=d_tx, loss=loss,
        every=int(config.critic.normalize_every))
    stages.append(base.Stage(
        'gan', total - warmup,
        step=base.with_learning_rate(gan_step, g_schedule, warmup)))
  # The frozen VGG19 of the features term, loaded as ESRGAN's; a pure PSNR
  # run (no 'gan' stage) never reads it.
  constants = (functools.partial(vgg_import.feature_params, feat,
                                 config.perceptual.weights)
               if total > warmup else dict)
  return base.Method(
      init=functools.partial(_init, g=g, d=d, g_tx=g_tx, d_tx=d_tx,
                             hr_patch=config.data.hr_patch,
                             scale=config.scale),
      stages=tuple(stages),
      predict=functools.partial(base.generator_predict, g=g),
      init_fields=('g_params',),
      constants=constants,
      check_start=base.pretrained_g_check(config, warmup, total - warmup,
                                          'experiments/san_sr.py:psnr'),
      **base.patch_data(config))
