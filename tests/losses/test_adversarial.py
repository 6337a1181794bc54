"""Tests for jaxsr.losses.adversarial against hand-computed values."""

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxsr.losses import adversarial as adv

_key = functools.partial(jax.random.key, impl='rbg')


def _softplus(x):
  return math.log1p(math.exp(x))


def test_bce_with_logits_known_values():
  # sigmoid(0) = 1/2, so both labels cost log 2.
  assert adv.bce_with_logits(jnp.zeros(3), 1.0) == pytest.approx(math.log(2))
  assert adv.bce_with_logits(jnp.zeros(3), 0.0) == pytest.approx(math.log(2))
  # BCE(x, 1) = log(1 + e^-x), BCE(x, 0) = log(1 + e^x); mean over elements.
  x = jnp.array([2.0, -1.0])
  want1 = (_softplus(-2.0) + _softplus(1.0)) / 2
  want0 = (_softplus(2.0) + _softplus(-1.0)) / 2
  assert adv.bce_with_logits(x, 1.0) == pytest.approx(want1, rel=1e-6)
  assert adv.bce_with_logits(x, 0.0) == pytest.approx(want0, rel=1e-6)
  # Soft label: t * BCE(x, 1) + (1 - t) * BCE(x, 0).
  assert adv.bce_with_logits(x, 0.3) == pytest.approx(
      0.3 * want1 + 0.7 * want0, rel=1e-6
  )


def test_bce_with_logits_is_stable_at_large_logits():
  big = jnp.array([100.0, -100.0])
  assert adv.bce_with_logits(big, 1.0) == pytest.approx(50.0, rel=1e-6)
  assert adv.bce_with_logits(jnp.array([1e4]), 1.0) == 0.0
  grad = jax.grad(lambda x: adv.bce_with_logits(x, 1.0))(big)
  assert np.all(np.isfinite(grad))
  np.testing.assert_allclose(grad, [0.0, -0.5], atol=1e-6)


def test_standard_gan_values():
  real, fake = jnp.array([[2.0]]), jnp.array([[-1.0]])
  assert adv.gan_d_loss(real, fake) == pytest.approx(
      _softplus(-2.0) + _softplus(-1.0), rel=1e-6
  )
  # Non-saturating: -log sigmoid(fake) = softplus(-fake).
  assert adv.gan_g_loss(fake) == pytest.approx(_softplus(1.0), rel=1e-6)


# Real logits 1, 3 (mean 2); fake 0, -2 (mean -1). Hence
# C_r - mean C_f = [2, 4] and C_f - mean C_r = [-2, -4].
_REAL = jnp.array([[1.0], [3.0]])
_FAKE = jnp.array([[0.0], [-2.0]])


def test_ragan_d_loss_by_hand():
  # (mean BCE([2, 4], 1) + mean BCE([-2, -4], 0)) / 2
  # = (mean sp(-2), sp(-4)) + mean (sp(-2), sp(-4))) / 2.
  want = (_softplus(-2.0) + _softplus(-4.0)) / 2
  assert adv.ragan_d_loss(_REAL, _FAKE) == pytest.approx(want, rel=1e-6)
  assert want == pytest.approx(0.0725390, rel=1e-5)


def test_ragan_g_loss_is_not_the_d_loss_and_matches_hand_value():
  # (mean BCE([2, 4], 0) + mean BCE([-2, -4], 1)) / 2 = mean(sp(2), sp(4)).
  want = (_softplus(2.0) + _softplus(4.0)) / 2
  g = adv.ragan_g_loss(_REAL, _FAKE)
  assert g == pytest.approx(want, rel=1e-6)
  assert g == pytest.approx(3.0725390, rel=1e-5)
  assert abs(g - adv.ragan_d_loss(_REAL, _FAKE)) > 1.0
  # sp(x) - sp(-x) = x gives G - (D's labels) = mean C_r - mean C_f = 3.
  assert g - adv.ragan_d_loss(
      _REAL, _FAKE, stop_mean_gradient=False
  ) == pytest.approx(3.0, rel=1e-5)


