"""VGG16/19 weights (torchvision .pth, Keras .h5, our .npz) -> Flax params.

The result is the param tree of `jaxsr.models.vgg.VGG(depth)`:
{'conv1_1': {'kernel': (3, 3, I, O), 'bias': (O,)}, ...}, float32, for the
default ImageNet input normalization. torchvision's `features.{n}.weight`
(O, I, kh, kw) becomes `kernel` by `w.transpose(2, 3, 1, 0)`; the index n of
each conv is `jaxsr.models.vgg.torchvision_index(depth)`.

Keras' weights expect Caffe inputs (BGR in [0, 255] minus a mean); by
default their conv1_1 is rewritten to take ImageNet-normalized RGB, which is
exact except on the one-pixel border of conv1_1's output, where zero padding
means a different colour in the two conventions (use
`input_norm='caffe'` with `VGG(input_norm='caffe')` for exact Keras
features). The first convs of VGG16 are also the trunk of the LSR encoder
(`jaxsr.models.encoders.LSREncoder`), with the same names.
"""

import os
import pathlib
from typing import Any, Mapping

import numpy as np

from jaxsr.models import encoders
from jaxsr.models import vgg as vgg_model
from jaxsr.pretrained import canonical
from jaxsr.pretrained import keras_h5
from jaxsr.pretrained import torch_pickle
from jaxsr.pretrained import torchvision

Params = dict[str, dict[str, np.ndarray]]



def _check_params(params: Mapping[str, Any], depth: int, source: str) -> None:
  """Raises unless params are VGG{depth}'s convs conv1_1 ... some cut."""
  convs = vgg_model.vgg_conv_names(depth)
  names = convs[: len(params)]
  if not params or set(params) != set(names):
    raise ValueError(
        f'{source}: expected VGG{depth} convs {convs[0]}, {convs[1]}, ... '
        f'(a prefix of {convs}), found {sorted(params)[:8]}'
    )
  fan_in = 3
  for name in names:
    width = vgg_model.conv_width(name)
    kernel, bias = params[name]['kernel'], params[name]['bias']
    if kernel.shape != (3, 3, fan_in, width) or bias.shape != (width,):
      raise ValueError(
          f'{source}: {name} has kernel {kernel.shape} and bias '
          f'{bias.shape}, expected (3, 3, {fan_in}, {width}) and ({width},)'
      )
    fan_in = width


def vgg_from_torchvision(
    state_dict: Mapping[str, np.ndarray], depth: int
) -> Params:
  """torchvision vgg{depth} state dict (`features.{n}.*`) -> VGG params."""
  found = torchvision.read_features(state_dict, 'VGG')
  if any(kind.startswith('running') for _, kind in found):
    raise ValueError('batch-norm VGG (vgg*_bn) weights are not supported')
  params = torchvision.conv_params(
      found, vgg_model.torchvision_index(depth), f'VGG{depth}',
      ' (VGG16 and VGG19 differ from index 16 on)')
  _check_params(params, depth, 'torchvision state dict')
  return params


def fold_caffe_input(params: Params) -> Params:
  """Rewrites conv1_1 from Caffe inputs to ImageNet-normalized RGB inputs."""
  # A Caffe input is x_bgr[2 - c] = 255 * rgb[c] - caffe_mean_rgb[c], and
  # rgb[c] = std[c] * x[c] + mean[c] for our normalized x; so each RGB
  # channel's weights scale by 255 * std[c] (and swap to RGB order) and the
  # constant 255 * mean[c] - caffe_mean_rgb[c] moves into the bias.
  kernel = np.asarray(params['conv1_1']['kernel'], np.float64)[:, :, ::-1]
  bias = np.asarray(params['conv1_1']['bias'], np.float64)
  std = np.asarray(vgg_model.IMAGENET_STD)
  shift = 255.0 * np.asarray(vgg_model.IMAGENET_MEAN) - np.asarray(
      vgg_model.CAFFE_MEAN_BGR[::-1]
  )
  folded = dict(params)
  folded['conv1_1'] = {
      'kernel': (kernel * (255.0 * std)[:, None]).astype(np.float32),
      'bias': (bias + np.einsum('hwio,i->o', kernel, shift)).astype(
          np.float32
      ),
  }
  return folded


