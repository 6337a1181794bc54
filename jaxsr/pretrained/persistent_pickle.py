"""Reads NVIDIA stylegan2-ada / stylegan3 network pickles without running them.

Those `.pkl` files (`pickle.dump` of {'G', 'D', 'G_ema', 'augment_pipe',
'training_set_kwargs', ...}) pickle every network with
`torch_utils.persistence`: an object reduces to
`torch_utils.persistence._reconstruct_persistent_obj(meta)`, meta = {'type':
'class', 'version', 'module_src': the source of the module defining the
class, 'class_name', 'state': the torch module's __dict__}. Unpickling the
normal way `exec`s module_src. Here that function is a stand-in that keeps
class_name and state and never looks at module_src; tensors are the usual
`torch._utils._rebuild_tensor_v2` / `_rebuild_parameter` (torch_pickle's
stand-ins), each storage `torch.storage._load_from_bytes(bytes)` of a legacy
torch.save stream, read by torch_pickle's legacy reader. The few other
globals such a state holds (dnnlib.EasyDict option dicts, numpy scalars such
as weight_gain, sets, OrderedDicts) map to inert stand-ins; anything else
raises pickle.UnpicklingError, naming the global.

TensorFlow-era pickles (dnnlib.tflib.network.Network) are refused with a
ValueError saying how to convert them.
"""

import io
import os
import pickle
from typing import Any

import numpy as np

from jaxsr.pretrained import torch_pickle

# pylint: disable=protected-access


class Persistent:
  """A persistent network as pickled: its class name and module state."""

  def __init__(self, class_name: str, state: dict):
    self.class_name = class_name
    self.state = state

  def __repr__(self):
    return f'Persistent({self.class_name})'


def _reconstruct_persistent_obj(meta):
  """Stand-in for torch_utils.persistence._reconstruct_persistent_obj."""
  if (not isinstance(meta, dict) or meta.get('type') != 'class'
      or not isinstance(meta.get('class_name'), str)
      or not isinstance(meta.get('state'), dict)):
    raise pickle.UnpicklingError(
        'expected persistence meta {type: class, class_name, state, ...}, '
        f'found {type(meta).__name__} with keys '
        f'{sorted(meta) if isinstance(meta, dict) else None}')
  return Persistent(meta['class_name'], meta['state'])  # module_src unused.


def _load_from_bytes(data):
  """Stand-in for torch.storage._load_from_bytes: a legacy-saved storage."""
  if not isinstance(data, bytes):
    raise pickle.UnpicklingError(f'storage bytes are a {type(data)}')
  obj = torch_pickle._read_legacy('<storage>', io.BytesIO(data))
  if not isinstance(obj, torch_pickle._Storage):
    raise pickle.UnpicklingError(f'storage bytes hold a {type(obj)}')
  return obj


class _EasyDict(dict):
  """Stand-in for dnnlib.util.EasyDict (option dicts): a plain dict."""

  def __setstate__(self, state):
    del state  # An EasyDict keeps its items as dict items, set by SETITEMS.


class _Opaque:
  """A pickled value of no use here (e.g. a numpy scalar of odd dtype)."""


class _NumpyDtype:
  """Stand-in for numpy.dtype: the type code and byte order, nothing run."""

  def __init__(self, code, align=False, copy=False):
    del align, copy
    self.code = code if isinstance(code, str) else ''
    self.order = '='

  def __setstate__(self, state):
    if isinstance(state, tuple) and len(state) > 1 and state[1] in '<>|=':
      self.order = state[1]


_NUMERIC = {f'{k}{n}' for k in 'iuf' for n in (1, 2, 4, 8)} | {'b1'}


def _numpy_scalar(dtype, data=None):
  """Stand-in for numpy's scalar reconstructor: plain numbers only."""
  if (isinstance(dtype, _NumpyDtype) and dtype.code in _NUMERIC
      and isinstance(data, bytes)):
    order = '<' if dtype.order == '=' else dtype.order
    np_dtype = np.dtype(('' if order == '|' else order) + dtype.code)
    if len(data) == np_dtype.itemsize:
      return np.frombuffer(data, np_dtype)[0].item()
  return _Opaque()


