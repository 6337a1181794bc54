"""The DCGAN face prior: import, forward vs numpy, latent map, errors.

Truth is an independent float64 numpy transcription of the shared files'
networks, written in NCHW straight from ../shared/data/face_prior/README.md
(convs as sums over kernel taps, the transposed conv in its scatter form,
BN in eval mode, the torch NCHW flatten before the Linear), run on the torch
state dicts as read from the files.
"""

import functools
import math
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from jaxsr.models import dcgan
from jaxsr.pretrained import dcgan as dcgan_import
from jaxsr.pretrained import torch_pickle
from jaxsr.pretrained import torch_writer

_ATOL = 1e-4


# ---------------------------------------------------------------- numpy truth
def _conv(x, w, stride, pad, b=None):
  """torch Conv2d: x (N, I, H, W), w (O, I, k, k) -> (N, O, H', W')."""
  k = w.shape[2]
  xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
  oh = (x.shape[2] + 2 * pad - k) // stride + 1
  ow = (x.shape[3] + 2 * pad - k) // stride + 1
  out = np.zeros((x.shape[0], w.shape[0], oh, ow))
  for a in range(k):
    for c in range(k):
      patch = xp[:, :, a:a + stride * oh:stride, c:c + stride * ow:stride]
      out += np.einsum('nihw,oi->nohw', patch, w[:, :, a, c])
  if b is not None:
    out += b[None, :, None, None]
  return out


def _conv_transpose(x, w, stride, pad, b=None):
  """torch ConvTranspose2d, as a scatter: input pixel (y, x) adds w[:, :, a, c]
  at output (y * s + a - p, x * s + c - p); w is (I, O, k, k)."""
  n, _, h, wd = x.shape
  k = w.shape[2]
  full = np.zeros((n, w.shape[1], (h - 1) * stride + k,
                   (wd - 1) * stride + k))
  for a in range(k):
    for c in range(k):
      full[:, :, a:a + stride * h:stride, c:c + stride * wd:stride] += (
          np.einsum('nihw,io->nohw', x, w[:, :, a, c]))
  out = full[:, :, pad:full.shape[2] - pad, pad:full.shape[3] - pad]
  if b is not None:
    out = out + b[None, :, None, None]
  return out


def _bn(x, sd, prefix):
  """BatchNorm2d in eval mode, eps 1e-5."""
  def g(part):
    return sd[f'{prefix}.{part}'][None, :, None, None]
  return ((x - g('running_mean')) / np.sqrt(g('running_var') + 1e-5)
          * g('weight') + g('bias'))


def _lrelu(x):
  return np.where(x > 0, x, 0.2 * x)


def _f64(sd):
  return {k: np.asarray(v, np.float64) for k, v in sd.items()}


def numpy_generator(sd, z):
  """README's G on z (N, 100) in [-1, 1] -> NCHW images (N, 3, 32, 32)."""
  sd = _f64(sd)
  p = 'generator_deconv'
  x = z.astype(np.float64)[:, :, None, None]
  x = _bn(_conv_transpose(x, sd[f'{p}.0.0.weight'], 1, 0), sd, f'{p}.0.1')
  x = _lrelu(_bn(_conv(x, sd[f'{p}.1.0.weight'], 1, 1), sd, f'{p}.1.1'))
  for i in (2, 3):
    x = _lrelu(_bn(_conv_transpose(x, sd[f'{p}.{i}.0.weight'], 2, 1), sd,
                   f'{p}.{i}.1'))
  x = _conv_transpose(x, sd[f'{p}.4.0.weight'], 2, 1, sd[f'{p}.4.0.bias'])
  return np.tanh(x)


def numpy_discriminator(sd, images):
  """README's D on NCHW images -> (logits (N,), 4 NCHW block outputs)."""
  sd = _f64(sd)
  x = np.asarray(images, np.float64)
  blocks = []
  for i in range(4):
    x = _conv(x, sd[f'discriminator.{i}.0.weight'], 2, 1,
              sd.get(f'discriminator.{i}.0.bias'))
    if i:
      x = _bn(x, sd, f'discriminator.{i}.1')
    x = _lrelu(x)
    blocks.append(x)
  flat = x.reshape(x.shape[0], -1)  # torch's NCHW flatten
  logit = flat @ sd['discriminator.5.weight'].T + sd['discriminator.5.bias']
  return logit[:, 0], blocks


