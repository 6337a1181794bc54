"""SAN-SR's critic: HR (N, H, W, 3) -> a random crop -> logits (N, 1).

A port of `d_sanvanilla` in the official SAN code (`kligvasser/SANGAN`,
`super-resolution/models/discriminators.py`, prior-art §3.2), in NHWC, and
of its plain / spectral-norm twin `d_vanilla`:

  random crop of crop_size = 4 * 2^num_blocks (128 for 5 blocks)
  num_blocks x [conv1 3x3 s1 -> BN -> LReLU 0.1 -> conv2 4x4 s2 -> BN ->
                LReLU 0.1], widths min(max_features, num_features * 2^i)
                (64, 128, 256, 512, 512); biases in block 0 only
  flatten (4 x 4 x 512, in NCHW order) -> fc1 (num_features) -> LReLU 0.1
  -> fc2 (1)

That is the paper's "10 convolutional layers and 2 fully connected ones".
`norm` picks the weight normalization (`models.layers`):
  * 'san': convs divided by ‖W‖₀,∞ (eq. 8, FFT on each layer's input H×W),
    FC layers by their top singular value (paper, "Efficiency"; the
    official code uses torch's spectral_norm there).
  * 'spectral': Miyato's power iteration on every conv and FC layer (the
    official `d_vanilla(normalization=True)`).
  * 'none': plain layers (`d_vanilla(normalization=False)`).
Padding, as the official code: 'san' pads circularly (`SparseCirConv2d`,
Lemma 1 assumes cyclic padding), 'spectral' and 'none' pad with zeros
(`nn.Conv2d(padding=1)`); `circular` overrides it. Both pad 1 pixel, so
the 4x4 stride-2 convs map S to S / 2.

The random crop: the official `random_crop` draws one (top, left) per call,
shared by the batch, with `random.randint(0, H - crop - 1)`; here it comes
from an explicit key, uniform over all H - crop + 1 offsets (the official
range leaves out the last one and fails for H = crop; here H = crop is the
identity and needs no key).

BN (`batch_norm`, on by default as in the official critic) always uses the
batch statistics: the official critic is only ever run in training mode,
so no running averages are kept. Note that BN right after every conv makes
the forward pass invariant to each conv's scale and bias (BN removes both),
so with BN the SAN / spectral divisors of the convs change neither the
critic nor, through the scale invariance, its gradient; only the FC layers'
normalization and the padding then differ between 'san' and 'none'. This
is the official architecture; `batch_norm=False` (the paper's text, the
'nobn' variant of experiments/san_sr.py) gives a critic that SAN really
normalizes.

Normalization state lives in the 'san' (divisors s) or 'spectral' (power-
iteration vectors u) collections; `update_norm_state` refreshes it from the
current parameters (the official `W_` in training mode).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from jaxsr.models import layers

NORMS = ('san', 'spectral', 'none')
# The official `initialize_model`: kaiming_normal_(a=0, mode='fan_in') for
# convs and Linear layers (untruncated, variance 2 / fan_in), zero biases.
kaiming_normal = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')
_BN_EPSILON = 1e-5  # PyTorch BatchNorm2d.


def norm_collections(norm: str) -> tuple[str, ...]:
  """The variable collections that hold the state of a norm ('san' -> san)."""
  if norm not in NORMS:
    raise ValueError(f'norm must be one of {NORMS}, got {norm!r}')
  return {'san': ('san',), 'spectral': ('spectral',), 'none': ()}[norm]


def random_crop(x: jax.Array, size: int, key: jax.Array | None) -> jax.Array:
  """(N, H, W, C) -> (N, size, size, C) at one random offset for the batch.

  The offset is uniform over [0, H - size] x [0, W - size]; key may be None
  only when H = W = size (then x is returned as is).
  """
  _, h, w, _ = x.shape
  if h < size or w < size:
    raise ValueError(
        f'the critic crops {size}x{size} but its input is {h}x{w}; use HR '
        f'patches of at least {size}'
    )
  if h == size and w == size:
    return x
  if key is None:
    raise ValueError(
        f'cropping a {h}x{w} input to {size}x{size} needs a key'
    )
  key_h, key_w = jax.random.split(key)
  top = jax.random.randint(key_h, (), 0, h - size + 1)
  left = jax.random.randint(key_w, (), 0, w - size + 1)
  return jax.lax.dynamic_slice(
      x, (0, top, left, 0), (x.shape[0], size, size, x.shape[3])
  )


class BatchStatsNorm(nn.Module):
  """BN on the batch statistics, affine: (N, H, W, C) -> same, float32."""

  epsilon: float = _BN_EPSILON

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Normalizes each channel over (N, H, W) (biased variance, as torch)."""
    c = x.shape[-1]
    scale = self.param('scale', nn.initializers.ones, (c,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (c,), jnp.float32)
    x = x.astype(jnp.float32)
    mean = jnp.mean(x, axis=(0, 1, 2))
    var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
    return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias


class SANCritic(nn.Module):
  """The SAN-SR critic: (N, H, W, C), H, W >= crop_size -> logits (N, 1)."""

  num_in_ch: int = 3
  num_features: int = 64
  max_features: int = 512
  num_blocks: int = 5
  norm: str = 'san'
  batch_norm: bool = True
  circular: bool | None = None  # None: circular for 'san', zeros otherwise.
  gain: float | None = None  # SAN: eq. 9's g when None (1 at ratio 1).
  ratio: float = 1.0  # SAN: the fraction r of filter pairs sampled (eq. 9).
  subset: str = 'pairs'  # SAN: 'pairs' (paper) or 'channels' (official).
  momentum: float = 0.0  # SAN: running s (official default 0).
  legacy_rownorm: bool = False  # SAN: the released code's FFT row norm.
  negative_slope: float = 0.1
  dtype: DTypeLike = jnp.float32

  @property
  def crop_size(self) -> int:
    """4 * 2^num_blocks: the blocks halve it to the 4x4 map fc1 reads."""
    return 4 * 2**self.num_blocks

  def widths(self) -> list[tuple[int, int]]:
    """(in, out) channels of each block: 3->64, 64->128, ..., 512->512."""
    outs = [min(self.max_features, self.num_features * 2**i)
            for i in range(self.num_blocks)]
    return list(zip([self.num_in_ch] + outs[:-1], outs))

  def _conv(self, x, features, size, stride, use_bias, name, update_stats):
    """One normalized conv, padded 1 circularly or with zeros."""
    circular = self.norm == 'san' if self.circular is None else self.circular
    if not circular:
      x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    return layers.NormalizedConv(
        features, (size, size), strides=(stride, stride),
        padding=1 if circular else ((0, 0), (0, 0)), use_bias=use_bias,
        dtype=self.dtype, kernel_init=kaiming_normal,
        bias_init=nn.initializers.zeros, norm=self.norm, gain=self.gain,
        ratio=self.ratio, subset=self.subset, momentum=self.momentum,
        legacy_rownorm=self.legacy_rownorm, name=name,
    )(x, update_stats)

  @nn.compact
  def __call__(
      self,
      x: jax.Array,
      key: jax.Array | None = None,
      update_stats: bool = False,
  ) -> jax.Array:
    """x (N, H, W, C) in [0, 1] -> float32 logits (N, 1).

    key draws the crop (not needed when H = W = crop_size); update_stats
    refreshes the normalization state (with its collection mutable).
    """
    norm_collections(self.norm)  # Validates norm.
    if self.num_blocks < 1:
      raise ValueError(f'num_blocks must be >= 1, got {self.num_blocks}')
    if x.ndim != 4 or x.shape[-1] != self.num_in_ch:
      raise ValueError(
          f'the SAN critic expects (N, H, W, {self.num_in_ch}) input, got '
          f'{x.shape}'
      )
    x = random_crop(x, self.crop_size, key)

    def act(h, name):
      if self.batch_norm:
        h = BatchStatsNorm(name=name)(h)
      return nn.leaky_relu(h, self.negative_slope)

    for i, (_, width) in enumerate(self.widths()):
      # Only the first block's convs have biases (official `bias=True`).
      h_name = f'block_{i}'
      x = self._conv(x, width, 3, 1, i == 0, f'{h_name}_conv1', update_stats)
      x = act(x, f'{h_name}_bn1')
      x = self._conv(x, width, 4, 2, i == 0, f'{h_name}_conv2', update_stats)
      x = act(x, f'{h_name}_bn2')
    # (N, 4, 4, C): PyTorch's flatten is in NCHW order, so transpose first
    # and imported fc1 weights line up feature for feature.
    x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)

    def dense(h, features, name):
      return layers.NormalizedDense(
          features, norm=self.norm, dtype=self.dtype,
          kernel_init=kaiming_normal, bias_init=nn.initializers.zeros,
          name=name,
      )(h, update_stats)

    x = nn.leaky_relu(dense(x, self.num_features, 'fc1'), self.negative_slope)
    return dense(x, 1, 'fc2').astype(jnp.float32)


def update_norm_state(
    critic: SANCritic, params, norm_state: dict, key: jax.Array
) -> dict:
  """The critic's normalization collections refreshed from params -> dict.

  SAN divisors and spectral vectors do not depend on the input's values,
  only on each layer's input size, so one crop-size zero image is run with
  update_stats=True. key feeds SAN's filter sampling (ratio < 1). norm_state
  is {collection: tree}, empty for norm='none' (returned as is).
  """
  mutable = list(norm_collections(critic.norm))
  if not mutable:
    return norm_state
  size = critic.crop_size
  x = jnp.zeros((1, size, size, critic.num_in_ch), jnp.float32)
  _, updated = critic.apply(
      {'params': params, **norm_state}, x, update_stats=True,
      mutable=mutable, rngs={'san': key},
  )
  return {name: updated[name] for name in mutable}
