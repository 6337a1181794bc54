"""Perceptual (feature-space) loss on dicts of NHWC feature maps -> scalar.

BasicSR `PerceptualLoss` semantics (`basicsr/losses/basic_loss.py`), without
its overall `perceptual_weight` (the caller multiplies; ESRGAN uses 1.0 on
VGG19 conv5_4, pre-ReLU, with the L1 criterion) and without its style term.
The features come from `jaxsr.models.vgg.VGG`, whose `__call__` returns
{layer_name: (N, h, w, C)}; this module only sees the dicts.
"""

from collections.abc import Mapping

import jax
import jax.numpy as jnp

_CRITERIA = ('l1', 'l2', 'fro')


def _distance(a: jax.Array, b: jax.Array, criterion: str) -> jax.Array:
  """One layer's scalar distance between two feature maps of one shape."""
  diff = a.astype(jnp.float32) - b.astype(jnp.float32)
  if criterion == 'l1':
    return jnp.mean(jnp.abs(diff))  # torch.nn.L1Loss()
  if criterion == 'l2':
    return jnp.mean(jnp.square(diff))  # torch.nn.MSELoss(), BasicSR's 'l2'
  # torch.norm(x - gt, p='fro'): over the whole batch tensor, not averaged.
  return jnp.sqrt(jnp.sum(jnp.square(diff)))


def channel_weights(
    channels_by_layer: Mapping[str, int], numerator: float = 1e3
) -> dict[str, float]:
  """{layer: numerator / C_layer^2}, AMGAN's VGG loss weights (paper 003).

  The supplement's L_vgg = sum_l w_l ||psi_l(HR) - psi_l(SR)||_1 / N_l over
  VGG19 relu1_1 ... relu5_1, w_l = 1e3 / C_l^2, is `perceptual_loss` with
  these weights and the 'l1' criterion (the mean absolute difference).
  """
  for layer, channels in channels_by_layer.items():
    if int(channels) != channels or channels < 1:
      raise ValueError(
          f'channel_weights: layer {layer!r} needs a positive channel count, '
          f'got {channels!r}'
      )
  return {k: numerator / float(c) ** 2 for k, c in channels_by_layer.items()}


def perceptual_loss(
    sr_feats: Mapping[str, jax.Array],
    hr_feats: Mapping[str, jax.Array],
    layer_weights: Mapping[str, float],
    criterion: str = 'l1',
) -> jax.Array:
  """Sum over layers of weight * criterion(sr_feats[k], hr_feats[k]), a scalar.

  Args:
    sr_feats: {layer: (N, h, w, C)} features of the SR images; G's gradient
      flows through them (the feature network's params are held fixed).
    hr_feats: {layer: (N, h, w, C)} features of the HR images. They are
      targets: callers should compute them from HR images outside any
      gradient (or wrap them in `jax.lax.stop_gradient`), as BasicSR does
      with `gt.detach()`.
    layer_weights: {layer: weight}; only these layers are used.
    criterion: 'l1' (mean absolute error), 'l2' (mean squared error) or
      'fro' (Frobenius norm of the whole difference tensor).

  Returns:
    A float32 scalar.
  """
  if criterion not in _CRITERIA:
    raise ValueError(
        f'perceptual criterion must be one of {_CRITERIA}, got {criterion!r}'
    )
  if not layer_weights:
    raise ValueError('perceptual_loss needs at least one layer weight')
  total = jnp.zeros((), jnp.float32)
  for layer, weight in layer_weights.items():
    for name, feats in (('sr', sr_feats), ('hr', hr_feats)):
      if layer not in feats:
        raise ValueError(
            f'perceptual_loss: layer {layer!r} is not in the {name} features '
            f'(which have {sorted(feats)})'
        )
    sr, hr = sr_feats[layer], hr_feats[layer]
    if sr.shape != hr.shape:
      raise ValueError(
          f'perceptual_loss: layer {layer!r} has sr features {sr.shape} but '
          f'hr features {hr.shape}'
      )
    total = total + weight * _distance(sr, hr, criterion)
  return total
