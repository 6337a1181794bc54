"""StyleGAN2 importers (rosinality .pt, NVIDIA .pkl, flaxmodels .h5) and prior.

Truth: rosinality's model transcribed to numpy (tests/models/
numpy_stylegan2.py) on the rosinality state dict the files are written from.
"""

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.pretrained import mapping_stats
from jaxsr.pretrained import stylegan2 as importer
from jaxsr.pretrained import torch_writer
from tests.models import numpy_stylegan2 as ref
from tests.pretrained import stylegan2_files as files

_RES, _S, _MLP, _CH = 32, 8, 2, (12, 10, 8, 6)


@pytest.fixture(scope='module')
def sds():
  rng = np.random.default_rng(0)
  g = ref.random_generator_sd(rng, _RES, _S, _MLP, _CH)
  d = ref.random_discriminator_sd(rng, _RES, _CH)
  g_train = ref.random_generator_sd(rng, _RES, _S, _MLP, _CH)
  latent_avg = rng.standard_normal(_S).astype(np.float32)
  return g, d, g_train, latent_avg


def _save_rosinality(path, sds, with_d=True):
  """convert_weight.py / train.py's checkpoint, with an argparse 'args'."""
  g, d, g_train, latent_avg = sds
  ckpt = {'g_ema': g, 'g': g_train, 'latent_avg': latent_avg}
  if with_d:
    ckpt['d'] = d
  # pylint: disable=protected-access (torch_writer saves arrays only)
  converter = torch_writer._Converter()
  obj = converter.convert(ckpt)
  obj['args'] = argparse.Namespace(size=_RES, n_mlp=_MLP, path='lmdb',
                                   channel_multiplier=2, r1=10.0)
  torch_writer._save_zip(str(path), obj, converter.order)


@pytest.fixture(scope='module')
def rosinality_file(sds, tmp_path_factory):
  path = tmp_path_factory.mktemp('rosinality') / 'ffhq-32.pt'
  _save_rosinality(path, sds)
  return path


def _assert_same_tree(got, want):
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_array_equal(a, b)


def test_rosinality_pt_layout(rosinality_file, sds):
  g, d, _, latent_avg = sds
  imported = importer.read(rosinality_file)
  assert imported.layout == 'rosinality'
  assert imported.g_hparams == dict(resolution=_RES, style_dim=_S,
                                    n_mlp=_MLP, channels=_CH)
  assert imported.d_hparams == dict(resolution=_RES, channels=_CH,
                                    stddev_feat=1)
  syn = imported.g_params['synthesis']
  # g_ema, not g; (1, O, I, kh, kw) -> (kh, kw, I, O); Linear (out, in).T.
  assert syn['b8']['conv0']['kernel'][1, 2, 3, 4] == (
      g['convs.0.conv.weight'][0, 4, 3, 1, 2])
  assert imported.g_params['mapping']['fc1']['kernel'][2, 5] == (
      g['style.2.weight'][5, 2])
  assert syn['b4']['const'][1, 3, 7] == g['input.input'][0, 7, 1, 3]
  assert syn['b32']['torgb']['bias'][2] == g['to_rgbs.2.bias'][0, 2, 0, 0]
  assert imported.d_params['b32']['conv1']['kernel'][0, 2, 5, 7] == (
      d['convs.1.conv2.1.weight'][7, 5, 0, 2])
  np.testing.assert_array_equal(imported.latent_avg, latent_avg)


def test_legacy_torch_format(sds, rosinality_file, tmp_path):
  """rosinality's released .pt files predate torch 1.6's zip format."""
  g, d, _, latent_avg = sds
  path = tmp_path / 'stylegan2-ffhq-config-f.pt'
  torch_writer.save_torch_file(path, {'g_ema': g, 'd': d,
                                      'latent_avg': latent_avg}, legacy=True)
  _assert_same_tree(importer.read(path).g_params,
                    importer.read(rosinality_file).g_params)


def test_nvidia_pickle_layout_is_read_without_running_it(
    rosinality_file, sds, tmp_path):
  g, d, _, latent_avg = sds
  marker = tmp_path / 'pickled_code_ran'
  src = f'open({str(marker)!r}, "w").write("ran")\n'
  want = importer.read(rosinality_file)
  for protocol in (3, 4):
    path = tmp_path / f'network-snapshot-{protocol}.pkl'
    files.write_nvidia_pickle(path, files.nvidia_g(g, latent_avg),
                              files.nvidia_d(d), src, protocol=protocol,
                              conv_clamp=256)
    got = importer.read(path)
    assert got.layout == 'nvidia' and got.conv_clamp == 256.0
    assert got.d_conv_clamp == 256.0
    _assert_same_tree(got.g_params, want.g_params)
    _assert_same_tree(got.d_params, want.d_params)
    np.testing.assert_array_equal(got.latent_avg, latent_avg)
  assert not marker.exists()


