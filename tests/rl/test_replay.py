"""Tests for jaxsr.rl.replay: ring order, wrap-around, uniform sampling, jit, Orbax round trip."""

import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxsr import checkpoint
from jaxsr.rl import replay

_key = functools.partial(jax.random.key, impl='rbg')
_LR = (4, 4, 3)
_CODE = 3
_SR = (2, 2, 3)
_N = 5000  # draws per sampling test; one shape keeps to one compile
# Jitted once per shape: eager flashbax ops dispatch (and compile) one by one.
_add = jax.jit(replay.add)
_sample = jax.jit(replay.sample, static_argnums=2)


def _example():
  return replay.Transition(s=np.zeros(_LR, np.float32),
                           a=np.zeros((_CODE,), np.float32),
                           r=np.float32(0), s_next=np.zeros(_SR, np.float32))


def _items(ids):
  """A batch whose item k encodes ids[k] in every field (s = id, a = id + 0.5,
  r = id, s' = -id), so a drawn item tells where it came from."""
  ids = np.asarray(ids, np.float32)
  return replay.Transition(
      s=np.broadcast_to(ids[:, None, None, None], (len(ids),) + _LR).copy(),
      a=np.broadcast_to(ids[:, None] + 0.5, (len(ids), _CODE)).copy(),
      r=ids.copy(),
      s_next=-np.broadcast_to(ids[:, None, None, None],
                              (len(ids),) + _SR).copy())


def _stored_ids(state):
  return np.asarray(state.experience.r[0])


def _filled(capacity, num_items, chunk):
  state = replay.init(capacity, _example())
  for start in range(0, num_items, chunk):
    state = _add(state, _items(range(start, min(num_items, start + chunk))))
  return state


def _drawn_ids(drawn):
  """The ids of drawn items, checking that every field names the same item."""
  ids = np.asarray(drawn.r)
  np.testing.assert_array_equal(np.asarray(drawn.s), ids[:, None, None, None]
                                * np.ones(_LR))
  np.testing.assert_array_equal(np.asarray(drawn.a), ids[:, None] + 0.5
                                * np.ones(_CODE))
  np.testing.assert_array_equal(np.asarray(drawn.s_next),
                                -ids[:, None, None, None] * np.ones(_SR))
  return ids.astype(int)


def test_init_is_empty_zeros_of_the_example_shapes():
  state = replay.init(5, _example())
  assert replay.capacity(state) == 5
  assert int(replay.size(state)) == 0
  assert state.experience.s.shape == (1, 5) + _LR
  assert state.experience.a.shape == (1, 5, _CODE)
  assert state.experience.r.shape == (1, 5)
  assert state.experience.s_next.shape == (1, 5) + _SR
  assert all(float(jnp.abs(x).max()) == 0.0
             for x in jax.tree.leaves(state.experience))


def test_ring_order_before_the_buffer_is_full():
  state = _add(replay.init(5, _example()), _items([0, 1]))
  np.testing.assert_array_equal(_stored_ids(state), [0, 1, 0, 0, 0])
  assert int(replay.size(state)) == 2
  state = _add(state, _items([2, 3, 4]))
  np.testing.assert_array_equal(_stored_ids(state), [0, 1, 2, 3, 4])
  assert int(replay.size(state)) == 5
  assert int(state.current_index) == 0


def test_wrap_around_overwrites_the_oldest_items():
  state = _filled(5, 7, chunk=3)  # adds 0-2, 3-5, 6
  np.testing.assert_array_equal(_stored_ids(state), [5, 6, 2, 3, 4])
  assert int(replay.size(state)) == 5
  assert int(state.current_index) == 2
  # A batch crossing the end of the ring: positions 2, 3, 4, 0.
  state = _add(state, _items([7, 8, 9, 10]))
  np.testing.assert_array_equal(_stored_ids(state), [10, 6, 7, 8, 9])
  assert int(replay.size(state)) == 5
  # Every field of an item moves together.
  np.testing.assert_array_equal(np.asarray(state.experience.a[0, :, 0]),
                                [10.5, 6.5, 7.5, 8.5, 9.5])
  np.testing.assert_array_equal(np.asarray(state.experience.s_next[0, :, 1, 1,
                                                                   2]),
                                [-10, -6, -7, -8, -9])


def _chi_square_p(ids, support):
  counts = np.array([np.sum(ids == i) for i in support])
  assert counts.sum() == len(ids), 'drew an item that is not held'
  return stats.chisquare(counts).pvalue


def test_sampling_is_uniform_over_a_full_wrapped_buffer():
  state = _filled(5, 9, chunk=3)  # holds 4..8
  ids = _drawn_ids(_sample(state, _key(0), _N))
  assert set(ids) <= set(range(4, 9))
  # Fixed key: deterministic. A uniform draw passes at p > 0.001; a sampler
  # that skips an item or favors one by 20 % fails by far.
  assert _chi_square_p(ids, range(4, 9)) > 1e-3