def test_flipped_ragan_labels_flip_the_g_gradient():
  """The LSRGAN reimplementation bug (prior-art §1.3): G with D's labels."""
  real = jnp.array([0.3, -1.2, 2.0, 0.5])
  fake = jnp.array([-0.7, 0.1, -2.5, 1.1])

  def g_with_d_labels(fake):
    return 0.5 * (
        adv.bce_with_logits(real - jnp.mean(fake), 1.0)
        + adv.bce_with_logits(fake - jnp.mean(real), 0.0)
    )

  good = jax.grad(lambda f: adv.ragan_g_loss(real, f))(fake)
  bad = jax.grad(g_with_d_labels)(fake)
  # The correct G loss raises every fake logit (more "real"); the bug
  # lowers every one of them.
  assert np.all(good < 0)
  np.testing.assert_array_equal(np.sign(good), -np.sign(bad))
  # Hand gradient: -(mean_i s(r_i - m_f) + s(m_r - f_k)) / (2n).
  s = jax.nn.sigmoid
  want = -(jnp.mean(s(real - fake.mean())) + s(real.mean() - fake)) / 8
  np.testing.assert_allclose(good, want, rtol=1e-5)


def test_ragan_d_gradient_matches_basicsr_split_halves():
  real = jnp.array([0.3, -1.2, 2.0])
  fake = jnp.array([-0.7, 0.1, -2.5])
  sg = jax.lax.stop_gradient

  def basicsr(r, f):
    # esrgan_model.py: two backward passes, each * 0.5, other mean detached.
    l_real = adv.bce_with_logits(r - jnp.mean(sg(f)), 1.0) * 0.5
    l_fake = adv.bce_with_logits(f - jnp.mean(sg(r)), 0.0) * 0.5
    return l_real + l_fake

  detached = functools.partial(adv.ragan_d_loss, stop_mean_gradient=True)
  ours = jax.grad(detached, argnums=(0, 1))(real, fake)
  want = jax.grad(basicsr, argnums=(0, 1))(real, fake)
  for a, b in zip(ours, want):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  # Hand: dL/dr_k = (s(r_k - m_f) - 1) / (2n), nothing through m_r.
  s = jax.nn.sigmoid
  np.testing.assert_allclose(
      ours[0], (s(real - fake.mean()) - 1) / 6, rtol=1e-5
  )
  # Without stopping (the default), D also sees the means: different.
  full = jax.grad(adv.ragan_d_loss, argnums=(0, 1))(real, fake)
  assert not np.allclose(full[0], ours[0])
  # Same value either way.
  assert detached(real, fake) == pytest.approx(adv.ragan_d_loss(real, fake))


def _np_ragan_d(r, f, mean_r, mean_f):
  """D's RaGAN loss in float64 numpy, with the two means passed in."""
  softplus = lambda x: np.logaddexp(0.0, x)
  # BCE(x, 1) = softplus(-x), BCE(x, 0) = softplus(x).
  return 0.5 * (np.mean(softplus(-(r - mean_f)))
                + np.mean(softplus(f - mean_r)))


def _finite_difference(fn, x, h=1e-6):
  grad = np.zeros_like(x)
  for k in range(x.size):
    e = np.zeros_like(x)
    e.flat[k] = h
    grad.flat[k] = (fn(x + e) - fn(x - e)) / (2 * h)
  return grad


_R = np.array([0.3, -1.2, 2.0, 0.5])
_F = np.array([-0.7, 0.1, -2.5])


def _np_ragan_d_grads(detach_means: bool):
  """(dL/dr, dL/df) by hand, checked here against central differences.

  With a = mean r, b = mean f, s = sigmoid, n = len(r), m = len(f):
    detached:  dL/dr_i = -s(b - r_i) / 2n,      dL/df_k = s(f_k - a) / 2m
    through:   dL/dr_i = -(s(b - r_i) + mean_k s(f_k - a)) / 2n
               dL/df_k = (s(f_k - a) + mean_i s(b - r_i)) / 2m
  Detaching = differentiating with the means held at their values.
  """
  s = lambda x: 1.0 / (1.0 + np.exp(-x))
  a, b, n, m = _R.mean(), _F.mean(), _R.size, _F.size
  if detach_means:
    by_hand = -s(b - _R) / (2 * n), s(_F - a) / (2 * m)
    fd = (_finite_difference(lambda r: _np_ragan_d(r, _F, a, b), _R),
          _finite_difference(lambda f: _np_ragan_d(_R, f, a, b), _F))
  else:
    by_hand = (-(s(b - _R) + s(_F - a).mean()) / (2 * n),
               (s(_F - a) + s(b - _R).mean()) / (2 * m))
    fd = (_finite_difference(
        lambda r: _np_ragan_d(r, _F, r.mean(), b), _R),
          _finite_difference(
              lambda f: _np_ragan_d(_R, f, a, f.mean()), _F))
  for got, want in zip(by_hand, fd):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
  return by_hand


