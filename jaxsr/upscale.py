"""Command-line inference: python -m jaxsr.upscale --workdir W in.png -o out.png.

Runs the newest checkpoint of W, tiled (--tile LR pixels, --overlap context),
so a 2040x1356 DIV2K image fits in memory on a CPU.
"""

import os

from absl import app
from absl import flags
from absl import logging

from jaxsr.data import io
from jaxsr.evaluation import scoring

FLAGS = flags.FLAGS


def upscale_files(workdir: str, inputs: list[str], output: str, tile: int,
                  overlap: int) -> list[str]:
  """Upscales each input file; returns the written paths."""
  from jaxsr import restore  # pylint: disable=g-import-not-at-top
  model = restore.load_model(workdir)
  if len(inputs) > 1:
    os.makedirs(output, exist_ok=True)
  written = []
  for path in inputs:
    lr = io.read_image(path)
    sr = scoring.model_sr(model.predict, lr, model.scale,
                          tile if model.tileable else 0, overlap)
    out = output if len(inputs) == 1 else os.path.join(
        output, os.path.splitext(os.path.basename(path))[0] + '.png')
    io.write_image(out, sr)
    logging.info('%s (%dx%d) -> %s (%dx%d)', path, lr.shape[0], lr.shape[1],
                 out, sr.shape[0], sr.shape[1])
    written.append(out)
  return written


def _define_flags():
  """Command-line flags; defined only when run as a program."""
  flags.DEFINE_string('workdir', None, 'Trained workdir.')
  flags.DEFINE_string('output', None, 'Output PNG (one input) or folder '
                      '(several inputs).', short_name='o')
  flags.DEFINE_integer('tile', 128, 'LR tile size (0: whole image).')
  flags.DEFINE_integer('overlap', 32, 'LR context around each tile.')
  flags.mark_flags_as_required(['workdir', 'output'])


def main(argv):
  if len(argv) < 2:
    raise app.UsageError('give at least one input image')
  upscale_files(FLAGS.workdir, argv[1:], FLAGS.output, FLAGS.tile,
                FLAGS.overlap)


if __name__ == '__main__':
  _define_flags()
  app.run(main)
