"""A workdir's config record: compare a rerun's config with workdir/config.json, write it atomically.

A rerun of an existing workdir resumes its checkpoints, so its config must
describe the same run. Keys matching `RESUMABLE` only decide how long the loop
runs, what it logs, when it checkpoints and evaluates, where held-out or cached
data live, and how (not what) a step computes: they may change, and each change
is recorded in workdir/config_history.jsonl. Every other key shapes the state
(model.*, encoder.*, disc.*, critic.*, ...) or is part of the method (method,
scale, seed, losses and their weights, optimizers and schedules, EMA, the
training data, patch and batch sizes, compute dtype): a change is refused
before anything is initialized or written, with one error listing every such
key. A method may add keys of its own (Method.resumable_keys).
"""

import fnmatch
import json
import os
import time

from absl import logging

CONFIG_FILE = 'config.json'
HISTORY_FILE = 'config_history.jsonl'

# Keys (dotted, fnmatch patterns) a rerun may change; see the module doc.
RESUMABLE = (
    'name',  # For tables only.
    # Read only when the workdir has no checkpoint yet.
    'init_from', 'allow_random_g',
    # Loop length, logging, evaluation and checkpoint intervals, kept steps.
    # num_steps moves the end of the last stage (and schedules given as
    # fractions of a stage follow it), never a step already taken.
    'train.*',
    'eval.*',  # Held-out evaluation only: tile, overlap, Y, grid images.
    # The held-out set, and where/how fast the same training data is read.
    'data.val_dir', 'data.val_lr_dir', 'data.tfds_val_split',
    'data.max_val_images', 'data.num_threads', 'data.prefetch',
    'data.cache_dir', 'data.tfds_data_dir',
    # The same function of the same parameters, computed another way.
    'model.remat', 'model.kernel_grad', 'model.dense',
    'optim.microbatch_size',  # The same mean gradient, in pieces.
    'ema.predict',  # Which of the trained G's predicts; both are in the state.
    'singan.steps_per_call',  # Steps per dispatch; the same steps.
    'search.steps_per_call',
)


def _warmup_not_passed(old, new, step: int) -> bool:
  # The warm-up stage ends at min(psnr_warmup_steps, num_steps); while the
  # newest checkpoint has not passed either end, the GAN stage has not begun
  # (e.g. san_sr.py:psnr, whose warm-up follows train.num_steps).
  return (isinstance(old, int) and isinstance(new, int)
          and step <= min(old, new))


# Keys that may change while a condition on (stored, new, newest step) holds.
RESUMABLE_WHILE = {'psnr_warmup_steps': _warmup_not_passed}

_MISSING = object()


def flatten(tree, prefix: str = '') -> dict:
  """{'section.key': value} of a JSON-like nested dict (lists kept whole)."""
  out = {}
  for key, value in tree.items():
    name = f'{prefix}{key}'
    if isinstance(value, dict):
      out.update(flatten(value, name + '.'))
    else:
      out[name] = value
  return out


def as_json(config) -> dict:
  """The config as config.json stores it (tuples as lists, references resolved)."""
  return json.loads(config.to_json_best_effort())


def differences(stored: dict, current: dict) -> dict:
  """{key: (stored value, current value)} of the keys whose values differ
  between two flattened configs; a key absent from one side has _MISSING
  there."""
  keys = sorted(set(stored) | set(current))
  return {k: (stored.get(k, _MISSING), current.get(k, _MISSING))
          for k in keys if stored.get(k, _MISSING) != current.get(k, _MISSING)}


def resumable(key: str, old, new, step: int,
              extra: tuple[str, ...] = ()) -> bool:
  """Whether `key` may change from `old` to `new` on a rerun whose newest
  checkpoint is `step`; `extra`: the method's own resumable patterns."""
  if any(fnmatch.fnmatchcase(key, pattern) for pattern in RESUMABLE + extra):
    return True
  condition = RESUMABLE_WHILE.get(key)
  return condition is not None and condition(old, new, step)


def _show(value) -> str:
  return 'absent' if value is _MISSING else json.dumps(value)


def read_config(workdir: str) -> dict | None:
  """workdir/config.json as a dict, None when absent; ValueError naming the
  file when it cannot be read."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.isfile(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except ValueError as e:
    raise ValueError(f'{path} is not valid JSON ({e}): cannot check this '
                     'run\'s config against the checkpoints; repair it, or '
                     'start a new workdir') from None


def check_rerun(config, workdir: str, newest_step: int | None,
                extra: tuple[str, ...] = ()) -> dict:
  """The changes of `config` from workdir/config.json that a resume allows.

  `newest_step`: the newest step folder on disk (None: no checkpoint, so
  nothing can be mixed and every change is allowed); `extra`: the method's
  own resumable key patterns (Method.resumable_keys). Raises ValueError
  listing every key whose change would mix two runs in one checkpoint, with
  the stored and new values, before anything is built or written.
  """
  stored = read_config(workdir)
  if stored is None or newest_step is None:
    return {}
  changes = differences(flatten(stored), flatten(as_json(config)))
  refused = {k: v for k, v in changes.items()
             if not resumable(k, *v, newest_step, tuple(extra))}
  if refused:
    listed = ', '.join(f'{k} (stored {_show(old)}, now {_show(new)})'
                       for k, (old, new) in refused.items())
    workdir = os.path.normpath(workdir)
    raise ValueError(
        f'{workdir} holds checkpoints (up to step {newest_step}) of a run with '
        f'a different config: {listed}. These keys change the model\'s state '
        f'or the method, so the run cannot resume with them; nothing was '
        f'changed. Rerun with the stored values (in '
        f'{os.path.join(workdir, CONFIG_FILE)}) to resume, or start a new '
        f'workdir: --workdir {workdir}-2 (add --config.init_from={workdir} '
        f'to start from its weights where the shapes match).')
  return changes


def write_config(config, workdir: str, changes: dict, step: int) -> None:
  """Writes workdir/config.json atomically (a complete old or new file, never
  a partial one) and appends the allowed `changes`, resumed at `step`, to
  workdir/config_history.jsonl."""
  path = os.path.join(workdir, CONFIG_FILE)
  tmp = f'{path}.tmp-{os.getpid()}'
  with open(tmp, 'w') as f:
    f.write(config.to_json_best_effort(indent=2))
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)
  if not changes:
    return
  for key, (old, new) in changes.items():
    logging.warning('config %s changed from %s to %s since the last run '
                    '(allowed on a resume; recorded in %s)', key, _show(old),
                    _show(new), HISTORY_FILE)
  record = {'time': time.strftime('%Y-%m-%dT%H:%M:%S'), 'resumed_at_step': step,
            'changes': {k: {'stored': None if old is _MISSING else old,
                            'now': None if new is _MISSING else new}
                        for k, (old, new) in changes.items()}}
  with open(os.path.join(workdir, HISTORY_FILE), 'a') as f:
    f.write(json.dumps(record) + '\n')
