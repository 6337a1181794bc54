"""Decodes every training image once before training, and remembers which files decoded.

A truncated PNG passes the header check (`datasets.from_folders` reads sizes
from headers) and fails only when a batch first samples it, deep into a run
and at the same step of every rerun. `verify_images` decodes each file up
front, in threads, and returns every failure at once. A file that decoded is
recorded by name, size and mtime (ns) in a small JSON file per folder under
`record_dir`, so a rerun or a second run on the same folder decodes only new
or changed files. The records live in a cache folder of their own
($JAXSR_VERIFIED_DIR, default ~/.cache/jaxsr/verified): never in the data
folder (which may be read-only or shared) nor in a workdir.
"""

import concurrent.futures
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence

from absl import logging

from jaxsr.data import io

RECORD_DIR_ENV = 'JAXSR_VERIFIED_DIR'
_FORMAT = 1  # Bumped when what "verified" means changes (records are dropped).


def default_record_dir() -> str:
  """$JAXSR_VERIFIED_DIR, else ~/.cache/jaxsr/verified."""
  return os.environ.get(RECORD_DIR_ENV) or os.path.join(
      os.path.expanduser('~'), '.cache', 'jaxsr', 'verified')


def record_path(record_dir: str, folder: str) -> str:
  """The record of `folder`: <name>-<hash of its absolute path>.json."""
  folder = os.path.abspath(folder)
  key = hashlib.sha1(folder.encode()).hexdigest()[:16]
  return os.path.join(record_dir, f'{os.path.basename(folder)}-{key}.json')


def _stamp(path: str) -> list[int]:
  st = os.stat(path)
  return [st.st_size, st.st_mtime_ns]


def _load(path: str) -> dict[str, list[int]]:
  """{file name: [size, mtime_ns]} of a record; {} when absent or unreadable."""
  try:
    with open(path) as f:
      record = json.load(f)
    if record.get('format') == _FORMAT and isinstance(record.get('files'),
                                                      dict):
      return record['files']
  except (OSError, ValueError, AttributeError):
    pass
  return {}


def _save(path: str, files: dict[str, list[int]]) -> None:
  """Writes a record atomically; a cache that cannot be written is skipped."""
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix='.json.tmp')
    with os.fdopen(fd, 'w') as f:
      json.dump({'format': _FORMAT, 'files': files}, f)
    os.replace(tmp, path)
  except OSError as e:
    logging.warning('cannot write the image verification record %s (%s): '
                    'the next run decodes these images again', path, e)


def _failure(read: Callable[[str], object], path: str) -> str:
  """'' when read(path) succeeds, else why it failed (one line)."""
  try:
    read(path)
  except Exception as e:  # pylint: disable=broad-except
    # Any failure makes the file unusable (PIL also raises its own types,
    # e.g. DecompressionBombError).
    return ' '.join(str(e).split()) or type(e).__name__
  return ''


def verify_images(paths: Sequence[str],
                  read: Callable[[str], object] = io.read_image,
                  record_dir: str = '', num_threads: int = 4
                  ) -> dict[str, str]:
  """Decodes with `read` every file of `paths` not recorded as decoded.

  Returns {path: why} for each file that fails (empty when all decode).
  With `record_dir`, files that decoded are recorded there (per folder, by
  name, size and mtime) and skipped by later calls while unchanged; failures
  are never recorded, so a bad file is reported until it is fixed.
  """
  by_folder: dict[str, list[str]] = {}
  for p in paths:
    by_folder.setdefault(os.path.dirname(os.path.abspath(p)), []).append(
        str(p))
  stamps = {p: _stamp(p) for p in map(str, paths)}  # Before decoding.
  records = {folder: _load(record_path(record_dir, folder)) if record_dir
             else {} for folder in by_folder}
  todo = [p for folder, files in by_folder.items() for p in files
          if records[folder].get(os.path.basename(p)) != stamps[p]]
  with concurrent.futures.ThreadPoolExecutor(max(1, num_threads)) as pool:
    failures = dict(zip(todo, pool.map(lambda p: _failure(read, p), todo)))
  bad = {p: why for p, why in failures.items() if why}
  if record_dir:
    for folder, files in by_folder.items():
      good = {os.path.basename(p): stamps[p] for p in files if p not in bad}
      if good != records[folder]:
        _save(record_path(record_dir, folder), good)
  logging.info('verified %d images: %d decoded now, %d unchanged since an '
               'earlier check%s', len(stamps), len(todo),
               len(stamps) - len(todo),
               f' ({record_dir})' if record_dir else '')
  return bad
