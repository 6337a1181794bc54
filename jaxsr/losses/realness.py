"""RealnessGAN losses (Xiangli et al., ICLR 2020) on D's outcome logits.

D outputs, per image, logits over `num_outcomes` outcomes (N, K); the
softmax is its "realness distribution". Two virtual ground-truth
distributions, the anchors A1 (real) and A0 (fake), are the targets. Every
fact below is from the public code `kam1107/RealnessGAN` (`train.py`,
`training/loss.py` `CategoricalLoss`, `training/learnD.py`, `learnG.py`);
the code here is our own.

Anchors (`sample_anchors`): each a normalized `np.histogram` of 1000 samples
into K equal bins spanning the samples' own range, **re-sampled every
iteration** (upstream PR #10). Because the bins span the sample range, the
histogram ignores the samples' location and scale: N(0, 0.1) and N(0, I) give
the same bell, U(-1, 1) and U(0, I) the same flat shape. Which shape is real
is the `naming`:
  * 'supplement' (default): AMGAN's supplement (paper 003), A1 (real) ~
    Gaussian, A0 (fake) ~ Uniform.
  * 'public_code': the RealnessGAN code, A0 (fake) = N(0, 0.1) histogram, A1
    (real) = U(-1, 1) histogram.
Draws come from an explicit key (fold the step into it), so a step is pure.

Skewed projection (`project`): as C51, the anchor's mass at support z_j =
linspace(v_min, v_max, K)_j is moved to clip(z_j + skew, v_min, v_max) and
split linearly between the two neighbouring supports. Written here as the
matrix P[j, k] = max(0, 1 - |b_j - k|), b_j = (clip(z_j + skew) - v_min) /
delta, which is exactly the code's floor/ceil `index_add_` including its
l == u fix-ups (mass lands wholly on b_j when b_j is an integer). Upstream
defaults: v_min = negative_skew = -1, v_max = positive_skew = +1; the real
anchor is shifted +1 (mass piles toward the top supports), the fake one -1.

Cross-entropy (`cross_entropy`): mean over the batch of -sum_k t_k log p_k,
with log p = log_softmax(logits) (upstream log(softmax + 1e-16); the same
except for probabilities below ~1e-14, which upstream floors at 1e-16).
CE(t, p) = KL(t || p) + H(t): the same gradient in p, so upstream's CE
losses are KL losses up to the constant anchor entropy.

D loss (learnD): CE(proj(A1, +skew), D(x)) + CE(proj(A0, -skew), D(G(z))).

G loss (`realness_g_loss`, `kind`):
  * 'supplement' (default, AMGAN): the supplement's equation
    E[KL(A1 || D(G))] - E[KL(A0 || D(G))], with the anchors skewed as in
    the D loss (the skewed anchors are the targets D is actually trained
    towards; the supplement names no skew, the code always skews). This is
    upstream's `relativisticG=False` loss plus the constant
    H(A0 skewed -) - H(A1 skewed +), so its gradient is the code's
    non-relativistic one. It is the AMGAN default because it is the
    L_realness the supplement writes and weights by 0.01 in its total loss,
    and because AMGAN's ablation (AMGAN*, Table 1) contrasts it with a
    *relativistic* GAN: a relativistic G loss would blur that comparison.
  * 'relativistic': upstream's default (`relativisticG=True`):
    -CE(proj(A0, -skew), D(G)) + CE(D(x), D(G)), pairing real image i with
    fake i. Upstream projects D(x) with skew 0, the identity up to float32
    rounding; we use softmax(D(x)) as it is. It can be negative.
  * 'ce': upstream's `relativisticG=False`: -CE(proj(A0, -), D(G)) +
    CE(proj(A1, +), D(G)).

What the public code has that is left to the caller: D's adaptive
reparameterization lives in the discriminator
(`jaxsr.models.discriminators.VGGStyleDiscriminator(num_outputs=K,
reparam=True)`); the G/D step ordering and update counts (upstream 1 D then 1 G step per
iteration, with fresh anchors shared by both) belong to the method.
"""

import jax
import jax.numpy as jnp

NAMINGS = ('supplement', 'public_code')
G_LOSSES = ('supplement', 'relativistic', 'ce')
NUM_ANCHOR_SAMPLES = 1000  # train.py: np.random.normal(0, 0.1, 1000).


