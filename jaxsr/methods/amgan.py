"""AMGAN (paper 003 §1): blind SR with adaptive modulation, trained on on-the-fly degradations.

Stages (the RL stages of AMGAN-RL build on this state):
- 'sr': AMNet (`jaxsr.models.amnet`) super-resolves the LR of each HR patch,
  degraded in the step (`jaxsr.data.degradations.random_degradation`: a random
  21x21 Gaussian kernel, MATLAB bicubic downscale, optional noise, from
  fold_in(rng, step)), modulated by the TRUE degradation code. One jitted
  step updates D, then G:
    G: L1 + 15 L_vgg + 0.01 L_realness + 10 L_DISTS (the supplement's total
       loss), L_vgg over VGG19 relu1_1..relu5_1 weighted 1e3 / C^2 with the
       per-element mean (perceptual.channel_weights), L_realness the
       supplement's KL(A1 || D(G)) - KL(A0 || D(G)) (losses/realness.py);
    D: RealnessGAN's CE(A1 shifted +1, D(HR)) + CE(A0 shifted -1, D(SR)),
       anchors drawn afresh every step (as RealnessGAN's code) and shared by
       the D and G losses of that step; `loss.gan='ragan'` gives AMGAN*
       (the supplement's ablation: ESRGAN's relativistic GAN, D with 1 logit).
- 'predictor': the kernel predictor (LR -> code) regressed on the true code
  (mean squared error), AMNet and D frozen.
- 'fill' and 'ddpg': AMGAN-RL's actor-critic (Algorithm 1) with AMNet as the
  frozen renderer and the predictor as the actor (`jaxsr.methods.amgan_rl`;
  config.rl, experiments/amgan_rl.py).

predict(state, {'lr'}) = AMNet(lr, predictor(lr)): the model never sees the
kernel. The kernel PCA (10 dims) is fitted from `degradation.pca_seed` when
the run starts and kept in the state (checkpointed), so a restored model
encodes kernels with the matrix it was trained with.
"""

import dataclasses
import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from jaxsr import checkpoint
from jaxsr import config_lib
from jaxsr.data import degradations
from jaxsr.losses import adversarial
from jaxsr.losses import dists as dists_loss
from jaxsr.losses import perceptual
from jaxsr.losses import pixel
from jaxsr.losses import realness
from jaxsr.methods import amgan_rl
from jaxsr.methods import base
from jaxsr.models import amnet
from jaxsr.models import discriminators
from jaxsr.models import vgg
from jaxsr.pretrained import dists as dists_import
from jaxsr.pretrained import vgg as vgg_import

MODEL_KEYS = {'num_feat', 'num_block', 'mod_hidden', 'bicubic_skip'}
PREDICTOR_KEYS = {'num_feat', 'num_down', 'bound'}
DISC_KEYS = {'num_feat', 'num_outcomes', 'norm', 'batch_norm'}
DEGRADATION_KEYS = {'sigma_min', 'sigma_max', 'rate_iso', 'scaling',
                    'noise_max', 'rate_clean', 'noise_code_scale',
                    'kernel_size', 'pca_dim', 'pca_seed', 'pca_kernels',
                    'val_width'}
LOSS_KEYS = {'pixel_weight', 'vgg_weight', 'vgg_numerator', 'vgg_layers',
             'adv_weight', 'dists_weight', 'gan', 'anchors', 'g_loss',
             'positive_skew', 'negative_skew'}
FEATURE_KEYS = {'vgg19', 'dists', 'dists_vgg16'}
GANS = ('realness', 'ragan')


