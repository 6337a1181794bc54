"""DISTS' L2-pooled VGG16: (N, H, W, 3) in [0, 1] -> six NHWC feature maps.

The feature network of DISTS (Ding et al., "Image Quality Assessment:
Unifying Structure and Texture Similarity", `dingkeyan93/DISTS`:
`DISTS_pytorch/DISTS_pt.py`): torchvision's VGG16 `features[0:30]` (up to
relu5_3, no pool5) with each of the four max-pools replaced by L2 pooling,
which smooths before subsampling, against aliasing:

  l2pool(x) = sqrt(g * x**2 + 1e-12), stride 2, zero padding 1, per channel,

where g is the 3x3 Hanning window outer(h, h) / sum, h = hanning(5)[1:-1] =
(0.5, 1, 0.5), i.e. [[1, 2, 1], [2, 4, 2], [1, 2, 1]] / 16 (the official
`L2pooling(filter_size=5)`: padding (5 - 2) // 2 = 1). Each pooled side is
ceil(n / 2).

The six DISTS stages are the RAW input x in [0, 1] (not normalized: the
official `forward_once` returns `x` itself) and relu1_2, relu2_2, relu3_3,
relu4_3, relu5_3 of the VGG fed with ImageNet-normalized x; 3 + 64 + 128 +
256 + 512 + 512 = 1475 channels, the length of DISTS' alpha and beta.

Parameters are named and shaped as in `jaxsr.models.vgg.VGG(depth=16)`
(`conv1_1` ... `conv5_3`, {'kernel': (3, 3, I, O), 'bias': (O,)}), so the
trees of `jaxsr.pretrained.vgg.load_vgg(path, 16)` load unchanged.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from jaxsr.models import vgg

STAGES = ('input', 'relu1_2', 'relu2_2', 'relu3_3', 'relu4_3', 'relu5_3')
STAGE_CHANNELS = (3, 64, 128, 256, 512, 512)
NUM_CHANNELS = sum(STAGE_CHANNELS)  # 1475, the length of alpha and beta.
# Added under the square root (official `(out + 1e-12).sqrt()`), which also
# keeps the gradient finite where a ReLU map is all zero.
L2POOL_EPS = 1e-12


def l2pool_filter() -> np.ndarray:
  """The 3x3 L2-pooling window: outer(h, h) / sum, h = hanning(5)[1:-1]."""
  h = np.hanning(5)[1:-1]  # (0.5, 1, 0.5): the zero end taps dropped.
  g = h[:, None] * h[None, :]
  return (g / g.sum()).astype(np.float32)


def l2pool(x: jax.Array, eps: float = L2POOL_EPS) -> jax.Array:
  """DISTS L2 pooling: (N, H, W, C) -> (N, ceil(H/2), ceil(W/2), C), >= 0."""
  if x.ndim != 4:
    raise ValueError(f'l2pool expects (N, H, W, C) input, got {x.shape}')
  channels = x.shape[-1]
  # Depthwise conv (groups = C) of x**2 with the same window per channel.
  kernel = jnp.broadcast_to(
      jnp.asarray(l2pool_filter(), x.dtype)[:, :, None, None],
      (3, 3, 1, channels),
  )
  out = jax.lax.conv_general_dilated(
      jnp.square(x),
      kernel,
      window_strides=(2, 2),
      padding=((1, 1), (1, 1)),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      feature_group_count=channels,
      precision=jax.lax.Precision.HIGHEST,
  )
  return jnp.sqrt(out + eps)


def layer_names() -> tuple[str, ...]:
  """DISTS VGG16 layers: conv1_1, relu1_1, ..., l2pool1, ..., relu5_3."""
  names = vgg.vgg_layer_names(16)
  cut = names.index('relu5_3') + 1  # The official stage5 ends at index 29.
  return tuple(n.replace('pool', 'l2pool') for n in names[:cut])


class DistsVGG(nn.Module):
  """DISTS features: (N, H, W, 3) RGB in [0, 1] -> {stage: (N, h, w, C)}."""

  # Compute dtype of the convs; features are returned as float32.
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    """x float32 (N, H, W, 3) in [0, 1] -> {STAGES[k]: float32 NHWC}."""
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(
          f'DistsVGG expects (N, H, W, 3) RGB in [0, 1], got {x.shape}'
      )
    # Features are at least float32 whatever the compute dtype (float64
    # stays float64, for exact gradient checks). Stage 0 is the raw input.
    out_dtype = jnp.promote_types(x.dtype, jnp.float32)
    out = {'input': x.astype(out_dtype)}
    h = (x - jnp.asarray(vgg.IMAGENET_MEAN)) / jnp.asarray(vgg.IMAGENET_STD)
    h = h.astype(self.dtype)
    for name in layer_names():
      if name.startswith('conv'):
        h = vgg.conv(name, self.dtype)(h)
      elif name.startswith('relu'):
        h = nn.relu(h)
      else:
        h = l2pool(h)
      if name in STAGES:
        out[name] = h.astype(jnp.promote_types(h.dtype, out_dtype))
    return out
