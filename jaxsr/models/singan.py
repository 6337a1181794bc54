"""SinGAN's per-scale generator and patch discriminator (paper 004 §3, eq. 6; official SinGAN models.py).

Both are `num_layer` = 5 conv blocks of 3x3 VALID convolutions (the official
padd 0: each conv trims one pixel per side, 10 in all): head and 3 body
blocks conv -> BatchNorm -> LeakyReLU(0.2), then a tail conv. Every block is
`features` wide: the official `nfc` and `min_nfc` are equal, both
min(32 * 2^floor(n / 4), 128) at scale n (`features_at`).

- G (`GeneratorConcatSkip2CleanAdd`): x̃_n = y + tanh(tail(body(head(x)))),
  x = z + y the noise plus the upsampled coarser image, zero-padded by 5, and
  y that padded image centre-cropped back by 5 (eq. 6).
- D (`WDiscriminator`): the same body, tail conv to 1 channel: a patch map,
  each value seeing an 11x11 window (`RECEPTIVE_FIELD`).

Init as the official `weights_init`: conv kernels N(0, 0.02), BN scale
N(1, 0.02) and bias 0; conv biases keep PyTorch's default U(±1/sqrt(fan_in)).
BN is PyTorch's (eps 1e-5, momentum 0.1 = flax's 0.9), batch statistics when
`train`, else the running ones (the official G.eval() of finished scales).
PyTorch updates running_var with the unbiased variance (n/(n-1), n = H*W of
one image, > 625), flax with the biased one: eval-mode outputs differ by
that factor in the variance only.

`kernel_grad='winograd'` (the CPU default of `experiments/singan.py`)
computes the same convolutions with gradients free of XLA's kernel-gradient
convolutions (`winograd.conv3x3_valid`, also through a gradient penalty's
second order): the same values to float32 rounding, a faster step on
XLA:CPU.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxsr.models import rrdbnet
from jaxsr.models import winograd

NUM_LAYER = 5
KERNEL = 3
PAD = (KERNEL - 1) * NUM_LAYER // 2  # 5: zero padding of G's inputs.
RECEPTIVE_FIELD = KERNEL + (KERNEL - 1) * (NUM_LAYER - 1)  # 11.
_BN_MOMENTUM = 0.9  # PyTorch momentum 0.1.
_BN_EPSILON = 1e-5


def features_at(scale: int, base: int = 32, cap: int = 128) -> int:
  """Block width at pyramid scale n (0 = coarsest): min(base 2^(n//4), cap)."""
  return min(base * 2**(scale // 4), cap)


def _bn_scale_init(key, shape, dtype=jnp.float32):
  return 1.0 + 0.02 * jax.random.normal(key, shape, dtype)


def _winograd_valid(lhs, rhs, window_strides, padding, **unused):
  """nn.Conv's conv_general_dilated for its 3x3 stride-1 VALID convs."""
  del window_strides, padding, unused  # Always (1, 1) and VALID here.
  return winograd.conv3x3_valid(lhs, rhs)


def _conv(features: int, fan_in: int, name: str,
          kernel_grad: str) -> nn.Conv:
  """A 3x3 VALID conv; kernel_grad 'winograd': the same function, its
  gradients free of XLA's kernel-gradient convolutions (models/winograd.py
  `conv3x3_valid`), 'xla': lax.conv_general_dilated's own."""
  if kernel_grad not in ('xla', 'winograd'):
    raise ValueError(f"kernel_grad must be 'xla' or 'winograd' (resolved), "
                     f'got {kernel_grad!r}')
  return nn.Conv(features, (KERNEL, KERNEL), padding='VALID',
                 kernel_init=nn.initializers.normal(0.02),
                 bias_init=rrdbnet.torch_default_bias_init(fan_in), name=name,
                 conv_general_dilated=(_winograd_valid
                                       if kernel_grad == 'winograd' else None))


class ConvBlock(nn.Module):
  """conv3x3 (VALID) -> BatchNorm -> LeakyReLU(0.2)."""
  features: int
  kernel_grad: str = 'xla'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = _conv(self.features, KERNEL * KERNEL * x.shape[-1], 'conv',
              self.kernel_grad)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=_BN_MOMENTUM,
                     epsilon=_BN_EPSILON, scale_init=_bn_scale_init,
                     name='norm')(x)
    return nn.leaky_relu(x, 0.2)


class _Body(nn.Module):
  """head + 3 body blocks, all `features` wide."""
  features: int
  kernel_grad: str = 'xla'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = ConvBlock(self.features, self.kernel_grad, name='head')(x, train)
    for i in range(NUM_LAYER - 2):
      x = ConvBlock(self.features, self.kernel_grad,
                    name=f'block{i + 1}')(x, train)
    return x


class Generator(nn.Module):
  """(N, H+10, W+10, 3) noisy input, (N, H+10, W+10, 3) padded coarser image
  -> (N, H, W, 3), both in [-1, 1] (eq. 6)."""
  features: int = 32
  channels: int = 3
  kernel_grad: str = 'xla'  # See _conv; build_nets resolves the config's.

  @nn.compact
  def __call__(self, x: jax.Array, y: jax.Array, train: bool) -> jax.Array:
    h = _Body(self.features, self.kernel_grad, name='body')(x, train)
    h = _conv(self.channels, KERNEL * KERNEL * self.features, 'tail',
              self.kernel_grad)(h)
    h = jnp.tanh(h)
    ind = (y.shape[1] - h.shape[1]) // 2
    return h + y[:, ind:y.shape[1] - ind, ind:y.shape[2] - ind]


class Discriminator(nn.Module):
  """(N, H, W, 3) in [-1, 1] -> (N, H-10, W-10, 1) critic values, each of an
  11x11 patch. Its last layer (the "embedding layer" of paper 004 §4.2) is
  params['tail']."""
  features: int = 32
  kernel_grad: str = 'xla'  # See _conv; build_nets resolves the config's.

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    h = _Body(self.features, self.kernel_grad, name='body')(x, train)
    return _conv(1, KERNEL * KERNEL * self.features, 'tail',
                 self.kernel_grad)(h)