def test_sampling_a_partly_filled_buffer_draws_only_held_items():
  state = _filled(5, 3, chunk=3)
  ids = _drawn_ids(_sample(state, _key(1), _N))
  assert set(ids) == {0, 1, 2}
  assert _chi_square_p(ids, range(3)) > 1e-3


def test_sampling_is_determined_by_the_key():
  state = _filled(5, 6, chunk=3)
  one = np.asarray(_sample(state, _key(2), _N).r)
  again = np.asarray(_sample(state, _key(2), _N).r)
  other = np.asarray(_sample(state, _key(3), _N).r)
  np.testing.assert_array_equal(one, again)
  assert not np.array_equal(one, other)


def test_add_and_sample_under_jit_and_scan():
  state = replay.init(5, _example())

  def fill(state, ids):  # a fill loop compiled as one program
    return replay.add(state, _items_jnp(ids)), None

  state, _ = jax.jit(lambda st: jax.lax.scan(
      fill, st, jnp.arange(8.0).reshape(4, 2)))(state)
  np.testing.assert_array_equal(_stored_ids(state), [5, 6, 7, 3, 4])
  state = _add(state, _items([8]))
  np.testing.assert_array_equal(_stored_ids(state), [5, 6, 7, 8, 4])
  ids = _drawn_ids(_sample(state, _key(4), _N))
  assert set(ids) == {4, 5, 6, 7, 8}


def _items_jnp(ids):
  return replay.Transition(
      s=jnp.broadcast_to(ids[:, None, None, None], (ids.shape[0],) + _LR),
      a=jnp.broadcast_to(ids[:, None] + 0.5, (ids.shape[0], _CODE)),
      r=ids, s_next=-jnp.broadcast_to(ids[:, None, None, None],
                                      (ids.shape[0],) + _SR))


@flax.struct.dataclass
class _State:
  step: jax.Array
  params: dict
  buffer: replay.BufferState


def test_orbax_round_trip_and_resume(tmp_path):
  """The buffer inside a train state saves and restores through
  jaxsr.checkpoint, and a resumed buffer continues exactly where it was."""
  state = _State(step=jnp.array(3), params={'w': jnp.arange(4.0)},
                 buffer=_filled(5, 7, chunk=3))
  mngr = checkpoint.manager(str(tmp_path), async_save=False)
  checkpoint.save(mngr, 3, state)
  mngr.wait_until_finished()
  fresh = _State(step=jnp.array(0), params={'w': jnp.zeros(4)},
                 buffer=replay.init(5, _example()))
  restored = checkpoint.restore_latest(mngr, fresh)
  mngr.close()
  assert isinstance(restored.buffer, replay.BufferState)
  assert isinstance(restored.buffer.experience, replay.Transition)
  np.testing.assert_array_equal(_stored_ids(restored.buffer), [5, 6, 2, 3, 4])
  assert int(replay.size(restored.buffer)) == 5
  for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  resumed = _add(restored.buffer, _items([7, 8]))
  np.testing.assert_array_equal(_stored_ids(resumed), [5, 6, 7, 8, 4])
  np.testing.assert_array_equal(
      np.asarray(_sample(resumed, _key(5), _N).r),
      np.asarray(_sample(_add(state.buffer, _items([7, 8])), _key(5), _N).r))
  raw = checkpoint.load_raw(str(tmp_path))
  assert set(raw['buffer']) == {'experience', 'current_index', 'is_full'}


@pytest.mark.parametrize('capacity', [0, -2, 2.5])
def test_bad_capacity(capacity):
  with pytest.raises(ValueError, match='capacity'):
    replay.init(capacity, _example())


def test_bad_batches_are_refused_with_one_line():
  state = replay.init(3, _example())
  with pytest.raises(ValueError, match='cannot add 4 items .* capacity 3'):
    replay.add(state, _items([0, 1, 2, 3]))
  bad = _items([0, 1]).replace(s=np.zeros((2, 5, 4, 3), np.float32))
  with pytest.raises(ValueError, match=r'\.s is float32\[5, 4, 3\], expected '
                     r'float32\[4, 4, 3\]'):
    replay.add(state, bad)
  bad = _items([0, 1]).replace(a=np.zeros((2, _CODE), np.float64))
  with pytest.raises(ValueError, match='float64'):
    replay.add(state, bad)
  bad = _items([0, 1]).replace(r=np.zeros(3, np.float32))
  with pytest.raises(ValueError, match='same leading batch axis'):
    replay.add(state, bad)
  with pytest.raises(ValueError, match='structure'):
    replay.add(state, {'s': np.zeros((1,) + _LR, np.float32)})
