"""PSNR-oriented pre-training (paper 000 §4.1, stage 1): L1 for G (LR→HR) and L (HR→LR).

Both networks live in one state so that stage 2 (LSRGAN) can start from both
through `config.init_from`. The one L1 stage built here is also the PSNR
warm-up stage of the GAN methods (`lsrgan`, `san_sr`) when they run without
`init_from`.
"""

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from jaxsr import config_lib
from jaxsr.losses import pixel
from jaxsr.methods import base
from jaxsr.models import encoders
from jaxsr.models import rrdbnet

MODEL_KEYS = {'num_feat', 'num_block', 'num_grow_ch', 'bicubic_skip', 'dense',
              'kernel_grad', 'dtype', 'remat'}
ENCODER_KEYS = {'enabled', 'cut', 'num_upsample_feat', 'width_divisor'}


@flax.struct.dataclass
class PSNRState:
  """Step, and parameters and Adam state of G and (optionally) L."""
  step: jax.Array
  g_params: Any
  g_opt_state: Any
  l_params: Any
  l_opt_state: Any


def build_generator(config) -> rrdbnet.RRDBNet:
  """The RRDBNet G described by config.model and config.scale."""
  config_lib.check_keys(config.model, MODEL_KEYS, 'model')
  if config.model.dtype not in ('float32', 'bfloat16', 'float16'):
    raise ValueError(f'config.model.dtype={config.model.dtype!r}; expected '
                     "'float32', 'bfloat16' or 'float16'")
  return rrdbnet.RRDBNet(
      scale=config.scale, num_feat=config.model.num_feat,
      num_block=config.model.num_block, num_grow_ch=config.model.num_grow_ch,
      bicubic_skip=config.model.bicubic_skip, dense=config.model.dense,
      kernel_grad=config.model.kernel_grad,
      dtype=jnp.dtype(config.model.dtype), remat=config.model.remat)


def build_encoder(config) -> encoders.LSREncoder | None:
  """The LSR encoder L described by config.encoder, or None when disabled."""
  config_lib.check_keys(config.encoder, ENCODER_KEYS, 'encoder')
  if not config.encoder.enabled:
    return None
  return encoders.LSREncoder(
      scale=config.scale, cut=config.encoder.cut,
      num_upsample_feat=config.encoder.num_upsample_feat,
      width_divisor=config.encoder.get('width_divisor', 1))


