"""Tests for VGG weight import: torchvision, Keras .h5, .npz, LSR trunk."""

import functools

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.models import encoders
from jaxsr.models import vgg
from jaxsr.pretrained import canonical
from jaxsr.pretrained import torch_writer
from jaxsr.pretrained import vgg as vgg_import
from tests.models import test_vgg

_key = functools.partial(jax.random.key, impl='rbg')


def _torchvision_state_dict(weights, depth):
  """{conv: (OIHW, bias)} -> torchvision's `features.{n}` + a classifier."""
  index = dict(zip(vgg.vgg_conv_names(depth),
                   test_vgg._TORCHVISION_VGG19_CONVS if depth == 19
                   else test_vgg._TORCHVISION_VGG16_CONVS))
  sd = {}
  for name, (w, b) in weights.items():
    sd[f'features.{index[name]}.weight'] = w
    sd[f'features.{index[name]}.bias'] = b
  # Real classifier weights are 100M floats; the importer ignores them.
  sd['classifier.0.weight'] = np.zeros((4, 8), np.float32)
  sd['classifier.0.bias'] = np.zeros(4, np.float32)
  return sd


def _check_features(params, weights, depth, layers, norm='imagenet', hw=32):
  x = np.random.default_rng(7).uniform(size=(1, hw, hw, 3)).astype(np.float32)
  model = vgg.VGG(depth=depth, layers=layers, input_norm=norm)
  out = model.apply({'params': params}, jnp.asarray(x))
  ref = test_vgg.numpy_vgg(weights, x, depth, norm)
  for name in layers:
    scale = np.abs(ref[name]).max()
    assert scale > 0, name
    np.testing.assert_allclose(out[name], ref[name], atol=2e-4 * scale,
                               err_msg=name)


@pytest.mark.parametrize('depth, legacy', [(19, False), (16, True)])
def test_torchvision_file_matches_numpy_vgg(tmp_path, depth, legacy):
  weights = test_vgg.random_torch_weights(depth, np.random.default_rng(depth))
  path = tmp_path / f'vgg{depth}.pth'
  torch_writer.save_torch_file(
      path, _torchvision_state_dict(weights, depth), legacy=legacy)
  params = vgg_import.load_vgg(path, depth)
  assert tuple(params) == vgg.vgg_conv_names(depth)
  last = 'conv5_4' if depth == 19 else 'conv5_3'
  # 32x32 reaches 2x2 at block 5: every conv and pool is exercised.
  _check_features(params, weights, depth,
                  ('relu1_2', 'conv3_1', 'pool3', 'relu4_2', last, 'pool5'))


def test_torchvision_wrong_depth_or_bn_raises():
  weights = test_vgg.random_torch_weights(16, np.random.default_rng(0))
  sd = _torchvision_state_dict(weights, 16)
  with pytest.raises(ValueError, match='VGG19 has convs at features'):
    vgg_import.vgg_from_torchvision(sd, 19)
  with pytest.raises(ValueError, match='batch-norm'):
    vgg_import.vgg_from_torchvision(
        dict(sd, **{'features.1.running_mean': np.zeros(64)}), 16)
  with pytest.raises(ValueError, match='features'):
    vgg_import.vgg_from_torchvision({'conv.weight': np.zeros(1)}, 16)
  # A DataParallel / wrapper prefix is fine.
  params = vgg_import.vgg_from_torchvision(
      {f'module.vgg.{k}': v for k, v in sd.items()}, 16)
  np.testing.assert_array_equal(params['conv2_1']['bias'],
                                weights['conv2_1'][1])


def _write_keras(path, weights, style):
  """Writes {conv: (OIHW, bias)} as a Keras VGG .h5 in one of its layouts."""
  with h5py.File(path, 'w') as f:
    root = f.create_group('model_weights') if style == 'model' else f
    names = [f'block{n[4]}_conv{n[6]}' for n in weights]
    root.attrs['layer_names'] = [b'input_1'] + [n.encode() for n in names]
    root.create_group('input_1').attrs['weight_names'] = []
    for conv, keras in zip(weights, names):
      w, b = weights[conv]
      group = root.create_group(keras)
      if style == 'keras1':  # Keras 1: flat datasets, _W / _b names
        entries = {f'{keras}_W_1:0': w.transpose(2, 3, 1, 0),
                   f'{keras}_b_1:0': b}
      else:  # Keras 2 / TF2: a subgroup per layer, kernel:0 and bias:0
        entries = {f'{keras}/kernel:0': w.transpose(2, 3, 1, 0),
                   f'{keras}/bias:0': b}
      group.attrs['weight_names'] = [k.encode() for k in entries]
      for name, value in entries.items():
        group.create_dataset(name, data=value)


