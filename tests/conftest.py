"""Test set-up: four forced CPU devices, a compilation cache, ../shared/data, a shared tiny SinGAN run."""

import atexit
import os
import pathlib
import shutil
import tempfile

# Must happen before jax is imported anywhere: tests check 1- vs 4-device runs.
os.environ['XLA_FLAGS'] = (
    os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=4'
)
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# One XLA compilation cache for this test session (and the CLI subprocesses
# it starts): the smoke runs compile the same steps again when they resume,
# and the GAN variants share their VGG and evaluation programs. Fresh per
# session, removed at exit; results are the same, only compiles are saved.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix='jaxsr-tests-xla-cache-')
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _CACHE
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')

import pytest  # pylint: disable=g-import-not-at-top

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / 'shared' / 'data'


@pytest.fixture
def shared_data():
  """The read-only reference data folder; skips the test when it is absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f'{SHARED_DATA} is absent')
  return SHARED_DATA


@pytest.fixture(scope='session')
def singan_tiny_run(tmp_path_factory):
  """(workdir, final state on the host) of experiments/singan.py:tiny (2
  scales x 2 iterations, a checkpoint per step), trained once per session
  for the tests that only read a finished run. Copy the workdir before
  writing into it."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxsr import train  # pylint: disable=g-import-not-at-top
  from tests import helpers  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp('singan_tiny')
  state = train.train_and_evaluate(helpers.experiment_config('singan', 'tiny'),
                                   str(workdir))
  return workdir, jax.device_get(state)


@pytest.fixture(scope='session')
def amgan_tiny_run(tmp_path_factory):
  """The workdir of experiments/amgan.py:tiny ('sr' and 'predictor', 2 steps
  each), trained once per session for the AMGAN-RL tests (init_from reads
  it; copy it before writing into it)."""
  from jaxsr import train  # pylint: disable=g-import-not-at-top
  from tests import helpers  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp('amgan_tiny')
  train.train_and_evaluate(helpers.experiment_config('amgan', 'tiny'),
                           str(workdir))
  return workdir
