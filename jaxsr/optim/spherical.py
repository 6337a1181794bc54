"""PULSE's spherical optimizer as an optax transformation (paper 001, §3).

`spherical(inner)` runs any optax transformation (Adam in PULSE) and then
projects the new parameters back onto spheres of the radii they had at
`init`, exactly as PULSE's `SphericalOptimizer.step` does after the inner
torch step:

  radius  r = sqrt(Σ_sphere x² + 1e-9)                 (stored at init)
  project x ← x / sqrt(Σ_sphere x² + 1e-9) · r         (after every update)

so the returned update is `project(params + inner_update) - params` and
`optax.apply_updates` lands on the sphere.

Which elements form one sphere. PULSE's tensors carry (batch, row) in their
first two dimensions and each (batch, row) slice is a sphere: a latent
(B, 18, 512) has 18 spheres per face, a noise map (B, 1, H, W) is one sphere.
Our search variable is one face's (`jaxsr.models.gan_prior`), so
`sphere_axes` names, per leaf, the axes summed over (the others index
separate spheres). It is either

  * a callable `(key_path, leaf) -> spec`, or
  * a single spec for every leaf, or a pytree prefix of the parameters whose
    leaves are specs (a tuple of ints is always read as one spec, never as a
    subtree),

where a spec is an int axis, a tuple of int axes (negative allowed), or
'all' (the whole leaf is one sphere). The default, `latent_sphere_axes`,
is the latent interface's rule: the leaf under key 'z', (rows, dim), has one
sphere per row (axis -1); every other leaf (the noise maps (H, W)) is one
sphere. This reproduces PULSE's grouping on the unbatched variable.

Feasible set: the spheres alone. A latent whose prior is not spherical is
mapped by its prior onto one (the DCGAN's Uniform(-1, 1)^100 is read as
erf(u / sqrt 2) of a Gaussian u that lies on the sphere, jaxsr.models.dcgan;
StyleGAN2's W+ rows as lrelu(u * std + mean), PULSE's mapping).
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

# PULSE adds this inside every square root (SphericalOptimizer.py).
PULSE_EPS = 1e-9

AxesSpec = int | tuple[int, ...] | str
SphereAxes = Callable[[Any, jax.Array], AxesSpec] | AxesSpec | Any


class SphericalState(NamedTuple):
  """radii: per leaf, the initial radius of each sphere, keepdims-shaped (a
  size-1 axis for every axis of the sphere); inner: the inner state."""
  radii: Any
  inner: Any


def latent_sphere_axes(path, leaf) -> AxesSpec:
  """Default grouping for a `gan_prior` latent: 'z' rows, whole noise maps."""
  del leaf
  if path and isinstance(path[0], jax.tree_util.DictKey) and path[0].key == 'z':
    return -1
  return 'all'


class _Boxed:
  """A spec held as one pytree leaf (an unregistered class)."""
  __slots__ = ('spec',)

  def __init__(self, spec):
    self.spec = spec


def _is_spec(x) -> bool:
  if isinstance(x, (int, str)):
    return True
  return isinstance(x, tuple) and bool(x) and all(isinstance(a, int) for a in x)


def _axes(spec: AxesSpec, leaf, where: str) -> tuple[int, ...]:
  """A spec for `leaf` as sorted non-negative axes; a clear error if bad."""
  ndim = jnp.ndim(leaf)
  if spec == 'all':
    if ndim == 0:
      raise ValueError(f'{where}: a scalar leaf cannot be a sphere')
    return tuple(range(ndim))
  axes = (spec,) if isinstance(spec, int) else spec
  if not _is_spec(axes) or isinstance(axes, str):
    raise ValueError(f"{where}: sphere axes must be an int, a tuple of ints or "
                     f"'all', got {spec!r}")
  if any(not -ndim <= a < ndim for a in axes):
    raise ValueError(f'{where}: sphere axes {axes} out of range for a leaf of '
                     f'shape {jnp.shape(leaf)}')
  norm = tuple(sorted({a % ndim for a in axes}))
  if len(norm) != len(axes):
    raise ValueError(f'{where}: repeated sphere axes {axes}')
  return norm


def leaf_axes(params, sphere_axes: SphereAxes = latent_sphere_axes) -> list:
  """Per leaf of `params` (flattening order), the axes of its spheres."""
  flat, _ = jax.tree_util.tree_flatten_with_path(params)
  if callable(sphere_axes):
    specs = [sphere_axes(p, x) for p, x in flat]
  else:
    # Broadcast the prefix over the parameters, each spec boxed so that
    # tuples of ints stay leaves.
    full = jax.tree.map(
        lambda spec, sub: jax.tree.map(lambda _: _Boxed(spec), sub),
        sphere_axes, params, is_leaf=_is_spec)
    specs = [b.spec for b in jax.tree.leaves(full)]
  return [_axes(s, x, jax.tree_util.keystr(p))
          for s, (p, x) in zip(specs, flat)]


def radii(params, sphere_axes: SphereAxes = latent_sphere_axes):
  """PULSE's radius sqrt(Σ x² + 1e-9) of every sphere, keepdims-shaped."""
  leaves, treedef = jax.tree.flatten(params)
  out = [jnp.sqrt(jnp.sum(jnp.square(x), axis=a, keepdims=True) + PULSE_EPS)
         for x, a in zip(leaves, leaf_axes(params, sphere_axes))]
  return jax.tree.unflatten(treedef, out)


def _project_leaf(x: jax.Array, r: jax.Array) -> jax.Array:
  if r.ndim != x.ndim:
    raise ValueError(f'radius of shape {r.shape} does not match a leaf of '
                     f'shape {x.shape}')
  # A size-1 radius axis is summed over; where the leaf is also size 1 the
  # sum is the same either way, so the axes are recovered exactly.
  axes = tuple(i for i in range(x.ndim) if r.shape[i] == 1)
  norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=axes, keepdims=True)
                  + PULSE_EPS)
  return x / norm * r


def project(tree, radii_tree):
  """Each sphere of `tree` onto radius `radii_tree` (as `radii` returns them).

  Args:
    tree: parameters (any pytree of float arrays).
    radii_tree: same structure; each leaf keepdims-shaped, size 1 along the
      axes of a sphere.

  Returns:
    The projected tree (PULSE: x / sqrt(Σ x² + 1e-9) · r).
  """
  return jax.tree.map(_project_leaf, tree, radii_tree)


def spherical(inner: optax.GradientTransformation,
              sphere_axes: SphereAxes = latent_sphere_axes
              ) -> optax.GradientTransformation:
  """PULSE's SphericalOptimizer around `inner` (see the module docstring).

  Args:
    inner: the update rule (e.g. `optax.adam(linear1cycledrop(0.4, 100))`).
    sphere_axes: which axes of each leaf form one sphere.

  Returns:
    A transformation whose `update` needs `params`; the radii are fixed at
    `init` and kept in the state.
  """
  def init_fn(params):
    return SphericalState(radii(params, sphere_axes), inner.init(params))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError('spherical: update needs params (the projection is '
                       'of params + update)')
    inner_updates, inner_state = inner.update(updates, state.inner, params)
    new = project(optax.apply_updates(params, inner_updates), state.radii)
    updates = jax.tree.map(lambda n, p: (n - p).astype(p.dtype), new, params)
    return updates, SphericalState(state.radii, inner_state)

  return optax.GradientTransformation(init_fn, update_fn)
