"""SinGAN commands on a trained workdir: random samples, super-resolution, paint-to-image, the SR benchmark.

  python -m jaxsr.singan sample --workdir runs/singan --num 8 --size 1.0,1.5 \
      --start_scale 0 --out runs/singan/samples [--inception inception.pth]
  python -m jaxsr.singan sr --workdir runs/singan-sr --factor 4 --out sr.png
  python -m jaxsr.singan paint2image --workdir runs/singan --paint paint.png \
      --inject_scale 2 --out out.png
  python -m jaxsr.singan sr_benchmark --data BSD100_HR_DIR --scale 4 \
      --config experiments/singan.py:sr --out runs/bsd100

`sample` writes <out>/0000.png ... (and a grid, real | samples; with
--inception a local Inception .pth, sifid.json: each sample's SIFID); `sr`
super-resolves the training image (or --input) by --factor; `paint2image`
injects a painting at a scale (>= 1) and generates the finer scales;
`sr_benchmark` is Table 4's protocol (`jaxsr.evaluation.singan_benchmark`).
"""

import json
import os

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from jaxsr.data import color
from jaxsr.data import io

FLAGS = flags.FLAGS
COMMANDS = ('sample', 'sr', 'paint2image', 'sr_benchmark')


def load(workdir: str, run: int = 0):
  """(config, Nets, state) of a trained SinGAN workdir; of its run-th
  pyramid when it trained several images at once (config.data.images)."""
  from jaxsr import restore  # pylint: disable=g-import-not-at-top
  from jaxsr import methods  # pylint: disable=g-import-not-at-top
  from jaxsr.methods import singan  # pylint: disable=g-import-not-at-top
  from jaxsr.methods import stacked  # pylint: disable=g-import-not-at-top
  config = restore.load_config(workdir)
  if config.method != 'singan':
    raise ValueError(f'{workdir} holds a {config.method!r} run, not singan')
  _, _, net = singan.image_and_nets(config)
  state = restore.load_state(workdir, methods.build(config))
  if len(config.data.get('images', ()) or ()) > 1:
    state = stacked.select(state, run)
  elif run:
    raise ValueError(f'{workdir} holds one pyramid: --run {run} is out of '
                     'range')
  return config, net, state


def to_uint8(x: jax.Array) -> np.ndarray:
  """(N, H, W, 3) in [-1, 1] -> uint8 (N, H, W, 3)."""
  return color.to_uint8((np.asarray(x) + 1.) / 2.)


def from_uint8(image: np.ndarray) -> jax.Array:
  """uint8 (H, W, 3) -> (1, H, W, 3) float32 in [-1, 1]."""
  return jnp.asarray(image[None].astype(np.float32) / 127.5 - 1.)


def parse_size(text: str) -> tuple[float, float]:
  """'1.0,1.5' -> (scale_v, scale_h); '2' -> (2.0, 2.0)."""
  parts = [float(p) for p in text.split(',')]
  if len(parts) == 1:
    parts *= 2
  if len(parts) != 2 or min(parts) <= 0:
    raise ValueError(f'--size expects V,H (positive), got {text!r}')
  return parts[0], parts[1]


def sifid_variables(weights: str):
  """Inception variables up to SIFID's layer from a local torchvision
  inception_v3 .pth (jaxsr.pretrained.inception; no download)."""
  from jaxsr.metrics import sifid  # pylint: disable=g-import-not-at-top
  from jaxsr.models import inception  # pylint: disable=g-import-not-at-top
  from jaxsr.pretrained import inception as inception_weights  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(weights):
    raise FileNotFoundError(f'--inception {weights}: no such file (a local '
                            'torchvision inception_v3 .pth)')
  model = inception.InceptionV3(outputs=(sifid.SIFID_LAYER,),
                                variant='torchvision')
  return inception_weights.feature_variables(model, weights)


def sample_files(workdir: str, num: int, size: tuple[float, float],
                 start_scale: int, out: str, seed: int = 0,
                 run: int = 0, inception: str = '') -> list[str]:
  """Writes num random samples (and grid.png: real | samples) to out; with
  `inception` (a local Inception .pth), also sifid.json: each sample's SIFID
  against the training image (the official layer, jaxsr.metrics.sifid)."""
  from jaxsr.evaluation import report  # pylint: disable=g-import-not-at-top
  from jaxsr.methods import singan_generate  # pylint: disable=g-import-not-at-top
  from jaxsr.metrics import sifid  # pylint: disable=g-import-not-at-top
  variables = sifid_variables(inception) if inception else None  # Early.
  _, net, state = load(workdir, run)
  fn = jax.jit(lambda s, k: singan_generate.sample(
      s, k, net=net, num=num, scale_v=size[0], scale_h=size[1],
      start_scale=start_scale))
  images = to_uint8(fn(state, jax.random.key(seed)))
  paths = []
  for i, image in enumerate(images):
    path = os.path.join(out, f'{i:04d}.png')
    io.write_image(path, image)
    paths.append(path)
  real = to_uint8(state.reals[-1][None])[0]
  grid = report.labeled_grid(['real'] + [f'sample {i}' for i in range(num)],
                             [[real, *images]])
  io.write_image(os.path.join(out, 'grid.png'), grid)
  logging.info('%d samples of %dx%d -> %s', num, images.shape[1],
               images.shape[2], out)
  if variables is not None:
    scores = [float(sifid.sifid(real, image, variables)) for image in images]
    with open(os.path.join(out, 'sifid.json'), 'w') as f:
      json.dump({'layer': sifid.SIFID_LAYER, 'weights': inception,
                 'samples': scores, 'mean': float(np.mean(scores))}, f,
                indent=2)
    logging.info('SIFID (layer %s) mean %.4g over %d samples',
                 sifid.SIFID_LAYER, np.mean(scores), num)
  return paths


