"""Device mesh over ('data',): batches split along it, parameters replicated."""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh named 'data' over `devices` (default: all global devices)."""
  devices = jax.devices() if devices is None else devices
  return Mesh(np.asarray(devices), ('data',))


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding that keeps a full copy of an array on every device."""
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh, block: bool = False) -> NamedSharding:
  """Sharding that splits the batch axis over 'data': the leading axis, or
  with `block` the second (a block of batches stacked on the leading axis)."""
  return NamedSharding(mesh, P(None, 'data') if block else P('data'))


def check_batch_size(global_batch: int, mesh: Mesh) -> None:
  """Raises ValueError unless the global batch splits evenly over devices."""
  n = mesh.devices.size
  if global_batch % n:
    raise ValueError(
        f'data.batch_size={global_batch} must be a multiple of the number of '
        f'devices ({n}); choose e.g. {max(n, global_batch - global_batch % n)}')
  if global_batch % jax.process_count():
    raise ValueError(
        f'data.batch_size={global_batch} must be a multiple of the number of '
        f'processes ({jax.process_count()})')


def check_batch(local_batch: dict, mesh: Mesh) -> None:
  """check_batch_size for the global batch of which this host holds `local_batch`."""
  leaves = jax.tree.leaves(local_batch)
  if leaves:
    check_batch_size(leaves[0].shape[0] * jax.process_count(), mesh)


def put_batch(local_batch: dict, mesh: Mesh, block: bool = False) -> dict:
  """Turns this host's numpy batch (with `block`, a stack of batches) into
  global arrays split over 'data'."""
  sharding = data_sharded(mesh, block)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, x),
      local_batch)
