"""Conv and Dense layers for critics: circular padding, SAN / spectral norms.

`CircularConv` pads its NHWC input cyclically (`jnp.pad(mode='wrap')`, as
PyTorch's `F.pad(mode='circular')` in the official `SparseCirConv2d`) and
then convolves without padding: Lemma 1 of the SAN paper assumes cyclic
padding. `NormalizedConv` and `NormalizedDense` divide their kernel in the
forward pass, chosen by `norm`:

  * 'san': by stop_gradient(s), s = ‖W‖₀,∞·gain + eps for convs (eq. 8 on
    the input's H×W) and the exact top singular value for Dense layers.
    s lives in the 'san' collection; `update_stats=True` (with 'san'
    mutable) refreshes it from the current kernel, otherwise the stored s is
    used, as the official `Sparse.W_` in training / eval mode.
  * 'spectral': by Miyato's σ from one power iteration on the (kh·kw·cin,
    cout) reshape, gradient through σ (torch's spectral_norm). The vector u
    lives in the 'spectral' collection and is stored when
    `update_stats=True`.
  * 'none': the kernel as is.

One departure from the official buffer (which starts at 1 and is first
set by the first training call): 'san' stores the exact s at init, so a
freshly initialized layer is already normalized. With the official default
momentum 0 the two agree from the first training call on.

Parameters are 'kernel' (kh, kw, cin, cout) or (in, out) and 'bias', so a
pytree of plain `CircularConv` / `nn.Dense` layers can instead be normalized
as a whole by `normalization.san.normalize`, with the (H, W) of every conv
from `conv_input_shapes`; use one mechanism or the other, not both.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from jaxsr.normalization import san
from jaxsr.normalization import spectral

Initializer = jax.nn.initializers.Initializer
Padding = int | Sequence[tuple[int, int]] | None
_NORMS = ('san', 'spectral', 'none')


def circular_padding(
    padding: Padding, kernel_size: Sequence[int]
) -> tuple[tuple[int, int], tuple[int, int]]:
  """((top, bottom), (left, right)) from an int, explicit pairs or None.

  None splits k − 1 as ((k − 1) // 2, k // 2), 'SAME' for stride 1; an int p
  pads p on every side, as PyTorch's `padding=p` (the official 4×4 stride-2
  convs use p = 1, mapping S to S / 2).
  """
  if padding is None:
    return tuple(((k - 1) // 2, k // 2) for k in kernel_size)
  if isinstance(padding, int):
    return ((padding, padding), (padding, padding))
  pads = tuple(tuple(int(p) for p in pair) for pair in padding)
  if len(pads) != 2 or any(len(p) != 2 for p in pads):
    raise ValueError(
        f'padding must be ((top, bottom), (left, right)), got {padding}'
    )
  return pads


def circular_conv(
    x: jax.Array,
    kernel: jax.Array,
    strides: Sequence[int] = (1, 1),
    padding: Padding = None,
) -> jax.Array:
  """x (N, H, W, cin) ⋆ kernel (kh, kw, cin, cout), wrapped -> (N, H', W', co).

  A cross-correlation like nn.Conv: y[n, p, q, o] = Σ x[n, (s·p + a − t) mod H,
  (s·q + b − l) mod W, i] · k[a, b, i, o] with (t, l) the top/left padding.
  """
  (t, b), (l, r) = circular_padding(padding, kernel.shape[:2])
  if max(t, b) > x.shape[1] or max(l, r) > x.shape[2]:
    raise ValueError(
        f'circular padding {((t, b), (l, r))} exceeds the input '
        f'{x.shape[1]}x{x.shape[2]}'
    )
  x = jnp.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), mode='wrap')
  return jax.lax.conv_general_dilated(
      x, kernel, tuple(strides), 'VALID',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
  )


class CircularConv(nn.Module):
  """Conv with circular padding: (N, H, W, cin) -> (N, H', W', features)."""

  features: int
  kernel_size: tuple[int, int] = (3, 3)
  strides: tuple[int, int] = (1, 1)
  padding: Padding = None
  use_bias: bool = True
  dtype: DTypeLike | None = None
  param_dtype: DTypeLike = jnp.float32
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros_init()

  def _kernel(self, cin: int) -> jax.Array:
    """The 'kernel' parameter (kh, kw, cin, features)."""
    return self.param(
        'kernel', self.kernel_init,
        (*self.kernel_size, cin, self.features), self.param_dtype,
    )

  def _conv(self, x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Wrapped conv plus bias in self.dtype (default: x's and the params')."""
    bias = (
        self.param('bias', self.bias_init, (self.features,), self.param_dtype)
        if self.use_bias else None
    )
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = circular_conv(x, kernel, self.strides, self.padding)
    return y if bias is None else y + bias

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """(N, H, W, cin) -> (N, H', W', features)."""
    _check_nhwc(x)
    return self._conv(x, self._kernel(x.shape[-1]))


