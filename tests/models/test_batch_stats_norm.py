"""SAN critic's BatchStatsNorm against PyTorch BatchNorm2d's training-mode formula, in numpy."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxsr.models import san_critic


def _torch_bn_train(x, weight, bias, eps=1e-5):
  """nn.BatchNorm2d in train mode on NHWC: per channel over (N, H, W), the
  biased variance (divide by N*H*W), then the affine weight and bias."""
  x = np.asarray(x, np.float64)
  n = x.shape[0] * x.shape[1] * x.shape[2]
  mean = x.sum(axis=(0, 1, 2)) / n
  var = ((x - mean) ** 2).sum(axis=(0, 1, 2)) / n
  return (x - mean) / np.sqrt(var + eps) * weight + bias


def test_values_match_batchnorm2d_train_mode():
  rng = np.random.default_rng(0)
  # Channels with different offsets and spreads; the last has variance
  # ~1e-5, where epsilon 1e-5 halves the output (1e-3 or 0 would not).
  spread = np.array([1.0, 3.0, 0.2, 0.01, np.sqrt(1e-5)])
  x = (rng.normal(size=(3, 4, 5, 5)) * spread
       + np.array([0.0, -2.0, 5.0, 1.0, 0.5])).astype(np.float32)
  weight = rng.normal(size=5).astype(np.float32)
  bias = rng.normal(size=5).astype(np.float32)
  norm = san_critic.BatchStatsNorm()
  params = norm.init(jax.random.key(0), jnp.asarray(x))['params']
  assert set(params) == {'scale', 'bias'}
  np.testing.assert_array_equal(params['scale'], np.ones(5))  # torch init.
  np.testing.assert_array_equal(params['bias'], np.zeros(5))
  got = norm.apply({'params': {'scale': weight, 'bias': bias}},
                   jnp.asarray(x))
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, _torch_bn_train(x, weight, bias),
                             rtol=1e-4, atol=1e-4)
  # The statistics are the batch's, not running averages: a batch and its
  # half differ (no state carried between calls).
  half = norm.apply({'params': {'scale': weight, 'bias': bias}},
                    jnp.asarray(x[:1]))
  np.testing.assert_allclose(half, _torch_bn_train(x[:1], weight, bias),
                             rtol=1e-4, atol=1e-4)
