"""Tests for jaxsr.pretrained.lpips: official lin files, AlexNet, assembly."""

import logging

import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.models import alexnet
from jaxsr.pretrained import canonical
from jaxsr.pretrained import lpips as lpips_import
from jaxsr.pretrained import torch_pickle
from jaxsr.pretrained import torch_writer
from tests.models import test_alexnet

# The official `self.chns` of lpips.LPIPS for each trunk.
_CHANNELS = {'alex': (64, 192, 384, 256, 256), 'vgg': (64, 128, 256, 512, 512),
             'squeeze': (64, 128, 256, 384, 384, 512, 512)}


def official_lin_state_dict(net, rng):
  """An lpips.LPIPS(net) state dict: lin{k}.model.1.weight (1, C, 1, 1)."""
  return {
      f'lin{k}.model.1.weight': rng.uniform(0, 0.1, (1, c, 1, 1)).astype(
          np.float32)
      for k, c in enumerate(_CHANNELS[net])
  }


def torchvision_alexnet_state_dict(weights):
  """{features index: (OIHW, bias)} -> torchvision alexnet state dict."""
  sd = {}
  for index, (w, b) in weights.items():
    sd[f'features.{index}.weight'] = w
    sd[f'features.{index}.bias'] = b
  # The real classifier is 58M floats; the importer ignores it.
  sd['classifier.1.weight'] = np.zeros((4, 9), np.float32)
  sd['classifier.1.bias'] = np.zeros(4, np.float32)
  return sd


@pytest.mark.parametrize('net', ['alex', 'vgg'])
def test_official_lin_file_round_trip(tmp_path, net):
  sd = official_lin_state_dict(net, np.random.default_rng(0))
  path = tmp_path / f'{net}.pth'
  # The released files are legacy (pre-1.6) torch serialization.
  torch_writer.save_torch_file(path, sd, legacy=True)
  lin = lpips_import.load_lin(path, net)
  assert list(lin) == [f'lin{k}' for k in range(5)]
  for k, c in enumerate(_CHANNELS[net]):
    assert lin[f'lin{k}'].dtype == np.float32
    np.testing.assert_array_equal(lin[f'lin{k}'],
                                  sd[f'lin{k}.model.1.weight'][0, :, 0, 0])
    assert lin[f'lin{k}'].shape == (c,)


def test_lin_without_dropout_keys_model_0():
  sd = official_lin_state_dict('alex', np.random.default_rng(1))
  sd = {k.replace('model.1', 'model.0'): v for k, v in sd.items()}
  lin = lpips_import.lin_from_state_dict(sd, 'alex')
  np.testing.assert_array_equal(lin['lin2'],
                                sd['lin2.model.0.weight'].ravel())


def test_lin_wrong_keys_or_shapes_raise(tmp_path):
  rng = np.random.default_rng(2)
  with pytest.raises(ValueError, match=r'lin0 \.\.\. lin4'):
    lpips_import.lin_from_state_dict(official_lin_state_dict('squeeze', rng),
                                     'alex')
  with pytest.raises(ValueError, match=r'lin1 weight: expected shape '
                     r'\(1, 192, 1, 1\), found \(1, 128, 1, 1\)'):
    lpips_import.lin_from_state_dict(official_lin_state_dict('vgg', rng),
                                     'alex')
  sd = official_lin_state_dict('alex', rng)
  del sd['lin3.model.1.weight']
  path = tmp_path / 'broken.pth'
  torch_writer.save_torch_file(path, sd)
  with pytest.raises(ValueError, match='broken.pth: .*lin0 ... lin4'):
    lpips_import.load_lin(path, 'alex')
  with pytest.raises(ValueError, match="one of \\('alex', 'vgg'\\)"):
    lpips_import.lin_from_state_dict(sd, 'resnet')


@pytest.mark.parametrize('net', ['alex', 'vgg'])
def test_real_official_lin_files(shared_data, net):
  path = shared_data / 'lpips' / f'{net}.pth'
  lin = lpips_import.load_lin(path, net)
  assert [lin[f'lin{k}'].shape for k in range(5)] == [
      (c,) for c in _CHANNELS[net]]
  for k in range(5):
    # Trained with clamping to >= 0 (the official `clamp_weights`).
    assert (lin[f'lin{k}'] >= 0).all(), k
    assert lin[f'lin{k}'].max() > 0, k
  # Values read once from the lpips==0.1.4 wheel's files.
  max0 = {'alex': 0.4921388626098633, 'vgg': 1.2828161716461182}[net]
  assert lin['lin0'].max() == pytest.approx(max0, rel=1e-7)


def test_real_squeeze_file_is_not_an_alex_file(shared_data):
  with pytest.raises(ValueError, match='squeeze.pth'):
    lpips_import.load_lin(shared_data / 'lpips' / 'squeeze.pth', 'alex')


