"""AMGAN-RL's rewards (Algorithm 1 line 4): a score of the renderer's output, differentiable or not.

The reward of a transition is computed from the rendered SR image s' as an
evaluator would see it: clipped to [0, 1] and rounded to 8 bits first
(`as_uint8_levels`). Two metrics, chosen by `config.rl.reward`:

- 'niqe' (the default; the CVPR abstract names NIQE as the example of a
  non-differentiable reward): r = -NIQE(s'), jaxsr's MATLAB-exact NIQE
  (`jaxsr.metrics.niqe`, numpy/scipy) on the Y channel, called from inside the
  jitted step through `jax.pure_callback`. Nothing differentiates through
  it; a callback is the honest way to say the metric is a black box, and any
  host metric can be put in its place (`host_reward`). NIQE needs 96 x 96
  blocks: renders smaller than 96 pixels a side are refused when the stage
  is built; `crop_border` pixels are removed from every side first (0 by
  default: a render of a training patch has no image border to hide).
- 'psnr': r = PSNR(s', HR) in dB over RGB (the full-reference option; pure
  jnp, computed in the graph).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxsr.metrics import niqe as niqe_metric  # The function.

REWARDS = ('niqe', 'psnr')


def as_uint8_levels(sr: jax.Array) -> jax.Array:
  """sr clipped to [0, 1] and rounded to the 256 levels of a PNG, in [0, 255]."""
  return jnp.round(jnp.clip(sr, 0.0, 1.0) * 255.0)


def psnr_reward(sr: jax.Array, hr: jax.Array) -> jax.Array:
  """(N,) PSNR in dB of the 8-bit render against the HR (RGB, peak 255).

  Identical images get 100 dB (the MSE is floored at 255^2 1e-10), not inf.
  """
  hr = jnp.round(jnp.clip(hr, 0.0, 1.0) * 255.0)
  mse = jnp.mean(jnp.square(as_uint8_levels(sr) - hr), axis=(1, 2, 3))
  return 10.0 * jnp.log10(255.0**2 / jnp.maximum(mse, 255.0**2 * 1e-10))


def host_reward(score: Callable[[np.ndarray], float]) -> Callable:
  """A reward from a host metric of one uint8 H x W x 3 image: sr (N, H, W, 3)
  -> (N,) float32, callable inside jit (jax.pure_callback, one call per
  batch, images scored one after another on the host)."""

  def batch_scores(images: np.ndarray) -> np.ndarray:
    # (..., H, W, 3): under vmap the leading axes are the mapped ones.
    images = np.asarray(images).astype(np.uint8)
    flat = images.reshape(-1, *images.shape[-3:])
    return np.asarray([score(im) for im in flat],
                      np.float32).reshape(images.shape[:-3])

  def reward(sr: jax.Array) -> jax.Array:
    levels = as_uint8_levels(sr)
    out = jax.ShapeDtypeStruct((sr.shape[0],), jnp.float32)
    return jax.pure_callback(batch_scores, out, levels,
                             vmap_method='expand_dims')

  return reward


def niqe_reward(params: dict, crop_border: int = 0) -> Callable:
  """r = -NIQE(8-bit render) with the pristine model `params` (see module doc)."""
  return host_reward(
      lambda im: -niqe_metric(im, crop_border=crop_border, params=params))


def check_render_size(kind: str, hr_size: int, crop_border: int) -> None:
  """Refuses renders too small for the reward (NIQE: a 96 x 96 block)."""
  if kind == 'niqe' and hr_size - 2 * crop_border < 96:
    raise ValueError(
        f'the NIQE reward needs renders of at least 96 x 96 pixels after '
        f'cropping {crop_border}; config.data.hr_patch={hr_size} is too small')
