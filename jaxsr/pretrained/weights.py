"""Resolves a weight-file config value: a path, or 'random' (-> None).

Feature networks (VGG for perceptual losses, LPIPS, DISTS) need pretrained
weights that cannot be downloaded on machines without internet access, so
configs name a local file; 'random' runs with a random-initialised network
(useful only for smoke tests) and says so loudly.
"""

import os
import pathlib

from absl import logging

RANDOM = 'random'

# Where to get the usual files, for error messages and config comments.
WHERE_TO_GET = {
    'vgg19': (
        "torchvision's vgg19-dcbb9e9d.pth (download on a machine with "
        'internet access from the torchvision model zoo, '
        'https://download.pytorch.org/models/vgg19-dcbb9e9d.pth) or Keras\' '
        'vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 (from '
        'https://storage.googleapis.com/tensorflow/keras-applications/vgg19/)'
    ),
    'vgg16': (
        "torchvision's vgg16-397923af.pth (download on a machine with "
        'internet access from the torchvision model zoo, '
        'https://download.pytorch.org/models/vgg16-397923af.pth) or Keras\' '
        'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 (from '
        'https://storage.googleapis.com/tensorflow/keras-applications/vgg16/)'
    ),
    'rrdbnet': (
        "BasicSR's ESRGAN_SRx4_DF2KOST_official-ff704c30.pth or ESRGAN's "
        'RRDB_ESRGAN_x4.pth / RRDB_PSNR_x4.pth (links in the BasicSR and '
        'xinntao/ESRGAN READMEs)'
    ),
}


def resolve(
    path_or_random: str, what: str, where_to_get: str
) -> pathlib.Path | None:
  """'random' -> None (with a warning); an existing file -> its Path."""
  if path_or_random == RANDOM:
    logging.warning(
        'Using a random-initialised %s: losses and metrics computed with it '
        'are not comparable to published numbers. Set a weight file (%s) '
        'for real runs.',
        what,
        where_to_get,
    )
    return None
  if not path_or_random:
    raise ValueError(
        f'no {what} weight file given; expected a path or {RANDOM!r} '
        f'(get {where_to_get})'
    )
  path = pathlib.Path(os.path.expanduser(path_or_random))
  if not path.is_file():
    raise FileNotFoundError(
        f'{what} weights: expected the file {path}, which does not exist. '
        f'Get {where_to_get}, and put it at that path (or pass {RANDOM!r} '
        'for a random-initialised network).'
    )
  return path
