"""The common end of a twin benchmark: the --json figures, then the --check verdict (exit 1 on a failure)."""

import json
import pathlib
import sys


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
