"""Tests for jaxsr.losses.contextual against a loop transcription of eq. 11."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.losses import contextual

_key = functools.partial(jax.random.key, impl='rbg')


def _reference(
    x,
    y,
    h=0.5,
    eps=1e-5,
    distance='cosine_half',
    batch_r=True,
    max_over_targets=False,
):
  """Eq. 11 with loops, float64; d is the official cosine *distance*."""
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  n, c = x.shape[0], x.shape[-1]
  xs, ys = x.reshape(n, -1, c), y.reshape(n, -1, c)
  losses = []
  for b in range(n):
    # r: the average of the target points (over the batch too, officially).
    r = ys.mean(axis=(0, 1)) if batch_r else ys[b].mean(axis=0)
    xi, yj = xs[b] - r, ys[b] - r
    p, q = len(xi), len(yj)
    d = np.empty((p, q))
    for i in range(p):
      for j in range(q):
        cos = xi[i] @ yj[j] / (np.linalg.norm(xi[i]) * np.linalg.norm(yj[j]))
        d[i, j] = (1 - cos) / 2 if distance == 'cosine_half' else 1 - cos
    # d'_ij = d_ij / (min_k d_ik + eps)
    d_rel = np.empty_like(d)
    for i in range(p):
      d_rel[i] = d[i] / (min(d[i]) + eps)
    # A_ij = e^(1 - d'_ij/h) / sum_k e^(1 - d'_ik/h): the paper's bracket.
    a = np.empty_like(d)
    for i in range(p):
      w = np.exp(1 - d_rel[i] / h)
      a[i] = w / w.sum()
    # CX = (1/N) sum_j max_i A_ij
    cx = np.mean([max(a[i, j] for i in range(p)) for j in range(q)])
    if max_over_targets:  # the wrong direction, for contrast
      cx = np.mean([max(a[i, j] for j in range(q)) for i in range(p)])
    losses.append(-np.log(cx))
  return float(np.mean(losses))


def _xy(shape=(2, 5, 6, 8), seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=shape).astype(np.float32)
  y = (rng.normal(size=shape) + 0.3).astype(np.float32)
  return x, y


@pytest.mark.parametrize('distance', ['cosine_half', 'cosine'])
@pytest.mark.parametrize('chunk', [1024, 7])
def test_matches_loop_reference(distance, chunk):
  x, y = _xy()
  got = contextual.contextual_loss(
      jnp.asarray(x), jnp.asarray(y), distance=distance, chunk=chunk
  )
  assert float(got) == pytest.approx(_reference(x, y, distance=distance), 1e-5)


def test_per_image_centering_and_bandwidth():
  x, y = _xy(seed=1)
  got = contextual.contextual_loss(
      jnp.asarray(x), jnp.asarray(y), band_width=0.2, center_over_batch=False
  )
  want = _reference(x, y, h=0.2, batch_r=False)
  assert float(got) == pytest.approx(want, rel=1e-5)
  assert want != pytest.approx(_reference(x, y, h=0.2), rel=1e-3)


def test_float64_value_and_gradient_by_finite_differences():
  x, y = _xy((1, 3, 4, 5), seed=2)
  with jax.enable_x64(True):
    x64, y64 = jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64)
    loss = functools.partial(contextual.contextual_loss, y=y64, chunk=5)
    value, grad = jax.value_and_grad(loss)(x64)
    assert float(value) == pytest.approx(_reference(x, y), rel=1e-10)
    grad = np.asarray(grad)
  assert np.abs(grad).max() > 1e-3  # a non-trivial gradient
  rng = np.random.default_rng(3)
  step = 1e-6
  for flat in rng.choice(x.size, 8, replace=False):
    idx = np.unravel_index(flat, x.shape)
    xp, xm = x.astype(np.float64), x.astype(np.float64)
    xp[idx] += step
    xm[idx] -= step
    fd = (_reference(xp, y) - _reference(xm, y)) / (2 * step)
    assert grad[idx] == pytest.approx(fd, rel=1e-5, abs=1e-8)


def test_float32_gradient_matches_float64():
  x, y = _xy(seed=4)
  grad32 = jax.grad(contextual.contextual_loss)(jnp.asarray(x), jnp.asarray(y))
  with jax.enable_x64(True):
    grad64 = jax.grad(contextual.contextual_loss)(
        jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64)
    )
    grad64 = np.asarray(grad64)
  scale = np.abs(grad64).max()
  np.testing.assert_allclose(grad32, grad64, rtol=1e-3, atol=1e-4 * scale)


def test_identical_inputs_give_cx_near_one():
  x, _ = _xy(seed=5)
  got = float(contextual.contextual_loss(jnp.asarray(x), jnp.asarray(x)))
  want = _reference(x, x)
  # Every x_i is its own nearest target at relative distance ~0 and all the
  # others sit ~1e4 relative distances away, so CX is 1 to float precision.
  assert want == pytest.approx(0.0, abs=1e-6)
  assert got == pytest.approx(want, abs=1e-6)
  # A different target gives a clearly positive loss.
  other = contextual.contextual_loss(jnp.asarray(x), jnp.asarray(x[::-1]))
  assert other > 0.1


def test_invariant_to_permuting_positions():
  """CX compares sets of features: spatial order does not matter."""
  x, y = _xy(seed=6)
  n, hh, ww, c = x.shape
  perm = np.random.default_rng(7).permutation(hh * ww)
  x_perm = x.reshape(n, -1, c)[:, perm].reshape(x.shape)
  y_perm = y.reshape(n, -1, c)[:, perm[::-1]].reshape(y.shape)
  base = contextual.contextual_loss(jnp.asarray(x), jnp.asarray(y))
  for a, b in ((x_perm, y), (x, y_perm)):
    got = contextual.contextual_loss(jnp.asarray(a), jnp.asarray(b))
    assert float(got) == pytest.approx(float(base), rel=1e-6)


def test_max_runs_over_generated_points():
  """Eq. 11 and CSFlow: max over generated i for each target j, not over j."""
  x, y = _xy(seed=8)
  right = _reference(x, y)
  wrong = _reference(x, y, max_over_targets=True)
  got = float(contextual.contextual_loss(jnp.asarray(x), jnp.asarray(y)))
  assert got == pytest.approx(right, rel=1e-5)
  assert got != pytest.approx(wrong, rel=1e-2)


def test_random_sampling_uses_the_same_positions():
  x, y = _xy((2, 9, 9, 4), seed=9)
  key = _key(10)
  got = contextual.contextual_loss(
      jnp.asarray(x), jnp.asarray(y), key=key, max_samples=5
  )
  idx = np.asarray(jax.random.permutation(key, 81))[:25]
  xs = x.reshape(2, 81, 4)[:, idx].reshape(2, 5, 5, 4)
  ys = y.reshape(2, 81, 4)[:, idx].reshape(2, 5, 5, 4)
  assert float(got) == pytest.approx(_reference(xs, ys), rel=1e-5)
  # y == x stays a perfect match after sampling (same positions for both).
  same = contextual.contextual_loss(
      jnp.asarray(x), jnp.asarray(x), key=key, max_samples=5
  )
  assert float(same) == pytest.approx(0.0, abs=1e-6)
  with pytest.raises(ValueError, match='needs a PRNG key'):
    contextual.contextual_loss(jnp.asarray(x), jnp.asarray(y), max_samples=5)
  # No sampling when the map is small enough: the key is then unused.
  full = contextual.contextual_loss(
      jnp.asarray(x), jnp.asarray(y), key=key, max_samples=9
  )
  assert float(full) == pytest.approx(_reference(x, y), rel=1e-5)


def test_chunked_equals_unchunked_under_jit():
  x, y = _xy((2, 16, 16, 32), seed=11)
  x, y = jnp.asarray(x), jnp.asarray(y)

  @functools.partial(jax.jit, static_argnums=2)
  def value_and_grad(x, y, chunk):
    return jax.value_and_grad(
        functools.partial(contextual.contextual_loss, chunk=chunk)
    )(x, y)

  v1, g1 = value_and_grad(x, y, 1024)
  v2, g2 = value_and_grad(x, y, 37)  # 256 points: 7 blocks, the last padded
  assert float(v1) == pytest.approx(float(v2), rel=1e-6)
  np.testing.assert_allclose(g1, g2, rtol=1e-5, atol=1e-9)


def test_chunking_bounds_memory():
  """Compiled temp memory of the gradient scales with chunk, not P * Q."""

  def grad(x, y, chunk):
    return jax.grad(
        functools.partial(
            contextual.contextual_loss, chunk=chunk, max_samples=None
        )
    )(x, y)

  spec = jax.ShapeDtypeStruct((2, 64, 64, 8), jnp.float32)
  full_matrix = 2 * 4096 * 4096 * 4  # one (P, Q) float32 affinity per image

  def temp_bytes(chunk):
    compiled = jax.jit(grad, static_argnums=2).lower(spec, spec, chunk)
    analysis = compiled.compile().memory_analysis()
    if analysis is None:
      pytest.skip('no memory analysis on this backend')
    return analysis.temp_size_in_bytes

  assert temp_bytes(64) < full_matrix / 4


def test_argument_errors():
  x, y = _xy()
  with pytest.raises(ValueError, match='one \\(N, H, W, C\\) shape'):
    contextual.contextual_loss(jnp.asarray(x), jnp.asarray(y[:1]))
  with pytest.raises(ValueError, match='distance must be one of'):
    contextual.contextual_loss(jnp.asarray(x), jnp.asarray(y), distance='l2')


@pytest.mark.parametrize('name', ['cesrgan', 'clsrgan'])
def test_cesrgan_clsrgan_read_post_relu_conv3_4(name):
  """The official CX code's 'conv3_4' is relu(conv + b) (roimehrez/
  contextualLoss vgg_model.py build_net; the PyTorch port's relu3_4): the
  loss the method computes equals eq. 11 on max(conv3_4, 0), not on the
  pre-ReLU conv3_4 that ESRGAN's L_percep reads."""
  from jaxsr.methods import lsrgan  # pylint: disable=g-import-not-at-top
  from jaxsr.models import vgg  # pylint: disable=g-import-not-at-top
  from tests import helpers  # pylint: disable=g-import-not-at-top
  loss = lsrgan.GanLoss.from_config(helpers.load_experiment(name).loss)
  rng = np.random.default_rng(0)
  sr, hr = (jnp.asarray(rng.uniform(size=(2, 16, 16, 3)), jnp.float32)
            for _ in range(2))
  feat = vgg.VGG(depth=19, layers=loss.feature_layers)
  params = {'params': feat.init(_key(0), sr)['params']}
  got = loss.perceptual_term(feat.apply(params, sr), feat.apply(params, hr),
                             _key(1))
  # The same random VGG19 (kaiming init), tapped at the pre-ReLU conv3_4.
  pre = vgg.VGG(depth=19, layers=('conv3_4',))
  pre_sr, pre_hr = (np.asarray(pre.apply(params, im)['conv3_4'])
                    for im in (sr, hr))
  assert pre_sr.shape == (2, 4, 4, 256) and (pre_sr < 0).mean() > 0.2
  h = loss.cx_band_width
  want = _reference(np.maximum(pre_sr, 0), np.maximum(pre_hr, 0), h=h)
  pre_relu = _reference(pre_sr, pre_hr, h=h)
  assert abs(want - pre_relu) > 0.05 * want  # The tap matters here.
  assert float(got) == pytest.approx(want, rel=1e-4)
