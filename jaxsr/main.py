"""Command line: python -m jaxsr.main --config experiments/rrdb_psnr.py:demo --workdir runs/demo.

Every config value is checked (jaxsr.config_check) before TensorFlow, a model
or an image is touched; a bad flag or value is one line on stderr (the
traceback with --verbose, see jaxsr.cli).
"""

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from jaxsr import cli

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file, e.g. experiments/rrdb_psnr.py:demo',
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Where checkpoints, logs and results go; rerun to resume.')
_DISTRIBUTED = flags.DEFINE_bool(
    'distributed', False, 'Call jax.distributed.initialize() (multi-host).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}: give options as '
                         '--name=value')
  config = _CONFIG.value
  # Imported here: a bad flag is reported before the method modules load.
  from jaxsr import config_check  # pylint: disable=g-import-not-at-top
  config_check.validate(config)  # Before anything is built or read.
  # tf.data and clu import TensorFlow; keep it off the GPUs so JAX owns them.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')
  if _DISTRIBUTED.value:
    jax.distributed.initialize()
  config_check.check_devices(config, jax.device_count(), jax.process_count())
  logging.info('JAX process %d/%d, devices: %s', jax.process_index(),
               jax.process_count(), jax.devices())
  from jaxsr import train  # pylint: disable=g-import-not-at-top
  train.train_and_evaluate(config, _WORKDIR.value)


if __name__ == '__main__':
  cli.run(main)
