"""AMNet (blind SR with adaptive modulation) and its blur-kernel predictor.

`AMNet`: LR (N, h, w, C) in [0, 1] and a degradation code (N, code_dim) ->
SR (N, s*h, s*w, C), s in {2, 3, 4}. `KernelPredictor`: LR (N, h, w, C) ->
code (N, code_dim), the actor of AMNet-RL. Two separate modules, so their
parameters are separate pytrees (the RL stage updates the predictor and
keeps AMNet frozen).

What the paper gives. The CVPR'21 paper (Hui et al., "Learning the
Non-differentiable Optimization for Blind Super-Resolution") is not
available offline and has no public code. Its abstract (CVPR open-access
page, found with the pages search) says only: AMNet is "composed of the
pivotal adaptive modulation layer (AMLayer)", "an efficient yet lightweight
fusion layer between blur kernel and image features"; a blur-kernel
predictor makes it blind and is trained "in the whole blind SR model, in
which AMNet is well-trained"; in AMNet-RL the predictor is the actor. The
supplement (paper 003) describes only the discriminator, losses and
Algorithm 1. Searches of the code, issues and docs corpora found no
description of the layer itself. Every choice below is therefore ours,
assembled from well-known conditioning layers (SRMD / IKC's SFTMD use the
PCA kernel code stretched over the image; DASR and AdaFM modulate features
per channel; StyleGAN's style modulation is a per-channel affine of a code):

  * The code is the kernel's PCA code (10 dims by default, IKC/DAN) with
    the noise level appended when noise is modelled: code_dim = 11 then.
    It is spatially constant, so the fusion is per channel: each AMLayer maps
    the code through its own small MLP, Dense(code_dim -> mod_hidden) ->
    LeakyReLU(0.2) -> two heads Dense(mod_hidden -> F) giving Δγ and β, and
    returns x * (1 + Δγ) + β (one scale and one shift per channel and
    image). "Lightweight": at the defaults an AMLayer has 9,024 parameters
    against a block's 73,856 in convs, and costs O(N F) instead of a conv.
  * The heads start small (variance 0.01 / fan_in): an untrained AMNet is
    close to the unmodulated network, yet d SR / d code is not zero, so the
    code's gradient is usable from the first step (a zero init would make it
    exactly zero until the heads move). Zero heads give exactly the plain
    residual network (tested).
  * One AMLayer per residual block, after the first conv and before the
    ReLU, so the code also moves the non-linearity's operating point (the
    SFTMD order): block(x) = x + res_scale * conv2(ReLU(AM(conv1(x), code))).
  * Backbone: EDSR-baseline-like (no BN, 64 features, 16 blocks, biases):
    conv_first -> blocks -> conv_body, a long skip, then the EDSR upsampler
    (conv F -> F*f*f -> pixel shuffle by f, no activation; two x2 stages at
    x4, one x3 or x2 stage) -> conv_last. The 3x3 convs use PyTorch's default
    init (`rrdbnet.conv3x3`), as EDSR's. `bicubic_skip=True` adds the MATLAB
    bicubic upsampling of the LR and zero-starts conv_last, as RRDBNet's
    option (for short CPU demos); it is off by default.
  * No code-to-image concatenation at the input (SRMD): the AMLayers are the
    only fusion, as the abstract names the AMLayer as "the" fusion layer.
  * The output is float32 and unclamped (clip for display), as RRDBNet.

Defaults (x4, F = 64, 16 blocks, code_dim 10, mod_hidden 64) give 1,661,955
parameters (tests/models/test_amnet.py derives it by hand). The supplement
also names an "AMNet.L" (size not given): a larger num_feat / num_block. A
tiny CPU variant: AMNet(num_feat=8, num_block=2, mod_hidden=8). The code is
used as given (no normalization inside): feed it in the convention of the
degradation pipeline that fitted the PCA.

Kernel predictor (our design; the paper gives none): conv_first 3x3 ->
LReLU(0.2), num_down x [3x3 stride-2 conv -> LReLU], conv_last 3x3 -> LReLU,
global average pool (any LR size), Dense(num_feat) -> LReLU ->
Dense(code_dim); 154,314 parameters at the defaults (64 features, three
stride-2 convs). Trained first by L2 regression to the true code; since
d SR / d code flows through AMNet, it can also be trained through a frozen
AMNet (the abstract's "trainable in the whole blind SR model"); then it is
the DDPG actor. `bound` (default None: unbounded, a plain regression)
squashes the output as bound * tanh(y / bound): slope 1 at 0, values in
(-bound, bound), the usual bounded action of DDPG actors; set it from the
fitted PCA codes' range (for example 1.5x their largest magnitude).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from jaxsr.data import imresize
from jaxsr.models import rrdbnet
from jaxsr.models import srresnet

SCALES = (2, 3, 4)
# Small modulation heads: variance 0.01 / fan_in (std 0.1 / sqrt(fan_in)).
head_init = nn.initializers.variance_scaling(0.01, 'fan_in', 'normal')


def _lrelu(x: jax.Array) -> jax.Array:
  return nn.leaky_relu(x, 0.2)


def _check_lr(name: str, lr: jax.Array, channels: int) -> None:
  """LR inputs are (N, h, w, channels)."""
  if lr.ndim != 4 or lr.shape[-1] != channels:
    raise ValueError(
        f'{name} expects an LR of shape (N, h, w, {channels}), got {lr.shape}'
    )


class AMLayer(nn.Module):
  """Per-channel modulation by a code: (N, H, W, F), (N, D) -> (N, H, W, F).

  out = x * (1 + Δγ(code)) + β(code), with Δγ, β from a one-hidden-layer MLP
  (Dense 'mlp' -> LReLU 0.2 -> Dense heads 'to_scale', 'to_shift').
  """

  num_feat: int = 64
  hidden: int = 64
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, code: jax.Array) -> jax.Array:
    """x (N, H, W, num_feat), code (N, code_dim) -> (N, H, W, num_feat)."""
    if x.shape[-1] != self.num_feat:
      raise ValueError(
          f'AMLayer expects {self.num_feat} channels, got {x.shape[-1]}'
      )

    def dense(features, name, **inits):
      return nn.Dense(features, dtype=self.dtype, param_dtype=jnp.float32,
                      name=name, **inits)

    h = _lrelu(dense(self.hidden, 'mlp')(code))
    heads = dict(kernel_init=head_init, bias_init=nn.initializers.zeros)
    d_scale = dense(self.num_feat, 'to_scale', **heads)(h)
    shift = dense(self.num_feat, 'to_shift', **heads)(h)
    # The code is one vector per image: broadcast over the pixels.
    return x * (1.0 + d_scale[:, None, None, :]) + shift[:, None, None, :]


class AMResBlock(nn.Module):
  """x + res_scale * conv2(ReLU(AMLayer(conv1(x), code))): (N, H, W, F)."""

  num_feat: int = 64
  mod_hidden: int = 64
  res_scale: float = 1.0
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, code: jax.Array) -> jax.Array:
    """x (N, H, W, num_feat), code (N, code_dim) -> (N, H, W, num_feat)."""
    f = self.num_feat
    h = rrdbnet.conv3x3(f, f, 'conv1', self.dtype)(x)
    h = AMLayer(f, self.mod_hidden, self.dtype, name='am')(h, code)
    h = rrdbnet.conv3x3(f, f, 'conv2', self.dtype)(nn.relu(h))
    return x + self.res_scale * h


class AMNet(nn.Module):
  """Code-modulated SR network: (N, h, w, C), (N, D) -> (N, s*h, s*w, C)."""

  num_in_ch: int = 3
  scale: int = 4
  num_feat: int = 64
  num_block: int = 16
  code_dim: int = 10  # PCA dims of the kernel (+1 when the noise is coded).
  mod_hidden: int = 64  # Hidden width of each AMLayer's MLP.
  res_scale: float = 1.0  # EDSR's residual scaling (1 for the baseline).
  bicubic_skip: bool = False
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, lr: jax.Array, code: jax.Array) -> jax.Array:
    """LR (N, h, w, C) in [0, 1], code (N, D) -> float32 SR, unclamped."""
    if self.scale not in SCALES:
      raise ValueError(f'AMNet scale must be one of {SCALES}, got {self.scale}')
    _check_lr('AMNet', lr, self.num_in_ch)
    if code.shape != (lr.shape[0], self.code_dim):
      raise ValueError(
          f'AMNet expects a code of shape ({lr.shape[0]}, {self.code_dim}) '
          f'for an LR batch of {lr.shape[0]}, got {code.shape}'
      )
    f = self.num_feat

    def conv(features, x, name, **inits):
      return rrdbnet.conv3x3(features, x.shape[-1], name, self.dtype,
                             **inits)(x)

    code = code.astype(jnp.float32)
    feat = conv(f, lr, 'conv_first')
    body = feat
    for i in range(self.num_block):
      body = AMResBlock(f, self.mod_hidden, self.res_scale, self.dtype,
                        name=f'body_{i}')(body, code)
    feat = feat + conv(f, body, 'conv_body')
    # EDSR's upsampler: conv to f*f times the features, then pixel shuffle.
    factors = (2, 2) if self.scale == 4 else (self.scale,)
    for i, factor in enumerate(factors):
      feat = srresnet.pixel_shuffle(
          conv(f * factor * factor, feat, f'up_{i}'), factor)
    inits = {}
    if self.bicubic_skip:
      # Zero start: the untrained model is exactly bicubic.
      inits = dict(kernel_init=nn.initializers.zeros,
                   bias_init=nn.initializers.zeros)
    out = conv(self.num_in_ch, feat, 'conv_last', **inits).astype(jnp.float32)
    if self.bicubic_skip:
      out = out + imresize.imresize_jax(lr.astype(jnp.float32), self.scale)
    return out


class KernelPredictor(nn.Module):
  """Kernel-code predictor (the RL actor): (N, h, w, C) -> (N, code_dim)."""

  num_in_ch: int = 3
  code_dim: int = 10
  num_feat: int = 64
  num_down: int = 3  # Stride-2 convs before the global average pool.
  bound: float | None = None  # Output bound * tanh(y / bound) when set.
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, lr: jax.Array) -> jax.Array:
    """LR (N, h, w, C) in [0, 1] -> float32 code (N, code_dim)."""
    _check_lr('KernelPredictor', lr, self.num_in_ch)
    if self.bound is not None and not self.bound > 0:
      raise ValueError(f'KernelPredictor bound must be > 0, got {self.bound}')
    f = self.num_feat

    def conv(x, name, strides=(1, 1)):
      # PyTorch padding=1: a stride-2 conv maps h to ceil(h / 2).
      return nn.Conv(
          f, (3, 3), strides, padding=((1, 1), (1, 1)), dtype=self.dtype,
          param_dtype=jnp.float32,
          kernel_init=rrdbnet.torch_default_kernel_init,
          bias_init=rrdbnet.torch_default_bias_init(9 * x.shape[-1]),
          name=name)(x)

    x = _lrelu(conv(lr, 'conv_first'))
    for i in range(self.num_down):
      x = _lrelu(conv(x, f'down_{i}', (2, 2)))
    x = _lrelu(conv(x, 'conv_last'))
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2))  # Any LR size.
    x = _lrelu(nn.Dense(f, dtype=self.dtype, param_dtype=jnp.float32,
                        name='fc1')(x))
    y = nn.Dense(self.code_dim, dtype=self.dtype, param_dtype=jnp.float32,
                 name='fc2')(x).astype(jnp.float32)
    if self.bound is not None:
      y = self.bound * jnp.tanh(y / self.bound)
    return y
