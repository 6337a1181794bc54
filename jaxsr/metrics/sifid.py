"""SIFID (SinGAN): Fréchet distance of two images' per-position Inception stats.

SIFID (Shaham et al., ICCV 2019; `tamarott/SinGAN` `SIFID/sifid_score.py`)
fits a Gaussian to the C-channel Inception feature vectors at every spatial
position of one real image and of one fake image, and reports the Fréchet
distance between the two Gaussians (smaller is closer; paper 004 Tables 1-2
list it in units of 1e-5). The official script, pinned here:
  * reads each image as float32 / 255 (`matplotlib.pyplot.imread` on the
    JPEG files the README asks for; PNGs, which that imread returns in
    [0, 1], would be divided twice there), keeps RGB, does NOT resize
    (`resize_input=False`) and scales to [-1, 1] (`2 x - 1`);
  * runs torchvision's ImageNet `inception_v3(pretrained=True)` layer by
    layer (so torchvision's own `transform_input` is not applied);
  * uses dims=64, its block 0 = Conv2d_1a, 2a, 2b: the 64-channel
    Conv2d_2b_3x3 output BEFORE the first max-pool (our 'conv2d_2b'). The
    paper says "just before the second pooling layer", which is
    Conv2d_4a_3x3's 192 channels ('conv2d_4a'; tamarott/SinGAN#155 and the
    unmerged PR #158 point out the mismatch). pytorch-fid's 64-dim block 0
    is after the first max-pool ('block0');
  * mu = mean over positions, sigma = np.cov(rowvar=False) (ddof 1), and
    pytorch-fid's `calculate_frechet_distance` (below).
Blocks up to 'block1' are the same network in pytorch-fid's FID Inception
and torchvision's, so `variant` only matters for 'block2' / 'block3'; the
numbers depend on which weights are loaded (see jaxsr.pretrained.inception).
"""

import functools
from typing import Any
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from scipy import linalg

from jaxsr.models import inception

# The official SIFID layer (dims=64 in sifid_score.py's __main__).
SIFID_LAYER = 'conv2d_2b'


def frechet_distance(
    mu1: np.ndarray,
    sigma1: np.ndarray,
    mu2: np.ndarray,
    sigma2: np.ndarray,
    eps: float = 1e-6,
) -> float:
  """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)) of two Gaussians, float64.

  mu: (C,), sigma: (C, C). pytorch-fid's numerics: scipy's sqrtm of the
  product; if that is not finite, eps is added to both diagonals and it is
  retried; an imaginary part is dropped if the diagonal's is below 1e-3,
  otherwise it is an error.
  """
  mu1 = np.atleast_1d(np.asarray(mu1, np.float64))
  mu2 = np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape or mu1.ndim != 1:
    raise ValueError(
        f'frechet_distance expects two (C,) means, found {mu1.shape} and '
        f'{mu2.shape}'
    )
  dim = mu1.shape[0]
  for name, sigma in (('sigma1', sigma1), ('sigma2', sigma2)):
    if sigma.shape != (dim, dim):
      raise ValueError(
          f'frechet_distance expects {name} of shape ({dim}, {dim}) to match '
          f'the means, found {sigma.shape}'
      )
  diff = mu1 - mu2
  with warnings.catch_warnings():
    # A near-singular product is expected (and handled below), as in
    # pytorch-fid, which passes disp=False (deprecated in SciPy 1.16).
    warnings.simplefilter('ignore', linalg.LinAlgWarning)
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
      offset = np.eye(dim) * eps
      covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
  if np.iscomplexobj(covmean):
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ValueError(
          'frechet_distance: sqrtm(sigma1 sigma2) has an imaginary part of '
          f'{np.max(np.abs(covmean.imag)):.3g}, expected below 1e-3 on the '
          'diagonal (are the covariances positive semi-definite?)'
      )
    covmean = covmean.real
  return float(
      diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2)
      - 2.0 * np.trace(covmean)
  )


