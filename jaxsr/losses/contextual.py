"""Cosine contextual loss CX (LSRGAN eq. 11) on NHWC features -> scalar.

Follows the official TF code `roimehrez/contextualLoss` (`CX/CSFlow.py`,
`CX_helper.py`), which CESRGAN/CLSRGAN use on VGG19 "conv3_4". In that code
(`vgg_model.py` build_net) every `convB_K` is the ReLU output, so the
configs read our `relu3_4` (BasicSR's `conv3_4` is pre-ReLU); the PyTorch
port's default layer is also relu3_4. (Its VGG pools by averaging; ours,
torchvision's, by max, as every other loss network here.) With x_i the
generated points (source, I in CSFlow) and y_j the target points (T):

  r     = mean of the y_j over (N, H, W)         CSFlow.center_by_T
  d_ij  = (1 - cos(x_i - r, y_j - r)) / 2        create_using_dotP
  d'_ij = d_ij / (min_k d_ik + eps), eps 1e-5    calc_relative_distances
  A_ij  = softmax_j((1 - d'_ij) / h), h = 0.5    __calculate_CS
  CX    = (1/N_y) sum_j max_i A_ij               CX_loss
  loss  = mean over images of -log CX

Index conventions, checked against CSFlow: the cosine map comes from
conv2d(I, patches of T), so its spatial axes index x_i and its channel axis
y_j. Both the min in d' and the normalization of A run over the channel
axis (targets k for a fixed x_i); the max runs over H, W, i.e. over the
generated points i for each target j, and the mean over targets j. That is
exactly eq. 11's (1/N) sum_j max_i A_ij (the PyTorch port agrees:
min/sum over dim 2 = y, max over dim 1 = x).

Eq. 11 writes d_ij as the cosine *similarity* and w = exp(1 - d'/h); with a
similarity the relative "distance" and the exp would reward dissimilar
points, so the official distance is used. The bracketing is immaterial:
exp(1 - d'/h) and exp((1 - d')/h) differ by a constant factor that the
normalization over j cancels. `distance='cosine'` is the PyTorch port's
1 - cos, which differs only through the scale of eps.

Memory: H*W > max_samples**2 points (65**2 = 4225 in the official config)
are first reduced to max_samples**2 random positions, the same for x and y
(CX_helper.random_pooling, without replacement), and the (P, Q) affinity of
each image is built in row blocks of `chunk` generated points with a running
column max, rematerialized in the backward pass, so memory is O(chunk * Q)
per image rather than O(P * Q).
"""

import jax
import jax.numpy as jnp

_DISTANCES = ('cosine_half', 'cosine')


def _l2_normalize(v: jax.Array) -> jax.Array:
  """v / ||v||_2 over the last axis; zero vectors stay zero (no NaN grads)."""
  sq = jnp.sum(jnp.square(v), axis=-1, keepdims=True)
  # The official code divides by the norm unguarded; a floor keeps an
  # all-zero centred vector (e.g. a constant feature map) finite.
  return v * jax.lax.rsqrt(jnp.maximum(sq, 1e-24))


