"""DISTS weights.pt (+ a VGG16 file) -> jaxsr.losses.dists params, float32.

The official `dingkeyan93/DISTS: DISTS_pytorch/weights.pt` (shipped in the
pip `dists-pytorch==0.1` wheel, installed as `<sys.prefix>/weights.pt`) is a
legacy torch.save of {'alpha', 'beta'}, each (1, 1475, 1, 1) float32; they
become (1475,) arrays. It holds no VGG16: the official code takes
torchvision's ImageNet `vgg16` (vgg16-397923af.pth), which `load_params`
reads from a separate file (torchvision .pth, Keras .h5 or our .npz, through
`jaxsr.pretrained.vgg.load_vgg`). A state dict of the whole DISTS module
(what `DISTS.state_dict()` saves; IQA-PyTorch's `DISTS_weights-f5e65c96.pth`
is loaded into a module with the same names, but that file's contents are
not verified here) also has the convs, as `stage{s}.{n}.weight/bias` with
torchvision's `features` index n; from such a file the VGG16 is read too.
"""

import os
import pickle
import re
import struct
from typing import Any, Mapping

import jax
import numpy as np

from jaxsr.losses import dists as dists_loss
from jaxsr.models import dists_vgg
from jaxsr.pretrained import torch_pickle
from jaxsr.pretrained import vgg as vgg_import
from jaxsr.pretrained import weights as weight_files

WHERE_TO_GET = (
    "DISTS' weights.pt (`python -m jaxsr.assets dists` writes it to "
    '~/.cache/jaxsr/dists/ from the dists-pytorch==0.1 wheel on PyPI, '
    'installed as <sys.prefix>/weights.pt; or DISTS_pytorch/weights.pt in '
    'https://github.com/dingkeyan93/DISTS), or a whole-module DISTS state '
    "dict such as IQA-PyTorch's DISTS_weights-f5e65c96.pth"
)
# Take the VGG16 from the weights file (a whole-module state dict).
FROM_WEIGHTS = 'from_weights'

_STAGE_KEY = re.compile(r'^(.*?)stage(\d)\.(\d+)\.(weight|bias)$')


def read_state_dict(path: str | os.PathLike) -> dict[str, Any]:
  """A torch.save file -> {key: ndarray}, with a clear error for other files."""
  try:
    return torch_pickle.load_torch_file(path)
  except (pickle.UnpicklingError, EOFError, struct.error, ValueError) as err:
    raise ValueError(
        f'{os.fspath(path)}: expected a torch.save file of DISTS weights '
        f'(keys alpha and beta), could not read it: {err}'
    ) from err


def _find(state_dict: Mapping[str, Any], name: str, source: str) -> Any:
  """The one entry named `name` or ending in `.name` (a wrapper prefix)."""
  keys = [k for k in state_dict if k == name or k.endswith('.' + name)]
  if len(keys) != 1:
    raise ValueError(
        f'{source}: expected one DISTS {name!r} tensor, found '
        f'{len(keys)} ({keys}) among keys {sorted(state_dict)[:8]}'
    )
  return state_dict[keys[0]]


def alpha_beta_from_state_dict(
    state_dict: Mapping[str, Any], source: str = 'state dict'
) -> tuple[np.ndarray, np.ndarray]:
  """{'alpha', 'beta': (1, 1475, 1, 1)} -> alpha, beta (1475,) float32."""
  out = []
  for name in ('alpha', 'beta'):
    value = np.asarray(_find(state_dict, name, source))
    if value.size != dists_vgg.NUM_CHANNELS:
      raise ValueError(
          f'{source}: DISTS {name} has shape {value.shape}, expected (1, '
          f'{dists_vgg.NUM_CHANNELS}, 1, 1): one weight per channel of '
          f'{dists_vgg.STAGES} ({dists_vgg.STAGE_CHANNELS})'
      )
    value = value.astype(np.float32).reshape(-1)
    if not np.all(np.isfinite(value)):
      raise ValueError(f'{source}: DISTS {name} has non-finite values')
    out.append(value)
  return out[0], out[1]


def load_alpha_beta(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
  """DISTS weights.pt (or a module state dict) -> alpha, beta, (1475,) f32."""
  return alpha_beta_from_state_dict(read_state_dict(path), os.fspath(path))


def vgg16_from_state_dict(
    state_dict: Mapping[str, Any], source: str = 'state dict'
) -> vgg_import.Params | None:
  """`stage{s}.{n}.*` convs of a DISTS module -> VGG16 params (None if none)."""
  # The official stages keep torchvision's `features` indices as module names
  # (stage1.0, stage1.2, stage2.5, ..., stage5.28), so renaming them to
  # `features.{n}` makes a torchvision state dict.
  features = {}
  for key, value in state_dict.items():
    match = _STAGE_KEY.match(key)
    if match:
      _, _, index, kind = match.groups()
      features[f'features.{index}.{kind}'] = value
  if not features:
    return None
  try:
    return vgg_import.vgg_from_torchvision(features, 16)
  except ValueError as err:
    raise ValueError(
        f'{source}: its DISTS VGG16 convs are unusable: {err}'
    ) from err


def load_params(
    weights: str, vgg16: str = FROM_WEIGHTS
) -> dists_loss.DistsParams:
  """DISTS params {'vgg', 'alpha', 'beta'} from local files or 'random'.

  Args:
    weights: DISTS' weights.pt (alpha, beta) or a whole-module state dict; or
      'random' for the official untrained init N(0.1, 0.01) (warned).
    vgg16: the ImageNet VGG16 (torchvision vgg16-397923af.pth, Keras .h5 or
      a jaxsr .npz); FROM_WEIGHTS to read it from `weights` (a whole-module
      state dict); or 'random' for a random-initialised backbone (warned).

  Returns:
    Params for `jaxsr.losses.dists.dists`: VGG16 conv1_1 ... conv5_3 and
    alpha, beta (1475,), as numpy float32 arrays.
  """
  path = weight_files.resolve(weights, 'DISTS alpha/beta', WHERE_TO_GET)
  state_dict = None
  if path is None:
    rng = np.random.default_rng(0)
    alpha, beta = rng.normal(0.1, 0.01, (2, dists_vgg.NUM_CHANNELS))
  else:
    state_dict = read_state_dict(path)
    alpha, beta = alpha_beta_from_state_dict(state_dict, os.fspath(path))

  if vgg16 == FROM_WEIGHTS:
    found = None
    if state_dict is not None:
      found = vgg16_from_state_dict(state_dict, os.fspath(path))
    if found is None:
      raise ValueError(
          f'DISTS weights {weights!r} hold no VGG16 (no stage{{s}}.{{n}}.'
          'weight keys; the official weights.pt has only alpha and beta). '
          'Pass vgg16= the path of '
          + weight_files.WHERE_TO_GET['vgg16']
          + f', or vgg16={weight_files.RANDOM!r}'
      )
    vgg_params = found
  else:
    vgg_path = weight_files.resolve(
        vgg16, 'VGG16 (DISTS backbone)', weight_files.WHERE_TO_GET['vgg16']
    )
    if vgg_path is None:
      vgg_params = dists_loss.init_params(jax.random.key(0, impl='rbg'))['vgg']
    else:
      vgg_params = vgg_import.load_vgg(vgg_path, 16)
  return dists_loss.make_params(vgg_params, alpha, beta)