_GLOBALS = {
    ('torch_utils.persistence', '_reconstruct_persistent_obj'):
        _reconstruct_persistent_obj,
    ('torch.storage', '_load_from_bytes'): _load_from_bytes,
    ('dnnlib.util', 'EasyDict'): _EasyDict,
    ('dnnlib', 'EasyDict'): _EasyDict,
    ('numpy', 'dtype'): _NumpyDtype,
    ('numpy.core.multiarray', 'scalar'): _numpy_scalar,
    ('numpy._core.multiarray', 'scalar'): _numpy_scalar,
    ('builtins', 'set'): set,
    ('__builtin__', 'set'): set,
    ('builtins', 'frozenset'): frozenset,
}


class _Unpickler(torch_pickle._SafeUnpickler):
  """torch_pickle's safe globals plus the persistence stand-ins above."""

  def find_class(self, module, name):
    if (module, name) in _GLOBALS:
      return _GLOBALS[module, name]
    if module.startswith('dnnlib.tflib'):
      raise ValueError(
          'this is a TensorFlow StyleGAN2 pickle (dnnlib.tflib); convert it '
          "first, e.g. with rosinality's convert_weight.py (gives a .pt with "
          "g_ema, and d with --disc) or stylegan2-ada-pytorch's legacy.py")
    return super().find_class(module, name)


def _state_dict(net: Persistent, prefix: str = '') -> dict[str, Any]:
  """A Persistent torch module -> {dotted name: tensor stand-in}."""
  out = {}
  for group in ('_parameters', '_buffers'):
    for name, value in (net.state.get(group) or {}).items():
      if value is not None:
        out[prefix + name] = value
  for name, child in (net.state.get('_modules') or {}).items():
    if isinstance(child, Persistent):
      out.update(_state_dict(child, f'{prefix}{name}.'))
    elif child is not None:
      raise ValueError(
          f'{prefix}{name} is a {type(child).__name__}, not a persistent '
          'network; only stylegan2-ada / stylegan3 networks are read')
  return out


def _attrs(net: Persistent, prefix: str = '') -> dict[str, Any]:
  """Plain number / None / str attributes of every module, dotted names."""
  out = {}
  for name, value in net.state.items():
    if value is None or isinstance(value, (bool, int, float, str)):
      out[prefix + name] = value
  for name, child in (net.state.get('_modules') or {}).items():
    if isinstance(child, Persistent):
      out.update(_attrs(child, f'{prefix}{name}.'))
  return out


def load_network_pickle(path: str | os.PathLike) -> dict[str, Any]:
  """An NVIDIA network .pkl -> {'G_ema': {state_dict, attrs}, ...}.

  Returns, for each of G, D, G_ema present as a network: {'class_name',
  'state_dict': {name: float32-or-native ndarray}, 'attrs': {dotted name:
  number/str/None}}.
  """
  path = os.fspath(path)
  with open(path, 'rb') as f:
    try:
      data = _Unpickler(f).load()
    except (pickle.UnpicklingError, EOFError) as e:
      raise ValueError(f'{path}: cannot read it as a network pickle: {e}'
                       ) from None
  if not isinstance(data, dict):
    raise ValueError(
        f'{path}: expected a dict of networks (G, D, G_ema), found a '
        f'{type(data).__name__}')
  nets = {}
  for key in ('G', 'D', 'G_ema'):
    net = data.get(key)
    if isinstance(net, Persistent):
      nets[key] = dict(class_name=net.class_name,
                       state_dict=torch_pickle._finish(_state_dict(net)),
                       attrs=_attrs(net))
  if not nets:
    raise ValueError(
        f'{path}: no G, D or G_ema network in the pickle (keys '
        f'{sorted(map(str, data))[:10]})')
  return nets
