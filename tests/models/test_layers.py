"""Tests for jaxsr.models.layers: circular conv, SAN / spectral layers."""

import functools
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.models import layers
from jaxsr.normalization import san
from tests.normalization.test_san import dense_circular_operator

_key = functools.partial(jax.random.key, impl='rbg')


def _numpy_circular_conv(x, kernel, bias, strides, pads):
  """Direct loops over output pixels with modular indices (NHWC, HWIO)."""
  n, h, w, _ = x.shape
  kh, kw, _, cout = kernel.shape
  (t, b), (l, r) = pads
  ho = (h + t + b - kh) // strides[0] + 1
  wo = (w + l + r - kw) // strides[1] + 1
  y = np.zeros((n, ho, wo, cout))
  for p in range(ho):
    for q in range(wo):
      rows = (strides[0] * p + np.arange(kh) - t) % h
      cols = (strides[1] * q + np.arange(kw) - l) % w
      patch = x[:, rows][:, :, cols]  # (n, kh, kw, cin)
      y[:, p, q] = np.einsum('nabi,abio->no', patch, kernel) + bias
  return y


@pytest.mark.parametrize(
    'ksize,strides,padding,pads',
    [
        ((3, 3), (1, 1), None, ((1, 1), (1, 1))),
        ((4, 4), (2, 2), 1, ((1, 1), (1, 1))),  # The official 4x4 s2 convs.
        ((2, 3), (1, 2), ((0, 1), (2, 0)), ((0, 1), (2, 0))),
    ],
)
def test_circular_conv_equals_numpy(ksize, strides, padding, pads):
  x = jax.random.normal(_key(0), (2, 8, 6, 3))
  model = layers.CircularConv(
      4, ksize, strides, padding,
      bias_init=jax.nn.initializers.normal(1.0),
  )
  variables = model.init(_key(1), x)
  kernel = np.asarray(variables['params']['kernel'])
  bias = np.asarray(variables['params']['bias'])
  expected = _numpy_circular_conv(np.asarray(x), kernel, bias, strides, pads)
  np.testing.assert_allclose(
      model.apply(variables, x), expected, rtol=1e-5, atol=1e-5
  )


def test_circular_conv_is_the_dense_circular_operator():
  x = np.random.default_rng(0).normal(size=(1, 5, 5, 2)).astype(np.float32)
  kernel = np.random.default_rng(1).normal(size=(3, 3, 2, 3)).astype('f4')
  a_op = dense_circular_operator(kernel, (5, 5))
  expected = np.einsum('pqorci,rci->pqo', a_op, x[0])
  np.testing.assert_allclose(
      layers.circular_conv(x, kernel)[0], expected, rtol=1e-5, atol=1e-5
  )


