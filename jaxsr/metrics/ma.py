"""Ma et al. (2017) NRQM score and the PIRM 2018 Perceptual Index, numpy.

Ma, Yang, Yang, Yang, "Learning a no-reference quality metric for
single-image super-resolution", CVIU 2017 (`chaoma99/sr-metric`,
quality_predict.m): three feature groups (`jaxsr.metrics.ma_features`), one
regression forest per group, then score = [1, s1, s2, s3] @ linear. Higher
is better (about 0..10). PI = ((10 - Ma) + NIQE) / 2, lower is better
(Blau et al., `roimehrez/PIRM2018`: both scores on the BT.601 Y of
rgb2ycbcr, after shaving `scale` pixels off every side).

The model file cannot ship with jaxsr. Get either the original MATLAB
`model.mat` (saved by train_regression/train_RF_regression.m, at the root of
the `chaoma99/sr-metric` code, which the PIRM2018 toolbox asks users to
extract into its utils/ folder) or pyiqa's copy of it,
https://github.com/chaofengc/IQA-PyTorch/releases/download/v0.1-weights/NRQM_model.mat,
on a machine with internet access, and pass its path to `load_model`.
Its structure (MATLAB v5 .mat; v7.3/HDF5 is not read):
  model.linear: 4 x 1 double, [bias; w1; w2; w3] (robustfit output).
  model.rf: 3-element cell (3 x 1 or 1 x 3) of randomforest-matlab
    regRF_train structs, one per feature group (DCT 18, GSM 45, PCA 75
    features), each with fields (nrnodes x ntree arrays, one tree a column)
    lDau, rDau (1-based child node, 0 at a terminal node), upper (cut
    value), avnode (node mean), mbest (1-based cut variable), and optional
    nodestatus, nrnodes, ndtree, ntree, coef (bias correction
    coef(1) + coef(2) * prediction, applied when not all zero).
A tree sends x left when x[mbest] <= upper (randomForest's
predictRegTree); the forest predicts the mean of its trees' leaf means.
"""

import dataclasses
import os
import pathlib
from typing import Mapping, Sequence

import numpy as np
from scipy import io as sio

from jaxsr.data import color
from jaxsr.metrics import ma_features
from jaxsr.metrics.niqe import niqe as niqe_fn

NUM_FEATURES = (18, 45, 75)
_FOREST_FIELDS = ('lDau', 'rDau', 'upper', 'avnode', 'mbest')
WHERE_TO_GET = (
    'the Ma et al. model.mat (root of github.com/chaoma99/sr-metric) or '
    "pyiqa's NRQM_model.mat "
    '(https://github.com/chaofengc/IQA-PyTorch/releases/download/'
    'v0.1-weights/NRQM_model.mat), downloaded on a machine with internet '
    'access'
)


@dataclasses.dataclass(frozen=True)
class Forest:
  """One regression forest: (nodes, trees) arrays, 0-based children/vars."""

  left: np.ndarray  # int (nodes, trees): child index, -1 at a leaf.
  right: np.ndarray  # int (nodes, trees)
  cut_var: np.ndarray  # int (nodes, trees): feature index of the split.
  cut_value: np.ndarray  # float64 (nodes, trees)
  node_mean: np.ndarray  # float64 (nodes, trees)
  coef: tuple[float, float] | None = None  # bias correction a + b * y.


@dataclasses.dataclass(frozen=True)
class MaModel:
  """The three forests (DCT, GSM, PCA features) and the 4 linear weights."""

  forests: tuple[Forest, Forest, Forest]
  linear: np.ndarray  # float64 (4,): bias, then one weight per forest.


