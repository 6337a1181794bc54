"""jaxsr: GAN-based image super-resolution in JAX/Flax."""

from jaxsr import xla_flags as _xla_flags

# Before any backend starts: XLA:CPU flags that make our convs fast
# (jaxsr/xla_flags.py says why and how to opt out).
_xla_flags.apply_cpu_defaults()

__version__ = '0.1.0'