def histogram(samples: jax.Array, num_bins: int) -> jax.Array:
  """np.histogram(samples, num_bins)[0] / len(samples): (S,) -> (num_bins,).

  Equal-width bins from min(samples) to max(samples), the last one closed;
  the index computation and its one-ulp corrections follow numpy's
  `_histogram` for uniform bins. Jittable; float32 in, float32 out, summing
  to 1. All samples equal: numpy widens the range to [x - 0.5, x + 0.5],
  putting everything in the middle bin; so do we.
  """
  x = jnp.asarray(samples, jnp.float32).reshape(-1)
  lo, hi = jnp.min(x), jnp.max(x)
  degenerate = lo == hi
  lo = jnp.where(degenerate, lo - 0.5, lo)
  hi = jnp.where(degenerate, hi + 0.5, hi)
  edges = jnp.linspace(lo, hi, num_bins + 1)
  idx = jnp.floor((x - lo) * (num_bins / (hi - lo))).astype(jnp.int32)
  idx = jnp.clip(idx, 0, num_bins - 1)
  # numpy: the computed index may be off by one within an ulp of an edge.
  idx = jnp.where(x < edges[idx], idx - 1, idx)
  idx = jnp.where((x >= edges[idx + 1]) & (idx != num_bins - 1), idx + 1, idx)
  counts = jnp.bincount(idx, length=num_bins).astype(jnp.float32)
  return counts / x.shape[0]


def anchors_from_samples(
    gauss_samples: jax.Array,
    unif_samples: jax.Array,
    num_outcomes: int,
    naming: str = 'supplement',
) -> tuple[jax.Array, jax.Array]:
  """(A1 real, A0 fake), each (num_outcomes,), from Gaussian/uniform draws."""
  if naming not in NAMINGS:
    raise ValueError(f'anchor naming must be one of {NAMINGS}, got {naming!r}')
  bell = histogram(gauss_samples, num_outcomes)
  flat = histogram(unif_samples, num_outcomes)
  return (bell, flat) if naming == 'supplement' else (flat, bell)


def sample_anchors(
    key: jax.Array,
    num_outcomes: int,
    naming: str = 'supplement',
    num_samples: int = NUM_ANCHOR_SAMPLES,
) -> tuple[jax.Array, jax.Array]:
  """Fresh anchors (A1 real, A0 fake), each (num_outcomes,) summing to 1.

  Draws N(0, 0.1) and U(-1, 1) samples as upstream `train.py` (their scale
  does not matter, see the module docstring). The Gaussian draws come from
  the first half of `split(key)` and the uniform ones from the second,
  whatever the naming, so the two namings swap the same two anchors.
  Jittable with num_outcomes, naming and num_samples static.
  """
  if num_outcomes < 2:
    raise ValueError(f'RealnessGAN needs num_outcomes >= 2, got {num_outcomes}')
  key_gauss, key_unif = jax.random.split(key)
  gauss = 0.1 * jax.random.normal(key_gauss, (num_samples,), jnp.float32)
  unif = jax.random.uniform(key_unif, (num_samples,), jnp.float32, -1.0, 1.0)
  return anchors_from_samples(gauss, unif, num_outcomes, naming)


def projection_matrix(
    num_outcomes: int, skew: float, v_min: float = -1.0, v_max: float = 1.0
) -> jax.Array:
  """P (K, K): row j is where the mass at support j lands after the skew.

  Rows sum to 1 (mass is conserved, clipping included). skew may be traced.
  """
  if not v_max > v_min:
    raise ValueError(f'need v_max > v_min, got v_min={v_min}, v_max={v_max}')
  supports = jnp.linspace(v_min, v_max, num_outcomes)
  delta = (v_max - v_min) / (num_outcomes - 1)
  b = (jnp.clip(supports + skew, v_min, v_max) - v_min) / delta
  atoms = jnp.arange(num_outcomes, dtype=b.dtype)
  return jax.nn.relu(1.0 - jnp.abs(b[:, None] - atoms[None, :]))


def project(
    anchor: jax.Array, skew: float, v_min: float = -1.0, v_max: float = 1.0
) -> jax.Array:
  """The skewed anchor (C51 projection): (..., K) -> (..., K), mass kept."""
  anchor = jnp.asarray(anchor, jnp.float32)
  return anchor @ projection_matrix(anchor.shape[-1], skew, v_min, v_max)