# -------------------------------------------------------------- random files
def _random_state_dicts(seed=0):
  """Random G and D state dicts of the README's sizes, BN stats non-trivial."""
  rng = np.random.default_rng(seed)

  def weight(shape, fan_in):
    return (rng.standard_normal(shape) / math.sqrt(fan_in)).astype(np.float32)

  def bn(sd, prefix, n):
    sd[f'{prefix}.weight'] = rng.uniform(0.5, 1.5, n).astype(np.float32)
    sd[f'{prefix}.bias'] = (0.1 * rng.standard_normal(n)).astype(np.float32)
    sd[f'{prefix}.running_mean'] = (
        0.3 * rng.standard_normal(n)).astype(np.float32)
    sd[f'{prefix}.running_var'] = rng.uniform(0.2, 2.0, n).astype(np.float32)
    sd[f'{prefix}.num_batches_tracked'] = np.array(1000, np.int64)

  g = {}
  convs = [(100, 256, 4, 4), (128, 256, 3, 3), (128, 64, 4, 4),
           (64, 32, 4, 4), (32, 3, 4, 4)]
  for i, shape in enumerate(convs):
    fan_in = shape[0] if i != 1 else shape[1] * 9
    g[f'generator_deconv.{i}.0.weight'] = weight(shape, fan_in)
    if i < 4:
      bn(g, f'generator_deconv.{i}.1', shape[0] if i == 1 else shape[1])
  g['generator_deconv.4.0.bias'] = weight((3,), 10)
  d = {}
  cin = 3
  for i, width in enumerate((32, 64, 128, 256)):
    d[f'discriminator.{i}.0.weight'] = weight((width, cin, 4, 4), cin * 16)
    if i == 0:
      d['discriminator.0.0.bias'] = weight((width,), 10)
    else:
      bn(d, f'discriminator.{i}.1', width)
    cin = width
  d['discriminator.5.weight'] = weight((1, 1024), 1024)
  d['discriminator.5.bias'] = weight((1,), 1)
  return g, d


@pytest.fixture(scope='module')
def random_files(tmp_path_factory):
  """A folder with random generator.pt/discriminator.pt in the legacy format."""
  folder = tmp_path_factory.mktemp('dcgan')
  g, d = _random_state_dicts()
  torch_writer.save_torch_file(folder / 'generator.pt', g, legacy=True)
  torch_writer.save_torch_file(folder / 'discriminator.pt', d, legacy=True)
  return folder


@pytest.fixture
def real_folder(shared_data):
  """../shared/data/face_prior; skips when it is absent."""
  folder = shared_data / 'face_prior'
  if not (folder / 'generator.pt').is_file():
    pytest.skip(f'{folder} is absent')
  return folder


# ------------------------------------------------------------------ forwards
def _check_against_numpy(folder):
  g_sd = torch_pickle.load_torch_file(folder / 'generator.pt')
  d_sd = torch_pickle.load_torch_file(folder / 'discriminator.pt')
  prior = dcgan_import.load_prior(folder)
  generate, discriminate = jax.jit(prior.generate), jax.jit(prior.discriminate)
  rng = np.random.default_rng(0)
  u = rng.standard_normal((3, 100)).astype(np.float32)
  u[2] *= 2.5  # Far in the tails too (z close to +-1).
  want = numpy_generator(g_sd, special.erf(u.astype(np.float64)
                                           / math.sqrt(2)))
  # The per-face GanPrior path, from the Gaussian search variable.
  got = np.stack([
      generate(prior.g_params, prior.g_buffers, {'z': jnp.asarray(u[i:i + 1])})
      for i in range(3)])
  np.testing.assert_allclose(got, want.transpose(0, 2, 3, 1), atol=_ATOL)
  # The batched path, from the prior's own uniform z.
  z = rng.uniform(-1, 1, (2, 100)).astype(np.float32)
  assert prior.render is dcgan.generate_batch
  got = jax.jit(prior.render)(prior.g_params, prior.g_buffers, z)
  np.testing.assert_allclose(
      got, numpy_generator(g_sd, z).transpose(0, 2, 3, 1), atol=_ATOL)

  # D on G's images and on noise, every block and the logit.
  images = np.concatenate([want, rng.uniform(-1, 1, (1, 3, 32, 32))])
  want_logits, want_blocks = numpy_discriminator(d_sd, images)
  for n, image in enumerate(images):
    logit, blocks = discriminate(
        prior.d_params, jnp.asarray(image.transpose(1, 2, 0), jnp.float32))
    assert logit.shape == () and len(blocks) == 4
    np.testing.assert_allclose(logit, want_logits[n], atol=_ATOL)
    for block, want_block in zip(blocks, want_blocks):
      np.testing.assert_allclose(block, want_block[n].transpose(1, 2, 0),
                                 atol=_ATOL)
  return prior


