"""XLA:CPU compiler flags jaxsr sets by default, before JAX starts a backend.

jaxlib >= 0.8.1 can hand convolutions to YNNPACK ("ynn fusions"), and
jaxlib 0.10.2 does by default. On the 2-core AVX2 CPU of this project that
path is several times slower than XLA's own (Eigen) convolutions for the
3x3 convs of every network here, worst for kernel gradients: one
(4, 128, 128, 64) -> 64 kernel gradient takes 1.3 s under YNNPACK and 0.1 s
without it, and the paper-size RRDBNet + L PSNR step drops from 16.5 s to
9.9 s (benchmarks/RESULTS.md). So `import jaxsr` turns YNNPACK fusions off
for XLA:CPU, unless the user's XLA_FLAGS already sets the flag (then theirs
stands: `XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=
+individual_convolution` keeps jaxlib's own choice, which includes convs).

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

# The flag exists from jaxlib 0.8.1 on (read off the 0.8.0 and 0.8.1
# binaries); XLA aborts on unknown flags, so older jaxlibs get nothing.
YNN_FLAG = 'xla_cpu_experimental_ynn_fusion_type'
_YNN_SINCE = (0, 8, 1)
# Empty: no YNNPACK fusion of any kind. Keeping only its dot fusions
# (LIBRARY_FUSION_TYPE_DOT) measured 7.7 s for the RRDBNet fwd+bwd against
# 6.3 s with none at all.
CPU_DEFAULTS = {YNN_FLAG: ''}


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

  Flags the string sets stay as they are; nothing is added for a jaxlib
  older than the flag.
  """
  if _version(jaxlib_version) < _YNN_SINCE:
    return xla_flags
  added = [f'--{name}={value}' for name, value in CPU_DEFAULTS.items()
           if not re.search(rf'--{name}(=|\s|$)', xla_flags)]
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
