"""ESRGAN generator RRDBNet: LR (N, h, w, C) in [0, 1] -> SR (N, s*h, s*w, C).

A line-by-line port of BasicSR `basicsr/archs/rrdbnet_arch.py`, in NHWC:
conv_first -> num_block RRDB -> conv_body, a long skip, then upsampling
(nearest x2 -> conv 3x3 -> LeakyReLU 0.2, twice), conv_hr -> LeakyReLU ->
conv_last. For scale 2 / 1 the input is pixel-unshuffled by 2 / 4 first, as in
BasicSR. The output is not clamped (BasicSR clamps only in `tensor2img`).

Departures from BasicSR, both opt-in or outside its range:
  * scale 3 (BasicSR has none): a single stage nearest x3 -> conv_up1 -> LReLU,
    which is also the layout of the old ESRGAN arch at x3.
  * `bicubic_skip=True`: the output is the network output plus the MATLAB
    bicubic upsampling of the input, and conv_last starts at zero so the
    untrained model returns exactly bicubic. Used by the small CPU demos.

Parameter names mirror BasicSR so that importers are a renaming. Mapping from
the three public key layouts (i: block, j: 1..3, k: 1..5, B: num_block):

  jaxsr               BasicSR (params[_ema])  ESRGAN mid arch
  conv_first          conv_first              conv_first
  body_i/rdbj/convk   body.i.rdbj.convk       RRDB_trunk.i.RDBj.convk
  conv_body           conv_body               trunk_conv
  conv_up1, conv_up2  conv_up1, conv_up2      upconv1, upconv2
  conv_hr             conv_hr                 HRconv
  conv_last           conv_last               conv_last

Old arch (LSRGAN's `architecture.py`; keys may carry a `module.` prefix):
conv_first = model.0, body_i/rdbj/convk = model.1.sub.i.RDBj.convk.0,
conv_body = model.1.sub.B; at x4 conv_up1 = model.3, conv_up2 = model.6,
conv_hr = model.8, conv_last = model.10; at x3 conv_up1 = model.3,
conv_hr = model.5, conv_last = model.7. (The old arch at x2 / x1 has one / no
upconv stage and no pixel-unshuffle, so it does not map.)

A PyTorch weight (O, I, kh, kw) is a Flax kernel (kh, kw, I, O):
`w.transpose(2, 3, 1, 0)`; biases are unchanged. `pixel_unshuffle` orders
channels as PyTorch does (c * f * f + i * f + j), so conv_first imports as is.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from jaxsr.data import imresize
from jaxsr.models import winograd

Initializer = jax.nn.initializers.Initializer
DENSE_IMPLS = ('concat', 'fused')
# How the dense-block convs get their kernel gradient: XLA's convolution, or
# Winograd F(4x4, 3x3) (models/winograd.py; same forward and input gradient,
# kernel gradients equal to ~1e-5 relative). 'auto', the default, is
# Winograd when JAX's default backend is the CPU (the faster step there,
# with xla_flags' scheduler setting: benchmarks/RESULTS.md) and XLA's on
# GPU/TPU, where it has not been shown to pay.
KERNEL_GRADS = ('auto', 'xla', 'winograd')


def resolve_kernel_grad(kernel_grad: str) -> str:
  """'auto' -> 'winograd' on a CPU default backend, else 'xla'; others as is."""
  if kernel_grad not in KERNEL_GRADS:
    raise ValueError(f'kernel_grad must be one of {KERNEL_GRADS}, got '
                     f'{kernel_grad!r}')
  if kernel_grad == 'auto':
    return 'winograd' if jax.default_backend() == 'cpu' else 'xla'
  return kernel_grad

# PyTorch's default Conv2d weight init is kaiming_uniform(a=sqrt(5)):
# U(-b, b), b = gain * sqrt(3 / fan_in), gain = sqrt(2 / (1 + 5)); so
# b = 1 / sqrt(fan_in), a variance of 1 / (3 fan_in).
torch_default_kernel_init = nn.initializers.variance_scaling(
    1.0 / 3.0, 'fan_in', 'uniform'
)

# BasicSR default_init_weights(..., scale=0.1): kaiming_normal (fan_in, gain
# sqrt(2) for leaky_relu with a=0), then times 0.1, i.e. an untruncated normal
# of variance 0.01 * 2 / fan_in. The small start keeps 23 RRDBs near identity.
rdb_kernel_init = nn.initializers.variance_scaling(0.02, 'fan_in', 'normal')


def torch_default_bias_init(fan_in: int) -> Initializer:
  """PyTorch's default Conv2d bias init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def conv3x3(
    features: int,
    in_features: int,
    name: str,
    dtype: DTypeLike = jnp.float32,
    kernel_init: Initializer | None = None,
    bias_init: Initializer | None = None,
) -> nn.Conv:
  """A 3x3 stride-1 zero-padded conv; PyTorch's default init unless given."""
  if kernel_init is None:
    kernel_init = torch_default_kernel_init
  if bias_init is None:
    # Flax bias inits do not see the fan-in, so it is bound here.
    bias_init = torch_default_bias_init(9 * in_features)
  return nn.Conv(
      features,
      (3, 3),
      padding=((1, 1), (1, 1)),
      dtype=dtype,
      param_dtype=jnp.float32,
      kernel_init=kernel_init,
      bias_init=bias_init,
      name=name,
  )