def vgg_from_keras(
    h5path: str | os.PathLike, depth: int, input_norm: str = 'imagenet'
) -> Params:
  """Keras VGG{depth} .h5 -> VGG params for `VGG(input_norm=input_norm)`."""
  if input_norm not in vgg_model.INPUT_NORMS:
    raise ValueError(
        f'input_norm must be one of {vgg_model.INPUT_NORMS}, got '
        f'{input_norm!r}'
    )
  params = keras_h5.read_keras_vgg(h5path, depth)
  _check_params(params, depth, os.fspath(h5path))
  return fold_caffe_input(params) if input_norm == 'imagenet' else params


def load_vgg(path: str | os.PathLike, depth: int) -> Params:
  """.pth/.pt (torchvision), .h5 (Keras) or .npz (ours) -> VGG params."""
  suffix = pathlib.Path(path).suffix.lower()
  if suffix in ('.pth', '.pt'):
    return vgg_from_torchvision(torch_pickle.load_torch_file(path), depth)
  if suffix == '.h5':
    return vgg_from_keras(path, depth)
  if suffix == '.npz':
    params = canonical.load_npz(path)
    if set(params) == {'params'}:
      params = params['params']
    _check_params(params, depth, os.fspath(path))
    return params
  raise ValueError(
      f'{path}: expected a .pth/.pt (torchvision), .h5 (Keras) or .npz '
      f'(jaxsr) VGG weight file, found suffix {suffix!r}'
  )


def lsr_encoder_trunk(vgg16_params: Params, cut: str = 'conv4_3') -> Params:
  """VGG16 params -> the LSR encoder trunk's params conv1_1 ... cut."""
  trunk = [n for n in encoders.vgg16_trunk(cut) if n.startswith('conv')]
  missing = [n for n in trunk if n not in vgg16_params]
  if missing:
    raise ValueError(f'VGG16 params lack {missing} for the trunk up to {cut}')
  return {n: dict(vgg16_params[n]) for n in trunk}


def with_vgg16_trunk(
    encoder_params: Mapping[str, Any], vgg16_params: Params
) -> dict[str, Any]:
  """LSREncoder params with their conv1_1 ... trunk taken from VGG16 params."""
  out = dict(encoder_params)
  trunk = [n for n in encoders.VGG16_CONVS if n in encoder_params]
  for name in trunk:
    if name not in vgg16_params:
      raise ValueError(f'VGG16 params lack {name}, which the encoder has')
    for leaf in ('kernel', 'bias'):
      want = np.shape(encoder_params[name][leaf])
      got = np.shape(vgg16_params[name][leaf])
      if want != got:
        raise ValueError(
            f'encoder {name}/{leaf} is {want}, the VGG16 weight is {got}'
        )
    out[name] = {k: np.asarray(v) for k, v in vgg16_params[name].items()}
  return out


def feature_params(feat: vgg_model.VGG, weights: str) -> Params:
  """Frozen VGG19 params for a loss network `feat`, for exactly its layers.

  `weights` is a .pth/.h5/.npz file, or 'random' (a random-initialised
  network, logged as a warning by `weights.resolve`).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jaxsr.pretrained import weights as weight_files  # pylint: disable=g-import-not-at-top
  dummy = jnp.zeros((1, 32, 32, 3))
  path = weight_files.resolve(weights, f'VGG{feat.depth} (loss network)',
                              weight_files.WHERE_TO_GET[f'vgg{feat.depth}'])
  if path is None:
    return feat.init(jax.random.key(0, impl='rbg'), dummy)['params']
  shapes = jax.eval_shape(feat.init, jax.random.key(0), dummy)['params']
  loaded = load_vgg(path, feat.depth)
  return {name: loaded[name] for name in shapes}
