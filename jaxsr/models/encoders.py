"""LSRGAN's encoder L: HR (N, H, W, 3) in [0, 1] -> LR-sized (N, H/s, W/s, 3).

Paper 000 (LSRGAN) §3.1: L is "adapted from the first few layers of the VGG16
by removing the batch normalization and is followed by a few upscaling layers
so that its output matches the size of the LR image". The paper leaves the cut
open; ours is a field, `cut`, defaulting to conv4_3 (a /8 trunk, then one x2
upsampling stage for x4 SR).

The trunk is VGG16 `features` without BN: 3x3 convs, each followed by ReLU
(the cut conv keeps its ReLU), and 2x2 max-pools of stride 2. With p pools
before the cut the trunk is /2^p; then log2(2^p / scale) stages of
(nearest x2 -> conv 3x3 -> LeakyReLU 0.2), or, when 2^p == scale, a single
conv 3x3 -> LeakyReLU ('conv_mid'), and a final conv 3x3 -> 3 channels with no
activation ('conv_last'), since L's output lives in image space.

The input is normalized with ImageNet mean (0.485, 0.456, 0.406) and std
(0.229, 0.224, 0.225) inside the module, so that pretrained torchvision VGG16
weights can be imported and work as is. Trunk parameter names are VGG's
conv{b}_{i}; torchvision `features.{n}` maps as conv1_1: 0, conv1_2: 2,
conv2_1: 5, conv2_2: 7, conv3_1: 10, conv3_2: 12, conv3_3: 14, conv4_1: 17,
conv4_2: 19, conv4_3: 21, conv5_1: 24, conv5_2: 26, conv5_3: 28 (weights
(O, I, kh, kw) -> kernels (kh, kw, I, O) by `w.transpose(2, 3, 1, 0)`).

Inits: trunk convs as torchvision VGG (kaiming-normal fan_out for ReLU,
bias 0); the upsampling and output convs as PyTorch's default Conv2d, like
RRDBNet.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from jaxsr.models import rrdbnet

VGG16_LAYERS = (
    'conv1_1', 'conv1_2', 'pool1',
    'conv2_1', 'conv2_2', 'pool2',
    'conv3_1', 'conv3_2', 'conv3_3', 'pool3',
    'conv4_1', 'conv4_2', 'conv4_3', 'pool4',
    'conv5_1', 'conv5_2', 'conv5_3',
)  # pyformat: disable
VGG16_CONVS = tuple(n for n in VGG16_LAYERS if n.startswith('conv'))
# Output channels of each VGG16 conv block conv{b}_*.
_VGG16_WIDTHS = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision VGG init: kaiming_normal_(mode='fan_out', nonlinearity='relu').
_vgg_kernel_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def vgg16_trunk(cut: str) -> tuple[str, ...]:
  """The VGG16 layer names up to and including `cut` (a conv name)."""
  if cut not in VGG16_CONVS:
    raise ValueError(
        f'cut must be one of the VGG16 conv layers {VGG16_CONVS}, got {cut!r}'
    )
  return VGG16_LAYERS[: VGG16_LAYERS.index(cut) + 1]


def num_upsample_stages(scale: int, cut: str) -> int:
  """The x2 stages that bring a /2^p trunk (p pools before cut) to /scale."""
  layers = vgg16_trunk(cut)
  down = 2 ** sum(n.startswith('pool') for n in layers)
  # scale > down leaves a remainder too, so this also rejects too-early cuts.
  if scale < 1 or down % scale or (down // scale) & (down // scale - 1):
    raise ValueError(
        f'cut {cut!r} downsamples by {down}, which must be >= scale {scale} '
        f'with {down}/scale a power of two; a cut in VGG16 block b '
        '(conv{b}_*) downsamples by 2^(b-1)'
    )
  ratio = down // scale
  return ratio.bit_length() - 1


class LSREncoder(nn.Module):
  """LSRGAN encoder L: HR (N, H, W, 3) in [0, 1] -> (N, H/s, W/s, 3)."""

  scale: int = 4
  cut: str = 'conv4_3'
  num_upsample_feat: int = 64
  # VGG16's widths divided by this; 1 is the paper's VGG16. Larger values are
  # a departure for CPU-sized demos (pretrained VGG16 weights then don't fit).
  width_divisor: int = 1
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, hr: jax.Array) -> jax.Array:
    """HR (N, H, W, 3), H and W multiples of 2^p -> float32 (N, H/s, W/s, 3)."""
    layers = vgg16_trunk(self.cut)
    stages = num_upsample_stages(self.scale, self.cut)
    down = 2 ** sum(n.startswith('pool') for n in layers)
    if hr.ndim != 4 or hr.shape[-1] != 3:
      raise ValueError(f'LSREncoder expects (N, H, W, 3) input, got {hr.shape}')
    if hr.shape[1] % down or hr.shape[2] % down:
      raise ValueError(
          f'LSREncoder with cut {self.cut!r} needs H and W multiples of '
          f'{down}, got {hr.shape[1]}x{hr.shape[2]}'
      )

    def conv(features, x, name, **inits):
      layer = rrdbnet.conv3x3(features, x.shape[-1], name, self.dtype, **inits)
      return layer(x)

    # Pretrained VGG16 weights expect ImageNet-normalized inputs.
    x = (hr - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
    for name in layers:
      if name.startswith('pool'):
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
      else:
        width = max(1, _VGG16_WIDTHS[int(name[4])] // self.width_divisor)
        x = nn.relu(
            conv(
                width,
                x,
                name,
                kernel_init=_vgg_kernel_init,
                bias_init=nn.initializers.zeros,
            )
        )
    if stages == 0:
      x = nn.leaky_relu(conv(self.num_upsample_feat, x, 'conv_mid'), 0.2)
    for i in range(1, stages + 1):
      x = rrdbnet.upsample_nearest(x, 2)
      x = nn.leaky_relu(conv(self.num_upsample_feat, x, f'conv_up{i}'), 0.2)
    # Images are float32 by convention, whatever the computation dtype.
    return conv(3, x, 'conv_last').astype(jnp.float32)
