"""Safe reader of PyTorch checkpoints, without torch: file -> {name: ndarray}.

`torch.save` writes one of two formats, both read here:
  * zip (torch >= 1.6): `<archive>/data.pkl`, a protocol-2 pickle whose
    tensors refer to storages by persistent id ('storage', storage type,
    key, location, numel); each storage is the raw record
    `<archive>/data/<key>` of numel x itemsize bytes (its size in the zip
    directory is checked before it is read), in the byte order of
    `<archive>/byteorder` (little when absent). `<archive>` is 'archive'
    for buffers and the file's stem for paths.
  * legacy (torch < 1.6, e.g. LPIPS' and DISTS' weights, ESRGAN's models):
    consecutive pickles of the magic number 0x1950a86a20f9469cfc6c, the
    protocol version, a sys_info dict (byte order), the object (persistent ids
    ('storage', type, root key, location, numel, view metadata)) and the list
    of storage keys; then each storage as an int64 element count followed by
    its raw bytes, in that list's order.

Unpickling runs code by design, so only the globals that a state dict needs
are resolved, each to a harmless stand-in defined here; any other global
(`os.system`, `torch.storage._load_from_bytes`, numpy reconstructors)
raises `pickle.UnpicklingError`. Tensors become C-contiguous numpy arrays
(bfloat16 widened to float32); OrderedDicts become dicts.
"""

import collections
import contextlib
import io
import os
import pickle
import struct
import zipfile
from typing import Any, BinaryIO

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# torch storage class name -> little-endian numpy dtype of one element.
# bfloat16 has no numpy dtype; it is read as raw uint16 and widened later.
STORAGE_DTYPES = {
    'DoubleStorage': np.dtype('<f8'),
    'FloatStorage': np.dtype('<f4'),
    'HalfStorage': np.dtype('<f2'),
    'BFloat16Storage': np.dtype('<u2'),
    'LongStorage': np.dtype('<i8'),
    'IntStorage': np.dtype('<i4'),
    'ShortStorage': np.dtype('<i2'),
    'CharStorage': np.dtype('i1'),
    'ByteStorage': np.dtype('u1'),
    'BoolStorage': np.dtype('?'),
}


class StorageType:
  """Stand-in for a `torch.<X>Storage` class: its name and element dtype."""

  __slots__ = ('name',)

  def __init__(self, name: str):
    self.name = name

  @property
  def dtype(self) -> np.dtype:
    return STORAGE_DTYPES[self.name]

  def __repr__(self):
    return f'torch.{self.name}'


class _Storage:
  """A flat storage of `numel` elements; its bytes may come after the pickle."""

  __slots__ = ('type', 'numel', 'data', 'base', 'offset')

  def __init__(self, storage_type: StorageType, numel: int):
    self.type = storage_type
    self.numel = numel
    self.data = None  # 1-D ndarray, once read.
    self.base = None  # For legacy views: the root _Storage and an offset.
    self.offset = 0

  def array(self) -> np.ndarray:
    if self.base is not None:
      root = self.base.array()
      if self.offset + self.numel > root.size:
        raise pickle.UnpicklingError(
            f'storage view [{self.offset}, {self.offset + self.numel}) '
            f'exceeds its {root.size}-element root'
        )
      return root[self.offset : self.offset + self.numel]
    if self.data is None:
      raise pickle.UnpicklingError(f'{self.type} of {self.numel} was not read')
    return self.data


class _Tensor:
  """A tensor to build once its storage is read: a strided view of it."""

  __slots__ = ('storage', 'offset', 'size', 'stride')

  def __init__(self, storage, offset, size, stride):
    if not isinstance(storage, _Storage):
      raise pickle.UnpicklingError(f'tensor storage is a {type(storage)}')
    if not isinstance(size, tuple) or not isinstance(stride, tuple):
      raise pickle.UnpicklingError(
          f'tensor size and stride must be tuples, got {size!r}, {stride!r}'
      )
    ints = (offset,) + size + stride
    if len(size) != len(stride) or not all(
        isinstance(i, int) and i >= 0 for i in ints
    ):
      raise pickle.UnpicklingError(
          f'bad tensor geometry: offset {offset}, size {size}, '
          f'stride {stride}'
      )
    self.storage = storage
    self.offset = offset
    self.size = tuple(size)
    self.stride = tuple(stride)

  def materialize(self) -> np.ndarray:
    flat = self.storage.array()
    if 0 in self.size:
      out = np.zeros(self.size, flat.dtype)
    else:
      last = self.offset + sum(
          (n - 1) * s for n, s in zip(self.size, self.stride)
      )
      # as_strided reads raw memory: never past the storage's end.
      if last >= flat.size:
        raise pickle.UnpicklingError(
            f'tensor of size {self.size}, stride {self.stride} at offset '
            f'{self.offset} reaches element {last} of a {flat.size}-element '
            'storage'
        )
      flat = np.ascontiguousarray(flat[self.offset :])
      steps = tuple(s * flat.itemsize for s in self.stride)
      out = np.lib.stride_tricks.as_strided(flat, self.size, steps).copy()
    if self.storage.type.name == 'BFloat16Storage':
      # bfloat16 is the top half of a float32.
      return (out.astype('<u4') << 16).view('<f4').astype(np.float32)
    return out.astype(out.dtype.newbyteorder('='), copy=False)


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
  """Stand-in for torch._utils._rebuild_tensor{,_v2}."""
  del unused  # requires_grad, backward hooks, metadata: not needed here.
  return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *unused):
  """Stand-in for torch._utils._rebuild_parameter{,_with_state}."""
  del unused
  if not isinstance(data, _Tensor):
    raise pickle.UnpicklingError(f'parameter data is a {type(data)}')
  return data


