"""Copies a jaxsr Flax parameter tree into a twin module, by name.

A Flax leaf path (m1, m2, ..., leaf) is the torch name 'm1.m2....name':
  kernel (kh, kw, I, O) -> weight (O, I, kh, kw)   (transpose 3, 2, 0, 1)
  kernel (I, O)         -> weight (O, I)           (Dense: transpose)
  bias                  -> bias
  scale                 -> weight                  (BatchNorm affine)
and batch_stats mean / var -> running_mean / running_var. Every twin
parameter must be written exactly once, and every Flax leaf used.
"""

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn


def _flatten(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()):
  """{(k1, k2, ...): leaf} of a nested mapping (dict or FrozenDict)."""
  out = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      out.update(_flatten(value, prefix + (str(key),)))
    else:
      out[prefix + (str(key),)] = value
  return out


def flax_to_torch(params: Mapping[str, Any],
                  batch_stats: Mapping[str, Any] | None = None
                  ) -> dict[str, np.ndarray]:
  """Flax params (+ BN batch_stats) -> {torch name: float32 array, NCHW}."""
  out = {}
  for path, value in _flatten(params).items():
    *modules, leaf = path
    value = np.asarray(value, np.float32)
    if leaf == 'kernel' and value.ndim == 4:
      name, value = 'weight', value.transpose(3, 2, 0, 1)
    elif leaf == 'kernel' and value.ndim == 2:
      name, value = 'weight', value.T
    elif leaf in ('bias', 'scale'):
      name = 'bias' if leaf == 'bias' else 'weight'
    else:
      raise ValueError(f'unexpected Flax leaf {"/".join(path)} of shape '
                       f'{value.shape}; expected a 4-D or 2-D kernel, a bias '
                       'or a BN scale')
    out['.'.join(modules + [name])] = value
  for path, value in _flatten(batch_stats or {}).items():
    *modules, leaf = path
    names = {'mean': 'running_mean', 'var': 'running_var'}
    if leaf not in names:
      raise ValueError(f'unexpected batch_stats leaf {"/".join(path)}; '
                       'expected mean or var')
    out['.'.join(modules + [names[leaf]])] = np.asarray(value, np.float32)
  return out


def load_flax(module: nn.Module, params: Mapping[str, Any],
              batch_stats: Mapping[str, Any] | None = None) -> nn.Module:
  """Writes jaxsr params (and BN statistics) into the twin `module` in place."""
  tensors = flax_to_torch(params, batch_stats)
  own = dict(module.named_parameters())
  buffers = dict(module.named_buffers())
  missing = sorted(k for k in own if k not in tensors)
  unexpected = sorted(k for k in tensors if k not in own and k not in buffers)
  if missing or unexpected:
    raise ValueError(
        f'{type(module).__name__}: twin parameters without a Flax value '
        f'{missing[:6]}, Flax values without a twin parameter '
        f'{unexpected[:6]}')
  with torch.no_grad():
    for name, value in tensors.items():
      target = own[name] if name in own else buffers[name]
      if tuple(target.shape) != value.shape:
        raise ValueError(f'{type(module).__name__}.{name}: twin shape '
                         f'{tuple(target.shape)}, Flax value {value.shape}')
      target.copy_(torch.from_numpy(np.array(value, np.float32)))
  return module
