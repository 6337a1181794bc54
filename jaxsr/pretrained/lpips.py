"""LPIPS weights (official v0.1 .pth, torchvision backbones) -> LPIPS params.

Builds the tree that `jaxsr.metrics.lpips.lpips` takes:
{'net': backbone params, 'lin': {'lin0': (C0,), ...}}, float32.

  * The linear layers are the official `lpips/weights/v0.1/{alex,vgg}.pth`
    of the `lpips==0.1.4` wheel (legacy torch serialization): keys
    `lin{k}.model.1.weight` of shape (1, C_k, 1, 1) (`model.0` when the
    layer was built with `use_dropout=False`), each becoming (C_k,).
  * The AlexNet backbone is torchvision's `alexnet-owt-4df8aa71.pth`
    (`features.{n}.weight` OIHW and `.bias`, n = 0, 3, 6, 8, 10; the
    classifier is ignored); the VGG16 one goes through
    `jaxsr.pretrained.vgg.load_vgg` (torchvision .pth, Keras .h5 or .npz).

Either file may be 'random' (`jaxsr.pretrained.weights.resolve` logs a
warning): a random-initialised backbone, or random non-negative linear
weights; the resulting distances are not comparable to published numbers.
"""

import os
import pathlib
import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxsr.metrics import lpips as lpips_metric
from jaxsr.models import alexnet as alexnet_model
from jaxsr.pretrained import canonical
from jaxsr.pretrained import torch_pickle
from jaxsr.pretrained import torchvision
from jaxsr.pretrained import vgg as vgg_import
from jaxsr.pretrained import weights as weight_files

Params = dict[str, Any]

WHERE_TO_GET = {
    'lin': (
        'the official LPIPS v0.1 linear weights lpips/weights/v0.1/{net}.pth '
        'from the lpips==0.1.4 wheel on PyPI: `python -m jaxsr.assets '
        'lpips` writes them to ~/.cache/jaxsr/lpips/'
    ),
    'alex': (
        "torchvision's alexnet-owt-4df8aa71.pth (download on a machine with "
        'internet access from the torchvision model zoo, '
        'https://download.pytorch.org/models/alexnet-owt-4df8aa71.pth)'
    ),
    'vgg': weight_files.WHERE_TO_GET['vgg16'],
}

_LIN_KEY = re.compile(r'^lin(\d+)\.model\.([01])\.weight$')


def lin_from_state_dict(
    state_dict: Mapping[str, np.ndarray], net: str
) -> dict[str, np.ndarray]:
  """Official LPIPS state dict -> {'lin0': (C0,), ...} float32 for `net`."""
  lpips_metric.check_net(net)
  widths = lpips_metric.CHANNELS[net]
  found = {}
  for key, value in state_dict.items():
    match = _LIN_KEY.match(key)
    if match:
      found[int(match.group(1))] = np.asarray(value)
  if sorted(found) != list(range(len(widths))):
    raise ValueError(
        f'LPIPS-{net} weights: expected keys lin0 ... lin{len(widths) - 1}'
        f'.model.1.weight, found {sorted(state_dict)[:10]}'
    )
  lin = {}
  for k, width in enumerate(widths):
    weight = found[k]
    if weight.shape != (1, width, 1, 1):
      raise ValueError(
          f'LPIPS-{net} lin{k} weight: expected shape (1, {width}, 1, 1), '
          f'found {weight.shape} (a file for another net?)'
      )
    lin[f'lin{k}'] = weight.reshape(width).astype(np.float32)
  return lin


def load_lin(path: str | os.PathLike, net: str) -> dict[str, np.ndarray]:
  """Official LPIPS v0.1 `{net}.pth` -> {'lin0': (C0,), ...} float32."""
  try:
    return lin_from_state_dict(torch_pickle.load_torch_file(path), net)
  except ValueError as e:
    raise ValueError(f'{path}: {e}') from e