def test_nvidia_state_dicts_in_a_torch_file(sds, rosinality_file, tmp_path):
  g, d, _, latent_avg = sds
  path = tmp_path / 'ada_state_dicts.pt'
  torch_writer.save_torch_file(path, {'G_ema': files.nvidia_g(g, latent_avg),
                                      'D': files.nvidia_d(d)})
  want = importer.read(rosinality_file)
  got = importer.read(path)
  _assert_same_tree(got.g_params, want.g_params)
  _assert_same_tree(got.d_params, want.d_params)


def test_pickle_with_foreign_code_is_refused(tmp_path):
  path = tmp_path / 'evil.pkl'
  path.write_bytes(b'\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01'
                   b'\x85q\x02Rq\x03.')
  with pytest.raises(ValueError, match='os.system'):
    importer.read(path)


def test_flaxmodels_h5_layout(sds, rosinality_file, tmp_path):
  g, d, _, latent_avg = sds
  g_path = tmp_path / 'stylegan2_generator_test.h5'
  files.write_flaxmodels_h5(g_path, tmp_path /
                            'stylegan2_discriminator_test.h5', g, d,
                            latent_avg)
  want = importer.read(rosinality_file)
  got = importer.read(g_path)  # D found next to G by flaxmodels' names.
  assert got.layout == 'flaxmodels'
  np.testing.assert_allclose(
      got.g_params['synthesis']['b8']['conv1']['affine']['bias'],
      g['convs.1.conv.modulation.bias'], rtol=1e-6)  # Stored minus 1.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
               got.g_params, want.g_params)
  _assert_same_tree(got.d_params, want.d_params)
  np.testing.assert_array_equal(got.latent_avg, latent_avg)


def test_missing_discriminator(sds, tmp_path):
  path = tmp_path / 'g_only.pt'
  _save_rosinality(path, sds, with_d=False)
  with pytest.raises(ValueError, match='no discriminator'):
    importer.read(path)
  assert importer.read(path, need_d=False).d_params is None
  h5 = tmp_path / 'stylegan2_generator_x.h5'
  files.write_flaxmodels_h5(h5, None, sds[0], None, sds[3])
  with pytest.raises(ValueError, match='no discriminator'):
    importer.read(h5)
  prior = importer.load_prior(path, key=jax.random.key(0), need_d=False,
                              stats_samples=64, stats_chunk=32)
  with pytest.raises(ValueError, match='no discriminator'):
    prior.discriminate(prior.d_params, np.zeros((_RES, _RES, 3)))


def test_bad_files_are_clear_errors(sds, tmp_path):
  g, d, _, latent_avg = sds
  with pytest.raises(FileNotFoundError):
    importer.read(tmp_path / 'nowhere.pt')
  broken = dict(g)
  del broken['convs.3.conv.weight']
  torch_writer.save_torch_file(tmp_path / 'b.pt', {'g_ema': broken, 'd': d})
  with pytest.raises(ValueError, match='missing convs.3.conv.weight'):
    importer.read(tmp_path / 'b.pt')
  wrong = dict(g, **{'convs.3.conv.weight': g['convs.3.conv.weight'][:, :5]})
  torch_writer.save_torch_file(tmp_path / 'w.pt', {'g_ema': wrong, 'd': d})
  with pytest.raises(ValueError, match='do not fit'):
    importer.read(tmp_path / 'w.pt')
  torch_writer.save_torch_file(tmp_path / 'o.pt', {'model': latent_avg})
  with pytest.raises(ValueError, match='not a StyleGAN2 checkpoint'):
    importer.read(tmp_path / 'o.pt')


def test_mapping_statistics_chunked_and_against_numpy(sds):
  g = sds[0]
  mapping = importer.generator_from_rosinality(g)['mapping']
  mean, std = mapping_stats.compute(mapping, 100, chunk=32)  # 3 + a partial.
  mean1, std1 = mapping_stats.compute(mapping, 100, chunk=100)
  np.testing.assert_allclose(mean, mean1, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(std, std1, rtol=1e-5)
  z = np.asarray(mapping_stats.sample_z(0, 100, _S), np.float64)
  y = ref.mapping(g, z, _MLP)
  y = np.where(y >= 0, y, 5.0 * y)
  np.testing.assert_allclose(mean, y.mean(0), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(std, y.std(0, ddof=1), rtol=1e-4)


def test_mapping_statistics_cache(sds, tmp_path, monkeypatch):
  g, _, g_other, _ = sds
  calls = []
  compute = mapping_stats.compute
  monkeypatch.setattr(mapping_stats, 'compute',
                      lambda *a, **k: calls.append(1) or compute(*a, **k))
  weights = tmp_path / 'w.pt'
  weights.write_bytes(b'weights')
  mapping = importer.generator_from_rosinality(g)['mapping']
  first = mapping_stats.load_or_compute(weights, mapping, samples=40, chunk=32)
  assert os.path.isfile(f'{weights}.mapping_stats.npz') and len(calls) == 1
  again = mapping_stats.load_or_compute(weights, mapping, samples=40,
                                        chunk=32)
  assert len(calls) == 1
  np.testing.assert_array_equal(first[0], again[0])
  other = importer.generator_from_rosinality(g_other)['mapping']
  changed = mapping_stats.load_or_compute(weights, other, samples=40,
                                          chunk=32)
  assert len(calls) == 2 and not np.allclose(changed[0], first[0])
  # Not writable next to the weights: the user cache.
  folder = tmp_path / 'ro'
  folder.mkdir()
  (folder / 'w.pt.mapping_stats.npz').mkdir()  # Blocks the file there.
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'cache'))
  mapping_stats.load_or_compute(folder / 'w.pt', mapping, samples=40,
                                chunk=32)
  mapping_stats.load_or_compute(folder / 'w.pt', mapping, samples=40,
                                chunk=32)
  assert len(calls) == 3
  assert len(list((tmp_path / 'cache' / 'jaxsr').iterdir())) == 1


