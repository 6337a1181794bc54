"""InceptionV3 features of pytorch-fid: (N, H, W, 3) in [0, 1] -> {name: NHWC}.

The network is torchvision's `Inception3` cut into pytorch-fid's four blocks
(`pytorch_fid/inception.py`), NHWC instead of NCHW:
  block0: Conv2d_1a_3x3, Conv2d_2a_3x3, Conv2d_2b_3x3, max-pool 3/2 -> 64
  block1: Conv2d_3b_1x1, Conv2d_4a_3x3, max-pool 3/2                 -> 192
  block2: Mixed_5b ... Mixed_6e                                       -> 768
  block3: Mixed_7a, Mixed_7b, Mixed_7c, global average pool           -> 2048
Two more names are the conv outputs just before the two max-pools:
`conv2d_2b` (64 channels; the official SinGAN SIFID features, whose
`SIFID/inception.py` moved the first max-pool into its block 1) and
`conv2d_4a` (192; "just before the second pooling layer", as the SinGAN
paper describes SIFID). The network stops at the deepest requested output.

`variant='fid'` is pytorch-fid's FID Inception (the TF 2015-12-05 graph):
its InceptionA/C/E_1 average pools exclude the zero padding
(`count_include_pad=False`) and Mixed_7c pools with a 3x3 max instead of an
average. `variant='torchvision'` is torchvision's `inception_v3` (averages
include the padding). Both share parameter names and shapes; blocks 0 and 1
are identical.

Each BasicConv2d is a bias-free conv, an inference-mode batch norm (eps
1e-3) and a ReLU. Variables follow torchvision's names, e.g.
params['Mixed_5b']['branch5x5_2']['conv']['kernel'] (kh, kw, I, O) and
batch_stats['Mixed_5b']['branch5x5_2']['bn']['mean'], so
`jaxsr.pretrained.inception` maps a state dict by splitting its keys.
Inputs in [0, 1] are scaled to [-1, 1] (`normalize_input`); pytorch-fid
(FID) also resizes to 299 x 299 bilinearly, SinGAN's SIFID does not.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

# Output names in network order, with their channel counts.
OUTPUTS = ('conv2d_2b', 'block0', 'conv2d_4a', 'block1', 'block2', 'block3')
CHANNELS = {
    'conv2d_2b': 64, 'block0': 64, 'conv2d_4a': 192, 'block1': 192,
    'block2': 768, 'block3': 2048,
}  # pyformat: disable
# pytorch-fid's BLOCK_INDEX_BY_DIM, in our names.
BLOCK_BY_DIM = {64: 'block0', 192: 'block1', 768: 'block2', 2048: 'block3'}
VARIANTS = ('fid', 'torchvision')
FID_INPUT_SIZE = 299
_BN_EPSILON = 1e-3  # torchvision BasicConv2d: BatchNorm2d(eps=0.001).

Pair = tuple[int, int]


class BasicConv2d(nn.Module):
  """Conv (no bias) -> batch norm (running stats, eps 1e-3) -> ReLU, NHWC."""

  features: int
  kernel_size: Pair
  strides: Pair = (1, 1)
  padding: Pair = (0, 0)
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x (N, H, W, I) -> (N, h, w, features), torch Conv2d size arithmetic."""
    ph, pw = self.padding
    x = nn.Conv(
        self.features,
        self.kernel_size,
        strides=self.strides,
        padding=((ph, ph), (pw, pw)),
        use_bias=False,
        dtype=self.dtype,
        param_dtype=jnp.float32,
        name='conv',
    )(x)
    # A frozen feature network: always the running statistics.
    x = nn.BatchNorm(
        use_running_average=True,
        epsilon=_BN_EPSILON,
        dtype=self.dtype,
        param_dtype=jnp.float32,
        name='bn',
    )(x)
    return nn.relu(x)


