"""StyleGAN2 (Karras et al. 2020, config e/f) generator and residual D, NHWC.

The maths follow rosinality/stylegan2-pytorch's `model.py`, to which
NVIDIA's official weights convert exactly; `jaxsr.pretrained.stylegan2`
imports that layout, NVIDIA's stylegan2-ada pickles and flaxmodels' .h5.

Equalized learning rate is applied at run time: parameters hold the raw
weights as the files do, and each layer multiplies its kernel by
lr_mul / sqrt(fan_in) (and its bias by lr_mul) in the forward pass.

Parameter tree (Flax layouts: conv kernels (kh, kw, in, out), dense (in, out)):
  Generator: {'mapping': {'fc0'..: {kernel, bias}},
              'synthesis': {'b4': {const (4, 4, C4), conv1, torgb},
                            'b8'..: {conv0 (upsampling), conv1, torgb}}}
    with conv* = {affine: {kernel (S, in), bias (in,)}, kernel (3, 3, in,
    out), bias (out,), noise_strength ()} and torgb = {affine, kernel (1, 1,
    in, 3), bias (3,)}. The affine bias is stored as used (initialised to 1).
  Discriminator: {'fromrgb': {kernel (1, 1, 3, C), bias}, 'b{R}': {conv0,
    conv1 (downsampling), skip (no bias)} for R = resolution .. 8,
    'final_conv', 'fc' (rows in NCHW-flatten order, as the files), 'out'}.

W+ has n_latent = 2 log2(resolution) - 2 rows: block b4 reads rows 0 (conv1)
and 1 (torgb); the j-th upsampling block reads rows 2j - 1, 2j, 2j + 1 (its
toRGB row is the next block's first). There are 2 log2(resolution) - 3 noise
maps: (4, 4), then two per resolution 8 .. resolution.
"""

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

SQRT2 = math.sqrt(2.0)
BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)  # StyleGAN2's resampling filter.
_DN = ('NHWC', 'HWIO', 'NHWC')


def check_resolution(resolution: int) -> int:
  """log2(resolution) for a power of two >= 8, else ValueError."""
  log = int(resolution).bit_length() - 1
  if resolution < 8 or 2**log != resolution:
    raise ValueError(
        f'StyleGAN2 resolution must be a power of two >= 8, got {resolution}')
  return log


def default_channels(resolution: int, channel_multiplier: int = 2
                     ) -> tuple[int, ...]:
  """rosinality's channels per resolution 4, 8, .., resolution (<= 1024)."""
  log = check_resolution(resolution)
  if resolution > 1024:
    raise ValueError(
        f'default channels stop at 1024 px, got {resolution}; give channels')
  m = channel_multiplier
  table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * m, 128: 128 * m,
           256: 64 * m, 512: 32 * m, 1024: 16 * m}
  return tuple(table[2**i] for i in range(2, log + 1))


def resolve_channels(resolution: int, channel_multiplier: int,
                     channels: Sequence[int] | None) -> tuple[int, ...]:
  """Explicit channels (checked), or default_channels."""
  if channels is None:
    return default_channels(resolution, channel_multiplier)
  want = check_resolution(resolution) - 1
  if len(channels) != want:
    raise ValueError(
        f'channels must give one width per resolution 4..{resolution} '
        f'({want}), got {len(channels)}: {tuple(channels)}')
  return tuple(int(c) for c in channels)


def n_latent(resolution: int) -> int:
  """Rows of W+: 2 log2(resolution) - 2 (18 at 1024 px)."""
  return 2 * check_resolution(resolution) - 2


def noise_shapes(resolution: int) -> tuple[tuple[int, int], ...]:
  """(H, W) of each noise input: (4, 4), then two per resolution 8..res."""
  log = check_resolution(resolution)
  return ((4, 4),) + tuple(
      (2**i, 2**i) for i in range(3, log + 1) for _ in range(2))


def fused_lrelu(x, bias, clamp: float | None = None):
  """rosinality's fused_leaky_relu: lrelu(x + bias, 0.2) * sqrt(2), clamped."""
  y = jax.nn.leaky_relu(x + bias, 0.2) * SQRT2
  return y if clamp is None else jnp.clip(y, -clamp, clamp)


