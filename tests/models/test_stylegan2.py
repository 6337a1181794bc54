"""StyleGAN2 layers against rosinality's model transcribed to numpy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.models import stylegan2
from tests.models import numpy_stylegan2 as ref

_S = 8  # style_dim


def _nhwc(x):
  return np.asarray(x, np.float64).transpose(0, 2, 3, 1)


def _conv_params(sd, prefix):
  """rosinality StyledConv keys -> our tree (written here, not imported)."""
  return {
      'affine': {'kernel': sd[f'{prefix}.conv.modulation.weight'].T,
                 'bias': sd[f'{prefix}.conv.modulation.bias']},
      'kernel': sd[f'{prefix}.conv.weight'][0].transpose(2, 3, 1, 0),
      'bias': sd[f'{prefix}.activate.bias'],
      'noise_strength': sd[f'{prefix}.noise.weight'][0],
  }


def _rgb_params(sd, prefix):
  return {
      'affine': {'kernel': sd[f'{prefix}.conv.modulation.weight'].T,
                 'bias': sd[f'{prefix}.conv.modulation.bias']},
      'kernel': sd[f'{prefix}.conv.weight'][0].transpose(2, 3, 1, 0),
      'bias': sd[f'{prefix}.bias'].reshape(3),
  }


@pytest.fixture(scope='module')
def gen_sd():
  rng = np.random.default_rng(0)
  return ref.random_generator_sd(rng, 16, _S, 1, (8, 6, 5))


@pytest.mark.parametrize('upsample', [False, True])
def test_modulated_conv_matches_numpy(upsample):
  rng = np.random.default_rng(1)
  x = rng.standard_normal((2, 5, 6, 6))
  weight = rng.standard_normal((1, 4, 5, 3, 3))
  style = 1 + 0.3 * rng.standard_normal((2, 5))
  want = ref.modulated_conv(x, weight, style, upsample=upsample)
  got = stylegan2.modulated_conv(
      jnp.asarray(_nhwc(x), jnp.float32),
      jnp.asarray(weight[0].transpose(2, 3, 1, 0), jnp.float32),
      jnp.asarray(style, jnp.float32), upsample=upsample)
  assert got.shape == ((2, 12, 12, 4) if upsample else (2, 6, 6, 4))
  np.testing.assert_allclose(got, _nhwc(want), atol=1e-4, rtol=1e-4)


def test_modulated_conv_without_demodulation_matches_numpy():
  rng = np.random.default_rng(2)
  x = rng.standard_normal((2, 5, 4, 4))
  weight = rng.standard_normal((1, 3, 5, 1, 1))
  style = rng.standard_normal((2, 5))
  want = ref.modulated_conv(x, weight, style, demodulate=False)
  got = stylegan2.modulated_conv(
      jnp.asarray(_nhwc(x), jnp.float32),
      jnp.asarray(weight[0].transpose(2, 3, 1, 0), jnp.float32),
      jnp.asarray(style, jnp.float32), demodulate=False)
  np.testing.assert_allclose(got, _nhwc(want), atol=1e-4, rtol=1e-4)


def test_synthesis_block_matches_numpy(gen_sd):
  """Block 16: up StyledConv + StyledConv (noise, bias, lrelu) + ToRGB(skip)."""
  sd = gen_sd
  rng = np.random.default_rng(3)
  x = rng.standard_normal((2, 6, 8, 8))
  ws = rng.standard_normal((2, 3, _S))
  noises = [rng.standard_normal((2, 1, 16, 16)) for _ in range(2)]
  skip = rng.standard_normal((2, 3, 8, 8))
  h = ref.styled_conv(sd, 'convs.2', x, ws[:, 0], noises[0], upsample=True)
  h = ref.styled_conv(sd, 'convs.3', h, ws[:, 1], noises[1])
  want_rgb = ref.to_rgb(sd, 'to_rgbs.1', h, ws[:, 2], skip)
  params = {'conv0': _conv_params(sd, 'convs.2'),
            'conv1': _conv_params(sd, 'convs.3'),
            'torgb': _rgb_params(sd, 'to_rgbs.1')}
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  got_x, got_rgb = stylegan2.SynthesisBlock(5).apply(
      {'params': jax.tree.map(f32, params)}, f32(_nhwc(x)), f32(ws),
      [f32(n[:, 0]) for n in noises], f32(_nhwc(skip)))
  np.testing.assert_allclose(got_x, _nhwc(h), atol=1e-4, rtol=1e-4)
  np.testing.assert_allclose(got_rgb, _nhwc(want_rgb), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('batch', [1, 8])
def test_minibatch_stddev_matches_numpy(batch):
  rng = np.random.default_rng(4)
  x = rng.standard_normal((batch, 6, 4, 4)) * np.arange(1, batch + 1)[
      :, None, None, None]  # Distinct images, so the grouping shows.
  g = min(batch, 4)
  y = x.reshape(g, batch // g, 1, 6, 4, 4)
  std = np.sqrt(y.var(0) + 1e-8).mean((2, 3, 4))
  want = np.tile(std, (g, 1))[:, 0]  # Image i pairs with i +- k * N / G.
  got = stylegan2.minibatch_stddev(jnp.asarray(_nhwc(x), jnp.float32))
  assert got.shape == (batch, 4, 4, 7)
  np.testing.assert_allclose(got[..., :6], _nhwc(x), rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(
      got[..., 6], np.broadcast_to(want[:, None, None], (batch, 4, 4)),
      rtol=1e-5)
  with pytest.raises(ValueError, match='multiple'):
    stylegan2.minibatch_stddev(jnp.zeros((6, 4, 4, 2)))


def test_discriminator_returns_block_features():
  d = stylegan2.Discriminator(32, channels=(16, 12, 8, 6))
  images = jnp.zeros((4, 32, 32, 3))
  shapes = jax.eval_shape(d.init, jax.random.key(0), images)
  params = jax.tree.map(lambda s: jnp.full(s.shape, 0.1, s.dtype),
                        shapes['params'])
  logits, feats = jax.eval_shape(d.apply, {'params': params}, images)
  assert logits.shape == (4,)
  assert [f.shape for f in feats] == [(4, 16, 16, 8), (4, 8, 8, 12),
                                      (4, 4, 4, 16)]
  assert stylegan2.discriminator_hparams(params) == dict(
      resolution=32, channels=(16, 12, 8, 6), stddev_feat=1)
  assert params['fc']['kernel'].shape == (16 * 16, 16)  # NCHW flatten rows.
  with pytest.raises(ValueError, match='expects'):
    d.apply({'params': params}, jnp.zeros((4, 16, 16, 3)))


def test_generator_tree_and_sizes():
  g = stylegan2.Generator(64, style_dim=_S, n_mlp=3, channels=(9, 8, 7, 6, 5))
  shapes = jax.eval_shape(g.init, jax.random.key(0), jnp.zeros((1, _S)))
  params = shapes['params']
  assert stylegan2.generator_hparams(params) == dict(
      resolution=64, style_dim=_S, n_mlp=3, channels=(9, 8, 7, 6, 5))
  assert params['synthesis']['b8']['conv0']['kernel'].shape == (3, 3, 9, 8)
  assert params['synthesis']['b4']['const'].shape == (4, 4, 9)
  out = jax.eval_shape(g.apply, shapes, jnp.zeros((2, _S)))
  assert out.shape == (2, 64, 64, 3)
  # 1024 px: 18 W+ rows and 17 noise maps, as PULSE's StyleGAN.
  assert stylegan2.n_latent(1024) == 18
  assert len(stylegan2.noise_shapes(1024)) == 17
  assert stylegan2.noise_shapes(32) == ((4, 4), (8, 8), (8, 8), (16, 16),
                                        (16, 16), (32, 32), (32, 32))
  assert stylegan2.default_channels(1024, 2) == (512,) * 5 + (256, 128, 64,
                                                               32)
  assert stylegan2.default_channels(256, 1) == (512,) * 4 + (256, 128, 64)
  with pytest.raises(ValueError, match='power of two'):
    stylegan2.n_latent(48)
