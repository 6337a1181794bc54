"""Tests of the MATLAB bicubic imresize against hand values and MATLAB files."""

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from jaxsr.data import imresize as imresize_lib
from jaxsr.data.imresize import imresize
from jaxsr.data.imresize import imresize_jax
from jaxsr.data.imresize import modcrop

SET5_NAMES = ('baby', 'bird', 'butterfly', 'head', 'woman')


@pytest.mark.parametrize(
    'x, expected',
    [
        (0.0, 1.0),
        (1.0, 0.0),
        (-1.0, 0.0),
        (2.0, 0.0),
        (3.0, 0.0),
        (0.5, 0.5625),  # 1.5/8 - 2.5/4 + 1
        (-0.5, 0.5625),
        (1.5, -0.0625),  # -0.5*27/8 + 2.5*9/4 - 6 + 2
        (0.25, 0.8671875),
        (1.75, -0.0234375),
    ],
)
def test_cubic_kernel_known_points(x, expected):
  assert imresize_lib.cubic(np.array(x)) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize(
    'in_length, out_length, scale',
    [(10, 5, 0.5), (7, 28, 4.0), (9, 3, 1 / 3), (5, 10, 2.0), (33, 9, 0.25)],
)
def test_weights_rows_sum_to_one(in_length, out_length, scale):
  weights, indices = imresize_lib.contributions(in_length, out_length, scale)
  np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-12)
  assert indices.min() >= 0 and indices.max() < in_length
  matrix = imresize_lib.resize_matrix(in_length, out_length, scale)
  assert matrix.shape == (out_length, in_length)
  np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-12)


def test_ramp_downscale_by_two_by_hand():
  # 16 x 1 ramp 1..16, scale 1/2. Output x samples u = 2x - 1/2 with the
  # half-width kernel 0.5 k(d/2): taps (d = +-0.5, +-1.5, +-2.5, +-3.5) weigh
  # 0.43359375, 0.11328125, -0.03515625, -0.01171875. Inside, a symmetric
  # kernel on a ramp returns the ramp at u; at x = 1 the taps left of the
  # edge mirror to values 1, 2, 3, which sum (see below) to 1.44921875; at
  # x = 2 only the d = 3.5 tap mirrors (reads 1 where the ramp has 0).
  ramp = np.arange(1.0, 17.0)[:, None]
  first = (
      -0.01171875 * 3 - 0.03515625 * 2 + 0.11328125 * 1
      + 0.43359375 * (1 + 2) + 0.11328125 * 3 - 0.03515625 * 4
      - 0.01171875 * 5
  )
  assert first == 1.44921875
  second = 3.5 - 0.01171875
  expected = [first, second, 5.5, 7.5, 9.5, 11.5, 17 - second, 17 - first]
  out = imresize(ramp, 0.5)
  assert out.shape == (8, 1)
  np.testing.assert_allclose(out[:, 0], expected, atol=1e-12)
  # The same along the width.
  np.testing.assert_allclose(imresize(ramp.T, 0.5)[0], expected, atol=1e-12)


def test_upscaling_reproduces_a_ramp_inside():
  # Keys' cubic reproduces linear functions; away from the mirrored edges the
  # x4 output is the ramp at u = x/4 + 3/8.
  ramp = np.arange(1.0, 21.0)[None, :]
  out = imresize(ramp, 4)
  x = np.arange(1, 81)
  u = x / 4 + 0.5 * (1 - 1 / 4)
  inside = (u >= 3) & (u <= 18)
  np.testing.assert_allclose(out[0, inside], u[inside], atol=1e-12)


@pytest.mark.parametrize('scale', [2, 3, 4, 0.25, 1 / 3])
def test_constant_image_stays_constant(scale):
  image = np.full((13, 11, 3), 77, dtype=np.uint8)
  out = imresize(image, scale)
  assert out.dtype == np.uint8
  assert out.shape == (np.ceil(13 * scale), np.ceil(11 * scale), 3)
  assert np.all(out == 77)
  np.testing.assert_allclose(
      imresize(image.astype(np.float32) / 255, scale), 77 / 255, atol=1e-6
  )


