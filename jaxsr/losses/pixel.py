"""Pixel losses on float images of any shape."""

import jax
import jax.numpy as jnp


def l1(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Mean absolute error over all elements (PyTorch L1Loss, reduction='mean')."""
  return jnp.mean(jnp.abs(pred - target))


def mse(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Mean squared error over all elements."""
  return jnp.mean(jnp.square(pred - target))
