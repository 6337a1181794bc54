"""The one registry of methods: config.method -> build(config) -> Method."""

from jaxsr.methods import amgan
from jaxsr.methods import face_explore
from jaxsr.methods import lsrgan
from jaxsr.methods import psnr
from jaxsr.methods import san_sr
from jaxsr.methods import singan

METHODS = {
    'psnr': psnr.build,
    'lsrgan': lsrgan.build,
    'san_sr': san_sr.build,
    'singan': singan.build,
    'face_explore': face_explore.build,
    'amgan': amgan.build,
}


def build(config):
  """Builds the method named by config.method."""
  if config.method not in METHODS:
    raise ValueError(f'unknown config.method={config.method!r}; '
                     f'expected one of {sorted(METHODS)}')
  return METHODS[config.method](config)
