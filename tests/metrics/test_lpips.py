"""Tests for jaxsr.metrics.lpips against a numpy transcription of lpips."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.metrics import lpips
from jaxsr.pretrained import lpips as lpips_import
from jaxsr.pretrained import torch_writer
from tests.models import test_alexnet
from tests.models import test_vgg
from tests.pretrained import test_lpips_import
from tests.pretrained import test_vgg_import


def numpy_vgg16_taps(weights, x_nchw):
  """torchvision VGG16 features' LPIPS taps relu1_2 ... relu5_3, float64.

  weights {conv name: (OIHW, bias)}; x is what `features` receives.
  """
  x = np.asarray(x_nchw, np.float64)
  taps = []
  for block, convs in enumerate((2, 2, 3, 3, 3), start=1):
    if block > 1:  # MaxPool2d(2, 2) of the previous block, flooring.
      n, c, h, w = x.shape
      x = x[:, :, : h // 2 * 2, : w // 2 * 2]
      x = x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))
    for k in range(1, convs + 1):
      w, b = weights[f'conv{block}_{k}']
      x = np.maximum(test_alexnet.conv_nchw(x, w, b, 1, 1), 0.0)
    taps.append(x)  # relu{block}_{convs}
  return taps


def _numpy_taps(net, weights, z):
  """Backbone taps (NCHW float64) of the ScalingLayer output z (NHWC)."""
  z = z.transpose(0, 3, 1, 2)
  if net == 'alex':
    out = test_alexnet.numpy_alexnet(weights, z)
    return [out[f'relu{k}'] for k in range(1, 6)]
  return numpy_vgg16_taps(weights, z)


def numpy_lpips(net, weights, lin, x, y):
  """lpips.LPIPS(net)(x, y, normalize=True) in float64 -> (N, 5) per layer.

  weights: the backbone's torch weights; lin: [(C,) weights of lin0..4];
  x, y: NHWC in [0, 1].
  """
  shift = np.array([-0.030, -0.088, -0.188])
  scale = np.array([0.458, 0.448, 0.450])
  taps = []
  for img in (x, y):
    img = 2.0 * np.asarray(img, np.float64) - 1.0  # normalize=True
    taps.append(_numpy_taps(net, weights, (img - shift) / scale))
  per_layer = []
  for f0, f1, w in zip(*taps, lin):
    # normalize_tensor: divide by the channel L2 norm plus 1e-10.
    n0 = f0 / (np.sqrt(np.sum(f0**2, axis=1, keepdims=True)) + 1e-10)
    n1 = f1 / (np.sqrt(np.sum(f1**2, axis=1, keepdims=True)) + 1e-10)
    conv = np.einsum('nchw,c->nhw', (n0 - n1) ** 2, np.float64(w))
    per_layer.append(conv.mean(axis=(1, 2)))  # spatial_average
  return np.stack(per_layer, axis=1)


@pytest.fixture(name='setup', params=['alex', 'vgg'], scope='module')
def _setup(request, tmp_path_factory):
  """Synthetic official-format files -> (net, weights, lin, params)."""
  net = request.param
  tmp = tmp_path_factory.mktemp(net)
  rng = np.random.default_rng({'alex': 10, 'vgg': 11}[net])
  if net == 'alex':
    weights = test_alexnet.random_torch_weights(rng)
    sd = test_lpips_import.torchvision_alexnet_state_dict(weights)
  else:
    weights = test_vgg.random_torch_weights(16, rng)
    # pylint: disable-next=protected-access
    sd = test_vgg_import._torchvision_state_dict(weights, 16)
  torch_writer.save_torch_file(tmp / 'backbone.pth', sd)
  lin_sd = test_lpips_import.official_lin_state_dict(net, rng)
  torch_writer.save_torch_file(tmp / f'{net}.pth', lin_sd, legacy=True)
  params = lpips_import.load_lpips(
      net, str(tmp / f'{net}.pth'), str(tmp / 'backbone.pth'))
  lin = [lin_sd[f'lin{k}.model.1.weight'].ravel() for k in range(5)]
  return net, weights, lin, params


def _images(net, seed=0):
  """Two pairs of images in [0, 1], one shape per net (one compile each)."""
  # Alex: 47x39 reaches relu5 at 3x2 and floors both pools. VGG: 24x20
  # reaches relu5_3 at 1x1 and floors the odd pools (5 -> 2, 3 -> 1).
  shape = (2, 47, 39, 3) if net == 'alex' else (2, 24, 20, 3)
  rng = np.random.default_rng(seed)
  return (rng.uniform(size=shape).astype(np.float32),
          rng.uniform(size=shape).astype(np.float32))


def _total(x, y, params, net):
  return jnp.sum(lpips.lpips(x, y, params, net))


# Compiled once per net and shape, shared by the tests (eager is slower).
_per_layer = jax.jit(lpips.lpips_per_layer, static_argnums=3)
_lpips = jax.jit(lpips.lpips, static_argnums=3)
_grad = jax.jit(jax.grad(_total), static_argnums=3)


def test_matches_numpy_transcription(setup):
  net, weights, lin, params = setup
  x, y = _images(net)
  # The second pair close to the first: small distances are the hard case.
  y[1] = np.clip(x[1] + 0.02 * (y[1] - 0.5), 0, 1)
  want = numpy_lpips(net, weights, lin, x, y)
  got = _per_layer(jnp.asarray(x), jnp.asarray(y), params, net)
  assert got.shape == (2, 5) and got.dtype == jnp.float32
  assert (want > 0).all()
  np.testing.assert_allclose(got, want, rtol=2e-4)
  np.testing.assert_allclose(_lpips(x, y, params, net), want.sum(axis=1),
                             rtol=2e-4)


def test_identity_symmetry_and_batch_independence(setup):
  net, _, _, params = setup
  x, y = _images(net, seed=1)
  d = np.asarray(_lpips(x, y, params, net))
  assert d.shape == (2,) and (d > 0).all()
  np.testing.assert_allclose(_lpips(x, x, params, net), 0.0, atol=1e-7)
  np.testing.assert_allclose(_lpips(y, x, params, net), d, rtol=1e-6)
  # Changing the second pair leaves the first distance alone.
  x2, y2 = x.copy(), y.copy()
  x2[1], y2[1] = y[1], 1.0 - x[1]
  d2 = np.asarray(_lpips(x2, y2, params, net))
  np.testing.assert_allclose(d2[0], d[0], rtol=1e-6)
  assert abs(d2[1] - d[1]) > 1e-3 * d[1]


def test_gradient_matches_finite_differences(setup):
  net, weights, lin, params = setup
  x, y = _images(net, seed=2)
  grad = np.asarray(_grad(x, y, params, net), np.float64)
  assert np.isfinite(grad).all() and np.abs(grad).max() > 0
  # Central difference of the float64 transcription along a random
  # direction; a small step keeps every ReLU and max-pool on its side.
  v = np.random.default_rng(3).standard_normal(x.shape)
  h = 1e-7
  fd = (numpy_lpips(net, weights, lin, x + h * v, y).sum()
        - numpy_lpips(net, weights, lin, x - h * v, y).sum()) / (2 * h)
  np.testing.assert_allclose(np.sum(grad * v), fd, rtol=1e-4)


def test_normalize_channels_value_and_jacobian():
  rng = np.random.default_rng(7)
  f = rng.standard_normal((2, 3, 5)).astype(np.float32)
  f[1, 2] = 0.0  # A pixel whose channels are all zero.
  c = rng.standard_normal(5)
  eps = 1e-10
  norm = np.sqrt(np.sum(np.float64(f) ** 2, axis=-1, keepdims=True))
  np.testing.assert_allclose(lpips.normalize_channels(f), f / (norm + eps),
                             rtol=1e-6)
  grad = np.asarray(jax.grad(
      lambda g: jnp.sum(lpips.normalize_channels(g) * c))(f), np.float64)
  # d/df f / (n + eps) = I / (n + eps) - f f^T / (n (n + eps)^2) for n > 0,
  # and I / eps at f = 0 (f / eps plus a term of order n^2).
  for i, j in [(0, 0), (0, 2), (1, 1)]:
    v, n = np.float64(f[i, j]), norm[i, j, 0]
    want = c / (n + eps) - v * (v @ c) / (n * (n + eps) ** 2)
    np.testing.assert_allclose(grad[i, j], want, rtol=1e-5)
  np.testing.assert_allclose(grad[1, 2], c / eps, rtol=1e-6)


def test_gradient_finite_where_a_tap_is_all_zero():
  rng = np.random.default_rng(4)
  weights = test_alexnet.random_torch_weights(rng)
  # A very negative conv5 bias makes relu5 zero everywhere, where the
  # channel norm's sqrt has an infinite derivative.
  weights[10] = (weights[10][0], np.full(256, -1e3, np.float32))
  params = {'net': test_alexnet.to_flax(weights),
            'lin': lpips_import.random_lin('alex')}
  x, y = _images('alex', seed=5)
  per_layer = np.asarray(_per_layer(x, y, params, 'alex'))
  assert (per_layer[:, 4] == 0).all() and (per_layer[:, :4] > 0).all()
  grad = np.asarray(_grad(x, y, params, 'alex'))
  assert np.isfinite(grad).all() and np.abs(grad).max() > 0


def test_real_lin_weights_with_random_backbone(shared_data):
  params = lpips_import.load_lpips(
      'alex', str(shared_data / 'lpips' / 'alex.pth'), 'random')
  x, y = _images('alex', seed=6)
  d = np.asarray(_lpips(x, y, params, 'alex'))
  assert np.isfinite(d).all() and (d > 0).all()
  np.testing.assert_allclose(_lpips(x, x, params, 'alex'), 0, atol=1e-7)


def test_bad_inputs_raise():
  params = {'net': {}, 'lin': lpips_import.random_lin('alex')}
  x = jnp.zeros((1, 31, 31, 3))
  with pytest.raises(ValueError, match='one shape'):
    lpips.lpips(x, jnp.zeros((1, 31, 32, 3)), params)
  with pytest.raises(ValueError, match=r'\(N, H, W, 3\)'):
    lpips.lpips(x[..., :1], x[..., :1], params)
  with pytest.raises(ValueError, match='at least 31x31 pixels, got 30x31'):
    lpips.lpips(x[:, 1:], x[:, 1:], params)
  with pytest.raises(ValueError, match='at least 16x16 pixels, got 15x31'):
    lpips.lpips(x[:, 16:], x[:, 16:], params, 'vgg')
  with pytest.raises(ValueError, match="one of \\('alex', 'vgg'\\)"):
    lpips.lpips(x, x, params, 'squeeze')
  with pytest.raises(ValueError, match=r'lin1 must have shape \(192,\), '
                     r'found \(128,\)'):
    lpips.lpips(x, x, {'net': {}, 'lin': lpips_import.random_lin('vgg')})
  with pytest.raises(ValueError, match=r"needs linear weights \('lin0'"):
    lpips.lpips(x, x, {'net': {}, 'lin': {'lin0': jnp.zeros(64)}})
  with pytest.raises(ValueError, match="'net'"):
    lpips.lpips(x, x, params['lin'])
