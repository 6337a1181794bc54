"""Tests for jaxsr.attacks.perturbations: FGM, PGD, power iteration, switch."""

import functools

import chex
import jax
from jax import flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.attacks import perturbations as pt


def flat(tree) -> np.ndarray:
  """All leaves of a pytree, in tree_leaves order, as one float64 vector."""
  leaves = jax.tree_util.tree_leaves(tree)
  return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in leaves])


def random_tree(seed: int, scale: float = 1.0) -> dict[str, np.ndarray]:
  """A two-leaf float32 pytree of normal values."""
  rng = np.random.default_rng(seed)
  return {
      'kernel': (scale * rng.normal(size=(2, 3))).astype(np.float32),
      'bias': (scale * rng.normal(size=(4,))).astype(np.float32),
  }


def numpy_project(d: np.ndarray, radius: float) -> np.ndarray:
  """The L2-ball projection, written out."""
  norm = np.linalg.norm(d)
  return d if norm <= radius else d * radius / norm


def numpy_pgd(grad_fn, g0, alpha, radius, steps) -> np.ndarray:
  """Eq. 13 / Algorithm 1 on flat float64 vectors, line by line."""
  d = numpy_project(alpha * g0 / np.linalg.norm(g0), radius)
  for _ in range(2, steps + 1):
    g = grad_fn(d)
    d = numpy_project(d + alpha * g / np.linalg.norm(g), radius)
  return d


def random_unit(n: int, seed: int) -> jax.Array:
  """A random unit vector (n,) float32."""
  x = np.random.default_rng(seed).normal(size=n)
  return jnp.asarray(x / np.linalg.norm(x), jnp.float32)


def matrix_with_singular_values(rows, cols, s, seed) -> np.ndarray:
  """U diag(s) Vᵀ with U, V orthonormal from numpy QR: known σ's."""
  rng = np.random.default_rng(seed)
  left, _ = np.linalg.qr(rng.normal(size=(rows, rows)))
  right, _ = np.linalg.qr(rng.normal(size=(cols, cols)))
  k = len(s)
  return left[:, :k] @ np.diag(s) @ right[:, :k].T


# ----------------------------------------------------------------- norms, FGM


def test_global_norm_is_the_norm_of_all_leaves_concatenated():
  tree = random_tree(0)
  got = pt.global_norm(tree)
  chex.assert_shape(got, ())
  chex.assert_type(got, jnp.float32)
  np.testing.assert_allclose(got, np.linalg.norm(flat(tree)), rtol=1e-6)
  np.testing.assert_allclose(pt.global_norm({'a': [3.0], 'b': [4.0]}), 5.0)


def test_fgm_has_norm_epsilon_and_points_along_the_gradient():
  grad = random_tree(1, scale=3.0)
  delta = pt.fgm(grad, 0.3)
  chex.assert_trees_all_equal_shapes_and_dtypes(delta, grad)
  d, g = flat(delta), flat(grad)
  np.testing.assert_allclose(np.linalg.norm(d), 0.3, rtol=1e-6)
  np.testing.assert_allclose(d @ g / (np.linalg.norm(d) * np.linalg.norm(g)),
                             1.0, rtol=1e-6)
  np.testing.assert_allclose(d, 0.3 * g / np.linalg.norm(g), atol=1e-7)


def test_zero_gradients_give_zero_perturbations():
  zeros = jax.tree_util.tree_map(np.zeros_like, random_tree(2))
  for delta in [
      pt.fgm(zeros, 0.5),
      jax.jit(pt.fgm)(zeros, 0.5),
      pt.project_l2(zeros, 0.5),
      pt.pgd(lambda d: d, zeros, alpha=0.1, radius=0.5, steps=3),
  ]:
    assert np.all(np.isfinite(flat(delta)))
    np.testing.assert_array_equal(flat(delta), 0.0)


