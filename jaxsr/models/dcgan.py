"""The 32x32 CelebA DCGAN face prior (G and D) and its `GanPrior`.

The networks of `fletchersarip93/face-generator`, layer for layer as
../shared/data/face_prior/README.md lists them, in NHWC; BatchNorm always in
inference mode (running statistics, eps 1e-5), LeakyReLU slope 0.2, images
in [-1, 1]. Variables are flax's {'params', 'batch_stats'}; the importer is
`jaxsr.pretrained.dcgan`.

`TorchConvTranspose` is PyTorch's `ConvTranspose2d(k, s, p)`: its kernel is
stored as the torch weight (in, out, kh, kw) transposed to (kh, kw, in, out),
*not* flipped; the forward pass flips it spatially and correlates the input,
dilated by s and zero-padded by k - 1 - p on each side, giving
(H - 1) * s - 2p + k rows, as torch. (k4 s1 p0 on the 1x1 latent: pad 3,
4x4 out; k4 s2 p1: doubles the size.)

Latent feasible set of the search (paper 001 / PULSE's spherical optimizer).
The prior's own latent is z ~ Uniform(-1, 1)^100, a cube, while the
spherical optimizer keeps its variable on a sphere. So the search variable
is u = latent['z'] of shape (1, 100), drawn u ~ N(0, I) by `sample_latent`
(its norm is then about sqrt(100) = 10, and the optimizer keeps it on the
sphere of that initial radius), and G reads

  z = erf(u / sqrt(2)) = 2 Phi(u) - 1,

which maps N(0, 1) to Uniform(-1, 1) elementwise (Phi(u) is uniform on
(0, 1)): a Gaussian u gives exactly the prior's latent distribution, and z
stays inside the open cube for every u. (In float32, |z| rounds to 1 for
|u| >= 5.5, where dz/du = 2 phi(u) ~ 2e-7: such a coordinate barely moves.
On the sphere of radius 10 it needs one coordinate to hold 30% of the
squared norm; a N(0, I) start has one with probability ~4e-6.)
`generate_batch` (the prior's `render`) takes the prior's own z directly
(`python -m jaxsr.faces sample --latents z.npy`); `gaussian_from_uniform`
is the inverse map, for starting a search from a given z.
"""

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxsr.models import gan_prior

LATENT_DIM = 100
RESOLUTION = 32
G_WIDTHS = (256, 128, 64, 32)  # generator_deconv.0 .. .3 outputs.
D_WIDTHS = (32, 64, 128, 256)  # discriminator.0 .. .3 outputs.
_BN_EPSILON = 1e-5  # PyTorch BatchNorm2d default (README).
_SLOPE = 0.2  # LeakyReLU(0.2) (README).
# Only for fresh (random) networks: the DCGAN paper's N(0, 0.02) weights.
_INIT = nn.initializers.normal(0.02)


class TorchConvTranspose(nn.Module):
  """PyTorch ConvTranspose2d(in, features, k, stride, padding): NHWC -> NHWC.

  Parameters: 'kernel' (k, k, in, features), the torch weight (in, out, k,
  k) transposed by (2, 3, 0, 1) without a flip; 'bias' (features,) if used.
  """

  features: int
  kernel_size: int
  stride: int
  padding: int
  use_bias: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, s, p = self.kernel_size, self.stride, self.padding
    kernel = self.param('kernel', _INIT,
                        (k, k, x.shape[-1], self.features), jnp.float32)
    # Transposed conv = correlation of the s-dilated input, padded by
    # k - 1 - p, with the spatially flipped kernel (in -> out channels).
    y = jax.lax.conv_general_dilated(
        x, kernel[::-1, ::-1], window_strides=(1, 1),
        padding=((k - 1 - p, k - 1 - p), (k - 1 - p, k - 1 - p)),
        lhs_dilation=(s, s), dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,),
                         jnp.float32)
    return y


def _bn(name: str) -> nn.BatchNorm:
  """BatchNorm2d in eval mode: (x - running_mean) / sqrt(var + eps) * w + b."""
  return nn.BatchNorm(use_running_average=True, epsilon=_BN_EPSILON,
                      name=name)


class Generator(nn.Module):
  """G: z (N, latent_dim) in [-1, 1] -> images (N, 32, 32, 3) in [-1, 1]."""

  latent_dim: int = LATENT_DIM
  widths: Sequence[int] = G_WIDTHS
  out_ch: int = 3

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    if z.ndim != 2 or z.shape[1] != self.latent_dim:
      raise ValueError(
          f'the DCGAN generator expects z of shape (N, {self.latent_dim}), '
          f'got {z.shape}')
    w0, w1, w2, w3 = self.widths
    x = z.reshape(z.shape[0], 1, 1, self.latent_dim)
    # 0: ConvT k4 s1 p0 (1x1 -> 4x4) -> BN, no activation.
    x = _bn('bn0')(TorchConvTranspose(w0, 4, 1, 0, name='deconv0')(x))
    # 1: Conv k3 s1 p1 -> BN -> LeakyReLU (4x4).
    x = nn.Conv(w1, (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                kernel_init=_INIT, name='conv1')(x)
    x = nn.leaky_relu(_bn('bn1')(x), _SLOPE)
    # 2, 3: ConvT k4 s2 p1 -> BN -> LeakyReLU (8x8, 16x16).
    for i, width in ((2, w2), (3, w3)):
      x = TorchConvTranspose(width, 4, 2, 1, name=f'deconv{i}')(x)
      x = nn.leaky_relu(_bn(f'bn{i}')(x), _SLOPE)
    # 4: ConvT k4 s2 p1 with bias -> tanh (32x32).
    x = TorchConvTranspose(self.out_ch, 4, 2, 1, use_bias=True,
                           name='deconv4')(x)
    return jnp.tanh(x)


class Discriminator(nn.Module):
  """D: images (N, 32, 32, 3) in [-1, 1] -> (logits (N,), 4 block features).

  The blocks are the four convs' outputs after LeakyReLU, first block first:
  (N, 16, 16, 32), (N, 8, 8, 64), (N, 4, 4, 128), (N, 2, 2, 256).
  """

  widths: Sequence[int] = D_WIDTHS
  resolution: int = RESOLUTION

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    r = self.resolution
    if x.ndim != 4 or x.shape[1:] != (r, r, 3):
      raise ValueError(
          f'the DCGAN discriminator expects images of shape (N, {r}, {r}, 3),'
          f' got {x.shape}')
    blocks = []
    for i, width in enumerate(self.widths):
      # k4 s2 p1 halves the size; only the first conv has a bias and no BN.
      x = nn.Conv(width, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)),
                  use_bias=i == 0, kernel_init=_INIT, name=f'conv{i}')(x)
      if i > 0:
        x = _bn(f'bn{i}')(x)
      x = nn.leaky_relu(x, _SLOPE)
      blocks.append(x)
    # The importer permutes torch's NCHW-flatten weight to this NHWC order.
    logit = nn.Dense(1, kernel_init=_INIT, name='linear')(
        x.reshape(x.shape[0], -1))
    return logit[:, 0], tuple(blocks)


