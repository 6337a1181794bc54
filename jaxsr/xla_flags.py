"""XLA:CPU compiler flags jaxsr sets by default, before JAX starts a backend.

Two defaults (CPU_DEFAULTS), each measured on this project's 2-core CPUs
(benchmarks/RESULTS.md):

* YNNPACK convolutions off. jaxlib >= 0.8.1 can hand convolutions to
  YNNPACK ("ynn fusions"), and jaxlib 0.10.2 does by default. That path is
  several times slower than XLA's own (Eigen) convolutions for the 3x3
  convs of every network here, worst for kernel gradients: one
  (4, 128, 128, 64) -> 64 kernel gradient takes 1.3 s under YNNPACK and
  0.1 s without it; the paper-size RRDBNet + L PSNR step drops from 16.5 s
  to 9.9 s.
* The concurrency-optimized scheduler off. Together with RRDBNet's
  Winograd kernel gradients (`kernel_grad='auto'` on CPU) it is the fastest
  measured setting of the PSNR, LSRGAN and SAN-SR steps.

A flag the user's XLA_FLAGS already names stands as the user set it
(`XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=
+individual_convolution` keeps jaxlib's own YNNPACK choice;
`--xla_cpu_enable_concurrency_optimized_scheduler=true` XLA's scheduler).

XLA reads XLA_FLAGS once, when the first backend starts: import jaxsr before
running any JAX computation (jaxsr.main, the benchmarks and the notebook do).
`cpu_convs_use_ynn()` says whether the running process got the setting.
GPU and TPU compilers ignore xla_cpu_* flags.
"""

import os
import re

import jax
import jax.numpy as jnp
import jaxlib

# Each default: (flag, value, first jaxlib that knows the flag). XLA aborts
# on unknown flags, so a jaxlib older than a flag does not get it; the
# versions were read off the jaxlib binaries (0.8.0 lacks the YNN flag,
# 0.8.1 has it; the scheduler flag is in every jaxlib from 0.4.30 on).
YNN_FLAG = 'xla_cpu_experimental_ynn_fusion_type'
SCHEDULER_FLAG = 'xla_cpu_enable_concurrency_optimized_scheduler'
CPU_DEFAULTS = (
    # Empty: no YNNPACK fusion of any kind. Keeping only its dot fusions
    # (LIBRARY_FUSION_TYPE_DOT) measured 7.7 s for the RRDBNet fwd+bwd
    # against 6.3 s with none at all.
    (YNN_FLAG, '', (0, 8, 1)),
    # Off: thunks run in program order. With the Winograd kernel gradients
    # (the CPU default of RRDBNet) the concurrent schedule interleaves G's
    # and L's thousands of small ops badly on 2 cores; off + Winograd is the
    # fastest measured PSNR / LSRGAN / SAN-SR step (benchmarks/RESULTS.md).
    (SCHEDULER_FLAG, 'false', (0, 4, 30)),
)


def _version(text: str) -> tuple[int, ...]:
  """'0.10.2' -> (0, 10, 2); a trailing tag ('0.9.0.dev1') is dropped."""
  parts = []
  for piece in text.split('.'):
    match = re.match(r'\d+', piece)
    if not match:
      break
    parts.append(int(match.group()))
  return tuple(parts)


def with_cpu_defaults(xla_flags: str, jaxlib_version: str) -> str:
  """xla_flags plus each CPU_DEFAULTS flag it does not name already.

  Flags the string sets stay as they are; a flag newer than the jaxlib is
  not added.
  """
  version = _version(jaxlib_version)
  added = [f'--{name}={value}' for name, value, since in CPU_DEFAULTS
           if version >= since
           and not re.search(rf'--{name}(=|\s|$)', xla_flags)]
  return ' '.join([xla_flags.strip(), *added]).strip()


def apply_cpu_defaults(environ=os.environ) -> str:
  """Writes with_cpu_defaults(...) into environ['XLA_FLAGS']; returns it."""
  flags = with_cpu_defaults(environ.get('XLA_FLAGS', ''),
                            jaxlib.version.__version__)
  if flags:
    environ['XLA_FLAGS'] = flags
  return flags


def cpu_convs_use_ynn() -> bool:
  """True if a 3x3 conv compiled now for the CPU becomes a YNNPACK fusion.

  Compiles one small conv (tens of milliseconds). False when the setting
  above is in effect, or when this jaxlib has no YNNPACK.
  """
  cpu = jax.devices('cpu')[0]
  # Narrower convs (8 or 16 channels) stay with XLA even under YNNPACK.
  x = jax.ShapeDtypeStruct((1, 8, 8, 32), jnp.float32)
  k = jax.ShapeDtypeStruct((3, 3, 32, 32), jnp.float32)

  def conv(x, k):
    return jax.lax.conv_general_dilated(
        x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))

  with jax.default_device(cpu):
    text = jax.jit(conv).lower(x, k).compile().as_text()
  return '__ynn_fusion' in text
