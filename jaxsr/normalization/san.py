"""Sparsity aware normalization (SAN, Kligvasser & Michaeli, AAAI 2021).

A conv layer W is divided by ‖W‖₀,∞ (eq. 6): the largest L2 norm of one
output channel over inputs with a single nonzero channel of L2 norm ≤ 1. For
cyclic padding, Lemma 1 (eq. 8) gives ‖W‖₀,∞ = max_{i,j} ‖F{w_ij}‖_∞, the
largest |DFT| over all (in, out) kernel pairs zero-padded to the input's
H×W. FC layers are divided by their top singular value ("Efficiency").

How the official code (`kligvasser/SANGAN`,
`super-resolution/models/modules/sparse.py`, prior-art §3.1) applies it, and
so how this module does: as a weight reparametrization in the forward pass,
not as an in-place projection. Every forward of `SparseCirConv2d` convolves
with `weight / s`; the parameter `weight` itself is never rescaled. The scale
`s = momentum·s + (1 − momentum)·(max|FFT|·gain + eps)` is a buffer computed
under `torch.no_grad`, so the gradient reaches `weight` as grad / s and
nothing flows through s. It is refreshed only in training mode and only
every `update_rate` (2) forward calls; otherwise, and at eval, the stored s
is reused. Biases are passed to `F.conv2d` unchanged. The FC head uses
`torch.nn.utils.spectral_norm` (one power iteration, gradient through σ; see
`spectral.py` and `models/layers.py`).

Here the same maps are pure functions over parameter pytrees:
`normalize(params, spatial_shapes, state, key) -> (normalized, state)` and
`maybe_normalize(step, every, ...)` (refresh every N steps, paper Fig. 6, the
official `update_rate`). Use the normalized tree only in D's forward and
differentiate w.r.t. the raw tree (the official form). Writing the
normalized tree back as the new parameters (a projection after each step)
is the other reading of "normalizes the weights after every update step";
with momentum 0 both give a D with ‖W‖₀,∞ = 1, but the gradient differs by
1/s. `SanState.scales` holds the running s per layer (what the official
buffer holds); `init_state` starts it at 1 like the buffer.

Departures kept as options: `legacy_rownorm=True` reproduces what the
released code computes with PyTorch ≥ 1.7 (`torch.fft.fft2` then
`norm(dim=-1)`: an L2 norm over the last frequency axis, up to √W times
max|FFT|, and with H and W swapped for non-square inputs);
`subset='channels'` samples `rate` of the output and of the input channels as
the official `ApproxSparse` does (≈ rate² of the pairs), `'pairs'` samples
ratio r of the pairs as the paper describes.
"""

import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxsr.normalization import spectral

PyTree = Any
SpatialShapes = Mapping[str, tuple[int, int]]
_SUBSETS = ('pairs', 'channels')


# ‖W‖₀,∞ of one conv kernel (Lemma 1).


def _pair_maxima(
    pairs: jax.Array, spatial_shape: tuple[int, int], legacy_rownorm: bool
) -> jax.Array:
  """Per-pair normalization values of kernels (kh, kw, P) -> (P,) float32."""
  kh, kw = pairs.shape[:2]
  h, w = spatial_shape
  if not legacy_rownorm:
    # Eq. 8: max |DFT| of each w_ij zero-padded to H×W. A real kernel's DFT
    # is Hermitian (|F(-u,-v)| = |F(u,v)|), so the rfft2 half spectrum holds
    # the maximum at half the memory.
    spectrum = jnp.fft.rfft2(pairs, s=(h, w), axes=(0, 1))
    return jnp.max(jnp.abs(spectrum), axis=(0, 1))
  # The released code: F.pad(weight (O, I, kh, kw), (0, H - kh, 0, W - kw))
  # pads kw to kw + H - kh and kh to kh + W - kw (H and W swapped), then
  # fft2 and an L2 norm over the last (kw) frequency axis v:
  # r(u) = sqrt(Σ_v |F(u, v)|²). By Parseval along v, whose padded columns
  # are zero, r(u)² = L_v · Σ_b |G(u, b)|² with G the 1-D DFT along kh only;
  # r(-u) = r(u) for a real kernel, so rfft along kh suffices.
  len_u = kh + w - kw
  len_v = kw + h - kh
  g = jnp.fft.rfft(pairs, n=len_u, axis=0)
  r = jnp.sqrt(len_v * jnp.sum(jnp.square(jnp.abs(g)), axis=1))
  return jnp.max(r, axis=0)


