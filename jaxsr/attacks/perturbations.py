"""FGM and PGD perturbations over pytrees, and the adaptive switch (paper 004).

Adversarial training of a discriminator (Tang et al., §2.2, §4.2-4.3,
Algorithm 1) perturbs either its last ("embedding") layer's weights or its
inputs by an additive δ inside an L2 ball, and trains on the clean gradient
plus the gradient at the perturbed point (the NLP adversarial-training
recipe: ∇L(θ) + ∇L(θ; δ)). Every norm here is the global L2 norm over all
the leaves of a pytree together.

  * FGM (eq. 12): δ = ε g / ‖g‖, the maximizer of ⟨δ, g⟩ over ‖δ‖ ≤ ε.
  * PGD (eq. 13, Algorithm 1): δ₁ = Π_r(α v₀), δ_t = Π_r(δ_{t-1} + α v_{t-1})
    for t = 2..T, with v_t = g_t / ‖g_t‖ and g_t the gradient at δ_t.
  * The switch (§4.3): PGD when σ_max(W) < κ / (2α), else FGM, with W the
    attacked layer's weight as a matrix.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp

PyTree = Any
MODES = ('none', 'fgm', 'pgd', 'adaptive')


def global_norm(tree: PyTree) -> jax.Array:
  """The L2 norm of all leaves of a pytree together, a float32 scalar."""
  leaves = jax.tree_util.tree_leaves(tree)
  squares = [jnp.sum(jnp.square(jnp.asarray(x, jnp.float32))) for x in leaves]
  return jnp.sqrt(sum(squares, jnp.zeros((), jnp.float32)))


def scale_tree(tree: PyTree, factor: jax.Array) -> PyTree:
  """Every leaf times a scalar factor, each leaf keeping its dtype."""
  return jax.tree_util.tree_map(
      lambda x: (x * factor).astype(jnp.result_type(x)), tree
  )


def fgm(grad: PyTree, epsilon: float) -> PyTree:
  """ε g / ‖g‖ for a gradient pytree g (eq. 12); zero where g is zero."""
  norm = global_norm(grad)
  # A zero gradient has no ascent direction: δ = 0 rather than 0/0 = NaN.
  safe = jnp.where(norm > 0, norm, 1.0)
  return scale_tree(grad, jnp.where(norm > 0, epsilon / safe, 0.0))


def project_l2(delta: PyTree, radius: float) -> PyTree:
  """Π_r(δ): δ scaled by min(1, r / ‖δ‖), the nearest point of the r-ball."""
  norm = global_norm(delta)
  safe = jnp.where(norm > 0, norm, 1.0)
  return scale_tree(delta, jnp.minimum(1.0, radius / safe))


def pgd(
    grad_fn: Callable[[PyTree], PyTree],
    grad0: PyTree,
    *,
    alpha: float,
    radius: float,
    steps: int,
) -> PyTree:
  """PGD's δ_T (eq. 13, Algorithm 1), a pytree shaped like grad0.

  Args:
    grad_fn: δ -> ∇_δ L at δ, a pytree shaped like δ.
    grad0: ∇_δ L at δ = 0, already computed by the caller (g₀).
    alpha: the step size α; each step moves by α along v = g / ‖g‖.
    radius: r of the L2 ball every iterate is projected onto.
    steps: T ≥ 1, a Python int; T = 1 gives Π_r(α g₀ / ‖g₀‖) and evaluates
      grad_fn T - 1 times.

  Returns:
    δ_T, with ‖δ_T‖ ≤ r.
  """
  if not isinstance(steps, int) or steps < 1:
    raise ValueError(f'steps must be a Python int >= 1, got {steps!r}')
  # α v = fgm(g, α): a step of length α along the normalized gradient.
  delta = project_l2(fgm(grad0, alpha), radius)  # δ₁ = Π_r(α v₀)
  if steps == 1:
    return delta

  # Unrolled (T is small): XLA:CPU runs a rolled loop of convolutions ~5x
  # slower than the same ops unrolled (benchmarks/RESULTS.md, SinGAN).
  for _ in range(1, steps):
    # δ_t = Π_r(δ_{t-1} + α v_{t-1}), v_{t-1} from the gradient at δ_{t-1}.
    ascent = fgm(grad_fn(delta), alpha)
    delta = project_l2(jax.tree_util.tree_map(jnp.add, delta, ascent), radius)
  return delta


def kernel_matrix(kernel: jax.Array) -> jax.Array:
  """A kernel as PyTorch's weight.view(out, -1): (out, in·kh·kw) float32.

  A Flax conv kernel (kh, kw, in, out) is first transposed to PyTorch's OIHW
  (out, in, kh, kw), so columns run over (in, kh, kw) in that order; a Dense
  kernel (in, out) becomes PyTorch's Linear weight (out, in).
  """
  kernel = jnp.asarray(kernel, jnp.float32)
  if kernel.ndim == 2:
    return kernel.T
  if kernel.ndim == 4:
    return jnp.transpose(kernel, (3, 2, 0, 1)).reshape(kernel.shape[3], -1)
  raise ValueError(
      'expected a Dense kernel (in, out) or a conv kernel (kh, kw, in, out), '
      f'got shape {kernel.shape}'
  )


def normalize(x: jax.Array) -> jax.Array:
  """x / ‖x‖ for a vector x (n,); a zero vector stays zero."""
  norm = jnp.linalg.norm(x)
  return x / jnp.where(norm > 0, norm, 1.0)


def top_singular_value(
    matrix: jax.Array, u: jax.Array, iters: int
) -> tuple[jax.Array, jax.Array]:
  """Power iteration on M (m, n) from a unit u (m,) -> (σ scalar, new u (m,)).

  Each of the `iters` ≥ 1 iterations is v = normalize(Mᵀu),
  u = normalize(M v); then σ = uᵀ M v, a lower bound of σ_max(M) that
  converges to it. Keep the returned u to warm-start the next call.
  """
  if not isinstance(iters, int) or iters < 1:
    raise ValueError(f'iters must be a Python int >= 1, got {iters!r}')
  matrix = jnp.asarray(matrix, jnp.float32)
  if matrix.ndim != 2:
    raise ValueError(f'expected a 2-D matrix, got shape {matrix.shape}')
  if u.shape != (matrix.shape[0],):
    raise ValueError(
        f'u must have shape ({matrix.shape[0]},) for a matrix {matrix.shape}, '
        f'got {u.shape}'
    )

  def iterate(_, uv):
    v = normalize(matrix.T @ uv[0])
    return normalize(matrix @ v), v

  v0 = jnp.zeros((matrix.shape[1],), jnp.float32)
  u, v = jax.lax.fori_loop(
      0, iters, iterate, (jnp.asarray(u, jnp.float32), v0)
  )
  return u @ (matrix @ v), u


def use_pgd(sigma: jax.Array, kappa: float, alpha: float) -> jax.Array:
  """Algorithm 1's switch: σ < κ / (2α), a bool scalar (True: PGD)."""
  return jnp.asarray(sigma) < kappa / (2.0 * alpha)


