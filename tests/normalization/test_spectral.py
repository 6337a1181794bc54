"""Tests for jaxsr.normalization.spectral: Sedghi's exact value, SN-GAN's."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.normalization import spectral
from tests.normalization.test_san import dense_circular_operator

_key = functools.partial(jax.random.key, impl='rbg')


@pytest.mark.parametrize(
    'kshape,hw', [((3, 3, 2, 3), (6, 6)), ((4, 4, 3, 2), (8, 8)),
                  ((2, 3, 3, 2), (5, 7))]
)
def test_sedghi_equals_svd_of_the_dense_operator(kshape, hw):
  kernel = np.random.default_rng(0).normal(size=kshape).astype(np.float32)
  a_op = dense_circular_operator(kernel, hw)
  rows = math.prod(a_op.shape[:3])
  top = np.linalg.svd(a_op.reshape(rows, -1), compute_uv=False)[0]
  np.testing.assert_allclose(
      spectral.conv_singular_value(kernel, hw), top, rtol=1e-5
  )


def test_miyato_reshape_is_below_the_exact_value():
  rng = np.random.default_rng(1)
  for kshape in [(3, 3, 4, 5), (4, 4, 3, 3)]:
    kernel = rng.normal(size=kshape).astype(np.float32)
    u = spectral.init_u(_key(0), kshape[-1])
    sigma, _ = spectral.spectral_norm_estimate(kernel, u, n_iter=300)
    reshape = np.linalg.svd(kernel.reshape(-1, kshape[-1]), compute_uv=False)
    np.testing.assert_allclose(sigma, reshape[0], rtol=1e-4)
    exact = float(spectral.conv_singular_value(kernel, (8, 8)))
    # Parseval: ‖M‖ ≤ σ_exact ≤ sqrt(kh·kw) ‖M‖ (module docstring).
    assert sigma <= exact * (1 + 1e-5)
    assert exact <= math.sqrt(kshape[0] * kshape[1]) * sigma * (1 + 1e-5)


def test_one_step_per_call_converges_with_a_persistent_u():
  kernel = np.random.default_rng(2).normal(size=(3, 3, 2, 4)).astype('f4')
  step = jax.jit(spectral.spectral_norm_estimate)
  u = spectral.init_u(_key(1), 4)
  first, u = step(kernel, u)
  for _ in range(60):
    sigma, u = step(kernel, u)
  top = np.linalg.svd(kernel.reshape(-1, 4), compute_uv=False)[0]
  assert first <= top * (1 + 1e-6)  # A Rayleigh quotient: never above.
  np.testing.assert_allclose(sigma, top, rtol=1e-4)


def test_gradient_goes_through_sigma_as_in_sn_gan():
  matrix = np.random.default_rng(3).normal(size=(6, 4)).astype(np.float32)
  u = spectral.init_u(_key(2), 4)
  _, u = spectral.spectral_norm_estimate(matrix, u, n_iter=300)
  grad = jax.grad(lambda m: spectral.spectral_norm_estimate(m, u)[0])(matrix)
  left, _, right = np.linalg.svd(matrix)
  # dσ/dM = v uᵀ with (v, u) the top singular pair: the product is sign-free.
  np.testing.assert_allclose(
      grad, np.outer(left[:, 0], right[0]), rtol=1e-3, atol=1e-4
  )


def test_top_singular_value_and_errors():
  matrix = np.random.default_rng(4).normal(size=(7, 3))
  np.testing.assert_allclose(
      spectral.top_singular_value(matrix),
      np.linalg.svd(matrix, compute_uv=False)[0],
      rtol=1e-5,
  )
  with pytest.raises(ValueError, match='2-D'):
    spectral.top_singular_value(jnp.ones((2, 2, 2)))
  with pytest.raises(ValueError, match='shape'):
    spectral.spectral_norm_estimate(jnp.ones((3, 3, 2, 4)), jnp.ones(3))