def conv_norm(
    kernel: jax.Array, spatial_shape: tuple[int, int], *,
    legacy_rownorm: bool = False,
) -> jax.Array:
  """‖W‖₀,∞ of a conv kernel (kh, kw, cin, cout) on (H, W) inputs, a scalar.

  Lemma 1: max over (in i, out j) of max |FFT2(w_ij zero-padded to H×W)|.
  Exact for stride 1 with cyclic padding; for a strided conv (a subsampled
  stride-1 conv) it is an upper bound, and is what the official code uses.
  `legacy_rownorm=True` returns the released code's value instead (module
  docstring), which is ≥ the exact one.

  kernel is (kh, kw, cin, cout) (Flax layout), spatial_shape the (H, W) of
  the layer's input before padding; returns a float32 scalar.
  """
  kernel = jnp.asarray(kernel, jnp.float32)
  h, w = spectral.check_conv_kernel(kernel, spatial_shape)
  kh, kw, cin, cout = kernel.shape
  pairs = kernel.reshape(kh, kw, cin * cout)
  return jnp.max(_pair_maxima(pairs, (h, w), legacy_rownorm))


def fc_norm(kernel: jax.Array) -> jax.Array:
  """Top singular value of a Dense kernel (in, out), exact (SVD), a scalar.

  FC matrices of a critic are small (the SAN-SR head is 8192×64), so the
  exact SVD costs little and, unlike one power-iteration step per call
  (Miyato; `spectral.spectral_norm_estimate`), needs no persistent vector.
  """
  return spectral.top_singular_value(kernel)


# The random-subset estimate and its compensation g (eq. 9).


def harmonic_number(n: int) -> float:
  """H_n = Σ_{j=1}^{n} 1/j (n ≥ 1): the mean max of n iid Exp(1) draws."""
  if n < 1:
    raise ValueError(f'harmonic_number needs n >= 1, got {n}')
  return float(np.sum(1.0 / np.arange(1, n + 1, dtype=np.float64)))


def compensation_for_count(num_sampled: int, num_filters: int) -> float:
  """g = H_{m·n} / H_k for k of the m·n filters sampled (eq. 9)."""
  if not 1 <= num_sampled <= num_filters:
    raise ValueError(
        f'the sampled count must be in [1, {num_filters}], got {num_sampled}'
    )
  # Eq. 9's sums Σ_j 1/(N - j + 1) are H_N read backwards. If the top
  # Fourier values are iid exponential, E[max of N] = H_N / λ, so
  # E[max over all] / E[max over the subset] = H_{mn} / H_k.
  return harmonic_number(num_filters) / harmonic_number(num_sampled)


def compensation(r: float, num_filters: int) -> float:
  """Eq. 9's g for ratio r of num_filters = m·n filters (≈1.18, r=.25, 64²)."""
  if not 0.0 < r <= 1.0:
    raise ValueError(f'the ratio r must be in (0, 1], got {r}')
  # The guard keeps e.g. 0.1 * 30 = 3.0000000000000004 from rounding up.
  k = max(1, math.ceil(num_filters * r - 1e-9))
  return compensation_for_count(min(k, num_filters), num_filters)


def num_sampled_pairs(cin: int, cout: int, ratio: float, subset: str) -> int:
  """How many (in, out) pairs `sample_filter_pairs` draws, a Python int."""
  _check_subset(ratio, subset)
  if subset == 'pairs':
    return min(cin * cout, max(1, math.ceil(cin * cout * ratio - 1e-9)))
  # ApproxSparse: int(size * rate) channels of each side; never 0 here.
  return max(1, int(cin * ratio)) * max(1, int(cout * ratio))


def sample_filter_pairs(
    key: jax.Array, cin: int, cout: int, ratio: float, subset: str = 'pairs'
) -> tuple[jax.Array, jax.Array]:
  """Random (in, out) filter pairs -> two int32 index arrays (k,), k fixed.

  subset='pairs': ceil(cin·cout·ratio) distinct pairs, uniformly (paper).
  subset='channels': int(ratio·cout) outputs × int(ratio·cin) inputs, each by
  a random permutation (official `ApproxSparse`, whose `rate` is `ratio`).
  """
  k = num_sampled_pairs(cin, cout, ratio, subset)
  if subset == 'pairs':
    flat = jax.random.permutation(key, cin * cout)[:k]
    return flat // cout, flat % cout
  key_in, key_out = jax.random.split(key)
  k_in, k_out = max(1, int(cin * ratio)), max(1, int(cout * ratio))
  ins = jax.random.permutation(key_in, cin)[:k_in]
  outs = jax.random.permutation(key_out, cout)[:k_out]
  return jnp.repeat(ins, k_out), jnp.tile(outs, k_in)


