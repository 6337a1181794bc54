"""Tests for the pytorch-fid / torchvision InceptionV3 weight importer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.models import inception
from jaxsr.pretrained import inception as inception_import
from jaxsr.pretrained import torch_writer
from tests.models import test_inception as ref


def _with_extras(sd, fc_rows):
  """Adds what real files hold beyond the features: fc, BN counters."""
  sd = dict(sd)
  sd['fc.weight'] = np.zeros((fc_rows, 4), np.float32)
  sd['fc.bias'] = np.zeros(fc_rows, np.float32)
  for key in [k for k in sd if k.endswith('bn.running_var')]:
    sd[key.replace('running_var', 'num_batches_tracked')] = np.zeros(
        (), np.int64)
  return sd


@pytest.mark.parametrize('legacy', [False, True])
def test_pytorch_fid_file_matches_numpy_blocks(tmp_path, legacy):
  rng = np.random.default_rng(10)
  sd = ref.torch_state_dict(rng, ref.BLOCK1)
  path = tmp_path / 'pt_inception-2015-12-05-6726825d.pth'
  torch_writer.save_torch_file(path, _with_extras(sd, 1008), legacy=legacy)
  variables = inception_import.load_inception(path)
  assert set(variables['params']) == set(ref.BLOCK1)
  kernel = variables['params']['Conv2d_4a_3x3']['conv']['kernel']
  assert kernel.shape == (3, 3, 80, 192) and kernel.dtype == np.float32
  x = rng.uniform(size=(1, 30, 27, 3)).astype(np.float32)
  names = ('conv2d_2b', 'block0', 'conv2d_4a', 'block1')
  model = inception.InceptionV3(outputs=names)
  out = jax.jit(model.apply)(variables, jnp.asarray(x))
  want = ref.numpy_stem(sd, x)
  for name in names:
    ref.assert_close(out[name], want[name], err_msg=name)


def test_full_layout_fills_every_variable():
  # Zero-stride views keep the 22M-float state dict cheap to build.
  shapes = ref.torchvision_conv_shapes()
  sd = {}
  for name, shape in shapes.items():
    cout = shape[0]
    sd[f'{name}.conv.weight'] = np.broadcast_to(np.float32(0.01), shape)
    for leaf in ('weight', 'bias', 'running_mean', 'running_var'):
      sd[f'{name}.bn.{leaf}'] = np.broadcast_to(np.float32(1.0), (cout,))
  sd['module.AuxLogits.fc.weight'] = np.zeros((1000, 768), np.float32)
  sd = {('module.' + k if not k.startswith('module.') else k): v
        for k, v in sd.items()}
  variables = inception_import.inception_from_torch(sd)
  model = inception.InceptionV3(outputs=('block3',))
  want = jax.eval_shape(model.init, jax.random.key(0),
                        jnp.zeros((1, 75, 75, 3)))
  got_shapes = jax.tree.map(np.shape, variables)
  want_shapes = jax.tree.map(lambda s: s.shape, want)
  assert got_shapes == want_shapes


def test_variant_of_reads_the_classifier():
  assert inception_import.variant_of(
      {'fc.weight': np.zeros((1008, 2))}) == 'fid'
  assert inception_import.variant_of(
      {'fc.weight': np.zeros((1000, 2))}) == 'torchvision'
  assert inception_import.variant_of({}) is None


def test_rejects_foreign_and_gapped_state_dicts(tmp_path):
  rng = np.random.default_rng(11)
  with pytest.raises(ValueError, match='unexpected keys'):
    inception_import.inception_from_torch(
        {'features.0.weight': np.zeros((4, 3, 3, 3))})
  gapped = ref.torch_state_dict(rng, ('Conv2d_1a_3x3', 'Conv2d_2b_3x3'))
  with pytest.raises(ValueError, match='a prefix of'):
    inception_import.inception_from_torch(gapped)
  path = tmp_path / 'stem.pth'
  torch_writer.save_torch_file(path, ref.torch_state_dict(rng, ref.STEM))
  deeper = inception.InceptionV3(outputs=('block1',))
  with pytest.raises(ValueError, match='lacks InceptionV3 modules'):
    inception_import.feature_variables(deeper, str(path))


def test_feature_variables_from_file_and_random(tmp_path, caplog):
  rng = np.random.default_rng(12)
  sd = ref.torch_state_dict(rng, ref.BLOCK1)
  path = tmp_path / 'fid.pth'
  torch_writer.save_torch_file(path, _with_extras(sd, 1008))
  model = inception.InceptionV3(outputs=('conv2d_2b',))
  variables = inception_import.feature_variables(model, str(path))
  # Only the layers the model uses.
  assert set(variables['params']) == set(ref.STEM)
  np.testing.assert_array_equal(
      variables['batch_stats']['Conv2d_2a_3x3']['bn']['var'],
      sd['Conv2d_2a_3x3.bn.running_var'])
  with caplog.at_level('WARNING'):
    random = inception_import.feature_variables(model, 'random')
  assert 'random-initialised InceptionV3' in caplog.text
  assert set(random['params']) == set(ref.STEM)
  with pytest.raises(FileNotFoundError, match='pt_inception'):
    inception_import.feature_variables(model, str(tmp_path / 'missing.pth'))


def test_wrong_shape_is_reported(tmp_path):
  rng = np.random.default_rng(13)
  sd = ref.torch_state_dict(rng, ref.STEM)
  sd['Conv2d_2b_3x3.conv.weight'] = np.zeros((32, 32, 3, 3), np.float32)
  path = tmp_path / 'bad.pth'
  torch_writer.save_torch_file(path, sd)
  model = inception.InceptionV3(outputs=('conv2d_2b',))
  with pytest.raises(ValueError, match='Conv2d_2b_3x3.*expected'):
    inception_import.feature_variables(model, str(path))