@dataclasses.dataclass(frozen=True)
class Losses:
  """The 'sr' stage's objective as the jitted step reads it (static)."""
  pixel_weight: float
  vgg_weight: float
  vgg_layer_weights: tuple[tuple[str, float], ...]
  adv_weight: float
  dists_weight: float
  gan: str
  num_outcomes: int
  anchors: str
  g_loss: str
  positive_skew: float
  negative_skew: float

  @classmethod
  def from_config(cls, config) -> 'Losses':
    loss = config.loss
    config_lib.check_keys(loss, LOSS_KEYS, 'loss')
    if loss.gan not in GANS:
      raise ValueError(f'config.loss.gan={loss.gan!r}; expected one of {GANS}')
    if loss.anchors not in realness.NAMINGS:
      raise ValueError(f'config.loss.anchors={loss.anchors!r}; expected one '
                       f'of {realness.NAMINGS}')
    if loss.g_loss not in realness.G_LOSSES:
      raise ValueError(f'config.loss.g_loss={loss.g_loss!r}; expected one of '
                       f'{realness.G_LOSSES}')
    channels = {k: vgg.conv_width(k) for k in loss.vgg_layers}
    return cls(
        pixel_weight=float(loss.pixel_weight),
        vgg_weight=float(loss.vgg_weight),
        vgg_layer_weights=tuple(perceptual.channel_weights(
            channels, float(loss.vgg_numerator)).items()),
        adv_weight=float(loss.adv_weight),
        dists_weight=float(loss.dists_weight), gan=loss.gan,
        num_outcomes=int(config.disc.num_outcomes), anchors=loss.anchors,
        g_loss=loss.g_loss, positive_skew=float(loss.positive_skew),
        negative_skew=float(loss.negative_skew))

  @property
  def skews(self) -> dict:
    # The supports span the two skews, as RealnessGAN's code.
    return dict(positive_skew=self.positive_skew,
                negative_skew=self.negative_skew,
                v_min=self.negative_skew, v_max=self.positive_skew)

  def anchors_of(self, key):
    if self.gan != 'realness':
      return None
    return realness.sample_anchors(key, self.num_outcomes, self.anchors)

  def d_term(self, real, fake, anchors):
    if self.gan == 'ragan':
      return adversarial.d_loss(adversarial.GanType.RAGAN, real, fake)
    return realness.realness_d_loss(real, fake, *anchors, **self.skews)

  def g_term(self, real, fake, anchors):
    if self.gan == 'ragan':
      return adversarial.g_loss(adversarial.GanType.RAGAN, real, fake)
    return realness.realness_g_loss(real, fake, *anchors, kind=self.g_loss,
                                    **self.skews)


@dataclasses.dataclass(frozen=True)
class Degradation:
  """config.degradation as the sampler's arguments (static)."""
  sigma_range: tuple[float, float]
  rate_iso: float
  scaling: float
  noise_max: float
  rate_clean: float
  noise_code_scale: float

  @classmethod
  def from_config(cls, d) -> 'Degradation':
    config_lib.check_keys(d, DEGRADATION_KEYS, 'degradation')
    return cls(sigma_range=degradations.check_sigma_range(
        (d.sigma_min, d.sigma_max)), rate_iso=float(d.rate_iso),
               scaling=float(d.scaling), noise_max=float(d.noise_max),
               rate_clean=float(d.rate_clean),
               noise_code_scale=float(d.noise_code_scale))

  def batch(self, key, hr, pca, scale):
    return degradations.random_degradation(
        key, hr, scale=scale, pca=pca, sigma_range=self.sigma_range,
        rate_iso=self.rate_iso, scaling=self.scaling,
        noise_max=self.noise_max, rate_clean=self.rate_clean,
        noise_code_scale=self.noise_code_scale)


@flax.struct.dataclass
class AMGANState:
  """AMNet (G), the realness D (with BN statistics), the kernel predictor P,
  their Adam states, the kernel PCA the codes are made with, and AMGAN-RL's
  critic and replay buffer (None when config.rl runs no step)."""
  step: jax.Array
  g_params: Any
  g_opt_state: Any
  d_params: Any
  d_batch_stats: Any
  d_norm: Any
  d_opt_state: Any
  p_params: Any
  p_opt_state: Any
  pca: degradations.KernelPCA
  rl: amgan_rl.RLState | None


def code_dim(config) -> int:
  """The code's length: the PCA dims, +1 for the noise level when noisy."""
  return int(config.degradation.pca_dim) + (
      1 if config.degradation.noise_max > 0 else 0)


def build_networks(config):
  """(AMNet G, kernel predictor P, realness D) of config."""
  config_lib.check_keys(config.model, MODEL_KEYS, 'model')
  config_lib.check_keys(config.predictor, PREDICTOR_KEYS, 'predictor')
  config_lib.check_keys(config.disc, DISC_KEYS, 'disc')
  dim = code_dim(config)
  g = amnet.AMNet(scale=config.scale, num_feat=config.model.num_feat,
                  num_block=config.model.num_block, code_dim=dim,
                  mod_hidden=config.model.mod_hidden,
                  bicubic_skip=config.model.bicubic_skip)
  bound = float(config.predictor.bound)
  p = amnet.KernelPredictor(num_feat=config.predictor.num_feat,
                            num_down=config.predictor.num_down, code_dim=dim,
                            bound=bound or None)
  outputs = config.disc.num_outcomes if config.loss.gan == 'realness' else 1
  d = discriminators.VGGStyleDiscriminator(
      num_feat=config.disc.num_feat, input_size=config.data.hr_patch,
      norm=config.disc.norm, batch_norm=config.disc.batch_norm,
      num_outputs=outputs)
  return g, p, d