def test_fgm_raises_a_smooth_loss_by_its_first_order_term():
  rng = np.random.default_rng(3)
  a, b = rng.normal(size=(5, 4)), rng.normal(size=5)
  q = rng.normal(size=(4, 4))
  q = q + q.T
  x = rng.normal(size=4)

  def loss(x):  # float64 numpy: sum tanh(Ax + b) + ½ xᵀQx
    return np.sum(np.tanh(a @ x + b)) + 0.5 * x @ q @ x

  # Its gradient by hand: Aᵀ(1 - tanh²(Ax + b)) + Qx.
  grad = a.T @ (1 - np.tanh(a @ x + b) ** 2) + q @ x
  errors = []
  for eps in [1e-2, 1e-3]:
    delta = np.asarray(pt.fgm(grad.astype(np.float32), eps), np.float64)
    gain, first_order = loss(x + delta) - loss(x), delta @ grad
    assert gain > 0
    np.testing.assert_allclose(first_order, eps * np.linalg.norm(grad),
                               rtol=1e-6)
    errors.append(abs(gain - first_order) / first_order)
  # The remainder is second order: O(ε) relative, so 10x smaller at ε/10.
  assert errors[0] < 0.05
  assert errors[1] < errors[0] / 5


def test_fgm_beats_random_directions_of_the_same_norm_on_a_linear_loss():
  w = random_tree(4)

  def loss(delta):  # ⟨w, δ⟩ over a two-leaf pytree
    return sum(jnp.vdot(a, b) for a, b in zip(
        jax.tree_util.tree_leaves(w), jax.tree_util.tree_leaves(delta)))

  eps = 0.7
  delta = pt.fgm(jax.grad(loss)(w), eps)
  best = float(loss(delta))
  # Cauchy-Schwarz: max over the ε-ball of ⟨w, δ⟩ is ε‖w‖.
  np.testing.assert_allclose(best, eps * np.linalg.norm(flat(w)), rtol=1e-5)
  # Brute force: 1000 random directions of norm ε, scored in numpy.
  r = np.random.default_rng(5).normal(size=(1000, flat(w).size))
  r = eps * r / np.linalg.norm(r, axis=1, keepdims=True)
  assert np.max(r @ flat(w)) < best


# ---------------------------------------------------------------- projection


def test_projection_keeps_points_inside_the_ball():
  tree = random_tree(6)
  radius = 1.01 * np.linalg.norm(flat(tree))
  got = pt.project_l2(tree, radius)
  chex.assert_trees_all_equal_shapes_and_dtypes(got, tree)
  np.testing.assert_array_equal(flat(got), flat(tree))


def test_projection_scales_points_outside_onto_the_sphere():
  tree = random_tree(7, scale=2.0)
  got = flat(pt.project_l2(tree, 0.5))
  np.testing.assert_allclose(np.linalg.norm(got), 0.5, rtol=1e-6)
  d = flat(tree)
  np.testing.assert_allclose(got, 0.5 * d / np.linalg.norm(d), atol=1e-7)


def test_projection_uses_the_global_norm_of_all_leaves():
  # Hand values: ‖(3, 4)‖ = 5, so radius 1 scales both leaves by 1/5; a
  # per-leaf projection would give (1, 0) and (0, 1).
  got = pt.project_l2({'a': jnp.array([3.0, 0.0]), 'b': jnp.array([0.0, 4.0])},
                      1.0)
  np.testing.assert_allclose(got['a'], [0.6, 0.0], rtol=1e-6)
  np.testing.assert_allclose(got['b'], [0.0, 0.8], rtol=1e-6)
  # Each leaf inside the 0.9-ball, the whole (norm 1) outside: scaled by 0.9.
  got = pt.project_l2({'a': jnp.array([0.6]), 'b': jnp.array([0.8])}, 0.9)
  np.testing.assert_allclose([got['a'][0], got['b'][0]], [0.54, 0.72],
                             rtol=1e-6)


# ----------------------------------------------------------------------- PGD


def test_pgd_with_one_step_is_the_projected_normalized_gradient():
  g0 = random_tree(8, scale=3.0)

  def no_more_gradients(delta):
    raise AssertionError('T = 1 must reuse grad0 and evaluate nothing else')

  g = flat(g0)
  for radius in [0.2, 1.0]:  # α = 0.5: projected, then inside the ball.
    got = pt.pgd(no_more_gradients, g0, alpha=0.5, radius=radius, steps=1)
    want = numpy_project(0.5 * g / np.linalg.norm(g), radius)
    np.testing.assert_allclose(flat(got), want, atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(flat(got)), min(0.5, radius),
                               rtol=1e-6)