def subset_conv_norm(
    kernel: jax.Array, spatial_shape: tuple[int, int], key: jax.Array, *,
    ratio: float, subset: str = 'pairs', legacy_rownorm: bool = False,
) -> jax.Array:
  """Lemma 1's max over a random subset of pairs only (no g), a scalar."""
  kernel = jnp.asarray(kernel, jnp.float32)
  h, w = spectral.check_conv_kernel(kernel, spatial_shape)
  ins, outs = sample_filter_pairs(
      key, kernel.shape[2], kernel.shape[3], ratio, subset
  )
  # Only the sampled pairs are transformed: the memory the paper saves.
  pairs = kernel[:, :, ins, outs]
  return jnp.max(_pair_maxima(pairs, (h, w), legacy_rownorm))


def san_scale(
    kernel: jax.Array,
    spatial_shape: tuple[int, int],
    key: jax.Array | None = None,
    *,
    ratio: float = 1.0,
    subset: str = 'pairs',
    gain: float | None = None,
    eps: float = 1e-8,
    legacy_rownorm: bool = False,
) -> jax.Array:
  """SAN's divisor max·gain + eps of a conv kernel, without gradient, scalar.

  gain=None uses eq. 9's g for the sampled count (1 for ratio 1); a number
  is used as is, like the official `gain` (1.2 for ApproxSparse, 1.05 in
  the README's SAN-SR critic). key is needed when ratio < 1.
  """
  kernel = jax.lax.stop_gradient(jnp.asarray(kernel, jnp.float32))
  _check_subset(ratio, subset)
  cin, cout = kernel.shape[2], kernel.shape[3]
  k = num_sampled_pairs(cin, cout, ratio, subset)
  if k == cin * cout:
    peak = conv_norm(kernel, spatial_shape, legacy_rownorm=legacy_rownorm)
  else:
    if key is None:
      raise ValueError(f'ratio {ratio} < 1 samples filters and needs a key')
    peak = subset_conv_norm(
        kernel, spatial_shape, key, ratio=ratio, subset=subset,
        legacy_rownorm=legacy_rownorm,
    )
  if gain is None:
    gain = compensation_for_count(k, cin * cout)
  return peak * gain + eps


def san_kernel(
    kernel: jax.Array, spatial_shape: tuple[int, int], **kwargs
) -> jax.Array:
  """kernel (kh, kw, cin, cout) / stop_gradient(san_scale): for a forward."""
  return kernel / san_scale(kernel, spatial_shape, **kwargs).astype(
      kernel.dtype
  )


# Pure transforms over a parameter pytree.


class SanState(NamedTuple):
  """Running divisors, a nested dict {module path...: float32 scalar}."""

  scales: PyTree


def _key_name(entry) -> str:
  """One tree-path entry (DictKey, GetAttrKey, SequenceKey) as a string."""
  for attr in ('key', 'name', 'idx'):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def _module_path(path) -> str | None:
  """'a/b' for the leaf path (a, b, 'kernel'); None for other leaves."""
  if not path or _key_name(path[-1]) != 'kernel':
    return None
  return '/'.join(_key_name(p) for p in path[:-1])


def kernels(params: PyTree) -> dict[str, jax.Array]:
  """{'/'-joined module path: kernel} for every 'kernel' leaf of params."""
  out = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    name = _module_path(path)
    if name is not None:
      out[name] = leaf
  return out


def _layers(params, spatial_shapes, dense) -> tuple[list[str], list[str]]:
  """The conv (4-D) and Dense (2-D) kernel paths to normalize."""
  found = kernels(params)
  convs = [p for p, k in found.items() if jnp.ndim(k) == 4]
  denses = [p for p, k in found.items() if jnp.ndim(k) == 2] if dense else []
  missing = [c for c in convs if c not in spatial_shapes]
  if missing:
    raise ValueError(
        f'spatial_shapes has no (H, W) for the conv layers {missing}; it has '
        f'{sorted(spatial_shapes)} (see models.layers.conv_input_shapes)'
    )
  return convs, denses


def _nest(flat: Mapping[str, jax.Array]) -> dict:
  """{'a/b': x} -> {'a': {'b': x}} (orbax-safe keys)."""
  return traverse_util.unflatten_dict(
      {tuple(k.split('/')): v for k, v in flat.items()}
  )


def _flat(scales: PyTree) -> dict[str, jax.Array]:
  """Inverse of _nest."""
  flat = traverse_util.flatten_dict(dict(scales))
  return {'/'.join(k): v for k, v in flat.items()}


