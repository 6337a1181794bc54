"""The 32x32 CelebA DCGAN's generator.pt + discriminator.pt -> a GanPrior.

The files (../shared/data/face_prior/, see its README) are legacy torch.save
state dicts, read with the safe `torch_pickle` reader:
  generator.pt:     generator_deconv.{i}.0.weight (ConvTranspose2d (in, out,
                    kh, kw) for i = 0, 2, 3, 4; Conv2d (out, in, kh, kw) for
                    i = 1), generator_deconv.4.0.bias, and BatchNorm2d
                    generator_deconv.{i}.1.{weight, bias, running_mean,
                    running_var, num_batches_tracked} for i = 0..3;
  discriminator.pt: discriminator.{i}.0.weight (Conv2d) for i = 0..3,
                    discriminator.0.0.bias, BatchNorm2d discriminator.{i}.1.*
                    for i = 1..3, and discriminator.5.{weight (1, 1024), bias}
                    (the Linear after an NCHW flatten).
Every key and shape is checked against the README's architecture; unmapped
keys are an error too (num_batches_tracked is optional and unused).
"""

import os
import pathlib
import pickle
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxsr.models import dcgan
from jaxsr.models import gan_prior
from jaxsr.pretrained import torch_pickle

GENERATOR_FILE = 'generator.pt'
DISCRIMINATOR_FILE = 'discriminator.pt'
_BN_PARTS = ('weight', 'bias', 'running_mean', 'running_var')
_OPTIONAL = 'num_batches_tracked'


def _generator_shapes() -> dict[str, tuple[int, ...]]:
  """Torch key -> shape of the README's generator."""
  w0, w1, w2, w3 = dcgan.G_WIDTHS
  convs = [(dcgan.LATENT_DIM, w0, 4, 4), (w1, w0, 3, 3), (w1, w2, 4, 4),
           (w2, w3, 4, 4), (w3, 3, 4, 4)]
  shapes = {f'generator_deconv.{i}.0.weight': s for i, s in enumerate(convs)}
  shapes['generator_deconv.4.0.bias'] = (3,)
  for i, width in enumerate(dcgan.G_WIDTHS):
    for part in _BN_PARTS:
      shapes[f'generator_deconv.{i}.1.{part}'] = (width,)
  return shapes


def _discriminator_shapes() -> dict[str, tuple[int, ...]]:
  """Torch key -> shape of the README's discriminator."""
  shapes, cin = {}, 3
  for i, width in enumerate(dcgan.D_WIDTHS):
    shapes[f'discriminator.{i}.0.weight'] = (width, cin, 4, 4)
    if i == 0:
      shapes['discriminator.0.0.bias'] = (width,)
    else:
      for part in _BN_PARTS:
        shapes[f'discriminator.{i}.1.{part}'] = (width,)
    cin = width
  side = dcgan.RESOLUTION // 2 ** len(dcgan.D_WIDTHS)
  shapes['discriminator.5.weight'] = (1, cin * side * side)
  shapes['discriminator.5.bias'] = (1,)
  return shapes


def _read(path: pathlib.Path) -> dict[str, Any]:
  """A torch.save file -> {key: ndarray}, with a one-line error otherwise."""
  try:
    return torch_pickle.load_torch_file(path)
  except (pickle.UnpicklingError, EOFError, struct.error, ValueError) as err:
    raise ValueError(
        f'{path}: expected a torch.save state dict of the DCGAN face prior, '
        f'could not read it: {err}') from err


def _checked(state_dict: Mapping[str, Any], shapes: Mapping[str, tuple],
             source: str) -> dict[str, np.ndarray]:
  """The float32 arrays of `shapes`' keys; an error for any other content."""
  missing = [k for k in shapes if k not in state_dict]
  if missing:
    raise ValueError(
        f'{source}: missing key {missing[0]} ({len(missing)} missing of '
        f'{len(shapes)}; found keys {sorted(state_dict)[:4]}...)')
  extra = sorted(k for k in state_dict
                 if k not in shapes and not k.endswith('.' + _OPTIONAL))
  if extra:
    raise ValueError(
        f'{source}: unexpected keys {extra[:4]} (not in the DCGAN face prior)')
  out = {}
  for key, shape in shapes.items():
    value = np.asarray(state_dict[key])
    if value.shape != shape:
      raise ValueError(
          f'{source}: {key} has shape {value.shape}, expected {shape}')
    if not np.issubdtype(value.dtype, np.floating):
      raise ValueError(f'{source}: {key} has dtype {value.dtype}, expected '
                       'floating point')
    if not np.all(np.isfinite(value)):
      raise ValueError(f'{source}: {key} has non-finite values')
    out[key] = value.astype(np.float32)
  return out


def _bn(sd: Mapping[str, np.ndarray], prefix: str):
  """BatchNorm2d -> ({'scale', 'bias'}, {'mean', 'var'})."""
  return ({'scale': sd[f'{prefix}.weight'], 'bias': sd[f'{prefix}.bias']},
          {'mean': sd[f'{prefix}.running_mean'],
           'var': sd[f'{prefix}.running_var']})