def _check_alexnet(params: Mapping[str, Any], source: str) -> None:
  """Raises unless params hold every AlexNet conv with torchvision's shapes."""
  convs = tuple(alexnet_model.CONVS)
  if set(params) != set(convs):
    raise ValueError(
        f'{source}: expected AlexNet convs {convs}, found {sorted(params)}'
    )
  for name, (width, k, _, _) in alexnet_model.CONVS.items():
    want = (k, k, alexnet_model.conv_fan_in(name), width)
    kernel, bias = params[name]['kernel'], params[name]['bias']
    if np.shape(kernel) != want or np.shape(bias) != (width,):
      raise ValueError(
          f'{source}: {name} has kernel {np.shape(kernel)} and bias '
          f'{np.shape(bias)}, expected {want} and ({width},)'
      )


def alexnet_from_torchvision(
    state_dict: Mapping[str, np.ndarray],
) -> dict[str, dict[str, np.ndarray]]:
  """torchvision alexnet state dict (`features.{n}.*`) -> AlexNet params."""
  found = torchvision.read_features(state_dict, 'AlexNet')
  params = torchvision.conv_params(found, alexnet_model.TORCHVISION_INDEX,
                                   'AlexNet')
  _check_alexnet(params, 'torchvision state dict')
  return params


def load_alexnet(path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
  """.pth/.pt (torchvision) or .npz (ours) -> AlexNet params conv1..conv5."""
  suffix = pathlib.Path(path).suffix.lower()
  if suffix in ('.pth', '.pt'):
    try:
      return alexnet_from_torchvision(torch_pickle.load_torch_file(path))
    except ValueError as e:
      raise ValueError(f'{path}: {e}') from e
  if suffix == '.npz':
    params = canonical.load_npz(path)
    if set(params) == {'params'}:
      params = params['params']
    _check_alexnet(params, os.fspath(path))
    return params
  raise ValueError(
      f'{path}: expected a .pth/.pt (torchvision) or .npz (jaxsr) AlexNet '
      f'weight file, found suffix {suffix!r}'
  )


def load_backbone(path: str | os.PathLike, net: str) -> Params:
  """A backbone weight file -> the params of `lpips.backbone(net)`."""
  lpips_metric.check_net(net)
  if net == 'alex':
    return load_alexnet(path)
  # All 13 convs of VGG16 (relu5_3 is the last tap).
  return vgg_import.load_vgg(path, 16)


def random_backbone(net: str, seed: int = 0) -> Params:
  """Random-initialised backbone params of `lpips.backbone(net)`."""
  lpips_metric.check_net(net)
  side = lpips_metric.MIN_SIZE[net]
  dummy = jnp.zeros((1, side, side, 3))
  # rbg keys and one compiled init: several times faster than eager on CPU.
  init = jax.jit(lambda key: lpips_metric.backbone(net).init(key, dummy))
  params = init(jax.random.key(seed, impl='rbg'))['params']
  return jax.tree.map(np.asarray, params)


def random_lin(net: str, seed: int = 0) -> dict[str, np.ndarray]:
  """Random non-negative linear weights, U(0, 2/C) so each layer is O(1)."""
  lpips_metric.check_net(net)
  rng = np.random.default_rng(seed)
  return {
      f'lin{k}': rng.uniform(0, 2.0 / c, c).astype(np.float32)
      for k, c in enumerate(lpips_metric.CHANNELS[net])
  }


def load_lpips(net: str, lin: str, backbone: str, seed: int = 0) -> Params:
  """(net, lin file or 'random', backbone file or 'random') -> LPIPS params."""
  lpips_metric.check_net(net)
  lin_path = weight_files.resolve(
      lin, f'LPIPS-{net} linear layers', WHERE_TO_GET['lin'].format(net=net)
  )
  net_path = weight_files.resolve(
      backbone, f'LPIPS-{net} backbone', WHERE_TO_GET[net]
  )
  if net_path is None:
    net_params = random_backbone(net, seed)
  else:
    net_params = load_backbone(net_path, net)
  if lin_path is None:
    return {'net': net_params, 'lin': random_lin(net, seed)}
  return {'net': net_params, 'lin': load_lin(lin_path, net)}
