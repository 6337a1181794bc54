"""jaxsr's own weight format: a param tree <-> an .npz of '/'-joined keys.

No pickle either way: leaves are saved as plain arrays (bfloat16 widened to
float32, since .npy has no bfloat16 type) and loaded with
`allow_pickle=False`.
"""

import os
import zipfile
from typing import Any, Mapping

import numpy as np


def _flatten(tree: Mapping[str, Any], prefix: str, out: dict) -> None:
  for key, value in tree.items():
    if not isinstance(key, str) or not key or '/' in key:
      raise ValueError(
          'param names must be non-empty strings without "/", found '
          f'{key!r} under {prefix or "the root"!r}'
      )
    name = f'{prefix}/{key}' if prefix else key
    if isinstance(value, Mapping):
      _flatten(value, name, out)
    else:
      array = np.asarray(value)
      if array.dtype.kind == 'V' or array.dtype.name == 'bfloat16':
        array = array.astype(np.float32)
      if array.dtype == object:
        raise ValueError(f'{name} is not numeric: {type(value)}')
      out[name] = array


def flatten(tree: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """A nested dict of arrays -> {'a/b/kernel': ndarray}."""
  out = {}
  _flatten(tree, '', out)
  return out


def unflatten(flat: Mapping[str, np.ndarray]) -> dict[str, Any]:
  """{'a/b/kernel': ndarray} -> the nested dict."""
  tree: dict[str, Any] = {}
  for name, value in flat.items():
    *parents, leaf = name.split('/')
    node = tree
    for part in parents:
      node = node.setdefault(part, {})
      if not isinstance(node, dict):
        raise ValueError(f'{name} lies under the array {part!r}')
    if leaf in node:
      raise ValueError(f'{name} is both an array and a group')
    node[leaf] = value
  return tree


def save_npz(path: str | os.PathLike, params: Mapping[str, Any]) -> None:
  """Writes a param tree (nested dicts of arrays, e.g. JAX) to an .npz."""
  flat = flatten(params)
  # What np.savez writes, done by hand so that no key ('file',
  # 'allow_pickle') can collide with savez's own arguments.
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as zf:
    for name, array in flat.items():
      with zf.open(name + '.npy', 'w', force_zip64=True) as f:
        np.lib.format.write_array(f, array, allow_pickle=False)


def load_npz(path: str | os.PathLike) -> dict[str, Any]:
  """Reads an .npz of '/'-joined keys back into nested dicts of ndarrays."""
  with np.load(path, allow_pickle=False) as npz:
    return unflatten({name: npz[name] for name in npz.files})