class _TensorClass:
  """Stand-in for torch.Tensor / torch.nn.Parameter as a rebuild target."""


class _Namespace:
  """Stand-in for argparse.Namespace (training options saved as 'args')."""


def _rebuild_from_type_v2(func, new_type, args, state):
  """Stand-in for torch._tensor._rebuild_from_type_v2 (tensors with state)."""
  del state  # Python attributes set on a tensor: not weights.
  if func not in (_rebuild_tensor, _rebuild_parameter) or (
      new_type is not _TensorClass
  ):
    raise pickle.UnpicklingError(
        f'refusing to rebuild a tensor with {func} as {new_type}'
    )
  return func(*args)


_SAFE_GLOBALS = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter,
    ('torch._tensor', '_rebuild_from_type_v2'): _rebuild_from_type_v2,
    ('torch', 'Tensor'): _TensorClass,
    ('torch.nn.parameter', 'Parameter'): _TensorClass,
    ('argparse', 'Namespace'): _Namespace,  # BUILD fills its __dict__.
}
_SAFE_GLOBALS.update(
    {('torch', name): StorageType(name) for name in STORAGE_DTYPES}
)


class _SafeUnpickler(pickle.Unpickler):
  """Resolves only the globals in _SAFE_GLOBALS; storages via `load_storage`."""

  def __init__(self, file: BinaryIO, load_storage=None):
    super().__init__(file, encoding='utf-8')
    self._load_storage = load_storage

  def find_class(self, module, name):
    try:
      return _SAFE_GLOBALS[module, name]
    except KeyError:
      raise pickle.UnpicklingError(
          f'refusing to load arbitrary code: {module}.{name} is not one of '
          'the tensor and storage globals a state dict needs'
      ) from None

  def persistent_load(self, pid):
    if self._load_storage is None:
      raise pickle.UnpicklingError(f'unexpected persistent id {pid!r}')
    if (
        not isinstance(pid, tuple)
        or len(pid) < 5
        or pid[0] != 'storage'
        or not isinstance(pid[1], StorageType)
        or not isinstance(pid[4], int)
        or pid[4] < 0
    ):
      raise pickle.UnpicklingError(
          "expected a persistent id ('storage', torch.<X>Storage, key, "
          f'location, numel, ...), found {pid!r}'
      )
    return self._load_storage(pid)


def _safe_load(file: BinaryIO, load_storage=None) -> Any:
  return _SafeUnpickler(file, load_storage).load()


def _finish(obj: Any) -> Any:
  """Tensors -> ndarrays, (Ordered)dicts -> dicts, recursively."""
  if isinstance(obj, _Tensor):
    return obj.materialize()
  if isinstance(obj, dict):
    return {k: _finish(v) for k, v in obj.items()}
  if isinstance(obj, _Namespace):
    return {k: _finish(v) for k, v in vars(obj).items()}
  if isinstance(obj, (list, tuple)):
    return type(obj)(_finish(v) for v in obj)
  if isinstance(obj, (_Storage, StorageType, _TensorClass)) or callable(obj):
    raise pickle.UnpicklingError(f'checkpoint holds a bare {obj!r}')
  return obj


def _read_record(
    zf: zipfile.ZipFile, record: str, nbytes: int, path: str
) -> bytes:
  """The nbytes of a storage record, its zip-declared size checked first.

  torch.save writes each storage as a record of exactly numel x itemsize
  bytes. The size in the zip directory is compared before anything is
  decompressed, so a record that is (or inflates to) far more than its
  tensors declare is refused without being read; at most nbytes are read.
  """
  declared = zf.getinfo(record).file_size
  if declared != nbytes:
    raise ValueError(
        f'{path}: storage record {record} is {declared} bytes, its tensors '
        f'declare a storage of {nbytes} bytes'
    )
  with zf.open(record) as f:
    raw = f.read(nbytes)
  if len(raw) != nbytes:
    raise ValueError(
        f'{path}: storage record {record} ended after {len(raw)} of its '
        f'{nbytes} bytes'
    )
  return raw


