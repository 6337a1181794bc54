"""DISTS (Ding et al. 2020) of image pairs: (N, H, W, 3) in [0, 1] -> (N,).

As `dingkeyan93/DISTS: DISTS_pytorch/DISTS_pt.py` (pip `dists-pytorch`)
computes it. With features f^k of the six stages of
`jaxsr.models.dists_vgg.DistsVGG` (the raw input and relu1_2 ... relu5_3 of
an L2-pooled VGG16), per channel j and stage k, with means, variances and the
covariance taken over H and W (population, i.e. divided by H * W):

  S1 = (2 mu_x mu_y + c1) / (mu_x^2 + mu_y^2 + c1)       (texture)
  S2 = (2 cov_xy + c2) / (var_x + var_y + c2)            (structure)
  DISTS = 1 - sum_kj (alpha_kj S1_kj + beta_kj S2_kj) / (sum alpha + sum beta)

with c1 = c2 = 1e-6 and the learned alpha, beta (1475 each; the official
values already sum to 1, but the code renormalizes, and so do we). 0 for
identical images, up to rounding; about 0.03 ... 0.5 for real distortions.

Conventions of the official code kept here:
  * Inputs are RGB in [0, 1] (its README: "data range: 0~1"), our image
    convention, so no rescaling; ImageNet mean/std normalization happens
    inside the VGG, and stage 0 compares the raw [0, 1] input.
  * No resizing: the GitHub CLI's `prepare_image` shrinks images whose short
    side exceeds 256 to 256 first, the pip 0.1 build does not; resize before
    calling to reproduce the former.
  * `D(X, Y)` returns the per-image scores ((N,); the official `.squeeze()`
    makes N = 1 a 0-d tensor, here it stays (1,)). As a loss the README uses
    `D(X, Y, require_grad=True, batch_average=True)`, the batch mean; that is
    `dists_loss`, which differentiates through the first image only (the
    second is a target; see its docstring). Lower is better.

cov_xy is computed as mean((x - mu_x)(y - mu_y)), which equals the official
mean(xy) - mu_x mu_y but cancels less in float32.
"""

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from jaxsr.models import dists_vgg

C1 = 1e-6
C2 = 1e-6

# {'vgg': DistsVGG params, 'alpha': (1475,), 'beta': (1475,)}.
DistsParams = dict[str, Any]


def _check_weights(alpha: Any, beta: Any) -> None:
  for name, value in (('alpha', alpha), ('beta', beta)):
    if np.shape(value) != (dists_vgg.NUM_CHANNELS,):
      raise ValueError(
          f'DISTS {name} must have shape ({dists_vgg.NUM_CHANNELS},), one '
          f'weight per channel of {dists_vgg.STAGES}, got {np.shape(value)}'
      )


def make_params(
    vgg_params: Mapping[str, Any], alpha: Any, beta: Any
) -> DistsParams:
  """{'vgg': VGG16 conv1_1..conv5_3, 'alpha', 'beta': (1475,) float32}."""
  alpha = np.asarray(alpha, np.float32)
  beta = np.asarray(beta, np.float32)
  # The official tensors are (1, 1475, 1, 1); accept them as they are stored.
  if alpha.size == dists_vgg.NUM_CHANNELS:
    alpha = alpha.reshape(-1)
  if beta.size == dists_vgg.NUM_CHANNELS:
    beta = beta.reshape(-1)
  _check_weights(alpha, beta)
  total = float(alpha.sum() + beta.sum())
  if not np.isfinite(total) or total == 0:
    raise ValueError(
        'DISTS alpha and beta are normalized by their joint sum, which must '
        f'be finite and non-zero; found {total}'
    )
  convs = tuple(n for n in dists_vgg.layer_names() if n.startswith('conv'))
  if set(vgg_params) != set(convs):
    raise ValueError(
        f'DISTS needs VGG16 params for exactly {convs}, found '
        f'{sorted(vgg_params)}'
    )
  return {
      'vgg': {n: dict(vgg_params[n]) for n in convs},
      'alpha': alpha,
      'beta': beta,
  }


@jax.jit
def _init_vgg(key: jax.Array) -> Any:
  # Jitted once: an op-by-op init of 13 convs compiles every op separately.
  return dists_vgg.DistsVGG().init(
      key, jnp.zeros((1, 16, 16, 3), jnp.float32)
  )['params']


def init_params(key: jax.Array) -> DistsParams:
  """Random DISTS params as the official constructor draws them (untrained).

  VGG16 with torchvision's init and alpha, beta ~ N(0.1, 0.01) each; useful
  for shapes and tests only (`jaxsr.pretrained.dists` loads real weights).
  """
  vgg_key, alpha_key, beta_key = jax.random.split(key, 3)
  vgg_params = _init_vgg(vgg_key)
  shape = (dists_vgg.NUM_CHANNELS,)
  alpha = 0.1 + 0.01 * jax.random.normal(alpha_key, shape, jnp.float32)
  beta = 0.1 + 0.01 * jax.random.normal(beta_key, shape, jnp.float32)
  return make_params(jax.device_get(vgg_params), alpha, beta)