def test_pgd_reaches_the_exact_maximizer_of_a_linear_loss():
  w = random_tree(9)
  unit = flat(w) / np.linalg.norm(flat(w))
  run = functools.partial(pt.pgd, lambda d: w, w, alpha=0.3, radius=1.0)
  # α T = 0.6 < r: still walking straight along w; α T = 1.2 ≥ r: r w / ‖w‖.
  np.testing.assert_allclose(flat(run(steps=2)), 0.6 * unit, atol=1e-6)
  for steps in [4, 7]:
    np.testing.assert_allclose(flat(run(steps=steps)), unit, atol=1e-6)


def test_pgd_matches_a_numpy_transcription_of_eq_13_on_a_quadratic():
  rng = np.random.default_rng(10)
  template = {'a': np.zeros((2, 2), np.float32), 'b': np.zeros(3, np.float32)}
  _, unravel = flatten_util.ravel_pytree(template)
  a = rng.normal(size=(7, 7))
  a = 2.0 * (a + a.T)
  b = rng.normal(size=7)

  def numpy_grad(d):  # L(δ) = ½δᵀAδ + bᵀδ, so ∇L = Aδ + b.
    return a @ d + b

  def grad_fn(delta):
    d, _ = flatten_util.ravel_pytree(delta)
    return unravel(jnp.asarray(a, jnp.float32) @ d + b.astype(np.float32))

  g0 = unravel(jnp.asarray(b, jnp.float32))
  step = jax.jit(functools.partial(pt.pgd, grad_fn, alpha=0.4, radius=0.5,
                                   steps=3))
  got = flat(step(g0))
  want = numpy_pgd(numpy_grad, b, 0.4, 0.5, 3)
  np.testing.assert_allclose(got, want, atol=1e-5)
  # The gradients at δ₁, δ₂ matter: a fixed direction would land elsewhere.
  assert np.linalg.norm(want - 0.5 * b / np.linalg.norm(b)) > 1e-2


def test_every_pgd_iterate_stays_in_the_ball():
  def grad_fn(delta):  # ∇ of Σ sin(3δ) + ‖δ‖²: curved, pushes outwards.
    return jax.tree_util.tree_map(lambda d: 3 * jnp.cos(3 * d) + 2 * d, delta)

  g0 = grad_fn(jax.tree_util.tree_map(np.zeros_like, random_tree(11)))
  # δ_t of a T-step run is the t-th iterate of any longer run.
  for radius in [0.1, 0.7]:
    for steps in range(1, 5):
      got = pt.pgd(grad_fn, g0, alpha=0.25, radius=radius, steps=steps)
      assert np.linalg.norm(flat(got)) <= radius * (1 + 1e-6)


def test_pgd_rejects_a_step_count_below_one():
  with pytest.raises(ValueError, match='steps'):
    pt.pgd(lambda d: d, random_tree(0), alpha=0.1, radius=1.0, steps=0)


# ---------------------------------------------------------- power iteration


def test_kernel_matrix_is_pytorchs_view_of_the_oihw_kernel():
  kernel = np.random.default_rng(12).normal(size=(3, 2, 4, 5))
  got = np.asarray(pt.kernel_matrix(kernel))
  want = np.transpose(kernel, (3, 2, 0, 1)).reshape(5, -1)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  # By hand: column i·kh·kw + a·kw + b of row o holds K[a, b, i, o].
  np.testing.assert_allclose(got[4, 2 * 6 + 1 * 2 + 1], kernel[1, 1, 2, 4],
                             rtol=1e-6)
  dense = np.random.default_rng(13).normal(size=(4, 3))
  np.testing.assert_allclose(pt.kernel_matrix(dense), dense.T, rtol=1e-6)
  with pytest.raises(ValueError, match='conv kernel'):
    pt.kernel_matrix(jnp.ones((2, 2, 2)))