def _read_zip(path: str) -> Any:
  with zipfile.ZipFile(path) as zf:
    pkls = [n for n in zf.namelist() if n.endswith('/data.pkl')]
    if len(pkls) != 1:
      raise ValueError(
          f'{path}: expected one <archive>/data.pkl in a torch zip file, '
          f'found {pkls or "none"} among {zf.namelist()[:10]}'
      )
    prefix = pkls[0][: -len('data.pkl')]
    names = set(zf.namelist())
    order = 'little'
    if prefix + 'byteorder' in names:
      order = zf.read(prefix + 'byteorder').decode('ascii').strip()
    if order not in ('little', 'big'):
      raise ValueError(f'{path}: byteorder must be little or big, got {order}')
    storages = {}

    def load_storage(pid):
      _, storage_type, key, _, numel = pid[:5]
      if key not in storages:
        record = f'{prefix}data/{key}'
        if record not in names:
          raise ValueError(f'{path}: storage record {record} is missing')
        dtype = storage_type.dtype
        if order == 'big':
          dtype = dtype.newbyteorder('>')
        raw = _read_record(zf, record, numel * dtype.itemsize, path)
        storage = _Storage(storage_type, numel)
        storage.data = np.frombuffer(raw, dtype, count=numel)
        storages[key] = storage
      return storages[key]

    return _safe_load(io.BytesIO(zf.read(pkls[0])), load_storage)


def _read_legacy(path: str, stream: BinaryIO | None = None) -> Any:
  """The legacy file at path (or in `stream`, named path) -> its object."""
  opened = open(path, 'rb') if stream is None else contextlib.nullcontext(stream)
  with opened as f:
    magic = _safe_load(f)
    if magic != LEGACY_MAGIC:
      raise ValueError(
          f'{path}: not a torch file (expected a zip archive or the legacy '
          f'magic number {LEGACY_MAGIC:#x}, found {magic!r})'
      )
    protocol = _safe_load(f)
    if protocol != LEGACY_PROTOCOL:
      raise ValueError(
          f'{path}: legacy protocol version {protocol!r}, expected '
          f'{LEGACY_PROTOCOL}'
      )
    sys_info = _safe_load(f)
    if not isinstance(sys_info, dict):
      raise ValueError(f'{path}: legacy sys_info is a {type(sys_info)}')
    little = bool(sys_info.get('little_endian', True))
    start = f.tell()
    file_size = f.seek(0, io.SEEK_END)
    f.seek(start)
    roots = {}

    def load_storage(pid):
      _, storage_type, key, _, numel = pid[:5]
      view = pid[5] if len(pid) > 5 else None
      if key not in roots:
        roots[key] = _Storage(storage_type, numel)
      if view is None:
        return roots[key]
      # (view key, element offset, view size) into the root storage.
      if (
          not isinstance(view, tuple)
          or len(view) != 3
          or not all(isinstance(i, int) and i >= 0 for i in view[1:])
      ):
        raise pickle.UnpicklingError(f'bad storage view metadata {view!r}')
      _, offset, size = view
      storage = _Storage(storage_type, size)
      storage.base, storage.offset = roots[key], offset
      return storage

    obj = _safe_load(f, load_storage)
    keys = _safe_load(f)
    if not isinstance(keys, list):
      raise ValueError(f'{path}: expected a list of storage keys, got {keys}')
    for key in keys:
      if key not in roots:
        raise ValueError(f'{path}: storage {key!r} is not used by any tensor')
      storage = roots[key]
      count = f.read(8)
      if len(count) != 8:
        raise ValueError(f'{path}: truncated before storage {key!r}')
      (numel,) = struct.unpack('<q' if little else '>q', count)
      if numel != storage.numel:
        raise ValueError(
            f'{path}: storage {key!r} holds {numel} elements, its tensors '
            f'expect {storage.numel}'
        )
      dtype = storage.type.dtype.newbyteorder('<' if little else '>')
      nbytes = numel * dtype.itemsize
      # Checked before reading, so a corrupt count cannot allocate much.
      if f.tell() + nbytes > file_size:
        raise ValueError(
            f'{path}: storage {key!r} needs {nbytes} bytes, past the end of '
            'the file'
        )
      raw = f.read(nbytes)
      storage.data = np.frombuffer(raw, dtype)
    return obj


def load_torch_file(path: str | os.PathLike) -> dict[str, Any]:
  """A torch.save file -> nested dict of numpy arrays, never running code."""
  path = os.fspath(path)
  if zipfile.is_zipfile(path):
    obj = _read_zip(path)
  else:
    obj = _read_legacy(path)
  obj = _finish(obj)
  if not isinstance(obj, dict):
    raise ValueError(
        f'{path}: expected a dict (a state dict or a checkpoint), found a '
        f'{type(obj).__name__}'
    )
  return obj
