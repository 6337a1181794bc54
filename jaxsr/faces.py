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


_NPY_MAGIC = b'\x93NUMPY'  # The first bytes of every .npy file.


def read_latents(path: str, latent_dim: int | None = None) -> np.ndarray:
  """A float .npy (N >= 1, latent_dim) as float32, with one-line errors
  (any width when latent_dim is None; `check_width` later)."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'--latents {path}: no such file')
  with open(path, 'rb') as f:
    magic = f.read(len(_NPY_MAGIC))
  if magic != _NPY_MAGIC:
    what = 'an .npz archive' if magic.startswith(b'PK') else 'not a .npy file'
    raise ValueError(f'--latents {path} is {what}: expected one float32 '
                     'array (N, latent_dim) written by numpy.save')
  try:
    z = np.load(path, allow_pickle=False)
  except (ValueError, EOFError) as e:
    raise ValueError(f'--latents {path}: unreadable .npy ({e})') from None
  if z.ndim != 2 or z.shape[0] < 1 or not np.issubdtype(z.dtype, np.floating):
    raise ValueError(f'--latents {path} holds {z.dtype} {z.shape}: expected '
                     'a float array (N >= 1, latent_dim)')
  if not np.all(np.isfinite(z)):
    raise ValueError(f'--latents {path} holds NaN or infinite values')
  if latent_dim is not None:
    check_width(z, latent_dim, path)
  return z.astype(np.float32)


def check_width(z: np.ndarray, latent_dim: int, path: str) -> None:
  """Raises ValueError unless z's rows have the prior's latent_dim values."""
  if z.shape[1] != latent_dim:
    raise ValueError(f'--latents {path} holds {z.shape[0]} rows of '
                     f'{z.shape[1]} values: this prior\'s latent has '
                     f'{latent_dim}')


def sample(prior, z: np.ndarray, out: str, batch: int = 64) -> list[str]:
  """Renders each latent row; returns the written paths."""
  # The weights are arguments, not constants folded into the program.
  render = jax.jit(prior.render)
  paths = []
  for s in range(0, len(z), batch):
    images = np.asarray(render(prior.g_params, prior.g_buffers,
                               z[s:s + batch]))
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
  flags.DEFINE_string('config', None, 'compare: the experiment file '
                      "(default: the repository's experiments/"
                      'face_explore.py, wherever the command runs).')
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
                           FLAGS.num, FLAGS.variant,
                           FLAGS.config or face_compare.CONFIG_FILE))
    return
  # The latents are checked before the prior loads (a StyleGAN2 takes a
  # while); their width once it has.
  if FLAGS.latents:
    z = read_latents(FLAGS.latents)
  elif FLAGS.num < 1:
    raise ValueError(f'--num {FLAGS.num}: expected >= 1 rows to draw')
  import ml_collections  # pylint: disable=g-import-not-at-top
  from jaxsr.pretrained import gan_priors  # pylint: disable=g-import-not-at-top
  prior = gan_priors.load(
      ml_collections.ConfigDict(dict(kind=FLAGS.prior, weights=FLAGS.weights,
                                     trainable_noise=0,
                                     stats_samples=1_000_000)),
      jax.random.key(FLAGS.seed), need_d=False)
  if prior.render is None or prior.sample_native is None:
    raise ValueError(f'the {prior.name} prior does not render its own '
                     'latents (GanPrior.render / sample_native unset)')
  if FLAGS.latents:
    check_width(z, prior.latent_dim, FLAGS.latents)
  else:
    z = np.asarray(prior.sample_native(jax.random.key(FLAGS.seed), FLAGS.num))
    os.makedirs(FLAGS.out, exist_ok=True)
    np.save(os.path.join(FLAGS.out, 'latents.npy'), z)
  paths = sample(prior, z, FLAGS.out)
  print(f'wrote {len(paths)} images to {FLAGS.out}')


if __name__ == '__main__':
  _define_flags()
  cli.run(main)