@pytest.mark.parametrize('detach_means', [False, True])
def test_ragan_d_gradients_match_numpy_both_settings(detach_means):
  want = _np_ragan_d_grads(detach_means)
  real, fake = jnp.asarray(_R, jnp.float32), jnp.asarray(_F, jnp.float32)
  loss = functools.partial(adv.d_loss, 'ragan',
                           ragan_detach_means=detach_means)
  got = jax.grad(loss, argnums=(0, 1))(real, fake)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)
  # The other setting's gradient differs: the test tells them apart.
  other = _np_ragan_d_grads(not detach_means)
  assert not np.allclose(got[0], other[0], rtol=1e-3)
  assert not np.allclose(got[1], other[1], rtol=1e-3)


@pytest.mark.parametrize('name', ['esrgan', 'esrgan_sn', 'lsrgan', 'cesrgan',
                                  'clsrgan'])
def test_lsrgan_family_d_step_follows_the_papers_code(name):
  """The papers' code (old BasicSR SRRaGAN_model.py) differentiates D's loss
  through both means; config.loss.ragan_detach_means=True gives the
  current BasicSR. GanLoss.d_term is what the jitted D step calls."""
  from jaxsr.methods import lsrgan  # pylint: disable=g-import-not-at-top
  from tests import helpers  # pylint: disable=g-import-not-at-top
  config = helpers.load_experiment(name, None)
  real, fake = jnp.asarray(_R, jnp.float32), jnp.asarray(_F, jnp.float32)
  for detach in (None, True):
    loss_config = config.loss.to_dict()
    if detach is not None:
      loss_config['ragan_detach_means'] = detach
    loss = lsrgan.GanLoss.from_config(ml_collections.ConfigDict(loss_config))
    got = jax.grad(loss.d_term, argnums=(0, 1))(real, fake)
    want = _np_ragan_d_grads(bool(detach))
    for g, w in zip(got, want):
      np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)


def test_hinge_and_wgan_by_hand():
  real = jnp.array([0.5, 2.0])
  fake = jnp.array([-2.0, 0.5])
  # relu(1 - [0.5, 2]) = [0.5, 0] -> 0.25; relu(1 + [-2, 0.5]) = [0, 1.5]
  # -> 0.75.
  assert adv.hinge_d_loss(real, fake) == pytest.approx(1.0)
  assert adv.hinge_g_loss(fake) == pytest.approx(0.75)
  assert adv.wgan_d_loss(real, fake) == pytest.approx(-0.75 - 1.25)
  assert adv.wgan_g_loss(fake) == pytest.approx(0.75)


def test_gradient_penalty_of_a_linear_critic():
  w = jax.random.normal(_key(0), (4, 4, 3)) * 0.3

  def critic(x):
    return jnp.sum(x * w, axis=(1, 2, 3))[:, None]

  real = jax.random.uniform(_key(1), (5, 4, 4, 3))
  fake = jax.random.uniform(_key(2), (5, 4, 4, 3))
  gp = adv.gradient_penalty(critic, real, fake, _key(3), weight=10.0)
  want = 10.0 * (float(jnp.linalg.norm(w)) - 1.0) ** 2
  assert gp == pytest.approx(want, rel=1e-5)


