"""Command-line inference: python -m jaxsr.upscale --workdir W in.png -o out.png.

Runs the newest checkpoint of W, tiled (--tile LR pixels, --overlap context),
so a 2040x1356 DIV2K image fits in memory on a CPU.

-o is the output file for one input, in any format Pillow writes, chosen by
its extension (.png, .jpg/.webp with --quality, .tif, .bmp ...). It is a
folder for several inputs, or when it is an existing folder, ends in '/' or
has no extension: each output is then <folder>/<input name>.<--format>.
A gray input gives a gray output (the Rec.601 luma of the model's RGB SR).
Everything is checked before the model is loaded: the tile and overlap, that
every input decodes, that the output format can be written, and that no two
inputs would write the same output (nor an output overwrite an input).
"""

import dataclasses
import io as bytes_io
import os

from absl import app
from absl import flags
from absl import logging
import numpy as np
from PIL import Image

from jaxsr import cli
from jaxsr.data import color
from jaxsr.data import io
from jaxsr.evaluation import receptive_field
from jaxsr.evaluation import scoring

FLAGS = flags.FLAGS
# Formats whose encoder takes a quality (1..100).
_QUALITY_FORMATS = ('JPEG', 'WEBP', 'AVIF', 'JPEG2000')


@dataclasses.dataclass(frozen=True)
class Job:
  """One input file, where its SR goes, and what the input is."""
  input: str
  output: str
  height: int
  width: int
  gray: bool


def image_format(path: str) -> str:
  """Pillow's format name for a file name's extension ('x.jpg' -> 'JPEG')."""
  ext = os.path.splitext(path)[1].lower()
  fmt = Image.registered_extensions().get(ext)
  if fmt is None or fmt not in Image.SAVE:
    writable = sorted(e for e, f in Image.registered_extensions().items()
                      if f in Image.SAVE)
    raise ValueError(f'cannot write {path}: Pillow writes no format with the '
                     f'extension {ext or "(none)"!r}; expected one of '
                     f'{", ".join(writable)}')
  return fmt


def _save_options(fmt: str, quality: int) -> dict:
  return {'quality': quality} if fmt in _QUALITY_FORMATS else {}


def check_format(path: str, modes: set[str], quality: int) -> None:
  """Raises ValueError unless Pillow can write `modes` images to `path`."""
  if not 1 <= quality <= 100:
    raise ValueError(f'--quality must be in 1..100, found {quality}')
  fmt = image_format(path)
  for mode in sorted(modes):
    try:
      Image.new(mode, (2, 2)).save(bytes_io.BytesIO(), format=fmt,
                                   **_save_options(fmt, quality))
    except (OSError, ValueError, KeyError) as e:
      raise ValueError(f'cannot write {path}: Pillow cannot save a {mode} '
                       f'image as {fmt} ({e})') from e


def output_paths(inputs: list[str], output: str, fmt: str = 'png'
                 ) -> list[str]:
  """Where each input's SR goes; raises ValueError when two would collide.

  One input: `output` itself, unless it is a folder (exists as one, ends in
  a separator or has no extension). Several inputs: <output>/<stem>.<fmt>.
  """
  as_folder = (len(inputs) > 1 or os.path.isdir(output)
               or output.endswith(('/', os.sep))
               or not os.path.splitext(output)[1])
  if not as_folder:
    outs = [output]
  else:
    if os.path.exists(output) and not os.path.isdir(output):
      raise ValueError(f'-o {output} is a file; {len(inputs)} inputs need an '
                       'output folder')
    if len(inputs) > 1 and os.path.splitext(output)[1].lower() in (
        Image.registered_extensions()):
      raise ValueError(f'-o {output} names an image file, but {len(inputs)} '
                       'inputs need an output folder')
    outs = [os.path.join(output, os.path.splitext(os.path.basename(p))[0]
                         + '.' + fmt.lstrip('.')) for p in inputs]
  first = {}
  for src, out in zip(inputs, outs):
    key = os.path.normcase(os.path.realpath(out))
    if key in first:
      raise ValueError(f'{first[key]} and {src} would both be written to '
                       f'{out}: rename one, or upscale them into different '
                       'folders')
    first[key] = src
  for src in inputs:
    key = os.path.normcase(os.path.realpath(src))
    if key in first:
      raise ValueError(f'the output of {first[key]} would overwrite the input '
                       f'{src}: choose another -o')
  return outs


