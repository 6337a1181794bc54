"""Tests for the torch-free checkpoint reader and writer (zip and legacy)."""

import collections
import os
import pickle
import pickletools
import struct
import zipfile

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from jaxsr.pretrained import torch_pickle
from jaxsr.pretrained import torch_writer


def _state_dict():
  base = np.arange(24, dtype=np.float32).reshape(4, 6)
  return {
      'transposed': base.T,  # a view: same storage, strides (1, 6)
      'slice': base[1:3, 2:],  # same storage again, offset 8
      'half': np.array([1.5, -2.0, 65504.0], np.float16),
      'double': np.linspace(0, 1, 5),
      'long': np.array([[1, -2], [2**40, 3]], np.int64),
      'int': np.arange(6, dtype=np.int32).reshape(2, 3)[:, ::-1],  # copied
      'byte': np.array([0, 255], np.uint8),
      'bool': np.array([True, False]),
      'bf16': np.array([1.5, -2.25, 3.0e38], ml_dtypes.bfloat16),
      'scalar': np.array(3.25, np.float32),
      'empty': np.zeros((0, 3), np.float32),
      'nested': collections.OrderedDict(
          w=np.ones((2, 3, 4), np.float32).transpose(2, 0, 1),
          inner={'x': np.float32([7.0])},
      ),
      'step': 1000,
      'name': 'net_g',
      'nothing': None,
  }


def _assert_same(got, want):
  assert isinstance(got, dict) and set(got) == set(want)
  for key, value in want.items():
    if isinstance(value, dict):
      _assert_same(got[key], value)
    elif isinstance(value, np.ndarray):
      assert isinstance(got[key], np.ndarray), key
      if value.dtype == ml_dtypes.bfloat16:
        assert got[key].dtype == np.float32, key
        value = value.astype(np.float32)
      assert got[key].dtype == value.dtype, key
      assert got[key].flags.c_contiguous, key
      np.testing.assert_array_equal(got[key], value, err_msg=key)
    else:
      assert got[key] == value, key


@pytest.mark.parametrize('legacy', [False, True])
def test_round_trip(tmp_path, legacy):
  path = tmp_path / 'ckpt.pth'
  want = _state_dict()
  torch_writer.save_torch_file(path, want, legacy=legacy)
  assert zipfile.is_zipfile(path) != legacy
  got = torch_pickle.load_torch_file(path)
  _assert_same(got, want)
  assert type(got['nested']) is dict  # OrderedDicts come back as dicts


def test_zip_layout_is_torch_save(tmp_path):
  path = tmp_path / 'ckpt.pth'
  base = np.arange(24, dtype=np.float32).reshape(4, 6)
  torch_writer.save_torch_file(path, {'a': base.T, 'b': base[1:3, 2:]})
  with zipfile.ZipFile(path) as zf:
    names = zf.namelist()
    assert names == ['archive/data.pkl', 'archive/byteorder',
                     'archive/data/0', 'archive/version']
    assert zf.read('archive/byteorder') == b'little'
    # One shared storage holds the whole 4x6 buffer.
    assert zf.read('archive/data/0') == base.tobytes()
    for info in zf.infolist():
      assert info.compress_type == zipfile.ZIP_STORED
      data_start = (info.header_offset + 30 + len(info.filename)
                    + len(info.extra))
      assert data_start % 64 == 0, info.filename
    ops = list(pickletools.genops(zf.read('archive/data.pkl')))
  assert ops[0][0].name == 'PROTO' and ops[0][1] == 2
  globals_ = {arg for op, arg, _ in ops if op.name == 'GLOBAL'}
  assert globals_ == {'torch._utils _rebuild_tensor_v2',
                      'torch FloatStorage', 'collections OrderedDict'}
  # Tensor b: storage offset 8 (row 1, col 2), size (2, 4), stride (6, 1).
  ints = [arg for op, arg, _ in ops if op.name == 'BININT1']
  assert ints == [24, 0, 6, 4, 1, 6, 24, 8, 2, 4, 6, 1]


def test_legacy_header_matches_real_lpips_file(tmp_path, shared_data):
  path = tmp_path / 'ckpt.pth'
  torch_writer.save_torch_file(path, {'w': np.ones(2, np.float32)}, True)
  real = (shared_data / 'lpips' / 'vgg.pth').read_bytes()
  # PROTO 2, LONG1 magic, STOP; PROTO 2, BININT2 1001, STOP.
  header = b'\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9\x03.'
  assert real.startswith(header)
  assert path.read_bytes().startswith(header)


