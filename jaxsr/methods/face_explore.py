"""Face SR by regularized latent exploration (paper 001) as a Method: no stage, the search is the prediction.

The state is the prior (G's parameters and buffers, D's), checkpointed at
step 0 so that `jaxsr.evaluate` and `jaxsr.restore` run from the workdir;
`predict` searches each LR face of a batch (jaxsr.methods.latent_search);
`finish` searches the run's faces (config.data, jaxsr.data.faces) and
writes the per-face outputs (jaxsr.evaluation.face_search).
"""

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np

from jaxsr.data import faces as faces_lib
from jaxsr.evaluation import face_search
from jaxsr.methods import base
from jaxsr.methods import latent_search
from jaxsr.pretrained import gan_priors


@flax.struct.dataclass
class FaceState:
  step: jax.Array
  g_params: dict
  g_buffers: dict
  d_params: dict


def search_config(config) -> latent_search.SearchConfig:
  """config.search and config.loss as the search's static record."""
  s, loss = config.search, config.loss
  return latent_search.SearchConfig(
      steps=s.steps, lr_z=s.lr_z, schedule=s.schedule, lr_g=s.lr_g,
      finetune_g=s.finetune_g, restarts=s.restarts, eps=s.eps,
      blocks=s.blocks, d_input=s.d_input, result=s.result,
      lambda_p=loss.lambda_p, lambda_s=loss.lambda_s, lambda_g=loss.lambda_g,
      geocross_scale=loss.geocross_scale, clamp_l2=loss.clamp_l2)


def _prior_faces(prior, seed: int):
  """n uint8 HR faces drawn from the prior at fixed seeds (data.demo='prior')."""
  def faces(n):
    keys = jax.random.split(jax.random.fold_in(jax.random.key(seed), 7), n)
    gen = jax.jit(jax.vmap(lambda k: prior.generate(
        prior.g_params, prior.g_buffers, prior.sample_latent(k))))
    images = np.asarray(gen(keys))
    return list(np.clip(np.round((images + 1.0) * 127.5), 0, 255
                        ).astype(np.uint8))
  return faces


def build(config) -> base.Method:
  """The face_explore method of config (experiments/face_explore.py)."""
  cfg = search_config(config)
  scale = config.scale
  if scale < 1:
    raise ValueError(f'config.scale={scale}: expected >= 1')
  prior = gan_priors.load(config.prior, jax.random.key(config.seed),
                          need_d=cfg.lambda_s > 0)
  if prior.resolution % scale:
    raise ValueError(f'config.scale={scale} does not divide the '
                     f'{prior.name} prior\'s size {prior.resolution}')

  def init(rng):
    del rng  # The state is the pretrained prior.
    return FaceState(step=jnp.zeros((), jnp.int32),
                     g_params=prior.g_params, g_buffers=prior.g_buffers,
                     d_params=prior.d_params)

  def search(state, keys, lr01):
    return latent_search.search_batch(
        keys, lr01, state.g_params, prior=prior, g_buffers=state.g_buffers,
        d_params=state.d_params, scale=scale, cfg=cfg)

  def predict(state, inputs, rng):
    lr = inputs['lr']
    return search(state, jax.random.split(rng, lr.shape[0]), lr)['result']

  stepped = latent_search.stepped_search(
      prior=prior, scale=scale, cfg=cfg,
      steps_per_call=(config.search.steps_per_call
                      or base.steps_per_call_auto()))

  def finish(state, workdir):
    faces = faces_lib.load(config.data, scale, prior.resolution,
                           _prior_faces(prior, config.seed))
    def search_fn(keys, lr01):
      return stepped(keys, lr01, state.g_params, state.g_buffers,
                     state.d_params)
    face_search.run(
        faces, search_fn, workdir,
        scale=scale, eps=cfg.eps, batch_size=config.data.batch_size,
        key=jax.random.fold_in(jax.random.key(config.seed), 3))

  return base.Method(init=init, stages=(), predict=predict, init_fields=(),
                     tileable=False, num_devices=None, finish=finish)