def test_real_prior_matches_numpy(real_folder):
  prior = _check_against_numpy(real_folder)
  assert prior.name == 'dcgan' and prior.resolution == 32
  assert prior.w_rows is None


def test_random_file_prior_matches_numpy(random_files):
  _check_against_numpy(random_files)


def test_generator_and_discriminator_files_given_separately(random_files,
                                                            tmp_path):
  d_path = tmp_path / 'd.pt'
  shutil.copy(random_files / 'discriminator.pt', d_path)
  prior = dcgan_import.load_prior(random_files / 'generator.pt', d_path)
  d_sd = torch_pickle.load_torch_file(d_path)
  image = np.random.default_rng(3).uniform(-1, 1, (1, 3, 32, 32))
  logit, _ = jax.jit(prior.discriminate)(
      prior.d_params, jnp.asarray(image[0].transpose(1, 2, 0), jnp.float32))
  np.testing.assert_allclose(logit, numpy_discriminator(d_sd, image)[0][0],
                             atol=_ATOL)


def test_real_prior_samples_are_faces_not_noise(real_folder):
  """Cheap sanity: G's samples vary, and D tells them from uniform noise."""
  prior = dcgan_import.load_prior(real_folder)
  z = np.random.default_rng(1).uniform(-1, 1, (16, 100)).astype(np.float32)
  images = np.asarray(jax.jit(prior.render)(prior.g_params, prior.g_buffers,
                                            z))
  assert images.shape == (16, 32, 32, 3)
  assert images.std(axis=0).mean() > 0.2  # Not one image 16 times.
  assert images.std(axis=(1, 2, 3)).min() > 0.2  # None flat.
  noise = np.random.default_rng(2).uniform(-1, 1, images.shape)
  apply = jax.jit(dcgan.Discriminator().apply)
  logits = apply(prior.d_params, images)[0]
  noise_logits = apply(prior.d_params, noise.astype(np.float32))[0]
  assert abs(float(jnp.mean(logits) - jnp.mean(noise_logits))) > 0.5


# ------------------------------------------------------------ latent mapping
def test_gaussian_search_variable_maps_to_the_uniform_prior_latent():
  """sample_latent then erf: 20,000 values ~ Uniform(-1, 1) (KS, moments)."""
  keys = jax.random.split(jax.random.key(0), 200)
  u = jax.vmap(dcgan.sample_latent)(keys)['z']
  assert u.shape == (200, 1, 100)
  z = np.sort(np.asarray(dcgan.uniform_from_gaussian(u), np.float64).ravel())
  n = z.size
  cdf = (z + 1) / 2  # Uniform(-1, 1)
  ks = max(np.max(np.arange(1, n + 1) / n - cdf),
           np.max(cdf - np.arange(n) / n))
  assert ks < 1.63 / math.sqrt(n)  # KS critical value at alpha = 0.01.
  assert abs(z.mean()) < 0.02 and abs(z.var() - 1 / 3) < 0.01
  assert np.all(np.abs(z) < 1)
  # Each face's u lies near the sphere of radius sqrt(100).
  radii = np.linalg.norm(np.asarray(u)[:, 0], axis=-1)
  assert abs(radii.mean() - 10) < 0.3


def test_sample_native_draws_the_uniform_prior_latent():
  prior = dcgan.prior({}, {}, {})
  assert prior.latent_dim == 100
  z = np.asarray(prior.sample_native(jax.random.key(1), 200), np.float64)
  assert z.shape == (200, 100)
  assert z.min() >= -1 and z.max() <= 1 and z.min() < -0.99 < 0.99 < z.max()
  assert abs(z.mean()) < 0.02 and abs(z.var() - 1 / 3) < 0.01


def test_uniform_from_gaussian_is_2_phi_minus_1_and_inverts():
  u = np.linspace(-4, 4, 81)
  phi = 0.5 * (1 + special.erf(u / math.sqrt(2)))  # standard normal CDF
  z = np.asarray(dcgan.uniform_from_gaussian(jnp.asarray(u, jnp.float32)))
  np.testing.assert_allclose(z, 2 * phi - 1, atol=1e-6)
  back = dcgan.gaussian_from_uniform(jnp.asarray(z))
  np.testing.assert_allclose(back, u, atol=2e-3)
  edges = np.asarray(dcgan.gaussian_from_uniform(jnp.array([-1.0, 1.0])))
  assert np.all(np.isfinite(edges)) and np.all(np.abs(edges) > 5)


