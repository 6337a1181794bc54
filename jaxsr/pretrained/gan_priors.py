"""config.prior -> a loaded GanPrior (jaxsr.models.gan_prior), whichever kind."""

import os

import jax

from jaxsr.models import gan_prior

KINDS = ('dcgan', 'stylegan2')


def load(prior_config, key: jax.Array, need_d: bool = True
         ) -> gan_prior.GanPrior:
  """The prior named by prior_config.kind from prior_config.weights.

  `key` draws the fixed (non-trainable) noise maps of a StyleGAN2; need_d:
  the semantic loss reads D, so a file without one is an error.
  """
  weights = os.path.expanduser(prior_config.weights)
  if not prior_config.weights:
    raise ValueError(
        f'config.prior.weights is empty: give the {prior_config.kind} prior '
        'file (or folder); nothing is downloaded')
  if not os.path.exists(weights):
    raise FileNotFoundError(f'config.prior.weights={prior_config.weights!r}: '
                            'no such file or folder')
  # Imported here: each importer pulls in its own model code.
  # pylint: disable=g-import-not-at-top
  if prior_config.kind == 'dcgan':
    from jaxsr.pretrained import dcgan
    return dcgan.load_prior(weights)
  if prior_config.kind == 'stylegan2':
    from jaxsr.pretrained import stylegan2
    return stylegan2.load_prior(
        weights, key=key, trainable_noise=prior_config.trainable_noise,
        need_d=need_d, stats_samples=prior_config.stats_samples)
  raise ValueError(f'config.prior.kind={prior_config.kind!r}: expected one '
                   f'of {KINDS}')