def test_san_conv_divides_by_the_stored_scale():
  x = jax.random.normal(_key(2), (2, 8, 8, 3))
  model = layers.NormalizedConv(4, norm='san')
  variables = model.init(_key(3), x)
  kernel = variables['params']['kernel']
  s = san.conv_norm(kernel, (8, 8)) + 1e-8
  np.testing.assert_allclose(variables['san']['scale'], s, rtol=1e-6)
  np.testing.assert_allclose(
      model.apply(variables, x),
      layers.circular_conv(x, kernel / s) + variables['params']['bias'],
      rtol=1e-5, atol=1e-6,
  )
  # Eval (no update) reuses the stored s; an update makes W / s scale-free.
  doubled = {**variables, 'params': {**variables['params'],
                                     'kernel': 2 * kernel}}
  no_bias = {**doubled, 'params': {**doubled['params'],
                                   'bias': jnp.zeros(4)}}
  y_eval = model.apply(no_bias, x)
  y_train, state = model.apply(no_bias, x, update_stats=True, mutable=['san'])
  np.testing.assert_allclose(y_eval, 2 * y_train, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(state['san']['scale'], 2 * s, rtol=1e-5)
  # Gradient reaches W as grad / s: nothing flows through s.
  grad = jax.grad(
      lambda p: jnp.sum(model.apply({**variables, 'params': p}, x))
  )(variables['params'])['kernel']
  ref = jax.grad(lambda k: jnp.sum(layers.circular_conv(x, k / s)))(kernel)
  np.testing.assert_allclose(grad, ref, rtol=1e-5, atol=1e-6)


def test_spectral_conv_updates_u_only_when_asked():
  x = jax.random.normal(_key(4), (1, 6, 6, 2))
  model = layers.NormalizedConv(3, norm='spectral')
  variables = model.init(_key(5), x)
  u0 = variables['spectral']['u']
  _, unchanged = model.apply(variables, x, mutable=['spectral'])
  np.testing.assert_array_equal(unchanged['spectral']['u'], u0)
  apply = jax.jit(
      functools.partial(model.apply, update_stats=True, mutable=['spectral'])
  )
  for _ in range(40):
    _, new = apply(variables, x)
    variables = {**variables, **new}
  kernel = variables['params']['kernel']
  top = np.linalg.svd(np.asarray(kernel).reshape(-1, 3), compute_uv=False)[0]
  y = model.apply(variables, x)
  ref = layers.circular_conv(x, kernel / top) + variables['params']['bias']
  np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('norm', ['san', 'spectral', 'none'])
def test_dense_norms(norm):
  x = jax.random.normal(_key(6), (3, 7))
  model = layers.NormalizedDense(5, norm=norm)
  variables = model.init(_key(7), x)
  kernel = np.asarray(variables['params']['kernel'])
  if norm == 'spectral':  # Converge u first.
    apply = jax.jit(
        functools.partial(model.apply, update_stats=True, mutable=['spectral'])
    )
    for _ in range(60):
      _, new = apply(variables, x)
      variables = {**variables, **new}
  divisor = (
      1.0 if norm == 'none' else np.linalg.svd(kernel, compute_uv=False)[0]
  )
  np.testing.assert_allclose(
      model.apply(variables, x),
      x @ (kernel / divisor) + variables['params']['bias'],
      rtol=1e-4, atol=1e-5,
  )


def test_bad_norm_and_shapes_are_errors():
  with pytest.raises(ValueError, match="'weight'"):
    layers.NormalizedConv(2, norm='weight').init(
        _key(0), jnp.ones((1, 4, 4, 1))
    )
  with pytest.raises(ValueError, match='NHWC'):
    layers.CircularConv(2).init(_key(0), jnp.ones((4, 4, 1)))


def test_san_subset_uses_the_san_rng_and_momentum():
  x = jax.random.normal(_key(8), (1, 8, 8, 4))
  model = layers.NormalizedConv(6, ratio=0.5, subset='channels', gain=1.2,
                                momentum=0.9)
  variables = model.init(_key(9), x)
  kernel, s0 = variables['params']['kernel'], variables['san']['scale']
  _, state = model.apply(variables, x, update_stats=True, mutable=['san'],
                         rngs={'san': _key(10)})
  # The fresh value is 1.2 × the max over 2 of 4 inputs × 3 of 6 outputs.
  fresh = (state['san']['scale'] - 0.9 * s0) / 0.1
  spec = np.fft.fft2(np.asarray(kernel, np.float64), s=(8, 8), axes=(0, 1))
  table = np.abs(spec).max(axis=(0, 1))  # (cin, cout)
  candidates = [
      table[np.ix_(ins, outs)].max()
      for ins in itertools.combinations(range(4), 2)
      for outs in itertools.combinations(range(6), 3)
  ]
  assert np.min(np.abs(np.array(candidates) * 1.2 - fresh)) < 1e-4 * fresh
  with pytest.raises(Exception, match='san'):  # No 'san' rng given.
    model.apply(variables, x, update_stats=True, mutable=['san'])


def test_conv_input_shapes_sees_normalized_layers():
  class Net(nn.Module):

    @nn.compact
    def __call__(self, x, train):
      x = layers.NormalizedConv(4, norm='none', name='a')(x, train)
      x = layers.NormalizedConv(4, (4, 4), (2, 2), 1, name='b')(x, train)
      return layers.NormalizedDense(1, name='fc')(x.reshape(1, -1), train)

  x = jnp.zeros((1, 8, 6, 2))
  variables = Net().init(_key(11), x, False)
  shapes = layers.conv_input_shapes(Net(), variables, x, False)
  assert shapes == {'a': (8, 6), 'b': (8, 6)}
