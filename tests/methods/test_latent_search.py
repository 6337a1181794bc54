"""The latent search of face SR (paper 001) on a toy prior: loss terms against numpy, gradients, best tracking, restarts, batching."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.data import imresize
from jaxsr.methods import latent_search
from jaxsr.models import gan_prior

RES = 8
DIM = 6


def _toy_prior(rows: int = 1) -> gan_prior.GanPrior:
  """G(z) = tanh(z W) as an 8x8 RGB image; D: two tanh dense blocks."""
  k = jax.random.split(jax.random.key(0), 3)
  g = {'w': 0.5 * jax.random.normal(k[0], (DIM, RES * RES * 3))}
  d = {'d1': 0.1 * jax.random.normal(k[1], (RES * RES * 3, 16)),
       'd2': 0.3 * jax.random.normal(k[2], (16, 8))}

  def generate(g_params, g_buffers, latent):
    del g_buffers
    z = jnp.mean(latent['z'], axis=0)
    return jnp.tanh(z @ g_params['w']).reshape(RES, RES, 3)

  def discriminate(d_params, image):
    f1 = jnp.tanh(image.reshape(-1) @ d_params['d1'])
    f2 = jnp.tanh(f1 @ d_params['d2'])
    return jnp.sum(f2), (f1, f2)

  return gan_prior.GanPrior(
      name='toy', resolution=RES, g_params=g, g_buffers={}, d_params=d,
      sample_latent=lambda key: {'z': jax.random.normal(key, (rows, DIM))},
      generate=generate, discriminate=discriminate,
      w_rows=(lambda b, latent: latent['z']) if rows > 1 else None)


def _cfg(**kw):
  return latent_search.SearchConfig(**{'steps': 12, 'lr_z': 0.1, **kw})


def _np_down(x, size):
  return imresize.imresize(np.asarray(x, np.float64), output_shape=size)


def test_loss_terms_match_a_numpy_computation():
  prior = _toy_prior()
  cfg = _cfg(blocks=2, clamp_l2=False)
  latent = prior.sample_latent(jax.random.key(3))
  lr = np.random.default_rng(0).uniform(0, 1, (2, 2, 3)).astype(np.float32)
  target = latent_search.d_features(prior, prior.d_params, jnp.asarray(lr), 2)
  total, (terms, sr) = latent_search.loss_terms(
      prior.g_params, latent, jnp.asarray(lr), target, prior=prior,
      g_buffers={}, d_params=prior.d_params, hr_size=(RES, RES), cfg=cfg)
  # numpy: the image, its MATLAB bicubic x1/4, the upscaled D inputs.
  z = np.asarray(latent['z'], np.float64).mean(0)
  image = (np.tanh(z @ np.asarray(prior.g_params['w'], np.float64))
           .reshape(RES, RES, 3) + 1) / 2
  small = _np_down(image, (2, 2))
  l2 = np.mean((small - lr) ** 2)

  def feats(x):
    up = _np_down(x, (RES, RES)) * 2 - 1
    f1 = np.tanh(up.reshape(-1) @ np.asarray(prior.d_params['d1'], np.float64))
    return f1, np.tanh(f1 @ np.asarray(prior.d_params['d2'], np.float64))

  semantic = sum(np.mean(np.abs(a - b)) for a, b in zip(feats(small), feats(lr)))
  np.testing.assert_allclose(sr, image, atol=1e-5)
  np.testing.assert_allclose(terms['l2'], l2, rtol=1e-4)
  np.testing.assert_allclose(terms['semantic'], semantic, rtol=1e-4)
  np.testing.assert_allclose(total, 100 * l2 + 0.5 * semantic, rtol=1e-4)
  assert float(terms['geocross']) == 0.0  # One row: no pairs.


def test_l2_is_clamped_at_eps_as_pulse():
  prior = _toy_prior()
  latent = prior.sample_latent(jax.random.key(1))
  image = (prior.generate(prior.g_params, {}, latent) + 1) / 2
  lr = latent_search.down(image, (2, 2))  # Exactly reachable: L2 = 0.
  for clamp, expected in ((True, 100 * 2e-3), (False, 0.0)):
    total, (terms, _) = latent_search.loss_terms(
        prior.g_params, latent, lr, (), prior=prior, g_buffers={},
        d_params=prior.d_params, hr_size=(RES, RES),
        cfg=_cfg(lambda_s=0.0, clamp_l2=clamp))
    assert float(terms['l2']) < 1e-10
    np.testing.assert_allclose(total, expected, atol=1e-8)


@pytest.mark.parametrize('lambda_s', [0.0, 0.5])
def test_gradients_reach_z_and_g(lambda_s):
  prior = _toy_prior()
  cfg = _cfg(lambda_s=lambda_s, clamp_l2=False)
  latent = prior.sample_latent(jax.random.key(2))
  lr = jnp.full((2, 2, 3), 0.3)
  target = latent_search.d_features(prior, prior.d_params, lr, 2) if lambda_s else ()

  def loss(g, z):
    return latent_search.loss_terms(
        g, z, lr, target, prior=prior, g_buffers={}, d_params=prior.d_params,
        hr_size=(RES, RES), cfg=dataclasses.replace(cfg, blocks=2))[0]

  g_grad, z_grad = jax.grad(loss, argnums=(0, 1))(prior.g_params, latent)
  assert float(jnp.linalg.norm(g_grad['w'])) > 0
  assert float(jnp.linalg.norm(z_grad['z'])) > 0
  # A finite difference along z agrees with the gradient (float32).
  v = jax.random.normal(jax.random.key(9), latent['z'].shape)
  h = 1e-2
  fd = (loss(prior.g_params, {'z': latent['z'] + h * v})
        - loss(prior.g_params, {'z': latent['z'] - h * v})) / (2 * h)
  np.testing.assert_allclose(fd, jnp.sum(z_grad['z'] * v), rtol=2e-2)


def _search(prior, lr, keys, cfg, scale=4):
  return jax.jit(lambda k, x: latent_search.search_batch(
      k, x, prior.g_params, prior=prior, g_buffers={},
      d_params=prior.d_params, scale=scale, cfg=cfg))(keys, lr)


_SHARED = _cfg(restarts=3, blocks=2, lr_g=1e-2)


@pytest.fixture(scope='module')
def searched():
  """One compiled search (3 restarts, G fine-tuned) of two faces."""
  prior = _toy_prior()
  lr = jnp.asarray(np.random.default_rng(1).uniform(0.2, 0.8, (2, 2, 2, 3)),
                   jnp.float32)
  keys = jax.random.split(jax.random.key(0), 2)
  return prior, lr, keys, jax.device_get(_search(prior, lr, keys, _SHARED))


def test_best_iterate_is_tracked_and_returned(searched):
  _, lr, _, out = searched
  i = int(out['restart'][0])
  assert out['curves']['total'].shape == (2, _SHARED.steps)
  total = out['curves']['total'][0]  # The winning restart's curve.
  j = int(np.argmin(total))
  assert int(out['best_step'][0]) == j
  np.testing.assert_allclose(out['best_loss'][0], total[j], rtol=1e-6)
  np.testing.assert_allclose(out['lr_l2'][0], out['curves']['l2'][0][j],
                             rtol=1e-6)
  np.testing.assert_array_equal(out['result'], out['best'])
  assert total.min() < total[0]  # The search lowers the loss.
  # lr_l2 is the L2 of the returned image downscaled (independently).
  small = _np_down(out['result'][0], (2, 2))
  np.testing.assert_allclose(out['lr_l2'][0],
                             np.mean((small - np.asarray(lr[0])) ** 2),
                             rtol=1e-3)
  assert bool(out['success'][0]) == (out['lr_l2'][0] <= _SHARED.eps)
  assert 0 <= i < 3


def test_restarts_keep_the_lowest_loss(searched):
  out = searched[3]
  losses = out['restart_losses'][0]
  assert losses.shape == (3,) and len(set(losses.tolist())) == 3
  assert int(out['restart'][0]) == int(np.argmin(losses))
  np.testing.assert_allclose(out['best_loss'][0], losses.min())


def test_g_is_fine_tuned_only_when_asked(searched):
  prior, lr, keys, tuned = searched
  frozen = _search(prior, lr[:1], keys[:1],
                   dataclasses.replace(_SHARED, finetune_g=False, restarts=1))
  assert float(tuned['g_change'][0]) > 0
  assert float(frozen['g_change'][0]) == 0.0


def test_a_face_does_not_depend_on_its_batch(searched):
  prior, lr, keys, both = searched
  alone = _search(prior, lr[1:], keys[1:], _SHARED)
  np.testing.assert_allclose(both['result'][1], alone['result'][0], atol=1e-5)


@pytest.mark.parametrize('per_call', [1, 5])
def test_the_stepped_search_is_the_same_search(searched, per_call):
  # 12 iterations in pieces of 1 (the CPU's) or 5, 5, 2 (a shorter last
  # piece) reproduce the one-program search: every output, every curve.
  prior, lr, keys, whole = searched
  run = latent_search.stepped_search(prior=prior, scale=4, cfg=_SHARED,
                                     steps_per_call=per_call)
  got = jax.device_get(run(keys, lr, prior.g_params, {}, prior.d_params))
  assert jax.tree.structure(got) == jax.tree.structure(whole)
  for path, want in jax.tree_util.tree_leaves_with_path(whole):
    have = functools.reduce(lambda t, k: t[k.key], path, got)
    np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-6,
                               err_msg=jax.tree_util.keystr(path))


def test_non_square_lr_gives_the_centre_window():
  prior = _toy_prior()
  lr = jnp.full((1, 1, 2, 3), 0.5)  # 1x2 LR, x4 -> 4x8 of the 8x8 face.
  out = _search(prior, lr, jax.random.split(jax.random.key(0), 1),
                _cfg(blocks=2))
  assert out['result'].shape == (1, 4, 8, 3)


def test_geocross_enters_with_its_scale():
  prior = _toy_prior(rows=3)
  latent = prior.sample_latent(jax.random.key(0))
  lr = jnp.full((2, 2, 3), 0.5)
  kw = dict(prior=prior, g_buffers={}, d_params=prior.d_params,
            hr_size=(RES, RES))
  base = _cfg(lambda_s=0.0, lambda_g=0.0)
  with_g = _cfg(lambda_s=0.0, lambda_g=500.0, geocross_scale=1e-4)
  t0, (terms, _) = latent_search.loss_terms(prior.g_params, latent, lr, (),
                                            cfg=base, **kw)
  t1, _ = latent_search.loss_terms(prior.g_params, latent, lr, (), cfg=with_g,
                                   **kw)
  assert float(terms['geocross']) > 0
  np.testing.assert_allclose(t1 - t0, 0.05 * terms['geocross'], rtol=1e-5)


def test_bad_search_values_are_refused():
  with pytest.raises(ValueError, match='search.result'):
    latent_search.SearchConfig(result='mean')
  with pytest.raises(ValueError, match='d_input'):
    latent_search.SearchConfig(d_input='direct')
