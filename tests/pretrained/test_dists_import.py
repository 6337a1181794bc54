"""Tests for jaxsr.pretrained.dists: weights.pt, module state dicts, VGG16."""

import csv
import logging
import os

import chex
import jax
import numpy as np
import pytest

from jaxsr.data import io
from jaxsr.losses import dists
from jaxsr.models import vgg
from jaxsr.pretrained import dists as dists_import
from jaxsr.pretrained import torch_pickle
from jaxsr.pretrained import torch_writer
from tests.losses import test_dists
from tests.models import test_dists_vgg
from tests.models import test_vgg
from tests.pretrained import test_vgg_import

# A torchvision vgg16-397923af.pth, when one is at hand, for the golden test.
VGG16_ENV = 'JAXSR_TEST_VGG16'


def _official(alpha, beta):
  """The official weights.pt layout: (1, 1475, 1, 1) float32 each."""
  return {'alpha': alpha.reshape(1, -1, 1, 1),
          'beta': beta.reshape(1, -1, 1, 1)}


def _module_state_dict(weights, alpha, beta):
  """A whole-module `DISTS.state_dict()`, buffers included."""
  # Official stages end after features 3, 8, 15, 22; pools sit at 4, 9, 16,
  # 23 and open stages 2 ... 5.
  stage_of = lambda n: 1 + sum(n >= pool for pool in (4, 9, 16, 23))
  sd = {}
  index = dict(zip(vgg.vgg_conv_names(16), test_vgg._TORCHVISION_VGG16_CONVS))
  for conv, n in index.items():
    w, b = weights[conv]
    sd[f'stage{stage_of(n)}.{n}.weight'] = w
    sd[f'stage{stage_of(n)}.{n}.bias'] = b
  for stage, (n, c) in enumerate(zip((4, 9, 16, 23), (64, 128, 256, 512)), 2):
    sd[f'stage{stage}.{n}.filter'] = np.zeros((c, 1, 3, 3), np.float32)
  sd['mean'] = np.float32([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
  sd['std'] = np.float32([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
  sd.update(_official(alpha, beta))
  return sd


def test_real_weights_file(shared_data):
  path = shared_data / 'dists' / 'weights.pt'
  alpha, beta = dists_import.load_alpha_beta(path)
  raw = torch_pickle.load_torch_file(path)
  for name, value in (('alpha', alpha), ('beta', beta)):
    chex.assert_shape(value, (1475,))
    chex.assert_type(value, np.float32)
    assert raw[name].shape == (1, 1475, 1, 1)
    np.testing.assert_array_equal(value, raw[name].reshape(-1))
    assert np.all(value >= 0)
  # The trained weights are already normalized: sum alpha + sum beta = 1,
  # most of it on alpha (the texture / mean term).
  np.testing.assert_allclose(alpha.sum() + beta.sum(), 1.0, atol=1e-6)
  np.testing.assert_allclose(alpha.sum(), 0.87605, atol=1e-5)


def test_official_file_with_torchvision_vgg16_matches_numpy(tmp_path):
  weights = test_dists_vgg.random_vgg16()
  alpha, beta = test_dists.synthetic_alpha_beta()
  torch_writer.save_torch_file(tmp_path / 'weights.pt', _official(alpha, beta),
                               legacy=True)
  torch_writer.save_torch_file(
      tmp_path / 'vgg16.pth',
      test_vgg_import._torchvision_state_dict(weights, 16))
  params = dists_import.load_params(str(tmp_path / 'weights.pt'),
                                    str(tmp_path / 'vgg16.pth'))
  chex.assert_trees_all_equal(params['vgg'], test_vgg.to_flax(weights))
  np.testing.assert_array_equal(params['alpha'], alpha)
  np.testing.assert_array_equal(params['beta'], beta)
  x, y = test_dists._images(11, noise=0.3)
  ref = test_dists.numpy_dists_images(weights, alpha, beta, x, y)
  np.testing.assert_allclose(test_dists.dists_jit(x, y, params), ref,
                             rtol=1e-4, atol=1e-6)


def test_module_state_dict_holds_the_vgg16(tmp_path):
  weights = test_dists_vgg.random_vgg16()
  alpha, beta = test_dists.synthetic_alpha_beta()
  path = tmp_path / 'DISTS_weights-f5e65c96.pth'
  torch_writer.save_torch_file(path, _module_state_dict(weights, alpha, beta))
  params = dists_import.load_params(str(path))
  chex.assert_trees_all_equal(params['vgg'], test_vgg.to_flax(weights))
  np.testing.assert_array_equal(params['alpha'], alpha)
  # A missing conv is named, with the file.
  sd = _module_state_dict(weights, alpha, beta)
  del sd['stage3.12.weight'], sd['stage3.12.bias']
  torch_writer.save_torch_file(path, sd)
  with pytest.raises(ValueError, match='unusable.*12'):
    dists_import.load_params(str(path))


def test_random_parts_are_warned(caplog):
  with caplog.at_level(logging.WARNING):
    params = dists_import.load_params('random', 'random')
  assert 'random-initialised DISTS alpha/beta' in caplog.text
  assert 'random-initialised VGG16 (DISTS backbone)' in caplog.text
  chex.assert_trees_all_equal_shapes(
      params['vgg'], test_vgg.to_flax(test_dists_vgg.random_vgg16()))
  assert abs(params['alpha'].mean() - 0.1) < 2e-3


def test_bad_files_say_what_was_expected(tmp_path):
  missing = tmp_path / 'weights.pt'
  with pytest.raises(FileNotFoundError, match='weights.pt.*dists-pytorch'):
    dists_import.load_params(str(missing), 'random')
  garbage = tmp_path / 'garbage.pt'
  garbage.write_bytes(b'not a torch file at all')
  with pytest.raises(ValueError, match='expected a torch.save file'):
    dists_import.load_alpha_beta(garbage)
  alpha, beta = test_dists.synthetic_alpha_beta()
  only_alpha = tmp_path / 'alpha.pt'
  torch_writer.save_torch_file(only_alpha, {'alpha': alpha}, legacy=True)
  with pytest.raises(ValueError, match=r"one DISTS 'beta'.*\['alpha'\]"):
    dists_import.load_alpha_beta(only_alpha)
  short = tmp_path / 'short.pt'
  torch_writer.save_torch_file(short, _official(alpha[:64], beta[:64]))
  with pytest.raises(ValueError, match=r'\(1, 64, 1, 1\).*1475'):
    dists_import.load_alpha_beta(short)
  official = tmp_path / 'official.pt'
  torch_writer.save_torch_file(official, _official(alpha, beta), legacy=True)
  with pytest.raises(ValueError, match='hold no VGG16.*vgg16-397923af'):
    dists_import.load_params(str(official))
  # A VGG19 file where the VGG16 belongs.
  vgg19 = tmp_path / 'vgg19.pth'
  w19 = test_vgg.random_torch_weights(19, np.random.default_rng(0),
                                      upto='conv1_2')
  sd = test_vgg_import._torchvision_state_dict(
      {**test_dists_vgg.random_vgg16(), **w19}, 16)
  sd['features.34.weight'] = np.zeros((512, 512, 3, 3), np.float32)
  sd['features.34.bias'] = np.zeros(512, np.float32)
  torch_writer.save_torch_file(vgg19, sd)
  with pytest.raises(ValueError, match='VGG16 has convs at features'):
    dists_import.load_params(str(official), str(vgg19))


def test_official_values_of_tid2013_pairs(shared_data):
  """Golden values of IQA-PyTorch (official weights), with a real VGG16."""
  vgg16 = os.environ.get(VGG16_ENV)
  if not vgg16 or not os.path.isfile(vgg16):
    pytest.skip(f'set {VGG16_ENV} to a torchvision vgg16-397923af.pth')
  params = dists_import.load_params(
      str(shared_data / 'dists' / 'weights.pt'), vgg16)
  folder = shared_data / 'iqa-calibration'
  with open(folder / 'results_official.csv', newline='') as f:
    rows = {row[0]: row[1:] for row in csv.reader(f)}
  names, expected = rows['Method'], [float(v) for v in rows['dists']]
  fn = jax.jit(dists.dists)
  for name, want in zip(names, expected):
    ref = io.read_image_float(folder / 'ref_dir' / name)[None]
    dist = io.read_image_float(folder / 'dist_dir' / name)[None]
    got = float(fn(dist, ref, params)[0])
    # The listed values have 4 significant digits.
    assert got == pytest.approx(want, rel=2e-3, abs=1e-4), name
