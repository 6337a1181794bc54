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


def _start(key: jax.Array, lr01: jax.Array, g_params, *, prior, d_params,
           hr_size, cfg: SearchConfig) -> dict:
  """The carry of one face's random start before its first iteration."""
  latent = prior.sample_latent(key)
  z_tx, g_tx = _optimizers(cfg)
  return dict(latent=latent, g=g_params, z_opt=z_tx.init(latent),
              g_opt=g_tx.init(g_params) if cfg.finetune_g else (),
              target_feats=(d_features(prior, d_params, lr01, cfg.blocks)
                            if cfg.lambda_s else ()),
              best=jnp.zeros(hr_size + (3,), jnp.float32),
              best_loss=jnp.asarray(jnp.inf, jnp.float32),
              best_step=jnp.int32(0),
              best_l2=jnp.asarray(jnp.inf, jnp.float32))


def _optimizers(cfg: SearchConfig):
  return (spherical.spherical(optax.adam(_z_schedule(cfg))),
          optax.adam(cfg.lr_g))


def _iterate(carry: dict, js: jax.Array, lr01: jax.Array, *, prior,
             g_buffers, d_params, hr_size, cfg: SearchConfig):
  """Iterations js (a 1-D int array of their indices) of one start under
  lax.scan: (carry, {term: (len(js),)} of each iterate before its update)."""
  loss = functools.partial(loss_terms, prior=prior, g_buffers=g_buffers,
                           d_params=d_params, hr_size=hr_size, cfg=cfg)
  grad = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)
  z_tx, g_tx = _optimizers(cfg)

  def body(c, j):
    (total, (terms, sr)), (g_grad, z_grad) = grad(c['g'], c['latent'], lr01,
                                                  c['target_feats'])
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

  if js.shape[0] == 1:
    # A one-iteration piece is traced straight, with no loop around it (a
    # loop of one trip still keeps XLA:CPU's slow path, see stepped_search).
    carry, terms = body(carry, js[0])
    return carry, jax.tree.map(lambda t: t[None], terms)
  return jax.lax.scan(body, carry, js)


def _end(carry: dict, curves: dict, lr01: jax.Array, g_params, *, prior,
         g_buffers, hr_size) -> dict:
  """One start's outputs (see search_one) from its final carry."""
  last = (prior.generate(carry['g'], g_buffers, carry['latent']) + 1.0) / 2.0
  last = crop_to(last, hr_size)
  return {'best': carry['best'], 'last': last, 'best_loss': carry['best_loss'],
          'best_step': carry['best_step'], 'best_l2': carry['best_l2'],
          'last_l2': jnp.mean((down(last, lr01.shape[:2]) - lr01) ** 2),
          'g_change': optax.tree.norm(
              jax.tree.map(jnp.subtract, carry['g'], g_params)),
          'curves': curves}


def _pick(runs: dict, cfg: SearchConfig) -> dict:
  """One face's restarts (leading axis) -> the one with the lowest best loss,
  with its 'restart' index and every start's 'restart_losses'."""
  i = jnp.argmin(runs['best_loss'])
  out = jax.tree.map(lambda x: x[i], runs)
  out['restart'] = i
  out['restart_losses'] = runs['best_loss']
  out['result'] = out[cfg.result]
  out['lr_l2'] = out['best_l2'] if cfg.result == 'best' else out['last_l2']
  out['success'] = out['lr_l2'] <= cfg.eps
  return out


def search_one(key: jax.Array, lr01: jax.Array, g_params, *, prior, g_buffers,
               d_params, scale: int, cfg: SearchConfig) -> dict:
  """One face, one random start: cfg.steps iterations under lax.scan.

  Returns {'best': SR at the lowest total loss, 'last': SR after the last
  update, 'best_loss', 'best_step', 'best_l2' (PULSE's L2 of the best
  iterate), 'last_l2', 'g_change' (global norm of the fine-tuning's change
  of G), 'curves': {term: (steps,)} of each iterate before its update}.
  """
  hr_size = (lr01.shape[0] * scale, lr01.shape[1] * scale)
  carry = _start(key, lr01, g_params, prior=prior, d_params=d_params,
                 hr_size=hr_size, cfg=cfg)
  carry, curves = _iterate(carry, jnp.arange(cfg.steps), lr01, prior=prior,
                           g_buffers=g_buffers, d_params=d_params,
                           hr_size=hr_size, cfg=cfg)
  return _end(carry, curves, lr01, g_params, prior=prior, g_buffers=g_buffers,
              hr_size=hr_size)


