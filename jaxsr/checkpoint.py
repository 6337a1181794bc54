"""Thin Orbax wrapper: save/restore the whole train state under workdir/checkpoints.

Resume order (`restore_or_init`): a checkpoint in the workdir, then the
weights of `config.init_from` (another workdir), then the fresh state.

A damaged step folder (a truncated array file, a missing `default/` or
`default/_METADATA`) is skipped with a warning naming it, and the newest
intact step is restored instead; no checkpoint is ever deleted here (training
moves damaged folders aside into workdir/damaged_checkpoints, `set_aside`).
Readers (`reader`, `load_raw`) open a workdir read-only and never create or
change anything in it.
"""

import contextlib
import logging as std_logging
import os

from absl import logging
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

# Parts every complete step folder has (StandardSave); without them Orbax
# fails with messages that read like an architecture mismatch.
_REQUIRED_PARTS = ('default', os.path.join('default', '_METADATA'))
DAMAGED_DIR = 'damaged_checkpoints'


def checkpoint_dir(workdir: str) -> str:
  """workdir/checkpoints, absolute."""
  return os.path.join(os.path.abspath(workdir), 'checkpoints')


def manager(workdir: str, max_to_keep: int = 3,
            async_save: bool = True) -> ocp.CheckpointManager:
  """A CheckpointManager for `workdir/checkpoints` (created) keeping the newest N."""
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=True,
      enable_async_checkpointing=async_save)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options)


class _DropReadOnlyNotice(std_logging.Filter):
  """Drops Orbax's warning that a read-only manager is read-only."""

  def filter(self, record):
    return not str(record.msg).startswith('Given directory is read only')


@contextlib.contextmanager
def _quiet_read_only_notice():
  absl_logger = logging.get_absl_logger()
  notice = _DropReadOnlyNotice()
  absl_logger.addFilter(notice)
  try:
    yield
  finally:
    absl_logger.removeFilter(notice)


def steps_on_disk(workdir: str) -> list[int]:
  """The step folders under workdir/checkpoints (intact or not), oldest first;
  [] when there is no such folder. Reads the listing only."""
  directory = checkpoint_dir(workdir)
  if not os.path.isdir(directory):
    return []
  return sorted(int(name) for name in os.listdir(directory)
                if name.isdigit() and
                os.path.isdir(os.path.join(directory, name)))


def reader(workdir: str) -> ocp.CheckpointManager:
  """A read-only CheckpointManager for `workdir/checkpoints`: creates,
  deletes and writes nothing (evaluate, upscale, init_from read through it).

  Raises FileNotFoundError when the workdir has no checkpoints folder.
  """
  directory = checkpoint_dir(workdir)
  if not os.path.isdir(directory):
    raise FileNotFoundError(
        f'no checkpoint under {directory}: expected a workdir written by '
        'python -m jaxsr.main')
  options = ocp.CheckpointManagerOptions(
      read_only=True, create=False, save_interval_steps=0, max_to_keep=None,
      enable_async_checkpointing=False)
  with _quiet_read_only_notice():
    return ocp.CheckpointManager(directory, options=options)


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


def missing_parts(step_dir: str) -> list[str]:
  """The parts of a complete step folder that `step_dir` lacks (relative paths)."""
  return [part for part in _REQUIRED_PARTS
          if not os.path.exists(os.path.join(step_dir, part))]


def _reason(error: Exception) -> str:
  """The informative part of an Orbax/TensorStore error, one short line."""
  text = str(error).strip().split('\n')[0].split(' [tensorstore_spec')[0]
  text = f'{type(error).__name__}: {text}'
  return text if len(text) <= 300 else text[:140] + ' ... ' + text[-155:]


