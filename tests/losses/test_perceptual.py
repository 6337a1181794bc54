"""Tests for jaxsr.losses.perceptual against BasicSR's PerceptualLoss math."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.losses import perceptual


def _feats(seed):
  rng = np.random.default_rng(seed)
  return {
      'conv3_4': jnp.asarray(rng.normal(size=(2, 8, 8, 4)), jnp.float32),
      'conv5_4': jnp.asarray(rng.normal(size=(2, 2, 2, 6)), jnp.float32),
  }


def test_hand_values_for_each_criterion():
  sr = {'a': jnp.array([[1.0, -2.0], [0.0, 4.0]])}
  hr = {'a': jnp.array([[0.0, 0.0], [0.0, 2.0]])}
  # Differences 1, -2, 0, 2.
  weights = {'a': 0.5}
  assert perceptual.perceptual_loss(sr, hr, weights) == pytest.approx(
      0.5 * 5 / 4
  )
  assert perceptual.perceptual_loss(sr, hr, weights, 'l2') == pytest.approx(
      0.5 * 9 / 4
  )
  assert perceptual.perceptual_loss(sr, hr, weights, 'fro') == pytest.approx(
      0.5 * 3.0
  )


def test_weighted_sum_over_the_selected_layers_only():
  sr, hr = _feats(0), _feats(1)
  got = perceptual.perceptual_loss(sr, hr, {'conv5_4': 1.0})
  want = np.mean(np.abs(np.asarray(sr['conv5_4']) - np.asarray(hr['conv5_4'])))
  assert got == pytest.approx(want, rel=1e-6)
  both = perceptual.perceptual_loss(sr, hr, {'conv3_4': 0.2, 'conv5_4': 1.0})
  want3 = np.mean(np.abs(np.asarray(sr['conv3_4']) - np.asarray(hr['conv3_4'])))
  assert both == pytest.approx(0.2 * want3 + want, rel=1e-6)
  # Fro is over the whole batch tensor, as torch.norm(x - gt, p='fro').
  fro = perceptual.perceptual_loss(sr, hr, {'conv5_4': 1.0}, 'fro')
  diff = np.asarray(sr['conv5_4']) - np.asarray(hr['conv5_4'])
  assert fro == pytest.approx(np.sqrt(np.sum(diff**2)), rel=1e-6)


def test_gradient_flows_to_sr_features():
  sr, hr = _feats(0), _feats(1)
  grad = jax.grad(
      lambda s: perceptual.perceptual_loss(s, hr, {'conv5_4': 2.0})
  )(sr)
  want = 2.0 * np.sign(sr['conv5_4'] - hr['conv5_4']) / sr['conv5_4'].size
  np.testing.assert_allclose(grad['conv5_4'], want, rtol=1e-6)
  np.testing.assert_array_equal(grad['conv3_4'], 0.0)


def test_errors_name_the_problem():
  sr, hr = _feats(0), _feats(1)
  with pytest.raises(ValueError, match="layer 'conv4_4' is not in the sr"):
    perceptual.perceptual_loss(sr, hr, {'conv4_4': 1.0})
  with pytest.raises(ValueError, match='criterion must be one of'):
    perceptual.perceptual_loss(sr, hr, {'conv5_4': 1.0}, 'l3')
  with pytest.raises(ValueError, match='has sr features'):
    perceptual.perceptual_loss(sr, {'conv5_4': sr['conv3_4']}, {'conv5_4': 1})


# AMGAN (paper 003): VGG19 relu1_1 ... relu5_1 with w_l = 1e3 / C_l^2.
_RELU_X_1 = {'relu1_1': 64, 'relu2_1': 128, 'relu3_1': 256, 'relu4_1': 512,
             'relu5_1': 512}  # VGG19's published block widths.


def test_amgan_channel_weights():
  w = perceptual.channel_weights(_RELU_X_1)
  assert w == pytest.approx({'relu1_1': 1e3 / 4096, 'relu2_1': 1e3 / 16384,
                             'relu3_1': 1e3 / 65536, 'relu4_1': 1e3 / 262144,
                             'relu5_1': 1e3 / 262144})
  assert perceptual.channel_weights({'a': 10}, 5.0) == {'a': 0.05}
  with pytest.raises(ValueError, match="layer 'a' needs a positive channel"):
    perceptual.channel_weights({'a': 0})
  # The real VGG19 emits these layers with these widths.
  from jaxsr.models import vgg  # pylint: disable=g-import-not-at-top
  model = vgg.VGG(depth=19, layers=tuple(_RELU_X_1))
  x = jnp.zeros((1, 16, 16, 3))
  shapes = jax.eval_shape(
      lambda k: model.apply(model.init(k, x), x), jax.random.key(0))
  assert {k: v.shape[-1] for k, v in shapes.items()} == _RELU_X_1


def test_amgan_vgg_loss_by_hand():
  rng = np.random.default_rng(3)
  chans = {'relu1_1': 2, 'relu2_1': 4}
  sr = {k: rng.normal(size=(2, 3, 3, c)) for k, c in chans.items()}
  hr = {k: rng.normal(size=(2, 3, 3, c)) for k, c in chans.items()}
  # sum_l (1e3 / C_l^2) * ||hr_l - sr_l||_1 / N_l, N_l = elements of hr_l.
  want = sum(1e3 / c**2 * np.abs(hr[k] - sr[k]).sum() / hr[k].size
             for k, c in chans.items())
  got = perceptual.perceptual_loss(
      {k: jnp.asarray(v, jnp.float32) for k, v in sr.items()},
      {k: jnp.asarray(v, jnp.float32) for k, v in hr.items()},
      perceptual.channel_weights(chans))
  assert float(got) == pytest.approx(want, rel=1e-5)
