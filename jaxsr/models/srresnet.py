"""SRResNet without BN (SAN-SR's G): LR (N, h, w, 3) -> SR (N, s*h, s*w, 3).

A port of `g_srgan` in the official SAN code (`kligvasser/SANGAN`,
`super-resolution/models/generators.py`, prior-art §3.2), in NHWC:

  conv_first 5x5 (bias) -> LReLU 0.1
  num_block x [conv1 3x3 -> ReLU -> conv2 3x3, + input]   (no BN, no bias)
  log2(scale) x [up_i 3x3 -> 4*num_feat -> pixel shuffle x2 -> LReLU 0.1]
  conv_hr 3x3 (bias) -> LReLU 0.1 -> conv_last 5x5 (bias) -> 3 channels
  + bilinear upsampling of the LR input (the global skip)

As the official code (and unlike Ledig et al.'s SRResNet) there is no BN
(paper 002 §SR, after Lim et al.) and no long skip around the residual body.
The global skip is PyTorch's `F.interpolate(lr, scale_factor=s,
mode='bilinear', align_corners=False)`, reproduced by `bilinear_upsample`.
Defaults (64 features, 16 blocks, x4) give 1,521,667 parameters: the
paper's "1.5M".

Init is the official one (kaiming normal, fan_in, gain √2; zero biases).
Without BN or residual scaling, each block then triples the features'
second moment, so an untrained 16-block G outputs values of std ≈ 3^8 ≈
6500 around the bilinear skip; the paper's G always starts from a PSNR
pre-training (the ':psnr' variant of experiments/san_sr.py, or a demo's
warm-up), which starts from this init as the official one does.

Names map to the official state dict as conv_first = image_to_features,
body_i/conv{1,2} = features.i.conv{1,2}, up_i = usample.i.conv, conv_hr =
hrconv, conv_last = features_to_image; a PyTorch conv weight (O, I, kh, kw)
is a Flax kernel `w.transpose(2, 3, 1, 0)`. `pixel_shuffle` orders channels
as `nn.PixelShuffle`, so the up_i weights import without permutation.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

# The official `initialize_model`: kaiming_normal_(a=0, mode='fan_in'), an
# untruncated normal of variance 2 / fan_in, and zero biases.
kaiming_normal = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')


def pixel_shuffle(x: jax.Array, factor: int) -> jax.Array:
  """(N, H, W, C*f*f) -> (N, f*H, f*W, C), channels in PyTorch's order.

  `nn.PixelShuffle(f)` sends input channel c*f*f + i*f + j to output
  channel c at pixel (f*h + i, f*w + j).
  """
  n, h, w, cff = x.shape
  if cff % (factor * factor):
    raise ValueError(
        f'pixel_shuffle by {factor} needs channels divisible by '
        f'{factor * factor}, got {cff}'
    )
  c = cff // (factor * factor)
  x = x.reshape(n, h, w, c, factor, factor)
  x = x.transpose(0, 1, 4, 2, 5, 3)  # (n, h, i, w, j, c)
  return x.reshape(n, h * factor, w * factor, c)


def _linear_taps(size: int, scale: int):
  """Source indices (i0, i1) and weights of i1 for one upsampled axis."""
  # PyTorch's area_pixel_compute_source_index (align_corners=False):
  # src = (dst + 0.5) / scale - 0.5, clamped at 0; i0 = floor(src),
  # i1 = min(i0 + 1, size - 1), value = (1 - l) x[i0] + l x[i1].
  src = (np.arange(size * scale, dtype=np.float64) + 0.5) / scale - 0.5
  src = np.maximum(src, 0.0)
  i0 = np.minimum(np.floor(src).astype(np.int32), size - 1)
  i1 = np.minimum(i0 + 1, size - 1)
  return i0, i1, (src - i0).astype(np.float32)


def bilinear_upsample(x: jax.Array, scale: int) -> jax.Array:
  """(N, H, W, C) -> (N, s*H, s*W, C) as torch bilinear, align_corners=False.

  Separable gathers and lerps in x's dtype (no matmul, so no reduced
  matmul precision on accelerators); the taps are fixed by the shapes.
  """
  if scale < 1:
    raise ValueError(f'bilinear_upsample needs a scale >= 1, got {scale}')
  for axis in (1, 2):
    i0, i1, lam = _linear_taps(x.shape[axis], scale)
    shape = [1] * x.ndim
    shape[axis] = lam.size
    lam = jnp.asarray(lam, x.dtype).reshape(shape)
    x = (jnp.take(x, i0, axis=axis) * (1 - lam)
         + jnp.take(x, i1, axis=axis) * lam)
  return x


def _conv(x, features, size, name, dtype, use_bias=True):
  """A zero-padded 'SAME' conv with the official init (PyTorch padding k//2)."""
  pad = size // 2
  return nn.Conv(
      features, (size, size), padding=((pad, pad), (pad, pad)),
      use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32,
      kernel_init=kaiming_normal, bias_init=nn.initializers.zeros, name=name,
  )(x)


class ResBlock(nn.Module):
  """The official ResBlock: x + conv2(ReLU(conv1(x))), no BN, no bias."""

  num_feat: int = 64
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """(N, H, W, num_feat) -> (N, H, W, num_feat)."""
    h = nn.relu(_conv(x, self.num_feat, 3, 'conv1', self.dtype, False))
    return x + _conv(h, self.num_feat, 3, 'conv2', self.dtype, False)


class SRResNet(nn.Module):
  """SAN-SR's G: (N, h, w, num_in_ch) -> (N, s*h, s*w, num_in_ch), s = 2^k."""

  num_in_ch: int = 3
  scale: int = 4
  num_feat: int = 64
  num_block: int = 16
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, lr: jax.Array) -> jax.Array:
    """LR (N, h, w, C) in [0, 1] -> float32 SR (N, s*h, s*w, C), unclamped."""
    if self.scale not in (2, 4, 8):
      # The official code builds int(log2(scale)) x2 stages.
      raise ValueError(f'SRResNet scale must be 2, 4 or 8, got {self.scale}')
    if lr.ndim != 4 or lr.shape[-1] != self.num_in_ch:
      raise ValueError(
          f'SRResNet expects (N, h, w, {self.num_in_ch}) input, got {lr.shape}'
      )

    def conv(x, features, size, name):
      return _conv(x, features, size, name, self.dtype)

    def lrelu(x):
      return nn.leaky_relu(x, 0.1)

    skip = bilinear_upsample(lr.astype(jnp.float32), self.scale)
    x = lrelu(conv(lr, self.num_feat, 5, 'conv_first'))
    for i in range(self.num_block):
      x = ResBlock(self.num_feat, self.dtype, name=f'body_{i}')(x)
    for i in range(int(math.log2(self.scale))):
      x = conv(x, 4 * self.num_feat, 3, f'up_{i}')
      x = lrelu(pixel_shuffle(x, 2))
    x = lrelu(conv(x, self.num_feat, 3, 'conv_hr'))
    # Images are float32 by convention, whatever the computation dtype.
    return conv(x, self.num_in_ch, 5, 'conv_last').astype(jnp.float32) + skip