def make_forest(
    l_dau: np.ndarray,
    r_dau: np.ndarray,
    upper: np.ndarray,
    avnode: np.ndarray,
    mbest: np.ndarray,
    coef: Sequence[float] | None = None,
) -> Forest:
  """A Forest from regRF_train's 1-based (nrnodes, ntree) arrays.

  A 1-D array is taken as a single tree. Raises ValueError on mismatched
  shapes or child indices outside the tree.
  """
  arrays = [np.asarray(a) for a in (l_dau, r_dau, upper, avnode, mbest)]
  arrays = [a[:, None] if a.ndim == 1 else a for a in arrays]
  shapes = {a.shape for a in arrays}
  if len(shapes) != 1 or arrays[0].ndim != 2:
    raise ValueError(
        'forest arrays must share one (nrnodes, ntree) shape, found '
        + ', '.join(f'{n} {a.shape}' for n, a in zip(_FOREST_FIELDS, arrays))
    )
  left, right = (np.rint(a).astype(np.int64) - 1 for a in arrays[:2])
  nodes = left.shape[0]
  for name, child in (('lDau', left), ('rDau', right)):
    if child.min() < -1 or child.max() >= nodes:
      raise ValueError(
          f'{name} must hold node numbers in 0..{nodes}, found '
          f'{child.min() + 1}..{child.max() + 1}'
      )
  if np.any((left < 0) != (right < 0)):
    raise ValueError('lDau and rDau must be 0 at the same (terminal) nodes')
  coef_pair = None
  if coef is not None:
    c = np.asarray(coef, dtype=np.float64).ravel()
    if c.size and np.any(c != 0):
      if c.size != 2:
        raise ValueError(f'coef must hold 2 numbers, found {c.size}')
      coef_pair = (float(c[0]), float(c[1]))
  return Forest(
      left=left,
      right=right,
      cut_var=np.rint(arrays[4]).astype(np.int64) - 1,
      cut_value=arrays[2].astype(np.float64),
      node_mean=arrays[3].astype(np.float64),
      coef=coef_pair,
  )


def forest_predict(forest: Forest, features: np.ndarray) -> float:
  """Mean leaf value over all trees for one feature vector (n_features,).

  All trees descend together: at a split node x[cut_var] <= cut_value goes
  left, otherwise right, until a node without children.
  """
  x = np.asarray(features, dtype=np.float64).ravel()
  nodes, trees = forest.left.shape
  cols = np.arange(trees)
  k = np.zeros(trees, dtype=np.int64)
  for _ in range(nodes):
    active = forest.left[k, cols] >= 0
    if not active.any():
      break
    var = forest.cut_var[k, cols]
    if np.any(active & ((var < 0) | (var >= x.size))):
      bad = var[active & ((var < 0) | (var >= x.size))][0] + 1
      raise ValueError(
          f'forest splits on feature {bad}, but the vector has {x.size}'
      )
    go_left = x[np.where(active, var, 0)] <= forest.cut_value[k, cols]
    child = np.where(go_left, forest.left[k, cols], forest.right[k, cols])
    k = np.where(active, child, k)
  else:
    if np.any(forest.left[k, cols] >= 0):
      raise ValueError(f'a tree has a cycle: no leaf after {nodes} steps')
  pred = float(forest.node_mean[k, cols].mean())
  if forest.coef is not None:
    pred = forest.coef[0] + forest.coef[1] * pred
  return pred


def _struct_field(struct: np.ndarray, name: str, where: str) -> np.ndarray:
  """A field of a loadmat (1, 1) struct, matched without regard to case."""
  names = struct.dtype.names or ()
  match = [n for n in names if n.lower() == name.lower()]
  if not match:
    raise KeyError(f'{where} lacks field {name!r}; found {list(names)}')
  return struct[match[0]].ravel()[0]


def _unwrap(value: np.ndarray) -> np.ndarray:
  """A (1, 1) struct or object array's single element."""
  while isinstance(value, np.ndarray) and value.dtype == object:
    if value.size != 1:
      break
    value = value.ravel()[0]
  return value


