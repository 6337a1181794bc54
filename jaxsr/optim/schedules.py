"""Learning-rate schedules of the papers, as optax schedules of the step."""

import collections
from collections.abc import Sequence

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
