"""Command line: python -m jaxsr.main --config experiments/rrdb_psnr.py:demo --workdir runs/demo."""

import logging as std_logging

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file, e.g. experiments/rrdb_psnr.py:demo',
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Where checkpoints, logs and results go; rerun to resume.')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'Call jax.distributed.initialize() (multi-host).')
flags.mark_flags_as_required(['config', 'workdir'])


class _QuietLibraries(std_logging.Filter):
  """Drops INFO lines of orbax (dozens per checkpoint) from the console."""

  def filter(self, record):
    return record.levelno >= std_logging.WARNING or 'orbax' not in record.pathname


def main(argv):
  del argv
  # Library code logs through the absl logger: filter its records at the source.
  logging.get_absl_logger().addFilter(_QuietLibraries())
  # tf.data and clu import TensorFlow; keep it off the GPUs so JAX owns them.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')
  if _DISTRIBUTED.value:
    jax.distributed.initialize()
  logging.info('JAX process %d/%d, devices: %s', jax.process_index(),
               jax.process_count(), jax.devices())
  from jaxsr import train  # pylint: disable=g-import-not-at-top
  train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)


if __name__ == '__main__':
  app.run(main)