def plan(inputs: list[str], output: str, fmt: str, quality: int
         ) -> list[Job]:
  """Checks every input (it must decode) and output before any model runs."""
  outs = output_paths(inputs, output, fmt)
  jobs = []
  for src, out in zip(inputs, outs):
    image = io.read_image(src, keep_gray=True)  # Names the file if it fails.
    jobs.append(Job(src, out, image.shape[0], image.shape[1], image.ndim == 2))
  modes = {'L' if j.gray else 'RGB' for j in jobs}
  for out in sorted(set(outs)):
    check_format(out, modes, quality)
  for out in outs:
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    if not os.access(folder, os.W_OK):
      raise PermissionError(f'cannot write {out}: {folder} is not writable')
  return jobs


def gray_of(sr: np.ndarray) -> np.ndarray:
  """uint8 H x W Rec.601 luma (0.299 R + 0.587 G + 0.114 B) of uint8 RGB."""
  return np.clip(color.rgb_to_gray_luma(sr, rounded=True), 0, 255
                 ).astype(np.uint8)


def save_image(path: str, image: np.ndarray, quality: int = 95) -> None:
  """Writes a uint8 H x W or H x W x 3 image in the format of path's
  extension, through a temporary file and a rename (never half a file)."""
  fmt = image_format(path)
  folder, name = os.path.split(os.path.abspath(path))
  tmp = os.path.join(folder, f'.{name}.tmp')
  try:
    Image.fromarray(np.ascontiguousarray(image)).save(
        tmp, format=fmt, **_save_options(fmt, quality))
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def run_jobs(model, jobs: list[Job], tile: int, overlap: int,
             quality: int = 95) -> list[str]:
  """Upscales each job's input with a restored model; returns the outputs."""
  geo = receptive_field.geometry(model.config)
  tile = tile if model.tileable else 0
  if any(max(j.height, j.width) > tile + 2 * overlap for j in jobs):
    warning = receptive_field.overlap_warning(tile, overlap, geo)
    if warning:
      logging.warning('%s', warning)
  written = []
  for job in jobs:
    lr = io.read_image(job.input, keep_gray=True)
    sr = scoring.model_sr(model.predict, lr, model.scale, tile, overlap)
    if job.gray:
      sr = gray_of(sr)
    save_image(job.output, sr, quality)
    logging.info('%s (%dx%d) -> %s (%dx%d)', job.input, lr.shape[0],
                 lr.shape[1], job.output, sr.shape[0], sr.shape[1])
    written.append(job.output)
  return written


def upscale_files(workdir: str, inputs: list[str], output: str, tile: int,
                  overlap: int, quality: int = 95, fmt: str = 'png'
                  ) -> list[str]:
  """Upscales each input file; returns the written paths.

  Bad flags, inputs and outputs are reported before the model is loaded.
  """
  from jaxsr import restore  # pylint: disable=g-import-not-at-top
  receptive_field.check_tiling(tile, overlap)
  jobs = plan(inputs, output, fmt, quality)
  geo = receptive_field.geometry(restore.load_config(workdir))
  receptive_field.check_tiling(tile, overlap, geo)
  model = restore.load_model(workdir)
  return run_jobs(model, jobs, tile, overlap, quality)


def _define_flags():
  """Command-line flags; defined only when run as a program."""
  flags.DEFINE_string('workdir', None, 'Trained workdir.')
  flags.DEFINE_string('output', None, 'Output image (one input; its extension '
                      'sets the format) or folder.', short_name='o')
  flags.DEFINE_string('format', 'png', 'Extension of the files written into '
                      'an output folder (png, jpg, webp, tif, bmp ...).')
  flags.DEFINE_integer('quality', 95, 'JPEG/WebP quality, 1..100.')
  flags.DEFINE_integer('tile', 128, 'LR tile size (0: whole image).')
  flags.DEFINE_integer('overlap', 32, 'LR context around each tile.')
  flags.mark_flags_as_required(['workdir', 'output'])


def main(argv):
  if len(argv) < 2:
    raise app.UsageError('give at least one input image')
  upscale_files(FLAGS.workdir, argv[1:], FLAGS.output, FLAGS.tile,
                FLAGS.overlap, FLAGS.quality, FLAGS.format)


if __name__ == '__main__':
  _define_flags()
  cli.run(main)
