"""Tests for jaxsr.models.critic: shapes, parameter layout, dependence on s and a."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.models import critic

_key = functools.partial(jax.random.key, impl='rbg')


@pytest.fixture(scope='module')
def setup():
  """(model, params, jitted apply, s, a): one init and one apply program."""
  model = critic.Critic(features=(8, 16), hidden=(32,))
  s = jax.random.uniform(_key(1), (2, 16, 16, 3))
  a = jax.random.normal(_key(2), (2, 10))
  params = jax.jit(model.init)(_key(0), s, a)['params']
  return model, params, jax.jit(model.apply), s, a


def test_parameter_shapes_follow_the_fields(setup):
  _, params, _, _, _ = setup
  shapes = jax.tree.map(jnp.shape, params)
  assert shapes == {
      'conv0': {'kernel': (3, 3, 3, 8), 'bias': (8,)},
      'conv1': {'kernel': (3, 3, 8, 16), 'bias': (16,)},
      'fc0': {'kernel': (16 + 10, 32), 'bias': (32,)},  # pooled + code
      'q': {'kernel': (32, 1), 'bias': (1,)},
  }


def test_output_is_one_q_per_item_for_any_lr_size(setup):
  _, params, apply, _, a = setup
  for h, w in ((16, 16), (11, 20)):
    q = apply({'params': params}, jnp.ones((2, h, w, 3)), a)
    assert q.shape == (2,) and q.dtype == jnp.float32
    assert np.all(np.isfinite(np.asarray(q)))


def test_output_depends_on_both_the_image_and_the_code(setup):
  _, params, apply, s, a = setup
  q = functools.partial(apply, {'params': params})
  base = np.asarray(q(s, a))
  assert not np.allclose(np.asarray(q(s, a.at[0].add(1.0)))[0], base[0])
  assert not np.allclose(np.asarray(q(s.at[0].multiply(0.5), a))[0], base[0])
  # Items are independent: changing item 0 leaves item 1 as it was.
  np.testing.assert_array_equal(np.asarray(q(s, a.at[0].add(1.0)))[1], base[1])
  ds, da = jax.grad(lambda s, a: jnp.sum(q(s, a)), argnums=(0, 1))(s, a)
  assert float(jnp.abs(ds).max()) > 0 and float(jnp.abs(da).max()) > 0


def test_mismatched_inputs_are_refused(setup):
  model, params, _, s, _ = setup
  with pytest.raises(ValueError, match=r'got s\[2, 16, 16, 3\] and a\[3, 10\]'):
    model.apply({'params': params}, s, jnp.zeros((3, 10)))