def dists_from_features(
    feats_x: Mapping[str, jax.Array],
    feats_y: Mapping[str, jax.Array],
    alpha: jax.Array,
    beta: jax.Array,
) -> jax.Array:
  """DISTS from the six stage features {stage: (N, h, w, C)} of x, y -> (N,)."""
  _check_weights(alpha, beta)
  alpha, beta = jnp.asarray(alpha), jnp.asarray(beta)
  # Official: alpha / (sum alpha + sum beta), then split per stage.
  w_sum = jnp.sum(alpha) + jnp.sum(beta)
  alpha, beta = alpha / w_sum, beta / w_sum
  similarity = 0.0
  start = 0
  for stage, width in zip(dists_vgg.STAGES, dists_vgg.STAGE_CHANNELS):
    # Statistics in at least float32 (bfloat16 features are widened).
    fx = feats_x[stage].astype(jnp.promote_types(feats_x[stage].dtype, 'f4'))
    fy = feats_y[stage].astype(jnp.promote_types(feats_y[stage].dtype, 'f4'))
    if fx.shape != fy.shape or fx.ndim != 4 or fx.shape[-1] != width:
      raise ValueError(
          f'DISTS stage {stage!r} needs two (N, h, w, {width}) feature maps '
          f'of one shape, got {fx.shape} and {fy.shape}'
      )
    mx = jnp.mean(fx, axis=(1, 2))  # (N, C)
    my = jnp.mean(fy, axis=(1, 2))
    dx, dy = fx - mx[:, None, None], fy - my[:, None, None]
    var_x = jnp.mean(jnp.square(dx), axis=(1, 2))
    var_y = jnp.mean(jnp.square(dy), axis=(1, 2))
    cov = jnp.mean(dx * dy, axis=(1, 2))
    s1 = (2 * mx * my + C1) / (jnp.square(mx) + jnp.square(my) + C1)
    s2 = (2 * cov + C2) / (var_x + var_y + C2)
    a, b = alpha[start : start + width], beta[start : start + width]
    similarity = similarity + s1 @ a + s2 @ b
    start += width
  return 1.0 - similarity


def dists(
    x: jax.Array,
    y: jax.Array,
    params: DistsParams,
    dtype: DTypeLike = jnp.float32,
) -> jax.Array:
  """DISTS of image pairs: x, y (N, H, W, 3) RGB in [0, 1] -> (N,) float32.

  Symmetric in x and y; differentiable in both (wrap y in
  `jax.lax.stop_gradient` when it is a fixed target, or use `dists_loss`).
  Jit-friendly: `params` (from `make_params`, `init_params` or
  `jaxsr.pretrained.dists.load_params`) is an argument, never captured.

  Args:
    x: (N, H, W, 3) float images in [0, 1], e.g. the distorted/SR images.
    y: (N, H, W, 3) float images in [0, 1], e.g. the references/HR images.
    params: {'vgg': DistsVGG params, 'alpha': (1475,), 'beta': (1475,)}.
    dtype: compute dtype of the VGG convs (statistics stay float32).

  Returns:
    (N,) float32 scores; 0 for x == y, larger is more different.
  """
  if x.shape != y.shape or x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(
        f'dists expects x and y of one shape (N, H, W, 3), got {x.shape} and '
        f'{y.shape}'
    )
  missing = {'vgg', 'alpha', 'beta'} - set(params)
  if missing:
    raise ValueError(
        f'DISTS params need keys vgg, alpha and beta; {sorted(missing)} '
        f'missing among {sorted(params)}'
    )
  n = x.shape[0]
  # One VGG pass over both batches: half the dispatches, same result.
  feats = dists_vgg.DistsVGG(dtype=dtype).apply(
      {'params': params['vgg']}, jnp.concatenate([x, y], axis=0)
  )
  feats_x = {k: v[:n] for k, v in feats.items()}
  feats_y = {k: v[n:] for k, v in feats.items()}
  return dists_from_features(feats_x, feats_y, params['alpha'], params['beta'])


def dists_loss(
    sr: jax.Array,
    hr: jax.Array,
    params: DistsParams,
    dtype: DTypeLike = jnp.float32,
) -> jax.Array:
  """Batch-mean DISTS of (N, H, W, 3) [0, 1] images, a scalar loss in ~[0, 1].

  The official loss `D(X, Y, require_grad=True, batch_average=True)`; the
  gradient flows into `sr` only: `hr` is a target (as BasicSR detaches gt),
  and the feature network's `params` are constants of the loss (the
  official code sets `requires_grad = False` on them), so differentiate with
  respect to `sr` (or the generator) only. AMGAN weights it by 10 (paper
  003, total loss).
  """
  return jnp.mean(dists(sr, jax.lax.stop_gradient(hr), params, dtype))