def search_face(key: jax.Array, lr01: jax.Array, g_params, *, prior,
                g_buffers, d_params, scale: int, cfg: SearchConfig) -> dict:
  """cfg.restarts random starts of one face (vmapped); the restart with the
  lowest best loss wins, its 'restart' index and every start's 'losses'
  are reported."""
  one = functools.partial(search_one, prior=prior, g_buffers=g_buffers,
                          d_params=d_params, scale=scale, cfg=cfg)
  runs = jax.vmap(one, in_axes=(0, None, None))(
      jax.random.split(key, cfg.restarts), lr01, g_params)
  return _pick(runs, cfg)


def search_batch(keys: jax.Array, lr01: jax.Array, g_params, *, prior,
                 g_buffers, d_params, scale: int, cfg: SearchConfig) -> dict:
  """search_face of every face of an NHWC batch with its own key (N keys):
  vmapped, each face with its own copy of G, so that a face's result
  depends on its key only, never on the batch it came in. One traceable
  program (the whole search one lax.scan); see `stepped_search` for the
  same search dispatched in pieces."""
  face = functools.partial(search_face, prior=prior, g_buffers=g_buffers,
                           d_params=d_params, scale=scale, cfg=cfg)
  return jax.vmap(face, in_axes=(0, 0, None))(keys, lr01, g_params)


def _faces_starts(fn, face_axes, start_axes):
  """fn vmapped over a batch's faces and, inside, each face's starts."""
  return jax.vmap(jax.vmap(fn, in_axes=start_axes), in_axes=face_axes)


def stepped_search(*, prior, scale: int, cfg: SearchConfig,
                   steps_per_call: int):
  """search_batch as a host loop of jitted pieces of `steps_per_call`
  iterations each (the last piece may be shorter), with the same results.

  Returns run(keys, lr01, g_params, g_buffers, d_params) -> search_batch's
  output (not traceable: call it outside jit). On XLA:CPU a rolled lax.scan
  of the iteration takes the generic path for the convolutions' kernel
  gradients (StyleGAN2 256 px: 185 s per iteration rolled, 84 s unrolled,
  benchmarks/RESULTS.md), so the CPU runs one iteration per call
  (base.steps_per_call_auto); an accelerator runs 50 per call.
  The compiled pieces are kept per input shape across calls.
  """
  if steps_per_call < 1:
    raise ValueError(f'steps_per_call={steps_per_call}: expected >= 1')

  def sizes(lr01):
    return (lr01.shape[1] * scale, lr01.shape[2] * scale)

  @jax.jit
  def start(keys, lr01, g_params, d_params):
    one = functools.partial(_start, prior=prior, d_params=d_params,
                            hr_size=sizes(lr01), cfg=cfg)
    starts = jax.vmap(lambda k: jax.random.split(k, cfg.restarts))(keys)
    return _faces_starts(one, (0, 0, None), (0, None, None))(
        starts, lr01, g_params)

  @jax.jit
  def piece(carry, js, lr01, g_buffers, d_params):
    it = functools.partial(_iterate, prior=prior, g_buffers=g_buffers,
                           d_params=d_params, hr_size=sizes(lr01), cfg=cfg)
    return _faces_starts(it, (0, None, 0), (0, None, None))(carry, js, lr01)

  @jax.jit
  def end(carry, curves, lr01, g_params, g_buffers):
    fin = functools.partial(_end, prior=prior, g_buffers=g_buffers,
                            hr_size=sizes(lr01))
    runs = _faces_starts(fin, (0, 0, 0, None), (0, 0, None, None))(
        carry, curves, lr01, g_params)
    return jax.vmap(lambda r: _pick(r, cfg))(runs)

  def run(keys, lr01, g_params, g_buffers, d_params):
    carry = start(keys, lr01, g_params, d_params)
    curves = []
    for first in range(0, cfg.steps, steps_per_call):
      js = jnp.arange(first, min(first + steps_per_call, cfg.steps))
      carry, c = piece(carry, js, lr01, g_buffers, d_params)
      curves.append(c)
    curves = jax.tree.map(lambda *c: jnp.concatenate(c, axis=-1), *curves)
    return end(carry, curves, lr01, g_params, g_buffers)

  return run