def test_gradient_penalty_interpolates_per_sample():
  # critic = ||x||^2 / 2 has gradient x_hat itself, which depends on alpha.
  def critic(x):
    return 0.5 * jnp.sum(jnp.square(x), axis=(1, 2, 3))

  real = jax.random.uniform(_key(1), (6, 2, 2, 3))
  fake = -jax.random.uniform(_key(2), (6, 2, 2, 3))
  key = _key(3)
  gp = adv.gradient_penalty(critic, real, fake, key, weight=2.0)
  alpha = jax.random.uniform(key, (6, 1, 1, 1))
  assert len(np.unique(np.asarray(alpha))) == 6
  x_hat = alpha * real + (1 - alpha) * fake
  norms = np.linalg.norm(np.asarray(x_hat).reshape(6, -1), axis=1)
  assert gp == pytest.approx(2.0 * np.mean((norms - 1.0) ** 2), rel=1e-5)
  # Differentiable w.r.t. the critic's parameters (here a scale).
  grad = jax.grad(
      lambda c: adv.gradient_penalty(
          lambda x: c * critic(x), real, fake, key, 1.0
      )
  )(1.0)
  assert np.isfinite(grad) and grad != 0


def test_dispatch_by_config_string():
  real = jnp.array([0.5, 2.0])
  fake = jnp.array([-2.0, 0.5])
  pairs = {
      'vanilla': (adv.gan_d_loss(real, fake), adv.gan_g_loss(fake)),
      'ragan': (adv.ragan_d_loss(real, fake), adv.ragan_g_loss(real, fake)),
      'hinge': (adv.hinge_d_loss(real, fake), adv.hinge_g_loss(fake)),
      'wgan': (adv.wgan_d_loss(real, fake), adv.wgan_g_loss(fake)),
  }
  assert set(pairs) == {t.value for t in adv.GanType}
  for kind, (d, g) in pairs.items():
    assert adv.d_loss(kind, real, fake) == d
    assert adv.g_loss(kind, real, fake) == g
    assert adv.d_loss(adv.GanType(kind), real, fake) == d
  assert adv.g_loss('hinge', None, fake) == pairs['hinge'][1]
  with pytest.raises(ValueError, match="unknown GAN loss 'lsgan'"):
    adv.d_loss('lsgan', real, fake)
  with pytest.raises(ValueError, match='needs real_logits'):
    adv.g_loss('ragan', None, fake)


def test_pixel_gradient_penalty_against_finite_differences():
  """SinGAN's GP: one a for the batch, the gradient of sum(critic) per
  pixel, its norm over channels, (norm - 1)^2 averaged, times lambda."""
  rng = np.random.default_rng(0)
  w = rng.standard_normal((3, 3, 3, 2)).astype(np.float32)

  def critic(x):  # A nonlinear patch critic: conv, tanh, channel sum.
    y = jax.lax.conv_general_dilated(x, w, (1, 1), 'VALID',
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return jnp.tanh(y).sum(-1)

  real = rng.standard_normal((2, 6, 5, 3)).astype(np.float32)
  fake = rng.standard_normal((2, 6, 5, 3)).astype(np.float32)
  key = jax.random.key(3)
  got = adv.pixel_gradient_penalty(critic, real, fake, key, weight=0.1)
  a = float(jax.random.uniform(key, ()))
  x_hat = (a * real + (1 - a) * fake).astype(np.float64)
  f = lambda x: float(np.sum(np.asarray(critic(jnp.asarray(x, jnp.float32)),
                                        np.float64)))
  grad = np.zeros_like(x_hat)
  h = 1e-2
  for idx in np.ndindex(x_hat.shape):
    e = np.zeros_like(x_hat)
    e[idx] = h
    grad[idx] = (f(x_hat + e) - f(x_hat - e)) / (2 * h)
  norms = np.sqrt((grad**2).sum(-1))  # Over channels, per pixel.
  want = 0.1 * np.mean((norms - 1)**2)
  np.testing.assert_allclose(got, want, rtol=2e-3)
  # Not the per-sample norm of the original WGAN-GP.
  per_sample = np.sqrt((grad**2).reshape(2, -1).sum(-1))
  assert abs(0.1 * np.mean((per_sample - 1)**2) - want) > 0.1
  with pytest.raises(ValueError, match='one shape'):
    adv.pixel_gradient_penalty(critic, real, fake[:1], key)
