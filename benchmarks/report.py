"""What every twin benchmark shares: timing the two sides in alternating order, and the common end (the --json figures, then the --check verdict, exit 1 on a failure)."""

import json
import pathlib
import sys
import time
from collections.abc import Callable


def alternating_times(calls: dict[str, Callable[[], object]], repeats: int
                      ) -> dict[str, list[float]]:
  """{name: [seconds of each call]}: every call once per repeat, the order
  reversed on odd repeats, so that neither side always runs right after the
  other (caches, clocks and background load are shared out evenly)."""
  times = {name: [] for name in calls}
  pairs = list(calls.items())
  for r in range(repeats):
    for name, fn in (pairs if r % 2 == 0 else pairs[::-1]):
      t0 = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - t0)
  return times


def finish(results, json_path: str | None, failures: list[str],
           checked: bool, agreed: str) -> None:
  """Writes results (JSON-serializable) to json_path when given, then
  prints the twin check's failures and exits with status 1, or, when the
  check ran and passed, prints 'twin check passed: <agreed>'."""
  if json_path:
    pathlib.Path(json_path).write_text(json.dumps(results, indent=2))
  if failures:
    print('\nTWIN CHECK FAILED:\n  ' + '\n  '.join(failures))
    sys.exit(1)
  if checked:
    print(f'\ntwin check passed: {agreed}')
