"""StyleGAN2 as a GanPrior (jaxsr.models.gan_prior): PULSE's W+ latent.

The search latent of one face is {'z': (n_latent, S) ~ N(0, I), 'noise':
tuple of the first `trainable_noise` noise maps (H, W) ~ N(0, 1)}. The
generator reads W+ = lrelu(z * std + mean, 0.2) (PULSE's `latent_in`), with
mean/std the per-dimension statistics of lrelu(mapping(z), 5) kept in
g_buffers (`jaxsr.pretrained.mapping_stats`); the remaining noise maps are
fixed maps in g_buffers. Images are HWC in [-1, 1] at full resolution.

g_params is the synthesis tree (what online fine-tuning updates), g_buffers
{'w_mean': (S,), 'w_std': (S,), 'noise': tuple of fixed (H, W) maps, and
'mapping': the mapping network's tree, read only by `render`},
d_params the discriminator tree ({} when the file has none: discriminate
then raises).
"""

import jax
import jax.numpy as jnp

from jaxsr.models import gan_prior
from jaxsr.models import stylegan2


def w_rows(g_buffers, latent) -> jax.Array:
  """(n_latent, S) W+ rows: lrelu(z * std + mean, 0.2), PULSE's latent_in."""
  return jax.nn.leaky_relu(
      latent['z'] * g_buffers['w_std'] + g_buffers['w_mean'], 0.2)


def fixed_noise(key: jax.Array, resolution: int, trainable_noise: int
                ) -> tuple[jax.Array, ...]:
  """The non-trainable noise maps (H, W) ~ N(0, 1), drawn once from key."""
  shapes = stylegan2.noise_shapes(resolution)
  keys = jax.random.split(key, len(shapes))
  return tuple(jax.random.normal(keys[i], shapes[i])
               for i in range(trainable_noise, len(shapes)))


def prior(g_params, g_buffers, d_params, *, resolution: int,
          channels: tuple[int, ...], d_hparams: dict | None,
          trainable_noise: int = 5, conv_clamp: float | None = None,
          d_conv_clamp: float | None = None, stddev_group: int = 4,
          name: str = 'stylegan2') -> gan_prior.GanPrior:
  """A GanPrior over imported StyleGAN2 trees (module doc).

  Args:
    g_params: the Synthesis parameter tree.
    g_buffers: {'w_mean', 'w_std', 'noise'} (module doc).
    d_params: the Discriminator tree, or {} (no D in the file).
    resolution: output size; channels: G's widths per resolution 4..res.
    d_hparams: D's (resolution, channels, stddev_feat), None without D
      (jaxsr.models.stylegan2.discriminator_hparams).
    trainable_noise: how many leading noise maps the latent holds (PULSE: 5).
    conv_clamp, d_conv_clamp: NVIDIA's activation clamp (None: off).
    stddev_group: D's minibatch-stddev group (a single image: group 1).
    name: the prior's name.
  """
  shapes = stylegan2.noise_shapes(resolution)
  if not 0 <= trainable_noise <= len(shapes):
    raise ValueError(
        f'trainable_noise must be in [0, {len(shapes)}] for a {resolution} px '
        f'StyleGAN2, got {trainable_noise}')
  if len(g_buffers['noise']) != len(shapes) - trainable_noise:
    raise ValueError(
        f'g_buffers holds {len(g_buffers["noise"])} fixed noise maps, '
        f'expected {len(shapes) - trainable_noise}')
  rows = stylegan2.n_latent(resolution)
  style_dim = int(g_buffers['w_mean'].shape[-1])
  synthesis = stylegan2.Synthesis(resolution, tuple(channels), conv_clamp)
  disc = None
  if d_hparams is not None:
    disc = stylegan2.Discriminator(
        **d_hparams, stddev_group=stddev_group, conv_clamp=d_conv_clamp)

  def sample_latent(key):
    zkey, nkey = jax.random.split(key)
    nkeys = jax.random.split(nkey, max(trainable_noise, 1))
    return {'z': jax.random.normal(zkey, (rows, style_dim)),
            'noise': tuple(jax.random.normal(nkeys[i], shapes[i])
                           for i in range(trainable_noise))}

  def generate(g_params, g_buffers, latent):
    w = w_rows(g_buffers, latent)
    noise = tuple(latent['noise']) + tuple(g_buffers['noise'])
    image = synthesis.apply({'params': g_params}, w[None],
                            [n[None] for n in noise])
    return image[0]

  def discriminate(d_params, image):
    if disc is None:
      raise ValueError(
          'this StyleGAN2 file has no discriminator; the semantic loss needs '
          'D (bring a file with one, or set lambda_s = 0)')
    logit, feats = disc.apply({'params': d_params}, jnp.asarray(image)[None])
    return logit[0], tuple(f[0] for f in feats)

  def render(g_params, g_buffers, z):
    """Native sampling: z (N, S) ~ N(0, I) -> mapping -> w on every row;
    the trainable noise maps are drawn from a fixed key."""
    if 'mapping' not in g_buffers:
      raise ValueError('this StyleGAN2 prior was built without its mapping '
                       'network: it cannot render native latents')
    n_mlp = len(g_buffers['mapping'])
    w = stylegan2.Mapping(style_dim, n_mlp).apply(
        {'params': g_buffers['mapping']}, z)
    keys = jax.random.split(jax.random.key(0), max(trainable_noise, 1))
    noise = tuple(jax.random.normal(keys[i], shapes[i])
                  for i in range(trainable_noise)) + tuple(g_buffers['noise'])
    n = z.shape[0]
    return synthesis.apply(
        {'params': g_params}, jnp.repeat(w[:, None], rows, axis=1),
        [jnp.broadcast_to(m, (n,) + m.shape) for m in noise])

  return gan_prior.GanPrior(
      name=name, resolution=resolution, g_params=g_params,
      g_buffers=g_buffers, d_params=d_params, sample_latent=sample_latent,
      generate=generate, discriminate=discriminate, w_rows=w_rows,
      latent_dim=style_dim,
      sample_native=lambda key, n: jax.random.normal(key, (n, style_dim)),
      render=render)
