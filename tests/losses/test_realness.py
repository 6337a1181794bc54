"""Tests for jaxsr.losses.realness against a float64 numpy transcription.

The transcription below follows kam1107/RealnessGAN line by line
(`train.py` anchors, `training/loss.py` CategoricalLoss with its floor/ceil
index_add_ and l == u fix-ups, `learnD.py`, `learnG.py`), written without
reference to the JAX code.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.losses import realness

K = 7  # outcomes: small, odd, so the skewed projection splits mass.


# ---- numpy transcription of the public code (float64) ----------------------


def np_skew(anchor, skewness=0.0, v_min=-1.0, v_max=1.0):
  """CategoricalLoss.forward up to skewed_anchor: anchor (B, atoms)."""
  batch, atoms = anchor.shape
  supports = np.linspace(v_min, v_max, atoms)
  delta = (v_max - v_min) / (atoms - 1)
  tz = np.clip(np.full((batch, atoms), skewness) + supports[None], v_min,
               v_max)
  b = (tz - v_min) / delta
  l = np.floor(b).astype(np.int64)
  u = np.ceil(b).astype(np.int64)
  l[(u > 0) & (l == u)] -= 1
  u[(l < atoms - 1) & (l == u)] += 1
  skewed = np.zeros((batch, atoms))
  rows = np.repeat(np.arange(batch)[:, None], atoms, axis=1)
  np.add.at(skewed, (rows, l), anchor * (u - b))
  np.add.at(skewed, (rows, u), anchor * (b - l))
  return skewed


def np_categorical_loss(anchor, feature, skewness=0.0):
  """CategoricalLoss.forward: anchor, feature (B, atoms) probabilities."""
  skewed = np_skew(anchor, skewness)
  return -(skewed * np.log(feature + 1e-16)).sum(-1).mean()


def np_softmax(logits):
  z = logits - logits.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


def np_anchors(gauss, unif, num_outcomes):
  """train.py: anchor0 from the Gaussian draws, anchor1 from the uniform."""
  count, _ = np.histogram(gauss, num_outcomes)
  anchor0 = count / sum(count)
  count, _ = np.histogram(unif, num_outcomes)
  anchor1 = count / sum(count)
  return anchor1, anchor0


def np_losses(real_logits, fake_logits, anchor1, anchor0, relativistic):
  """(lossD, lossG) of learnD_Realness / learnG_Realness, skews +1 / -1."""
  batch, k = real_logits.shape
  anchor_real = np.zeros((batch, k)) + anchor1
  anchor_fake = np.zeros((batch, k)) + anchor0
  feat_real = np_softmax(real_logits)
  feat_fake = np_softmax(fake_logits)
  loss_d = (np_categorical_loss(anchor_real, feat_real, 1.0)
            + np_categorical_loss(anchor_fake, feat_fake, -1.0))
  if relativistic:
    loss_g = (-np_categorical_loss(anchor_fake, feat_fake, -1.0)
              + np_categorical_loss(feat_real, feat_fake))
  else:
    loss_g = (-np_categorical_loss(anchor_fake, feat_fake, -1.0)
              + np_categorical_loss(anchor_real, feat_fake, 1.0))
  return loss_d, loss_g


def np_projected(anchor, skew):
  """The skewed anchor alone (atoms,), via the transcription."""
  return np_skew(anchor[None], skew)[0]


# ---- helpers ----------------------------------------------------------------

# Jitted once per (K, naming): eager histograms compile op by op.
_anchors = jax.jit(realness.anchors_from_samples, static_argnums=(2, 3))


def _draws(seed):
  rng = np.random.default_rng(seed)
  gauss = rng.normal(0, 0.1, 1000).astype(np.float32)
  unif = rng.uniform(-1, 1, 1000).astype(np.float32)
  return gauss, unif


def _logits(seed, n=3):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(n, K)) * 2.0).astype(np.float32)


# ---- anchors ----------------------------------------------------------------


def test_histogram_matches_numpy():
  gauss, unif = _draws(0)
  for samples in (gauss, unif, np.full(5, 0.3, np.float32)):
    for bins in ((K, 51) if samples.size > 5 else (K,)):
      counts = np.histogram(samples, bins)[0]
      got = jax.jit(realness.histogram, static_argnums=1)(samples, bins)
      np.testing.assert_array_equal(np.rint(got * samples.size), counts)
      np.testing.assert_allclose(got, counts / samples.size, rtol=1e-6)


def test_namings_assign_the_two_shapes():
  gauss, unif = _draws(1)
  want1, want0 = np_anchors(gauss, unif, K)  # public code: A1 flat, A0 bell.
  a1, a0 = _anchors(gauss, unif, K, 'public_code')
  np.testing.assert_allclose(a1, want1, rtol=1e-6)
  np.testing.assert_allclose(a0, want0, rtol=1e-6)
  s1, s0 = _anchors(gauss, unif, K, 'supplement')
  np.testing.assert_array_equal(s1, a0)  # Supplement: A1 (real) Gaussian.
  np.testing.assert_array_equal(s0, a1)
  with pytest.raises(ValueError, match='naming must be one of'):
    realness.anchors_from_samples(gauss, unif, K, 'paper')


def test_sample_anchors_are_fresh_per_key_and_shaped():
  sample = jax.jit(realness.sample_anchors, static_argnums=(1, 2))
  a1, a0 = sample(jax.random.key(0), 21, 'supplement')
  b1, b0 = sample(jax.random.key(0), 21, 'public_code')
  c1, _ = sample(jax.random.key(1), 21, 'supplement')
  np.testing.assert_array_equal(a1, b0)  # Same draws, roles swapped.
  np.testing.assert_array_equal(a0, b1)
  assert not np.array_equal(a1, c1)  # A new key re-samples.
  for a in (a1, a0):
    assert a.shape == (21,)
    assert float(jnp.sum(a)) == pytest.approx(1.0, abs=1e-6)
  # Supplement A1 is the bell (heavy middle), A0 the flat one.
  assert a1[10] > 3 * a1[0] and a1[10] > 3 * a1[-1]
  assert float(jnp.max(a0)) < 2.5 / 21


# ---- projection -------------------------------------------------------------


def test_projection_hand_worked():
  # 3 atoms at -1, 0, 1 (delta 1), skew 0.5: targets -0.5, 0.5, 1 (clipped),
  # b = 0.5, 1.5, 2; mass splits half/half, the last stays on atom 2.
  got = realness.project(jnp.array([0.2, 0.3, 0.5]), 0.5)
  np.testing.assert_allclose(got, [0.1, 0.25, 0.65], atol=1e-7)
  # 5 atoms at -1, -.5, 0, .5, 1. Skew +1: b = 2, 3, 4, 4, 4 exactly;
  # skew -1: b = 0, 0, 0, 1, 2.
  a = jnp.array([0.1, 0.2, 0.3, 0.15, 0.25])
  np.testing.assert_allclose(
      realness.project(a, 1.0), [0, 0, 0.1, 0.2, 0.7], atol=1e-7)
  np.testing.assert_allclose(
      realness.project(a, -1.0), [0.6, 0.15, 0.25, 0, 0], atol=1e-7)


@pytest.mark.parametrize('skew', [-1.0, -0.37, 0.0, 0.21, 1.0, 3.0])
def test_projection_conserves_mass_and_matches_transcription(skew):
  rng = np.random.default_rng(2)
  anchor = rng.dirichlet(np.ones(K))
  got = np.asarray(realness.project(anchor.astype(np.float32), skew))
  assert got.sum() == pytest.approx(1.0, abs=1e-6)
  assert (got >= 0).all()
  np.testing.assert_allclose(got, np_projected(anchor, skew), atol=2e-6)


# ---- losses vs the transcription --------------------------------------------


@pytest.mark.parametrize('naming', realness.NAMINGS)
def test_losses_match_public_code(naming):
  gauss, unif = _draws(3)
  a1, a0 = _anchors(gauss, unif, K, naming)
  want1, want0 = np_anchors(gauss, unif, K)
  if naming == 'supplement':
    want1, want0 = want0, want1  # A1 real <- the Gaussian histogram.
  real, fake = _logits(4), _logits(5)
  for relativistic, kind in ((True, 'relativistic'), (False, 'ce')):
    want_d, want_g = np_losses(real.astype(np.float64),
                               fake.astype(np.float64), want1, want0,
                               relativistic)
    got_d = jax.jit(realness.realness_d_loss)(real, fake, a1, a0)
    got_g = jax.jit(realness.realness_g_loss, static_argnames='kind')(
        real, fake, a1, a0, kind=kind)
    assert float(got_d) == pytest.approx(want_d, rel=1e-5)
    assert float(got_g) == pytest.approx(want_g, rel=1e-5, abs=1e-5)


def test_supplement_g_loss_is_kl_difference():
  gauss, unif = _draws(6)
  flat, bell = np_anchors(gauss, unif, K)  # Upstream's (anchor1, anchor0).
  a1, a0 = bell, flat  # Supplement naming: A1 (real) is the Gaussian one.
  fake = _logits(7).astype(np.float64)
  p = np_softmax(fake)
  ones = np.ones((fake.shape[0], 1))

  def kl(anchor, skew):
    # KL = CE - H(skewed anchor); the skewed anchor from the transcription.
    t = np_projected(anchor, skew)
    h = -np.sum(np.where(t > 0, t * np.log(np.where(t > 0, t, 1)), 0))
    return np_categorical_loss(ones * anchor, p, skew) - h

  want = kl(a1, 1.0) - kl(a0, -1.0)
  got = realness.realness_g_loss(
      None, fake.astype(np.float32), a1.astype(np.float32),
      a0.astype(np.float32))
  assert float(got) == pytest.approx(want, rel=1e-4, abs=1e-5)


def test_cross_entropy_and_kl_differ_by_the_entropy():
  rng = np.random.default_rng(8)
  t = rng.dirichlet(np.ones(K))
  t[2] = 0.0  # 0 log 0 = 0.
  t /= t.sum()
  logits = _logits(9)
  p = np_softmax(logits.astype(np.float64))
  ce = -np.mean(np.sum(t * np.log(p), -1))
  kl = np.mean(np.sum(np.where(t > 0, t * np.log(np.where(t > 0, t, 1) / p),
                               0), -1))
  h = -np.sum(t[t > 0] * np.log(t[t > 0]))
  tj = jnp.asarray(t, jnp.float32)
  assert float(realness.cross_entropy(tj, logits)) == pytest.approx(ce, 1e-5)
  assert float(realness.kl_divergence(tj, logits)) == pytest.approx(kl, 1e-4)
  assert ce - kl == pytest.approx(h, rel=1e-9)


def test_gradients_are_finite_and_analytic():
  gauss, unif = _draws(10)
  a1, a0 = _anchors(gauss, unif, K, 'supplement')
  real = _logits(11)
  fake = _logits(12) * 30.0  # Saturated softmax: log p stays finite.
  gd = jax.grad(realness.realness_d_loss, argnums=(0, 1))(real, fake, a1, a0)
  for kind in realness.G_LOSSES:
    gg = jax.grad(realness.realness_g_loss, argnums=1)(
        real, fake, a1, a0, kind=kind)
    assert np.isfinite(gg).all()
  assert all(np.isfinite(g).all() for g in gd)
  # d CE(t, z) / dz = (softmax(z) - t) / N for a target summing to 1.
  t = np.asarray(realness.project(a0, -1.0), np.float64)
  n = fake.shape[0]
  want = (np_softmax(fake.astype(np.float64)) - t) / n
  np.testing.assert_allclose(gd[1], want, atol=1e-6)


def test_errors_name_the_problem():
  a = jnp.full((K,), 1.0 / K)
  with pytest.raises(ValueError, match=r'\(N, 7\) outcome logits'):
    realness.realness_d_loss(jnp.zeros((2, 5)), jnp.zeros((2, K)), a, a)
  with pytest.raises(ValueError, match='G loss must be one of'):
    realness.realness_g_loss(None, jnp.zeros((2, K)), a, a, kind='kl')
  with pytest.raises(ValueError, match='needs real_logits'):
    realness.realness_g_loss(None, jnp.zeros((2, K)), a, a,
                             kind='relativistic')
  with pytest.raises(ValueError, match='num_outcomes >= 2'):
    realness.sample_anchors(jax.random.key(0), 1)