def _cx_one(
    x: jax.Array,
    y: jax.Array,
    band_width: float,
    eps: float,
    distance: str,
    chunk: int,
) -> jax.Array:
  """CX of one image: x (P, C), y (Q, C), both unit rows -> scalar in (0, 1]."""
  p, c = x.shape
  chunk = max(1, min(chunk, p))
  num_blocks = -(-p // chunk)
  pad = num_blocks * chunk - p
  blocks = jnp.pad(x, ((0, pad), (0, 0))).reshape(num_blocks, chunk, c)
  valid = (jnp.arange(num_blocks * chunk) < p).reshape(num_blocks, chunk)

  @jax.checkpoint
  def body(col_max, inputs):
    xb, vb = inputs
    # Full precision: d' divides by the smallest distance, so TF32/bf16
    # matmul errors of ~1e-3 in cos would be amplified.
    cos = jnp.matmul(xb, y.T, precision=jax.lax.Precision.HIGHEST)
    d = 1.0 - cos
    if distance == 'cosine_half':
      d = d / 2.0
    # Rounding can push cos a hair above 1; distances are >= 0.
    d = jnp.maximum(d, 0.0)
    # Eq. 11: relative distance, min over the targets k of this x_i.
    d_rel = d / (jnp.min(d, axis=1, keepdims=True) + eps)
    # A_ij = exp((1 - d'_ij)/h) / sum_k exp((1 - d'_ik)/h), over targets.
    a = jax.nn.softmax((1.0 - d_rel) / band_width, axis=1)
    # Padded rows must not win the max; A >= 0, so 0 is neutral.
    a = jnp.where(vb[:, None], a, 0.0)
    return jnp.maximum(col_max, jnp.max(a, axis=0)), None

  col_max, _ = jax.lax.scan(
      body, jnp.zeros((y.shape[0],), x.dtype), (blocks, valid)
  )
  # max_i A_ij for every target j, then the mean over targets.
  return jnp.mean(col_max)


def contextual_loss(
    x: jax.Array,
    y: jax.Array,
    *,
    key: jax.Array | None = None,
    band_width: float = 0.5,
    eps: float = 1e-5,
    max_samples: int | None = 65,
    distance: str = 'cosine_half',
    chunk: int = 1024,
    center_over_batch: bool = True,
) -> jax.Array:
  """-log CX(x, y) of eq. 11, averaged over images; x, y (N, H, W, C) -> scalar.

  Args:
    x: (N, H, W, C) features of the generated images (G's gradient flows).
    y: (N, H, W, C) features of the targets; treat as constants (compute
      them outside the gradient or stop_gradient them).
    key: PRNG key for the random positions; needed only when H * W >
      max_samples**2.
    band_width: h of eq. 11 (official `nn_stretch_sigma` 0.5).
    eps: epsilon of the relative distance (1e-5 in eq. 11 and CSFlow).
    max_samples: side of the sampled grid (official 65); None never samples.
    distance: 'cosine_half' = (1 - cos) / 2 (official TF) or 'cosine' =
      1 - cos (PyTorch port).
    chunk: generated points per block of the affinity matrix.
    center_over_batch: r is the mean of y over (N, H, W) (official) if True,
      else over (H, W) separately per image.

  Returns:
    A float32 (or float64 for float64 inputs) scalar >= 0.
  """
  if distance not in _DISTANCES:
    raise ValueError(
        f'contextual_loss distance must be one of {_DISTANCES}, got '
        f'{distance!r}'
    )
  if x.ndim != 4 or x.shape != y.shape:
    raise ValueError(
        f'contextual_loss needs x and y of one (N, H, W, C) shape, got '
        f'{x.shape} and {y.shape}'
    )
  if band_width <= 0:
    raise ValueError(
        f'contextual_loss band_width must be > 0, got {band_width}'
    )
  n, h, w, c = x.shape
  dtype = jnp.result_type(x.dtype, jnp.float32)
  xs = x.reshape(n, h * w, c).astype(dtype)
  ys = y.reshape(n, h * w, c).astype(dtype)
  if max_samples is not None and h * w > max_samples**2:
    if key is None:
      raise ValueError(
          f'contextual_loss samples {max_samples}x{max_samples} of the '
          f'{h}x{w} positions and needs a PRNG key, got key=None'
      )
    # One permutation shared by x, y and every image (random_pooling).
    idx = jax.random.permutation(key, h * w)[: max_samples**2]
    xs = jnp.take(xs, idx, axis=1)
    ys = jnp.take(ys, idx, axis=1)
  # r: the target mean, computed after sampling as the official code does.
  axes = (0, 1) if center_over_batch else (1,)
  r = jnp.mean(ys, axis=axes, keepdims=True)
  xs = _l2_normalize(xs - r)
  ys = _l2_normalize(ys - r)
  cx = jax.vmap(
      lambda a, b: _cx_one(a, b, band_width, eps, distance, chunk)
  )(xs, ys)
  return jnp.mean(-jnp.log(cx))