def _init(rng, *, g, l, tx, hr_patch, scale):
  g_rng, l_rng = jax.random.split(rng)
  lr = jnp.zeros((1, hr_patch // scale, hr_patch // scale, 3), jnp.float32)
  g_params = g.init(g_rng, lr)['params']
  l_params = {}
  if l is not None:
    hr = jnp.zeros((1, hr_patch, hr_patch, 3), jnp.float32)
    l_params = l.init(l_rng, hr)['params']
  return PSNRState(step=jnp.zeros((), jnp.int32), g_params=g_params,
                   g_opt_state=tx.init(g_params), l_params=l_params,
                   l_opt_state=tx.init(l_params))


def microbatched(x: jax.Array, m: int) -> jax.Array:
  """(B, ...) -> (m, B/m, ...), micro-batch j = samples j, j + m, j + 2m ...

  Interleaved so that a batch sharded contiguously over devices stays
  sharded on the B/m axis: every micro-batch is split over all devices.
  """
  b = x.shape[0]
  if b % m:
    raise ValueError(f'batch {b} is not divisible into {m} micro-batches')
  return jnp.swapaxes(x.reshape(b // m, m, *x.shape[1:]), 0, 1)


def l1_update(params, opt_state, tx: optax.GradientTransformation, apply_fn,
              inputs: jax.Array, target: jax.Array, microbatches: int = 1):
  """One optimizer step on the batch-mean L1 |apply_fn(inputs) - target|.

  Returns (params, opt_state, loss). With microbatches > 1 the gradient is
  the mean of equal micro-batch gradients (the same value), computed one
  micro-batch after the other: smaller activations, which XLA:CPU runs
  faster per image (benchmarks/RESULTS.md).
  """
  def loss_fn(p, x, y):
    return pixel.l1(apply_fn({'params': p}, x), y)
  if microbatches == 1:
    loss, grads = jax.value_and_grad(loss_fn)(params, inputs, target)
  else:
    def body(carry, xy):
      loss, grads = jax.value_and_grad(loss_fn)(params, *xy)
      return jax.tree.map(jnp.add, carry, (loss, grads)), None
    zero = (jnp.zeros((), jnp.float32), jax.tree.map(jnp.zeros_like, params))
    # Unrolled: XLA:CPU runs a rolled while loop of this body far slower.
    (loss, grads), _ = jax.lax.scan(
        body, zero, (microbatched(inputs, microbatches),
                     microbatched(target, microbatches)), unroll=True)
    loss, grads = jax.tree.map(lambda v: v / microbatches, (loss, grads))
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss


def _l1_step(state, batch, rng, constants, *, g, l, g_tx, l_tx, microbatches):
  del rng, constants  # L1 only: nothing random, no frozen networks.
  g_params, g_opt_state, g_l1 = l1_update(
      state.g_params, state.g_opt_state, g_tx, g.apply, batch['lr'],
      batch['hr'], microbatches)
  updates = {'step': state.step + 1, 'g_params': g_params,
             'g_opt_state': g_opt_state}
  metrics = {'g_l1': g_l1}
  if l is not None:
    updates['l_params'], updates['l_opt_state'], metrics['l_l1'] = l1_update(
        state.l_params, state.l_opt_state, l_tx, l.apply, batch['hr'],
        batch['lr'], microbatches)
  return state.replace(**updates), metrics


def stage(name: str, num_steps: int, *, g, l, g_tx, l_tx,
          lr_schedule: optax.Schedule, first_step: int = 0,
          microbatches: int = 1, evaluate_at_end: bool = False) -> base.Stage:
  """The L1 stage: G on |G(lr) - hr| and, when l is given, L on |L(hr) - lr|.

  Works on any state with g_params/g_opt_state (and l_params/l_opt_state
  when l is given); other fields are left as they are. Logs g_l1, l_l1 and
  the learning rate of the stage's own step count.
  """
  step = functools.partial(_l1_step, g=g, l=l, g_tx=g_tx, l_tx=l_tx,
                           microbatches=microbatches)
  return base.Stage(name=name, num_steps=num_steps,
                    step=base.with_learning_rate(step, lr_schedule, first_step),
                    evaluate_at_end=evaluate_at_end)


def build(config) -> base.Method:
  """The PSNR pre-training method: one 'psnr' stage of config.train.num_steps."""
  config_lib.check_keys(config.optim, base.OPTIM_KEYS | {'microbatch_size'},
                        'optim')
  size = int(config.optim.get('microbatch_size', 0))
  batch = config.data.batch_size
  if size < 0 or (size and batch % size):
    raise ValueError(
        f'config.optim.microbatch_size={size} must be 0 (whole batch) or '
        f'divide config.data.batch_size={batch}')
  g = build_generator(config)
  l = build_encoder(config)
  num_steps = int(config.train.num_steps)
  lr_schedule = base.schedule(config.optim, num_steps)
  tx = base.adam(config.optim, lr_schedule)
  stages = ()
  if num_steps:
    stages = (stage('psnr', num_steps, g=g, l=l, g_tx=tx, l_tx=tx,
                    lr_schedule=lr_schedule,
                    microbatches=batch // size if size else 1),)
  return base.Method(
      init=functools.partial(_init, g=g, l=l, tx=tx,
                             hr_patch=config.data.hr_patch, scale=config.scale),
      stages=stages,
      predict=functools.partial(base.generator_predict, g=g),
      init_fields=('g_params', 'l_params'),
      **base.patch_data(config))
