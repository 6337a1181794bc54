"""Actor-critic (DDPG) losses of AMGAN-RL, Algorithm 1 lines 7-8: pure functions of arrays and apply closures.

Networks enter as `apply` closures with explicit parameters:
`critic_apply(critic_params, s, a) -> q (N,)` and
`actor_apply(actor_params, s) -> a (N, code_dim)`; bind them with
`functools.partial` before `jit`. Shapes: s (N, H, W, 3), a (N, code_dim),
r, q, q_next (N,).

Critic, line 7 of Algorithm 1 ("as_written"), transcribed literally:

    L(θQ) = 1/N Σ_i [ max(0, -γ Q(s_i, a_i)) + (r_i - Q(s_i, a_i)) ]

The sum runs over both terms (the second has the free index i). This is not
a squared TD error: it is piecewise linear in Q with slope -(1 + γ)/N where
Q < 0 and -1/N where Q >= 0, so its gradient never depends on r and
minimizing it pushes every Q up without bound (the loss is unbounded below).
The reward only shifts the value of the loss. It is kept as the paper writes
it, for fidelity, and `squared_td` is the usual DDPG regression:

    L(θQ) = 1/N Σ_i (y_i - Q(s_i, a_i))^2,  y_i = r_i + γ Q'(s'_i, μ'(s'_i)),

with gradients stopped at the target y. `q_next = None` means every
transition ends its episode, y = r: the one-step (contextual bandit) reading
of AMGAN-RL, where an episode is one LR image, one code and one reward. With
γ > 0 the next state s' must lie in the critic's observation space (an LR
image); the rendered SR image of Algorithm 1 does not, so a method using
γ > 0 has to decide how to map it there.

Target networks (Q', μ'): optional and off by default. Algorithm 1 lists
none, and with q_next = None (or the as-written loss) nothing is
bootstrapped. `bootstrap_q` evaluates Q'(s', μ'(s')) with whichever
parameters it is given (target copies, or the online ones for no targets),
and `soft_update` is DDPG's θ' <- τθ + (1 - τ)θ' (Lillicrap et al. use
τ = 0.001).

Actor, line 8: the deterministic policy gradient
∇θ J = 1/N Σ_i ∇a Q(s_i, a)|a=μ(s_i) ∇θ μ(s_i). `actor_loss` is
-1/N Σ_i Q(s_i, μ(s_i)) with the critic's parameters behind a stop-gradient,
so its gradient is exactly -∇θ J (a descent step on it is an ascent step on
J) and no gradient reaches the critic. Its gradient equals that of rlax's
`dpg_loss` (0.5 (sg(a + dQ/da) - a)^2, whose gradient in a is -dQ/da)
summed over code dimensions and averaged over the batch, without its optional dQ/da clipping; rlax itself
is not used (it imports TensorFlow Probability, about 11 s, for these few
lines).
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxsr.rl import replay

CRITIC_LOSSES = ('as_written', 'squared_td')
CriticApply = Callable[[Any, jax.Array, jax.Array], jax.Array]
ActorApply = Callable[[Any, jax.Array], jax.Array]


def critic_loss_as_written(q: jax.Array, r: jax.Array,
                           gamma: float) -> jax.Array:
  """Algorithm 1 line 7 literally: mean_i[max(0, -γ q_i) + (r_i - q_i)], a scalar.

  Args:
    q: Q(s_i, a_i) of the online critic, (N,).
    r: rewards, (N,).
    gamma: the γ of line 7 (the paper gives no value).
  """
  return jnp.mean(jnp.maximum(0.0, -gamma * q) + (r - q))


def td_target(r: jax.Array, q_next: jax.Array | None,
              gamma: float) -> jax.Array:
  """y = r + γ q_next with gradients stopped, (N,); y = r when q_next is None."""
  y = r if q_next is None else r + gamma * q_next
  return jax.lax.stop_gradient(y)


def squared_td_loss(q: jax.Array, r: jax.Array, q_next: jax.Array | None,
                    gamma: float) -> jax.Array:
  """mean_i (y_i - q_i)^2 with y = r + γ q_next (stopped), a scalar."""
  return jnp.mean(jnp.square(td_target(r, q_next, gamma) - q))


def critic_loss(kind: str, q: jax.Array, r: jax.Array, gamma: float,
                q_next: jax.Array | None = None) -> jax.Array:
  """The critic loss named `kind` (one of CRITIC_LOSSES), a scalar.

  'as_written' ignores q_next (line 7 has no next state).
  """
  if kind == 'as_written':
    return critic_loss_as_written(q, r, gamma)
  if kind == 'squared_td':
    return squared_td_loss(q, r, q_next, gamma)
  raise ValueError(f'critic loss must be one of {CRITIC_LOSSES}, got {kind!r}')


def critic_objective(critic_params: Any, batch: replay.Transition, *,
                     critic_apply: CriticApply, kind: str, gamma: float,
                     q_next: jax.Array | None = None) -> jax.Array:
  """`critic_loss` of the critic on a sampled batch; differentiate in critic_params.

  q_next: from `bootstrap_q` for squared TD with γ > 0, else None.
  """
  q = critic_apply(critic_params, batch.s, batch.a)
  return critic_loss(kind, q, batch.r, gamma, q_next)


def bootstrap_q(critic_params: Any, actor_params: Any, s_next: jax.Array, *,
                critic_apply: CriticApply,
                actor_apply: ActorApply) -> jax.Array:
  """Q'(s', μ'(s')), (N,), with no gradient to either network or to s'.

  Pass the target parameters for DDPG's target networks, or the online ones
  to bootstrap without targets.
  """
  q_next = critic_apply(critic_params, s_next,
                        actor_apply(actor_params, s_next))
  return jax.lax.stop_gradient(q_next)


def actor_loss(actor_params: Any, critic_params: Any, s: jax.Array, *,
               actor_apply: ActorApply,
               critic_apply: CriticApply) -> jax.Array:
  """-mean_i Q(s_i, μ(s_i)), a scalar; its gradient in actor_params is -∇θ J of line 8.

  The critic is frozen here: its parameters are behind a stop-gradient.
  """
  a = actor_apply(actor_params, s)
  q = critic_apply(jax.lax.stop_gradient(critic_params), s, a)
  return -jnp.mean(q)


def soft_update(target: Any, online: Any, tau: float) -> Any:
  """θ' <- τ θ + (1 - τ) θ' leaf by leaf (DDPG's target update), same tree as target."""
  if isinstance(tau, (int, float)) and not 0.0 <= tau <= 1.0:
    raise ValueError(f'soft update tau must be in [0, 1], got {tau}')
  return jax.tree.map(
      lambda t, o: (tau * o + (1.0 - tau) * t).astype(t.dtype), target,
      online)