def _max_pool_3x3_s2(x: jax.Array) -> jax.Array:
  """torch MaxPool2d(3, stride=2): no padding, floor of the output size."""
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding='VALID')


def _avg_pool_3x3(x: jax.Array, count_include_pad: bool) -> jax.Array:
  """torch avg_pool2d(3, stride=1, padding=1, count_include_pad=...)."""
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                     count_include_pad=count_include_pad)


def _max_pool_3x3_s1(x: jax.Array) -> jax.Array:
  """torch max_pool2d(3, stride=1, padding=1): the pad never wins (-inf)."""
  return nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))


class InceptionA(nn.Module):
  """Mixed_5b/c/d: 1x1, 5x5, double 3x3 and pooled branches -> 224 + pool."""

  pool_features: int
  fid: bool = True
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x (N, H, W, I) -> (N, H, W, 64 + 64 + 96 + pool_features)."""
    conv = functools.partial(BasicConv2d, dtype=self.dtype)
    b1 = conv(64, (1, 1), name='branch1x1')(x)
    b5 = conv(48, (1, 1), name='branch5x5_1')(x)
    b5 = conv(64, (5, 5), padding=(2, 2), name='branch5x5_2')(b5)
    b3 = conv(64, (1, 1), name='branch3x3dbl_1')(x)
    b3 = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(b3)
    b3 = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_3')(b3)
    # FIDInceptionA: TF's average pool ignores the zero padding.
    bp = _avg_pool_3x3(x, count_include_pad=not self.fid)
    bp = conv(self.pool_features, (1, 1), name='branch_pool')(bp)
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """Mixed_6a: stride-2 reduction, 288 -> 384 + 96 + 288 = 768 channels."""

  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x (N, H, W, 288) -> (N, (H - 3) // 2 + 1, ..., 768)."""
    conv = functools.partial(BasicConv2d, dtype=self.dtype)
    b3 = conv(384, (3, 3), strides=(2, 2), name='branch3x3')(x)
    bd = conv(64, (1, 1), name='branch3x3dbl_1')(x)
    bd = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = conv(96, (3, 3), strides=(2, 2), name='branch3x3dbl_3')(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):
  """Mixed_6b/c/d/e: factorized 7x7 branches, 768 -> 768 channels."""

  channels_7x7: int
  fid: bool = True
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x (N, H, W, 768) -> (N, H, W, 4 * 192)."""
    conv = functools.partial(BasicConv2d, dtype=self.dtype)
    c7 = self.channels_7x7
    b1 = conv(192, (1, 1), name='branch1x1')(x)
    b7 = conv(c7, (1, 1), name='branch7x7_1')(x)
    b7 = conv(c7, (1, 7), padding=(0, 3), name='branch7x7_2')(b7)
    b7 = conv(192, (7, 1), padding=(3, 0), name='branch7x7_3')(b7)
    bd = conv(c7, (1, 1), name='branch7x7dbl_1')(x)
    bd = conv(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_2')(bd)
    bd = conv(c7, (1, 7), padding=(0, 3), name='branch7x7dbl_3')(bd)
    bd = conv(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_4')(bd)
    bd = conv(192, (1, 7), padding=(0, 3), name='branch7x7dbl_5')(bd)
    # FIDInceptionC: TF's average pool ignores the zero padding.
    bp = _avg_pool_3x3(x, count_include_pad=not self.fid)
    bp = conv(192, (1, 1), name='branch_pool')(bp)
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """Mixed_7a: stride-2 reduction, 768 -> 320 + 192 + 768 = 1280 channels."""

  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x (N, H, W, 768) -> (N, (H - 3) // 2 + 1, ..., 1280)."""
    conv = functools.partial(BasicConv2d, dtype=self.dtype)
    b3 = conv(192, (1, 1), name='branch3x3_1')(x)
    b3 = conv(320, (3, 3), strides=(2, 2), name='branch3x3_2')(b3)
    b7 = conv(192, (1, 1), name='branch7x7x3_1')(x)
    b7 = conv(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(b7)
    b7 = conv(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(b7)
    b7 = conv(192, (3, 3), strides=(2, 2), name='branch7x7x3_4')(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):
  """Mixed_7b/c: expanded 1x3/3x1 branches -> 320 + 768 + 768 + 192 = 2048.

  pool: 'avg' (torchvision), 'avg_exclude_pad' (FIDInceptionE_1) or 'max'
  (FIDInceptionE_2, the FID graph's Mixed_7c).
  """

  pool: str = 'avg'
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x (N, H, W, I) -> (N, H, W, 2048)."""
    conv = functools.partial(BasicConv2d, dtype=self.dtype)
    b1 = conv(320, (1, 1), name='branch1x1')(x)
    b3 = conv(384, (1, 1), name='branch3x3_1')(x)
    b3 = jnp.concatenate([
        conv(384, (1, 3), padding=(0, 1), name='branch3x3_2a')(b3),
        conv(384, (3, 1), padding=(1, 0), name='branch3x3_2b')(b3),
    ], axis=-1)
    bd = conv(448, (1, 1), name='branch3x3dbl_1')(x)
    bd = conv(384, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = jnp.concatenate([
        conv(384, (1, 3), padding=(0, 1), name='branch3x3dbl_3a')(bd),
        conv(384, (3, 1), padding=(1, 0), name='branch3x3dbl_3b')(bd),
    ], axis=-1)
    if self.pool == 'max':
      bp = _max_pool_3x3_s1(x)
    elif self.pool in ('avg', 'avg_exclude_pad'):
      bp = _avg_pool_3x3(x, count_include_pad=self.pool == 'avg')
    else:
      raise ValueError(
          "InceptionE pool must be 'avg', 'avg_exclude_pad' or 'max', got "
          f'{self.pool!r}'
      )
    bp = conv(192, (1, 1), name='branch_pool')(bp)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


def resize_bilinear(x: jax.Array, size: Pair) -> jax.Array:
  """(N, H, W, C) -> (N, *size, C) like torch bilinear, align_corners=False.

  No antialiasing: F.interpolate samples two taps at half-pixel centres
  even when shrinking.
  """
  shape = (x.shape[0], *size, x.shape[-1])
  return jax.image.resize(x, shape, 'bilinear', antialias=False)


def _conv_size(size: int, kernel: int, stride: int = 1, pad: int = 0) -> int:
  """torch Conv2d / MaxPool2d output length (floor mode)."""
  return (size + 2 * pad - kernel) // stride + 1


def feature_size(size: int, name: str) -> int:
  """Spatial length of output `name` for an input length `size` (299 -> 73)."""
  if name not in OUTPUTS:
    raise ValueError(f'unknown InceptionV3 output {name!r}; one of {OUTPUTS}')
  # Conv2d_1a (3, s2), 2a (3), 2b (3, pad 1).
  size = _conv_size(_conv_size(size, 3, 2), 3)
  steps = {
      'block0': lambda s: _conv_size(s, 3, 2),  # max-pool 3/2.
      'conv2d_4a': lambda s: _conv_size(s, 3),  # 3b is 1x1.
      'block1': lambda s: _conv_size(s, 3, 2),
      'block2': lambda s: _conv_size(s, 3, 2),  # Mixed_6a; 5b-d, 6b-e keep.
      'block3': lambda s: min(_conv_size(s, 3, 2), 1),  # Mixed_7a, avg-pool.
  }
  for step in OUTPUTS[1 : OUTPUTS.index(name) + 1]:
    size = steps[step](size) if size >= 1 else size
  return size


class InceptionV3(nn.Module):
  """pytorch-fid InceptionV3: (N, H, W, 3) in [0, 1] -> {output: NHWC}."""

  outputs: tuple[str, ...] = ('block3',)
  variant: str = 'fid'
  resize_input: bool = False
  normalize_input: bool = True
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> dict[str, jax.Array]:
    """x float32 (N, H, W, 3) in [0, 1] -> {name: float32 (N, h, w, C)}."""
    if not self.outputs:
      raise ValueError(f'InceptionV3 needs at least one output of {OUTPUTS}')
    unknown = [n for n in self.outputs if n not in OUTPUTS]
    if unknown:
      raise ValueError(
          f'unknown InceptionV3 output(s) {unknown}; valid names are {OUTPUTS}'
      )
    if self.variant not in VARIANTS:
      raise ValueError(
          f'variant must be one of {VARIANTS}, got {self.variant!r}'
      )
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f'InceptionV3 expects (N, H, W, 3) input, got {x.shape}')
    if self.resize_input:
      x = resize_bilinear(x, (FID_INPUT_SIZE, FID_INPUT_SIZE))
    too_small = [n for n in self.outputs
                 if min(feature_size(x.shape[1], n),
                        feature_size(x.shape[2], n)) < 1]
    if too_small:
      raise ValueError(
          f'a {x.shape[1]}x{x.shape[2]} input is too small for InceptionV3 '
          f'outputs {too_small} (block3 needs at least 75x75)'
      )
    if self.normalize_input:
      x = 2.0 * x - 1.0  # [0, 1] -> [-1, 1], the range the TF graph expects.
    x = x.astype(self.dtype)

    wanted = set(self.outputs)
    last = max(OUTPUTS.index(n) for n in wanted)
    fid = self.variant == 'fid'
    conv = functools.partial(BasicConv2d, dtype=self.dtype)
    out: dict[str, Any] = {}

    def emit(name: str, value: jax.Array) -> bool:
      """Records a wanted output; True once the deepest one is reached."""
      if name in wanted:
        out[name] = value.astype(jnp.float32)
      return OUTPUTS.index(name) >= last

    x = conv(32, (3, 3), strides=(2, 2), name='Conv2d_1a_3x3')(x)
    x = conv(32, (3, 3), name='Conv2d_2a_3x3')(x)
    x = conv(64, (3, 3), padding=(1, 1), name='Conv2d_2b_3x3')(x)
    if emit('conv2d_2b', x):
      return out
    x = _max_pool_3x3_s2(x)
    if emit('block0', x):
      return out
    x = conv(80, (1, 1), name='Conv2d_3b_1x1')(x)
    x = conv(192, (3, 3), name='Conv2d_4a_3x3')(x)
    if emit('conv2d_4a', x):
      return out
    x = _max_pool_3x3_s2(x)
    if emit('block1', x):
      return out
    mixed_a = functools.partial(InceptionA, fid=fid, dtype=self.dtype)
    x = mixed_a(32, name='Mixed_5b')(x)
    x = mixed_a(64, name='Mixed_5c')(x)
    x = mixed_a(64, name='Mixed_5d')(x)
    x = InceptionB(dtype=self.dtype, name='Mixed_6a')(x)
    mixed_c = functools.partial(InceptionC, fid=fid, dtype=self.dtype)
    x = mixed_c(128, name='Mixed_6b')(x)
    x = mixed_c(160, name='Mixed_6c')(x)
    x = mixed_c(160, name='Mixed_6d')(x)
    x = mixed_c(192, name='Mixed_6e')(x)
    if emit('block2', x):
      return out
    x = InceptionD(dtype=self.dtype, name='Mixed_7a')(x)
    x = InceptionE('avg_exclude_pad' if fid else 'avg', dtype=self.dtype,
                   name='Mixed_7b')(x)
    x = InceptionE('max' if fid else 'avg', dtype=self.dtype,
                   name='Mixed_7c')(x)
    # AdaptiveAvgPool2d((1, 1)).
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2), keepdims=True)
    emit('block3', x)
    return out
