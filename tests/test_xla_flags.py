"""The XLA:CPU defaults of `import jaxsr`: which flags, when, and that they act."""

import os
import subprocess
import sys

import jaxlib
import pytest

from jaxsr import xla_flags

FLAG = '--xla_cpu_experimental_ynn_fusion_type'
SCHED = '--xla_cpu_enable_concurrency_optimized_scheduler'
BOTH = f'{FLAG}= {SCHED}=false'
HAS_YNN = xla_flags._version(jaxlib.version.__version__) >= (0, 8, 1)


def test_adds_both_flags_to_empty_flags():
  assert xla_flags.with_cpu_defaults('', '0.10.2') == BOTH


def test_keeps_other_flags_and_appends():
  got = xla_flags.with_cpu_defaults(
      ' --xla_force_host_platform_device_count=4 ', '0.8.1')
  assert got == f'--xla_force_host_platform_device_count=4 {BOTH}'


@pytest.mark.parametrize('user', [
    f'{FLAG}=LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION',
    f'{FLAG}=',
    f'--xla_cpu_use_xnnpack=true {FLAG}',
    f'{FLAG} --xla_cpu_use_xnnpack=true',
])
def test_a_ynn_flag_the_user_sets_stands(user):
  assert xla_flags.with_cpu_defaults(user, '0.10.2') == f'{user} {SCHED}=false'


@pytest.mark.parametrize('user', [f'{SCHED}=true', f'{SCHED}', f'{SCHED}=0'])
def test_a_scheduler_flag_the_user_sets_stands(user):
  assert xla_flags.with_cpu_defaults(user, '0.10.2') == f'{user} {FLAG}='


def test_a_longer_flag_with_the_same_prefix_is_not_the_flag():
  got = xla_flags.with_cpu_defaults(f'{FLAG}_x=1', '0.10.2')
  assert got == f'{FLAG}_x=1 {BOTH}'


@pytest.mark.parametrize('version', ['0.8.0', '0.7.2', '0.4.30'])
def test_jaxlibs_before_0_8_1_get_only_the_scheduler_flag(version):
  # XLA aborts on flags it does not know; 0.8.0 has no YNN flag.
  assert xla_flags.with_cpu_defaults('--a=1', version) == f'--a=1 {SCHED}=false'


def test_a_jaxlib_older_than_every_flag_gets_nothing():
  assert xla_flags.with_cpu_defaults('--a=1', '0.4.29') == '--a=1'


def test_version_parsing():
  assert xla_flags._version('0.10.2') == (0, 10, 2)
  assert xla_flags._version('0.9.0.dev20250101') == (0, 9, 0)
  assert xla_flags._version('0.8.1rc1') == (0, 8, 1)


def test_apply_writes_the_environment():
  env = {'XLA_FLAGS': '--a=1'}
  xla_flags.apply_cpu_defaults(env)
  assert env['XLA_FLAGS'] == xla_flags.with_cpu_defaults(
      '--a=1', jaxlib.version.__version__)


def test_this_process_has_the_setting():
  # conftest imports nothing of JAX's backends; jaxsr came first.
  assert not xla_flags.cpu_convs_use_ynn()


def _probe(code: str, xla: str | None) -> str:
  """stdout of a fresh interpreter running code, XLA_FLAGS=xla (or unset)."""
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  env['JAX_PLATFORMS'] = 'cpu'
  if xla is not None:
    env['XLA_FLAGS'] = xla
  out = subprocess.run([sys.executable, '-c', code], env=env, check=True,
                       capture_output=True, text=True, timeout=300)
  return out.stdout.strip().splitlines()[-1]


@pytest.mark.skipif(not HAS_YNN, reason='this jaxlib has no YNNPACK fusions')
def test_the_detector_sees_both_settings():
  probe = 'from jaxsr import xla_flags; print(xla_flags.cpu_convs_use_ynn())'
  assert _probe(probe, None) == 'False'
  # The user's own flag wins over the default, and the detector reports it.
  assert _probe(probe, f'{FLAG}=LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION'
                ) == 'True'


def test_a_process_with_the_defaults_runs_and_keeps_them():
  # XLA aborts at backend start on a flag it does not know.
  probe = ('import os, jaxsr, jax.numpy as jnp; '
           'print(float(jnp.ones(3).sum()), os.environ["XLA_FLAGS"])')
  defaults = xla_flags.with_cpu_defaults('', jaxlib.version.__version__)
  assert _probe(probe, None) == f'3.0 {defaults}'
