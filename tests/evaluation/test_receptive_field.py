"""The receptive radius computed from a config equals the gradient support of the real networks."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxsr.evaluation import receptive_field
from jaxsr.models import rrdbnet
from jaxsr.models import srresnet


def _measured_radius(net, scale: int, multiple: int, radius_guess: int) -> int:
  """How far (LR pixels) the output pixels of LR pixels p..p+multiple-1 read.

  The support of d(sum of an LR pixel's output columns)/d(input), with every
  parameter drawn at random so that no path is switched off by a zero init.
  """
  width = multiple * (2 * radius_guess // multiple + 6)
  x = jax.random.uniform(jax.random.key(0), (1, 2 * multiple, width, 3))
  rng = np.random.default_rng(0)
  params = jax.tree.map(
      lambda s: 0.3 * rng.standard_normal(s.shape).astype(np.float32),
      jax.eval_shape(net.init, jax.random.key(1), x))
  p = multiple * (width // (2 * multiple))
  pixels = np.arange(p, p + multiple)
  # One cotangent per LR pixel: ones on all its output columns, so each
  # gradient's support is the union of those columns' supports.

  @jax.jit
  def supports(v):
    out, vjp = jax.vjp(lambda u: net.apply(params, u), v)
    cols = jnp.arange(out.shape[2])[None, :] // scale
    masks = (cols == jnp.asarray(pixels)[:, None]).astype(out.dtype)
    cot = jnp.broadcast_to(masks[:, None, None, :, None],
                           (multiple,) + out.shape)
    return jax.vmap(lambda c: jnp.abs(vjp(c)[0]).sum(axis=(0, 1, 3)))(cot)

  worst = 0
  for pixel, grad in zip(pixels, np.asarray(supports(x))):
    support = np.nonzero(grad)[0]
    worst = max(worst, pixel - support[0], support[-1] - pixel)
  assert 0 < support[0] and support[-1] < width - 1, 'probe too narrow'
  return worst


@pytest.mark.parametrize('scale,bicubic_skip', [(4, True), (2, False)])
def test_rrdbnet_radius_is_its_gradient_support(scale, bicubic_skip):
  net = rrdbnet.RRDBNet(scale=scale, num_feat=4, num_block=1, num_grow_ch=2,
                        bicubic_skip=bicubic_skip, kernel_grad='xla')
  multiple = {1: 4, 2: 2}.get(scale, 1)
  want = receptive_field.radius_of(
      receptive_field.rrdbnet_layers(scale, 1, bicubic_skip), scale, multiple)
  assert _measured_radius(net, scale, multiple, want) == want


def test_srresnet_radius_is_its_gradient_support():
  net = srresnet.SRResNet(scale=4, num_feat=4, num_block=1)
  want = receptive_field.radius_of(receptive_field.srresnet_layers(4, 1), 4)
  assert _measured_radius(net, 4, 1, want) == want


def test_geometry_of_the_paper_and_tiny_configs():
  """Hand count at x4: conv_first + 15 per RRDB + conv_body in LR pixels,
  then two x2 stages and conv_hr/conv_last (1.25 LR pixels, floored to 2)."""
  config = ml_collections.ConfigDict(dict(
      method='psnr', scale=4, model=dict(num_block=23, bicubic_skip=False)))
  geo = receptive_field.geometry(config)
  assert (geo.radius, geo.multiple) == (1 + 15 * 23 + 1 + 2, 1)
  config.model.num_block = 1
  assert receptive_field.geometry(config).radius == 19
  config.scale = 2  # Pixel-unshuffle by 2: twice the LR radius, tiles even.
  geo = receptive_field.geometry(config)
  assert (geo.radius, geo.multiple) == (38, 2)
  config.method = 'singan'
  assert receptive_field.geometry(config) is None


def test_bad_tiles_are_refused_and_small_overlaps_warned():
  geo = receptive_field.Geometry(19, 2, 'net')
  with pytest.raises(ValueError, match='--overlap must be >= 0.*-10'):
    receptive_field.check_tiling(128, -10)
  with pytest.raises(ValueError, match='--tile must be >= 0'):
    receptive_field.check_tiling(-1, 0)
  with pytest.raises(ValueError, match='multiples of 2, found 50 and 3'):
    receptive_field.check_tiling(50, 3, geo)
  receptive_field.check_tiling(0, 3, geo)  # Whole images: any overlap.
  assert '--overlap 19' in receptive_field.overlap_warning(50, 0, geo)
  assert receptive_field.overlap_warning(50, 19, geo) is None
  assert receptive_field.overlap_warning(0, 0, geo) is None