def _restore_newest(mngr: ocp.CheckpointManager, restore_args):
  """(step, restored) of the newest step folder that restores with
  `restore_args` (or `restore_args(step_dir)` when callable), skipping damaged ones with a warning; (None, None) when
  there is no step. Raises ValueError naming every step folder and why it
  failed when none restores."""
  failures = []
  for step in sorted(mngr.all_steps(), reverse=True):
    step_dir = os.path.join(str(mngr.directory), str(step))
    missing = missing_parts(step_dir)
    if missing:
      failures.append((step_dir, f'{" and ".join(missing)} missing'))
      continue
    try:
      args = (restore_args(step_dir) if callable(restore_args)
              else restore_args)
      restored = mngr.restore(step, args=args)
    except Exception as e:  # pylint: disable=broad-except
      # Any failure here: a later intact step tells damage from a mismatch.
      failures.append((step_dir, _reason(e)))
      continue
    for path, why in failures:
      logging.warning(
          'checkpoint %s is damaged (%s): restored step %d instead; the '
          'damaged folder is left on disk', path, why, step)
    logging.info('Restored %s step %d', mngr.directory, step)
    return step, restored
  if failures:
    details = '; '.join(f'{path}: {why}' for path, why in failures)
    raise ValueError(
        f'none of the {len(failures)} checkpoint(s) under {mngr.directory} '
        f'can be restored (each step folder is damaged, or was written by a '
        f'different config): {details}')
  return None, None


def restore_latest(mngr: ocp.CheckpointManager, state):
  """Restores the newest intact checkpoint into `state`'s structure and
  shardings, or None when there is none (damaged newer steps: see the
  module doc)."""
  _, restored = _restore_newest(mngr,
                                ocp.args.StandardRestore(_abstract(state)))
  return restored


def set_aside(workdir: str, after: int) -> list[str]:
  """Moves the step folders newer than step `after` (damaged ones that the
  restore skipped) to workdir/damaged_checkpoints, so that training can save
  those steps again; returns their new paths. Nothing is deleted."""
  moved = []
  for step in steps_on_disk(workdir):
    if step <= after:
      continue
    source = os.path.join(checkpoint_dir(workdir), str(step))
    target = os.path.join(os.path.abspath(workdir), DAMAGED_DIR, str(step))
    suffix = 1
    while os.path.exists(target):
      target = os.path.join(os.path.abspath(workdir), DAMAGED_DIR,
                            f'{step}-{suffix}')
      suffix += 1
    os.makedirs(os.path.dirname(target), exist_ok=True)
    os.rename(source, target)
    logging.warning('moved the damaged checkpoint %s to %s (kept, not '
                    'deleted); training continues from step %d', source,
                    target, after)
    moved.append(target)
  return moved


def restore_or_init(mngr: ocp.CheckpointManager, state, init_from: str,
                    fields: tuple[str, ...]):
  """The resume order: mngr's newest intact checkpoint, else `fields` copied
  from the workdir `init_from` (when set), else `state` as it is."""
  restored = restore_latest(mngr, state)
  if restored is not None:
    return restored
  if init_from:
    return init_from_workdir(state, init_from, fields)
  return state


def _one_device_restore(step_dir: str):
  """Restore arguments that read every array of a step onto this process's
  first device, whatever device count wrote it (without a target, Orbax
  refuses a checkpoint saved on 4 devices in a 1-device process)."""
  meta = ocp.StandardCheckpointer().metadata(os.path.join(step_dir, 'default'))
  meta = getattr(meta, 'item_metadata', meta)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), meta)
  return ocp.args.StandardRestore(target)


def load_raw(workdir: str) -> dict:
  """The newest intact checkpoint of another workdir as a tree of numpy
  arrays (read-only: nothing in `workdir` is created or changed)."""
  mngr = reader(workdir)
  try:
    step, raw = _restore_newest(mngr, _one_device_restore)
  finally:
    mngr.close()
  if step is None:
    raise FileNotFoundError(
        f'no checkpoint under {checkpoint_dir(workdir)}: expected a workdir '
        'written by python -m jaxsr.main')
  return raw


def _path_key(path) -> str:
  """'[a][b][0]' of a tree path, the same for attributes and dict keys."""
  names = (getattr(k, 'name', getattr(k, 'key', getattr(k, 'idx', k)))
           for k in path)
  return ''.join(f'[{n}]' for n in names)


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
    # A dataclass field (the AMGAN's KernelPCA) reads back as a dict: match
    # leaves by their names, whichever container held them.
    s_flat = dict(
        (_path_key(p), v)
        for p, v in jax.tree_util.tree_flatten_with_path(source)[0])
    leaves = []
    for path, leaf in t_paths:
      key = _path_key(path)
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