@pytest.mark.parametrize('shape', [(5, 3), (3, 7), (3, 3, 2, 4), (1, 1, 6, 2)])
def test_power_iteration_matches_numpy_svd(shape):
  weight = np.random.default_rng(sum(shape)).normal(size=shape)
  matrix = pt.kernel_matrix(weight) if len(shape) == 4 else weight
  left, s, _ = np.linalg.svd(np.asarray(matrix, np.float64))
  sigma, u = pt.top_singular_value(
      matrix, random_unit(matrix.shape[0], 0), 500
  )
  np.testing.assert_allclose(sigma, s[0], rtol=1e-4)
  np.testing.assert_allclose(abs(u @ left[:, 0]), 1.0, rtol=1e-4)


def test_power_iteration_finds_a_constructed_top_singular_value():
  s = [3.0, 1.5, 0.7, 0.2]
  matrix = matrix_with_singular_values(6, 4, s, seed=14)
  left, _, _ = np.linalg.svd(matrix)
  sigma, u = pt.top_singular_value(matrix, random_unit(6, 1), 100)
  np.testing.assert_allclose(sigma, 3.0, rtol=1e-5)
  np.testing.assert_allclose(abs(u @ left[:, 0]), 1.0, rtol=1e-5)


def test_one_iteration_per_call_converges_with_a_warm_u():
  matrix = np.random.default_rng(15).normal(size=(4, 18)).astype(np.float32)
  top = np.linalg.svd(matrix, compute_uv=False)[0]
  step = jax.jit(pt.top_singular_value, static_argnums=2)
  u = random_unit(4, 2)
  sigmas = []
  for _ in range(100):
    sigma, u = step(matrix, u, 1)
    sigmas.append(float(sigma))
  # σ_k = ‖M v_k‖ never decreases, and a Rayleigh quotient never exceeds σ₁.
  assert np.all(np.diff(sigmas) >= -1e-5 * top)
  assert sigmas[0] <= top * (1 + 1e-6)
  np.testing.assert_allclose(sigmas[-1], top, rtol=1e-4)


def test_power_iteration_of_a_zero_matrix_and_its_errors():
  sigma, u = pt.top_singular_value(jnp.zeros((3, 2)), random_unit(3, 3), 4)
  assert float(sigma) == 0.0 and np.all(np.isfinite(u))
  with pytest.raises(ValueError, match='shape'):
    pt.top_singular_value(jnp.ones((3, 2)), jnp.ones(2), 1)
  with pytest.raises(ValueError, match='iters'):
    pt.top_singular_value(jnp.ones((3, 2)), jnp.ones(3), 0)


# -------------------------------------------------------------------- switch


def test_use_pgd_is_strict_below_kappa_over_two_alpha():
  # κ = 1, α = 1/8: the threshold κ / (2α) is exactly 4.
  assert bool(pt.use_pgd(3.99, 1.0, 0.125))
  assert not bool(pt.use_pgd(4.0, 1.0, 0.125))
  assert not bool(pt.use_pgd(4.01, 1.0, 0.125))


@pytest.mark.parametrize('top,pgd', [(3.96, True), (4.04, False)])
def test_switch_on_conv_weights_with_known_singular_values(top, pgd):
  # A (out=4, in·kh·kw=18) matrix with σ₁ = top, laid out as an HWIO kernel.
  matrix = matrix_with_singular_values(4, 18, [top, 1.0, 0.5, 0.1], seed=16)
  kernel = np.transpose(matrix.reshape(4, 2, 3, 3), (2, 3, 1, 0))
  sigma, _ = pt.top_singular_value(pt.kernel_matrix(kernel),
                                   random_unit(4, 4), 100)
  np.testing.assert_allclose(sigma, top, rtol=1e-5)
  assert bool(pt.use_pgd(sigma, 1.0, 0.125)) == pgd


# --------------------------------------------------------- adversarial_grads

