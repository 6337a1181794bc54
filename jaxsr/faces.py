"""GAN-prior face commands: render a prior from given latents; the offline demo's comparison table.

  python -m jaxsr.faces sample --prior dcgan --weights ../shared/data/face_prior \
      --latents z.npy --out samples/
  python -m jaxsr.faces compare --weights ../shared/data/face_prior \
      --out runs/faces-compare [--scales 8,4] [--sets prior,lfw] [--num 16]

`z.npy` is a float32 array (N, latent_dim) of the prior's own latent
distribution (the DCGAN: Uniform(-1, 1)^100; StyleGAN2: N(0, I)^512 into
the mapping network); each row becomes <out>/<row index, 4 digits>.png.
Without --latents, --num rows are drawn from that distribution with --seed
(and saved as <out>/latents.npy).

`compare` runs experiments/face_explore.py's DCGAN demo for PULSE and the
paper's method with and without L_s, at each scale, on faces drawn from
the prior ('prior') and on scikit-image's LFW crops ('lfw'), and prints
PSNR/SSIM/NIQE, LR consistency and success rate next to bicubic's
(jaxsr.evaluation.face_compare; rerun to resume).
"""

import os

from absl import app
from absl import flags
import jax
import numpy as np

from jaxsr import cli
from jaxsr.data import color
from jaxsr.data import io

FLAGS = flags.FLAGS
COMMANDS = ('sample', 'compare')


def read_latents(path: str, latent_dim: int) -> np.ndarray:
  """A float (N, latent_dim) .npy as float32, with one-line errors."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'--latents {path}: no such file')
  try:
    z = np.load(path, allow_pickle=False)
  except ValueError as e:
    raise ValueError(f'--latents {path} is not a .npy array ({e})') from None
  if z.ndim != 2 or z.shape[1] != latent_dim or not np.issubdtype(
      z.dtype, np.floating):
    raise ValueError(f'--latents {path} holds {z.dtype} {z.shape}: expected '
                     f'a float array (N, {latent_dim}) for this prior')
  if not np.all(np.isfinite(z)):
    raise ValueError(f'--latents {path} holds NaN or infinite values')
  return z.astype(np.float32)


def sample(prior, z: np.ndarray, out: str, batch: int = 64) -> list[str]:
  """Renders each latent row; returns the written paths."""
  render = jax.jit(lambda z: prior.render(prior.g_params, prior.g_buffers, z))
  paths = []
  for s in range(0, len(z), batch):
    images = np.asarray(render(z[s:s + batch]))
    for i, image in enumerate(images):
      path = os.path.join(out, f'{s + i:04d}.png')
      io.write_image(path, color.to_uint8((image + 1.0) / 2.0))
      paths.append(path)
  return paths


def _define_flags():
  flags.DEFINE_enum('prior', 'dcgan', ('dcgan', 'stylegan2'), 'Prior kind.')
  flags.DEFINE_string('weights', None, 'The prior file or folder.')
  flags.DEFINE_string('latents', '', 'float32 .npy (N, latent_dim).')
  flags.DEFINE_integer('num', 16, 'sample: rows to draw when --latents is '
                       'not given; compare: faces per set.')
  flags.DEFINE_list('scales', ['8', '4'], 'compare: SR factors.')
  flags.DEFINE_list('sets', ['prior', 'lfw'], 'compare: face sets.')
  flags.DEFINE_string('variant', '', "compare: variants added to each run's "
                      "config (e.g. 'tiny').")
  flags.DEFINE_string('config', 'experiments/face_explore.py',
                      'compare: the experiment file.')
  flags.DEFINE_integer('seed', 0, 'Seed of the drawn rows.')
  flags.DEFINE_string('out', None, 'Output folder.')
  flags.mark_flags_as_required(['weights', 'out'])


def main(argv):
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f'expected one command of {COMMANDS}, got {argv[1:]}')
  if argv[1] == 'compare':
    from jaxsr.evaluation import face_compare  # pylint: disable=g-import-not-at-top
    try:
      scales = [int(s) for s in FLAGS.scales]
    except ValueError:
      raise app.UsageError(f'--scales {FLAGS.scales}: expected integers') from None
    print(face_compare.run(FLAGS.weights, FLAGS.out, scales, FLAGS.sets,
                           FLAGS.num, FLAGS.variant, FLAGS.config))
    return
  import ml_collections  # pylint: disable=g-import-not-at-top
  from jaxsr.pretrained import gan_priors  # pylint: disable=g-import-not-at-top
  prior = gan_priors.load(
      ml_collections.ConfigDict(dict(kind=FLAGS.prior, weights=FLAGS.weights,
                                     trainable_noise=0,
                                     stats_samples=1_000_000)),
      jax.random.key(FLAGS.seed), need_d=False)
  if FLAGS.latents:
    z = read_latents(FLAGS.latents, prior.latent_dim)
  else:
    z = np.asarray(prior.sample_native(jax.random.key(FLAGS.seed), FLAGS.num))
    os.makedirs(FLAGS.out, exist_ok=True)
    np.save(os.path.join(FLAGS.out, 'latents.npy'), z)
  paths = sample(prior, z, FLAGS.out)
  print(f'wrote {len(paths)} images to {FLAGS.out}')


if __name__ == '__main__':
  _define_flags()
  cli.run(main)
