"""Shared test helpers: load experiment configs, override them, random batches."""

import importlib.util
import pathlib

import jax.numpy as jnp
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_experiment(name, arg=None):
  """experiments/<name>.py's get_config(arg) (experiments/ is not a package)."""
  spec = importlib.util.spec_from_file_location(
      name, REPO / 'experiments' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def experiment_config(name, arg='tiny', **overrides):
  """An unlocked config with 'section.field' overrides applied."""
  config = load_experiment(name, arg)
  config.unlock()
  for key, value in overrides.items():
    section, _, field = key.rpartition('.')
    (config[section] if section else config)[field] = value
  return config


def random_batch(config, n=4, seed=0):
  """A batch of uniform random LR/HR images shaped for config."""
  rng = np.random.default_rng(seed)
  p, s = config.data.hr_patch, config.scale
  return {'lr': jnp.asarray(rng.random((n, p // s, p // s, 3), np.float32)),
          'hr': jnp.asarray(rng.random((n, p, p, 3), np.float32))}