def _conv(weight: np.ndarray) -> np.ndarray:
  """Conv2d (out, in, kh, kw) -> flax HWIO."""
  return np.ascontiguousarray(weight.transpose(2, 3, 1, 0))


def _conv_transpose(weight: np.ndarray) -> np.ndarray:
  """ConvTranspose2d (in, out, kh, kw) -> (kh, kw, in, out), no flip."""
  return np.ascontiguousarray(weight.transpose(2, 3, 0, 1))


def generator_from_state_dict(
    state_dict: Mapping[str, Any], source: str = 'generator state dict'
) -> tuple[dict[str, Any], dict[str, Any]]:
  """generator.pt's state dict -> dcgan.Generator (params, batch_stats)."""
  sd = _checked(state_dict, _generator_shapes(), source)
  params, stats = {}, {}
  for i in range(5):
    weight = sd[f'generator_deconv.{i}.0.weight']
    if i == 1:
      params['conv1'] = {'kernel': _conv(weight)}
    else:
      params[f'deconv{i}'] = {'kernel': _conv_transpose(weight)}
    if i < 4:
      params[f'bn{i}'], stats[f'bn{i}'] = _bn(sd, f'generator_deconv.{i}.1')
  params['deconv4']['bias'] = sd['generator_deconv.4.0.bias']
  return params, stats


def discriminator_from_state_dict(
    state_dict: Mapping[str, Any], source: str = 'discriminator state dict'
) -> dict[str, Any]:
  """discriminator.pt's state dict -> dcgan.Discriminator variables."""
  sd = _checked(state_dict, _discriminator_shapes(), source)
  params, stats = {}, {}
  for i in range(len(dcgan.D_WIDTHS)):
    params[f'conv{i}'] = {'kernel': _conv(sd[f'discriminator.{i}.0.weight'])}
    if i == 0:
      params['conv0']['bias'] = sd['discriminator.0.0.bias']
    else:
      params[f'bn{i}'], stats[f'bn{i}'] = _bn(sd, f'discriminator.{i}.1')
  # torch flattens (C, H, W); our features are flattened (H, W, C).
  weight = sd['discriminator.5.weight']
  channels = dcgan.D_WIDTHS[-1]
  side = dcgan.RESOLUTION // 2 ** len(dcgan.D_WIDTHS)
  kernel = weight.reshape(1, channels, side, side).transpose(2, 3, 1, 0)
  params['linear'] = {
      'kernel': np.ascontiguousarray(kernel.reshape(-1, 1)),
      'bias': sd['discriminator.5.bias'],
  }
  return {'params': params, 'batch_stats': stats}


def prior_paths(
    path: str | os.PathLike, discriminator: str | os.PathLike | None = None
) -> tuple[pathlib.Path, pathlib.Path]:
  """(generator.pt, discriminator.pt) from a folder, or G's and D's files."""
  path = pathlib.Path(os.path.expanduser(path))
  if path.is_dir():
    g_path = path / GENERATOR_FILE
    d_path = (path / DISCRIMINATOR_FILE if discriminator is None
              else pathlib.Path(os.path.expanduser(discriminator)))
  elif path.is_file():
    g_path = path
    if discriminator is None:
      raise FileNotFoundError(
          f'DCGAN prior {path} is a generator file only: the face method '
          f'needs the discriminator D too; pass the folder holding '
          f'{GENERATOR_FILE} and {DISCRIMINATOR_FILE}, or its D file')
    d_path = pathlib.Path(os.path.expanduser(discriminator))
  else:
    raise FileNotFoundError(
        f'DCGAN prior {path} does not exist: expected a folder holding '
        f'{GENERATOR_FILE} and {DISCRIMINATOR_FILE} (e.g. '
        '../shared/data/face_prior)')
  if not g_path.is_file():
    raise FileNotFoundError(
        f'DCGAN prior: no generator file {g_path} (expected {GENERATOR_FILE})')
  if not d_path.is_file():
    raise FileNotFoundError(
        f'DCGAN prior: no discriminator file {d_path}; the face method needs '
        'the prior\'s discriminator D (semantic loss, eq. 4) as well as G')
  return g_path, d_path


def load_prior(
    path: str | os.PathLike, discriminator: str | os.PathLike | None = None
) -> gan_prior.GanPrior:
  """The DCGAN face prior from its folder (or G's file and D's file).

  Args:
    path: a folder holding generator.pt and discriminator.pt, or the
      generator file itself (then `discriminator` is required).
    discriminator: D's file, if not `path`/discriminator.pt.

  Returns:
    `jaxsr.models.dcgan.prior(...)` on the imported float32 weights.
  """
  g_path, d_path = prior_paths(path, discriminator)
  g_params, g_buffers = generator_from_state_dict(_read(g_path), str(g_path))
  d_variables = discriminator_from_state_dict(_read(d_path), str(d_path))
  return dcgan.prior(g_params, g_buffers, d_variables)
