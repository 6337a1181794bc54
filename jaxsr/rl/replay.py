"""A uniform replay buffer kept in the train state as fixed-size arrays (AMGAN-RL, Algorithm 1 lines 5-6).

`init(capacity, example)` allocates `capacity` zeroed copies of one example
transition (any pytree of arrays; `Transition` below is AMGAN-RL's); `add`
writes a batch of B transitions in ring order at the write index (the oldest
items are overwritten once the buffer is full); `sample(state, key, n)` draws
n items uniformly, with replacement, from the items held (never from the
unfilled part); `size(state)` is the number held. All four are pure and
jittable; `add` donates nicely (an in-place scatter when the state is
donated). The state is a pytree of arrays only, so it sits in a method's
`flax.struct.dataclass` state and is checkpointed and resumed by Orbax with
everything else (`jaxsr/checkpoint.py`).

The storage is flashbax's trajectory buffer (`flashbax.trajectory_buffer`,
flashbax >= 0.1.3, the engine of its `make_item_buffer`) with one row
(`add_batch_size=1`) and a time axis of `capacity`; this module is the only
place that imports flashbax. What that means for users:
  * The state is a `flashbax.trajectory_buffer.TrajectoryBufferState` with
    fields `experience` (the example's tree, every leaf of shape
    (1, capacity, *leaf.shape)), `current_index` (the next write position,
    int32) and `is_full` (bool). A checkpoint read back without a target
    (`checkpoint.load_raw`) has exactly those three keys.
  * Items are stored in ring order: item k (counting from the first ever
    added, 0-based) sits at time index k % capacity.
  * Sampling draws time indices with `jax.random.randint` over [0, size)
    counted from the oldest held item, so every held item has probability
    1 / size.

Choices the paper leaves open (Algorithm 1 says only "store the transition
in R" and "sample a random minibatch of N transitions"): uniform sampling
with replacement, no priorities, no minimum fill other than one item (the
method's `fill` stage decides how full the buffer is before the critic
trains). Sampling an empty buffer cannot raise inside `jit`; it returns the
zeroed initial items, so callers check `size(state) > 0` (or fill first).

Memory: capacity x (the bytes of one transition). For AMGAN-RL an x4 LR
patch of 48x48 is 27 KB in float32 and its 192x192 SR render 442 KB; the
paper's critic loss never reads s', so a method that uses it may store a
placeholder s' (a scalar 0: Orbax cannot save zero-size arrays) and save the
bulk.
"""

import numbers
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
from flashbax import trajectory_buffer

BufferState = trajectory_buffer.TrajectoryBufferState


@flax.struct.dataclass
class Transition:
  """One AMGAN-RL transition (s, a, r, s'); a batch has a leading axis N.

  Attributes:
    s: the observed LR image, (H, W, 3) float32 in [0, 1].
    a: the action, a degradation code, (code_dim,) float32.
    r: the reward, a scalar float32 (e.g. -NIQE of the render).
    s_next: the rendered result s' (the SR image, or a placeholder scalar 0
      when the critic loss in use does not read it).
  """
  s: jax.Array
  a: jax.Array
  r: jax.Array
  s_next: jax.Array


def _leading_sizes(tree) -> set[int]:
  return {leaf.shape[0] if leaf.ndim else -1 for leaf in jax.tree.leaves(tree)}


def init(capacity: int, example: Any) -> BufferState:
  """An empty buffer for `capacity` items shaped like `example` (one item, no batch axis).

  Args:
    capacity: the number of items held at most (>= 1).
    example: one transition, a pytree of arrays (e.g. a `Transition` of
      shapes (H, W, 3), (code_dim,), (), (sH, sW, 3)); only its shapes and
      dtypes are used.

  Returns:
    The buffer state: every leaf zeros of shape (1, capacity, *leaf.shape).
  """
  if not isinstance(capacity, numbers.Integral) or capacity < 1:
    raise ValueError(f'replay capacity must be a positive int, got {capacity!r}')
  if not jax.tree.leaves(example):
    raise ValueError('the example transition has no arrays')
  example = jax.tree.map(
      lambda x: jnp.zeros(jnp.shape(x), jnp.result_type(x)), example)
  return trajectory_buffer.init(example, add_batch_size=1,
                                max_length_time_axis=int(capacity))


def capacity(state: BufferState) -> int:
  """The number of items the buffer holds at most (static)."""
  return jax.tree.leaves(state.experience)[0].shape[1]


def size(state: BufferState) -> jax.Array:
  """The number of items held, int32 scalar in [0, capacity]."""
  return jnp.where(state.is_full, capacity(state),
                   state.current_index).astype(jnp.int32)


def add(state: BufferState, batch: Any) -> BufferState:
  """Writes a batch of B items (each leaf (B, *item shape)) in ring order.

  Item b goes to position (current_index + b) % capacity; once full, the
  oldest items are overwritten. B must be at most the capacity.
  """
  stored = state.experience
  if jax.tree.structure(batch) != jax.tree.structure(stored):
    raise ValueError(
        f'the batch added to the replay buffer has structure '
        f'{jax.tree.structure(batch)}, expected {jax.tree.structure(stored)}')
  sizes = _leading_sizes(batch)
  if len(sizes) != 1 or -1 in sizes:
    raise ValueError('every leaf of the batch added to the replay buffer needs '
                     f'the same leading batch axis; found sizes {sorted(sizes)}')
  (num,) = sizes
  if num > capacity(state):
    raise ValueError(f'cannot add {num} items to a replay buffer of capacity '
                     f'{capacity(state)}')
  for (path, leaf), held in zip(jax.tree_util.tree_flatten_with_path(batch)[0],
                                jax.tree.leaves(stored)):
    if leaf.shape[1:] != held.shape[2:] or leaf.dtype != held.dtype:
      raise ValueError(
          f'replay item{jax.tree_util.keystr(path)} is {leaf.dtype}'
          f'{list(leaf.shape[1:])}, expected {held.dtype}{list(held.shape[2:])}')
  return trajectory_buffer.add(state, jax.tree.map(lambda x: x[None], batch))


def sample(state: BufferState, key: jax.Array, n: int) -> Any:
  """n items drawn uniformly with replacement from the held ones.

  Args:
    state: the buffer (non-empty; an empty one returns its zeroed items).
    key: a PRNG key; the same key and state give the same draw.
    n: the number of items (static).

  Returns:
    A pytree like the example with leaves (n, *item shape).
  """
  drawn = trajectory_buffer.sample(state, key, batch_size=n,
                                   sequence_length=1, period=1)
  return jax.tree.map(lambda x: x[:, 0], drawn.experience)