def init_state(
    params: PyTree, spatial_shapes: SpatialShapes, *, dense: bool = True
) -> SanState:
  """All divisors 1, as the official buffer `s = torch.ones(1)`."""
  convs, denses = _layers(params, spatial_shapes, dense)
  return SanState(_nest({p: jnp.ones((), jnp.float32) for p in convs + denses}))


def update_scales(
    params: PyTree,
    spatial_shapes: SpatialShapes,
    state: SanState,
    key: jax.Array | None = None,
    *,
    ratio: float = 1.0,
    subset: str = 'pairs',
    gain: float | None = None,
    momentum: float = 0.0,
    eps: float = 1e-8,
    legacy_rownorm: bool = False,
    dense: bool = True,
) -> SanState:
  """Recomputes every divisor from the current params -> the new SanState.

  Conv: s ← momentum·s + (1 − momentum)·san_scale (official `W_`; momentum
  0 by default, 0.8–0.9 in ApproxSparse). Dense: s = top singular value
  (no gain or momentum, as torch's spectral_norm). The key, when sampling,
  is folded with the layer's index so layers draw different subsets.
  """
  convs, denses = _layers(params, spatial_shapes, dense)
  found = kernels(params)
  old = _flat(state.scales)
  if set(old) != set(convs + denses):
    raise ValueError(
        f'the state holds {sorted(old)} but the params have '
        f'{sorted(convs + denses)}; build it with init_state'
    )
  new = {}
  for i, path in enumerate(convs):
    layer_key = None if key is None else jax.random.fold_in(key, i)
    s = san_scale(
        found[path], spatial_shapes[path], layer_key, ratio=ratio,
        subset=subset, gain=gain, eps=eps, legacy_rownorm=legacy_rownorm,
    )
    new[path] = momentum * old[path] + (1.0 - momentum) * s
  for path in denses:
    sigma = fc_norm(jax.lax.stop_gradient(found[path]))
    new[path] = jnp.where(sigma > 0, sigma, 1.0)
  return SanState(_nest(new))


def apply_scales(params: PyTree, state: SanState) -> PyTree:
  """Divides each kernel named in state by stop_gradient(its s); rest as is.

  Biases (and batch-norm scales) are unchanged, as in the official code.
  """
  scales = _flat(state.scales)

  def divide(path, leaf):
    name = _module_path(path)
    if name not in scales:
      return leaf
    s = jax.lax.stop_gradient(scales[name])
    return leaf / s.astype(leaf.dtype)

  return jax.tree_util.tree_map_with_path(divide, params)


def normalize(
    params: PyTree,
    spatial_shapes: SpatialShapes,
    state: SanState,
    key: jax.Array | None = None,
    **kwargs,
) -> tuple[PyTree, SanState]:
  """SAN on a pytree: (params with W / s, new state), s refreshed now.

  Every 4-D 'kernel' needs its input (H, W) in spatial_shapes under its
  '/'-joined module path relative to params (e.g. 'block_0/conv1'); every
  2-D 'kernel' is divided by its top singular value (dense=False skips
  them). kwargs: ratio, subset, gain, momentum, eps, legacy_rownorm, dense
  (see update_scales, san_scale). The divisors carry no gradient.
  """
  state = update_scales(params, spatial_shapes, state, key, **kwargs)
  return apply_scales(params, state), state


def maybe_normalize(
    step: jax.Array | int,
    every: int,
    params: PyTree,
    spatial_shapes: SpatialShapes,
    state: SanState,
    key: jax.Array | None = None,
    **kwargs,
) -> tuple[PyTree, SanState]:
  """As normalize, but s is refreshed only when step % every == 0 (Fig. 6).

  Between refreshes the stored s is reused, as the official `update_rate`
  does; step may be traced (lax.cond), every is a Python int ≥ 1.
  """
  if every < 1:
    raise ValueError(f'every must be at least 1, got {every}')
  if every == 1:
    return normalize(params, spatial_shapes, state, key, **kwargs)
  state = jax.lax.cond(
      jnp.asarray(step) % every == 0,
      lambda s: update_scales(params, spatial_shapes, s, key, **kwargs),
      lambda s: s,
      state,
  )
  return apply_scales(params, state), state


def _check_subset(ratio: float, subset: str) -> None:
  """Validates the sampling options."""
  if subset not in _SUBSETS:
    raise ValueError(f'subset must be one of {_SUBSETS}, got {subset!r}')
  if not 0.0 < ratio <= 1.0:
    raise ValueError(f'the ratio must be in (0, 1], got {ratio}')
