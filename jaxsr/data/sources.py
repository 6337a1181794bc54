"""Builds the train and validation datasets named by config.data.source.

Sources: 'folder' (an HR folder, LR made on the fly, or paired HR/LR folders in
the DIV2K layout), 'demo' (embedded images, no download) and 'tfds'
(tensorflow-datasets, e.g. div2k/bicubic_x4 from a local data_dir).
"""

from absl import logging
import numpy as np

from jaxsr import config_lib
from jaxsr.data import datasets
from jaxsr.data import demo
from jaxsr.data import verify

SOURCES = ('folder', 'demo', 'tfds')
KEYS = {'source', 'train_dir', 'train_lr_dir', 'val_dir', 'val_lr_dir',
        'tfds_name', 'tfds_data_dir', 'tfds_train_split', 'tfds_val_split',
        'hr_patch', 'batch_size', 'augment', 'num_threads', 'prefetch',
        'max_val_images', 'cache_dir'}


def check(data_config) -> None:
  """Raises ValueError for unknown keys or an unknown source."""
  config_lib.check_keys(data_config, KEYS, 'data')
  if data_config.source not in SOURCES:
    raise ValueError(f'config.data.source={data_config.source!r}; expected one '
                     f'of {SOURCES}')


def _tfds(data_config, split: str, scale: int, min_size: int):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    ds = tfds.load(data_config.tfds_name, split=split,
                   data_dir=data_config.tfds_data_dir or None, download=False)
  except Exception as e:  # tfds raises assorted errors for missing data.
    raise FileNotFoundError(
        f'tensorflow-datasets {data_config.tfds_name!r} split {split!r} is not '
        f'prepared under data_dir={data_config.tfds_data_dir!r}; prepare it '
        'with `tfds build` (manual download) first') from e
  named, lrs = [], []
  for k, ex in enumerate(tfds.as_numpy(ds)):
    named.append((f'{split}_{k:04d}', np.asarray(ex['hr'], np.uint8)))
    if 'lr' in ex:
      lrs.append(np.asarray(ex['lr'], np.uint8))
  logging.info('tfds %s[%s]: %d images', data_config.tfds_name, split,
               len(named))
  return datasets.from_arrays(named, scale, lrs if lrs else None, min_size)


def train_set(data_config, scale: int) -> datasets.Dataset:
  """The training dataset; every image must hold one HR patch."""
  check(data_config)
  patch = data_config.hr_patch
  if data_config.source == 'demo':
    return datasets.from_arrays(demo.load(demo.TRAIN), scale, min_size=patch)
  if data_config.source == 'tfds':
    return _tfds(data_config, data_config.tfds_train_split, scale, patch)
  if not data_config.train_dir:
    raise ValueError('config.data.train_dir is empty: point it at an HR folder '
                     '(e.g. DIV2K/DIV2K_train_HR)')
  # Every file is decoded once here (remembered across runs), so a damaged
  # image stops the run before step 0 rather than when a batch samples it.
  return datasets.from_folders(data_config.train_dir, scale,
                               data_config.train_lr_dir, min_size=patch,
                               cache_dir=data_config.get('cache_dir', ''),
                               verify=True,
                               record_dir=verify.default_record_dir(),
                               num_threads=data_config.num_threads)


def val_set(data_config, scale: int) -> datasets.Dataset | None:
  """The held-out set evaluated during training, or None when not configured."""
  check(data_config)
  if data_config.source == 'demo':
    ds = datasets.from_arrays(demo.load(demo.VAL), scale)
  elif data_config.source == 'tfds' and data_config.tfds_val_split:
    ds = _tfds(data_config, data_config.tfds_val_split, scale, 0)
  elif data_config.source == 'folder' and data_config.val_dir:
    ds = datasets.from_folders(data_config.val_dir, scale,
                               data_config.val_lr_dir, verify=True,
                               record_dir=verify.default_record_dir(),
                               num_threads=data_config.num_threads)
  else:
    return None
  n = data_config.max_val_images
  if n and n < len(ds):
    ds = datasets.Dataset(names=ds.names[:n], sizes=ds.sizes[:n],
                          load_hr=ds.load_hr, load_lr=ds.load_lr)
  return ds