def fit_pca(config) -> degradations.KernelPCA:
  """The kernel PCA of config.degradation, fitted from its seed."""
  d = config.degradation
  return degradations.fit_kernel_pca(
      int(d.pca_seed), dim=int(d.pca_dim), num_kernels=int(d.pca_kernels),
      sigma_range=(d.sigma_min, d.sigma_max), rate_iso=d.rate_iso,
      scaling=d.scaling, size=int(d.kernel_size))


def _init(rng, *, g, p, d, g_tx, d_tx, p_tx, pca, hr_patch, scale, dim,
          rl_init):
  g_rng, p_rng, d_rng = jax.random.split(rng, 3)
  rl_rng = jax.random.fold_in(rng, 3)
  lr = jnp.zeros((1, hr_patch // scale, hr_patch // scale, 3), jnp.float32)
  hr = jnp.zeros((1, hr_patch, hr_patch, 3), jnp.float32)
  g_params = g.init(g_rng, lr, jnp.zeros((1, dim), jnp.float32))['params']
  p_params = p.init(p_rng, lr)['params']
  d_vars = flax.core.unfreeze(d.init(d_rng, hr, train=False))
  d_params = d_vars.pop('params')
  d_stats = d_vars.pop('batch_stats', {})
  return AMGANState(
      step=jnp.zeros((), jnp.int32), g_params=g_params,
      g_opt_state=g_tx.init(g_params), d_params=d_params,
      d_batch_stats=d_stats, d_norm=d_vars, d_opt_state=d_tx.init(d_params),
      p_params=p_params, p_opt_state=p_tx.init(p_params),
      pca=jax.tree.map(jnp.asarray, pca),
      rl=None if rl_init is None else rl_init(rl_rng, p_params=p_params,
                                              pca=pca))


def _apply_d(d, params, state, x):
  """D in training mode (BN on batch statistics); state = (stats, norm)."""
  stats, norm = state
  logits, updates = d.apply({'params': params, 'batch_stats': stats, **norm},
                            x, train=True, update_stats=True,
                            mutable=['batch_stats', *norm])
  return logits, (updates.get('batch_stats', stats),
                  {name: updates[name] for name in norm})


def _sr_step(state, batch, rng, constants, *, g, d, feat, g_tx, d_tx,
             loss: Losses, degradation: Degradation, scale: int):
  key = jax.random.fold_in(rng, state.step)
  deg_key, anchor_key = jax.random.split(key)
  data = degradation.batch(deg_key, batch['hr'], state.pca, scale)
  lr, hr, code = data['lr'], data['hr'], data['code']
  anchors = loss.anchors_of(anchor_key)

  # 1. D on HR and on the current G's (frozen) output.
  sr = jax.lax.stop_gradient(g.apply({'params': state.g_params}, lr, code))

  def d_loss_fn(d_params):
    real, stats = _apply_d(d, d_params, (state.d_batch_stats, state.d_norm),
                           hr)
    fake, stats = _apply_d(d, d_params, stats, sr)
    return loss.d_term(real, fake, anchors), stats

  (d_loss, d_stats), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
      state.d_params)
  updates, d_opt_state = d_tx.update(d_grads, state.d_opt_state,
                                     state.d_params)
  d_params = optax.apply_updates(state.d_params, updates)

  # 2. G against the updated D.
  hr_feats = jax.lax.stop_gradient(
      feat.apply({'params': constants['vgg19']}, hr))

  def g_loss_fn(g_params):
    out = g.apply({'params': g_params}, lr, code)
    real, stats = _apply_d(d, d_params, d_stats, hr)
    fake, stats = _apply_d(d, d_params, stats, out)
    terms = {
        'g_pixel': pixel.l1(out, hr),
        'g_vgg': perceptual.perceptual_loss(
            feat.apply({'params': constants['vgg19']}, out), hr_feats,
            dict(loss.vgg_layer_weights)),
        # real logits do not depend on G: constants of this gradient.
        'g_adv': loss.g_term(jax.lax.stop_gradient(real), fake, anchors),
        'g_dists': (dists_loss.dists_loss(out, hr, constants['dists'])
                    if loss.dists_weight else jnp.zeros(())),
    }
    total = (loss.pixel_weight * terms['g_pixel']
             + loss.vgg_weight * terms['g_vgg']
             + loss.adv_weight * terms['g_adv']
             + loss.dists_weight * terms['g_dists'])
    return total, ({'g_total': total, **terms}, stats)

  (_, (g_metrics, d_stats)), g_grads = jax.value_and_grad(
      g_loss_fn, has_aux=True)(state.g_params)
  updates, g_opt_state = g_tx.update(g_grads, state.g_opt_state,
                                     state.g_params)
  g_params = optax.apply_updates(state.g_params, updates)
  metrics = {'d_loss': d_loss, **g_metrics}
  state = state.replace(
      step=state.step + 1, g_params=g_params, g_opt_state=g_opt_state,
      d_params=d_params, d_batch_stats=d_stats[0], d_norm=d_stats[1],
      d_opt_state=d_opt_state)
  return state, {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}


def _predictor_step(state, batch, rng, constants, *, p, p_tx,
                    degradation: Degradation, scale: int):
  del constants  # No feature network: a regression on the code.
  key = jax.random.fold_in(rng, state.step)
  data = degradation.batch(key, batch['hr'], state.pca, scale)

  def loss_fn(p_params):
    return jnp.mean(jnp.square(p.apply({'params': p_params}, data['lr'])
                               - data['code']))

  mse, grads = jax.value_and_grad(loss_fn)(state.p_params)
  updates, p_opt_state = p_tx.update(grads, state.p_opt_state,
                                     state.p_params)
  state = state.replace(step=state.step + 1,
                        p_params=optax.apply_updates(state.p_params, updates),
                        p_opt_state=p_opt_state)
  return state, {'p_code_mse': mse}


def predict(state, inputs, rng, *, g, p):
  """SR of inputs['lr'] with the code the predictor reads from it (clipped
  to the action box after RL: amgan_rl.policy_code)."""
  del rng  # Deterministic.
  code = amgan_rl.policy_code(state, inputs['lr'], p=p)
  return g.apply({'params': state.g_params}, inputs['lr'], code)


def encode_kernel(state, kernels, *, noise_coded: bool):
  """(N, k, k) kernels -> their codes in the run's PCA, with a 0 noise level
  appended when the code carries one (blind test sets are noise-free)."""
  code = degradations.encode(state.pca, kernels)
  if noise_coded:
    code = jnp.concatenate([code, jnp.zeros_like(code[:, :1])], axis=1)
  return code


def constants(config, feat) -> dict:
  """The frozen feature networks of the G loss: VGG19 and DISTS."""
  config_lib.check_keys(config.features, FEATURE_KEYS, 'features')
  out = {'vgg19': vgg_import.feature_params(feat, config.features.vgg19)}
  if config.loss.dists_weight:
    out['dists'] = dists_import.load_params(config.features.dists,
                                            config.features.dists_vgg16)
  return out


def blurred_held_out(config, val_set=None):
  """The held-out set with its LR made by the blind protocol: the isotropic
  Gaussian of width config.degradation.val_width (Table 1's 1.3 by default),
  MATLAB bicubic (`degradations.degrade_image`), so that the loop's scores
  during training are blind-SR scores; None without a held-out set.
  val_set: the plain held-out loader (default: base.patch_data's)."""
  data = (val_set or base.patch_data(config)['held_out'])()
  if data is None:
    return None
  width = float(config.degradation.get('val_width', 1.3))
  size = int(config.degradation.kernel_size)
  return dataclasses.replace(data, load_lr=lambda i: degradations.degrade_image(
      data.load_hr(i), width, int(config.scale), size))


def _rl_check_start(config, settings: amgan_rl.Settings, rl_only: bool):
  """check_start: the reward's files load, and an RL-only run starts from a
  trained AMGAN (config.init_from) unless it resumes."""
  def check(workdir: str) -> None:
    if not settings.enabled:
      return
    settings.reward_fn()  # E.g. a missing NIQE model: one line, now.
    if (rl_only and not config.init_from
        and not checkpoint.steps_on_disk(workdir)):
      raise ValueError(
          'AMGAN-RL needs a trained AMGAN (renderer and pretrained kernel '
          'predictor): train experiments/amgan.py and pass '
          '--config.init_from=<its workdir>')
  return check


def build(config) -> base.Method:
  """AMGAN: stages 'sr' (config.train.num_steps) and 'predictor'
  (config.predictor_steps); AMGAN-RL's 'fill' and 'ddpg' (config.rl)."""
  config_lib.check_keys(config.optim, base.OPTIM_KEYS, 'optim')
  loss = Losses.from_config(config)
  degradation = Degradation.from_config(config.degradation)
  settings = amgan_rl.Settings.from_config(config)
  g, p, d = build_networks(config)
  feat = vgg.VGG(depth=19, layers=tuple(k for k, _ in loss.vgg_layer_weights))
  sr_steps = int(config.train.num_steps)
  p_steps = int(config.predictor_steps)
  if sr_steps < 0 or p_steps < 0:
    raise ValueError('config.train.num_steps and config.predictor_steps must '
                     'be >= 0')
  sr_schedule = base.schedule(config.optim, sr_steps)
  p_schedule = base.schedule(config.optim, p_steps)
  g_tx = base.adam(config.optim, sr_schedule)
  d_tx = base.adam(config.optim, sr_schedule)
  p_tx = base.adam(config.optim, p_schedule)
  # DDPG's Adam (Lillicrap et al.: default betas), constant rates.
  actor_tx = optax.adam(settings.actor_lr)
  critic_tx = optax.adam(settings.critic_lr)
  critic = settings.critic()
  scale = int(config.scale)
  kernel_size = int(config.degradation.kernel_size)
  reward = functools.cache(settings.reward_fn)  # Loaded when first traced.
  stages = []
  if sr_steps:
    step = functools.partial(_sr_step, g=g, d=d, feat=feat, g_tx=g_tx,
                             d_tx=d_tx, loss=loss, degradation=degradation,
                             scale=scale)
    stages.append(base.Stage('sr', sr_steps, step=base.with_learning_rate(
        step, sr_schedule)))
  if p_steps:
    step = functools.partial(_predictor_step, p=p, p_tx=p_tx,
                             degradation=degradation, scale=scale)
    stages.append(base.Stage('predictor', p_steps, step=base.with_learning_rate(
        step, p_schedule, sr_steps)))
  play = dict(g=g, p=p, degradation=degradation, settings=settings,
              scale=scale)
  if settings.fill_steps:
    stages.append(base.Stage('fill', settings.fill_steps, enter=amgan_rl.enter,
                             step=_lazy_reward(amgan_rl.fill_step, play,
                                               reward)))
  if settings.ddpg_steps:
    stages.append(base.Stage('ddpg', settings.ddpg_steps, enter=amgan_rl.enter,
                             step=_lazy_reward(
                                 amgan_rl.ddpg_step,
                                 dict(play, critic=critic, actor_tx=actor_tx,
                                      critic_tx=critic_tx), reward)))
  pca = fit_pca(config)
  rl_init = None
  if settings.enabled:
    rl_init = functools.partial(
        amgan_rl.init_state, settings=settings, critic=critic,
        actor_tx=actor_tx, critic_tx=critic_tx, degradation=degradation,
        lr_size=config.data.hr_patch // scale, dim=code_dim(config))
  rl_only = settings.enabled and not (sr_steps or p_steps)
  data = base.patch_data(config)
  held_out = functools.partial(blurred_held_out, config, data['held_out'])
  return base.Method(
      init=functools.partial(_init, g=g, p=p, d=d, g_tx=g_tx, d_tx=d_tx,
                             p_tx=p_tx, pca=pca,
                             hr_patch=config.data.hr_patch, scale=scale,
                             dim=code_dim(config), rl_init=rl_init),
      stages=tuple(stages),
      predict=functools.partial(predict, g=g, p=p),
      predict_code=functools.partial(amgan_rl.policy_code, p=p),
      encode_kernel=functools.partial(
          encode_kernel, noise_coded=config.degradation.noise_max > 0),
      # An RL run reads the renderer, the predictor and the PCA of a trained
      # AMGAN (its D may have been built for another patch size).
      init_fields=(('g_params', 'p_params', 'pca') if rl_only else
                   ('g_params', 'd_params', 'd_batch_stats', 'p_params',
                    'pca')),
      # The feature networks serve the 'sr' stage only.
      constants=(functools.partial(constants, config, feat) if sr_steps
                 else dict),
      check_start=_rl_check_start(config, settings, rl_only),
      finish=(functools.partial(
          amgan_rl.finish, g=g, p=p, settings=settings, held_out=held_out,
          scale=scale, kernel_size=kernel_size) if settings.enabled else None),
      train_batches=data['train_batches'], held_out=held_out,
      # Without RL steps the rl section shapes nothing in the state.
      resumable_keys=() if settings.enabled else ('rl.*',))


def _lazy_reward(step_fn, kwargs: dict, reward):
  """step_fn with its reward function made when the step is first traced
  (so that building the method, e.g. to restore it, reads no NIQE file)."""
  def step(state, batch, rng, constants):
    return step_fn(state, batch, rng, constants, reward_fn=reward(), **kwargs)
  return step
