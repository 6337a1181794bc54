"""Tests for jaxsr.rl.ddpg against hand values, numpy transcriptions and finite differences."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.rl import ddpg
from jaxsr.rl import replay

# A tiny linear actor mu(s) = s W + b and a critic quadratic in the action,
# Q(s, a) = a P a + (s M) a + c a, so that dQ/da depends on a and s.
_RNG = np.random.default_rng(0)
_N, _S, _A = 4, 5, 3
_STATES = _RNG.normal(size=(_N, _S))
_ACTOR = {'W': _RNG.normal(size=(_S, _A)), 'b': _RNG.normal(size=(_A,))}
_CRITIC = {'P': _RNG.normal(size=(_A, _A)), 'M': _RNG.normal(size=(_S, _A)),
           'c': _RNG.normal(size=(_A,))}


def _f32(tree):
  return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)


def _actor_apply(p, s):
  return s @ p['W'] + p['b']


def _critic_apply(p, s, a):
  return (jnp.sum(a * (a @ p['P']), -1) + jnp.sum((s @ p['M']) * a, -1)
          + a @ p['c'])


# numpy twins (float64) for the finite differences: independent of JAX.
def _np_actor(p, s):
  return s @ p['W'] + p['b']


def _np_q(p, s, a):
  return float(a @ p['P'] @ a + (s @ p['M']) @ a + p['c'] @ a)


_bind = dict(actor_apply=_actor_apply, critic_apply=_critic_apply)


def _finite_difference_dpg(eps=1e-4):
  """1/N sum_i dQ/da(s_i, mu(s_i)) . dmu(s_i)/dtheta, each factor by central
  differences in float64, as Algorithm 1 line 8 writes the gradient."""
  grads = {k: np.zeros_like(v) for k, v in _ACTOR.items()}
  for s in _STATES:
    a = _np_actor(_ACTOR, s)
    dqda = np.array([
        (_np_q(_CRITIC, s, a + eps * e) - _np_q(_CRITIC, s, a - eps * e))
        / (2 * eps) for e in np.eye(_A)])
    for name, value in _ACTOR.items():
      for idx in np.ndindex(value.shape):
        plus = {k: v.copy() for k, v in _ACTOR.items()}
        minus = {k: v.copy() for k, v in _ACTOR.items()}
        plus[name][idx] += eps
        minus[name][idx] -= eps
        dadtheta = (_np_actor(plus, s) - _np_actor(minus, s)) / (2 * eps)
        grads[name][idx] += dqda @ dadtheta / _N
  return grads


def test_actor_gradient_is_dq_da_times_da_dtheta():
  want = _finite_difference_dpg()
  got = jax.grad(ddpg.actor_loss)(_f32(_ACTOR), _f32(_CRITIC),
                                  jnp.asarray(_STATES, jnp.float32), **_bind)
  # actor_loss = -J: its gradient is minus the policy gradient.
  for name in _ACTOR:
    np.testing.assert_allclose(-np.asarray(got[name]), want[name], rtol=1e-4,
                               atol=1e-4)


def test_actor_loss_is_minus_mean_q_and_never_reaches_the_critic():
  actor, critic = _f32(_ACTOR), _f32(_CRITIC)
  s = jnp.asarray(_STATES, jnp.float32)
  value = ddpg.actor_loss(actor, critic, s, **_bind)
  want = -np.mean([_np_q(_CRITIC, x, _np_actor(_ACTOR, x)) for x in _STATES])
  np.testing.assert_allclose(float(value), want, rtol=1e-5)
  critic_grad = jax.grad(ddpg.actor_loss, argnums=1)(actor, critic, s,
                                                       **_bind)
  for leaf in jax.tree.leaves(critic_grad):
    np.testing.assert_array_equal(np.asarray(leaf), 0.0)


def test_critic_loss_as_written_against_hand_values():
  q = np.array([1.5, -2.0, 0.0, 0.25], np.float32)
  r = np.array([1.0, 0.5, -1.0, 2.0], np.float32)
  # By hand, gamma = 0.9: [0 + (1 - 1.5)] + [1.8 + (0.5 + 2)] + [0 + (-1 - 0)]
  # + [0 + (2 - 0.25)] = -0.5 + 4.3 - 1 + 1.75 = 4.55, over N = 4.
  np.testing.assert_allclose(float(ddpg.critic_loss_as_written(q, r, 0.9)),
                             1.1375, rtol=1e-6)
  # The numpy transcription of line 7 on random values.
  qs, rs = _RNG.normal(size=(2, 9)).astype(np.float32)
  want = np.sum(np.maximum(0, -0.5 * qs) + (rs - qs)) / 9
  np.testing.assert_allclose(float(ddpg.critic_loss('as_written', qs, rs,
                                                    0.5)), want, rtol=1e-5)


def test_critic_loss_as_written_is_linear_in_q_and_blind_to_r():
  """What the docstring claims: slope -(1 + gamma)/N for Q < 0, -1/N for
  Q > 0, whatever the reward."""
  q = jnp.array([2.0, -1.0, 0.5, -3.0])
  grad_q = jax.grad(ddpg.critic_loss_as_written)
  want = np.array([-1.0, -1.9, -1.0, -1.9]) / 4
  for r in (jnp.zeros(4), jnp.array([5.0, -5.0, 1.0, 0.0])):
    np.testing.assert_allclose(np.asarray(grad_q(q, r, 0.9)), want, rtol=1e-6)


def test_squared_td_against_hand_values():
  q = jnp.array([1.0, -1.0])
  r = jnp.array([0.5, 2.0])
  q_next = jnp.array([2.0, 4.0])
  # y = r + 0.5 q' = [1.5, 4]; errors [0.5, 5]; mean of squares 12.625.
  np.testing.assert_allclose(float(ddpg.squared_td_loss(q, r, q_next, 0.5)),
                             12.625, rtol=1e-6)
  # No next value (one-step episodes): y = r, errors [-0.5, 3] -> 4.625.
  np.testing.assert_allclose(
      float(ddpg.critic_loss('squared_td', q, r, 0.5)), 4.625, rtol=1e-6)
  # d/dq = 2 (q - y) / N; nothing flows into the target.
  grad_q, grad_next = jax.grad(ddpg.squared_td_loss, argnums=(0, 2))(
      q, r, q_next, 0.5)
  np.testing.assert_allclose(np.asarray(grad_q), [-0.5, -5.0], rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(grad_next), 0.0)


def test_bootstrap_q_value_and_frozen_target_networks():
  s_next = jnp.asarray(_STATES, jnp.float32)
  actor, critic = _f32(_ACTOR), _f32(_CRITIC)
  value = ddpg.bootstrap_q(critic, actor, s_next, **_bind)
  want = [_np_q(_CRITIC, x, _np_actor(_ACTOR, x)) for x in _STATES]
  np.testing.assert_allclose(np.asarray(value), want, rtol=1e-5)

  def loss(critic_params, actor_params):
    return jnp.sum(ddpg.bootstrap_q(critic_params, actor_params, s_next,
                                    **_bind))

  for tree in jax.grad(loss, argnums=(0, 1))(critic, actor):
    for leaf in jax.tree.leaves(tree):
      np.testing.assert_array_equal(np.asarray(leaf), 0.0)


def test_critic_objective_reads_the_batch_and_trains_only_the_critic():
  batch = replay.Transition(
      s=jnp.asarray(_STATES, jnp.float32),
      a=jnp.asarray(_RNG.normal(size=(_N, _A)), jnp.float32),
      r=jnp.arange(_N, dtype=jnp.float32),
      s_next=jnp.zeros((_N, 0)))
  critic = _f32(_CRITIC)
  objective = functools.partial(ddpg.critic_objective, batch=batch,
                                critic_apply=_critic_apply, kind='squared_td',
                                gamma=0.9)
  q = [_np_q(_CRITIC, s, a) for s, a in zip(_STATES, np.asarray(batch.a))]
  want = np.mean((np.arange(_N) - np.array(q)) ** 2)
  np.testing.assert_allclose(float(objective(critic)), want, rtol=1e-5)
  grads = jax.grad(objective)(critic)
  assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads))


def test_soft_update_against_hand_values():
  target = {'w': jnp.array([0.0, 1.0]), 'b': jnp.array(2.0)}
  online = {'w': jnp.array([10.0, -1.0]), 'b': jnp.array(4.0)}
  new = ddpg.soft_update(target, online, 0.1)
  np.testing.assert_allclose(np.asarray(new['w']), [1.0, 0.8], rtol=1e-6)
  np.testing.assert_allclose(float(new['b']), 2.2, rtol=1e-6)
  np.testing.assert_array_equal(
      np.asarray(ddpg.soft_update(target, online, 0.0)['w']), [0.0, 1.0])
  np.testing.assert_array_equal(
      np.asarray(ddpg.soft_update(target, online, 1.0)['w']), [10.0, -1.0])
  # A traced tau (jit) gives the same.
  jitted = jax.jit(ddpg.soft_update)(target, online, 0.1)
  np.testing.assert_allclose(np.asarray(jitted['w']), [1.0, 0.8], rtol=1e-6)


def test_bad_arguments():
  with pytest.raises(ValueError, match='tau must be in'):
    ddpg.soft_update({'w': jnp.zeros(1)}, {'w': jnp.zeros(1)}, 1.5)
  with pytest.raises(ValueError, match='critic loss must be one of'):
    ddpg.critic_loss('hinge', jnp.zeros(1), jnp.zeros(1), 0.9)
