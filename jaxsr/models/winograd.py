"""Winograd F(m×m, 3×3) for zero-padded stride-1 3x3 convs, NHWC x HWIO.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR
2016): each (m+2)×(m+2) input tile d with overlap 2 gives an m×m output tile
Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A. Over channels the elementwise product
becomes (m+2)² independent matrix products (tiles, cin) @ (cin, cout), so a
conv costs (m+2)² / m² multiplies per output and input channel (2.25 for
m = 4, 4 for m = 2) instead of 9, plus transforms that are sums of strided
slices (fused by XLA, no constant matrices in the graph). Autodiff through the
three steps is again Winograd: the input gradient multiplies by Uᵀ, the
kernel gradient is a batch of (cin, tiles) @ (tiles, cout) products, which
XLA:CPU runs much faster than its kernel-gradient convolutions.

F(2×2, 3×3) uses the points (0, 1, −1, ∞) and is accurate to float32
rounding; F(4×4, 3×3) uses (0, ±1, ±2, ∞), Lavin & Gray's eqs. (20)-(22),
with a relative error of ~1e-5 in float32 (measured in the tests) — the
same trade cuDNN and oneDNN make with their Winograd kernels.

The computation is a cross-correlation, as lax.conv_general_dilated and
torch's conv2d: y[p, q] = Σ_ab x[p + a − 1, q + b − 1] k[a, b] (zeros
outside). Tiles beyond H, W read zero padding and are cropped away.
"""

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Transform:
  """Matrices of F(m, 3): input Bᵀ (a, a), kernel G (a, 3), output Aᵀ (m, a)."""

  m: int
  bt: tuple[tuple[float, ...], ...]
  g: tuple[tuple[float, ...], ...]
  at: tuple[tuple[float, ...], ...]

  @property
  def a(self) -> int:
    """Tile size m + 2."""
    return self.m + 2


F2X3 = Transform(
    m=2,
    bt=((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1)),
    g=((1, 0, 0), (.5, .5, .5), (.5, -.5, .5), (0, 0, 1)),
    at=((1, 1, 1, 0), (0, 1, -1, -1)),
)

F4X3 = Transform(
    m=4,
    bt=((4, 0, -5, 0, 1, 0),
        (0, -4, -4, 1, 1, 0),
        (0, 4, -4, -1, 1, 0),
        (0, -2, -1, 2, 1, 0),
        (0, 2, -1, -2, 1, 0),
        (0, 4, 0, -5, 0, 1)),
    g=((1 / 4, 0, 0),
       (-1 / 6, -1 / 6, -1 / 6),
       (-1 / 6, 1 / 6, -1 / 6),
       (1 / 24, 1 / 12, 1 / 6),
       (1 / 24, -1 / 12, 1 / 6),
       (0, 0, 1)),
    at=((1, 1, 1, 1, 1, 0),
        (0, 1, -1, 2, -2, 0),
        (0, 1, 1, 4, 4, 0),
        (0, 1, -1, 8, -8, 1)),
)  # pyformat: disable

TRANSFORMS = {2: F2X3, 4: F4X3}


def _combine(parts: Sequence[jax.Array], matrix) -> list[jax.Array]:
  """[Σ_k matrix[i][k] · parts[k] for each row i], skipping zeros."""
  rows = []
  for coefs in matrix:
    acc = None
    for c, part in zip(coefs, parts):
      if c == 0:
        continue
      term = part if c == 1 else -part if c == -1 else part * c
      acc = term if acc is None else acc + term
    rows.append(acc)
  return rows


def _tile_slices(x: jax.Array, axis: int, spec: Transform, tiles: int):
  """The a strided slices x[k :: m] (tiles long) along axis, k = 0..a-1."""
  out = []
  for k in range(spec.a):
    index = [slice(None)] * x.ndim
    index[axis] = slice(k, k + spec.m * (tiles - 1) + 1, spec.m)
    out.append(x[tuple(index)])
  return out


