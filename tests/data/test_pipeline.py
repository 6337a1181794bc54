"""Paired-patch pipeline: exact LR crops, augmentation, resumable order, errors."""

import numpy as np
import pytest

from jaxsr.data import datasets
from jaxsr.data import imresize
from jaxsr.data import pipeline


def _images(n=3, h=70, w=90, seed=0):
  rng = np.random.default_rng(seed)
  return [(f'im{i}', rng.integers(0, 256, (h + 4 * i, w, 3), np.uint8))
          for i in range(n)]


def test_dihedral_gives_eight_distinct_transforms():
  x = np.arange(12).reshape(3, 4, 1)
  outs = {pipeline.dihedral(x, k).tobytes() + bytes(pipeline.dihedral(
      x, k).shape) for k in range(8)}
  assert len(outs) == 8
  np.testing.assert_array_equal(pipeline.dihedral(x, 0), x)
  np.testing.assert_array_equal(pipeline.dihedral(x, 4), x[:, ::-1])


def test_patch_lr_equals_crop_of_full_image_lr():
  """Downscaling a crop with margin equals cropping the full-image LR."""
  ds = datasets.from_arrays(_images(), scale=4)
  for i in range(len(ds)):
    full_lr = imresize.imresize(ds.load_hr(i), 1 / 4)
    for seed in range(6):  # Covers crops at the borders and inside.
      rng = np.random.default_rng(seed)
      lr, hr = pipeline.random_patch(ds, i, 32, 4, rng)
      rng = np.random.default_rng(seed)
      y = int(rng.integers(full_lr.shape[0] - 8 + 1))
      x = int(rng.integers(full_lr.shape[1] - 8 + 1))
      np.testing.assert_array_equal(lr, full_lr[y:y + 8, x:x + 8])
      np.testing.assert_array_equal(
          hr, ds.load_hr(i)[4 * y:4 * y + 32, 4 * x:4 * x + 32])


def test_paired_dataset_uses_given_lr():
  named = _images(2)
  lrs = [np.full((im.shape[0] // 4, im.shape[1] // 4, 3), 7, np.uint8)
         for _, im in named]
  ds = datasets.from_arrays(named, 4, lrs)
  lr, hr = pipeline.random_patch(ds, 0, 16, 4, np.random.default_rng(0))
  assert lr.shape == (4, 4, 3) and hr.shape == (16, 16, 3)
  assert np.all(lr == 7)


def _batches(**kw):
  ds = datasets.from_arrays(_images(5), scale=2)
  args = dict(scale=2, hr_patch=16, batch_size=4, seed=3, num_threads=2)
  args.update(kw)
  return pipeline.TrainBatches(ds, **args)


def test_batches_are_resumable_and_shapes():
  it = _batches()
  seq = [next(it) for _ in range(4)]
  it.close()
  assert seq[0]['lr'].shape == (4, 8, 8, 3)
  assert seq[0]['hr'].shape == (4, 16, 16, 3)
  assert seq[0]['hr'].dtype == np.float32
  assert 0. <= seq[0]['hr'].min() and seq[0]['hr'].max() <= 1.
  resumed = _batches(start_step=2)
  for k in (2, 3):
    b = next(resumed)
    np.testing.assert_array_equal(b['hr'], seq[k]['hr'])
    np.testing.assert_array_equal(b['lr'], seq[k]['lr'])
  resumed.close()


def test_hosts_split_the_global_batch():
  full = _batches()
  a = _batches(process_index=0, process_count=2)
  b = _batches(process_index=1, process_count=2)
  whole, first, second = next(full), next(a), next(b)
  for it in (full, a, b):
    it.close()
  np.testing.assert_array_equal(whole['hr'][:2], first['hr'])
  np.testing.assert_array_equal(whole['hr'][2:], second['hr'])


def test_epoch_visits_every_image_once():
  it = _batches(batch_size=5)
  n = len(it._ds)  # pylint: disable=protected-access
  items = [int(it._permutation(0)[g % n])  # pylint: disable=protected-access
           for g in it.batch_indices(0)]
  it.close()
  assert sorted(items) == list(range(n))


def test_small_image_is_a_clear_error():
  with pytest.raises(ValueError, match='im0 is 20x20, smaller than the '
                     '32x32 HR patch'):
    datasets.from_arrays([('im0', np.zeros((20, 20, 3), np.uint8))], 4,
                         min_size=32)


def test_folder_errors(tmp_path):
  from PIL import Image
  hr_dir, lr_dir = tmp_path / 'hr', tmp_path / 'lr'
  hr_dir.mkdir()
  lr_dir.mkdir()
  with pytest.raises(ValueError, match='hr'):
    datasets.from_folders(str(hr_dir), 4)  # Empty folder.
  with pytest.raises(FileNotFoundError, match='nope'):
    datasets.from_folders(str(tmp_path / 'nope'), 4)
  Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(hr_dir / '0001.png')
  Image.fromarray(np.zeros((15, 16, 3), np.uint8)).save(lr_dir / '0001x4.png')
  with pytest.raises(ValueError, match='0001x4.png is 15x16'):
    datasets.from_folders(str(hr_dir), 4, str(lr_dir))
  (hr_dir / '0002.png').write_bytes(b'not an image at all')
  with pytest.raises(ValueError, match='0002.png'):
    datasets.from_folders(str(hr_dir), 4)


def test_paired_folders_load(tmp_path):
  from PIL import Image
  hr_dir, lr_dir = tmp_path / 'hr', tmp_path / 'lr'
  hr_dir.mkdir()
  lr_dir.mkdir()
  Image.fromarray(np.full((66, 64, 3), 9, np.uint8)).save(hr_dir / '0001.png')
  Image.fromarray(np.full((16, 16, 3), 3, np.uint8)).save(
      lr_dir / '0001x4.png')
  ds = datasets.from_folders(str(hr_dir), 4, str(lr_dir))
  assert ds.sizes == [(64, 64)]  # Modcropped.
  assert ds.load_hr(0).shape == (64, 64, 3)
  assert np.all(ds.load_lr(0) == 3)