def test_keras_h5_matches_numpy_caffe_vgg_and_folds(tmp_path):
  weights = test_vgg.random_torch_weights(16, np.random.default_rng(3))
  paths = {}
  for style in ('keras2', 'keras1', 'model'):
    paths[style] = tmp_path / f'vgg16_{style}.h5'
    _write_keras(paths[style], weights, style)

  raw = vgg_import.vgg_from_keras(paths['keras2'], 16, input_norm='caffe')
  for style in ('keras1', 'model'):
    other = vgg_import.vgg_from_keras(paths[style], 16, input_norm='caffe')
    jax.tree.map(np.testing.assert_array_equal, other, raw)
  # Keras weights on Caffe inputs (BGR, 0..255, mean-subtracted).
  _check_features(raw, weights, 16, ('conv1_1', 'conv2_2', 'conv5_3'),
                  norm='caffe')

  # The default folds Caffe preprocessing into conv1_1: the same conv1_1
  # features from ImageNet-normalized RGB, away from the zero-padded border.
  folded = vgg_import.load_vgg(paths['keras2'], 16)
  x = jnp.asarray(np.random.default_rng(1).uniform(size=(2, 12, 12, 3)),
                  jnp.float32)
  a = vgg.VGG(16, ('conv1_1',)).apply({'params': folded}, x)['conv1_1']
  b = vgg.VGG(16, ('conv1_1',), input_norm='caffe').apply(
      {'params': raw}, x)['conv1_1']
  scale = float(jnp.abs(b).max())
  np.testing.assert_allclose(a[:, 1:-1, 1:-1], b[:, 1:-1, 1:-1],
                             atol=1e-5 * scale)
  assert float(jnp.abs(a - b).max()) > 1e-3 * scale  # the border differs


def test_keras_errors(tmp_path):
  weights = test_vgg.random_torch_weights(16, np.random.default_rng(3),
                                          upto='conv2_1')
  path = tmp_path / 'partial.h5'
  _write_keras(path, weights, 'keras2')
  with pytest.raises(ValueError, match='block2_conv2 of VGG16 is missing'):
    vgg_import.load_vgg(path, 16)
  th = tmp_path / 'th.h5'
  with h5py.File(th, 'w') as f:
    # Theano ordering: (O, I, kh, kw) kernels.
    group = f.create_group('block1_conv1')
    group.create_dataset('block1_conv1_W', data=np.zeros((64, 3, 3, 3)))
    group.create_dataset('block1_conv1_b', data=np.zeros(64))
  with pytest.raises(ValueError, match='th_dim_ordering'):
    vgg_import.load_vgg(th, 16)
  with h5py.File(tmp_path / 'other.h5', 'w') as f:
    f.create_group('dense_1')
  with pytest.raises(ValueError, match='no Keras VGG layer group'):
    vgg_import.load_vgg(tmp_path / 'other.h5', 16)


def test_npz_round_trip_and_bad_suffix(tmp_path):
  weights = test_vgg.random_torch_weights(16, np.random.default_rng(0),
                                          upto='conv2_2')
  params = test_vgg.to_flax(weights)
  canonical.save_npz(tmp_path / 'vgg16.npz', {'params': params})
  loaded = vgg_import.load_vgg(tmp_path / 'vgg16.npz', 16)
  jax.tree.map(np.testing.assert_array_equal, loaded, params)
  with pytest.raises(ValueError, match="suffix '.ckpt'"):
    vgg_import.load_vgg(tmp_path / 'vgg16.ckpt', 16)
  canonical.save_npz(tmp_path / 'bad.npz', {'conv1_2': params['conv1_2']})
  with pytest.raises(ValueError, match='conv1_1'):
    vgg_import.load_vgg(tmp_path / 'bad.npz', 16)


def test_lsr_encoder_trunk_runs_as_vgg16():
  weights = test_vgg.random_torch_weights(16, np.random.default_rng(5),
                                          upto='conv3_3')
  vgg16 = test_vgg.to_flax(weights)
  trunk = vgg_import.lsr_encoder_trunk(vgg16, cut='conv3_3')
  assert tuple(trunk) == encoders.VGG16_CONVS[:7]
  with pytest.raises(ValueError, match='conv4_1'):
    vgg_import.lsr_encoder_trunk(vgg16, cut='conv4_3')

  model = encoders.LSREncoder(scale=4, cut='conv3_3', num_upsample_feat=8)
  hr = jax.random.uniform(_key(1), (1, 16, 16, 3))
  # Shapes only (a real init costs seconds); non-trunk leaves are random.
  rng = np.random.default_rng(6)
  params = jax.tree.map(
      lambda s: rng.standard_normal(s.shape).astype(np.float32) * 0.1,
      jax.eval_shape(model.init, _key(0), hr)['params'],
  )
  merged = vgg_import.with_vgg16_trunk(params, vgg16)
  assert set(merged) == set(params)
  np.testing.assert_array_equal(merged['conv_last']['kernel'],
                                params['conv_last']['kernel'])
  # The encoder's conv3_3 output (before its ReLU) is VGG16's conv3_3.
  _, state = model.apply({'params': merged}, hr, capture_intermediates=True)
  got = state['intermediates']['conv3_3']['__call__'][0]
  want = vgg.VGG(16, ('conv3_3',)).apply({'params': trunk}, hr)['conv3_3']
  np.testing.assert_allclose(got, want,
                             atol=1e-4 * float(jnp.abs(want).max()))
  bad = dict(vgg16, conv2_1={'kernel': np.zeros((3, 3, 64, 64)),
                             'bias': np.zeros(64)})
  with pytest.raises(ValueError, match=r'conv2_1/kernel is \(3, 3, 64, 128\)'):
    vgg_import.with_vgg16_trunk(params, bad)
