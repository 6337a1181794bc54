"""PULSE's mapping statistics, in chunks, cached next to the weights.

PULSE fits, once per generator, the per-dimension mean and std of
LeakyReLU(negative_slope=5)(mapping(z)) over 1,000,000 samples z ~ N(0, I)
(undoing the mapping's last lrelu(0.2), so that the search variable z maps
to W+ by lrelu(z * std + mean, 0.2)). Its one-shot batch is what runs out of
memory; here a jitted chunk function returns each chunk's mean and centred
sum of squares, merged in float64 on the host (Chan et al.'s pairwise
update), so memory is one chunk. std is torch.std's unbiased estimate, as
PULSE's `gaussian_fit`.

Sample i is z_i = normal(fold_in(key(SEED), i)), so the statistics do not
depend on the chunk size. They are cached as `<weights>.mapping_stats.npz`
(or, when that folder is not writable, under $XDG_CACHE_HOME or ~/.cache,
in jaxsr/), with a SHA-256 of the mapping weights, the sample count and
SEED: a changed file, or another sample count, recomputes.
"""

import functools
import hashlib
import os
import tempfile

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from jaxsr.models import stylegan2

SEED = 0
_VERSION = 'lrelu5-chan-v1'


def _mapping_module(mapping_params) -> stylegan2.Mapping:
  n_mlp = len(mapping_params)
  style_dim = int(mapping_params['fc0']['kernel'].shape[1])
  return stylegan2.Mapping(style_dim, n_mlp)


def sample_z(start, count: int, dim: int) -> jax.Array:
  """z_start .. z_{start + count - 1}, each normal(fold_in(key(SEED), i))."""
  key = jax.random.key(SEED)
  idx = start + jnp.arange(count)
  return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i),
                                              (dim,)))(idx)


@functools.partial(jax.jit, static_argnames=('chunk',))
def _chunk_moments(mapping_params, start, n_valid, *, chunk: int):
  """(mean, centred sum of squares) of the chunk's first n_valid samples."""
  module = _mapping_module(mapping_params)
  z = sample_z(start, chunk, module.style_dim)
  y = jax.nn.leaky_relu(module.apply({'params': mapping_params}, z), 5.0)
  valid = (jnp.arange(chunk) < n_valid)[:, None]
  mean = jnp.sum(jnp.where(valid, y, 0.0), 0) / n_valid
  m2 = jnp.sum(jnp.where(valid, jnp.square(y - mean), 0.0), 0)
  return mean, m2


def compute(mapping_params, samples: int, chunk: int = 16384
            ) -> tuple[np.ndarray, np.ndarray]:
  """(mean, std) float32 (style_dim,) of lrelu(mapping(z), 5), z_0..z_{n-1}."""
  if samples < 2 or chunk < 1:
    raise ValueError(f'need samples >= 2 and chunk >= 1, got {samples}, '
                     f'{chunk}')
  chunk = min(chunk, samples)
  n, mean, m2 = 0, 0.0, 0.0
  for start in range(0, samples, chunk):
    n_b = min(chunk, samples - start)
    mean_b, m2_b = jax.device_get(_chunk_moments(
        mapping_params, jnp.int32(start), jnp.float32(n_b), chunk=chunk))
    mean_b, m2_b = np.float64(mean_b), np.float64(m2_b)
    delta = mean_b - mean
    total = n + n_b
    mean = mean + delta * (n_b / total)
    m2 = m2 + m2_b + np.square(delta) * (n * n_b / total)
    n = total
  std = np.sqrt(m2 / (n - 1))
  return np.float32(mean), np.float32(std)


def digest(mapping_params, samples: int) -> str:
  """SHA-256 of the mapping weights (names, shapes, bytes) and the settings."""
  h = hashlib.sha256(f'{_VERSION};seed={SEED};samples={samples}'.encode())
  for path, leaf in sorted(
      (jax.tree_util.keystr(p), np.asarray(v, np.float32))
      for p, v in jax.tree_util.tree_leaves_with_path(mapping_params)):
    h.update(f'{path}{leaf.shape}'.encode())
    h.update(np.ascontiguousarray(leaf).tobytes())
  return h.hexdigest()


def cache_paths(weights: str | os.PathLike, key: str) -> list[str]:
  """Where the statistics may live: next to the weights, then a user cache."""
  weights = os.path.abspath(os.fspath(weights))
  home = os.environ.get('XDG_CACHE_HOME') or os.path.join(
      os.path.expanduser('~'), '.cache')
  name = f'{os.path.basename(weights)}.{key[:16]}.mapping_stats.npz'
  return [weights + '.mapping_stats.npz', os.path.join(home, 'jaxsr', name)]


def _read(path: str, key: str):
  try:
    with np.load(path) as f:
      if str(f['digest']) == key:
        return np.float32(f['mean']), np.float32(f['std'])
  except (OSError, KeyError, ValueError) as e:
    logging.warning('Ignoring unreadable mapping statistics %s: %s', path, e)
  return None


def _write(path: str, mean, std, key: str, samples: int) -> None:
  """Writes atomically (a temp file renamed), so readers never see half."""
  folder = os.path.dirname(path)
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=folder, suffix='.tmp.npz')
  try:
    with os.fdopen(fd, 'wb') as f:
      np.savez(f, mean=mean, std=std, digest=np.str_(key),
               samples=np.int64(samples))
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def load_or_compute(weights: str | os.PathLike, mapping_params, *,
                    samples: int = 1_000_000, chunk: int = 16384
                    ) -> tuple[np.ndarray, np.ndarray]:
  """Cached (mean, std) for these mapping weights, computed when stale."""
  key = digest(mapping_params, samples)
  paths = cache_paths(weights, key)
  for path in paths:
    if os.path.isfile(path):
      stats = _read(path, key)
      if stats is not None:
        logging.info('Mapping statistics from %s', path)
        return stats
  logging.info('Computing mapping statistics over %d samples (chunks of %d)',
               samples, chunk)
  mean, std = compute(mapping_params, samples, chunk)
  for path in paths:
    try:
      _write(path, mean, std, key, samples)
      logging.info('Mapping statistics cached in %s', path)
      break
    except OSError as e:
      logging.warning('Cannot cache mapping statistics in %s: %s', path, e)
  return mean, std
