"""Dataset sources: demo images, tensorflow-datasets (mocked), config checks."""

import ml_collections
import numpy as np
import pytest

from jaxsr.data import demo
from jaxsr.data import sources


def _data_config(**overrides):
  fields = dict(source='tfds', train_dir='', train_lr_dir='', val_dir='',
                val_lr_dir='', tfds_name='div2k/bicubic_x4', tfds_data_dir='',
                tfds_train_split='train', tfds_val_split='validation',
                hr_patch=32, batch_size=4, augment=True, num_threads=2,
                prefetch=2, max_val_images=2)
  fields.update(overrides)
  return ml_collections.ConfigDict(fields)


def test_tfds_div2k_pairs_are_read_as_given():
  tf = pytest.importorskip('tensorflow')
  tfds = pytest.importorskip('tensorflow_datasets')
  rng = np.random.default_rng(0)
  hrs = [rng.integers(0, 256, (64 + 8 * i, 48, 3), np.uint8) for i in range(3)]
  lrs = [np.full((h.shape[0] // 4, 12, 3), i, np.uint8)
         for i, h in enumerate(hrs)]

  def as_dataset(self, split, **kwargs):
    del self, kwargs
    assert split in ('train', 'validation')
    return tf.data.Dataset.from_generator(
        lambda: ({'hr': h, 'lr': l} for h, l in zip(hrs, lrs)),
        output_signature={'hr': tf.TensorSpec((None, None, 3), tf.uint8),
                          'lr': tf.TensorSpec((None, None, 3), tf.uint8)})

  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    train = sources.train_set(_data_config(), scale=4)
    val = sources.val_set(_data_config(), scale=4)
  assert len(train) == 3 and len(val) == 2  # max_val_images=2.
  np.testing.assert_array_equal(train.load_hr(1), hrs[1])
  assert np.all(train.load_lr(2) == 2)


def test_tfds_missing_data_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='not prepared'):
    sources.train_set(_data_config(tfds_data_dir=str(tmp_path)), scale=4)


def test_demo_images_ship_with_installed_packages():
  for name in demo.TRAIN + demo.VAL:
    (_, image), = demo.load([name])
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert min(image.shape[:2]) >= 96
  assert not set(demo.TRAIN) & set(demo.VAL)


def test_unknown_source_and_keys():
  with pytest.raises(ValueError, match='source'):
    sources.check(_data_config(source='web'))
  config = _data_config()
  config.bogus = 1
  with pytest.raises(ValueError, match='bogus'):
    sources.check(config)


def test_folder_source_needs_a_train_dir():
  with pytest.raises(ValueError, match='train_dir'):
    sources.train_set(_data_config(source='folder'), scale=4)


def test_folder_cache_decodes_once_and_follows_edits(tmp_path):
  """cache_dir: the first load writes an .npy, later loads memory-map it (same
  pixels, same batches); editing the PNG makes a new cache entry."""
  from jaxsr.data import datasets  # pylint: disable=g-import-not-at-top
  from jaxsr.data import io  # pylint: disable=g-import-not-at-top
  from jaxsr.data import pipeline  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  hr_dir, cache = tmp_path / 'hr', tmp_path / 'cache'
  hr_dir.mkdir()
  for i in range(2):
    io.write_image(hr_dir / f'{i}.png',
                   rng.integers(0, 256, (70, 66, 3), np.uint8))
  config = _data_config(source='folder', train_dir=str(hr_dir),
                        cache_dir=str(cache))
  cached = sources.train_set(config, 4)
  # train_set verified every image by decoding it, once, into the cache.
  assert len(list(cache.glob('*.npy'))) == 2
  plain = datasets.from_folders(str(hr_dir), 4)
  first = cached.load_hr(0)
  assert len(list(cache.glob('*.npy'))) == 2
  again = cached.load_hr(0)
  assert isinstance(again.base, np.memmap) or isinstance(again, np.memmap)
  np.testing.assert_array_equal(again, plain.load_hr(0))
  np.testing.assert_array_equal(first, again)
  kwargs = dict(scale=4, hr_patch=32, batch_size=2, seed=3, num_threads=2)
  a, b = (pipeline.TrainBatches(ds, **kwargs) for ds in (cached, plain))
  batch_a, batch_b = next(a), next(b)
  a.close()
  b.close()
  for k in ('lr', 'hr'):
    np.testing.assert_array_equal(batch_a[k], batch_b[k])
  edited = rng.integers(0, 256, (80, 64, 3), np.uint8)
  io.write_image(hr_dir / '0.png', edited)
  np.testing.assert_array_equal(cached.load_hr(0), edited)
  assert len(list(cache.glob('0-*.npy'))) == 2