def adversarial_grads(
    loss_fn: Callable[[PyTree, PyTree], jax.Array],
    params: PyTree,
    delta0: PyTree,
    *,
    mode: str,
    epsilon: float,
    alpha: float,
    radius: float,
    steps: int,
    sigma: jax.Array | None = None,
    kappa: float | None = None,
    has_aux: bool = False,
) -> tuple[Any, PyTree, dict[str, jax.Array]]:
  """The clean loss and ∇L(θ) + ∇L(θ; δ) (δ by `mode`), grads shaped like θ.

  Args:
    loss_fn: (params, δ) -> scalar loss, δ an additive perturbation shaped
      like delta0 that loss_fn adds where it belongs (the last layer's kernel
      or the discriminator's inputs).
    params: θ, the pytree the gradients are taken for.
    delta0: zeros shaped like the attacked pytree (the unperturbed point).
    mode: 'none' (clean gradient only), 'fgm' (eq. 12), 'pgd' (eq. 13) or
      'adaptive' (Algorithm 1: PGD when σ < κ / (2α), else FGM).
    epsilon: FGM's radius ε.
    alpha: PGD's step size α (also in the switch's threshold).
    radius: PGD's ball radius r.
    steps: PGD's number of steps T ≥ 1, a Python int.
    sigma: the attacked layer's σ_max; required for 'adaptive'.
    kappa: the switch's κ; required for 'adaptive'.
    has_aux: loss_fn returns (loss, aux); the clean point's aux is returned.

  Returns:
    (loss, grads, info): the clean loss at delta0 ((loss, aux) with
    has_aux), the gradient pytree, and
    float32 scalars 'delta_norm' (‖δ‖, 0 for 'none'), 'pgd' (1 if PGD was
    used) and 'sigma' (only when sigma is given).
  """
  if mode not in MODES:
    raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
  if mode == 'adaptive' and (sigma is None or kappa is None):
    raise ValueError(
        f"mode 'adaptive' needs sigma and kappa, got sigma={sigma!r}, "
        f'kappa={kappa!r}'
    )
  loss, (grads, grad_delta) = jax.value_and_grad(
      loss_fn, argnums=(0, 1), has_aux=has_aux)(params, delta0)
  info = {}
  if sigma is not None:
    info['sigma'] = jnp.asarray(sigma, jnp.float32)
  if mode == 'none':
    info['delta_norm'] = jnp.zeros((), jnp.float32)
    info['pgd'] = jnp.zeros((), jnp.float32)
    return loss, grads, info

  def grad_fn(delta):
    grad = jax.grad(loss_fn, argnums=1, has_aux=has_aux)(params, delta)
    return grad[0] if has_aux else grad

  def pgd_delta():
    return pgd(grad_fn, grad_delta, alpha=alpha, radius=radius, steps=steps)

  def fgm_delta():
    return fgm(grad_delta, epsilon)

  if mode == 'fgm':
    delta, used_pgd = fgm_delta(), jnp.zeros((), bool)
  elif mode == 'pgd':
    delta, used_pgd = pgd_delta(), jnp.ones((), bool)
  else:
    used_pgd = use_pgd(sigma, kappa, alpha)
    delta = jax.lax.cond(used_pgd, pgd_delta, fgm_delta)
  # The NLP recipe (prior-art §5.3): add the gradient at (θ, δ) to the clean.
  adversarial = jax.grad(loss_fn, has_aux=has_aux)(params, delta)
  if has_aux:
    adversarial = adversarial[0]
  grads = jax.tree_util.tree_map(jnp.add, grads, adversarial)
  info['delta_norm'] = global_norm(delta)
  info['pgd'] = used_pgd.astype(jnp.float32)
  return loss, grads, info