def test_scale_one_is_identity():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (9, 14, 3), dtype=np.uint8)
  np.testing.assert_array_equal(imresize(image, 1.0), image)
  floats = rng.random((9, 14))
  np.testing.assert_allclose(imresize(floats, 1.0), floats, atol=1e-14)


def test_dtypes_shapes_and_output_shape():
  rng = np.random.default_rng(1)
  image = rng.random((10, 12, 3)).astype(np.float32)
  out = imresize(image, output_shape=(5, 7))
  assert out.shape == (5, 7, 3) and out.dtype == np.float32
  # Float input is neither rounded nor clipped: bicubic overshoots a step.
  step = np.zeros((8, 8))
  step[:, 4:] = 1.0
  up = imresize(step, 2)
  assert up.min() < 0 and up.max() > 1
  assert imresize(np.zeros((7, 5), np.uint8), 0.5).shape == (4, 3)


def test_invalid_arguments():
  image = np.zeros((8, 8), np.uint8)
  with pytest.raises(ValueError, match='exactly one'):
    imresize(image)
  with pytest.raises(ValueError, match='exactly one'):
    imresize(image, 2, output_shape=(4, 4))
  with pytest.raises(ValueError, match='positive scale'):
    imresize(image, -2)
  with pytest.raises(TypeError, match='bool'):
    imresize(image.astype(bool), 2)


def test_modcrop():
  image = np.arange(7 * 10).reshape(7, 10)
  np.testing.assert_array_equal(modcrop(image, 4), image[:4, :8])
  assert modcrop(np.zeros((8, 12, 3)), 4).shape == (8, 12, 3)
  with pytest.raises(ValueError, match='integer'):
    modcrop(image, 1.5)


def test_set5_x4_bit_exact_with_matlab(shared_data):
  """MATLAB imresize(HR, 1/4, 'bicubic') on uint8 == the released LR files."""
  bench = shared_data / 'benchmarks'
  for i, name in enumerate(SET5_NAMES, start=1):
    with Image.open(bench / 'Set5' / f'img_{i:03d}_SRF_4_HR.png') as im:
      hr = np.asarray(im.convert('RGB'))
    with Image.open(bench / 'Set5_LR_bicubic_X4' / f'{name}x4.png') as im:
      lr = np.asarray(im.convert('RGB'))
    out = imresize(hr, 1 / 4)
    assert out.dtype == np.uint8
    assert np.array_equal(out, lr), (
        f'{name}: {np.count_nonzero(out != lr)} values differ from MATLAB'
    )


@pytest.mark.parametrize(
    'scale, shape',
    [(2, (2, 13, 17, 3)), (3, (1, 11, 9, 3)), (4, (2, 8, 10, 1)),
     (0.25, (2, 37, 41, 3))],
)
def test_jax_matches_numpy_float_path(scale, shape):
  rng = np.random.default_rng(2)
  x = rng.random(shape).astype(np.float32)
  expected = np.stack([imresize(img.astype(np.float64), scale) for img in x])
  out = jax.jit(lambda v: imresize_jax(v, scale))(jnp.asarray(x))
  assert out.shape == expected.shape and out.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(out), expected, atol=1e-5)


def test_jax_output_shape_argument():
  x = jnp.ones((1, 6, 8, 3))
  out = imresize_jax(x, output_shape=(12, 4))
  assert out.shape == (1, 12, 4, 3)
  np.testing.assert_allclose(out, 1.0, atol=1e-6)
  with pytest.raises(ValueError, match='N x H x W x C'):
    imresize_jax(jnp.ones((6, 8, 3)), 2)


def test_jax_gradient_matches_finite_difference():
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.random((1, 9, 7, 2)), jnp.float32)
  v = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)

  def loss(z):
    return jnp.sum(jnp.square(imresize_jax(z, 3)))

  grad = jax.jit(jax.grad(loss))(x)
  eps = 1e-2
  # The loss is quadratic, so the central difference is exact up to rounding.
  fd = (loss(x + eps * v) - loss(x - eps * v)) / (2 * eps)
  assert np.isfinite(np.asarray(grad)).all()
  np.testing.assert_allclose(jnp.vdot(grad, v), fd, rtol=1e-3)