def test_reads_real_lpips_weights(shared_data):
  widths = {'vgg': (64, 128, 256, 512, 512), 'alex': (64, 192, 384, 256, 256),
            'squeeze': (64, 128, 256, 384, 384, 512, 512)}
  for net, chans in widths.items():
    sd = torch_pickle.load_torch_file(shared_data / 'lpips' / f'{net}.pth')
    assert list(sd) == [f'lin{k}.model.1.weight' for k in range(len(chans))]
    for k, c in enumerate(chans):
      w = sd[f'lin{k}.model.1.weight']
      assert w.shape == (1, c, 1, 1) and w.dtype == np.float32
      # LPIPS clamps its linear weights to be non-negative during training.
      assert w.min() >= 0 and 0 < w.mean() < 1, (net, k)


def test_reads_real_dists_weights(shared_data):
  sd = torch_pickle.load_torch_file(shared_data / 'dists' / 'weights.pt')
  assert set(sd) == {'alpha', 'beta'}
  for w in sd.values():
    # 1475 = 3 (image) + 64 + 128 + 256 + 512 + 512 VGG16 channels.
    assert w.shape == (1, 1475, 1, 1) and w.dtype == np.float32
    assert np.isfinite(w).all()
  # The file ends with the last storage: an int64 count, then raw floats.
  data = (shared_data / 'dists' / 'weights.pt').read_bytes()
  assert data[-1475 * 4 :] == sd['beta'].tobytes() or (
      data[-1475 * 4 :] == sd['alpha'].tobytes()
  )
  assert struct.unpack('<q', data[-1475 * 4 - 8 : -1475 * 4]) == (1475,)


class _Evil:

  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return os.system, (f'touch {self.marker}',)


def _evil_zip(path, payload):
  with zipfile.ZipFile(path, 'w') as zf:
    zf.writestr('archive/data.pkl', payload)
    zf.writestr('archive/version', b'3\n')


@pytest.mark.parametrize('where', ['zip', 'legacy_object', 'legacy_magic'])
def test_refuses_os_system(tmp_path, where):
  marker = tmp_path / 'pwned'
  payload = pickle.dumps({'w': _Evil(marker)}, protocol=2)
  path = tmp_path / 'evil.pth'
  if where == 'zip':
    _evil_zip(path, payload)
  elif where == 'legacy_object':
    headers = [torch_pickle.LEGACY_MAGIC, torch_pickle.LEGACY_PROTOCOL,
               {'little_endian': True}]
    path.write_bytes(b''.join(pickle.dumps(h, protocol=2) for h in headers)
                     + payload + pickle.dumps([], protocol=2))
  else:
    path.write_bytes(pickle.dumps(_Evil(marker), protocol=2))
  with pytest.raises(pickle.UnpicklingError,
                     match='refusing to load arbitrary code: .*system'):
    torch_pickle.load_torch_file(path)
  assert not marker.exists()


@pytest.mark.parametrize('module, name', [
    ('torch.storage', '_load_from_bytes'),  # unpickles a nested torch.load
    ('builtins', 'eval'),
    ('numpy.core.multiarray', '_reconstruct'),
    ('torch', 'load'),
])  # pyformat: disable
def test_refuses_other_globals(tmp_path, module, name):
  path = tmp_path / 'evil.pth'
  _evil_zip(path, b'\x80\x02c' + f'{module}\n{name}\n'.encode() + b'q\x00.')
  with pytest.raises(pickle.UnpicklingError, match=f'{module}.{name}'):
    torch_pickle.load_torch_file(path)


def test_out_of_bounds_strides_are_refused(tmp_path):
  converter = torch_writer._Converter()
  storage = converter._new_storage(np.arange(4, dtype=np.float32), 0)
  # Size 4 with stride 2 would read 3 elements past a 4-element storage.
  obj = {'w': torch_writer._Tensor(storage, 0, (4,), (2,))}
  path = tmp_path / 'bad.pth'
  torch_writer._save_zip(str(path), obj, converter.order)
  with pytest.raises(pickle.UnpicklingError, match='reaches element 6'):
    torch_pickle.load_torch_file(path)


