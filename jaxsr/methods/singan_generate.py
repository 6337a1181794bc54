"""Generation through a trained SinGAN pyramid: random samples at any size, super-resolution, paint-to-image.

`Nets` holds the per-scale G and D of a pyramid and runs G_n and the
coarser scales (official `draw_concat`); `sample` (official
`SinGAN_generate`), `super_resolve` (official `SR.py`, paper 004 §5.4) and
`paint_input` (official `paint2image`) read a `jaxsr.methods.singan`
state (its g, z_opt and noise_amp). Images are NHWC in [-1, 1] here.
"""

import dataclasses

import jax
import jax.numpy as jnp

from jaxsr.data import imresize
from jaxsr.data import pyramid as pyramid_lib
from jaxsr.models import singan as nets


def pad(x: jax.Array) -> jax.Array:
  """Zero padding by 5 on each side (the official m_noise / m_image)."""
  p = nets.PAD
  return jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))


def noise(key, n: int, size: tuple[int, int], num: int = 1) -> jax.Array:
  """N(0, 1) noise (num, H, W, 3): one grey channel at scale 0 (official)."""
  if n == 0:
    return jnp.broadcast_to(jax.random.normal(key, (num, *size, 1)),
                            (num, *size, 3))
  return jax.random.normal(key, (num, *size, 3))


def fit(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  """Crops (as the official [:H, :W]) or, when smaller, bilinearly resizes
  (the official `upsampling`) x to (N, H, W, C)."""
  if x.shape[1] >= size[0] and x.shape[2] >= size[1]:
    return x[:, :size[0], :size[1]]
  return jax.image.resize(x, (x.shape[0], *size, x.shape[3]), 'bilinear')


def upsample(x: jax.Array, factor: float, size: tuple[int, int]) -> jax.Array:
  """x (N, h, w, 3) in [-1, 1] resized by 1/factor (MATLAB bicubic), clipped
  to [-1, 1] as the official norm() does, and fitted to size."""
  up = imresize.imresize_jax(x, 1.0 / factor)
  return fit(jnp.clip(up, -1., 1.), size)


@dataclasses.dataclass(frozen=True)
class Nets:
  """The per-scale modules and the pyramid's static facts."""
  gens: tuple[nets.Generator, ...]
  discs: tuple[nets.Discriminator, ...]
  sizes: tuple[tuple[int, int], ...]
  factor: float

  def generate(self, state, n: int, z_in, prev_p, train: bool = False):
    """G_n(z_in, prev_p); (output, batch_stats after it)."""
    variables = state.g[n]
    if not train:
      return self.gens[n].apply(variables, z_in, prev_p, train=False), (
          variables['batch_stats'])
    out, updates = self.gens[n].apply(variables, z_in, prev_p, train=True,
                                      mutable=['batch_stats'])
    return out, updates['batch_stats']

  def draw(self, state, n: int, key: jax.Array | None, num: int = 1):
    """The input of scale n from the frozen scales 0..n-1 (official
    draw_concat): a random sample (key given) or the reconstruction from the
    z_opt (key None); zeros at scale 0. (num, H_n, W_n, 3)."""
    image = jnp.zeros((num, *self.sizes[0], 3))
    for i in range(n):
      if key is None:
        z = state.z_opt[i]
      else:
        z = pad(noise(jax.random.fold_in(key, i), i, self.sizes[i], num))
      prev_p = pad(image)
      out, _ = self.generate(state, i, state.noise_amp[i] * z + prev_p,
                             prev_p)
      image = upsample(out, self.factor, self.sizes[i + 1])
    return image


def super_resolve(state, lr: jax.Array, key: jax.Array, *, net: Nets,
                  factor: float) -> jax.Array:
  """SR by `factor` (official SR.py, paper §5.4): k times, upscale by
  r = s^(1/k) and refine with the finest G (eval mode), mixing in its noise
  amplitude times fresh noise (grey the first time, as the official
  SinGAN_generate's first scale); cropped to int(factor * size).

  lr: (N, h, w, 3) in [-1, 1] -> (N, int(s h), int(s w), 3).
  """
  r, k = pyramid_lib.sr_steps(factor)
  last = len(net.sizes) - 1
  image = lr
  for j in range(k):
    up = jnp.clip(imresize.imresize_jax(image, r), -1., 1.)
    up_p = pad(up)
    z = pad(noise(jax.random.fold_in(key, j), j, up.shape[1:3], up.shape[0]))
    image, _ = net.generate(state, last, state.noise_amp[last] * z + up_p,
                            up_p)
  h, w = lr.shape[1:3]
  return image[:, :int(factor * h), :int(factor * w)]


def sample(state, key: jax.Array, *, net: Nets, num: int = 1,
           scale_v: float = 1.0, scale_h: float = 1.0, start_scale: int = 0,
           inject: jax.Array | None = None) -> jax.Array:
  """Random samples (official SinGAN_generate): (num, H', W', 3) in [-1, 1].

  Scale n is round(scale_v H_n) x round(scale_h W_n). Scales below
  `start_scale` use the reconstruction noise z_opt (same size only). With
  `inject` (num, H, W, 3), generation starts at `start_scale` from that
  image (paint-to-image), the coarser scales skipped.
  """
  sizes = [(round(scale_v * h), round(scale_h * w)) for h, w in net.sizes]
  if start_scale and (scale_v, scale_h) != (1.0, 1.0) and inject is None:
    raise ValueError('start_scale > 0 reuses the reconstruction noise, which '
                     'exists at the training size only: use scale 1.0,1.0')
  first = start_scale if inject is not None else 0
  image = (jnp.zeros((num, *sizes[0], 3)) if inject is None
           else fit(inject, sizes[first]))
  for n in range(first, len(sizes)):
    if n > first:
      image = upsample(image, net.factor, sizes[n])
    if n < start_scale and inject is None:
      z = jnp.broadcast_to(state.z_opt[n], (num, *state.z_opt[n].shape[1:]))
    else:
      z = pad(noise(jax.random.fold_in(key, n), n, sizes[n], num))
    prev_p = pad(image)
    image, _ = net.generate(state, n, state.noise_amp[n] * z + prev_p, prev_p)
  return image


def paint_input(state, paint: jax.Array, inject_scale: int, *, net: Nets
                ) -> jax.Array:
  """The official paint2image input at scale n >= 1: the paint (N, H, W, 3)
  in [-1, 1], fitted to the finest size, downscaled to scale n-1 and
  upscaled back to scale n."""
  if not 1 <= inject_scale < len(net.sizes):
    raise ValueError(f'inject_scale must be in 1..{len(net.sizes) - 1}, got '
                     f'{inject_scale}')
  top = len(net.sizes) - 1
  paint = imresize.imresize_jax(paint, output_shape=net.sizes[top])
  down = imresize.imresize_jax(paint, net.factor**(top - inject_scale + 1))
  down = jnp.clip(fit(down, net.sizes[inject_scale - 1]), -1., 1.)
  return upsample(down, net.factor, net.sizes[inject_scale])
