"""LPIPS v0.1 (Zhang et al. 2018) of (N, H, W, 3) images in [0, 1] -> (N,).

Computes what `lpips.LPIPS(net=..., version='0.1')(x, y, normalize=True)`
of the official `richzhang/PerceptualSimilarity` / `lpips==0.1.4` package
computes (eval mode, `spatial=False`):

  1. x in [0, 1] -> 2x - 1 in [-1, 1] (the official `normalize=True`; the
     official default expects [-1, 1] inputs, ours are the house [0, 1]);
  2. the ScalingLayer (x - shift) / scale with shift (-.030, -.088, -.188)
     and scale (.458, .448, .450), i.e. ImageNet normalization rounded;
  3. the five backbone taps (AlexNet relu1..relu5, or VGG16 relu1_2,
     relu2_2, relu3_3, relu4_3, relu5_3);
  4. each tap unit-normalized over channels, f / (||f||_2 + 1e-10);
  5. d_l = the 1x1 conv (no bias, learned non-negative weights w_l) of the
     squared difference of the normalized taps, averaged over space;
  6. the sum of d_l over layers.

Params are {'net': backbone params, 'lin': {'lin0': (C0,), ...}} with the
backbone of `jaxsr.models.alexnet.AlexNet` or `jaxsr.models.vgg.VGG(16)`;
`jaxsr.pretrained.lpips.load_lpips` builds them from the official files.
Everything is a pure, differentiable jnp function (usable as a loss); jit
with `net` static, e.g. `jax.jit(lpips, static_argnames='net')`.
"""

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxsr.models import alexnet
from jaxsr.models import vgg

# lpips.ScalingLayer's buffers (lpips/lpips.py), on [-1, 1] inputs.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
# lpips.normalize_tensor's eps, added to the norm (not under the sqrt).
EPS = 1e-10

NETS = ('alex', 'vgg')
# Backbone taps, in the order of the official lin0, lin1, ... layers.
TAPS = {
    'alex': alexnet.LPIPS_TAPS,
    'vgg': ('relu1_2', 'relu2_2', 'relu3_3', 'relu4_3', 'relu5_3'),
}
# Channels of each tap (the official `self.chns`).
CHANNELS = {
    'alex': (64, 192, 384, 256, 256),
    'vgg': (64, 128, 256, 512, 512),
}
# Smallest input side that keeps the deepest tap at least 1x1, as in torch.
MIN_SIZE = {'alex': alexnet.min_input_size('relu5'), 'vgg': 16}


def check_net(net: str) -> None:
  """Raises unless `net` is one of NETS."""
  if net not in NETS:
    raise ValueError(f'LPIPS net must be one of {NETS}, got {net!r}')


def backbone(net: str) -> nn.Module:
  """The feature network of `net`, without input normalization, 5 taps."""
  check_net(net)
  if net == 'alex':
    return alexnet.AlexNet(layers=TAPS[net], use_input_norm=False)
  return vgg.VGG(depth=16, layers=TAPS[net], use_input_norm=False)


def scaling_layer(x: jax.Array) -> jax.Array:
  """Images (..., 3) in [0, 1] -> the official ScalingLayer's output."""
  x = 2.0 * x - 1.0  # The official `normalize=True`: [0, 1] -> [-1, 1].
  return (x - jnp.asarray(SHIFT, x.dtype)) / jnp.asarray(SCALE, x.dtype)


def normalize_channels(f: jax.Array, eps: float = EPS) -> jax.Array:
  """Features (..., C) -> f / (||f||_2 over C + eps), lpips.normalize_tensor."""
  sq = jnp.sum(jnp.square(f), axis=-1, keepdims=True)
  # sqrt has an infinite derivative at 0, where ReLU taps often are (all
  # channels zero). There f / (||f|| + eps) = f / eps + O(||f||^2), so the
  # exact Jacobian is I / eps: the double `where` keeps the value 0 and
  # drops the norm's term, instead of the 0 * inf = NaN of a plain sqrt.
  positive = sq > 0
  norm = jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)
  return f / (norm + eps)


def _check_inputs(x: jax.Array, y: jax.Array, net: str) -> None:
  if x.shape != y.shape:
    raise ValueError(
        f'LPIPS compares images of one shape, got {x.shape} and {y.shape}'
    )
  if x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(f'LPIPS expects (N, H, W, 3) images, got {x.shape}')
  need = MIN_SIZE[net]
  if min(x.shape[1:3]) < need:
    raise ValueError(
        f'LPIPS-{net} needs images of at least {need}x{need} pixels, got '
        f'{x.shape[1]}x{x.shape[2]}'
    )


def _check_params(params: Mapping[str, Any], net: str) -> None:
  if not isinstance(params, Mapping) or set(params) != {'net', 'lin'}:
    keys = sorted(params) if isinstance(params, Mapping) else type(params)
    raise ValueError(
        f"LPIPS params must be {{'net': ..., 'lin': ...}}, found {keys}"
    )
  names = tuple(f'lin{k}' for k in range(len(CHANNELS[net])))
  lin = params['lin']
  if set(lin) != set(names):
    raise ValueError(
        f'LPIPS-{net} needs linear weights {names}, found {sorted(lin)}'
    )
  for name, width in zip(names, CHANNELS[net]):
    if jnp.shape(lin[name]) != (width,):
      raise ValueError(
          f'LPIPS-{net} {name} must have shape ({width},), found '
          f'{jnp.shape(lin[name])}'
      )


def lpips_per_layer(
    x: jax.Array, y: jax.Array, params: Mapping[str, Any], net: str = 'alex'
) -> jax.Array:
  """Images (N, H, W, 3) in [0, 1] -> float32 (N, L), each layer's d_l."""
  check_net(net)
  _check_inputs(x, y, net)
  _check_params(params, net)
  n = x.shape[0]
  # One backbone pass over both images (the batch is independent per image).
  both = scaling_layer(jnp.concatenate([x, y]).astype(jnp.float32))
  feats = backbone(net).apply({'params': params['net']}, both)
  per_layer = []
  for k, tap in enumerate(TAPS[net]):
    f = normalize_channels(feats[tap])
    diff = jnp.square(f[:n] - f[n:])
    # The 1x1 conv (1 output, no bias) then the spatial average.
    # (A sum of products, not einsum: exact float32 on every backend.)
    weighted = jnp.sum(diff * params['lin'][f'lin{k}'], axis=-1)
    per_layer.append(jnp.mean(weighted, axis=(1, 2)))
  return jnp.stack(per_layer, axis=1)


def lpips(
    x: jax.Array, y: jax.Array, params: Mapping[str, Any], net: str = 'alex'
) -> jax.Array:
  """LPIPS v0.1 of images (N, H, W, 3) in [0, 1]: float32 (N,), >= 0."""
  return jnp.sum(lpips_per_layer(x, y, params, net), axis=1)
