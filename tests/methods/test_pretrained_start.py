"""GAN training starts from a PSNR-trained G, as the papers do (issue 16, item 20).

Paper 000 §4.1: "we pre-train the GAN and L as PSNR-oriented models to get the
initial weights"; paper 002 §SR: "The generator's weights are initialized to
those of a pre-trained model optimized to minimize mean squared error". A GAN
config with neither config.init_from nor a PSNR warm-up would start from the
random init: training refuses it unless config.allow_random_g is set.
"""

import logging
import os

import pytest

from jaxsr import methods
from jaxsr import train
from tests import helpers

GAN_EXPERIMENTS = ('esrgan', 'esrgan_sn', 'lsrgan', 'cesrgan', 'clsrgan',
                   'san_sr')


@pytest.mark.parametrize('name', GAN_EXPERIMENTS)
def test_paper_configs_refuse_a_random_g(name, tmp_path):
  config = helpers.experiment_config(name, None)
  assert config.allow_random_g is False
  assert (config.init_from, config.psnr_warmup_steps) == ('', 0)
  check = methods.build(config).check_start
  with pytest.raises(ValueError, match='random G') as error:
    check(str(tmp_path))
  # One line naming every way out.
  message = str(error.value)
  assert '\n' not in message
  for way_out in ('--config.init_from=', '--config.psnr_warmup_steps',
                  '--config.allow_random_g=True'):
    assert way_out in message
  assert not os.listdir(tmp_path)  # Nothing written.


@pytest.mark.parametrize('overrides', [
    {'init_from': '/runs/psnr'},  # The papers' way.
    {'psnr_warmup_steps': 10},  # A warm-up (the demos).
    {'psnr_warmup_steps': 10, 'train.num_steps': 10},  # PSNR only, no GAN.
])
@pytest.mark.parametrize('name', ['lsrgan', 'san_sr'])
def test_pretrained_starts_pass(name, overrides, tmp_path):
  config = helpers.experiment_config(name, None, **overrides)
  methods.build(config).check_start(str(tmp_path))


def test_resumed_run_passes(tmp_path):
  """A workdir with a checkpoint resumes its own G, not a random one."""
  check = methods.build(helpers.experiment_config('lsrgan', None)).check_start
  (tmp_path / 'checkpoints').mkdir()
  with pytest.raises(ValueError, match='random G'):
    check(str(tmp_path))  # An empty checkpoints folder is no run.
  (tmp_path / 'checkpoints' / '1200').mkdir()
  check(str(tmp_path))


def test_override_starts_with_a_warning(tmp_path, caplog):
  config = helpers.experiment_config('san_sr', None, allow_random_g=True)
  with caplog.at_level(logging.WARNING):
    methods.build(config).check_start(str(tmp_path))
  assert 'random G' in caplog.text


def test_training_refuses_before_writing_anything(tmp_path):
  """train_and_evaluate on a tiny LSRGAN without warm-up fails at once and
  leaves no workdir behind (no config.json, no checkpoints)."""
  workdir = tmp_path / 'run'
  config = helpers.experiment_config('lsrgan', 'tiny', psnr_warmup_steps=0)
  with pytest.raises(ValueError, match='allow_random_g'):
    train.train_and_evaluate(config, str(workdir))
  assert not workdir.exists()
