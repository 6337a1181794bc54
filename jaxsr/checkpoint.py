"""Thin Orbax wrapper: save/restore the whole train state under workdir/checkpoints.

Resume order (`restore_or_init`): a checkpoint in the workdir, then the
weights of `config.init_from` (another workdir), then the fresh state.
"""

import os

from absl import logging
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp


def manager(workdir: str, max_to_keep: int = 3,
            async_save: bool = True) -> ocp.CheckpointManager:
  """A CheckpointManager for `workdir/checkpoints` keeping the newest N."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=True,
      enable_async_checkpointing=async_save)
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'checkpoints'), options=options)


def all_finite(tree) -> bool:
  """True when every floating-point leaf of `tree` is finite."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
  return bool(jnp.all(jnp.stack(leaves))) if leaves else True


def save(mngr: ocp.CheckpointManager, step: int, state) -> None:
  """Saves `state` at `step`; refuses a non-finite state so the last good one stays."""
  if not all_finite(state):
    raise FloatingPointError(
        f'refusing to checkpoint step {step}: the state holds NaN or Inf; '
        f'the last good checkpoint ({mngr.latest_step()}) is kept')
  mngr.save(step, args=ocp.args.StandardSave(state))


def _abstract(state):
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)


def restore_latest(mngr: ocp.CheckpointManager, state):
  """Restores the newest checkpoint into `state`'s structure and shardings, or None."""
  step = mngr.latest_step()
  if step is None:
    return None
  logging.info('Resuming from %s step %d', mngr.directory, step)
  return mngr.restore(step, args=ocp.args.StandardRestore(_abstract(state)))


def restore_or_init(mngr: ocp.CheckpointManager, state, init_from: str,
                    fields: tuple[str, ...]):
  """The resume order: mngr's newest checkpoint, else `fields` copied from the
  workdir `init_from` (when set), else `state` as it is."""
  restored = restore_latest(mngr, state)
  if restored is not None:
    return restored
  if init_from:
    return init_from_workdir(state, init_from, fields)
  return state


def load_raw(workdir: str) -> dict:
  """The newest checkpoint of another workdir as a tree of numpy arrays."""
  mngr = manager(workdir, async_save=False)
  step = mngr.latest_step()
  if step is None:
    raise FileNotFoundError(
        f'no checkpoint under {os.path.join(workdir, "checkpoints")}: '
        'expected a workdir written by python -m jaxsr.main')
  raw = mngr.restore(step, args=ocp.args.StandardRestore())
  mngr.close()
  return raw


def init_from_workdir(state, workdir: str, fields: tuple[str, ...]):
  """Copies the named fields (e.g. 'g_params') from `workdir`'s checkpoint into `state`.

  Shapes must match leaf for leaf; a field missing in the source is skipped with
  a log line (so a PSNR run without encoder can start an ESRGAN run).
  """
  raw = load_raw(workdir)
  updates = {}
  for field in fields:
    if field not in raw:
      logging.warning('init_from %s: no %r in the checkpoint; kept fresh',
                      workdir, field)
      continue
    target = getattr(state, field)
    source = raw[field]
    t_paths = jax.tree_util.tree_flatten_with_path(target)[0]
    s_flat = dict(
        (jax.tree_util.keystr(p), v)
        for p, v in jax.tree_util.tree_flatten_with_path(source)[0])
    leaves = []
    for path, leaf in t_paths:
      key = jax.tree_util.keystr(path)
      if key not in s_flat:
        raise ValueError(f'init_from {workdir}: {field}{key} is missing in the '
                         'checkpoint (architectures differ?)')
      value = s_flat[key]
      if tuple(value.shape) != tuple(leaf.shape):
        raise ValueError(
            f'init_from {workdir}: {field}{key} has shape {value.shape}, '
            f'expected {leaf.shape}')
      leaves.append(jax.device_put(jnp.asarray(value, leaf.dtype),
                                   leaf.sharding))
    updates[field] = jax.tree.unflatten(jax.tree.structure(target), leaves)
    logging.info('init_from %s: loaded %s', workdir, field)
  return state.replace(**updates)
