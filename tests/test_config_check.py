"""Config values are validated before anything is built; unknown override keys are named with their section."""

import itertools

import jax
import jax.numpy as jnp
import pytest

from jaxsr import config_check
from jaxsr import config_lib
from jaxsr.models import rrdbnet
from jaxsr.models import srresnet
from tests import helpers

VARIANTS = {
    'rrdb_psnr': ('', 'demo', 'tiny'),
    'esrgan': ('', 'demo', 'tiny'), 'esrgan_sn': ('', 'demo', 'tiny'),
    'lsrgan': ('', 'demo', 'tiny'), 'cesrgan': ('', 'demo', 'tiny'),
    'clsrgan': ('', 'demo', 'tiny'),
    'san_sr': ('', 'adv001', 'official', 'psnr', 'demo', 'tiny', 'nobn',
               'nobn,tiny'),
    'singan': ('', 'singan', 'ttur_pgd', 'sr', 'demo', 'sr_demo', 'tiny',
               'sr,tiny'),
    'amgan': ('', 'ragan', 'demo', 'tiny'),
    'amgan_rl': ('', 'demo', 'tiny', 'as_written', 'demo,psnr'),
}


def _config(name, arg='tiny', **overrides):
  return helpers.experiment_config(name, arg or None, **overrides)


def _runnable(config, tmp_path):
  """A paper config with the paths a user must give filled in."""
  if config.get('data', {}).get('source') == 'folder':
    config.data.train_dir = str(tmp_path)
  if config.get('perceptual', {}).get('weights') == '':
    config.perceptual.weights = 'random'
  for key, value in config.get('features', {}).items():
    config.features[key] = value or 'random'
  return config


def test_every_experiment_variant_is_valid_and_every_field_has_a_rule(
    tmp_path):
  for name, args in VARIANTS.items():
    for arg in args:
      config = _runnable(_config(name, arg), tmp_path)
      config_check.validate(config)
      missing = [p for p, _ in config_check.leaves(config)
                 if config_check.rule_for(p) is None]
      assert not missing, f'{name}:{arg} has fields without a rule: {missing}'


def _init_ok(module, lr_size):
  try:
    jax.eval_shape(module.init, jax.random.key(0),
                   jnp.zeros((1, lr_size, lr_size, 3)))
  except ValueError:
    return False
  return True


@pytest.mark.parametrize('name,build', [
    ('rrdb_psnr', lambda s: rrdbnet.RRDBNet(scale=s, num_feat=4, num_block=1,
                                            num_grow_ch=4)),
    ('san_sr', lambda s: srresnet.SRResNet(scale=s, num_feat=4, num_block=1)),
])
def test_scales_accepted_are_the_scales_the_generator_builds(name, build):
  """validate() agrees with the generator itself (traced, not run) on every
  scale 0..9: the error comes first, not after building."""
  for scale in range(0, 10):
    # The LSR encoder has scale rules of its own (tested below).
    extra = {'encoder.enabled': False} if name == 'rrdb_psnr' else {}
    config = _config(name, **{'scale': scale,
                              'data.hr_patch': 128 * max(scale, 1)}, **extra)
    try:
      config_check.validate(config)
      accepted = True
    except ValueError as e:
      assert f'config.scale={scale}' in str(e)
      accepted = False
    assert accepted == (scale >= 1 and _init_ok(build(scale), 8)), scale


def test_scale_zero_and_five_are_one_clear_error():
  with pytest.raises(ValueError, match=r'^config.scale=0: expected'):
    config_check.validate(_config('rrdb_psnr', scale=0))
  with pytest.raises(ValueError, match=r'config.scale=5: expected one of 1, 2, '
                     r'3, 4 \(the RRDBNet generator\)'):
    config_check.validate(_config('rrdb_psnr', scale=5, **{
        'data.hr_patch': 40}))
  with pytest.raises(ValueError, match='config.scale=1'):
    config_check.validate(_config('singan', scale=1))