def uniform_from_gaussian(u: jax.Array) -> jax.Array:
  """Search variable u ~ N(0, 1) -> the prior's z ~ U(-1, 1), elementwise."""
  return jax.lax.erf(u / math.sqrt(2.0))


def gaussian_from_uniform(z: jax.Array) -> jax.Array:
  """The prior's z in [-1, 1] -> the search variable u (inverse map).

  z is first clipped to the largest float32 inside the open cube, 1 - 2^-24,
  so that z = +-1 maps to |u| ~ 5.4 rather than to infinity.
  """
  inside = 1.0 - 2.0**-24
  return math.sqrt(2.0) * jax.scipy.special.erfinv(
      jnp.clip(z, -inside, inside))


def generate_batch(g_params, g_buffers, z_uniform: jax.Array) -> jax.Array:
  """Prior latents z (N, 100) in [-1, 1] -> images (N, 32, 32, 3), [-1, 1]."""
  return Generator().apply({'params': g_params, 'batch_stats': g_buffers},
                           jnp.asarray(z_uniform, jnp.float32))


def _check_latent(latent: gan_prior.Latent) -> jax.Array:
  u = latent['z']
  if u.shape != (1, LATENT_DIM):
    raise ValueError(
        f"the DCGAN prior's latent['z'] has shape (1, {LATENT_DIM}), got "
        f'{u.shape}')
  return u


def sample_latent(key: jax.Array) -> gan_prior.Latent:
  """key -> {'z': (1, 100)} ~ N(0, I), the search variable u (module doc)."""
  return {'z': jax.random.normal(key, (1, LATENT_DIM), jnp.float32)}


def sample_native(key: jax.Array, n: int) -> jax.Array:
  """key, n -> (n, 100) draws of the prior's own z ~ Uniform(-1, 1)."""
  return jax.random.uniform(key, (n, LATENT_DIM), jnp.float32, -1.0, 1.0)


def generate(g_params, g_buffers, latent: gan_prior.Latent) -> jax.Array:
  """One face: latent {'z': u (1, 100)} -> (32, 32, 3) in [-1, 1]."""
  z = uniform_from_gaussian(_check_latent(latent))
  return generate_batch(g_params, g_buffers, z)[0]


def discriminate(d_variables, image: jax.Array):
  """One image (32, 32, 3) in [-1, 1] -> (logit (), 4 block features HWC)."""
  logit, blocks = Discriminator().apply(d_variables, image[None])
  return logit[0], tuple(b[0] for b in blocks)


def prior(g_params, g_buffers, d_params) -> gan_prior.GanPrior:
  """The DCGAN as a GanPrior.

  Args:
    g_params: G's {'params'} tree (what online fine-tuning updates).
    g_buffers: G's {'batch_stats'} tree (BN running mean/var; frozen).
    d_params: D's whole variables {'params', 'batch_stats'}.

  Returns:
    The prior; its search latent is {'z': u (1, 100)}, u ~ N(0, I) mapped to
    the prior's U(-1, 1) by erf (module doc); w_rows is None (one row);
    render is `generate_batch` on native z, sample_native draws U(-1, 1).
  """
  return gan_prior.GanPrior(
      name='dcgan', resolution=RESOLUTION, g_params=g_params,
      g_buffers=g_buffers, d_params=d_params, sample_latent=sample_latent,
      generate=generate, discriminate=discriminate, w_rows=None,
      latent_dim=LATENT_DIM, sample_native=sample_native,
      render=generate_batch)


@jax.jit
def _init_variables(key: jax.Array):
  g_key, d_key = jax.random.split(key)
  g_vars = Generator().init(g_key, jnp.zeros((1, LATENT_DIM)))
  d_vars = Discriminator().init(
      d_key, jnp.zeros((1, RESOLUTION, RESOLUTION, 3)))
  return g_vars, d_vars


def random_prior(seed: int = 0) -> gan_prior.GanPrior:
  """A GanPrior with N(0, 0.02) weights, BN at identity (tests, benchmarks).

  One jitted init on an 'rbg' key (`jaxsr.methods.base.init_key`): threefry
  keys take tens of seconds to compile on a 2-core CPU, rbg a few.
  """
  g_vars, d_vars = _init_variables(jax.random.key(seed, impl='rbg'))
  return prior(g_vars['params'], g_vars['batch_stats'], d_vars)
