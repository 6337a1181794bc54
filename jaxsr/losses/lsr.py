"""LSRGAN latent-space regularization terms (paper 000, eqs. 8-10, 13).

G(z) = sr, y = hr, and L is the companion encoder (HR -> LR-sized latent).
The generator's regularizer is eta * |y - G(z)|_1 - mu * |L(y) - L(G(z))|_1
(eqs. 8, 10, 13; eta = 1e-2, mu = 1e-3 in §4.1) and L minimizes
|L(y) - L(G(z))|_1 (eq. 9). Every |.|_1 is a mean over elements, as in the
pixel loss (PyTorch L1Loss), so eta and mu carry the paper's magnitudes.

The minus sign on mu is the paper's (a KKT rewrite of the Lipschitz bound,
eq. 7): G is rewarded for moving L(G(z)) away from L(y), while L (eq. 9)
pulls them together. `mu_sign` keeps it a config choice. Who gets gradient:
in the G step, L's params are fixed and both l_sr = L(sr) and the pixel term
carry G's gradient (l_hr = L(hr) does not depend on G); in the L step, sr is
`jax.lax.stop_gradient(G(z))` and both l_sr and l_hr carry L's gradient.
"""

import jax
import jax.numpy as jnp


def _l1(a: jax.Array, b: jax.Array) -> jax.Array:
  """Mean absolute difference (at least float32), shapes checked."""
  if a.shape != b.shape:
    raise ValueError(
        f'LSR terms need equal shapes, got {a.shape} and {b.shape}'
    )
  dtype = jnp.result_type(a.dtype, b.dtype, jnp.float32)
  return jnp.mean(jnp.abs(a.astype(dtype) - b.astype(dtype)))


def lsr_generator_terms(
    sr: jax.Array,
    hr: jax.Array,
    l_sr: jax.Array,
    l_hr: jax.Array,
    *,
    eta: float,
    mu: float,
    mu_sign: float = -1.0,
) -> dict[str, jax.Array]:
  """G's LSR terms: {'pixel', 'latent', 'total'} scalars (eqs. 8, 10, 13).

  Args:
    sr: G(z), (N, H, W, C) in [0, 1].
    hr: y, (N, H, W, C) in [0, 1].
    l_sr: L(G(z)), (N, h, w, C') latent of the SR images.
    l_hr: L(y), same shape, latent of the HR images.
    eta: the pixel weight (eq. 8; 1e-2 in §4.1).
    mu: the latent weight, >= 0 (eq. 8; 1e-3 in §4.1).
    mu_sign: -1 is the paper's sign (G pushes the latents apart); +1 makes
      G pull them together.

  Returns:
    {'pixel': mean|y - G(z)|, 'latent': mean|L(y) - L(G(z))|,
     'total': eta * pixel + mu_sign * mu * latent}, float32 scalars. The
    adversarial and perceptual/contextual terms are added by the caller.
  """
  pixel = _l1(hr, sr)
  latent = _l1(l_hr, l_sr)
  total = eta * pixel + mu_sign * mu * latent
  return {'pixel': pixel, 'latent': latent, 'total': total}


def encoder_loss(l_sr: jax.Array, l_hr: jax.Array) -> jax.Array:
  """Eq. 9: mean|L(y) - L(G(z))| over (N, h, w, C') latents, a scalar."""
  return _l1(l_hr, l_sr)
