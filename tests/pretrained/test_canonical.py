"""Tests for jaxsr's .npz weight format: round trips, no pickle, bad names."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.pretrained import canonical


def test_round_trip_nested_tree(tmp_path):
  params = {
      'conv_first': {'kernel': np.arange(12.0).reshape(1, 1, 3, 4),
                     'bias': np.zeros(4, np.float32)},
      'body_0': {'rdb1': {'conv1': {'kernel': jnp.ones((3, 3, 2, 2))}}},
      'file': np.int32(7),  # would collide with np.savez's own argument
      'step': np.array(5, np.int64),
  }
  path = tmp_path / 'params.npz'
  canonical.save_npz(path, params)
  loaded = canonical.load_npz(path)
  assert set(loaded) == set(params)
  np.testing.assert_array_equal(loaded['conv_first']['kernel'],
                                params['conv_first']['kernel'])
  np.testing.assert_array_equal(
      loaded['body_0']['rdb1']['conv1']['kernel'], 1.0)
  assert loaded['step'].dtype == np.int64 and loaded['file'] == 7
  # Plain numpy reads it too, with the '/'-joined names and no pickle.
  with np.load(path, allow_pickle=False) as npz:
    assert sorted(npz.files) == sorted(
        ['conv_first/kernel', 'conv_first/bias',
         'body_0/rdb1/conv1/kernel', 'file', 'step'])


def test_bfloat16_is_widened(tmp_path):
  path = tmp_path / 'p.npz'
  canonical.save_npz(path, {'w': jnp.array([1.5, -2.0], jnp.bfloat16)})
  w = canonical.load_npz(path)['w']
  assert w.dtype == np.float32
  np.testing.assert_array_equal(w, [1.5, -2.0])


def test_bad_names_and_objects_raise(tmp_path):
  with pytest.raises(ValueError, match='without "/"'):
    canonical.save_npz(tmp_path / 'a.npz', {'a/b': np.zeros(1)})
  with pytest.raises(ValueError, match='not numeric'):
    canonical.save_npz(tmp_path / 'a.npz', {'a': {'b': object()}})
  with pytest.raises(ValueError, match='both an array and a group'):
    canonical.unflatten({'a/b': np.zeros(1), 'a': np.zeros(1)})