def test_legacy_storage_views(tmp_path, monkeypatch):
  # Legacy files could hold views: (view key, offset, size) into a root.
  converter = torch_writer._Converter()
  storage = converter._new_storage(np.arange(6, dtype=np.float32), 0)
  obj = {'v': torch_writer._Tensor(storage, 1, (2,), (1,))}

  def persistent_id(self, o):
    if isinstance(o, torch_writer._Storage):
      return ('storage', o.type, o.key, 'cpu', 6, ('view0', 2, 3))
    return None

  monkeypatch.setattr(torch_writer._TorchPickler, 'persistent_id',
                      persistent_id)
  path = tmp_path / 'views.pth'
  torch_writer._save_legacy(str(path), obj, converter.order)
  # The view is elements 2..4 of the root; the tensor starts at its 1.
  np.testing.assert_array_equal(
      torch_pickle.load_torch_file(path)['v'], [3.0, 4.0]
  )


def test_big_endian_zip_is_byteswapped(tmp_path):
  little = tmp_path / 'little.pth'
  want = {'f': np.array([1.5, -2.0], np.float32), 'l': np.array([1, 2**33])}
  torch_writer.save_torch_file(little, want)
  big = tmp_path / 'big.pth'
  with zipfile.ZipFile(little) as src, zipfile.ZipFile(big, 'w') as dst:
    for name in src.namelist():
      data = src.read(name)
      if name == 'archive/byteorder':
        data = b'big'
      elif name.startswith('archive/data/'):
        dtype = want['f'].dtype if name.endswith('/0') else want['l'].dtype
        data = np.frombuffer(data, dtype).byteswap().tobytes()
      dst.writestr(name, data)
  _assert_same(torch_pickle.load_torch_file(big), want)


def test_not_a_torch_file(tmp_path):
  path = tmp_path / 'x.pth'
  path.write_bytes(pickle.dumps([1, 2], protocol=2))
  with pytest.raises(ValueError, match='magic number'):
    torch_pickle.load_torch_file(path)


def test_writer_takes_jax_and_non_native_arrays(tmp_path):
  path = tmp_path / 'ckpt.pth'
  torch_writer.save_torch_file(path, {
      'jax': jnp.arange(3.0), 'big': np.arange(3, dtype='>i4'), 'seq': [1, 2]
  })
  got = torch_pickle.load_torch_file(path)
  np.testing.assert_array_equal(got['jax'], [0.0, 1.0, 2.0])
  assert got['big'].dtype == np.int32 and got['seq'] == [1, 2]
  with pytest.raises(ValueError, match='cannot save a object'):
    torch_writer.save_torch_file(path, {'x': object()})
  with pytest.raises(ValueError, match='numpy scalar'):
    torch_writer.save_torch_file(path, {'x': np.float32(1)})



def _with_record(src, dst, record, write, compression=zipfile.ZIP_STORED):
  """Copies the torch zip src to dst with `record` rewritten by write(f)."""
  with zipfile.ZipFile(src) as zin, zipfile.ZipFile(
      dst, 'w', compression, compresslevel=1) as zout:
    for name in zin.namelist():
      if name == record:
        with zout.open(name, 'w', force_zip64=True) as f:
          write(f)
      else:
        zout.writestr(name, zin.read(name))


def _four_floats(tmp_path):
  path = tmp_path / 'small.pth'
  torch_writer.save_torch_file(path, {'w': np.arange(4, dtype=np.float32)})
  return path


def test_oversized_zip_record_is_refused_before_it_is_read(tmp_path):
  """A 4-float tensor whose record holds 64 MiB (deflated to ~0.3 MiB): the
  record's size in the zip directory is checked before decompressing."""
  import tracemalloc  # pylint: disable=g-import-not-at-top
  size = 64 * 2**20

  def zeros(f):
    for _ in range(16):
      f.write(bytes(size // 16))

  bomb = tmp_path / 'bomb.pth'
  _with_record(_four_floats(tmp_path), bomb, 'archive/data/0', zeros,
               zipfile.ZIP_DEFLATED)
  with zipfile.ZipFile(bomb) as zf:
    info = zf.getinfo('archive/data/0')
    assert info.file_size == size and info.compress_size < size // 100
  tracemalloc.start()
  try:
    with pytest.raises(ValueError, match=r'archive/data/0 is 67108864 bytes, '
                       r'its tensors declare a storage of 16 bytes'):
      torch_pickle.load_torch_file(bomb)
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  # Reading the record whole would allocate its 64 MiB.
  assert peak < 2**20, f'{peak} bytes allocated while refusing the record'


def test_short_zip_record_is_refused(tmp_path):
  short = tmp_path / 'short.pth'
  _with_record(_four_floats(tmp_path), short, 'archive/data/0',
               lambda f: f.write(bytes(12)))
  with pytest.raises(ValueError, match='is 12 bytes, its tensors declare a '
                     'storage of 16 bytes'):
    torch_pickle.load_torch_file(short)