def load_model(path: str | os.PathLike) -> MaModel:
  """Reads the Ma et al. model file (MATLAB v5 .mat; see module docstring)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(
        f'no Ma et al. (NRQM) model at {path}; get {WHERE_TO_GET}'
    )
  try:
    data = sio.loadmat(str(path))
  except NotImplementedError as e:  # v7.3 files are HDF5.
    raise ValueError(
        f'{path} is a MATLAB v7.3 (HDF5) file; re-save it in MATLAB with '
        "save(..., 'model', '-v7') or use pyiqa's NRQM_model.mat"
    ) from e
  except ValueError as e:
    raise ValueError(f'{path} is not a MATLAB .mat file: {e}') from e
  if 'model' not in data:
    found = [k for k in data if not k.startswith('__')]
    raise KeyError(f"{path} has no variable 'model'; found {found}")
  model = _unwrap(data['model'])
  linear = np.asarray(
      _struct_field(model, 'linear', 'model'), dtype=np.float64
  ).ravel()
  if linear.shape != (4,):
    raise ValueError(f'model.linear must be 4 x 1, found {linear.size} values')
  cells = np.asarray(_struct_field(model, 'rf', 'model'), dtype=object).ravel()
  if cells.size != 3:
    raise ValueError(f'model.rf must be a 3-element cell, found {cells.size}')
  forests = []
  for i, cell in enumerate(cells):
    rf = _unwrap(cell)
    where = f'model.rf{{{i + 1}}}'
    if not isinstance(rf, np.ndarray) or rf.dtype.names is None:
      raise ValueError(f'{where} must be a struct, found {type(rf).__name__}')
    arrays = [_struct_field(rf, f, where) for f in _FOREST_FIELDS]
    coef = None
    if any(n.lower() == 'coef' for n in rf.dtype.names):
      coef = _struct_field(rf, 'coef', where)
    forests.append(make_forest(*arrays, coef=coef))
  return MaModel(forests=tuple(forests), linear=linear)


def _to_plane(image: np.ndarray, convert_to: str) -> np.ndarray:
  """The rounded float64 H x W luminance (Y or gray) of an image in 0..255."""
  image = np.asarray(image)
  if convert_to not in ('y', 'gray'):
    raise ValueError(f"convert_to must be 'y' or 'gray', found {convert_to!r}")
  if not np.issubdtype(image.dtype, np.number) or np.iscomplexobj(image):
    raise TypeError(f'ma_score expects a real image, found {image.dtype}')
  if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
    raise ValueError(
        f'ma_score expects H x W x 3 RGB or gray H x W, found {image.shape}'
    )
  if image.size and (image.min() < 0 or image.max() > 255):
    raise ValueError(
        f'ma_score expects values in 0..255, found '
        f'[{image.min()}, {image.max()}]'
    )
  if image.ndim == 2:
    return np.floor(image.astype(np.float64) + 0.5)
  if convert_to == 'y':
    return color.rgb_to_y(image, rounded=True)
  return color.rgb_to_gray_luma(image, rounded=True)


def ma_plane(
    image: np.ndarray, crop_border: int = 0, convert_to: str = 'y'
) -> np.ndarray:
  """The H' x W' float64 plane (0..255) that Ma's features see."""
  if crop_border < 0:
    raise ValueError(f'crop_border must be >= 0, found {crop_border}')
  plane = _to_plane(image, convert_to)
  if crop_border:
    plane = plane[crop_border:-crop_border, crop_border:-crop_border]
  return plane


def ma_score_from_features(
    features: Sequence[np.ndarray], model: MaModel
) -> float:
  """[1, forest_1(f1), forest_2(f2), forest_3(f3)] @ model.linear."""
  if len(features) != 3:
    raise ValueError(f'expected 3 feature groups, found {len(features)}')
  preds = [forest_predict(f, x) for f, x in zip(model.forests, features)]
  return float(np.dot(np.concatenate([[1.0], preds]), model.linear))


def ma_score(
    image: np.ndarray,
    model: MaModel,
    crop_border: int = 0,
    convert_to: str = 'y',
) -> float:
  """Ma et al.'s NRQM (higher is better) of an H x W x 3 RGB image in 0..255.

  Args:
    image: uint8 (or float in 0..255) RGB H x W x 3, or gray H x W.
    model: from `load_model`.
    crop_border: pixels shaved off every side first (PIRM: the SR scale).
    convert_to: 'y' (rounded BT.601 Y of rgb2ycbcr, PIRM's convention and
      pyiqa's PI) or 'gray' (rounded 0.299 R + 0.587 G + 0.114 B, the Y of
      YIQ that pyiqa's stand-alone 'nrqm' uses).
  """
  plane = ma_plane(image, crop_border, convert_to)
  return ma_score_from_features(ma_features.ma_features(plane), model)


def perceptual_index(ma: float, niqe: float) -> float:
  """PIRM 2018 Perceptual Index ((10 - Ma) + NIQE) / 2; lower is better."""
  return ((10.0 - ma) + niqe) / 2.0


def pi(
    image: np.ndarray,
    ma_model: MaModel,
    niqe_params: Mapping[str, np.ndarray] | None = None,
    crop_border: int = 0,
) -> float:
  """PI of an H x W x 3 RGB image in 0..255: Ma and NIQE on the cropped Y.

  niqe_params=None loads the default NIQE pristine model
  (`jaxsr.metrics.niqe.load_pristine_params`).
  """
  ma = ma_score(image, ma_model, crop_border, convert_to='y')
  niqe_value = niqe_fn(image, crop_border, niqe_params, convert_to='y')
  return perceptual_index(ma, niqe_value)
