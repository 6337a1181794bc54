"""Learning-rate schedules of the papers, as optax schedules of the step."""

import collections
from collections.abc import Sequence

import jax.numpy as jnp
import optax


def step_decay(lr: float, every: int, factor: float = 0.5) -> optax.Schedule:
  """lr * factor**floor(step / every): e.g. halved every 2e5 steps (paper 000)."""
  if every <= 0:
    raise ValueError(f'decay interval must be positive, got {every}')
  return optax.exponential_decay(
      lr, transition_steps=every, decay_rate=factor, staircase=True)


def multistep(lr: float, milestones: Sequence[int],
              factor: float = 0.5) -> optax.Schedule:
  """lr multiplied by `factor` at each milestone, from that step on (PyTorch
  MultiStepLR; a milestone given twice applies twice, as there)."""
  if list(milestones) != sorted(milestones):
    raise ValueError(f'milestones must be increasing, got {list(milestones)}')
  counts = collections.Counter(int(m) for m in milestones)
  return optax.piecewise_constant_schedule(
      lr, {m: factor**n for m, n in counts.items()})


def linear1cycledrop(lr: float, num_steps: int) -> optax.Schedule:
  """PULSE's 'linear1cycledrop' (run.py default): lr times, at update i,

    (9 (1 - 2 |i / (0.9 N) - 1/2|) + 1) / 10            if i < 0.9 N
    1/10 + (i - 0.9 N) / (0.1 N) (1/1000 - 1/10)        otherwise,

  N = num_steps: up from 0.1 lr to lr at 0.45 N, down to 0.1 lr at 0.9 N,
  then down towards 1e-3 lr (reached at i = N). PULSE wraps it in LambdaLR,
  whose factor is f(0) at construction and f(i) after i scheduler.step()
  calls, one per optimizer step: step i (from 0) uses f(i), as optax's
  update count here.
  """
  if num_steps <= 0:
    raise ValueError(f'num_steps must be positive, got {num_steps}')
  up = 0.9 * num_steps   # a Python float, as in PULSE

  def schedule(count):
    x = jnp.asarray(count, jnp.float32)
    cycle = (9.0 * (1.0 - jnp.abs(x / up - 0.5) * 2.0) + 1.0) / 10.0
    # 1/10 + frac (1/1000 - 1/10) with frac = (x - 0.9 N) / (0.1 N), written
    # through rest = 1 - frac = (N - x) / (0.1 N) to avoid float32 cancellation.
    rest = (num_steps - x) / (0.1 * num_steps)
    drop = 0.1 * rest + (1.0 - rest) / 1000.0
    return lr * jnp.where(x < up, cycle, drop)

  return schedule
