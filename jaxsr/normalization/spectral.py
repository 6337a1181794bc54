"""Spectral norms of weights: Miyato's power iteration and Sedghi's exact FFT.

Two quantities named "spectral norm" of a convolution kernel (kh, kw, cin,
cout) are in use, and the SAN paper (Kligvasser & Michaeli, Fig. 3, footnote
2) turns on their difference:

  * Miyato et al. 2018 (SN-GAN, `torch.nn.utils.spectral_norm`) reshape the
    kernel to a (kh·kw·cin, cout) matrix M and take its top singular value,
    estimated by one power iteration per call with a persistent vector u.
  * The true Lipschitz constant of the convolution as a linear map. With
    circular padding and stride 1 it is, by Sedghi, Gupta & Long 2019
    (Theorem 6), the largest singular value over all frequencies (u, v) of the
    cin×cout matrix P(u, v) = Σ_{a,b} K[a, b] e^{-2πi(au/H + bv/W)}.

For H ≥ kh and W ≥ kw and any x (cout,), Parseval gives
‖M x‖² = Σ_{a,b} ‖K[a, b] x‖² = mean_ω ‖P(ω) x‖², and the triangle
inequality ‖P(ω) x‖ ≤ Σ_{a,b} ‖K[a, b] x‖; hence
‖M‖₂ ≤ σ_exact ≤ √(kh·kw)·‖M‖₂: the reshape never over-estimates, and can
under-estimate by up to the square root of the kernel's area.
"""

import jax
import jax.numpy as jnp


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """x / max(‖x‖₂, eps) for a vector x (torch's F.normalize)."""
  return x / jnp.maximum(jnp.linalg.norm(x), eps)


def kernel_matrix(kernel: jax.Array) -> jax.Array:
  """A kernel (..., cout) as Miyato's (prod(...), cout) float32 matrix."""
  kernel = jnp.asarray(kernel, jnp.float32)
  return kernel.reshape(-1, kernel.shape[-1])


def init_u(key: jax.Array, cout: int) -> jax.Array:
  """A random unit vector (cout,) to start the power iteration (torch's u)."""
  return l2_normalize(jax.random.normal(key, (cout,), jnp.float32))


def spectral_norm_estimate(
    kernel: jax.Array,
    u: jax.Array,
    *,
    n_iter: int = 1,
    eps: float = 1e-12,
) -> tuple[jax.Array, jax.Array]:
  """Miyato's σ of a kernel (..., cout) from u (cout,) -> (σ scalar, new u).

  The kernel is the matrix M = kernel_matrix(kernel) (Flax's (kh·kw·cin,
  cout), the transpose of PyTorch's (out, in·kh·kw) up to a row order that
  leaves singular values unchanged). Each iteration is PyTorch's
  `v = normalize(Wᵀu), u = normalize(W v)`, i.e. v = normalize(M u),
  u = normalize(Mᵀ v); then σ = vᵀ M u. As in PyTorch and SN-GAN, u and v
  are constants of the gradient but σ is not: d σ / d M = v uᵀ flows back
  into the kernel.

  Args:
    kernel: a Dense (in, out) or conv (kh, kw, cin, cout) kernel.
    u: (cout,) the persistent vector from the previous call.
    n_iter: power iterations per call (1 in SN-GAN).
    eps: the normalization floor (PyTorch's 1e-12).

  Returns:
    (sigma, new_u): a float32 scalar and the (cout,) vector to keep.
  """
  if n_iter < 1:
    raise ValueError(f'n_iter must be at least 1, got {n_iter}')
  m = kernel_matrix(kernel)
  if u.shape != (m.shape[1],):
    raise ValueError(
        f'u must have shape ({m.shape[1]},) for a kernel {kernel.shape}, '
        f'got {u.shape}'
    )
  m_const = jax.lax.stop_gradient(m)
  u = jax.lax.stop_gradient(jnp.asarray(u, jnp.float32))

  def iterate(_, uv):
    v = l2_normalize(m_const @ uv[0], eps)
    return l2_normalize(m_const.T @ v, eps), v

  v0 = jnp.zeros((m.shape[0],), jnp.float32)
  u, v = jax.lax.fori_loop(0, n_iter, iterate, (u, v0))
  sigma = v @ (m @ u)
  return sigma, u


def top_singular_value(matrix: jax.Array) -> jax.Array:
  """The exact largest singular value of a 2-D matrix, a float32 scalar."""
  matrix = jnp.asarray(matrix, jnp.float32)
  if matrix.ndim != 2:
    raise ValueError(f'expected a 2-D matrix, got shape {matrix.shape}')
  return jnp.linalg.svd(matrix, compute_uv=False)[0]


def conv_singular_value(
    kernel: jax.Array, spatial_shape: tuple[int, int]
) -> jax.Array:
  """Exact top singular value of a stride-1 circular conv, a float32 scalar.

  Sedghi et al. 2019: the circular convolution of (H, W, cin) inputs is block
  diagonalized by the 2-D DFT, each block being the cin×cout matrix P(u, v)
  of the kernel's DFT zero-padded to H×W; the operator's singular values are
  those of all the P(u, v). Since the kernel is real,
  P(-u, -v) = conj(P(u, v)) has the same singular values, so the half
  spectrum of `rfft2` suffices. A cross-correlation (Flax's convolution) is a
  convolution with the flipped kernel, whose DFT is the conjugate: same
  values. For a strided conv this is an upper bound (striding subsamples).

  Args:
    kernel: (kh, kw, cin, cout).
    spatial_shape: (H, W) of the layer's input, H ≥ kh and W ≥ kw.

  Returns:
    max_{u,v} σ_max(P(u, v)).
  """
  kernel = jnp.asarray(kernel, jnp.float32)
  h, w = check_conv_kernel(kernel, spatial_shape)
  spectrum = jnp.fft.rfft2(kernel, s=(h, w), axes=(0, 1))
  return jnp.max(jnp.linalg.svd(spectrum, compute_uv=False))


def check_conv_kernel(kernel: jax.Array, spatial_shape) -> tuple[int, int]:
  """Validates a kernel (kh, kw, cin, cout) against an (H, W) -> (H, W)."""
  if kernel.ndim != 4:
    raise ValueError(
        f'expected a conv kernel (kh, kw, cin, cout), got shape {kernel.shape}'
    )
  h, w = (int(n) for n in spatial_shape)
  if h < kernel.shape[0] or w < kernel.shape[1]:
    raise ValueError(
        f'the input {h}x{w} is smaller than the '
        f'{kernel.shape[0]}x{kernel.shape[1]} kernel'
    )
  return h, w
