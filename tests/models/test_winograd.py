"""Winograd F(2x2/4x4, 3x3) against brute-force correlation sums in numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.models import winograd

SPECS = [winograd.F2X3, winograd.F4X3]


def _correlate(x: np.ndarray, k: np.ndarray) -> np.ndarray:
  """y[n,p,q,o] = Σ_abi x[n, p+a-1, q+b-1, i] k[a, b, i, o], zeros outside."""
  n, h, w, _ = x.shape
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  y = np.zeros((n, h, w, k.shape[-1]), np.float64)
  for a in range(3):
    for b in range(3):
      y += np.einsum('nhwi,io->nhwo', xp[:, a:a + h, b:b + w], k[a, b])
  return y


def _grads(x, k, gy):
  """(dL/dx, dL/dk) of L = Σ y·gy, by the shifted sums of the definition."""
  _, h, w, _ = x.shape
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  dxp = np.zeros_like(xp)
  dk = np.zeros_like(k)
  for a in range(3):
    for b in range(3):
      dxp[:, a:a + h, b:b + w] += np.einsum('nhwo,io->nhwi', gy, k[a, b])
      dk[a, b] = np.einsum('nhwi,nhwo->io', xp[:, a:a + h, b:b + w], gy)
  return dxp[:, 1:h + 1, 1:w + 1], dk


@pytest.mark.parametrize('spec', SPECS, ids=['F2', 'F4'])
def test_matrices_give_the_1d_correlation(spec):
  # Lavin & Gray's identity Y = Aᵀ[(G g) ⊙ (Bᵀ d)] = (Σ_k d[i+k] g[k])_i.
  rng = np.random.default_rng(0)
  bt, g, at = (np.asarray(m, np.float64) for m in (spec.bt, spec.g, spec.at))
  for _ in range(5):
    d, f = rng.standard_normal(spec.a), rng.standard_normal(3)
    want = [d[i:i + 3] @ f for i in range(spec.m)]
    np.testing.assert_allclose(at @ ((g @ f) * (bt @ d)), want, atol=1e-12)


@pytest.mark.parametrize('spec', SPECS, ids=['F2', 'F4'])
@pytest.mark.parametrize('shape', [(2, 8, 8, 3, 5), (1, 5, 7, 4, 2),
                                   (3, 1, 1, 2, 3), (1, 9, 6, 6, 1),
                                   (1, 13, 4, 2, 4)])
def test_conv_equals_the_correlation_in_float64(spec, shape):
  n, h, w, ci, co = shape
  rng = np.random.default_rng(1)
  x = rng.standard_normal((n, h, w, ci))
  k = rng.standard_normal((3, 3, ci, co))
  with jax.enable_x64(True):
    got = np.asarray(winograd.conv3x3(jnp.asarray(x), jnp.asarray(k), spec))
  assert got.shape == (n, h, w, co)
  np.testing.assert_allclose(got, _correlate(x, k), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('spec', SPECS, ids=['F2', 'F4'])
def test_gradients_equal_the_definition_in_float64(spec):
  rng = np.random.default_rng(2)
  x = rng.standard_normal((2, 7, 10, 3))
  k = rng.standard_normal((3, 3, 3, 4))
  gy = rng.standard_normal((2, 7, 10, 4))
  with jax.enable_x64(True):
    _, vjp = jax.vjp(lambda x, k: winograd.conv3x3(x, k, spec),
                     jnp.asarray(x), jnp.asarray(k))
    dx, dk = (np.asarray(g) for g in vjp(jnp.asarray(gy)))
  want_dx, want_dk = _grads(x, k, gy)
  np.testing.assert_allclose(dx, want_dx, rtol=1e-10, atol=1e-10)
  np.testing.assert_allclose(dk, want_dk, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('spec,tol', [(winograd.F2X3, 2e-6),
                                      (winograd.F4X3, 5e-5)], ids=['F2', 'F4'])
def test_float32_error_at_a_dense_block_size(spec, tol):
  # The float32 price of F(4, 3)'s ±2 points, relative to the largest output.
  rng = np.random.default_rng(3)
  x = rng.random((2, 32, 32, 96)).astype(np.float32)
  k = (rng.standard_normal((3, 3, 96, 32)) * 0.03).astype(np.float32)
  want = _correlate(x.astype(np.float64), k.astype(np.float64))
  got = np.asarray(jax.jit(winograd.conv3x3, static_argnums=2)(x, k, spec))
  err = np.max(np.abs(got - want)) / np.max(np.abs(want))
  assert err < tol


def test_rejects_other_kernels():
  with pytest.raises(ValueError, match='3x3 kernel'):
    winograd.conv3x3(jnp.zeros((1, 4, 4, 2)), jnp.zeros((5, 5, 2, 2)))
  with pytest.raises(ValueError, match='matching'):
    winograd.conv3x3(jnp.zeros((1, 4, 4, 2)), jnp.zeros((3, 3, 3, 2)))


@pytest.mark.parametrize('spec', SPECS, ids=['F2', 'F4'])
def test_output_transform_transpose_is_the_adjoint(spec):
  # <output_transform(M), dY> = <M, output_transform_transpose(dY)>.
  rng = np.random.default_rng(4)
  h, w = 7, 9
  th, tw = winograd.num_tiles(h, w, spec)
  m = rng.standard_normal((spec.a, spec.a, 2, th, tw, 3))
  dy = rng.standard_normal((2, h, w, 3))
  with jax.enable_x64(True):
    y = np.asarray(winograd.output_transform(jnp.asarray(m), h, w, spec))
    dm = np.asarray(winograd.output_transform_transpose(jnp.asarray(dy), spec))
  assert dm.shape == m.shape
  np.testing.assert_allclose(np.sum(y * dy), np.sum(m * dm), rtol=1e-12)


@pytest.mark.parametrize('spec', SPECS, ids=['F2', 'F4'])
def test_kernel_gradient_equals_the_definition(spec):
  rng = np.random.default_rng(5)
  x = rng.standard_normal((2, 9, 6, 3))
  gy = rng.standard_normal((2, 9, 6, 5))
  with jax.enable_x64(True):
    dk = np.asarray(winograd.kernel_gradient(jnp.asarray(x), jnp.asarray(gy),
                                             spec))
  np.testing.assert_allclose(dk, _grads(x, np.zeros((3, 3, 3, 5)), gy)[1],
                             rtol=1e-10, atol=1e-10)


def test_conv_with_winograd_kernel_grad():
  rng = np.random.default_rng(6)
  x = rng.standard_normal((2, 10, 7, 4))
  k = rng.standard_normal((3, 3, 4, 3))
  gy = rng.standard_normal((2, 10, 7, 3))
  conv = winograd.conv3x3_winograd_kernel_grad
  with jax.enable_x64(True):
    y, vjp = jax.vjp(conv, jnp.asarray(x), jnp.asarray(k))
    dx, dk = (np.asarray(g) for g in vjp(jnp.asarray(gy)))
  np.testing.assert_allclose(np.asarray(y), _correlate(x, k), rtol=1e-10,
                             atol=1e-10)
  want_dx, want_dk = _grads(x, k, gy)
  np.testing.assert_allclose(dx, want_dx, rtol=1e-10, atol=1e-10)
  np.testing.assert_allclose(dk, want_dk, rtol=1e-10, atol=1e-10)
  # float32 at a dense-block size: the kernel gradient within 5e-5 relative.
  x32 = rng.random((4, 32, 32, 64)).astype(np.float32)
  k32 = (rng.standard_normal((3, 3, 64, 32)) * 0.05).astype(np.float32)
  g32 = rng.standard_normal((4, 32, 32, 32)).astype(np.float32)
  _, vjp = jax.vjp(conv, x32, k32)
  dk32 = np.asarray(vjp(g32)[1])
  want = _grads(x32.astype(np.float64), k32.astype(np.float64),
                g32.astype(np.float64))[1]
  assert np.max(np.abs(dk32 - want)) / np.max(np.abs(want)) < 5e-5


def test_valid_conv_and_its_gradients_equal_the_definition():
  """VALID = the SAME correlation without its border; L = Σ y·gy."""
  rng = np.random.default_rng(7)
  x = rng.standard_normal((2, 9, 7, 3))
  k = rng.standard_normal((3, 3, 3, 4))
  gy = rng.standard_normal((2, 7, 5, 4))
  with jax.enable_x64(True):
    y, vjp = jax.vjp(winograd.conv3x3_valid, jnp.asarray(x), jnp.asarray(k))
    dx, dk = (np.asarray(g) for g in vjp(jnp.asarray(gy)))
  np.testing.assert_allclose(np.asarray(y), _correlate(x, k)[:, 1:-1, 1:-1],
                             rtol=1e-10, atol=1e-10)
  want_dx, want_dk = _grads(x, k, np.pad(gy, ((0, 0), (1, 1), (1, 1),
                                              (0, 0))))
  np.testing.assert_allclose(dx, want_dx, rtol=1e-10, atol=1e-10)
  np.testing.assert_allclose(dk, want_dk, rtol=1e-10, atol=1e-10)


def _penalty(conv):
  """A gradient penalty through two convs: ‖∂/∂x Σ c·tanh(conv(tanh(conv(x,
  k1)), k2))‖² per (x, k1, k2), as WGAN-GP differentiates a critic."""
  def critic(x, k1, k2, c):
    return jnp.sum(c * jnp.tanh(conv(jnp.tanh(conv(x, k1)), k2)))

  def penalty(x, k1, k2, c):
    return jnp.sum(jnp.square(jax.grad(critic)(x, k1, k2, c)))
  return penalty


def test_valid_conv_second_order_equals_xla_and_finite_differences():
  rng = np.random.default_rng(8)
  x = rng.standard_normal((1, 10, 8, 2))
  k1 = rng.standard_normal((3, 3, 2, 3)) * 0.5
  k2 = rng.standard_normal((3, 3, 3, 2)) * 0.5
  c = rng.standard_normal((1, 6, 4, 2))
  with jax.enable_x64(True):
    args = tuple(jnp.asarray(a) for a in (x, k1, k2, c))
    ours_fn = _penalty(winograd.conv3x3_valid)
    ours = jax.grad(ours_fn, argnums=(0, 1, 2))(*args)
    xla = jax.grad(_penalty(winograd.xla_conv3x3_valid),
                   argnums=(0, 1, 2))(*args)
    for got, want in zip(ours, xla):
      np.testing.assert_allclose(np.asarray(got), np.asarray(want),
                                 rtol=1e-9, atol=1e-10)
    # And one entry of each kernel against a central difference.
    h = 1e-5
    for i, index in enumerate(((0, 1, 1, 2), (2, 0, 2, 1))):
      arrays = list(args)
      kernel = np.array(arrays[1 + i])
      kernel[index] += h
      arrays[1 + i] = jnp.asarray(kernel)
      up = float(ours_fn(*arrays))
      kernel[index] -= 2 * h
      arrays[1 + i] = jnp.asarray(kernel)
      down = float(ours_fn(*arrays))
      np.testing.assert_allclose(float(ours[1 + i][index]),
                                 (up - down) / (2 * h), rtol=1e-6)