def test_prior_matches_numpy(rosinality_file, sds):
  g, d, _, _ = sds
  prior = importer.load_prior(rosinality_file, key=jax.random.key(1),
                              trainable_noise=3, stats_samples=64,
                              stats_chunk=32)
  assert prior.resolution == _RES and prior.name == 'stylegan2'
  latent = prior.sample_latent(jax.random.key(2))
  assert latent['z'].shape == (8, _S)  # n_latent = 2 log2(32) - 2.
  assert [n.shape for n in latent['noise']] == [(4, 4), (8, 8), (8, 8)]
  fixed = prior.g_buffers['noise']
  assert [n.shape for n in fixed] == [(16, 16), (16, 16), (32, 32), (32, 32)]
  image = jax.jit(prior.generate)(prior.g_params, prior.g_buffers, latent)
  assert image.shape == (_RES, _RES, 3)
  mean = np.float64(prior.g_buffers['w_mean'])
  std = np.float64(prior.g_buffers['w_std'])
  w = np.float64(latent['z']) * std + mean
  w = np.where(w >= 0, w, 0.2 * w)  # PULSE's latent_in.
  np.testing.assert_allclose(prior.w_rows(prior.g_buffers, latent), w,
                             rtol=1e-5, atol=1e-5)
  noises = [np.float64(n)[None, None] for n in latent['noise'] + fixed]
  want = ref.generator(g, w[None], noises)[0].transpose(1, 2, 0)
  np.testing.assert_allclose(image, want, atol=2e-4, rtol=1e-4)
  logit, feats = jax.jit(prior.discriminate)(prior.d_params, image)
  want_logit, want_feats = ref.discriminator(
      d, np.float64(image).transpose(2, 0, 1)[None])
  assert logit.shape == () and len(feats) == 3
  np.testing.assert_allclose(logit, want_logit[0], rtol=1e-4, atol=1e-4)
  for got, want_f in zip(feats, want_feats):
    np.testing.assert_allclose(got, want_f[0].transpose(1, 2, 0), atol=1e-4,
                               rtol=1e-4)


def test_render_is_native_sampling(rosinality_file, sds):
  """render(z): mapping, w on every W+ row, synthesis (as Generator(z)),
  against the numpy transcription; what `python -m jaxsr.faces sample` uses."""
  g, _, _, _ = sds
  prior = importer.load_prior(rosinality_file, key=jax.random.key(1),
                              trainable_noise=2, stats_samples=64,
                              stats_chunk=32, need_d=False)
  assert prior.latent_dim == _S
  z = np.asarray(prior.sample_native(jax.random.key(3), 2))
  assert z.shape == (2, _S)
  images = np.asarray(jax.jit(prior.render)(prior.g_params, prior.g_buffers,
                                            z))
  w = ref.mapping(g, z, _MLP)
  keys = jax.random.split(jax.random.key(0), 2)  # render's trainable maps.
  shapes = [(4, 4), (8, 8)]
  noises = [np.float64(jax.random.normal(k, s))[None, None].repeat(2, 0)
            for k, s in zip(keys, shapes)]
  noises += [np.float64(n)[None, None].repeat(2, 0)
             for n in prior.g_buffers['noise']]
  rows = 8
  want = ref.generator(g, np.repeat(w[:, None], rows, axis=1), noises)
  np.testing.assert_allclose(images, want.transpose(0, 2, 3, 1), atol=2e-4,
                             rtol=1e-4)


def test_random_prior_gradients_reach_the_latent_and_g():
  prior = importer.random_prior(
      jax.random.key(0), resolution=8, channels=(8, 6), style_dim=4,
      n_mlp=1, trainable_noise=2, stats_samples=32)
  latent = prior.sample_latent(jax.random.key(1))
  assert latent['z'].shape == (4, 4) and len(prior.g_buffers['noise']) == 1

  def loss(g_params, latent):
    image = prior.generate(g_params, prior.g_buffers, latent)
    logit, feats = prior.discriminate(prior.d_params, image)
    return jnp.sum(image**2) + logit + jnp.sum(feats[0]), (logit, feats)

  (g_grad, latent_grad), (logit, feats) = jax.jit(
      jax.grad(loss, argnums=(0, 1), has_aux=True))(prior.g_params, latent)
  for leaf in [latent_grad['z'], *latent_grad['noise'],
               g_grad['b8']['conv0']['kernel'], g_grad['b4']['const']]:
    assert float(jnp.abs(leaf).max()) > 0
  assert logit.shape == () and [f.shape for f in feats] == [(4, 4, 8)]
