"""Configs of the toy methods (tests/methods/toy_methods.py), runnable by jaxsr.main.

  python -m jaxsr.main --config tests/methods/toy_config.py:pyramid --workdir W
  python -m jaxsr.main --config tests/methods/toy_config.py:backproject --workdir W
(from the repository root: the toys register themselves on import).
"""

import ml_collections

from jaxsr import config_lib
from tests.methods import toy_methods

toy_methods.register()


def get_config(arg='pyramid'):
  """'pyramid' (3 stages) or 'backproject' (no stage)."""
  if arg not in ('pyramid', 'backproject'):
    raise ValueError(f'unknown variant {arg!r}')
  config = ml_collections.ConfigDict()
  config.method = f'toy_{arg}'
  config.seed = 0
  config.scale = 4
  config.init_from = ''
  config.data = config_lib.data()
  config.data.update(source='demo', hr_patch=16, batch_size=4, num_threads=2,
                     max_val_images=1)
  config.train = config_lib.train(0)
  config.train.update(log_every=1, eval_every=0, checkpoint_every=1,
                      keep_checkpoints=10)
  config.eval = config_lib.evaluation()
  config.eval.update(tile=0, grid_images=1)
  config.toy = ml_collections.ConfigDict(dict(
      steps=(2, 2, 2) if arg == 'pyramid' else (20,), lr=1e-2 if arg ==
      'pyramid' else 16.0, noise=0.05, kill_at=-1, workdir='',
      steps_per_call=1))
  config.lock()
  return config