@pytest.mark.parametrize('legacy', [False, True])
def test_torchvision_alexnet_file_matches_numpy(tmp_path, legacy):
  rng = np.random.default_rng(3)
  weights = test_alexnet.random_torch_weights(rng)
  path = tmp_path / 'alexnet-owt.pth'
  torch_writer.save_torch_file(
      path, torchvision_alexnet_state_dict(weights), legacy=legacy)
  params = lpips_import.load_alexnet(path)
  assert tuple(params) == ('conv1', 'conv2', 'conv3', 'conv4', 'conv5')
  x = rng.uniform(size=(1, 47, 39, 3)).astype(np.float32)
  out = alexnet.AlexNet(use_input_norm=False).apply(
      {'params': params}, jnp.asarray(x))
  ref = test_alexnet.numpy_alexnet(weights, x.transpose(0, 3, 1, 2))
  for name in alexnet.LPIPS_TAPS:
    want = ref[name].transpose(0, 2, 3, 1)
    np.testing.assert_allclose(out[name], want,
                               atol=1e-4 * np.abs(want).max(), err_msg=name)
  # Our .npz round trip.
  canonical.save_npz(tmp_path / 'alex.npz', params)
  again = lpips_import.load_alexnet(tmp_path / 'alex.npz')
  np.testing.assert_array_equal(again['conv4']['kernel'],
                                params['conv4']['kernel'])


def test_torchvision_alexnet_errors(tmp_path):
  weights = test_alexnet.random_torch_weights(np.random.default_rng(4))
  sd = torchvision_alexnet_state_dict(weights)
  bad = dict(sd)
  del bad['features.8.weight'], bad['features.8.bias']
  with pytest.raises(ValueError, match=r'convs at features \[0, 3, 6, 8, 10\]'
                     r', found weights at \[0, 3, 6, 10\]'):
    lpips_import.alexnet_from_torchvision(bad)
  bad = dict(sd, **{'features.3.weight': np.zeros((192, 64, 3, 3),
                                                  np.float32)})
  with pytest.raises(ValueError, match=r'conv2 has kernel \(3, 3, 64, 192\)'
                     r'.*expected \(5, 5, 64, 192\)'):
    lpips_import.alexnet_from_torchvision(bad)
  with pytest.raises(ValueError, match='features'):
    lpips_import.alexnet_from_torchvision({'conv.weight': np.zeros(1)})
  # A DataParallel-style prefix is fine.
  params = lpips_import.alexnet_from_torchvision(
      {f'module.{k}': v for k, v in sd.items()})
  np.testing.assert_array_equal(params['conv3']['bias'], weights[6][1])
  with pytest.raises(ValueError, match="suffix '.h5'"):
    lpips_import.load_alexnet(tmp_path / 'alexnet.h5')


def test_load_lpips_from_files(tmp_path):
  rng = np.random.default_rng(5)
  weights = test_alexnet.random_torch_weights(rng)
  torch_writer.save_torch_file(tmp_path / 'alexnet.pth',
                               torchvision_alexnet_state_dict(weights))
  sd = official_lin_state_dict('alex', rng)
  torch_writer.save_torch_file(tmp_path / 'alex.pth', sd, legacy=True)
  params = lpips_import.load_lpips(
      'alex', str(tmp_path / 'alex.pth'), str(tmp_path / 'alexnet.pth'))
  assert set(params) == {'net', 'lin'}
  np.testing.assert_array_equal(params['net']['conv1']['kernel'],
                                weights[0][0].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(params['lin']['lin4'],
                                sd['lin4.model.1.weight'].ravel())
  with pytest.raises(FileNotFoundError, match='alexnet-owt-4df8aa71'):
    lpips_import.load_lpips('alex', str(tmp_path / 'alex.pth'),
                            str(tmp_path / 'missing.pth'))


def test_load_lpips_random_backbone_warns(shared_data, caplog):
  with caplog.at_level(logging.WARNING):
    params = lpips_import.load_lpips(
        'alex', str(shared_data / 'lpips' / 'alex.pth'), 'random')
  assert 'random-initialised LPIPS-alex backbone' in caplog.text
  assert 'linear layers' not in caplog.text
  assert params['net']['conv2']['kernel'].shape == (5, 5, 64, 192)
  raw = torch_pickle.load_torch_file(shared_data / 'lpips' / 'alex.pth')
  np.testing.assert_array_equal(params['lin']['lin1'],
                                raw['lin1.model.1.weight'].ravel())


def test_random_lin_is_non_negative(caplog):
  with caplog.at_level(logging.WARNING):
    params = lpips_import.load_lpips('alex', 'random', 'random')
  assert 'random-initialised LPIPS-alex linear layers' in caplog.text
  assert params['net']['conv5']['kernel'].shape == (3, 3, 256, 256)
  for k, c in enumerate(_CHANNELS['alex']):
    assert params['lin'][f'lin{k}'].shape == (c,)
    assert (params['lin'][f'lin{k}'] >= 0).all()
    assert params['lin'][f'lin{k}'].max() > 0


def test_random_vgg_backbone_has_all_thirteen_convs():
  params = lpips_import.random_backbone('vgg')
  assert len(params) == 13
  assert params['conv5_3']['kernel'].shape == (3, 3, 512, 512)
  assert params['conv1_1']['kernel'].shape == (3, 3, 3, 64)
