"""The Method record every method builder returns, and what all methods share."""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxsr.optim import schedules


@dataclasses.dataclass(frozen=True)
class Method:
  """A method's pure functions; `train.py` knows nothing else about it.

  Attributes:
    init: rng -> state (a flax.struct.dataclass of arrays with a `step` field).
    train_step: (state, batch, rng, constants) -> (state, metrics); batch
      holds 'lr' and 'hr' float32 NHWC in [0, 1]; metrics is a flat dict of
      scalars.
    predict: (state, lr) -> sr, float32 NHWC (not clipped).
    init_fields: state fields that `config.init_from` copies from another run.
    constants: () -> pytree of frozen arrays every step reads (e.g. VGG19
      weights of a perceptual loss). Loaded once by the loop, passed to each
      step as an argument (not baked into the compiled program) and never
      checkpointed; evaluation never loads them.
    warmup_step: an optional second step with train_step's signature, used
      instead of it while state.step < warmup_steps (e.g. a PSNR warm-up
      before GAN training). The loop compiles the two separately: a lax.cond
      between them ran ~4x slower on XLA:CPU than either branch alone.
    warmup_steps: how many steps use warmup_step.
  """
  init: Callable[[jax.Array], Any]
  train_step: Callable[[Any, dict, jax.Array, Any], tuple[Any, dict]]
  predict: Callable[[Any, jax.Array], jax.Array]
  init_fields: tuple[str, ...] = ('g_params',)
  constants: Callable[[], Any] = dict
  warmup_step: Callable[[Any, dict, jax.Array, Any], tuple[Any, dict]] | None = (
      None)
  warmup_steps: int = 0


def with_learning_rate(step_fn, lr_schedule):
  """step_fn with the learning rate of the step added to its metrics."""
  def step(state, batch, rng, constants):
    new_state, metrics = step_fn(state, batch, rng, constants)
    metrics['learning_rate'] = jnp.asarray(lr_schedule(state.step),
                                           jnp.float32)
    return new_state, metrics
  return step


def adam(optim_config, schedule: optax.Schedule) -> optax.GradientTransformation:
  """Adam with the configured betas/eps and no weight decay."""
  return optax.adam(schedule, b1=optim_config.b1, b2=optim_config.b2,
                    eps=optim_config.eps)


def schedule(optim_config) -> optax.Schedule:
  """The configured schedule: halving every `decay_every` or at `milestones`."""
  if optim_config.get('milestones'):
    return schedules.multistep(optim_config.lr, tuple(optim_config.milestones),
                               optim_config.decay_factor)
  if optim_config.get('decay_every'):
    return schedules.step_decay(optim_config.lr, optim_config.decay_every,
                                optim_config.decay_factor)
  return optax.constant_schedule(optim_config.lr)


def check_keys(section, allowed: set[str], name: str) -> None:
  """Raises ValueError naming unknown keys of a config section."""
  unknown = set(section.keys()) - allowed
  if unknown:
    raise ValueError(f'unknown key(s) {sorted(unknown)} in config.{name}; '
                     f'expected some of {sorted(allowed)}')
