"""torchvision AlexNet features: (N, H, W, 3) -> {layer: (N, h, w, C)} NHWC.

The `features` part of torchvision's `alexnet` (the "one weird trick"
variant, `alexnet-owt-4df8aa71.pth`), whose `features.{n}` entries are

  0 conv1 11x11 stride 4 pad 2 -> 64    1 relu1   2 pool1 (max 3x3 stride 2)
  3 conv2 5x5 pad 2 -> 192              4 relu2   5 pool2
  6 conv3 3x3 pad 1 -> 384              7 relu3
  8 conv4 3x3 pad 1 -> 256              9 relu4
 10 conv5 3x3 pad 1 -> 256             11 relu5  12 pool5

LPIPS (`lpips.pretrained_networks.alexnet`) slices them at 2, 5, 8, 10 and
12, so its five taps are `relu1` ... `relu5` (`LPIPS_TAPS`). The network
stops at the deepest requested layer, so no parameters exist beyond it.
Pools are unpadded and floor odd sizes, as torch's MaxPool2d(3, 2) does.

Inputs are ImageNet-normalized inside the module when `use_input_norm`
(torchvision's mean and std on RGB in [0, 1]); LPIPS turns that off and
applies its own ScalingLayer. Parameters are `conv1` ... `conv5`
({'kernel': (kh, kw, I, O), 'bias': (O,)}); torchvision's `features.{n}`
index of each is `TORCHVISION_INDEX`.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from jaxsr.models import vgg

LAYER_NAMES = (
    'conv1', 'relu1', 'pool1',
    'conv2', 'relu2', 'pool2',
    'conv3', 'relu3',
    'conv4', 'relu4',
    'conv5', 'relu5', 'pool5',
)  # pyformat: disable
LPIPS_TAPS = ('relu1', 'relu2', 'relu3', 'relu4', 'relu5')
# {conv: (output channels, kernel size, stride, padding)} of torchvision.
CONVS = {
    'conv1': (64, 11, 4, 2),
    'conv2': (192, 5, 1, 2),
    'conv3': (384, 3, 1, 1),
    'conv4': (256, 3, 1, 1),
    'conv5': (256, 3, 1, 1),
}
# Each conv, ReLU and pool is one `features` entry, in LAYER_NAMES' order.
TORCHVISION_INDEX = {
    name: n for n, name in enumerate(LAYER_NAMES) if name in CONVS
}
_POOL_SIZE, _POOL_STRIDE = 3, 2

# torch's default Conv2d init (kaiming_uniform_ with a=sqrt(5)) is
# U(-1/sqrt(fan_in), 1/sqrt(fan_in)), i.e. variance 1 / (3 fan_in).
_kernel_init = nn.initializers.variance_scaling(1.0 / 3.0, 'fan_in', 'uniform')


def conv_fan_in(name: str) -> int:
  """Input channels of AlexNet conv `name` (3 for conv1, else the previous)."""
  names = list(CONVS)
  return 3 if name == names[0] else CONVS[names[names.index(name) - 1]][0]


def layer_size(size: int, layer: str) -> int:
  """Height (or width) of `layer`'s output for an input of that size."""
  for name in LAYER_NAMES[: LAYER_NAMES.index(layer) + 1]:
    if name in CONVS:
      _, k, stride, pad = CONVS[name]
      size = (size + 2 * pad - k) // stride + 1
    elif name.startswith('pool'):
      size = (size - _POOL_SIZE) // _POOL_STRIDE + 1
  return size


def min_input_size(layer: str) -> int:
  """The smallest input side for which `layer` is at least 1x1 (torch's)."""
  # Every conv keeps a size <= 0 at <= 0 and so does every pool, so the last
  # layer is non-empty exactly when all the earlier ones are.
  size = 1
  while layer_size(size, layer) < 1:
    size += 1
  return size


class AlexNet(nn.Module):
  """AlexNet features: (N, H, W, 3) -> {layer: float32 (N, h, w, C)}."""

  layers: tuple[str, ...] = LPIPS_TAPS
  use_input_norm: bool = True
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    """x (N, H, W, 3), RGB in [0, 1] (or normalized) -> {name: NHWC}."""
    if not self.layers:
      raise ValueError(f'AlexNet needs at least one layer out of {LAYER_NAMES}')
    unknown = [n for n in self.layers if n not in LAYER_NAMES]
    if unknown:
      raise ValueError(
          f'unknown AlexNet layer(s) {unknown}; valid names are {LAYER_NAMES}'
      )
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f'AlexNet expects (N, H, W, 3) input, got {x.shape}')
    wanted = set(self.layers)
    last = LAYER_NAMES[max(LAYER_NAMES.index(n) for n in wanted)]
    need = min_input_size(last)
    if min(x.shape[1:3]) < need:
      raise ValueError(
          f'AlexNet layer {last} needs inputs of at least {need}x{need} '
          f'pixels, got {x.shape[1]}x{x.shape[2]}'
      )

    if self.use_input_norm:
      mean, std = jnp.asarray(vgg.IMAGENET_MEAN), jnp.asarray(vgg.IMAGENET_STD)
      x = (x - mean) / std
    x = x.astype(self.dtype)
    out = {}
    for name in LAYER_NAMES[: LAYER_NAMES.index(last) + 1]:
      if name in CONVS:
        width, k, stride, pad = CONVS[name]
        x = nn.Conv(
            width,
            (k, k),
            strides=(stride, stride),
            padding=((pad, pad), (pad, pad)),
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=_kernel_init,
            bias_init=nn.initializers.zeros,
            name=name,
        )(x)
      elif name.startswith('relu'):
        x = nn.relu(x)
      else:
        x = nn.max_pool(
            x,
            (_POOL_SIZE, _POOL_SIZE),
            strides=(_POOL_STRIDE, _POOL_STRIDE),
            padding='VALID',
        )
      if name in wanted:
        out[name] = x.astype(jnp.float32)
    return out