def _check_logits(logits: jax.Array, num_outcomes: int, name: str) -> None:
  if logits.ndim != 2 or logits.shape[-1] != num_outcomes:
    raise ValueError(
        f'{name} must be (N, {num_outcomes}) outcome logits, got '
        f'{logits.shape}'
    )


def cross_entropy(target: jax.Array, logits: jax.Array) -> jax.Array:
  """Batch mean of -sum_k t_k log softmax(logits)_k; t (K,) or (N, K)."""
  log_p = jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1)
  return jnp.mean(-jnp.sum(target * log_p, axis=-1))


def entropy(p: jax.Array) -> jax.Array:
  """-sum p log p over the last axis, with 0 log 0 = 0: (..., K) -> (...)."""
  return -jnp.sum(jax.scipy.special.xlogy(p, p), axis=-1)


def kl_divergence(target: jax.Array, logits: jax.Array) -> jax.Array:
  """Batch mean of KL(target || softmax(logits)) = CE - H(target)."""
  h = jnp.mean(jnp.broadcast_to(entropy(target), logits.shape[:-1]))
  return cross_entropy(target, logits) - h


def realness_d_loss(
    real_logits: jax.Array,
    fake_logits: jax.Array,
    anchor_real: jax.Array,
    anchor_fake: jax.Array,
    *,
    positive_skew: float = 1.0,
    negative_skew: float = -1.0,
    v_min: float = -1.0,
    v_max: float = 1.0,
) -> jax.Array:
  """D's loss CE(A1 skewed +, D(x)) + CE(A0 skewed -, D(G(z))), a scalar.

  Args:
    real_logits: (N, K) D logits on real (HR) images.
    fake_logits: (N, K) D logits on stop_gradient(SR).
    anchor_real: (K,) A1 from `sample_anchors`.
    anchor_fake: (K,) A0 from `sample_anchors`.
    positive_skew, negative_skew: the shifts of A1 and A0 (upstream +-1).
    v_min, v_max: the support range (upstream = the skews, -1 and 1).

  Returns:
    A float32 scalar, minimized by D.
  """
  k = anchor_real.shape[-1]
  _check_logits(real_logits, k, 'real_logits')
  _check_logits(fake_logits, k, 'fake_logits')
  a1 = project(anchor_real, positive_skew, v_min, v_max)
  a0 = project(anchor_fake, negative_skew, v_min, v_max)
  return cross_entropy(a1, real_logits) + cross_entropy(a0, fake_logits)


def realness_g_loss(
    real_logits: jax.Array | None,
    fake_logits: jax.Array,
    anchor_real: jax.Array,
    anchor_fake: jax.Array,
    *,
    kind: str = 'supplement',
    positive_skew: float = 1.0,
    negative_skew: float = -1.0,
    v_min: float = -1.0,
    v_max: float = 1.0,
) -> jax.Array:
  """G's loss of the given `kind` (see the module docstring), a scalar.

  Args:
    real_logits: (N, K) D logits on real images; used by 'relativistic'
      only (may be None otherwise). Constant in a G step.
    fake_logits: (N, K) D logits on SR images (not stopped).
    anchor_real, anchor_fake: (K,) A1 and A0, the same draw as the D step.
    kind: 'supplement' (AMGAN: KL(A1||D(G)) - KL(A0||D(G))),
      'relativistic' (upstream default) or 'ce' (upstream non-relativistic).
    positive_skew, negative_skew, v_min, v_max: as `realness_d_loss`.

  Returns:
    A float32 scalar, minimized by G; it can be negative.
  """
  if kind not in G_LOSSES:
    raise ValueError(f'realness G loss must be one of {G_LOSSES}, got {kind!r}')
  k = anchor_real.shape[-1]
  _check_logits(fake_logits, k, 'fake_logits')
  a1 = project(anchor_real, positive_skew, v_min, v_max)
  a0 = project(anchor_fake, negative_skew, v_min, v_max)
  if kind == 'supplement':
    return kl_divergence(a1, fake_logits) - kl_divergence(a0, fake_logits)
  if kind == 'ce':
    return cross_entropy(a1, fake_logits) - cross_entropy(a0, fake_logits)
  if real_logits is None:
    raise ValueError('the relativistic realness G loss needs real_logits')
  _check_logits(real_logits, k, 'real_logits')
  p_real = jax.nn.softmax(jnp.asarray(real_logits, jnp.float32), axis=-1)
  return cross_entropy(p_real, fake_logits) - cross_entropy(a0, fake_logits)
