"""Training images are decoded before step 0 (remembered per size and mtime); per-file notes are logged once."""

import logging
import os

import numpy as np
import pytest
from PIL import Image

from jaxsr.data import datasets
from jaxsr.data import io
from jaxsr.data import sources
from jaxsr.data import verify
from tests import helpers


def _random_png(path, size=48, seed=0):
  rng = np.random.default_rng(seed)
  Image.fromarray(rng.integers(0, 256, (size, size, 3), np.uint8)).save(path)


def _truncate(path, keep=0.6):
  data = path.read_bytes()
  path.write_bytes(data[:int(len(data) * keep)])


@pytest.fixture
def folder(tmp_path):
  """hr/ with three good PNGs and two truncated ones (headers intact)."""
  hr = tmp_path / 'hr'
  hr.mkdir()
  for i in range(5):
    _random_png(hr / f'{i}.png', seed=i)
  _truncate(hr / '1.png')
  _truncate(hr / '3.png')
  return hr


def test_truncated_images_pass_the_header_check(folder):
  """The failure the verification exists for: headers alone look fine."""
  for name in ('1.png', '3.png'):
    with Image.open(folder / name) as im:
      assert im.size == (48, 48)
    with pytest.raises(ValueError, match='truncated'):
      io.read_image(folder / name)


def test_every_bad_training_image_is_named_in_one_error(folder, tmp_path,
                                                        monkeypatch):
  monkeypatch.setenv(verify.RECORD_DIR_ENV, str(tmp_path / 'records'))
  config = helpers.load_experiment('rrdb_psnr', 'tiny').data
  config.unlock()
  config.update(source='folder', train_dir=str(folder))
  with pytest.raises(ValueError) as e:
    sources.train_set(config, 4)
  message = str(e.value)
  assert '\n' not in message
  assert '2 of 5' in message
  assert str(folder / '1.png') in message and str(folder / '3.png') in message
  for good in ('0.png', '2.png', '4.png'):
    assert str(folder / good) not in message


def test_decoded_files_are_remembered_by_size_and_mtime(folder, tmp_path):
  records = tmp_path / 'records'
  decoded = []

  def read(path):
    decoded.append(os.path.basename(path))
    return io.read_image(path)

  paths = [str(p) for p in io.list_images(folder)]
  bad = verify.verify_images(paths, read, str(records), num_threads=2)
  assert sorted(decoded) == ['0.png', '1.png', '2.png', '3.png', '4.png']
  assert sorted(os.path.basename(p) for p in bad) == ['1.png', '3.png']
  # A rerun decodes only the files that failed (never recorded as good).
  decoded.clear()
  assert verify.verify_images(paths, read, str(records)).keys() == bad.keys()
  assert sorted(decoded) == ['1.png', '3.png']
  # Fixing a file: the new size and mtime make it decode once, then never.
  _random_png(folder / '1.png', seed=11)
  decoded.clear()
  assert list(verify.verify_images(paths, read, str(records))) == [
      str(folder / '3.png')]
  assert sorted(decoded) == ['1.png', '3.png']
  # Same size, new mtime (an edit in place) is decoded again.
  st = os.stat(folder / '0.png')
  os.utime(folder / '0.png', ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
  decoded.clear()
  verify.verify_images(paths, read, str(records))
  assert sorted(decoded) == ['0.png', '3.png']


def test_records_live_in_the_cache_folder_not_the_data(folder, tmp_path):
  before = sorted(os.listdir(folder))
  records = tmp_path / 'records'
  kwargs = dict(verify=True, record_dir=str(records))
  _random_png(folder / '1.png', seed=11)
  _random_png(folder / '3.png', seed=13)
  ds = datasets.from_folders(str(folder), 4, **kwargs)
  assert len(ds) == 5
  assert sorted(os.listdir(folder)) == before
  (record,) = os.listdir(records)
  assert record.startswith('hr-') and record.endswith('.json')
  assert verify.default_record_dir().endswith(os.path.join('jaxsr',
                                                           'verified'))


def test_header_and_size_problems_are_collected_too(tmp_path):
  hr = tmp_path / 'hr'
  hr.mkdir()
  _random_png(hr / 'a.png', size=20)
  (hr / 'b.png').write_bytes(b'not an image')
  _random_png(hr / 'c.png', size=48)
  with pytest.raises(ValueError) as e:
    datasets.from_folders(str(hr), 4, min_size=32)
  message = str(e.value)
  assert '2 of 3' in message
  assert 'a.png is 20x20, smaller than the 32x32' in message
  assert 'b.png' in message and 'c.png' not in message


def _png16_rgb(path):
  """A 2x1 16-bit RGB PNG written by hand (Pillow cannot write one)."""
  import struct  # pylint: disable=g-import-not-at-top
  import zlib  # pylint: disable=g-import-not-at-top

  def chunk(kind, data):
    body = kind + data
    return (struct.pack('>I', len(data)) + body
            + struct.pack('>I', zlib.crc32(body) & 0xffffffff))
  raw = b'\x00' + struct.pack('>6H', 65535, 0, 256, 1, 2, 3)
  path.write_bytes(b'\x89PNG\r\n\x1a\n'
                   + chunk(b'IHDR', struct.pack('>IIBBBBB', 2, 1, 16, 2, 0,
                                                0, 0))
                   + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))


def test_alpha_and_16_bit_notes_are_logged_once_per_file(tmp_path, caplog):
  rgba = [tmp_path / f'rgba{i}.png' for i in range(2)]
  for p in rgba:
    Image.fromarray(np.zeros((4, 4, 4), np.uint8), mode='RGBA').save(p)
  deep = tmp_path / 'rgb16.png'
  _png16_rgb(deep)
  with caplog.at_level(logging.INFO):
    for _ in range(4):  # As the pipeline does: one decode per sampled patch.
      for p in rgba + [deep]:
        io.read_image(p)
  lines = [r.getMessage() for r in caplog.records]
  for p in rgba:
    assert sum(str(p) in m and 'alpha' in m for m in lines) == 1, lines
  assert sum(str(deep) in m and '16-bit RGB' in m for m in lines) == 1, lines



def test_the_methods_batches_stop_before_the_first_batch(folder, tmp_path,
                                                         monkeypatch):
  """The run of the issue stopped at step 3, after a checkpoint. The loop
  makes its batch iterator (method.train_batches) before step 0: that call
  now fails, naming both files, before any batch is read."""
  from jaxsr import methods  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv(verify.RECORD_DIR_ENV, str(tmp_path / 'records'))
  config = helpers.experiment_config('rrdb_psnr', 'tiny', **{
      'data.source': 'folder', 'data.train_dir': str(folder)})
  method = methods.build(config)
  with pytest.raises(ValueError, match='2 of 5') as e:
    method.train_batches(0, 0, 1)
  assert '1.png' in str(e.value) and '3.png' in str(e.value)