_RNG = np.random.default_rng(17)
X = _RNG.normal(size=(5, 3)).astype(np.float32)
SIGNS = np.array([1, -1, 1, 1, -1], np.float32)  # real +1, fake -1
PARAMS = {
    'hidden': {'kernel': _RNG.normal(size=(3, 4)).astype(np.float32),
               'bias': _RNG.normal(size=(4,)).astype(np.float32)},
    'head': {'kernel': _RNG.normal(size=(4, 1)).astype(np.float32)},
}
CONFIG = dict(epsilon=0.05, alpha=0.125, radius=0.3, steps=3)


def logits(params, x, head_delta):
  """A two-layer discriminator (n, 3) -> (n,), its head kernel perturbed."""
  h = jnp.tanh(x @ params['hidden']['kernel'] + params['hidden']['bias'])
  return (h @ (params['head']['kernel'] + head_delta))[:, 0]


def head_loss(params, delta):
  """Logistic loss with the last layer's kernel (4, 1) perturbed by δ."""
  return jnp.mean(jax.nn.softplus(-SIGNS * logits(params, X, delta)))


def input_loss(params, delta):
  """Logistic loss with the inputs (5, 3) perturbed by δ."""
  return jnp.mean(jax.nn.softplus(-SIGNS * logits(params, X + delta, 0.0)))


ATTACKS = {
    'head': (head_loss, np.zeros((4, 1), np.float32)),
    'inputs': (input_loss, np.zeros((5, 3), np.float32)),
}


def expected_grads(loss_fn, delta):
  """∇θ L(θ) + ∇θ L(θ; δ), the recipe written out."""
  clean = jax.grad(loss_fn)(PARAMS, jnp.zeros_like(delta))
  adversarial = jax.grad(loss_fn)(PARAMS, jnp.asarray(delta, jnp.float32))
  return jax.tree_util.tree_map(jnp.add, clean, adversarial)


def assert_trees_close(got, want):
  chex.assert_trees_all_equal_shapes_and_dtypes(got, want)
  np.testing.assert_allclose(flat(got), flat(want), rtol=1e-5, atol=1e-6)


def test_mode_none_is_the_clean_gradient():
  loss, grads, info = pt.adversarial_grads(
      head_loss, PARAMS, ATTACKS['head'][1], mode='none', **CONFIG
  )
  zeros = ATTACKS['head'][1]
  np.testing.assert_allclose(loss, head_loss(PARAMS, zeros), rtol=1e-6)
  assert_trees_close(grads, jax.grad(head_loss)(PARAMS, zeros))
  assert set(info) == {'delta_norm', 'pgd'}
  assert float(info['delta_norm']) == 0.0 and float(info['pgd']) == 0.0


@pytest.mark.parametrize('attack', sorted(ATTACKS))
def test_mode_fgm_adds_the_gradient_at_the_fgm_point(attack):
  loss_fn, zeros = ATTACKS[attack]
  g = np.asarray(jax.grad(loss_fn, argnums=1)(PARAMS, zeros), np.float64)
  delta = CONFIG['epsilon'] * g / np.linalg.norm(g)  # eq. 12 by hand
  loss, grads, info = pt.adversarial_grads(
      loss_fn, PARAMS, zeros, mode='fgm', **CONFIG
  )
  np.testing.assert_allclose(loss, loss_fn(PARAMS, zeros), rtol=1e-6)
  assert_trees_close(grads, expected_grads(loss_fn, delta))
  np.testing.assert_allclose(info['delta_norm'], CONFIG['epsilon'], rtol=1e-5)
  assert float(info['pgd']) == 0.0
  assert float(loss_fn(PARAMS, delta.astype(np.float32))) > float(loss)


@pytest.mark.parametrize('attack', sorted(ATTACKS))
def test_mode_pgd_adds_the_gradient_at_the_pgd_point(attack):
  loss_fn, zeros = ATTACKS[attack]

  def numpy_grad(d):
    d = jnp.asarray(d.reshape(zeros.shape), jnp.float32)
    return np.asarray(jax.grad(loss_fn, argnums=1)(PARAMS, d), np.float64)

  delta = numpy_pgd(lambda d: numpy_grad(d).ravel(), numpy_grad(zeros).ravel(),
                    CONFIG['alpha'], CONFIG['radius'], CONFIG['steps'])
  delta = delta.reshape(zeros.shape)
  _, grads, info = pt.adversarial_grads(
      loss_fn, PARAMS, zeros, mode='pgd', **CONFIG
  )
  assert_trees_close(grads, expected_grads(loss_fn, delta))
  np.testing.assert_allclose(info['delta_norm'], np.linalg.norm(delta),
                             rtol=1e-5)
  assert float(info['pgd']) == 1.0


