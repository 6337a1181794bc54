"""Test set-up: four forced CPU devices, and the path to ../shared/data."""

import os
import pathlib

# Must happen before jax is imported anywhere: tests check 1- vs 4-device runs.
os.environ['XLA_FLAGS'] = (
    os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=4'
)
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pytest  # pylint: disable=g-import-not-at-top

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / 'shared' / 'data'


@pytest.fixture
def shared_data():
  """The read-only reference data folder; skips the test when it is absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f'{SHARED_DATA} is absent')
  return SHARED_DATA
