"""Tests for jaxsr.normalization.san against brute force and eq. 9."""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.models import layers
from jaxsr.normalization import san

_key = functools.partial(jax.random.key, impl='rbg')


def dense_circular_operator(kernel, hw, strides=(1, 1), pads=None):
  """The circular cross-correlation as an array A[p, q, o, r, c, i], by loops.

  y[p, q, o] = Σ_{r, c, i} A[p, q, o, r, c, i] x[r, c, i], where the input is
  padded cyclically by pads (default k - 1 split as ((k-1)//2, k//2)) and
  then correlated with stride strides.
  """
  kernel = np.asarray(kernel, np.float64)
  kh, kw, cin, cout = kernel.shape
  h, w = hw
  if pads is None:
    pads = (((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2))
  (t, b), (l, r) = pads
  ho = (h + t + b - kh) // strides[0] + 1
  wo = (w + l + r - kw) // strides[1] + 1
  a_op = np.zeros((ho, wo, cout, h, w, cin))
  for p in range(ho):
    for q in range(wo):
      for a in range(kh):
        for c in range(kw):
          row = (strides[0] * p + a - t) % h
          col = (strides[1] * q + c - l) % w
          a_op[p, q, :, row, col, :] += kernel[a, c].T
  return a_op


def _sparse_norm_brute(kernel, hw, strides=(1, 1), pads=None):
  """Eq. 6 by brute force: sup over 1-sparse x of the largest output norm.

  x has one nonzero channel i with ‖x_i‖₂ ≤ 1; output channel o is then
  A_oi x_i, whose largest norm over such x_i is σ_max(A_oi). So eq. 6 is
  max_{i, o} σ_max(A_oi) of the dense operator's channel blocks.
  """
  a_op = dense_circular_operator(kernel, hw, strides, pads)
  ho, wo, cout, h, w, cin = a_op.shape
  best = 0.0
  for i in range(cin):
    for o in range(cout):
      block = a_op[:, :, o, :, :, i].reshape(ho * wo, h * w)
      best = max(best, np.linalg.svd(block, compute_uv=False)[0])
  return best


@pytest.mark.parametrize(
    'kshape,hw', [((3, 3, 2, 3), (6, 6)), ((2, 3, 3, 2), (5, 7))]
)
def test_lemma1_equals_brute_force_sparse_norm(kshape, hw):
  kernel = np.random.default_rng(0).normal(size=kshape).astype(np.float32)
  brute = _sparse_norm_brute(kernel, hw)
  np.testing.assert_allclose(san.conv_norm(kernel, hw), brute, rtol=1e-5)


def test_lemma1_bound_on_random_sparse_inputs_and_not_deltas():
  rng = np.random.default_rng(1)
  kernel = rng.normal(size=(3, 3, 2, 3))
  hw = (6, 6)
  bound = float(san.conv_norm(kernel, hw))
  a_op = dense_circular_operator(kernel, hw).reshape(6 * 6 * 3, 6 * 6 * 2)
  for _ in range(50):
    x = np.zeros((6, 6, 2))
    x[..., rng.integers(2)] = rng.normal(size=(6, 6))
    x /= np.linalg.norm(x)  # One nonzero channel of norm 1.
    y = (a_op @ x.ravel()).reshape(6, 6, 3)
    assert np.linalg.norm(y, axis=(0, 1)).max() <= bound * (1 + 1e-6)
  # A single unit pixel reaches only max ‖w_ij‖_F, a strictly lower value:
  # the supremum is over whole channels, attained by a sinusoid.
  frob = np.linalg.norm(kernel, axis=(0, 1)).max()
  assert frob < bound


def test_strided_conv_norm_is_an_upper_bound():
  kernel = np.random.default_rng(2).normal(size=(4, 4, 2, 2))
  brute = _sparse_norm_brute(kernel, (8, 8), (2, 2), ((1, 1), (1, 1)))
  assert brute <= float(san.conv_norm(kernel, (8, 8))) * (1 + 1e-6)


def _torch_legacy(kernel, hw):
  """The released code, literally: F.pad, torch.fft.fft2, norm(dim=-1)."""
  w_t = np.asarray(kernel, np.float64).transpose(3, 2, 0, 1)  # (O, I, kh, kw)
  h, w = hw
  kh, kw = w_t.shape[2:]
  # F.pad(w, (0, H - kh, 0, W - kw)): the last dim gets H - kh, the next
  # W - kw (input_size[2] = H, input_size[3] = W).
  padded = np.pad(w_t, ((0, 0), (0, 0), (0, w - kw), (0, h - kh)))
  return np.linalg.norm(np.fft.fft2(padded), axis=-1).max()


@pytest.mark.parametrize(
    'kshape,hw', [((3, 3, 2, 3), (8, 8)), ((4, 4, 3, 2), (8, 6))]
)
def test_legacy_rownorm_matches_the_released_code(kshape, hw):
  kernel = np.random.default_rng(3).normal(size=kshape).astype(np.float32)
  legacy = float(san.conv_norm(kernel, hw, legacy_rownorm=True))
  np.testing.assert_allclose(legacy, _torch_legacy(kernel, hw), rtol=1e-5)
  if hw[0] == hw[1]:
    exact = float(san.conv_norm(kernel, hw))
    assert exact <= legacy <= math.sqrt(hw[1]) * exact * (1 + 1e-6)


def _eq9(r, mn):
  """Eq. 9 typed in as printed."""
  k = math.ceil(mn * r)
  num = sum(1.0 / (mn - j + 1) for j in range(1, mn + 1))
  den = sum(1.0 / (k - j + 1) for j in range(1, k + 1))
  return num / den


@pytest.mark.parametrize('r,mn', [(0.25, 64 * 64), (0.5, 12), (1.0, 9)])
def test_compensation_is_eq9(r, mn):
  np.testing.assert_allclose(san.compensation(r, mn), _eq9(r, mn), rtol=1e-12)


def test_compensation_reproduces_the_papers_1_2():
  g = san.compensation(0.25, 64 * 64)
  assert round(g, 1) == 1.2  # "g ≈ 1.2 for r = 25% with m·n = 64² filters"
  np.testing.assert_allclose(g, 1.1846, atol=1e-4)


def test_compensation_matches_monte_carlo_of_exponential_maxima():
  # The paper's model: top Fourier values are iid exponential; g is
  # E[max of all m·n] / E[max of ceil(m·n·r)].
  rng = np.random.default_rng(4)
  mn, r = 64 * 64, 0.25
  draws = rng.exponential(size=(2000, mn))
  ratio = draws.max(1).mean() / draws[:, : math.ceil(mn * r)].max(1).mean()
  np.testing.assert_allclose(san.compensation(r, mn), ratio, rtol=0.015)


def _per_pair_max(kernel, hw):
  """max |DFT| of every w_ij, numpy, full spectrum -> (cin, cout)."""
  spec = np.fft.fft2(np.asarray(kernel, np.float64), s=hw, axes=(0, 1))
  return np.abs(spec).max(axis=(0, 1))


@pytest.mark.parametrize('subset', ['pairs', 'channels'])
def test_subset_estimate_is_the_max_over_the_sampled_pairs(subset):
  kernel = np.random.default_rng(5).normal(size=(3, 3, 6, 4)).astype('f4')
  hw, key, ratio = (6, 6), _key(3), 0.5
  ins, outs = san.sample_filter_pairs(key, 6, 4, ratio, subset)
  expected_k = 12 if subset == 'pairs' else 3 * 2
  assert len(ins) == expected_k == san.num_sampled_pairs(6, 4, ratio, subset)
  assert len(set(zip(np.asarray(ins), np.asarray(outs)))) == expected_k
  table = _per_pair_max(kernel, hw)
  est = san.subset_conv_norm(kernel, hw, key, ratio=ratio, subset=subset)
  np.testing.assert_allclose(est, table[ins, outs].max(), rtol=1e-5)
  assert est <= table.max() * (1 + 1e-6)
  g = san.compensation_for_count(expected_k, 24)
  scale = san.san_scale(kernel, hw, key, ratio=ratio, subset=subset)
  np.testing.assert_allclose(scale, est * g + 1e-8, rtol=1e-6)
  full = san.san_scale(kernel, hw, key, ratio=1.0, subset=subset)
  np.testing.assert_allclose(full, table.max() + 1e-8, rtol=1e-5)


class _Critic(nn.Module):
  """A tiny critic: two circular convs, then two Dense layers."""

  @nn.compact
  def __call__(self, x):
    x = nn.leaky_relu(layers.CircularConv(4, name='c0')(x), 0.1)
    x = layers.CircularConv(6, (4, 4), (2, 2), padding=1, name='c1')(x)
    x = nn.leaky_relu(x, 0.1).reshape(x.shape[0], -1)
    x = nn.leaky_relu(nn.Dense(5, name='fc0')(x), 0.1)
    return nn.Dense(1, name='fc1')(x)


@pytest.fixture(scope='module')
def critic():
  model, x = _Critic(), jnp.zeros((1, 8, 8, 3))
  variables = jax.jit(model.init)(_key(0), x)
  shapes = layers.conv_input_shapes(model, variables, x)
  return variables['params'], shapes


def test_conv_input_shapes(critic):
  _, shapes = critic
  assert shapes == {'c0': (8, 8), 'c1': (8, 8)}


def test_normalize_gives_unit_norms_and_keeps_biases(critic):
  params, shapes = critic
  state = san.init_state(params, shapes)
  out, state = san.normalize(params, shapes, state)
  for name in ('c0', 'c1'):
    np.testing.assert_allclose(
        san.conv_norm(out[name]['kernel'], shapes[name]), 1.0, rtol=1e-5
    )
  for name in ('fc0', 'fc1'):
    sv = np.linalg.svd(np.asarray(out[name]['kernel']), compute_uv=False)[0]
    np.testing.assert_allclose(sv, 1.0, rtol=1e-5)
  for name in ('c0', 'c1', 'fc0', 'fc1'):
    np.testing.assert_array_equal(out[name]['bias'], params[name]['bias'])


def test_normalize_is_invariant_to_rescaling(critic):
  params, shapes = critic
  state = san.init_state(params, shapes)
  scaled = jax.tree_util.tree_map_with_path(
      lambda p, v: v * 7.0 if p[-1].key == 'kernel' else v, params
  )
  a, _ = san.normalize(params, shapes, state)
  b, _ = san.normalize(scaled, shapes, state)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)