def upfirdn(x: jax.Array, up: int, pad: tuple[int, int], gain: float
            ) -> jax.Array:
  """upfirdn2d with the [1, 3, 3, 1] filter, per channel, NHWC.

  Inserts up - 1 zeros after every sample, pads (pad0, pad1) on both axes
  and convolves with outer(taps) / sum * gain (the filter is symmetric, so
  convolution and correlation agree). Written as 4 + 4 shifted adds (the
  filter is separable): XLA:CPU runs a depthwise (feature-grouped)
  convolution tens of times slower.
  """
  p0, p1 = pad
  x = jax.lax.pad(x, jnp.zeros((), x.dtype),
                  ((0, 0, 0), (p0, p1 + up - 1, up - 1),
                   (p0, p1 + up - 1, up - 1), (0, 0, 0)))
  taps = np.asarray(BLUR_TAPS) / sum(BLUR_TAPS) * math.sqrt(gain)
  n = len(taps)
  h = sum(float(t) * x[:, i:x.shape[1] - n + 1 + i] for i, t in enumerate(taps))
  return sum(float(t) * h[:, :, i:h.shape[2] - n + 1 + i]
             for i, t in enumerate(taps))


def modulated_conv(x: jax.Array, kernel: jax.Array, style: jax.Array, *,
                   demodulate: bool = True, upsample: bool = False
                   ) -> jax.Array:
  """StyleGAN2's modulated conv: x (N, H, W, I) -> (N, H', W', O).

  kernel: raw (k, k, I, O) weights (scaled here by 1 / sqrt(I k k)); style:
  (N, I), the affine layer's output. Computed as (x * s) conv w, then times
  the demodulation 1 / sqrt(sum_{k, k, I} (w s)^2 + 1e-8) per output
  channel, equal to the per-sample weights of the fused form. With
  `upsample`, a stride-2 transposed conv (output 2H + 1) then the blur with
  padding (1, 1) and gain 4, as rosinality's ModulatedConv2d.
  """
  k, _, cin, _ = kernel.shape
  w = kernel * (1.0 / math.sqrt(cin * k * k))
  out = x * style[:, None, None, :]
  if upsample:
    # conv_transpose2d(stride 2) == correlation of the zero-dilated input
    # with the spatially flipped kernel, padded by k - 1.
    # The zeros are inserted by an interior pad rather than lhs_dilation:
    # XLA:CPU computes the kernel gradient of an lhs-dilated convolution
    # ~10x slower than that of a plain one.
    out = jax.lax.pad(out, jnp.zeros((), out.dtype),
                      ((0, 0, 0), (k - 1, k - 1, 1), (k - 1, k - 1, 1),
                       (0, 0, 0)))
    out = jax.lax.conv_general_dilated(
        out, w[::-1, ::-1], (1, 1), 'VALID', dimension_numbers=_DN)
    p = (len(BLUR_TAPS) - 2) - (k - 1)
    out = upfirdn(out, 1, ((p + 1) // 2 + 1, p // 2 + 1), 4.0)
  else:
    out = jax.lax.conv_general_dilated(
        out, w, (1, 1), ((k // 2, k // 2), (k // 2, k // 2)),
        dimension_numbers=_DN)
  if demodulate:
    sq = jnp.einsum('ni,io->no', jnp.square(style), jnp.sum(jnp.square(w),
                                                              (0, 1)))
    out = out * jax.lax.rsqrt(sq + 1e-8)[:, None, None, :]
  return out


def _normal(scale: float = 1.0):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.normal(key, shape, dtype) * scale
  return init


class EqualDense(nn.Module):
  """EqualLinear: x @ (kernel * lr_mul / sqrt(in)) + bias * lr_mul."""
  features: int
  lr_mul: float = 1.0
  bias_init: float = 0.0
  activate: bool = False  # fused_lrelu on the output.

  @nn.compact
  def __call__(self, x):
    fan_in = x.shape[-1]
    kernel = self.param('kernel', _normal(1.0 / self.lr_mul),
                        (fan_in, self.features))
    bias = self.param('bias', nn.initializers.constant(self.bias_init),
                      (self.features,))
    y = x @ (kernel * (self.lr_mul / math.sqrt(fan_in)))
    b = bias * self.lr_mul
    return fused_lrelu(y, b) if self.activate else y + b


class Mapping(nn.Module):
  """z (N, S) -> w (N, S): pixel norm, then n_mlp fused-lrelu EqualDense."""
  style_dim: int = 512
  n_mlp: int = 8
  lr_mul: float = 0.01

  @nn.compact
  def __call__(self, z):
    x = z * jax.lax.rsqrt(jnp.mean(jnp.square(z), -1, keepdims=True) + 1e-8)
    for i in range(self.n_mlp):
      x = EqualDense(self.style_dim, self.lr_mul, activate=True,
                     name=f'fc{i}')(x)
    return x


class StyledConv(nn.Module):
  """Modulated 3x3 conv (optionally upsampling) + noise + bias + lrelu."""
  features: int
  upsample: bool = False
  conv_clamp: float | None = None

  @nn.compact
  def __call__(self, x, w, noise=None):
    """x (N, H, W, I), w (N, S), noise (N, H', W') or None -> (N, H', W', O)."""
    cin = x.shape[-1]
    style = EqualDense(cin, bias_init=1.0, name='affine')(w)
    kernel = self.param('kernel', _normal(), (3, 3, cin, self.features))
    out = modulated_conv(x, kernel, style, upsample=self.upsample)
    strength = self.param('noise_strength', nn.initializers.zeros, ())
    if noise is not None:
      out = out + strength * noise[..., None]
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    return fused_lrelu(out, bias, self.conv_clamp)


class ToRGB(nn.Module):
  """Modulated 1x1 conv to RGB (no demodulation) + bias + upsampled skip."""
  conv_clamp: float | None = None

  @nn.compact
  def __call__(self, x, w, skip=None):
    cin = x.shape[-1]
    style = EqualDense(cin, bias_init=1.0, name='affine')(w)
    kernel = self.param('kernel', _normal(), (1, 1, cin, 3))
    out = modulated_conv(x, kernel, style, demodulate=False)
    out = out + self.param('bias', nn.initializers.zeros, (3,))
    if self.conv_clamp is not None:
      out = jnp.clip(out, -self.conv_clamp, self.conv_clamp)
    if skip is not None:
      # rosinality's Upsample: up 2, pad ((4 - 2 + 1) // 2 + 1, (4 - 2) // 2).
      out = out + upfirdn(skip, 2, (2, 1), 4.0)
    return out


class SynthesisBlock(nn.Module):
  """One resolution: const + conv1 (first) or conv0 (up) + conv1; toRGB."""
  features: int
  first: bool = False
  conv_clamp: float | None = None

  @nn.compact
  def __call__(self, x, ws, noises, skip):
    """ws (N, 2 or 3, S) rows for the block; noises: 1 or 2 maps or Nones."""
    if self.first:
      const = self.param('const', _normal(), (4, 4, self.features))
      x = jnp.broadcast_to(const, (ws.shape[0],) + const.shape)
      x = StyledConv(self.features, conv_clamp=self.conv_clamp,
                     name='conv1')(x, ws[:, 0], noises[0])
    else:
      x = StyledConv(self.features, upsample=True, conv_clamp=self.conv_clamp,
                     name='conv0')(x, ws[:, 0], noises[0])
      x = StyledConv(self.features, conv_clamp=self.conv_clamp,
                     name='conv1')(x, ws[:, 1], noises[1])
    rgb = ToRGB(self.conv_clamp, name='torgb')(x, ws[:, -1], skip)
    return x, rgb


class Synthesis(nn.Module):
  """W+ (N, n_latent, S) and noise maps -> image (N, res, res, 3), ~[-1, 1]."""
  resolution: int
  channels: tuple[int, ...]  # Per resolution 4, 8, .., resolution.
  conv_clamp: float | None = None

  @nn.compact
  def __call__(self, w_plus, noise: Sequence[jax.Array | None] | None = None):
    """noise: one (N, H, W) map per layer (see noise_shapes), or None."""
    shapes = noise_shapes(self.resolution)
    if noise is None:
      noise = (None,) * len(shapes)
    if len(noise) != len(shapes) or len(self.channels) != len(shapes) // 2 + 1:
      raise ValueError(
          f'a {self.resolution} px synthesis needs {len(shapes)} noise maps '
          f'and {len(shapes) // 2 + 1} channel widths, got {len(noise)} and '
          f'{len(self.channels)}')
    rows = n_latent(self.resolution)
    if w_plus.ndim != 3 or w_plus.shape[1] != rows:
      raise ValueError(
          f'W+ must be (N, {rows}, style_dim), got {w_plus.shape}')
    x, rgb = SynthesisBlock(self.channels[0], first=True,
                            conv_clamp=self.conv_clamp, name='b4')(
                                None, w_plus[:, 0:2], noise[0:1], None)
    for j, c in enumerate(self.channels[1:], start=1):
      x, rgb = SynthesisBlock(c, conv_clamp=self.conv_clamp,
                              name=f'b{4 * 2**j}')(
                                  x, w_plus[:, 2 * j - 1:2 * j + 2],
                                  noise[2 * j - 1:2 * j + 1], rgb)
    return rgb


class Generator(nn.Module):
  """Mapping + synthesis; __call__(z) broadcasts w over the W+ rows."""
  resolution: int
  style_dim: int = 512
  n_mlp: int = 8
  channel_multiplier: int = 2
  channels: tuple[int, ...] | None = None  # Overrides channel_multiplier.
  lr_mlp: float = 0.01
  conv_clamp: float | None = None

  def setup(self):
    self.mapping = Mapping(self.style_dim, self.n_mlp, self.lr_mlp)
    self.synthesis = Synthesis(
        self.resolution,
        resolve_channels(self.resolution, self.channel_multiplier,
                         self.channels), self.conv_clamp)

  def __call__(self, z, noise=None):
    """z (N, S) -> image (N, res, res, 3)."""
    w = self.mapping(z)
    rows = n_latent(self.resolution)
    return self.synthesis(jnp.repeat(w[:, None], rows, axis=1), noise)

  def synthesize(self, w_plus, noise=None):
    return self.synthesis(w_plus, noise)

  def map(self, z):
    return self.mapping(z)


class EqualConv(nn.Module):
  """EqualConv2d (+ blur and stride 2 when down) + fused lrelu or bias."""
  features: int
  kernel_size: int = 3
  down: bool = False
  use_bias: bool = True
  activate: bool = True
  conv_clamp: float | None = None

  @nn.compact
  def __call__(self, x):
    k, cin = self.kernel_size, x.shape[-1]
    kernel = self.param('kernel', _normal(), (k, k, cin, self.features))
    w = kernel * (1.0 / math.sqrt(cin * k * k))
    if self.down:
      # rosinality's ConvLayer(downsample): blur padded by p = 2 + (k - 1)
      # split ((p + 1) // 2, p // 2), then a stride-2 valid conv.
      p = (len(BLUR_TAPS) - 2) + (k - 1)
      x = upfirdn(x, 1, ((p + 1) // 2, p // 2), 1.0)
      x = jax.lax.conv_general_dilated(x, w, (2, 2), 'VALID',
                                       dimension_numbers=_DN)
    else:
      x = jax.lax.conv_general_dilated(
          x, w, (1, 1), ((k // 2, k // 2), (k // 2, k // 2)),
          dimension_numbers=_DN)
    if not self.use_bias:
      return x
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    if self.activate:
      return fused_lrelu(x, bias, self.conv_clamp)
    return x + bias


def minibatch_stddev(x: jax.Array, group_size: int = 4, num_features: int = 1
                     ) -> jax.Array:
  """Appends the minibatch stddev feature(s), rosinality's grouping.

  Sample i is grouped with i ± k·N/G (G = min(N, group_size)); each group's
  per-pixel std over its G members, averaged over channels and pixels, is
  appended as `num_features` constant maps. A single image (G = 1) gets
  sqrt(1e-8) = 1e-4.
  """
  n, h, w, c = x.shape
  g = min(n, group_size)
  if n % g:
    raise ValueError(
        f'the minibatch stddev groups {g} images; batch {n} is not a multiple')
  y = x.reshape(g, n // g, h, w, num_features, c // num_features)
  std = jnp.sqrt(jnp.var(y, axis=0) + 1e-8)
  s = jnp.mean(std, axis=(1, 2, 4))  # (n // g, F)
  s = jnp.tile(s, (g, 1))
  return jnp.concatenate(
      [x, jnp.broadcast_to(s[:, None, None, :], (n, h, w, num_features))], -1)


class ResBlock(nn.Module):
  """conv0 3x3, conv1 3x3 down, 1x1 down skip; (out + skip) / sqrt(2)."""
  features: int
  conv_clamp: float | None = None

  @nn.compact
  def __call__(self, x):
    out = EqualConv(x.shape[-1], conv_clamp=self.conv_clamp, name='conv0')(x)
    out = EqualConv(self.features, down=True, conv_clamp=self.conv_clamp,
                    name='conv1')(out)
    skip = EqualConv(self.features, 1, down=True, use_bias=False,
                     activate=False, name='skip')(x)
    return (out + skip) / SQRT2


class Discriminator(nn.Module):
  """Residual D: images (N, res, res, 3) in [-1, 1] -> (logits (N,), feats).

  feats: the output of every residual block, first (highest resolution)
  block first: (N, res/2, res/2, C_{res/2}), .., (N, 4, 4, C_4).
  """
  resolution: int
  channel_multiplier: int = 2
  channels: tuple[int, ...] | None = None  # Per resolution 4 .. resolution.
  stddev_group: int = 4
  stddev_feat: int = 1
  conv_clamp: float | None = None

  @nn.compact
  def __call__(self, images):
    ch = resolve_channels(self.resolution, self.channel_multiplier,
                          self.channels)
    if images.ndim != 4 or images.shape[1:] != (self.resolution,) * 2 + (3,):
      raise ValueError(
          f'D expects (N, {self.resolution}, {self.resolution}, 3) images, '
          f'got {images.shape}')
    x = EqualConv(ch[-1], 1, conv_clamp=self.conv_clamp, name='fromrgb')(
        images)
    feats = []
    for i in range(len(ch) - 1, 0, -1):
      x = ResBlock(ch[i - 1], self.conv_clamp, name=f'b{4 * 2**i}')(x)
      feats.append(x)
    x = minibatch_stddev(x, self.stddev_group, self.stddev_feat)
    x = EqualConv(ch[0], conv_clamp=self.conv_clamp, name='final_conv')(x)
    # The files' dense rows follow torch's NCHW flatten.
    x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
    x = EqualDense(ch[0], activate=True, name='fc')(x)
    x = EqualDense(1, name='out')(x)
    return x[:, 0], tuple(feats)


def generator_hparams(params) -> dict:
  """Generator fields from a {'mapping', 'synthesis'} parameter tree."""
  syn = params['synthesis']
  blocks = sorted(int(k[1:]) for k in syn if k.startswith('b'))
  resolution = blocks[-1]
  if blocks != [2**i for i in range(2, check_resolution(resolution) + 1)]:
    raise ValueError(
        f'synthesis blocks {blocks} are not b4, b8, .. b{resolution}')
  fcs = [k for k in params['mapping'] if k.startswith('fc')]
  return dict(
      resolution=resolution,
      style_dim=int(syn['b4']['conv1']['affine']['kernel'].shape[0]),
      n_mlp=len(fcs),
      channels=tuple(int(syn[f'b{r}']['conv1']['kernel'].shape[-1])
                     for r in blocks))


def discriminator_hparams(params) -> dict:
  """Discriminator fields (resolution, channels, stddev_feat) from a tree."""
  blocks = sorted(int(k[1:]) for k in params if k.startswith('b'))
  resolution = blocks[-1]
  if blocks != [2**i for i in range(3, check_resolution(resolution) + 1)]:
    raise ValueError(f'D blocks {blocks} are not b8, .. b{resolution}')
  channels = [int(params['final_conv']['kernel'].shape[-1])]
  channels += [int(params[f'b{r}']['conv0']['kernel'].shape[-1])
               for r in blocks]
  # final_conv reads the 4x4 features plus the stddev maps.
  stddev_feat = int(params['final_conv']['kernel'].shape[2]) - channels[0]
  if stddev_feat < 1 or channels[0] % stddev_feat:
    raise ValueError(f'final_conv reads {stddev_feat} stddev features on '
                     f'{channels[0]} channels')
  return dict(resolution=resolution, channels=tuple(channels),
              stddev_feat=stddev_feat)
