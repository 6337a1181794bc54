"""Writes {name: ndarray} as torch.save would (zip or legacy), without torch.

Used by tests to make PyTorch checkpoints, and by users who want to hand
weights back to PyTorch. The pickle is the one torch.save writes for a state
dict: protocol 2, tensors as `torch._utils._rebuild_tensor_v2(storage,
offset, size, stride, False, OrderedDict())`, storages as persistent ids
(see `torch_pickle` for both layouts). Arrays that are views of one
contiguous numpy buffer share one storage, with their own offset and
strides, as tensor views do in torch.

torch is not imported, so its globals are written as GLOBAL opcodes by a
subclass of the pure-Python pickler (`pickle._Pickler`, whose dispatch table
is extensible; the C pickler would try to import torch to check them).
"""

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any

import numpy as np

from jaxsr.pretrained import torch_pickle

try:
  import ml_dtypes  # pylint: disable=g-import-not-at-top

  _BFLOAT16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # ml_dtypes comes with jax; only bfloat16 needs it.
  _BFLOAT16 = None

# Zip records start on 64-byte boundaries, as torch writes them (for mmap).
_ALIGN = 64


class _Global:
  """A module-level name, pickled as GLOBAL without importing its module."""

  def __init__(self, module: str, name: str):
    self.module, self.name = module, name

  def __call__(self, *args):
    # save_reduce requires a callable; this is never called.
    raise TypeError(f'{self.module}.{self.name} is a pickling placeholder')


_REBUILD_TENSOR_V2 = _Global('torch._utils', '_rebuild_tensor_v2')


def _storage_name(dtype: np.dtype) -> str:
  """numpy dtype -> torch storage class name, e.g. float32 -> FloatStorage."""
  if _BFLOAT16 is not None and dtype == _BFLOAT16:
    return 'BFloat16Storage'
  for name, storage_dtype in torch_pickle.STORAGE_DTYPES.items():
    if name != 'BFloat16Storage' and dtype == storage_dtype.newbyteorder('='):
      return name
  raise ValueError(
      f'no torch storage for dtype {dtype}; expected one of float64/32/16, '
      'bfloat16, int64/32/16/8, uint8 or bool'
  )


class _Storage:
  """One storage: a flat contiguous array written under `key`."""

  def __init__(self, key: str, flat: np.ndarray):
    self.key = key
    self.flat = flat
    self.type = _Global('torch', _storage_name(flat.dtype))


class _Tensor:
  """Reduces like a torch.Tensor: _rebuild_tensor_v2 on a storage view."""

  def __init__(self, storage: _Storage, offset: int, size, stride):
    self.args = (storage, offset, size, stride)

  def __reduce_ex__(self, protocol):
    storage, offset, size, stride = self.args
    # requires_grad False and empty backward hooks, as state_dict() gives.
    return _REBUILD_TENSOR_V2, (
        storage,
        offset,
        size,
        stride,
        False,
        collections.OrderedDict(),
    )


def _root(array: np.ndarray) -> np.ndarray:
  while isinstance(array.base, np.ndarray):
    array = array.base
  return array


