"""Experiment configs for the benchmarks: experiments/<name>.py, unlocked."""

import importlib.util
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]


def experiment(name: str, arg: str | None = None):
  """get_config(arg) of experiments/<name>.py, unlocked for benchmark edits."""
  spec = importlib.util.spec_from_file_location(
      name, REPO / 'experiments' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg)
  config.unlock()
  return config


def for_speed(config):
  """Random VGG weights (speed does not need them) and, for GAN methods, the
  GAN step from step 0 (time it, not the PSNR warm-up); returns config."""
  if 'perceptual' in config:
    config.perceptual.weights = 'random'
    config.psnr_warmup_steps = 0
  return config
