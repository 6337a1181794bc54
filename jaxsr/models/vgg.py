"""torchvision VGG16/VGG19 features: (N, H, W, 3) in [0, 1] -> {layer: NHWC}.

The `features` part of torchvision's `vgg16` / `vgg19` (no batch norm): 3x3
zero-padded convs, each followed by ReLU, and 2x2 max-pools of stride 2
after each of the five blocks. Layer names follow BasicSR's `vgg_arch.py`:
`convB_K` is the conv output before its ReLU (ESRGAN's "conv5_4"), `reluB_K`
the same after ReLU, `poolB` the block's max-pool. The network stops at the
deepest requested layer, so no parameters exist beyond it.

Inputs are normalized inside the module (`use_input_norm`), in one of two
conventions, matching where the weights came from:
  * 'imagenet': (x - mean) / std with torchvision's ImageNet mean (0.485,
    0.456, 0.406) and std (0.229, 0.224, 0.225) on RGB in [0, 1].
  * 'caffe': Keras' VGG weights (converted from the original Caffe model)
    expect BGR in [0, 255] minus the mean (103.939, 116.779, 123.68).
`jaxsr.pretrained.vgg` can fold the Caffe convention into conv1_1 so that
Keras weights also run in the default 'imagenet' module.

Parameters are `conv1_1` ... `conv5_4` ({'kernel': (3, 3, I, O), 'bias':
(O,)}); torchvision's `features.{n}` indices are given by `torchvision_index`.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Keras `preprocess_input(mode='caffe')`: BGR order, on [0, 255] pixels.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
INPUT_NORMS = ('imagenet', 'caffe')

# Convs per block (torchvision cfg 'D' and 'E'); widths 64, 128, 256, 512, 512.
_CONVS_PER_BLOCK = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
BLOCK_WIDTHS = (64, 128, 256, 512, 512)

# torchvision VGG init: kaiming_normal_(mode='fan_out', nonlinearity='relu').
_kernel_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def _check_depth(depth: int) -> None:
  if depth not in _CONVS_PER_BLOCK:
    raise ValueError(f'VGG depth must be 16 or 19, got {depth!r}')


def vgg_layer_names(depth: int) -> tuple[str, ...]:
  """All layer names of VGG{depth} features in order: conv1_1, relu1_1, ..."""
  _check_depth(depth)
  names = []
  for block, convs in enumerate(_CONVS_PER_BLOCK[depth], start=1):
    for k in range(1, convs + 1):
      names += [f'conv{block}_{k}', f'relu{block}_{k}']
    names.append(f'pool{block}')
  return tuple(names)


def vgg_conv_names(depth: int) -> tuple[str, ...]:
  """The parameterized layers of VGG{depth}: conv1_1 ... conv5_3 or conv5_4."""
  return tuple(n for n in vgg_layer_names(depth) if n.startswith('conv'))


def conv_width(name: str) -> int:
  """Output channels of conv `convB_K` (64, 128, 256, 512 or 512)."""
  return BLOCK_WIDTHS[int(name[4]) - 1]


def torchvision_index(depth: int) -> dict[str, int]:
  """{conv name: n} for torchvision's `features.{n}` (VGG16 conv1_2 -> 2)."""
  # Each conv, ReLU and pool is one `features` entry, in our names' order.
  names = vgg_layer_names(depth)
  return {name: n for n, name in enumerate(names) if name.startswith('conv')}


def conv(name: str, dtype: DTypeLike) -> nn.Conv:
  """torchvision VGG's conv `convB_K`: 3x3, zero padding 1, its init."""
  return nn.Conv(
      conv_width(name),
      (3, 3),
      padding=((1, 1), (1, 1)),
      dtype=dtype,
      param_dtype=jnp.float32,
      kernel_init=_kernel_init,
      bias_init=nn.initializers.zeros,
      name=name,
  )


class VGG(nn.Module):
  """VGG16/19 features: (N, H, W, 3) RGB in [0, 1] -> {layer: (N, h, w, C)}."""

  depth: int = 19
  layers: tuple[str, ...] = ('conv5_4',)
  use_input_norm: bool = True
  input_norm: str = 'imagenet'
  dtype: DTypeLike = jnp.float32

  def _normalize(self, x: jax.Array) -> jax.Array:
    if self.input_norm == 'imagenet':
      return (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
    # Caffe: RGB [0, 1] -> BGR [0, 255] minus the BGR mean, no std.
    return x[..., ::-1] * 255.0 - jnp.asarray(CAFFE_MEAN_BGR)

  @nn.compact
  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    """x float32 (N, H, W, 3) in [0, 1] -> {name: float32 (N, h, w, C)}."""
    names = vgg_layer_names(self.depth)
    if not self.layers:
      raise ValueError(f'VGG needs at least one layer out of {names}')
    unknown = [n for n in self.layers if n not in names]
    if unknown:
      raise ValueError(
          f'unknown VGG{self.depth} layer(s) {unknown}; valid names are '
          f'{names}'
      )
    if self.input_norm not in INPUT_NORMS:
      raise ValueError(
          f'input_norm must be one of {INPUT_NORMS}, got {self.input_norm!r}'
      )
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f'VGG expects (N, H, W, 3) input, got {x.shape}')

    wanted = set(self.layers)
    last = max(names.index(n) for n in wanted)
    if self.use_input_norm:
      x = self._normalize(x)
    x = x.astype(self.dtype)
    out = {}
    for name in names[: last + 1]:
      if name.startswith('conv'):
        x = conv(name, self.dtype)(x)
      elif name.startswith('relu'):
        x = nn.relu(x)
      else:
        # torchvision MaxPool2d(2, 2) floors odd sizes, as 'VALID' does.
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding='VALID')
      if name in wanted:
        # Features are float32 like images, whatever the compute dtype.
        out[name] = x.astype(jnp.float32)
    return out
