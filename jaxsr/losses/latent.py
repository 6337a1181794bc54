"""PULSE's geodesic cross loss over the W+ rows of one face (paper 001, L_g).

For rows x_i (n, dim), PULSE (`loss.py`, `_loss_geocross`) takes every
ordered pair (i, j) of the n x n, the diagonal included, and

  d_ij = 2 atan2(‖x_i - x_j‖, ‖x_i + x_j‖)

which for rows of equal norm is the angle between them (‖x - y‖ = 2r sin θ/2,
‖x + y‖ = 2r cos θ/2): 0 for equal rows, π/2 orthogonal, π opposite. It is
invariant to scaling all rows by one c > 0.

  geocross_raw(rows)   = mean_{i,j} d_ij²                (all n² pairs)
  geocross_pulse(rows) = mean_{i,j} (d_ij² · 512) / 8 = 64 · geocross_raw

`geocross_pulse` is PULSE's value for one face (PULSE sums it over the
batch), with its 1e-9 inside both square roots and its constant 512/8 kept
whatever `dim` is (PULSE hard-codes 18 x 512); it differs from
64 · geocross_raw only by that 1e-9 (relative ~1e-12 for rows of norm ~1).
The mean over distinct unordered pairs is geocross_raw · n / (n - 1).

Weights. PULSE's default loss is `100*L2+0.05*GEOCROSS`: 0.05 on
geocross_pulse, i.e. 3.2 on geocross_raw. Paper 001 (eq. 2) sets
λ_p = 100, λ_s = 0.5, λ_g = 500 and calls L_g "the geodesic cross loss
adopted in PULSE" without a normalization; λ_p = 100 is PULSE's pixel
weight, so read literally (λ_g on geocross_pulse) the paper weighs the
geodesic term 500 / 0.05 = 10⁴ times more than PULSE (32000 on
geocross_raw against PULSE's 3.2); read on geocross_raw it would be
500 / 3.2 = 156.25 times PULSE. To reproduce PULSE's balance with the
paper's number, λ_g = 500 times a scale of 1e-4 on geocross_pulse is
PULSE's 0.05 exactly. Configs state which function and scale their λ_g
multiplies, and log geocross_raw.

A single row (PULSE's tile_latent, or the DCGAN's one latent vector): there
are no distinct pairs and both functions return exactly 0 (PULSE returns 0
when the latent has one row), so L_g vanishes and λ_g has no effect.
"""

import jax
import jax.numpy as jnp

# PULSE's eps inside the square roots of GEOCROSS.
PULSE_EPS = 1e-9


def _check(rows: jax.Array) -> None:
  if jnp.ndim(rows) != 2:
    raise ValueError(f'latent rows must be (rows, dim), got shape '
                     f'{jnp.shape(rows)}')


def _safe_norm(v: jax.Array) -> jax.Array:
  """‖v‖ over the last axis, with gradient 0 (not NaN) at v = 0."""
  s = jnp.sum(jnp.square(v), axis=-1)
  pos = s > 0
  return jnp.where(pos, jnp.sqrt(jnp.where(pos, s, 1.0)), 0.0)


def pairwise_geodesic(rows: jax.Array, eps: float = 0.0) -> jax.Array:
  """d_ij = 2 atan2(‖x_i - x_j‖, ‖x_i + x_j‖) for rows (n, dim) -> (n, n).

  Args:
    rows: (n, dim) float rows.
    eps: 0 for the exact distance with a safe norm (finite gradients for
      equal, opposite or zero rows); PULSE_EPS for PULSE's sqrt(· + 1e-9).

  Returns:
    (n, n) distances in [0, π].
  """
  _check(rows)
  x, y = rows[None, :, :], rows[:, None, :]
  if eps:
    a = jnp.sqrt(jnp.sum(jnp.square(x - y), -1) + eps)
    b = jnp.sqrt(jnp.sum(jnp.square(x + y), -1) + eps)
    return 2.0 * jnp.arctan2(a, b)
  # atan2(0, 0) = 0 (a zero row with itself); its NaN partials stop at the
  # safe norms' where.
  return 2.0 * jnp.arctan2(_safe_norm(x - y), _safe_norm(x + y))


def geocross_raw(rows: jax.Array) -> jax.Array:
  """Mean over all n² ordered row pairs of d_ij² (radians²); (n, dim) -> ()."""
  _check(rows)
  if rows.shape[0] == 1:
    return jnp.zeros((), jnp.result_type(rows, jnp.float32))
  return jnp.mean(jnp.square(pairwise_geodesic(rows)))


def geocross_pulse(rows: jax.Array) -> jax.Array:
  """PULSE's GEOCROSS of one face: mean(d² · 512) / 8 with its 1e-9; () ."""
  _check(rows)
  if rows.shape[0] == 1:
    return jnp.zeros((), jnp.result_type(rows, jnp.float32))
  d = pairwise_geodesic(rows, eps=PULSE_EPS)
  return jnp.mean(jnp.square(d) * 512.0) / 8.0
