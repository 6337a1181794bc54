"""Keras VGG16/VGG19 `.h5` weights -> {convB_K: {'kernel': HWIO, 'bias'}}.

Reads the Keras application files (`vgg19_weights_tf_dim_ordering_tf_kernels
[_notop].h5`) and full-model files: a group per layer, `block{B}_conv{K}`,
at the root or under `model_weights` (or under `layers`, Keras 3), holding
the kernel and the bias as datasets at any depth, whatever their names
(`block1_conv1/kernel:0` in Keras 2, `block1_conv1_W_1:0` in older files,
`vars/0` in Keras 3): the 4-D one is the kernel, the 1-D one the bias.
Keras kernels are already (kh, kw, I, O). The weights are the Caffe VGG's
and expect Caffe inputs; see `jaxsr.models.vgg` for that convention and
`jaxsr.pretrained.vgg.vgg_from_keras` for folding it into conv1_1.
"""

import os

import h5py
import numpy as np

from jaxsr.models import vgg as vgg_model

_ROOTS = ('model_weights', 'layers', '')


def _keras_name(conv: str) -> str:
  """conv3_2 -> block3_conv2."""
  block, k = conv[4:].split('_')
  return f'block{block}_conv{k}'


def _datasets(group: h5py.Group) -> list[h5py.Dataset]:
  found = []

  def visit(_, obj):
    if isinstance(obj, h5py.Dataset):
      found.append(obj)

  group.visititems(visit)
  return found


def _find_root(f: h5py.File, first: str) -> h5py.Group:
  for root in _ROOTS:
    if root and root not in f:
      continue
    group = f[root] if root else f
    if isinstance(group, h5py.Group) and first in group:
      return group
  raise ValueError(
      f'{f.filename}: no Keras VGG layer group {first!r} at the root or '
      f'under {_ROOTS[:-1]}; top-level keys are {sorted(f.keys())[:10]}'
  )


def read_keras_vgg(
    path: str | os.PathLike, depth: int
) -> dict[str, dict[str, np.ndarray]]:
  """A Keras VGG{depth} .h5 -> {conv1_1: {'kernel': (3, 3, I, O), 'bias'}}."""
  convs = vgg_model.vgg_conv_names(depth)
  params = {}
  with h5py.File(path, 'r') as f:
    root = _find_root(f, _keras_name(convs[0]))
    fan_in = 3  # RGB (BGR) input to conv1_1.
    for conv in convs:
      name = _keras_name(conv)
      if name not in root:
        raise ValueError(
            f'{path}: layer {name} of VGG{depth} is missing (found '
            f'{sorted(k for k in root.keys() if k.startswith("block"))})'
        )
      arrays = [np.asarray(d, np.float32) for d in _datasets(root[name])]
      kernels = [a for a in arrays if a.ndim == 4]
      biases = [a for a in arrays if a.ndim == 1]
      if len(kernels) != 1 or len(biases) != 1:
        raise ValueError(
            f'{path}: expected one 4-D kernel and one 1-D bias in {name}, '
            f'found shapes {[a.shape for a in arrays]}'
        )
      kernel, bias = kernels[0], biases[0]
      width = vgg_model.conv_width(conv)
      if kernel.shape != (3, 3, fan_in, width) or bias.shape != (width,):
        raise ValueError(
            f'{path}: {name} has kernel {kernel.shape} and bias '
            f'{bias.shape}, expected (3, 3, {fan_in}, {width}) and '
            f'({width},) (Theano-ordered "th_dim_ordering" files are not '
            'supported; use the "tf_dim_ordering" ones)'
        )
      params[conv] = {'kernel': kernel, 'bias': bias}
      fan_in = width
  return params