def test_gradient_flows_through_w_not_through_the_scale(critic):
  params, shapes = critic
  state = san.init_state(params, shapes)
  c = jax.random.normal(_key(1), params['c1']['kernel'].shape)

  def f(p):
    out, _ = san.normalize(p, shapes, state)
    return jnp.sum(out['c1']['kernel'] * c)

  grad = jax.grad(f)(params)['c1']['kernel']
  s = san.conv_norm(params['c1']['kernel'], shapes['c1']) + 1e-8
  np.testing.assert_allclose(grad, c / s, rtol=1e-5)


def test_maybe_normalize_refreshes_only_every_n_steps(critic):
  params, shapes = critic
  stale = san.SanState(
      jax.tree.map(lambda s: s * 2.0, san.init_state(params, shapes).scales)
  )
  step_fn = jax.jit(
      lambda step, st: san.maybe_normalize(step, 4, params, shapes, st)
  )
  out, kept = step_fn(5, stale)
  np.testing.assert_array_equal(kept.scales['c0'], 2.0)
  np.testing.assert_allclose(out['c0']['kernel'], params['c0']['kernel'] / 2)
  out, fresh = step_fn(8, stale)
  ref, ref_state = san.normalize(params, shapes, stale)
  got, want = jax.tree.leaves((out, fresh)), jax.tree.leaves((ref, ref_state))
  for x, y in zip(got, want):
    np.testing.assert_allclose(x, y, rtol=1e-6)


def test_momentum_and_legacy_options(critic):
  params, shapes = critic
  state = san.init_state(params, shapes)  # s = 1, as the official buffer.
  _, st = san.normalize(params, shapes, state, momentum=0.75)
  exact = san.conv_norm(params['c0']['kernel'], (8, 8)) + 1e-8
  np.testing.assert_allclose(st.scales['c0'], 0.75 + 0.25 * exact, rtol=1e-6)
  _, st = san.normalize(params, shapes, state, legacy_rownorm=True)
  assert st.scales['c0'] >= exact * (1 - 1e-6)
  _, st = san.normalize(params, shapes, state, ratio=0.5, key=_key(2))
  assert st.scales['c1'] > 0


def test_errors_name_the_problem(critic):
  params, shapes = critic
  with pytest.raises(ValueError, match='c1'):
    san.init_state(params, {'c0': (8, 8)})
  with pytest.raises(ValueError, match='needs a key'):
    san.normalize(params, shapes, san.init_state(params, shapes), ratio=0.5)
  with pytest.raises(ValueError, match='smaller than'):
    san.conv_norm(jnp.ones((3, 3, 1, 1)), (2, 8))
  with pytest.raises(ValueError, match='ratio'):
    san.compensation(0.0, 10)
