"""The embedded demo set: natural photos shipped inside the scikit-image,
scikit-learn and matplotlib wheels, so the demo needs no download."""

import importlib
import os

import numpy as np

from jaxsr.data import io

# (name, package, path inside the package). Read straight from the installed
# files: skimage.data's loaders may try to download, these never do.
_FILES = {
    'astronaut': ('skimage', 'data/astronaut.png'),
    'coffee': ('skimage', 'data/coffee.png'),
    'chelsea': ('skimage', 'data/chelsea.png'),
    'rocket': ('skimage', 'data/rocket.jpg'),
    'hubble_deep_field': ('skimage', 'data/hubble_deep_field.jpg'),
    'immunohistochemistry': ('skimage', 'data/ihc.png'),
    'retina': ('skimage', 'data/retina.jpg'),
    'stereo_motorcycle': ('skimage', 'data/motorcycle_left.png'),
    'china': ('sklearn', 'datasets/images/china.jpg'),
    'flower': ('sklearn', 'datasets/images/flower.jpg'),
    'grace_hopper': ('matplotlib', 'mpl-data/sample_data/grace_hopper.jpg'),
}

# Held out for validation: a cat, a portrait and an everyday scene.
VAL = ('chelsea', 'grace_hopper', 'coffee')
TRAIN = tuple(n for n in _FILES if n not in VAL)


def path(name: str) -> str:
  """Where the installed wheel keeps the demo image `name`."""
  if name not in _FILES:
    raise ValueError(f'unknown demo image {name!r}; expected one of '
                     f'{sorted(_FILES)}')
  package, rel = _FILES[name]
  try:
    module = importlib.import_module(package)
  except ImportError as e:
    raise FileNotFoundError(
        f'demo image {name!r} ships with {package}, which is not installed: '
        'pip install -e . installs it') from e
  return os.path.join(os.path.dirname(module.__file__), rel)


def load(names) -> list[tuple[str, np.ndarray]]:
  """[(name, uint8 HxWx3 RGB)] for the named demo images."""
  return [(n, io.read_image(path(n))) for n in names]