class NormalizedConv(CircularConv):
  """CircularConv whose kernel is divided by a SAN / spectral / no norm."""

  norm: str = 'san'
  gain: float | None = None  # SAN: eq. 9's g when None (1 at ratio 1).
  ratio: float = 1.0  # SAN: fraction of (in, out) filters sampled.
  subset: str = 'pairs'  # SAN: 'pairs' (paper) or 'channels' (official).
  momentum: float = 0.0  # SAN: running s, as the official buffer.
  eps: float = 1e-8  # SAN: added to s (official); spectral uses 1e-12.
  legacy_rownorm: bool = False  # SAN: the released code's FFT norm.
  n_power_iterations: int = 1  # spectral: per call, SN-GAN's 1.

  @nn.compact
  def __call__(self, x: jax.Array, update_stats: bool = False) -> jax.Array:
    """(N, H, W, cin) -> (N, H', W', features); update_stats: refresh s/u."""
    _check_nhwc(x)
    kernel = self._kernel(x.shape[-1])
    spatial = (x.shape[1], x.shape[2])

    def scale(key):
      return san.san_scale(
          kernel, spatial, key, ratio=self.ratio, subset=self.subset,
          gain=self.gain, eps=self.eps, legacy_rownorm=self.legacy_rownorm,
      )

    kernel = _normalized(self, kernel, update_stats, scale)
    return self._conv(x, kernel)


class NormalizedDense(nn.Module):
  """Dense (..., in) -> (..., features) with a SAN / spectral / no norm."""

  features: int
  use_bias: bool = True
  norm: str = 'san'
  n_power_iterations: int = 1
  dtype: DTypeLike | None = None
  param_dtype: DTypeLike = jnp.float32
  kernel_init: Initializer = nn.initializers.lecun_normal()
  bias_init: Initializer = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: jax.Array, update_stats: bool = False) -> jax.Array:
    """(..., in) -> (..., features); update_stats: refresh s / u."""
    kernel = self.param(
        'kernel', self.kernel_init, (x.shape[-1], self.features),
        self.param_dtype,
    )

    def scale(unused_key):
      # The paper's FC normalization: the top singular value ("Efficiency").
      sigma = san.fc_norm(jax.lax.stop_gradient(kernel))
      return jnp.where(sigma > 0, sigma, 1.0)

    kernel = _normalized(self, kernel, update_stats, scale)
    bias = (
        self.param('bias', self.bias_init, (self.features,), self.param_dtype)
        if self.use_bias else None
    )
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = jnp.dot(x, kernel)
    return y if bias is None else y + bias


def _normalized(module: nn.Module, kernel, update_stats: bool, scale_fn):
  """kernel divided per module.norm; reads and refreshes its collections."""
  norm = module.norm
  if norm not in _NORMS:
    raise ValueError(f'norm must be one of {_NORMS}, got {norm!r}')
  if norm == 'none':
    return kernel
  initializing = module.is_initializing()
  if norm == 'spectral':
    u_var = module.variable(
        'spectral', 'u',
        lambda: spectral.init_u(module.make_rng('params'), kernel.shape[-1]),
    )
    sigma, new_u = spectral.spectral_norm_estimate(
        kernel, u_var.value, n_iter=module.n_power_iterations
    )
    if update_stats and not initializing:
      u_var.value = new_u
    return kernel / jnp.where(sigma != 0, sigma, 1.0).astype(kernel.dtype)
  # SAN. Sampling needs a key only when ratio < 1: 'params' at init, then
  # the 'san' rng stream (apply(..., rngs={'san': key})).
  sampling = getattr(module, 'ratio', 1.0) < 1.0
  s_var = module.variable(
      'san', 'scale',
      lambda: scale_fn(module.make_rng('params') if sampling else None),
  )
  if update_stats and not initializing:
    new = scale_fn(module.make_rng('san') if sampling else None)
    momentum = getattr(module, 'momentum', 0.0)
    s_var.value = momentum * s_var.value + (1.0 - momentum) * new
  s = jax.lax.stop_gradient(s_var.value)
  return kernel / s.astype(kernel.dtype)


def conv_input_shapes(
    module: nn.Module, variables, *args, **kwargs
) -> dict[str, tuple[int, int]]:
  """{module path: (H, W)} of every conv's input, by one abstract apply.

  Records the NHWC input of each submodule call whose params hold a 4-D
  'kernel' (under jax.eval_shape: nothing is computed), for
  `san.normalize`'s spatial_shapes. Paths are '/'-joined and relative to
  variables['params']; args and kwargs go to module.apply.
  """
  seen: dict[str, set[tuple[int, int]]] = {}

  def record(next_fun, call_args, call_kwargs, context):
    if context.method_name == '__call__' and call_args:
      x = call_args[0]
      if getattr(x, 'ndim', 0) == 4:
        path = '/'.join(context.module.path)
        seen.setdefault(path, set()).add((int(x.shape[1]), int(x.shape[2])))
    return next_fun(*call_args, **call_kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(lambda v: module.apply(v, *args, **kwargs), variables)
  shapes = {}
  for path, kernel in san.kernels(variables['params']).items():
    sizes = seen.get(path, set())
    if jnp.ndim(kernel) != 4 or not sizes:
      continue
    if len(sizes) > 1:
      raise ValueError(
          f'{path} is called on inputs of sizes {sorted(sizes)}; SAN needs '
          f'one (H, W) per layer'
      )
    shapes[path] = sizes.pop()
  return shapes


def _check_nhwc(x: jax.Array) -> None:
  """Convs here take (N, H, W, C) inputs."""
  if x.ndim != 4:
    raise ValueError(f'expected an NHWC input (N, H, W, C), got {x.shape}')
