"""pytorch-fid / torchvision InceptionV3 .pth -> InceptionV3 Flax variables.

Reads pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (the FID
Inception, zip torch format) or torchvision's `inception_v3_google-*.pth`
(the ImageNet weights that SinGAN's SIFID uses) from a local file, without
torch. Both name a BasicConv2d `{module}.conv.weight` (O, I, kh, kw) and
`{module}.bn.{weight, bias, running_mean, running_var}`, where module is
`Conv2d_1a_3x3` or `Mixed_5b.branch5x5_2` etc.; these become
params[...]['conv']['kernel'] (kh, kw, I, O), params[...]['bn']['scale' /
'bias'] and batch_stats[...]['bn']['mean' / 'var'] of
`jaxsr.models.inception.InceptionV3`. The classifier (`fc.*`), torchvision's
auxiliary head (`AuxLogits.*`) and `num_batches_tracked` are not features
and are dropped. A prefix of the network (e.g. only Conv2d_*) is accepted:
the model then stops before the missing layers.
"""

import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxsr.pretrained import torch_pickle
from jaxsr.pretrained import weights as weight_files

Variables = dict[str, dict[str, Any]]

WHERE_TO_GET = {
    'inception_fid': (
        "pytorch-fid's pt_inception-2015-12-05-6726825d.pth (download on a "
        'machine with internet access from https://github.com/mseitzer/'
        'pytorch-fid/releases/download/fid_weights/'
        'pt_inception-2015-12-05-6726825d.pth; the FID Inception)'
    ),
    'inception_torchvision': (
        "torchvision's inception_v3_google-0cc3c7bd.pth (download on a "
        'machine with internet access from https://download.pytorch.org/'
        'models/inception_v3_google-0cc3c7bd.pth; the ImageNet weights that '
        "SinGAN's SIFID/inception.py loads with inception_v3(pretrained=True))"
    ),
}

# The modules of the network in order, as torchvision names them.
MODULES = (
    'Conv2d_1a_3x3', 'Conv2d_2a_3x3', 'Conv2d_2b_3x3', 'Conv2d_3b_1x1',
    'Conv2d_4a_3x3', 'Mixed_5b', 'Mixed_5c', 'Mixed_5d', 'Mixed_6a',
    'Mixed_6b', 'Mixed_6c', 'Mixed_6d', 'Mixed_6e', 'Mixed_7a', 'Mixed_7b',
    'Mixed_7c',
)  # pyformat: disable
_DROPPED = ('fc.', 'AuxLogits.')
_BN_LEAVES = {
    'weight': ('params', 'scale'),
    'bias': ('params', 'bias'),
    'running_mean': ('batch_stats', 'mean'),
    'running_var': ('batch_stats', 'var'),
}


def _insert(tree: dict[str, Any], path: list[str], value: np.ndarray):
  """tree[p0][p1]...[pn] = value, creating the dicts on the way."""
  for name in path[:-1]:
    tree = tree.setdefault(name, {})
  tree[path[-1]] = value


def _strip_prefix(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Drops a DataParallel `module.` prefix from the keys."""
  out = {}
  for key, value in state_dict.items():
    if key.startswith('module.'):
      key = key[len('module.'):]
    out[key] = value
  return out


def inception_from_torch(state_dict: Mapping[str, Any]) -> Variables:
  """torchvision-layout Inception3 state dict -> {'params', 'batch_stats'}."""
  state_dict = _strip_prefix(state_dict)
  variables: Variables = {'params': {}, 'batch_stats': {}}
  unknown = []
  seen = set()
  for key, value in state_dict.items():
    if key.startswith(_DROPPED) or key.endswith('num_batches_tracked'):
      continue
    parts = key.split('.')
    if parts[0] not in MODULES or len(parts) < 3:
      unknown.append(key)
      continue
    seen.add(parts[0])
    layer, leaf = parts[-2], parts[-1]
    value = np.asarray(value, np.float32)
    if layer == 'conv' and leaf == 'weight':
      if value.ndim != 4:
        raise ValueError(f'{key}: expected an OIHW conv weight, found shape '
                         f'{value.shape}')
      _insert(variables['params'], parts[:-1] + ['kernel'],
              np.ascontiguousarray(value.transpose(2, 3, 1, 0)))
    elif layer == 'bn' and leaf in _BN_LEAVES:
      collection, name = _BN_LEAVES[leaf]
      _insert(variables[collection], parts[:-1] + [name], value)
    else:
      unknown.append(key)
  if unknown:
    raise ValueError(
        'expected InceptionV3 keys {module}.conv.weight and {module}.bn.'
        '{weight,bias,running_mean,running_var} (modules Conv2d_1a_3x3 ... '
        f'Mixed_7c), found unexpected keys {unknown[:8]}'
    )
  present = [m in seen for m in MODULES]
  if not present[0] or not all(present[: sum(present)]):
    raise ValueError(
        f'expected InceptionV3 modules {MODULES[0]}, {MODULES[1]}, ... (a '
        f'prefix of {MODULES}), found {sorted(seen)}'
    )
  return variables


def variant_of(state_dict: Mapping[str, Any]) -> str | None:
  """'fid' (1008-class fc), 'torchvision' (1000 classes) or None (no fc)."""
  fc = _strip_prefix(state_dict).get('fc.weight')
  if fc is None:
    return None
  return {1008: 'fid', 1000: 'torchvision'}.get(np.shape(fc)[0])


def load_inception(path: str | os.PathLike) -> Variables:
  """A local InceptionV3 .pth/.pt file -> {'params', 'batch_stats'}, float32.

  Use 'fid' as the model variant for pytorch-fid's file and 'torchvision'
  for torchvision's (see `variant_of`).
  """
  try:
    return inception_from_torch(torch_pickle.load_torch_file(path))
  except ValueError as e:
    raise ValueError(f'{os.fspath(path)}: {e}') from e


def feature_variables(model: Any, weights: str) -> Variables:
  """Variables for an `InceptionV3` model: a weight file, or 'random'.

  'random' (a random-initialised network, logged as a warning by
  `weights.resolve`) is for smoke tests only; a file must be one of
  WHERE_TO_GET. Only the layers the model uses are returned.
  """
  dummy = jnp.zeros((1, 75, 75, 3))
  key = 'inception_fid' if model.variant == 'fid' else 'inception_torchvision'
  path = weight_files.resolve(weights, f'InceptionV3 ({model.variant})',
                              WHERE_TO_GET[key])
  if path is None:
    return jax.jit(model.init)(jax.random.key(0, impl='rbg'), dummy)
  shapes = jax.eval_shape(model.init, jax.random.key(0), dummy)
  loaded = load_inception(path)
  out = {}
  for collection, tree in shapes.items():
    missing = [m for m in tree if m not in loaded[collection]]
    if missing:
      raise ValueError(
          f'{path} lacks InceptionV3 modules {missing}, which outputs '
          f'{model.outputs} need'
      )
    out[collection] = {m: loaded[collection][m] for m in tree}

  def check(where, want, got):
    if tuple(want.shape) != np.shape(got):
      raise ValueError(
          f'{path}: InceptionV3 weight {jax.tree_util.keystr(where)} has shape '
          f'{np.shape(got)}, expected {tuple(want.shape)}'
      )
    return got

  return jax.tree_util.tree_map_with_path(check, shapes, out)
