"""Tests for SIFID, the Fréchet distance and PIRM RMSE, against closed forms."""

import numpy as np
import pytest

from jaxsr.metrics import rmse
from jaxsr.metrics import sifid
from tests.models import test_inception as ref


def _spd(rng, dim):
  a = rng.normal(size=(dim, dim))
  return a @ a.T + 0.1 * np.eye(dim)


def _np_frechet(mu1, s1, mu2, s2):
  """Independent form: Tr sqrt(S1 S2) = sum sqrt(eig(S1^1/2 S2 S1^1/2))."""
  w, v = np.linalg.eigh(s1)
  root = (v * np.sqrt(np.maximum(w, 0))) @ v.T
  inner = np.linalg.eigvalsh(root @ s2 @ root)
  tr = np.sum(np.sqrt(np.maximum(inner, 0)))
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr)


def test_frechet_identical_gaussians_is_zero():
  rng = np.random.default_rng(0)
  mu, sigma = rng.normal(size=6), _spd(rng, 6)
  assert abs(sifid.frechet_distance(mu, sigma, mu, sigma)) < 1e-9


def test_frechet_diagonal_closed_form():
  a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
  mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
  got = sifid.frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
  # sum (sqrt a - sqrt b)^2 = 4 + 1 + 0, plus |mu1 - mu2|^2 = 1 + 0 + 4.
  assert got == pytest.approx(10.0, abs=1e-12)


def test_frechet_scaled_covariance_and_general_case():
  rng = np.random.default_rng(1)
  s = _spd(rng, 5)
  mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
  # S2 = c^2 S1 commutes with S1: d = |dmu|^2 + (1 - c)^2 Tr S1.
  want = np.sum((mu1 - mu2) ** 2) + (1 - 3.0) ** 2 * np.trace(s)
  assert sifid.frechet_distance(mu1, s, mu2, 9.0 * s) == pytest.approx(
      want, rel=1e-10)
  s2 = _spd(rng, 5)
  assert sifid.frechet_distance(mu1, s, mu2, s2) == pytest.approx(
      _np_frechet(mu1, s, mu2, s2), rel=1e-8)


def test_frechet_scalar_and_singular_inputs():
  # 1-D: (mu1 - mu2)^2 + (sqrt v1 - sqrt v2)^2 = 4 + (3 - 1)^2.
  assert sifid.frechet_distance(1.0, 9.0, 3.0, 1.0) == pytest.approx(8.0)
  # Rank-1 covariances: the product is singular, the result stays finite.
  u = np.array([[1.0, 2.0, 0.0]])
  s = u.T @ u
  got = sifid.frechet_distance(np.zeros(3), s, np.zeros(3), s)
  assert np.isfinite(got) and abs(got) < 1e-4
  with pytest.raises(ValueError, match='to match the means'):
    sifid.frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))


def test_activation_statistics_by_hand():
  feats = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
  mu, sigma = sifid.activation_statistics(feats.reshape(2, 2, 2))
  np.testing.assert_allclose(mu, [1.0, 1.0])
  # Unbiased: var of (0, 2, 0, 2) is 4 / 3; the two axes are uncorrelated.
  np.testing.assert_allclose(sigma, np.diag([4 / 3, 4 / 3]), atol=1e-15)
  with pytest.raises(ValueError, match='at least 2'):
    sifid.activation_statistics(np.ones((1, 3)))


@pytest.fixture(scope='module')
def stem():
  sd = ref.torch_state_dict(np.random.default_rng(5), ref.STEM)
  return sd, ref.to_variables(sd)


def test_sifid_of_an_image_with_itself_is_zero(stem):
  _, variables = stem
  x = np.random.default_rng(6).integers(0, 256, (24, 20, 3), dtype=np.uint8)
  assert abs(sifid.sifid(x, x, variables)) < 1e-6
  # uint8 and float [0, 1] inputs are the same image.
  assert abs(sifid.sifid(x, x.astype(np.float32) / 255, variables)) < 1e-6


def test_sifid_matches_numpy_pipeline(stem):
  sd, variables = stem
  rng = np.random.default_rng(7)
  real = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
  fake = (rng.uniform(size=(22, 26, 3)) ** 2).astype(np.float32)
  stats = []
  for image in (real.astype(np.float64) / 255, fake.astype(np.float64)):
    f = ref.numpy_stem(sd, image[None])['conv2d_2b'].reshape(-1, 64)
    stats += [f.mean(0), np.cov(f, rowvar=False)]
  want = _np_frechet(*stats)
  got = sifid.sifid(real, fake, variables)
  assert want > 0.01
  assert got == pytest.approx(want, rel=1e-3)
  assert sifid.sifid(fake, real, variables) == pytest.approx(got, rel=1e-6)


def test_sifid_rejects_bad_images(stem):
  _, variables = stem
  good = np.zeros((24, 24, 3), np.uint8)
  with pytest.raises(ValueError, match=r'\[0, 1\]'):
    sifid.sifid(good, np.full((24, 24, 3), 2.0, np.float32), variables)
  with pytest.raises(ValueError, match='single images'):
    sifid.sifid(good[None], good[None], variables)
  with pytest.raises(ValueError, match='H x W x 3'):
    sifid.sifid(good, good[..., 0], variables)


def test_rmse_hand_values():
  assert rmse.rmse([0.0, 0.0], [3.0, 4.0]) == pytest.approx(np.sqrt(12.5))
  # Gray RGB v -> Y = round(16 + 219 v / 255): 0 -> 16, 255 -> 235.
  black = np.zeros((12, 12, 3), np.uint8)
  white = np.full((12, 12, 3), 255, np.uint8)
  assert rmse.mse_y(black, white) == pytest.approx(219.0**2)
  assert rmse.rmse_y(black, white) == pytest.approx(219.0)
  # Only the border differs: a 4-pixel shave removes it all.
  framed = black.copy()
  framed[:4] = 255
  assert rmse.mse_y(framed, black) == 0.0
  assert rmse.mse_y(framed, black, shave=0) == pytest.approx(
      219.0**2 * 48 / 144)


def test_rmse_gray_and_set_mean():
  a = np.zeros((10, 10), np.uint8)
  b = a.copy()
  b[4, 4], b[5, 5] = 4, 2  # Inside the 2 x 2 centre left after shaving 4.
  assert rmse.mse_y(a, b) == pytest.approx((16 + 4) / 4)
  # sqrt of the mean MSE, not the mean of per-image RMSEs.
  assert rmse.rmse_over_set([1.0, 3.0]) == pytest.approx(np.sqrt(2.0))
  with pytest.raises(TypeError, match='uint8'):
    rmse.mse_y(a.astype(np.float32), b)
  with pytest.raises(ValueError, match='cannot shave'):
    rmse.mse_y(a[:8, :8], b[:8, :8])
