"""Every experiment config loads, locks, builds its method and shapes its state."""

import pathlib

import jax
import pytest

from jaxsr import methods
from jaxsr.methods import base
from tests.helpers import load_experiment

EXPERIMENTS = sorted(p.stem for p in (pathlib.Path(__file__).resolve().parents[1]
                                      / 'experiments').glob('*.py'))
VARIANTS = {name: [None, 'demo', 'tiny'] for name in (
    'rrdb_psnr', 'esrgan', 'esrgan_sn', 'lsrgan', 'cesrgan', 'clsrgan')}
VARIANTS['san_sr'] = [None, 'adv001', 'official', 'psnr', 'demo', 'tiny',
                     'nobn', 'nobn,demo', 'nobn,adv001']
VARIANTS['singan'] = [None, 'singan', 'ttur', 'ttur_fgm', 'ttur_pgd',
                      'ttur_adaptive', 'sr', 'demo', 'sr_demo', 'tiny',
                      'sr,ttur_pgd']
# The DCGAN prior's variants read ../shared/data/face_prior (a StyleGAN2 file
# is the user's: the default is checked for its refusal instead).
VARIANTS['face_explore'] = ['demo', 'demo_lfw', 'demo,pulse',
                            'demo,no_semantic', 'demo,tiny']
VARIANTS['amgan'] = [None, 'ragan', 'demo', 'tiny', 'demo,ragan']
VARIANTS['amgan_rl'] = [None, 'demo', 'tiny', 'as_written', 'psnr',
                        'demo,as_written']


@pytest.mark.parametrize('name', EXPERIMENTS)
def test_every_experiment_has_listed_variants(name):
  assert name in VARIANTS, f'add experiments/{name}.py variants to VARIANTS'


@pytest.mark.parametrize('name,arg', [(n, a) for n, args in VARIANTS.items()
                                      for a in args])
def test_config_builds(name, arg):
  config = load_experiment(name, arg)
  if name == 'face_explore' and not pathlib.Path(
      config.prior.weights).is_dir():
    pytest.skip(f'{config.prior.weights} is absent')
  with pytest.raises(AttributeError):
    config.not_a_field = 1  # Locked: typos in overrides are errors.
  method = methods.build(config)
  state = jax.eval_shape(method.init, base.init_key(0))
  assert state.step.shape == ()
  if config.method == 'face_explore':  # The search is the prediction.
    assert method.stages == () and method.finish is not None
    return
  if config.method == 'amgan':  # SR with the true code, the predictor, RL.
    want = [('sr', config.train.num_steps),
            ('predictor', config.predictor_steps),
            ('fill', config.rl.fill_steps), ('ddpg', config.rl.ddpg_steps)]
    assert [(s.name, s.num_steps) for s in method.stages] == [
        (n, k) for n, k in want if k]
    # experiments/amgan_rl.py: the RL stages alone, from a trained AMGAN.
    assert (name == 'amgan_rl') == (method.stages[0].name == 'fill')
    return
  if config.method == 'singan':  # One stage per scale of the pyramid.
    assert [s.name for s in method.stages] == [
        f'scale_{n}' for n in range(len(state.reals))]
    return
  # The stages cover train.num_steps; a GAN config's warm-up comes first.
  assert method.num_steps == config.train.num_steps
  warmup = min(config.get('psnr_warmup_steps', 0), config.train.num_steps)
  names = [s.name for s in method.stages]
  if config.method == 'psnr' or warmup == config.train.num_steps:
    assert names == ['psnr']
  else:
    assert names == (['psnr', 'gan'] if warmup else ['gan'])
    assert method.stages[-1].num_steps == config.train.num_steps - warmup


def test_face_explore_default_needs_a_prior_file():
  config = load_experiment('face_explore')
  with pytest.raises(ValueError, match='prior.weights is empty'):
    methods.build(config)


def test_unknown_variant():
  with pytest.raises(ValueError, match='unknown variant'):
    load_experiment('rrdb_psnr', 'nope')


def test_paper_values_are_the_default():
  config = load_experiment('rrdb_psnr')
  assert (config.scale, config.data.hr_patch, config.data.batch_size) == (
      4, 128, 16)
  assert (config.optim.lr, config.optim.b1, config.optim.b2,
          config.optim.eps) == (2e-4, 0.9, 0.999, 1e-8)
  assert (config.optim.decay_every, config.optim.decay_factor) == (
      200_000, 0.5)
  assert config.train.num_steps == 500_000
  assert (config.model.num_feat, config.model.num_block,
          config.model.num_grow_ch, config.model.bicubic_skip) == (
              64, 23, 32, False)
