"""AMGAN-RL's critic Q(s, a): LR image (N, H, W, 3) in [0, 1] and degradation code (N, D) -> Q (N,).

The supplement (Algorithm 1) names only "critic network Q(s, a | θQ) (random
initialization)" and the CVPR abstract "Q(LR, kernel code)"; the layout is
ours, kept small because it only has to rank codes for one image:

  s -> len(features) x [conv 3x3 stride 2 (SAME) -> LeakyReLU(0.2)]
    -> global average pool -> (N, features[-1])
  concat(pooled, a) -> len(hidden) x [Dense -> LeakyReLU(0.2)] -> Dense(1)

Stride-2 convs and the global pooling make it accept any LR size (a
transition's s is an LR patch; evaluation may use whole images). The code
enters after the pooling, unscaled (PCA codes are O(1)). Inits are flax's
defaults (LeCun-normal kernels, zero biases); no normalization layers, so the
critic has no state besides `params`.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.typing import DTypeLike


class Critic(nn.Module):
  """Q(s, a): (N, H, W, 3) LR and (N, code_dim) code -> (N,) float32.

  Attributes:
    features: output channels of the stride-2 3x3 convs, in order.
    hidden: widths of the MLP layers after the concatenation.
    negative_slope: the LeakyReLU slope.
    dtype: the computation dtype (the output is float32).
  """

  features: tuple[int, ...] = (32, 64, 64)
  hidden: tuple[int, ...] = (128, 128)
  negative_slope: float = 0.2
  dtype: DTypeLike = jnp.float32

  @nn.compact
  def __call__(self, s: jax.Array, a: jax.Array) -> jax.Array:
    if s.ndim != 4 or a.ndim != 2 or s.shape[0] != a.shape[0]:
      raise ValueError(
          f'the critic takes s (N, H, W, C) and a (N, code_dim), got '
          f's{list(s.shape)} and a{list(a.shape)}')
    x = s.astype(self.dtype)
    for i, width in enumerate(self.features):
      x = nn.Conv(width, (3, 3), strides=(2, 2), padding='SAME',
                  dtype=self.dtype, name=f'conv{i}')(x)
      x = nn.leaky_relu(x, self.negative_slope)
    x = jnp.mean(x, axis=(1, 2))
    x = jnp.concatenate([x, a.astype(self.dtype)], axis=-1)
    for i, width in enumerate(self.hidden):
      x = nn.Dense(width, dtype=self.dtype, name=f'fc{i}')(x)
      x = nn.leaky_relu(x, self.negative_slope)
    q = nn.Dense(1, dtype=self.dtype, name='q')(x)
    return q[:, 0].astype(jnp.float32)