def sr_file(workdir: str, factor: float, out: str, input_path: str = '',
            seed: int = 0, run: int = 0) -> str:
  """SR of the training image (or input_path) by factor, written to out."""
  from jaxsr.methods import singan_generate  # pylint: disable=g-import-not-at-top
  _, net, state = load(workdir, run)
  lr = (from_uint8(io.read_image(input_path)) if input_path
        else state.reals[-1][None])
  sr = jax.jit(lambda s, x, k: singan_generate.super_resolve(
      s, x, k, net=net, factor=factor))(state, lr, jax.random.key(seed))
  io.write_image(out, to_uint8(sr)[0])
  logging.info('%dx%d -> %s (%dx%d)', lr.shape[1], lr.shape[2], out,
               sr.shape[1], sr.shape[2])
  return out


def paint_file(workdir: str, paint: str, inject_scale: int, out: str,
               seed: int = 0, run: int = 0) -> str:
  """Paint-to-image: the painting injected at inject_scale, written to out."""
  from jaxsr.methods import singan_generate  # pylint: disable=g-import-not-at-top
  _, net, state = load(workdir, run)

  def run(s, p, k):
    start = singan_generate.paint_input(s, p, inject_scale, net=net)
    return singan_generate.sample(s, k, net=net, start_scale=inject_scale,
                                  inject=start)

  image = jax.jit(run)(state, from_uint8(io.read_image(paint)),
                       jax.random.key(seed))
  io.write_image(out, to_uint8(image)[0])
  return out


def _define_flags():
  """Command-line flags; defined only when run as a program."""
  flags.DEFINE_string('workdir', None, 'A trained SinGAN workdir.')
  flags.DEFINE_string('out', None, 'Output file or folder.')
  flags.DEFINE_integer('num', 8, 'sample: how many.')
  flags.DEFINE_string('size', '1.0,1.0',
                      'sample: V,H scale of the output (1.0,1.5 = 50% wider).')
  flags.DEFINE_integer('start_scale', 0,
                       'sample: scales below it reuse the reconstruction.')
  flags.DEFINE_float('factor', 4, 'sr: the SR factor.')
  flags.DEFINE_string('input', '', 'sr: an LR image (default: the training '
                      'image).')
  flags.DEFINE_string('paint', None, 'paint2image: the painting.')
  flags.DEFINE_integer('inject_scale', 1, 'paint2image: the scale (>= 1).')
  flags.DEFINE_string('data', None, 'sr_benchmark: an HR folder.')
  flags.DEFINE_integer('scale', 4, 'sr_benchmark: the SR factor.')
  flags.DEFINE_string('config', 'experiments/singan.py:sr',
                      'sr_benchmark: the training config (file:variant).')
  flags.DEFINE_integer('seed', 0, 'Noise seed of the generation.')
  flags.DEFINE_string('inception', '', 'sample: a local torchvision '
                      'inception_v3 .pth; writes sifid.json (SIFID of each '
                      'sample against the training image).')
  flags.DEFINE_integer('run', 0, 'Which pyramid of a workdir that trained '
                       'several images at once (config.data.images).')


def main(argv):
  if len(argv) != 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f'usage: python -m jaxsr.singan {{{"|".join(COMMANDS)}'
                         '} [flags]')
  command = argv[1]
  if not FLAGS.out:
    raise app.UsageError('give --out')
  if command == 'sr_benchmark':
    from jaxsr.evaluation import singan_benchmark  # pylint: disable=g-import-not-at-top
    if not FLAGS.data:
      raise app.UsageError('sr_benchmark needs --data (an HR folder)')
    _, table = singan_benchmark.run(FLAGS.data, FLAGS.scale, FLAGS.config,
                                    FLAGS.out)
    print(table)  # The table is this command's output.
    return
  if not FLAGS.workdir:
    raise app.UsageError(f'{command} needs --workdir')
  if command == 'sample':
    sample_files(FLAGS.workdir, FLAGS.num, parse_size(FLAGS.size),
                 FLAGS.start_scale, FLAGS.out, FLAGS.seed, FLAGS.run,
                 FLAGS.inception)
  elif command == 'sr':
    sr_file(FLAGS.workdir, FLAGS.factor, FLAGS.out, FLAGS.input, FLAGS.seed,
            FLAGS.run)
  else:
    if not FLAGS.paint:
      raise app.UsageError('paint2image needs --paint')
    paint_file(FLAGS.workdir, FLAGS.paint, FLAGS.inject_scale, FLAGS.out,
               FLAGS.seed, FLAGS.run)


if __name__ == '__main__':
  _define_flags()
  from jaxsr import cli  # pylint: disable=g-import-not-at-top
  cli.run(main)  # A bad flag or input: one line (--verbose: traceback).