@pytest.mark.parametrize('name,key,value,words', [
    ('rrdb_psnr', 'data.batch_size', 0, 'an integer >= 1'),
    ('rrdb_psnr', 'optim.lr', -1e-4, 'a number > 0'),
    ('rrdb_psnr', 'optim.b1', 1.0, 'in [0, 1)'),
    ('rrdb_psnr', 'train.log_every', 0, 'an integer >= 1'),
    ('rrdb_psnr', 'model.dtype', 'float64', "'bfloat16'"),
    ('rrdb_psnr', 'data.source', 'web', "'folder', 'demo', 'tfds'"),
    ('rrdb_psnr', 'data.hr_patch', 30, 'a multiple of config.scale=4'),
    ('rrdb_psnr', 'optim.microbatch_size', 3, 'a divisor of config.data'),
    ('rrdb_psnr', 'seed', -1, 'an integer >= 0'),
    ('rrdb_psnr', 'encoder.cut', 'conv1_1', 'downsamples by 1'),
    ('lsrgan', 'loss.gan_type', 'lsgan', 'one of'),
    ('lsrgan', 'data.hr_patch', 96, "discriminator's input size"),
    ('lsrgan', 'ema.decay', 1.0, 'in [0, 1)'),
    ('san_sr', 'data.hr_patch', 12, 'the critic crop'),
    ('san_sr', 'critic.ratio', 0.0, 'in (0, 1]'),
    ('singan', 'adversarial.mode', 'fgsm', "'adaptive'"),
    ('singan', 'pyramid.scale_factor', 1.0, 'in (0, 1)'),
])
def test_a_bad_value_names_its_key_and_what_is_expected(name, key, value,
                                                        words):
  config = _config(name, **{key: value})
  with pytest.raises(ValueError) as e:
    config_check.validate(config)
  message = str(e.value)
  assert message.startswith(f'config.{key}=') or f'config.{key}' in message
  assert words in message and '\n' not in message


def test_missing_files_and_folders_are_named(tmp_path):
  config = _config('rrdb_psnr', **{'data.source': 'folder'})
  with pytest.raises(ValueError, match='config.data.train_dir is empty'):
    config_check.validate(config)
  config.data.train_dir = str(tmp_path / 'nope')
  with pytest.raises(FileNotFoundError, match='data.train_dir=.*nope'):
    config_check.validate(config)
  config = _config('lsrgan', **{'perceptual.weights': ''})
  with pytest.raises(ValueError, match='perceptual.weights is empty'):
    config_check.validate(config)
  config.perceptual.weights = str(tmp_path / 'vgg19.pth')
  with pytest.raises(FileNotFoundError, match='vgg19.pth'):
    config_check.validate(config)


def test_batch_must_split_over_the_devices():
  config = _config('rrdb_psnr', **{'data.batch_size': 6})
  config_check.check_devices(config, 2)
  with pytest.raises(ValueError, match='multiple of the number of devices'):
    config_check.check_devices(config, 4)
  config_check.check_devices(_config('singan'), 3)  # One device, no batch.


def test_unknown_key_names_the_section_and_valid_keys():
  config = config_lib.load_file(str(helpers.REPO / 'experiments' /
                                    'rrdb_psnr.py') + ':tiny')
  message = config_lib.unknown_key(config, 'model.nonsense')
  assert "unknown config key 'nonsense' in config.model" in message
  for key in config.model:
    assert key in message
  assert 'did you mean' not in message
  assert "did you mean 'num_steps'" in config_lib.unknown_key(
      config, 'train.num_stepz')
  top = config_lib.unknown_key(config, 'nonsense.x')
  assert 'top level' in top and 'train' in top and 'model' in top
  assert 'not a section' in config_lib.unknown_key(config, 'scale.x')
  for path, _ in itertools.islice(config_check.leaves(config), 50):
    assert config_lib.unknown_key(config, path) == ''
