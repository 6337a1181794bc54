"""The GAN-prior interface that latent-search face SR (paper 001) is written over.

A prior is a trained generator and discriminator plus the description of
their latent space; `jaxsr.methods.face_explore` knows nothing else about
it. Two priors implement it: the 32x32 CelebA DCGAN (`jaxsr.models.dcgan`,
loaded by `jaxsr.pretrained.dcgan`) and StyleGAN2 (`jaxsr.models.stylegan2`,
loaded by `jaxsr.pretrained.stylegan2`).

The search variable of one face is a pytree `latent` of arrays:
  'z':     (rows, dim) rows each kept on its own sphere by the spherical
           optimizer (jaxsr.optim.spherical); rows = 1 for a single-vector
           latent (DCGAN), n_latent for StyleGAN2's W+.
  'noise': (optional, StyleGAN2) a tuple of trainable noise maps (H, W), each
           kept on its own sphere too.
Everything is per face (no batch axis): the method vmaps over faces.

Images are float32 HWC in [-1, 1] (the priors' own range); the method
converts to and from [0, 1].
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

Params = Any
Latent = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class GanPrior:
  """A pretrained GAN as pure functions over its parameter pytrees.

  Attributes:
    name: 'dcgan', 'stylegan2', ... (logs, file names).
    resolution: the generator's square output size (HR size of the search).
    g_params: G's parameters (the pytree online fine-tuning updates).
    g_buffers: G's frozen arrays that fine-tuning never updates (BN running
      statistics, latent_avg, mapping statistics, fixed noise): {} if none.
    d_params: D's parameters and buffers (frozen; never differentiated).
    sample_latent: (key) -> a random initial search variable of one face,
      distributed as the prior's latent distribution maps it (see each
      prior's doc for the sphere it lies on).
    generate: (g_params, g_buffers, latent) -> HWC image in [-1, 1] (float32;
      tanh or a linear toRGB, not clipped).
    discriminate: (d_params, image HWC in [-1, 1] at `resolution`) ->
      (logit scalar, tuple of block feature maps, first block first).
    w_rows: (g_buffers, latent) -> (rows, dim) latent rows as the generator
      reads them (StyleGAN2: lrelu(z * std + mean), PULSE's W+), which the
      geodesic cross loss compares; None when the prior has a single row
      (the loss is then identically 0).
    latent_dim: the width of the prior's own latent (DCGAN 100, StyleGAN2
      the mapping input 512).
    sample_native: (key, n) -> (n, latent_dim) draws of the prior's own
      latent distribution (DCGAN Uniform(-1, 1), StyleGAN2 N(0, I)).
    render: (g_params, g_buffers, z (n, latent_dim) native latents) ->
      NHWC images in [-1, 1], as the original code samples the prior
      (`python -m jaxsr.faces sample`).
  """
  name: str
  resolution: int
  g_params: Params
  g_buffers: Params
  d_params: Params
  sample_latent: Callable[[jax.Array], Latent]
  generate: Callable[[Params, Params, Latent], jax.Array]
  discriminate: Callable[[Params, jax.Array], tuple[jax.Array, tuple]]
  w_rows: Callable[[Params, Latent], jax.Array] | None = None
  latent_dim: int = 0
  sample_native: Callable[[jax.Array, int], jax.Array] | None = None
  render: Callable[[Params, Params, jax.Array], jax.Array] | None = None