def num_tiles(h: int, w: int, spec: Transform) -> tuple[int, int]:
  """Output tiles (ceil(h / m), ceil(w / m)) covering an h×w map."""
  return -(-h // spec.m), -(-w // spec.m)


def input_transform(x: jax.Array, spec: Transform = F4X3) -> jax.Array:
  """x (N, H, W, C) -> V = Bᵀ d B per tile, (a, a, N, Th, Tw, C).

  Axis 0 indexes the transformed W position of the tile, axis 1 its H
  position (the order kernel_transform and output_transform expect).
  """
  n, h, w, c = x.shape
  th, tw = num_tiles(h, w, spec)
  # One zero row/column before (the conv's padding), enough after for the
  # last tile: tiles · m + 2 in all.
  x = jnp.pad(x, ((0, 0), (1, th * spec.m + 1 - h), (1, tw * spec.m + 1 - w),
                  (0, 0)))
  rows = jnp.stack(_combine(_tile_slices(x, 1, spec, th), spec.bt))
  # rows: (a_h, N, Th, Wp, C); now along W (axis 3).
  return jnp.stack(_combine(_tile_slices(rows, 3, spec, tw), spec.bt))


def kernel_transform(kernel: jax.Array, spec: Transform = F4X3) -> jax.Array:
  """kernel (3, 3, I, O) -> U = G g Gᵀ, (a_w, a_h, I, O)."""
  if kernel.shape[:2] != (3, 3):
    raise ValueError(f'Winograd F(m, 3) needs a 3x3 kernel, got '
                     f'{kernel.shape[:2]}')
  g = jnp.asarray(spec.g, kernel.dtype)
  # U[j, i] = Σ_kl G[i, k] g[k, l] G[j, l]: i from the kernel's H axis k,
  # j from its W axis l. The kernel is tiny next to the activations.
  return jnp.einsum('ik,jl,klco->jico', g, g, kernel)


def multiply(v: jax.Array, u: jax.Array) -> jax.Array:
  """V (a, a, N, Th, Tw, I) x U (a, a, I, O) -> M (a, a, N, Th, Tw, O).

  (a·a) independent (N·Th·Tw, I) @ (I, O) matrix products.
  """
  a0, a1, n, th, tw, ci = v.shape
  if u.shape[:3] != (a0, a1, ci):
    raise ValueError(f'U {u.shape} does not match V {v.shape}')
  co = u.shape[-1]
  m = jax.lax.dot_general(
      v.reshape(a0 * a1, n * th * tw, ci), u.reshape(a0 * a1, ci, co),
      (((2,), (1,)), ((0,), (0,))))
  return m.reshape(a0, a1, n, th, tw, co)


def output_transform(m: jax.Array, h: int, w: int,
                     spec: Transform = F4X3) -> jax.Array:
  """M (a_w, a_h, N, Th, Tw, O) -> Y = Aᵀ M A tiled back to (N, h, w, O)."""
  rows = jnp.stack(_combine([m[:, i] for i in range(spec.a)], spec.at))
  # rows: (m_h, a_w, N, Th, Tw, O) -> combine the W axis.
  cols = jnp.stack(_combine([rows[:, j] for j in range(spec.a)], spec.at))
  # cols: (m_w, m_h, N, Th, Tw, O) -> (N, Th, m_h, Tw, m_w, O).
  _, _, n, th, tw, o = cols.shape
  y = cols.transpose(2, 3, 1, 4, 0, 5).reshape(n, th * spec.m, tw * spec.m, o)
  return y[:, :h, :w]


def conv3x3(x: jax.Array, kernel: jax.Array,
            spec: Transform = F4X3) -> jax.Array:
  """x (N, H, W, I) ⋆ kernel (3, 3, I, O), zero 'SAME' padding -> (N, H, W, O)."""
  if x.ndim != 4 or kernel.ndim != 4 or x.shape[-1] != kernel.shape[2]:
    raise ValueError(f'expected NHWC x and (3, 3, I, O) kernel with matching '
                     f'I, got {x.shape} and {kernel.shape}')
  v = input_transform(x, spec)
  u = kernel_transform(kernel, spec).astype(v.dtype)
  return output_transform(multiply(v, u), x.shape[1], x.shape[2], spec)


def output_transform_transpose(dy: jax.Array,
                               spec: Transform = F4X3) -> jax.Array:
  """dY (N, H, W, O) -> A dY_tile Aᵀ per tile, (a_w, a_h, N, Th, Tw, O).

  The adjoint of output_transform: the gradient of M from that of Y.
  """
  n, h, w, o = dy.shape
  th, tw = num_tiles(h, w, spec)
  m = spec.m
  dy = jnp.pad(dy, ((0, 0), (0, th * m - h), (0, tw * m - w), (0, 0)))
  dy = dy.reshape(n, th, m, tw, m, o)
  a = tuple(zip(*spec.at))  # A = (Aᵀ)ᵀ, (a, m).
  rows = jnp.stack(_combine([dy[:, :, p] for p in range(m)], a))
  # rows: (a_h, N, Th, Tw, m_w, O) -> combine the W positions.
  return jnp.stack(_combine([rows[..., q, :] for q in range(m)], a))


def kernel_gradient(x: jax.Array, dy: jax.Array,
                    spec: Transform = F4X3) -> jax.Array:
  """dL/dkernel (3, 3, I, O) of conv3x3(x, ·) for dL/dy = dy, by Winograd.

  Gᵀ [Σ_tiles Vᵀ dM] G: (a+2)² products (I, tiles) @ (tiles, O), where
  XLA:CPU's own kernel-gradient convolution contracts over N·H·W at once.
  Computed in at least float32: F(4, 3)'s ±2 points need the mantissa.
  """
  x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  v = input_transform(x, spec)
  dm = output_transform_transpose(dy.astype(v.dtype), spec)
  a0, a1, _, _, _, ci = v.shape
  co = dm.shape[-1]
  du = jax.lax.dot_general(
      v.reshape(a0 * a1, -1, ci), dm.reshape(a0 * a1, -1, co),
      (((1,), (1,)), ((0,), (0,)))).reshape(a0, a1, ci, co)
  g = jnp.asarray(spec.g, du.dtype)
  # The adjoint of kernel_transform's U[j, i] = Σ_kl G[i, k] g[k, l] G[j, l].
  return jnp.einsum('ik,jl,jico->klco', g, g, du)


def xla_conv3x3(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """XLA's zero-padded stride-1 3x3 cross-correlation, NHWC x HWIO."""
  return jax.lax.conv_general_dilated(
      x, kernel, (1, 1), ((1, 1), (1, 1)),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@jax.custom_vjp
def conv3x3_winograd_kernel_grad(x: jax.Array,
                                 kernel: jax.Array) -> jax.Array:
  """XLA's 3x3 'SAME' conv whose kernel gradient is computed by F(4x4, 3x3).

  Forward and input gradient are XLA's convolutions (exact to float32
  rounding); only dL/dkernel goes through kernel_gradient (~1e-5 relative).
  """
  return xla_conv3x3(x, kernel)


def _kernel_grad_fwd(x, kernel):
  return xla_conv3x3(x, kernel), (x, kernel)


def _kernel_grad_bwd(residuals, dy):
  x, kernel = residuals
  _, input_vjp = jax.vjp(lambda x: xla_conv3x3(x, kernel), x)
  dk = kernel_gradient(x, dy).astype(kernel.dtype)
  return input_vjp(dy)[0], dk


conv3x3_winograd_kernel_grad.defvjp(_kernel_grad_fwd, _kernel_grad_bwd)


def xla_conv3x3_valid(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """XLA's unpadded ('VALID') stride-1 3x3 cross-correlation, NHWC x HWIO:
  (N, H, W, I) -> (N, H - 2, W - 2, O)."""
  return jax.lax.conv_general_dilated(
      x, kernel, (1, 1), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@jax.custom_vjp
def conv3x3_valid(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """XLA's 3x3 'VALID' conv whose gradients contain no XLA kernel-gradient
  convolution, at any order of differentiation.

  dL/dx is again this function (dy zero-padded by 2, the kernel flipped and
  its channel axes swapped), dL/dkernel is `kernel_gradient` of dy
  zero-padded by 1 (the VALID output is the 'SAME' one without its border).
  Differentiating the backward pass (a gradient penalty's second order)
  then gives forward convolutions and Winograd products only: XLA:CPU
  lowers the kernel gradient of a batch-1 image to a convolution whose
  window is the whole image, up to 10x slower than a forward conv of the
  same size (SinGAN's step: benchmarks/RESULTS.md). F(2x2, 3x3) here: as
  fast as F(4x4, 3x3) at SinGAN's sizes and exact to float32 rounding.
  """
  return xla_conv3x3_valid(x, kernel)


def _valid_fwd(x, kernel):
  return xla_conv3x3_valid(x, kernel), (x, kernel)


def _valid_bwd(residuals, dy):
  x, kernel = residuals
  full = jnp.pad(dy, ((0, 0), (2, 2), (2, 2), (0, 0)))
  dx = conv3x3_valid(full, jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2))
  same = jnp.pad(dy, ((0, 0), (1, 1), (1, 1), (0, 0)))
  dk = kernel_gradient(x, same, F2X3).astype(kernel.dtype)
  return dx.astype(x.dtype), dk


conv3x3_valid.defvjp(_valid_fwd, _valid_bwd)