def activation_statistics(
    features: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
  """(..., C) feature vectors -> mean (C,) and covariance (C, C), float64.

  Every leading index is one sample (positions and/or images); the
  covariance is unbiased (ddof=1), as np.cov in pytorch-fid.
  """
  features = np.asarray(features, np.float64)
  if features.ndim < 2:
    raise ValueError(
        f'activation_statistics expects (..., C) features, found shape '
        f'{features.shape}'
    )
  samples = features.reshape(-1, features.shape[-1])
  if samples.shape[0] < 2:
    raise ValueError(
        'activation_statistics needs at least 2 feature vectors for a '
        f'covariance, found {samples.shape[0]} (features {features.shape})'
    )
  return samples.mean(axis=0), np.cov(samples, rowvar=False)


def to_unit_range(image: np.ndarray, name: str = 'image') -> np.ndarray:
  """uint8 (x / 255) or float in [0, 1] (..., H, W, 3) -> float32 [0, 1]."""
  image = np.asarray(image)
  if image.ndim not in (3, 4) or image.shape[-1] != 3:
    raise ValueError(
        f'{name}: expected an H x W x 3 (or N x H x W x 3) RGB image, found '
        f'shape {image.shape}'
    )
  if image.dtype == np.uint8:
    return image.astype(np.float32) / np.float32(255.0)
  if not np.issubdtype(image.dtype, np.floating):
    raise TypeError(
        f'{name}: expected uint8 or float pixels, found dtype {image.dtype}'
    )
  low, high = float(image.min()), float(image.max())
  if low < 0.0 or high > 1.0:
    raise ValueError(
        f'{name}: expected float pixels in [0, 1], found [{low:.4g}, '
        f'{high:.4g}] (pass uint8 for 0..255 images)'
    )
  return image.astype(np.float32)


@functools.lru_cache(maxsize=16)
def _feature_fn(layer: str, variant: str, resize_input: bool):
  """A jitted variables, (N, H, W, 3) -> (N, h, w, C) for one output layer."""
  model = inception.InceptionV3(
      outputs=(layer,), variant=variant, resize_input=resize_input
  )
  return jax.jit(lambda variables, x: model.apply(variables, x)[layer])


def feature_statistics(
    images: np.ndarray,
    variables: Any,
    layer: str = SIFID_LAYER,
    variant: str = 'torchvision',
    resize_input: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
  """Mean (C,) and covariance (C, C) of `layer`'s vectors over all positions.

  images: H x W x 3 or N x H x W x 3, uint8 or float in [0, 1]. With
  layer='block3' and resize_input=True this is pytorch-fid's FID statistics
  (one 2048-vector per image); with one image and 'conv2d_2b' it is SIFID's.
  variables: {'params', 'batch_stats'} of `InceptionV3` (see
  jaxsr.pretrained.inception).
  """
  if layer not in inception.OUTPUTS:
    raise ValueError(
        f'unknown Inception layer {layer!r}; one of {inception.OUTPUTS}'
    )
  x = to_unit_range(images, 'images')
  if x.ndim == 3:
    x = x[None]
  features = _feature_fn(layer, variant, resize_input)(variables,
                                                        jnp.asarray(x))
  return activation_statistics(np.asarray(features))


def sifid(
    real: np.ndarray,
    fake: np.ndarray,
    variables: Any,
    layer: str = SIFID_LAYER,
    variant: str = 'torchvision',
) -> float:
  """SIFID of one real and one fake H x W x 3 image (uint8 or [0, 1]).

  The two images may differ in size. layer='conv2d_2b' is the official
  script's 64-channel layer; 'conv2d_4a' is the paper's description.
  """
  for name, image in (('real', real), ('fake', fake)):
    if np.ndim(image) != 3:
      raise ValueError(
          f'sifid compares single images: expected {name} of shape '
          f'H x W x 3, found {np.shape(image)}'
      )
  real_stats = feature_statistics(real, variables, layer, variant)
  fake_stats = feature_statistics(fake, variables, layer, variant)
  return frechet_distance(*real_stats, *fake_stats)
