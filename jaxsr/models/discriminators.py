"""ESRGAN discriminator: HR (N, S, S, C) in [0, 1] -> logits (N, num_outputs).

A line-by-line port of BasicSR `VGGStyleDiscriminator`
(`basicsr/archs/discriminator_arch.py`), in NHWC:
conv0_0 (3x3, bias) -> LReLU 0.2; conv0_1 (4x4 s2) -> BN -> LReLU; then for
stages i = 1..4 (and 5 when input_size is 256): convi_0 (3x3 s1) -> BN ->
LReLU, convi_1 (4x4 s2) -> BN -> LReLU, with nf, 2nf, 4nf, 8nf, 8nf(, 8nf)
channels; every conv after conv0_0 has no bias. The 4x4 map is flattened in
NCHW order -> linear1 (100) -> LReLU 0.2 -> linear2 (1).

Beyond BasicSR (its sizes are 128 and 256): any power of two S >= 8, with
stages i = 1 .. log2(S) - 3 of width min(2^i, 8) nf (the same widths at 128
and 256); `num_outputs` logits (K > 1: the realness distribution over K
outcomes of RealnessGAN, AMGAN's D, paper 003 Fig. 1, with the losses in
`jaxsr.losses.realness`); `reparam=True`: RealnessGAN's adaptive
reparameterization (`use_adaptive_reparam` in kam1107/RealnessGAN, on in its
code, not mentioned by AMGAN): the last layer is `reparam` (100 -> 2K)
giving (mu, log var) and the output is mu + exp(log var / 2) eps, eps ~
N(0, I) from the 'reparam' rng stream, in every call (as upstream); linear2
is then absent (upstream computes and discards it). With K outputs every
parameter but the last layer has ESRGAN's name and shape, so a trained
ESRGAN D warm-starts a realness D.

Importing PyTorch weights is a renaming plus layout changes: a conv weight
(O, I, kh, kw) is a kernel `w.transpose(2, 3, 1, 0)`; a Linear weight
(out, in) is a Dense kernel `w.T`; BN weight/bias are scale/bias and
running_mean/running_var are batch_stats mean/var. Because the flatten is in
NCHW order (see `__call__`), linear1 imports without permuting its inputs.

`norm` selects a normalization of every conv and linear layer (paper 002's
ESRGAN* baseline: "an equivalent version [of ESRGAN] with spectral
normalization"): 'none' (BasicSR, plain nn.Conv / nn.Dense), 'spectral'
(Miyato's σ with one power iteration per training call and its vector u in
the 'spectral' collection, zero padding as torch's spectral_norm on
nn.Conv2d) or 'san' (paper 002's ‖W‖₀,∞ with circular padding, divisors in
the 'san' collection). Parameter names and shapes are the same in every
case, so imported weights load into all three. `batch_norm=False` drops the
BN layers (BN after a SAN conv cancels its scale).

Known departure: PyTorch updates running_var with the unbiased batch variance
(factor n / (n - 1), n = N*H*W), flax with the biased one. Training-mode
outputs are identical; eval-mode outputs after training differ by that
factor (256/255 at the last BN for a batch of 16), which ESRGAN never uses.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from jaxsr.models import layers
from jaxsr.models import rrdbnet

# PyTorch BatchNorm2d defaults: momentum 0.1 on the new value, i.e. flax's
# decay of the old running value 0.9; eps 1e-5.
_BN_MOMENTUM = 0.9
_BN_EPSILON = 1e-5
_HIDDEN = 100  # linear1's width.
NORMS = ('none', 'spectral', 'san')


def norm_collections(norm: str) -> tuple[str, ...]:
  """The variable collections a D with this norm carries besides params."""
  if norm not in NORMS:
    raise ValueError(f'discriminator norm must be one of {NORMS}, got '
                     f'{norm!r}')
  return () if norm == 'none' else (norm,)


def num_stages(input_size: int) -> int:
  """The conv pairs after conv0_1 that bring input_size down to 4x4."""
  if input_size < 8 or input_size & (input_size - 1):
    raise ValueError(
        f'VGGStyleDiscriminator input_size must be a power of two >= 8, got '
        f'{input_size}'
    )
  return input_size.bit_length() - 4


class VGGStyleDiscriminator(nn.Module):
  """ESRGAN VGG-style D: (N, S, S, num_in_ch), S = input_size -> (N, K)."""

  num_in_ch: int = 3
  num_feat: int = 64
  input_size: int = 128
  norm: str = 'none'
  batch_norm: bool = True
  num_outputs: int = 1  # K; > 1: RealnessGAN's outcome logits.
  reparam: bool = False  # RealnessGAN's adaptive reparameterization.
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool,
               update_stats: bool = False) -> jax.Array:
    """(N, S, S, C) in [0, 1] -> float32 logits (N, num_outputs).

    train: BN on batch statistics; update_stats: refresh the norm's state
    (the spectral u after its power iteration, or SAN's divisors), with that
    collection mutable. With reparam, pass rngs={'reparam': key}.
    """
    norm_collections(self.norm)  # Validates the name.
    stages = num_stages(self.input_size)
    if self.num_outputs < 1:
      raise ValueError(f'VGGStyleDiscriminator num_outputs must be >= 1, got '
                       f'{self.num_outputs}')
    if x.ndim != 4 or x.shape[-1] != self.num_in_ch:
      raise ValueError(
          f'the ESRGAN discriminator expects (N, H, W, {self.num_in_ch}) '
          f'input, got {x.shape}'
      )
    if x.shape[1:3] != (self.input_size, self.input_size):
      raise ValueError(
          f'the ESRGAN discriminator expects {self.input_size}x'
          f'{self.input_size} inputs, got {x.shape[1]}x{x.shape[2]}'
      )

    def lrelu(h):
      return nn.leaky_relu(h, 0.2)

    def conv(h, features, size, stride, name, use_bias=False):
      fan_in = size * size * h.shape[-1]
      kwargs = dict(
          strides=(stride, stride), use_bias=use_bias, dtype=self.dtype,
          param_dtype=jnp.float32,
          kernel_init=rrdbnet.torch_default_kernel_init,
          bias_init=rrdbnet.torch_default_bias_init(fan_in), name=name)
      # PyTorch padding=1 for both the 3x3 s1 and the 4x4 s2 convs:
      # 4x4 s2 maps S to (S + 2 - 4) // 2 + 1 = S / 2 exactly.
      if self.norm == 'none':
        return nn.Conv(features, (size, size), padding=((1, 1), (1, 1)),
                       **kwargs)(h)
      if self.norm == 'spectral':
        h = jnp.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)))  # Zero padding.
      return layers.NormalizedConv(
          features, (size, size), norm=self.norm,
          padding=1 if self.norm == 'san' else ((0, 0), (0, 0)), **kwargs,
      )(h, update_stats)

    def bn(h, name):
      if not self.batch_norm:
        return h
      return nn.BatchNorm(
          use_running_average=not train,
          momentum=_BN_MOMENTUM,
          epsilon=_BN_EPSILON,
          dtype=self.dtype,
          param_dtype=jnp.float32,
          name=name,
      )(h)

    nf = self.num_feat
    h = lrelu(conv(x, nf, 3, 1, 'conv0_0', use_bias=True))
    h = lrelu(bn(conv(h, nf, 4, 2, 'conv0_1'), 'bn0_1'))  # S / 2
    # BasicSR: 2nf, 4nf, 8nf, 8nf at 128, and an extra stage 5 at 256.
    widths = [min(2**i, 8) * nf for i in range(1, stages + 1)]
    for i, width in enumerate(widths, start=1):
      h = lrelu(bn(conv(h, width, 3, 1, f'conv{i}_0'), f'bn{i}_0'))
      h = lrelu(bn(conv(h, width, 4, 2, f'conv{i}_1'), f'bn{i}_1'))
    # Now (N, 4, 4, 8nf). PyTorch's `view(N, -1)` flattens NCHW, so transpose
    # first: imported linear1 weights then line up feature for feature.
    h = jnp.transpose(h, (0, 3, 1, 2)).reshape(h.shape[0], -1)

    def dense(h, features, name):
      kwargs = dict(
          dtype=self.dtype, param_dtype=jnp.float32,
          kernel_init=rrdbnet.torch_default_kernel_init,
          bias_init=rrdbnet.torch_default_bias_init(h.shape[-1]), name=name)
      if self.norm == 'none':
        return nn.Dense(features, **kwargs)(h)
      return layers.NormalizedDense(features, norm=self.norm, **kwargs)(
          h, update_stats)

    h = lrelu(dense(h, _HIDDEN, 'linear1'))
    if not self.reparam:
      return dense(h, self.num_outputs, 'linear2').astype(jnp.float32)
    stats = dense(h, 2 * self.num_outputs, 'reparam').astype(jnp.float32)
    mu, log_var = jnp.split(stats, 2, axis=-1)  # torch chunk(2, 1).
    eps = jax.random.normal(self.make_rng('reparam'), mu.shape, jnp.float32)
    return mu + jnp.exp(0.5 * log_var) * eps