def test_imported_trees_are_the_modules_variables(random_files):
  prior = dcgan_import.load_prior(random_files)
  g_vars = jax.eval_shape(dcgan.Generator().init, jax.random.key(0),
                          jnp.zeros((1, 100)))
  d_vars = jax.eval_shape(dcgan.Discriminator().init, jax.random.key(0),
                          jnp.zeros((1, 32, 32, 3)))
  shapes = functools.partial(jax.tree.map, lambda x: (x.shape, x.dtype))
  assert shapes(prior.g_params) == shapes(g_vars['params'])
  assert shapes(prior.g_buffers) == shapes(g_vars['batch_stats'])
  assert shapes(prior.d_params) == shapes(d_vars)
  random = jax.eval_shape(lambda: dcgan.random_prior(0).d_params)
  assert shapes(random) == shapes(d_vars)


def test_latent_of_the_wrong_shape_is_an_error(random_files):
  prior = dcgan_import.load_prior(random_files)
  with pytest.raises(ValueError, match=r'latent\[.z.\] has shape'):
    prior.generate(prior.g_params, prior.g_buffers, {'z': jnp.zeros((100,))})


# ------------------------------------------------------------------- errors
def test_missing_folder_and_files_are_clear_errors(random_files, tmp_path):
  with pytest.raises(FileNotFoundError, match='does not exist'):
    dcgan_import.load_prior(tmp_path / 'nowhere')
  only_g = tmp_path / 'only_g'
  only_g.mkdir()
  shutil.copy(random_files / 'generator.pt', only_g / 'generator.pt')
  with pytest.raises(FileNotFoundError, match='needs the prior.s '
                     'discriminator D'):
    dcgan_import.load_prior(only_g)
  with pytest.raises(FileNotFoundError, match='needs the discriminator D'):
    dcgan_import.load_prior(only_g / 'generator.pt')
  only_d = tmp_path / 'only_d'
  only_d.mkdir()
  shutil.copy(random_files / 'discriminator.pt', only_d / 'discriminator.pt')
  with pytest.raises(FileNotFoundError, match='no generator file'):
    dcgan_import.load_prior(only_d)


@pytest.mark.parametrize('which, edit, message', [
    ('generator', lambda sd: sd.pop('generator_deconv.2.1.running_var'),
     r'generator.pt: missing key generator_deconv.2.1.running_var'),
    ('discriminator', lambda sd: sd.pop('discriminator.5.weight'),
     r'discriminator.pt: missing key discriminator.5.weight'),
    ('generator', lambda sd: sd.update({
        'generator_deconv.3.0.weight': np.zeros((32, 64, 4, 4), np.float32)}),
     r'generator.pt: generator_deconv.3.0.weight has shape \(32, 64, 4, 4\), '
     r'expected \(64, 32, 4, 4\)'),
    ('discriminator', lambda sd: sd.update({
        'discriminator.5.weight': np.zeros((1, 512), np.float32)}),
     r'discriminator.pt: discriminator.5.weight has shape \(1, 512\), '
     r'expected \(1, 1024\)'),
    ('discriminator', lambda sd: sd.update({
        'discriminator.4.weight': np.zeros((3,), np.float32)}),
     r'discriminator.pt: unexpected keys \[.discriminator.4.weight.\]'),
])
def test_bad_state_dicts_are_one_line_errors(random_files, tmp_path, which,
                                             edit, message):
  for name in ('generator.pt', 'discriminator.pt'):
    shutil.copy(random_files / name, tmp_path / name)
  sd = torch_pickle.load_torch_file(tmp_path / f'{which}.pt')
  edit(sd)
  torch_writer.save_torch_file(tmp_path / f'{which}.pt', sd, legacy=True)
  with pytest.raises(ValueError, match=message) as err:
    dcgan_import.load_prior(tmp_path)
  assert '\n' not in str(err.value)


def test_a_file_that_is_not_a_torch_file_is_a_clear_error(random_files,
                                                          tmp_path):
  shutil.copy(random_files / 'generator.pt', tmp_path / 'generator.pt')
  (tmp_path / 'discriminator.pt').write_bytes(b'not a torch file')
  with pytest.raises(ValueError, match='discriminator.pt: expected a torch'):
    dcgan_import.load_prior(tmp_path)
