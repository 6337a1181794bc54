"""Adversarial losses on discriminator logits of any shape, returning scalars.

Every function takes raw critic outputs (logits, any shape, e.g. (N, 1)) and
returns a float32 scalar to be minimized by the network named in its name
(`*_d_loss` by D, `*_g_loss` by G). Loss weights (ESRGAN's lambda = 5e-3,
LSRGAN eq. 10) are applied by the caller, on the G side only, as BasicSR does.

Gradients are taken w.r.t. one network's parameters at a time, so in a G step
the logits of real images are constants automatically, and in a D step the
caller computes the fake logits from `jax.lax.stop_gradient(sr)`.
"""

import enum
from collections.abc import Callable

import jax
import jax.numpy as jnp


def bce_with_logits(logits: jax.Array, target: float | jax.Array) -> jax.Array:
  """Mean binary cross-entropy of sigmoid(logits) vs target in [0, 1]."""
  logits = jnp.asarray(logits, jnp.float32)
  # -t log s(x) - (1 - t) log(1 - s(x)) = max(x, 0) - x t + log(1 + e^-|x|),
  # which never exponentiates a positive number (torch's BCEWithLogitsLoss).
  return jnp.mean(
      jnp.maximum(logits, 0.0)
      - logits * target
      + jnp.log1p(jnp.exp(-jnp.abs(logits)))
  )


# Standard GAN (Goodfellow et al.; BasicSR gan_type 'vanilla').


def gan_d_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """D's loss BCE(real, 1) + BCE(fake, 0), as a sum of the two means."""
  return bce_with_logits(real_logits, 1.0) + bce_with_logits(fake_logits, 0.0)


def gan_g_loss(fake_logits: jax.Array) -> jax.Array:
  """Non-saturating G loss BCE(fake, 1) = mean(-log sigmoid(fake))."""
  return bce_with_logits(fake_logits, 1.0)


# Relativistic average GAN (Jolicoeur-Martineau 2018; ESRGAN, BasicSR
# `esrgan_model.py`). With C the logits, D_Ra(a, b) = sigmoid(C(a) - E[C(b)]).


def ragan_d_loss(
    real_logits: jax.Array,
    fake_logits: jax.Array,
    *,
    stop_mean_gradient: bool = False,
) -> jax.Array:
  """D's RaGAN loss (BCE(C_r - mean C_f, 1) + BCE(C_f - mean C_r, 0)) / 2.

  Args:
    real_logits: C(x_r), D's logits on HR images, any shape.
    fake_logits: C(x_f), D's logits on stop_gradient(SR), any shape.
    stop_mean_gradient: False (default) differentiates both terms through
      the means as well: the original RaGAN and the old BasicSR code that
      ESRGAN and LSRGAN were released with (`codes/models/SRRaGAN_model.py`:
      one `l_d_total.backward()` of both halves, nothing detached but G's
      output). True reproduces the current BasicSR (`esrgan_model.py`),
      whose D step runs the real and the fake halves as two backward passes,
      each with the other branch's logits detached: D's gradient then flows
      through C_r only in the first term and through C_f only in the second,
      never through the means. The value is the same either way.

  Returns:
    A float32 scalar, minimized by D.
  """
  real_mean = jnp.mean(real_logits)
  fake_mean = jnp.mean(fake_logits)
  if stop_mean_gradient:
    real_mean = jax.lax.stop_gradient(real_mean)
    fake_mean = jax.lax.stop_gradient(fake_mean)
  return 0.5 * (
      bce_with_logits(real_logits - fake_mean, 1.0)
      + bce_with_logits(fake_logits - real_mean, 0.0)
  )


def ragan_g_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """G's RaGAN loss (BCE(C_r - mean C_f, 0) + BCE(C_f - mean C_r, 1)) / 2.

  The labels are D's swapped: G wants real images to look less real than the
  average fake, and fakes more real than the average real (ESRGAN eq. 2).
  Using D's labels here makes G cooperate with D (the bug of the public
  LSRGAN reimplementation, prior-art §1.3). G's gradient reaches C_f through
  both terms: directly in the second and through mean(C_f) in the first.
  C_r does not depend on G (BasicSR detaches it; here it is a constant of
  the G step).

  Args:
    real_logits: C(x_r), D's logits on HR images, any shape.
    fake_logits: C(x_f), D's logits on SR images (not stopped), any shape.

  Returns:
    A float32 scalar, minimized by G.
  """
  return 0.5 * (
      bce_with_logits(real_logits - jnp.mean(fake_logits), 0.0)
      + bce_with_logits(fake_logits - jnp.mean(real_logits), 1.0)
  )


# Hinge (Lim & Ye 2017; SAN, SAGAN, BigGAN).


def hinge_d_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """D's hinge loss mean(relu(1 - real)) + mean(relu(1 + fake))."""
  real_logits = jnp.asarray(real_logits, jnp.float32)
  fake_logits = jnp.asarray(fake_logits, jnp.float32)
  return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(
      jax.nn.relu(1.0 + fake_logits)
  )


def hinge_g_loss(fake_logits: jax.Array) -> jax.Array:
  """G's hinge loss -mean(fake)."""
  return -jnp.mean(fake_logits.astype(jnp.float32))


# Wasserstein GAN (Arjovsky et al. 2017; gradient penalty: Gulrajani et al.).


def wgan_d_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """The critic's loss mean(fake) - mean(real)."""
  return jnp.mean(fake_logits.astype(jnp.float32)) - jnp.mean(
      real_logits.astype(jnp.float32)
  )


def wgan_g_loss(fake_logits: jax.Array) -> jax.Array:
  """G's WGAN loss -mean(fake)."""
  return -jnp.mean(fake_logits.astype(jnp.float32))


