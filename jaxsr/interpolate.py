"""Network interpolation (ESRGAN §3.4): θ = (1 − α)·θ_PSNR + α·θ_GAN, as a new workdir.

  python -m jaxsr.interpolate runs/rrdb_psnr runs/lsrgan --alpha 0.8 --out runs/interp08

The output workdir holds the GAN run's config and state with the interpolated
generator, so `jaxsr.evaluate` and `jaxsr.upscale` use it like any other run.
"""

import json
import os

from absl import app
from absl import flags
from absl import logging
import jax
import numpy as np

from jaxsr import checkpoint

FLAGS = flags.FLAGS


def interpolate_params(psnr_params, gan_params, alpha: float):
  """Leafwise (1 − alpha)·psnr + alpha·gan; shapes must match."""
  if not 0. <= alpha <= 1.:
    raise ValueError(f'alpha must be in [0, 1], got {alpha}')

  def mix(path, a, b):
    if np.shape(a) != np.shape(b):
      raise ValueError(f'g_params{jax.tree_util.keystr(path)}: shapes '
                       f'{np.shape(a)} and {np.shape(b)} differ')
    return (1. - alpha) * np.asarray(a) + alpha * np.asarray(b)

  return jax.tree_util.tree_map_with_path(mix, psnr_params, gan_params)


def interpolate_workdirs(psnr_workdir: str, gan_workdir: str, alpha: float,
                         out_workdir: str) -> str:
  """Writes out_workdir: the GAN run with its generator interpolated."""
  from jaxsr import restore  # pylint: disable=g-import-not-at-top
  psnr_raw = checkpoint.load_raw(psnr_workdir)
  config = restore.load_config(gan_workdir)
  state = restore.load_state(gan_workdir)
  g = interpolate_params(psnr_raw['g_params'], jax.device_get(state.g_params),
                         alpha)
  updates = {'g_params': g}
  if hasattr(state, 'ema_params'):
    # Whichever generator the run predicts with, it becomes the interpolation.
    updates['ema_params'] = g
  state = state.replace(**jax.tree.map(np.asarray, updates))
  os.makedirs(out_workdir, exist_ok=True)
  with open(os.path.join(out_workdir, 'config.json'), 'w') as f:
    json.dump(config.to_dict(), f, indent=2)
  mngr = checkpoint.manager(out_workdir, async_save=False)
  checkpoint.save(mngr, int(state.step), state)
  mngr.close()
  logging.info('%s = %.2f x %s + %.2f x %s', out_workdir, 1 - alpha,
               psnr_workdir, alpha, gan_workdir)
  return out_workdir


def _define_flags():
  """Command-line flags; defined only when run as a program."""
  flags.DEFINE_float('alpha', 0.8, 'Weight of the GAN generator.')
  flags.DEFINE_string('out', None, 'Output workdir.')
  flags.mark_flags_as_required(['out'])


def main(argv):
  if len(argv) != 3:
    raise app.UsageError('usage: python -m jaxsr.interpolate PSNR_WORKDIR '
                         'GAN_WORKDIR --alpha A --out OUT_WORKDIR')
  interpolate_workdirs(argv[1], argv[2], FLAGS.alpha, FLAGS.out)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