class _Converter:
  """Replaces arrays by _Tensors, sharing storages between views of a buffer."""

  def __init__(self):
    self.storages: dict[int, _Storage] = {}
    self.order: list[_Storage] = []

  def _new_storage(self, flat: np.ndarray, ident: int) -> _Storage:
    storage = _Storage(str(len(self.order)), flat)
    self.storages[ident] = storage
    self.order.append(storage)
    return storage

  def tensor(self, array: np.ndarray) -> _Tensor:
    """An array -> a tensor; on its root buffer when that is a plain view."""
    root = _root(array)
    size = tuple(int(n) for n in array.shape)
    itemsize = array.dtype.itemsize
    start = (
        array.__array_interface__['data'][0]
        - root.__array_interface__['data'][0]
    )
    shareable = (
        root.dtype == array.dtype
        and root.flags.c_contiguous
        and array.size > 0
        and start % itemsize == 0
        and all(s >= 0 and s % itemsize == 0 for s in array.strides)
    )
    if shareable:
      if id(root) not in self.storages:
        self._new_storage(root.reshape(-1), id(root))
      storage = self.storages[id(root)]
      stride = tuple(int(s) // itemsize for s in array.strides)
      return _Tensor(storage, int(start // itemsize), size, stride)
    flat = np.ascontiguousarray(array).reshape(-1)
    storage = self._new_storage(flat, id(flat))
    # C-contiguous strides in elements; any stride suits a size-1 dim.
    stride = tuple(
        int(np.prod(size[i + 1 :], dtype=np.int64)) for i in range(len(size))
    )
    return _Tensor(storage, 0, size, stride)

  def convert(self, obj: Any) -> Any:
    """Arrays (numpy or JAX) -> _Tensors inside dicts, lists and tuples."""
    if isinstance(obj, dict):
      return type(obj)((k, self.convert(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
      return type(obj)(self.convert(v) for v in obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
      return obj
    if isinstance(obj, np.generic):
      raise ValueError(
          f'numpy scalar {obj!r} would pickle numpy globals; pass a 0-d '
          'array or a Python number'
      )
    if isinstance(obj, np.ndarray) or hasattr(obj, '__array__'):
      array = np.asarray(obj)
      if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder('='))
      return self.tensor(array)
    raise ValueError(
        f'cannot save a {type(obj).__name__}; expected arrays, dicts, lists, '
        'tuples, Python numbers, strings or None'
    )


class _TorchPickler(pickle._Pickler):  # pylint: disable=protected-access
  """Protocol-2 pickler writing torch globals and storage persistent ids."""

  dispatch = dict(pickle._Pickler.dispatch)  # pylint: disable=protected-access

  def __init__(self, file, legacy: bool):
    super().__init__(file, protocol=2)
    self.legacy = legacy

  def persistent_id(self, obj):
    if not isinstance(obj, _Storage):
      return None
    pid = ('storage', obj.type, obj.key, 'cpu', int(obj.flat.size))
    # Legacy ids end with view metadata, None for a whole storage.
    return pid + (None,) if self.legacy else pid

  def save_torch_global(self, obj: _Global):
    self.write(pickle.GLOBAL + f'{obj.module}\n{obj.name}\n'.encode('ascii'))
    self.memoize(obj)

  dispatch[_Global] = save_torch_global


def _pickle(obj: Any, legacy: bool) -> bytes:
  buf = io.BytesIO()
  _TorchPickler(buf, legacy).dump(obj)
  return buf.getvalue()


def _storage_bytes(storage: _Storage) -> bytes:
  flat = storage.flat
  if storage.type.name == 'BFloat16Storage':
    flat = flat.view(np.uint16)
  return flat.astype(flat.dtype.newbyteorder('<'), copy=False).tobytes()


def _write_aligned(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
  """Writes a stored record whose data starts on a 64-byte boundary."""
  info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
  info.compress_type = zipfile.ZIP_STORED
  # Local header: 30 bytes + name + extra; pad the extra field ('FB', as
  # torch's writer does) so that the data is aligned.
  header = zf.fp.tell() + 30 + len(name.encode('utf-8')) + 4
  pad = -header % _ALIGN
  info.extra = struct.pack('<HH', 0x4246, pad) + b'Z' * pad
  zf.writestr(info, data)


def _save_zip(path: str, obj: Any, storages: list[_Storage]) -> None:
  data_pkl = _pickle(obj, legacy=False)
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as zf:
    _write_aligned(zf, 'archive/data.pkl', data_pkl)
    _write_aligned(zf, 'archive/byteorder', b'little')
    for storage in storages:
      _write_aligned(
          zf, f'archive/data/{storage.key}', _storage_bytes(storage)
      )
    # torch's reader requires a version record (3: the current format).
    _write_aligned(zf, 'archive/version', b'3\n')


def _save_legacy(path: str, obj: Any, storages: list[_Storage]) -> None:
  sys_info = dict(
      protocol_version=torch_pickle.LEGACY_PROTOCOL,
      little_endian=True,
      type_sizes=dict(short=2, int=4, long=4),
  )
  with open(path, 'wb') as f:
    for header in (torch_pickle.LEGACY_MAGIC, torch_pickle.LEGACY_PROTOCOL,
                   sys_info):
      f.write(pickle.dumps(header, protocol=2))
    f.write(_pickle(obj, legacy=True))
    ordered = sorted(storages, key=lambda s: s.key)
    f.write(pickle.dumps([s.key for s in ordered], protocol=2))
    for storage in ordered:
      f.write(struct.pack('<q', storage.flat.size))
      f.write(_storage_bytes(storage))


def save_torch_file(
    path: str | os.PathLike, state_dict: dict[str, Any], legacy: bool = False
) -> None:
  """Writes a (nested) dict of ndarrays as torch.save(..., legacy or zip)."""
  if not isinstance(state_dict, dict):
    raise ValueError(f'expected a dict to save, found a {type(state_dict)}')
  converter = _Converter()
  obj = converter.convert(state_dict)
  path = os.fspath(path)
  if legacy:
    _save_legacy(path, obj, converter.order)
  else:
    _save_zip(path, obj, converter.order)
