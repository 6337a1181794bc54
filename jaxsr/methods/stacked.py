"""Several independent runs of one method trained as one program (vmap).

SinGAN trains one image per run (its official code, one per process; users
ask for batching: tamarott/SinGAN#99, #172). When B images share a pyramid
(the same size), their B runs differ only in data that lives in the state,
so one jitted, vmapped step trains all B at once: `stack` turns a method
whose stages and predict read everything run-specific from the state into
one whose state holds B runs along a leading axis (the global `step` stays
a scalar: every run is at the same step).

Run i is exactly the single run started from init key `split(key, B)[i]`
and trained with key `split(rng, B)[i]` (tests/methods/test_stacked.py);
logged metrics are the means over the runs.
"""

from collections.abc import Callable, Sequence
import dataclasses

import jax
import jax.numpy as jnp

from jaxsr.methods import base


def _axes(state, axis):
  """vmap axes of a state: `axis` for every leaf, None for `step`."""
  return jax.tree.map(lambda _: axis, state).replace(step=None)


def num_runs(state) -> int:
  """B of a stacked state (the leading axis of its leaves but `step`)."""
  leaves = jax.tree.leaves(state.replace(step=None))
  return int(leaves[0].shape[0])


def select(state, i: int):
  """Run i of a stacked state, as a single run's state."""
  b = num_runs(state)
  if not 0 <= i < b:
    raise ValueError(f'run index {i} is out of range: the state holds {b} '
                     'runs')
  return jax.tree.map(lambda x: x[i], state.replace(step=None)).replace(
      step=state.step)


def _stack_states(states: Sequence):
  return jax.tree.map(lambda *xs: jnp.stack(xs),
                      *[s.replace(step=None) for s in states]).replace(
                          step=states[0].step)


def _mapped_step(step: base.StepFn, num: int) -> base.StepFn:
  def mapped(state, batch, rng, constants):
    def one(s, key):
      return step(s.replace(step=state.step), batch, key, constants)

    keys = jax.random.split(rng, num)
    new, metrics = jax.vmap(
        one, in_axes=(_axes(state, 0), 0),
        out_axes=(_axes(state, 0), 0))(state, keys)
    return new, jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics)
  return mapped


def _mapped_enter(enter: Callable | None):
  if enter is None:
    return None

  def mapped(state):
    def one(s):
      return enter(s.replace(step=state.step))
    return jax.vmap(one, in_axes=(_axes(state, 0),),
                    out_axes=_axes(state, 0))(state)
  return mapped


def stack(method: base.Method, inits: Sequence[Callable[[jax.Array], object]]
          ) -> base.Method:
  """B = len(inits) runs of `method`, run i initialized by inits[i].

  `method`'s stages and predict must read every run-specific array from
  the state (not from closures): only `init` differs between the runs.
  predict takes inputs['lr'] of B images (B, h, w, 3), image i for run i.
  """
  num = len(inits)
  if num < 1:
    raise ValueError('stack needs at least one run')

  def init(rng):
    keys = jax.random.split(rng, num)
    return _stack_states([f(k) for f, k in zip(inits, keys)])

  def predict(state, inputs, rng):
    lr = inputs['lr']
    if lr.shape[0] != num:
      raise ValueError(f'this state holds {num} runs: predict needs one image '
                       f'per run, got a batch of {lr.shape[0]}')

    def one(s, x, key):
      return method.predict(s.replace(step=state.step),
                            dict(inputs, lr=x[None]), key)[0]

    return jax.vmap(one, in_axes=(_axes(state, 0), 0, 0))(
        state, lr, jax.random.split(rng, num))

  stages = tuple(dataclasses.replace(s, step=_mapped_step(s.step, num),
                                     enter=_mapped_enter(s.enter))
                 for s in method.stages)
  return dataclasses.replace(method, init=init, stages=stages,
                             predict=predict)