@pytest.mark.parametrize('sigma,mode', [(3.9, 'pgd'), (4.1, 'fgm')])
def test_mode_adaptive_follows_the_switch(sigma, mode):
  zeros = ATTACKS['head'][1]
  run = functools.partial(pt.adversarial_grads, head_loss, PARAMS, zeros,
                          **CONFIG)
  # κ = 1, α = 1/8: PGD below σ = 4, FGM above.
  _, grads, info = run(mode='adaptive', sigma=sigma, kappa=1.0)
  _, want, want_info = run(mode=mode)
  assert_trees_close(grads, want)
  assert float(info['pgd']) == float(want_info['pgd'])
  np.testing.assert_allclose(info['delta_norm'], want_info['delta_norm'],
                             rtol=1e-6)
  np.testing.assert_allclose(info['sigma'], sigma, rtol=1e-6)
  # The two modes differ here, so matching one is a real check.
  other = run(mode={'pgd': 'fgm', 'fgm': 'pgd'}[mode])[1]
  assert np.max(np.abs(flat(other) - flat(want))) > 1e-4


def test_everything_jits_with_a_static_mode():
  step = jax.jit(functools.partial(pt.adversarial_grads, head_loss),
                 static_argnames=('mode', 'steps'))
  zeros = ATTACKS['head'][1]
  for mode in pt.MODES:
    kwargs = {}
    if mode == 'adaptive':
      kwargs = dict(sigma=jnp.float32(3.9), kappa=1.0)
    got = step(PARAMS, zeros, mode=mode, **CONFIG, **kwargs)
    want = pt.adversarial_grads(head_loss, PARAMS, zeros, mode=mode, **CONFIG,
                                **kwargs)
    chex.assert_trees_all_close(got, want, rtol=1e-5, atol=1e-6)
  # One compiled 'adaptive' program takes either branch by the traced σ.
  _, _, info = step(PARAMS, zeros, mode='adaptive', sigma=jnp.float32(4.1),
                    kappa=1.0, **CONFIG)
  assert float(info['pgd']) == 0.0


def test_bad_modes_and_missing_switch_inputs_raise():
  zeros = ATTACKS['head'][1]
  with pytest.raises(ValueError, match="'none', 'fgm', 'pgd', 'adaptive'"):
    pt.adversarial_grads(head_loss, PARAMS, zeros, mode='pgm', **CONFIG)
  with pytest.raises(ValueError, match='sigma and kappa'):
    pt.adversarial_grads(head_loss, PARAMS, zeros, mode='adaptive', **CONFIG)


@pytest.mark.parametrize('mode', ['none', 'fgm', 'pgd'])
def test_has_aux_returns_the_clean_aux_and_the_same_grads(mode):
  """A loss_fn returning (loss, aux): the clean point's aux comes back, the
  gradients are those of the plain loss."""
  def with_aux(params, delta):
    loss = head_loss(params, delta)
    return loss, {'twice': 2 * loss, 'delta_sum': jnp.sum(delta)}

  zeros = ATTACKS['head'][1]
  plain = pt.adversarial_grads(head_loss, PARAMS, zeros, mode=mode, **CONFIG)
  (loss, aux), grads, info = pt.adversarial_grads(
      with_aux, PARAMS, zeros, mode=mode, has_aux=True, **CONFIG)
  np.testing.assert_allclose(loss, plain[0], rtol=1e-6)
  np.testing.assert_allclose(aux['twice'], 2 * plain[0], rtol=1e-6)
  assert float(aux['delta_sum']) == 0.0  # Evaluated at the clean point.
  assert_trees_close(grads, plain[1])
  assert float(info['pgd']) == float(plain[2]['pgd'])