def gradient_penalty(
    critic_fn: Callable[[jax.Array], jax.Array],
    real: jax.Array,
    fake: jax.Array,
    key: jax.Array,
    weight: float = 10.0,
) -> jax.Array:
  """WGAN-GP: weight * mean_n (||grad critic(x_hat_n)||_2 - 1)^2, a scalar.

  x_hat = a * real + (1 - a) * fake with one a ~ U[0, 1] per sample
  (Gulrajani et al. 2017, Algorithm 1, default weight 10). The per-sample
  gradients come from the gradient of sum(critic_fn(x_hat)), which is exact
  only when samples do not interact: use a critic without batch norm in
  training mode, as the paper prescribes.

  Args:
    critic_fn: x (N, ...) -> logits (N,) or (N, 1), closing over D's params
      so that the penalty is differentiable w.r.t. them.
    real: (N, ...) real samples.
    fake: (N, ...) generated samples, usually stop_gradient'ed.
    key: a PRNG key for the interpolation coefficients.
    weight: the penalty coefficient lambda.

  Returns:
    A float32 scalar, added to D's loss.
  """
  if real.shape != fake.shape:
    raise ValueError(
        f'gradient_penalty needs real and fake of one shape, got {real.shape} '
        f'and {fake.shape}'
    )
  alpha_shape = (real.shape[0],) + (1,) * (real.ndim - 1)
  alpha = jax.random.uniform(key, alpha_shape, dtype=jnp.float32)
  x_hat = alpha * real + (1.0 - alpha) * fake
  grads = jax.grad(lambda x: jnp.sum(critic_fn(x)))(x_hat)
  sq_norms = jnp.sum(
      jnp.square(grads.reshape(grads.shape[0], -1).astype(jnp.float32)), -1
  )
  # The tiny floor keeps the second derivative finite at a zero gradient.
  norms = jnp.sqrt(sq_norms + 1e-12)
  return weight * jnp.mean(jnp.square(norms - 1.0))


def pixel_gradient_penalty(
    critic_fn: Callable[[jax.Array], jax.Array],
    real: jax.Array,
    fake: jax.Array,
    key: jax.Array,
    weight: float = 0.1,
) -> jax.Array:
  """SinGAN's WGAN-GP: weight * mean over pixels of (||grad_c||_2 - 1)^2.

  As the official `calc_gradient_penalty`: ONE a ~ U[0, 1] for the whole
  batch (torch.rand(1, 1)), x_hat = a real + (1 - a) fake, the gradient of
  sum(critic(x_hat)) (a patch map) w.r.t. x_hat, its L2 norm over the
  channels at each pixel, then the mean over batch and pixels; SinGAN's
  weight is 0.1.

  Args:
    critic_fn: x (N, H, W, C) -> critic values of any shape.
    real: (N, H, W, C).
    fake: (N, H, W, C), usually stop_gradient'ed.
    key: a PRNG key for a.
    weight: lambda.

  Returns:
    A float32 scalar, added to the critic's loss.
  """
  if real.shape != fake.shape:
    raise ValueError(
        f'pixel_gradient_penalty needs real and fake of one shape, got '
        f'{real.shape} and {fake.shape}'
    )
  alpha = jax.random.uniform(key, (), dtype=jnp.float32)
  x_hat = alpha * real + (1.0 - alpha) * fake
  grads = jax.grad(lambda x: jnp.sum(critic_fn(x)))(x_hat)
  sq = jnp.sum(jnp.square(grads.astype(jnp.float32)), axis=-1)
  # The tiny floor keeps the second derivative finite at a zero gradient.
  norms = jnp.sqrt(sq + 1e-12)
  return weight * jnp.mean(jnp.square(norms - 1.0))


class GanType(enum.Enum):
  """Adversarial loss families selectable by config string."""

  VANILLA = 'vanilla'
  RAGAN = 'ragan'
  HINGE = 'hinge'
  WGAN = 'wgan'


def gan_type(kind: str | GanType) -> GanType:
  """A GanType from its value, with the choices named on error."""
  if isinstance(kind, GanType):
    return kind
  try:
    return GanType(kind)
  except ValueError:
    choices = ', '.join(repr(t.value) for t in GanType)
    raise ValueError(
        f'unknown GAN loss {kind!r}; expected one of {choices}'
    ) from None


def d_loss(
    kind: str | GanType,
    real_logits: jax.Array,
    fake_logits: jax.Array,
    *,
    ragan_detach_means: bool = False,
) -> jax.Array:
  """The discriminator's loss of the given family (see the functions above).

  ragan_detach_means is `ragan_d_loss`'s stop_mean_gradient ('ragan' only).
  """
  kind = gan_type(kind)
  if kind is GanType.VANILLA:
    return gan_d_loss(real_logits, fake_logits)
  if kind is GanType.RAGAN:
    return ragan_d_loss(real_logits, fake_logits,
                        stop_mean_gradient=ragan_detach_means)
  if kind is GanType.HINGE:
    return hinge_d_loss(real_logits, fake_logits)
  return wgan_d_loss(real_logits, fake_logits)


def g_loss(
    kind: str | GanType,
    real_logits: jax.Array | None,
    fake_logits: jax.Array,
) -> jax.Array:
  """The generator's loss; real_logits is needed by 'ragan' only."""
  kind = gan_type(kind)
  if kind is GanType.RAGAN:
    if real_logits is None:
      raise ValueError('the ragan G loss needs real_logits, got None')
    return ragan_g_loss(real_logits, fake_logits)
  if kind is GanType.VANILLA:
    return gan_g_loss(fake_logits)
  if kind is GanType.HINGE:
    return hinge_g_loss(fake_logits)
  return wgan_g_loss(fake_logits)