def pixel_unshuffle(x: jax.Array, factor: int) -> jax.Array:
  """(N, H, W, C) -> (N, H/f, W/f, C*f*f), channels in PyTorch's order."""
  n, h, w, c = x.shape
  if h % factor or w % factor:
    raise ValueError(
        f'pixel_unshuffle by {factor} needs H and W divisible by {factor}, '
        f'got {h}x{w}'
    )
  x = x.reshape(n, h // factor, factor, w // factor, factor, c)
  # PyTorch views NCHW as (n, c, h, f, w, f) and permutes to (n, c, f, f, h, w),
  # so the output channel is c * f * f + i * f + j.
  x = x.transpose(0, 1, 3, 5, 2, 4)
  return x.reshape(n, h // factor, w // factor, c * factor * factor)


def upsample_nearest(x: jax.Array, factor: int) -> jax.Array:
  """(N, H, W, C) -> (N, f*H, f*W, C), as torch's nearest `interpolate`."""
  return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


class _ConvParams(nn.Module):
  """The 'kernel' (3, 3, I, O) and 'bias' (O,) of a 3x3 conv, as nn.Conv's."""

  in_features: int
  features: int

  @nn.compact
  def __call__(self) -> tuple[jax.Array, jax.Array]:
    kernel = self.param('kernel', rdb_kernel_init,
                        (3, 3, self.in_features, self.features), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (self.features,),
                      jnp.float32)
    return kernel, bias


def _conv3x3_same(x: jax.Array, kernel: jax.Array,
                  kernel_grad: str) -> jax.Array:
  """Zero-padded stride-1 3x3 cross-correlation, NHWC x HWIO -> NHWC.

  kernel_grad: 'xla' or 'winograd', as resolve_kernel_grad returns it.
  """
  if kernel_grad == 'winograd':
    return winograd.conv3x3_winograd_kernel_grad(x, kernel)
  return winograd.xla_conv3x3(x, kernel)


class ResidualDenseBlock(nn.Module):
  """Five dense 3x3 convs, residual scaled by 0.2: (N, H, W, F) -> same.

  `dense='concat'` is BasicSR's formulation: conv k reads the concatenation
  [x, x1, ..., x_{k-1}]. `dense='fused'` computes the same function with the
  same parameters by linearity: each piece (x, then each x_j as soon as it
  exists) is convolved once with the slices of every later conv's kernel
  that read it, stacked along the output axis, and conv k sums its pieces'
  contributions. No concatenated activations are built, and the convs are
  wider (up to 192 outputs instead of 32), which suits CPU GEMMs.
  `kernel_grad` picks how the convs' kernel gradients are computed (see
  KERNEL_GRADS); it does not change the forward pass.
  """

  num_feat: int = 64
  num_grow_ch: int = 32
  dtype: DTypeLike = jnp.float32
  dense: str = 'concat'
  kernel_grad: str = 'auto'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """(N, H, W, num_feat) -> (N, H, W, num_feat)."""
    if x.shape[-1] != self.num_feat:
      raise ValueError(
          f'ResidualDenseBlock expects {self.num_feat} channels, '
          f'got {x.shape[-1]}'
      )
    if self.dense not in DENSE_IMPLS:
      raise ValueError(f'dense must be one of {DENSE_IMPLS}, got '
                       f'{self.dense!r}')
    kernel_grad = resolve_kernel_grad(self.kernel_grad)
    f, g = self.num_feat, self.num_grow_ch
    outs = (g, g, g, g, f)
    params = [_ConvParams(f + k * g, outs[k], name=f'conv{k + 1}')()
              for k in range(5)]
    kernels = [k.astype(self.dtype) for k, _ in params]
    biases = [b.astype(self.dtype) for _, b in params]
    x_in = x.astype(self.dtype)

    def lrelu(h):
      return nn.leaky_relu(h, 0.2)

    if self.dense == 'concat':
      feats = [x_in]
      for k in range(5):
        # BasicSR's torch.cat order, which fixes imported weights' layout.
        h = _conv3x3_same(jnp.concatenate(feats, axis=-1), kernels[k],
                          kernel_grad)
        h = h + biases[k]
        if k < 4:
          feats.append(lrelu(h))
    else:
      # Piece j occupies input channels [start_j, start_j + size_j) of every
      # conv k >= j (0-based), in the concatenation order above.
      acc = list(biases)
      piece = x_in
      for j in range(5):
        start, size = (0, f) if j == 0 else (f + (j - 1) * g, g)
        stacked = jnp.concatenate(
            [kernels[k][:, :, start:start + size, :] for k in range(j, 5)],
            axis=-1)
        y = _conv3x3_same(piece, stacked, kernel_grad)
        offset = 0
        for k in range(j, 5):
          acc[k] = acc[k] + y[..., offset:offset + outs[k]]
          offset += outs[k]
        if j < 4:
          piece = lrelu(acc[j])
      h = acc[4]
    return h * 0.2 + x


class RRDB(nn.Module):
  """Three ResidualDenseBlocks, residual scaled by 0.2: (N, H, W, F) -> same."""

  num_feat: int = 64
  num_grow_ch: int = 32
  dtype: DTypeLike = jnp.float32
  dense: str = 'concat'
  kernel_grad: str = 'auto'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """(N, H, W, num_feat) -> (N, H, W, num_feat)."""
    out = x
    for j in range(1, 4):
      out = ResidualDenseBlock(
          self.num_feat, self.num_grow_ch, self.dtype, self.dense,
          self.kernel_grad, name=f'rdb{j}'
      )(out)
    return out * 0.2 + x


class RRDBNet(nn.Module):
  """ESRGAN generator: (N, h, w, num_in_ch) -> (N, s*h, s*w, num_out_ch)."""

  num_in_ch: int = 3
  num_out_ch: int = 3
  scale: int = 4
  num_feat: int = 64
  num_block: int = 23
  num_grow_ch: int = 32
  bicubic_skip: bool = False
  dtype: DTypeLike = jnp.float32
  dense: str = 'concat'  # ResidualDenseBlock formulation (same function).
  kernel_grad: str = 'auto'  # Dense-block kernel gradients: KERNEL_GRADS.
  # Recompute each RRDB's activations in the backward pass instead of
  # storing them (nn.remat): less memory for large batches, more FLOPs.
  remat: bool = False

  @nn.compact
  def __call__(self, lr: jax.Array) -> jax.Array:
    """LR (N, h, w, C) in [0, 1] -> float32 SR (N, s*h, s*w, C), unclamped."""
    if self.scale not in (1, 2, 3, 4):
      raise ValueError(f'RRDBNet scale must be 1, 2, 3 or 4, got {self.scale}')
    if lr.ndim != 4 or lr.shape[-1] != self.num_in_ch:
      raise ValueError(
          f'RRDBNet expects (N, h, w, {self.num_in_ch}) input, got {lr.shape}'
      )
    if self.bicubic_skip and self.num_in_ch != self.num_out_ch:
      raise ValueError(
          'bicubic_skip needs num_in_ch == num_out_ch, got '
          f'{self.num_in_ch} and {self.num_out_ch}'
      )

    def conv(features, x, name, **inits):
      return conv3x3(features, x.shape[-1], name, self.dtype, **inits)(x)

    def lrelu(x):
      return nn.leaky_relu(x, 0.2)

    # BasicSR keeps the body at LR/4 resolution for every scale: x2 and x1
    # inputs are folded into channels, then two x2 stages restore the size.
    unshuffle = {1: 4, 2: 2}.get(self.scale, 1)
    feat = pixel_unshuffle(lr, unshuffle) if unshuffle > 1 else lr
    feat = conv(self.num_feat, feat, 'conv_first')
    body = feat
    block = nn.remat(RRDB) if self.remat else RRDB
    for i in range(self.num_block):
      body = block(
          self.num_feat, self.num_grow_ch, self.dtype, self.dense,
          self.kernel_grad, name=f'body_{i}'
      )(body)
    feat = feat + conv(self.num_feat, body, 'conv_body')

    factors = (3,) if self.scale == 3 else (2, 2)
    for i, factor in enumerate(factors, start=1):
      feat = upsample_nearest(feat, factor)
      feat = lrelu(conv(self.num_feat, feat, f'conv_up{i}'))
    feat = lrelu(conv(self.num_feat, feat, 'conv_hr'))
    if self.bicubic_skip:
      # Zero start: the untrained model is exactly bicubic.
      inits = dict(
          kernel_init=nn.initializers.zeros, bias_init=nn.initializers.zeros
      )
    else:
      inits = {}
    # Images are float32 by convention, whatever the computation dtype.
    out = conv(self.num_out_ch, feat, 'conv_last', **inits).astype(jnp.float32)
    if self.bicubic_skip:
      out = out + imresize.imresize_jax(lr.astype(jnp.float32), self.scale)
    return out
