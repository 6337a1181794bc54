"""Regularized latent exploration (paper 001, on PULSE): the search of one face, and of a batch.

The objective of eq. 2 for one LR face x (float32 HWC in [0, 1]):

  L = lambda_p L_p + lambda_s L_s + lambda_g L_g

- L_p (eq. 3): PULSE's L2, the mean over pixels of (down(y) - x)^2 in [0, 1]
  units, where y is G's image and `down` the differentiable MATLAB bicubic
  (jaxsr.data.imresize.imresize_jax) to x's size; PULSE clamps it at eps
  from below (`clamp_l2`), so that a face already within eps is no longer
  pulled towards the LR.
- L_s (eq. 4): sum over D's last `blocks` blocks of the mean absolute
  difference between D's features of down(y) and of x. D reads images at
  the prior's resolution, so both LR-sized images enter D through
  `d_input`: 'bicubic' upscales them (MATLAB bicubic) back to that size.
  The paper writes ||.||_1 (a sum); the per-block mean keeps lambda_s = 0.5
  meaningful for any block size (a choice of ours, documented in the config).
- L_g: PULSE's geodesic cross loss of the W+ rows (jaxsr.losses.latent)
  times `geocross_scale`; 0 for a single-row latent (DCGAN).

The latent moves on its spheres (jaxsr.optim.spherical, lr lambda_z with
PULSE's schedule) and, with online fine-tuning, G's parameters move with Adam
(§3: 5e-5); D never changes. The iterate with the lowest total loss is kept
(as PULSE tracks its best image). Every face runs its own search: its own
latent, its own restarts and its own fine-tuned copy of G (vmap).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax

from jaxsr.data import imresize
from jaxsr.losses import latent as latent_losses
from jaxsr.models import gan_prior
from jaxsr.optim import schedules
from jaxsr.optim import spherical

TERMS = ('total', 'l2', 'semantic', 'geocross')


@dataclasses.dataclass(frozen=True)
class SearchConfig:
  """The hyper-parameters of one search (plain values: hashable, static)."""
  steps: int = 100
  lr_z: float = 0.4
  schedule: str = 'linear1cycledrop'
  lr_g: float = 5e-5
  finetune_g: bool = True
  restarts: int = 1
  lambda_p: float = 100.0
  lambda_s: float = 0.5
  lambda_g: float = 500.0
  geocross_scale: float = 1e-4
  clamp_l2: bool = True
  eps: float = 2e-3
  blocks: int = 3
  d_input: str = 'bicubic'
  result: str = 'best'

  def __post_init__(self):
    if self.schedule not in ('linear1cycledrop', 'fixed'):
      raise ValueError(f'search.schedule={self.schedule!r}: expected '
                       "'linear1cycledrop' or 'fixed'")
    if self.d_input != 'bicubic':
      raise ValueError(f"search.d_input={self.d_input!r}: expected 'bicubic'")
    if self.result not in ('best', 'last'):
      raise ValueError(f"search.result={self.result!r}: expected 'best' or "
                       "'last'")
    if self.steps < 1 or self.restarts < 1 or self.blocks < 1:
      raise ValueError('search.steps, search.restarts and search.blocks must '
                       'be >= 1')


def _to_prior(x01: jax.Array) -> jax.Array:
  return x01 * 2.0 - 1.0


def down(image01: jax.Array, size: tuple[int, int]) -> jax.Array:
  """HWC [0, 1] image -> MATLAB-bicubic downscale to `size` (differentiable)."""
  return imresize.imresize_jax(image01[None], output_shape=size)[0]


def crop_to(image: jax.Array, size: tuple[int, int]) -> jax.Array:
  """The centre (h, w) window of a square prior image (the whole of it for an
  LR of the prior's aspect)."""
  h, w = size
  top = (image.shape[0] - h) // 2
  left = (image.shape[1] - w) // 2
  return image[top:top + h, left:left + w]


def d_features(prior: gan_prior.GanPrior, d_params, lr_sized01: jax.Array,
               blocks: int) -> tuple:
  """D's last `blocks` block features of an LR-sized [0, 1] image, upscaled
  (MATLAB bicubic) into D's resolution and range."""
  r = prior.resolution
  up = imresize.imresize_jax(lr_sized01[None], output_shape=(r, r))[0]
  _, feats = prior.discriminate(d_params, _to_prior(up))
  if blocks > len(feats):
    raise ValueError(f'search.blocks={blocks} but the {prior.name} '
                     f'discriminator has {len(feats)} blocks')
  return tuple(feats[-blocks:])


def loss_terms(g_params, latent, lr01, target_feats, *, prior, g_buffers,
               d_params, hr_size, cfg: SearchConfig):
  """(total, (terms dict, SR image [0, 1] HWC of hr_size)) of one iterate."""
  image = (prior.generate(g_params, g_buffers, latent) + 1.0) / 2.0
  sr = crop_to(image, hr_size)
  small = down(sr, lr01.shape[:2])
  l2 = jnp.mean((small - lr01) ** 2)
  pixel = jnp.maximum(l2, cfg.eps) if cfg.clamp_l2 else l2
  if cfg.lambda_s:
    feats = d_features(prior, d_params, small, cfg.blocks)
    semantic = sum(jnp.mean(jnp.abs(f - t))
                   for f, t in zip(feats, target_feats))
  else:
    semantic = jnp.zeros(())
  if prior.w_rows is not None:
    geocross = latent_losses.geocross_pulse(prior.w_rows(g_buffers, latent))
  else:
    geocross = jnp.zeros(())
  total = (cfg.lambda_p * pixel + cfg.lambda_s * semantic
           + cfg.lambda_g * cfg.geocross_scale * geocross)
  terms = {'total': total, 'l2': l2, 'semantic': semantic,
           'geocross': geocross}
  return total, (terms, sr)


def _z_schedule(cfg: SearchConfig) -> optax.Schedule:
  if cfg.schedule == 'fixed':
    return optax.constant_schedule(cfg.lr_z)
  return schedules.linear1cycledrop(cfg.lr_z, cfg.steps)


def search_one(key: jax.Array, lr01: jax.Array, g_params, *, prior, g_buffers,
               d_params, scale: int, cfg: SearchConfig) -> dict:
  """One face, one random start: cfg.steps iterations under lax.scan.

  Returns {'best': SR at the lowest total loss, 'last': SR after the last
  update, 'best_loss', 'best_step', 'best_l2' (PULSE's L2 of the best
  iterate), 'last_l2', 'g_change' (global norm of the fine-tuning's change
  of G), 'curves': {term: (steps,)} of each iterate before its update}.
  """
  hr_size = (lr01.shape[0] * scale, lr01.shape[1] * scale)
  target_feats = (d_features(prior, d_params, lr01, cfg.blocks)
                  if cfg.lambda_s else ())
  loss = functools.partial(loss_terms, prior=prior, g_buffers=g_buffers,
                           d_params=d_params, hr_size=hr_size, cfg=cfg)
  grad = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
  z_tx = spherical.spherical(optax.adam(_z_schedule(cfg)))
  g_tx = optax.adam(cfg.lr_g)
  latent = prior.sample_latent(key)
  image0 = jnp.zeros(hr_size + (3,), jnp.float32)
  carry = dict(latent=latent, g=g_params, z_opt=z_tx.init(latent),
               g_opt=g_tx.init(g_params) if cfg.finetune_g else (),
               best=image0, best_loss=jnp.inf, best_step=jnp.int32(0),
               best_l2=jnp.inf)

  def body(c, j):
    (total, (terms, sr)), (g_grad, z_grad) = grad(c['g'], c['latent'], lr01,
                                                  target_feats)
    better = total < c['best_loss']
    new = dict(c)
    new['best'] = jnp.where(better, sr, c['best'])
    new['best_loss'] = jnp.where(better, total, c['best_loss'])
    new['best_step'] = jnp.where(better, j, c['best_step'])
    new['best_l2'] = jnp.where(better, terms['l2'], c['best_l2'])
    updates, new['z_opt'] = z_tx.update(z_grad, c['z_opt'], c['latent'])
    new['latent'] = optax.apply_updates(c['latent'], updates)
    if cfg.finetune_g:
      updates, new['g_opt'] = g_tx.update(g_grad, c['g_opt'], c['g'])
      new['g'] = optax.apply_updates(c['g'], updates)
    return new, terms

  carry, curves = jax.lax.scan(body, carry, jnp.arange(cfg.steps))
  last = (prior.generate(carry['g'], g_buffers, carry['latent']) + 1.0) / 2.0
  last = crop_to(last, hr_size)
  return {'best': carry['best'], 'last': last, 'best_loss': carry['best_loss'],
          'best_step': carry['best_step'], 'best_l2': carry['best_l2'],
          'last_l2': jnp.mean((down(last, lr01.shape[:2]) - lr01) ** 2),
          'g_change': optax.tree.norm(
              jax.tree.map(jnp.subtract, carry['g'], g_params)),
          'curves': curves}


def search_face(key: jax.Array, lr01: jax.Array, g_params, *, prior,
                g_buffers, d_params, scale: int, cfg: SearchConfig) -> dict:
  """cfg.restarts random starts of one face (vmapped); the restart with the
  lowest best loss wins, its 'restart' index and every start's 'losses'
  are reported."""
  one = functools.partial(search_one, prior=prior, g_buffers=g_buffers,
                          d_params=d_params, scale=scale, cfg=cfg)
  runs = jax.vmap(one, in_axes=(0, None, None))(
      jax.random.split(key, cfg.restarts), lr01, g_params)
  i = jnp.argmin(runs['best_loss'])
  out = jax.tree.map(lambda x: x[i], runs)
  out['restart'] = i
  out['restart_losses'] = runs['best_loss']
  out['result'] = out[cfg.result]
  out['lr_l2'] = out['best_l2'] if cfg.result == 'best' else out['last_l2']
  out['success'] = out['lr_l2'] <= cfg.eps
  return out


def search_batch(keys: jax.Array, lr01: jax.Array, g_params, *, prior,
                 g_buffers, d_params, scale: int, cfg: SearchConfig) -> dict:
  """search_face of every face of an NHWC batch with its own key (N keys):
  vmapped, each face with its own copy of G, so that a face's result
  depends on its key only, never on the batch it came in."""
  face = functools.partial(search_face, prior=prior, g_buffers=g_buffers,
                           d_params=d_params, scale=scale, cfg=cfg)
  return jax.vmap(face, in_axes=(0, 0, None))(keys, lr01, g_params)
