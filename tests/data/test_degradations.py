"""Tests of the blind-SR degradations against moments, brute force and hand values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.data import degradations as deg


def _moments(kernel):
  """(E[x^2], E[y^2], E[xy]) of a kernel over centred (column, row) offsets."""
  k = np.asarray(kernel, np.float64)
  r = k.shape[0] // 2
  off = np.arange(-r, r + 1, dtype=np.float64)
  x, y = off[None, :], off[:, None]
  return (k * x * x).sum(), (k * y * y).sum(), (k * x * y).sum()


def _truncated_variance(sigma, r=10):
  """Variance of the 1-D Gaussian sampled on -r..r (a 21-tap kernel's)."""
  t = np.arange(-r, r + 1, dtype=np.float64)
  g = np.exp(-t**2 / (2 * sigma**2))
  return (t**2 * g).sum() / g.sum()


@pytest.mark.parametrize('sigma', [0.2, 1.3, 2.6, 4.0])
def test_isotropic_kernel_sums_to_one_with_its_width(sigma):
  k = np.asarray(deg.gaussian_kernel(sigma))
  assert k.shape == (21, 21)
  assert k.sum() == pytest.approx(1.0, abs=1e-6)
  ex2, ey2, exy = _moments(k)
  want = _truncated_variance(sigma)
  assert ex2 == pytest.approx(want, rel=1e-5)
  assert ey2 == pytest.approx(want, rel=1e-5)
  assert exy == pytest.approx(0.0, abs=1e-6)
  np.testing.assert_allclose(deg.gaussian_kernel_np(sigma), k, atol=1e-7)
  if 1.0 <= sigma <= 2.6:  # Truncation and sampling leave sigma^2 intact.
    assert ex2 == pytest.approx(sigma**2, rel=1e-3)


@pytest.mark.parametrize('theta', [0.0, 0.5, np.pi / 2, -2.0])
def test_anisotropic_kernel_covariance_is_rotated_diagonal(theta):
  sx, sy = 1.7, 0.9
  k = deg.gaussian_kernel(sx, sy, theta)
  assert float(k.sum()) == pytest.approx(1.0, abs=1e-6)
  c, s = np.cos(theta), np.sin(theta)
  # Covariance R D R^T with the sigma_x axis along (cos, sin) in (x, y).
  want_xx = c * c * sx**2 + s * s * sy**2
  want_yy = s * s * sx**2 + c * c * sy**2
  want_xy = c * s * (sx**2 - sy**2)
  got = _moments(k)
  np.testing.assert_allclose(got, (want_xx, want_yy, want_xy), atol=2e-5)


def test_rotation_by_quarter_turn_puts_the_wide_axis_on_rows():
  k = np.asarray(deg.gaussian_kernel(3.0, 0.7, np.pi / 2))
  ex2, ey2, _ = _moments(k)
  assert ey2 > 8 and ex2 < 0.6  # Wide along rows (y), narrow along columns.


def test_random_kernels_follow_the_sampler():
  lo, hi = 0.2, 4.0
  iso = np.asarray(deg.random_kernels(jax.random.key(0), 64, (lo, hi)))
  np.testing.assert_allclose(iso.sum(axis=(1, 2)), 1.0, atol=1e-5)
  np.testing.assert_allclose(iso, np.transpose(iso, (0, 2, 1)), atol=1e-7)
  # The width from the ratio of the centre to its neighbour: exp(-1/2s^2).
  ratio = iso[:, 10, 11].astype(np.float64) / iso[:, 10, 10]
  sigma = np.sqrt(-1.0 / (2.0 * np.log(ratio)))
  assert sigma.min() >= lo - 1e-3 and sigma.max() <= hi + 1e-3
  assert sigma.max() - sigma.min() > 2.0  # Spread over the range.
  aniso = np.asarray(deg.random_kernels(jax.random.key(1), 64, (lo, hi),
                                        rate_iso=0.0))
  np.testing.assert_allclose(aniso.sum(axis=(1, 2)), 1.0, atol=1e-5)
  asym = np.abs(aniso - np.transpose(aniso, (0, 2, 1))).max(axis=(1, 2))
  assert (asym > 1e-4).mean() > 0.8  # Rotated and stretched: not transposable.


def _reflect_index(i, n):
  """torch ReflectionPad2d's source of padded position i (edge kept once)."""
  while i < 0 or i >= n:
    i = -i if i < 0 else 2 * (n - 1) - i
  return i


def _blur_brute(image, kernel):
  """Correlation with reflect padding, one output pixel at a time."""
  h, w = image.shape[:2]
  r = kernel.shape[0] // 2
  out = np.zeros(image.shape, np.float64)
  for y in range(h):
    for x in range(w):
      for i in range(kernel.shape[0]):
        for j in range(kernel.shape[1]):
          src = image[_reflect_index(y + i - r, h),
                      _reflect_index(x + j - r, w)]
          out[y, x] += kernel[i, j] * src
  return out


def test_reflect_index_is_torch_reflection_pad():
  # ReflectionPad1d(2) of [a, b, c] is [c, b, a, b, c, b, a].
  assert [_reflect_index(i, 3) for i in range(-2, 5)] == [2, 1, 0, 1, 2, 1, 0]


def test_blur_is_reflect_padded_correlation():
  rng = np.random.default_rng(0)
  images = rng.random((2, 7, 6, 2)).astype(np.float32)
  kernels = rng.random((2, 5, 5)).astype(np.float32)  # Not symmetric.
  got = np.asarray(deg.blur(jnp.asarray(images), jnp.asarray(kernels)))
  for b in range(2):
    want = _blur_brute(images[b].astype(np.float64), kernels[b])
    np.testing.assert_allclose(got[b], want, atol=1e-5)
    np.testing.assert_allclose(deg.blur_np(images[b], kernels[b]), want,
                               atol=1e-12)
    flipped = _blur_brute(images[b].astype(np.float64), kernels[b, ::-1, ::-1])
    assert np.abs(got[b] - flipped).max() > 1e-2  # Convolution would differ.


def _bicubic_weights(n_in, scale):
  """MATLAB's antialiased x(1/scale) bicubic weights (n_in/scale, n_in), away
  from the borders: output X samples input s(X + 1/2) - 1/2 (0-based) with
  the cubic (a = -0.5) stretched by s, normalized to sum 1."""
  def cubic(t):
    t = np.abs(t)
    return np.where(t <= 1, 1.5 * t**3 - 2.5 * t**2 + 1,
                    np.where(t <= 2, -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2, 0))
  centres = scale * (np.arange(n_in // scale) + 0.5) - 0.5
  w = cubic((np.arange(n_in)[None, :] - centres[:, None]) / scale)
  return w / w.sum(axis=1, keepdims=True)


@pytest.mark.parametrize('use_gaussian', [True, False])
def test_delta_image_gives_the_kernels_downsampled_footprint(use_gaussian):
  scale, n, p, q = 4, 56, 27, 24  # Footprint + bicubic taps clear the borders.
  if use_gaussian:
    kernel = np.asarray(deg.gaussian_kernel(2.2, 0.8, 0.7), np.float64)
  else:
    kernel = np.random.default_rng(1).random((21, 21))
    kernel /= kernel.sum()
  hr = np.full((1, n, n, 1), 0.25, np.float32)
  hr[0, p, q, 0] = 0.75
  lr = np.asarray(deg.degrade(jnp.asarray(hr), jnp.asarray(
      kernel[None].astype(np.float32)), scale))[0, :, :, 0]
  # Correlation places the kernel rotated by 180 degrees around the delta.
  footprint = np.zeros((n, n))
  footprint[p - 10:p + 11, q - 10:q + 11] = kernel[::-1, ::-1]
  w = _bicubic_weights(n, scale)
  want = 0.25 + 0.5 * (w @ footprint @ w.T)
  np.testing.assert_allclose(lr, want, atol=2e-6)


def test_degrade_image_matches_the_float_pipeline():
  rng = np.random.default_rng(2)
  hr = rng.integers(0, 256, (24, 28, 3), dtype=np.uint8)
  lr = deg.degrade_image(hr, 1.3, 4)
  assert lr.dtype == np.uint8 and lr.shape == (6, 7, 3)
  kernel = deg.gaussian_kernel(1.3)[None]
  ref = np.asarray(deg.degrade(jnp.asarray(hr[None] / 255.0, jnp.float32),
                               kernel, 4))[0] * 255
  assert np.abs(ref - lr.astype(np.float64)).max() <= 0.5 + 1e-3
  flat = np.full((24, 28), 77, np.uint8)  # Gray stays 2-D and constant.
  np.testing.assert_array_equal(deg.degrade_image(flat, 2.6, 4),
                                np.full((6, 7), 77, np.uint8))


def test_pca_finds_a_known_affine_subspace():
  rng = np.random.default_rng(3)
  v = np.linalg.qr(rng.normal(size=(25, 2)))[0]  # Orthonormal (25, 2).
  mean = rng.random(25)
  coeffs = rng.normal(size=(40, 2)) * [3.0, 1.0]
  kernels = (mean + coeffs @ v.T).reshape(40, 5, 5)
  pca = deg.fit_pca(kernels, dim=2)
  basis = np.asarray(pca.basis, np.float64)
  np.testing.assert_allclose(basis.T @ basis, np.eye(2), atol=1e-6)
  np.testing.assert_allclose(basis @ basis.T, v @ v.T, atol=1e-5)
  np.testing.assert_allclose(np.asarray(pca.mean),
                             mean + coeffs.mean(axis=0) @ v.T, atol=1e-6)
  codes = deg.encode(pca, jnp.asarray(kernels, jnp.float32))
  np.testing.assert_allclose(np.asarray(deg.decode(pca, codes)), kernels,
                             atol=1e-5)
  # The first axis is the one of the larger spread, signed positively.
  assert abs(basis[:, 0] @ v[:, 0]) > 0.999
  assert basis[np.argmax(np.abs(basis[:, 0])), 0] > 0
  ikc = deg.fit_pca(kernels, dim=2, center=False)  # IKC's encoder: k @ U.
  np.testing.assert_array_equal(np.asarray(ikc.mean), 0.0)
  np.testing.assert_allclose(
      np.asarray(deg.encode(ikc, jnp.asarray(kernels, jnp.float32))),
      kernels.reshape(40, 25) @ np.asarray(ikc.basis), atol=1e-5)


def basis_of(pca):
  return np.asarray(pca.basis)


def test_pca_round_trip_of_in_distribution_kernels():
  pca = deg.fit_kernel_pca(seed=0, dim=10, num_kernels=1500)
  assert pca.basis.shape == (441, 10) and pca.mean.shape == (441,)
  deg._fit_kernel_pca.cache_clear()  # pylint: disable=protected-access
  again = deg.fit_kernel_pca(seed=0, dim=10, num_kernels=1500)
  np.testing.assert_array_equal(np.asarray(pca.basis), np.asarray(again.basis))
  other = deg.fit_kernel_pca(seed=1, dim=10, num_kernels=1500)
  assert np.abs(np.asarray(other.basis) - basis_of(pca)).max() > 0
  # A method's init may fit it while traced (jax.eval_shape of init).
  shapes = jax.eval_shape(lambda: deg.fit_kernel_pca(seed=2, num_kernels=50))
  assert shapes.basis.shape == (441, 10)
  cached = deg.fit_kernel_pca(seed=2, num_kernels=50)  # No leaked tracer.
  assert np.isfinite(np.asarray(cached.basis)).all()
  basis = np.asarray(pca.basis)
  np.testing.assert_allclose(basis.T @ basis, np.eye(10), atol=1e-5)
  # Signs fixed (each axis's largest entry positive), not LAPACK's choice.
  assert (basis[np.argmax(np.abs(basis), axis=0), np.arange(10)] > 0).all()
  # Widths over the whole training range, mostly between the fitted samples.
  held_out = np.stack([deg.gaussian_kernel_np(w)
                       for w in np.linspace(0.2, 4.0, 97)])
  rec = np.asarray(deg.decode(pca, deg.encode(pca, jnp.asarray(
      held_out, jnp.float32))))
  err = np.linalg.norm((rec - held_out).reshape(97, -1), axis=1)
  rel = err / np.linalg.norm(held_out.reshape(97, -1), axis=1)
  assert rel.max() < 2e-3


def test_test_set_widths():
  assert deg.protocol_widths('gaussian8', 4) == (1.8, 2.0, 2.2, 2.4, 2.6, 2.8,
                                                 3.0, 3.2)
  np.testing.assert_allclose(deg.protocol_widths('gaussian8', 3),
                             [1.35 + 0.15 * i for i in range(8)], atol=1e-9)
  np.testing.assert_allclose(deg.protocol_widths('gaussian8', 2),
                             [0.8 + 0.8 * i / 7 for i in range(8)], atol=1e-6)
  assert deg.protocol_widths('gaussian', 4, deg.TABLE1_WIDTHS) == (0.2, 1.3,
                                                                  2.6)


def test_random_degradation_batch_from_a_key():
  pca = deg.fit_pca(np.stack([deg.gaussian_kernel_np(w)
                               for w in np.linspace(0.2, 4.0, 30)]), dim=10)
  fn = jax.jit(lambda key, hr: deg.random_degradation(
      key, hr, scale=4, pca=pca, noise_max=0.08, rate_clean=0.5))
  hr = jax.random.uniform(jax.random.key(0), (8, 64, 64, 3), minval=0.35,
                          maxval=0.65)
  a, b, c = (fn(jax.random.key(k), hr) for k in (1, 1, 2))
  assert a['lr'].shape == (8, 16, 16, 3) and a['kernel'].shape == (8, 21, 21)
  assert a['code'].shape == (8, 11) and a['noise'].shape == (8,)
  for k in a:  # The same key gives the same batch, another key another.
    np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
  assert np.abs(np.asarray(a['kernel'] - c['kernel'])).max() > 1e-3
  noise = np.asarray(a['noise'])
  assert 0 < (noise > 0).sum() < 8 and noise.max() <= 0.08
  np.testing.assert_allclose(np.asarray(a['code']), np.concatenate(
      [np.asarray(deg.encode(pca, a['kernel'])), 10 * noise[:, None]], 1),
                             atol=1e-6)
  residual = np.asarray(a['lr'] - jax.jit(deg.degrade, static_argnums=2)(
      hr, a['kernel'], 4)).reshape(8, -1)
  # Clean images are the plain degradation; noisy ones have the drawn std.
  np.testing.assert_allclose(residual[noise == 0], 0.0, atol=1e-6)
  np.testing.assert_allclose(residual[noise > 0].std(axis=1), noise[noise > 0],
                             rtol=0.12)  # 768 samples each.
  quiet = jax.eval_shape(lambda key, hr: deg.random_degradation(
      key, hr, scale=4, pca=pca), jax.random.key(1), hr)
  assert quiet['code'].shape == (8, 10)  # No noise, no noise entry.


@pytest.mark.parametrize('call, match', [
    (lambda: deg.gaussian_kernel(1.0, size=20), 'positive odd integer'),
    (lambda: deg.gaussian_kernel_np(0.0), 'positive kernel width'),
    (lambda: deg.gaussian_kernel(-1.0), 'positive kernel width'),
    (lambda: deg.random_kernels(jax.random.key(0), 2, (3.0, 1.0)),
     'lo <= hi'),
    (lambda: deg.protocol_widths('motion', 4), 'unknown degradation protocol'),
    (lambda: deg.protocol_widths('gaussian', 4), 'needs --kernel_width'),
    (lambda: deg.protocol_widths('gaussian', 4, (1.3, -2.0)),
     'positive kernel width'),
    (lambda: deg.protocol_widths('gaussian8', 5), 'x2, x3 and x4'),
    (lambda: deg.blur(jnp.zeros((1, 8, 30, 3)), jnp.ones((1, 21, 21))),
     'larger than 10 pixels'),
    (lambda: deg.fit_pca(np.zeros((5, 3, 3)), dim=10), 'PCA dim'),
    (lambda: deg.degrade_image(np.zeros((30, 30), np.uint8), 1.0, 4),
     'multiple of the scale'),
])
def test_bad_arguments_raise_one_clear_value_error(call, match):
  with pytest.raises(ValueError, match=match):
    call()
