"""Command-line entry points: a bad flag or a bad input is one line on stderr, not a traceback.

In a tool's module:

    if __name__ == '__main__':
      cli.run(main)

`run` is `absl.app.run` with two changes:
- flags are parsed by `parse_flags`: a bad flag, a bad `--config` file or
  variant, or an override of a config key that does not exist
  (`--config.model.nonsense=1`) prints one line, `error: ...` (for the last,
  the unknown key, its section and the section's valid keys), and exits 2;
- `main` runs under `guarded`: an `INPUT_ERRORS` exception (ValueError,
  OSError such as FileNotFoundError, FloatingPointError) or `app.UsageError`
  prints `error: <its message>` and exits 1 (2 for UsageError).
Tools report bad input by raising one of those with a message that names the
problem; anything else (a bug) keeps its traceback. `--verbose` (defined by
`run`) shows the traceback of every error. Orbax's INFO lines (a third of a
command's log) are filtered from the console (`quiet_libraries`).
"""

import functools
import logging as std_logging
import re
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from jaxsr import config_lib

# Exceptions that mean "the input is wrong" and carry a message saying how.
INPUT_ERRORS = (ValueError, OSError, FloatingPointError)
INPUT_EXIT = 1  # Exit status for a bad input found while running.
USAGE_EXIT = 2  # Exit status for bad flags (as argparse).
_HINT = ' (--verbose shows the traceback)'


def define_verbose_flag() -> None:
  """Defines --verbose once (several tools may import this module)."""
  if 'verbose' not in flags.FLAGS:
    flags.DEFINE_bool('verbose', False,
                      'On an error, print its traceback, not one line.')


def _verbose(argv: Sequence[str] | None = None) -> bool:
  if argv is not None:  # Flags not parsed yet: look at the command line.
    return any(a in ('--verbose', '-verbose', '--verbose=true',
                     '--verbose=True', '--verbose=1') for a in argv)
  return 'verbose' in flags.FLAGS and flags.FLAGS['verbose'].value


def fail(message: str, status: int = INPUT_EXIT) -> NoReturn:
  """Prints `error: message` on stderr and exits with `status`."""
  sys.stderr.write(f'error: {message}\n')
  sys.stderr.flush()
  sys.exit(status)


def message_of(error: BaseException) -> str:
  """An exception as one line: its message (its type when it has none)."""
  text = ' '.join(str(error).split('\n')).strip()
  if isinstance(error, KeyError) and error.args:
    text = str(error.args[0])
  return text or type(error).__name__


def _flag_value(argv: Sequence[str], name: str) -> str | None:
  """The last value given to --name on the command line, if any."""
  value = None
  for i, arg in enumerate(argv):
    match = re.fullmatch(rf'--?{re.escape(name)}(=(.*))?', arg)
    if match:
      if match.group(1) is not None:
        value = match.group(2)
      elif i + 1 < len(argv):
        value = argv[i + 1]
  return value


def _config_file_flags() -> list[str]:
  """Names of the defined ml_collections config-file flags (--config)."""
  names = []
  for name in list(flags.FLAGS):
    try:
      config_flags.get_config_filename(flags.FLAGS[name])
    except TypeError:  # Not a config flag.
      continue
    except flags.Error:  # A config flag, not parsed (yet).
      pass
    names.append(name)
  return names


def config_problem(argv: Sequence[str]) -> str:
  """What is wrong with the config-file flags of argv (`--config spec` and its
  `--config.a.b=v` overrides): the file or its variant fails to load, or an
  override names no key; '' when neither."""
  for name in _config_file_flags():
    spec = _flag_value(argv, name)
    paths = [m.group(1) for m in (
        re.match(rf'--?(?:no)?{re.escape(name)}\.([^=\s]+)', a) for a in argv)
             if m]
    if not spec:
      if paths:
        return f'--{name}.{paths[0]} given without --{name}'
      continue
    try:
      config = config_lib.load_file(spec)
    except Exception as e:  # pylint: disable=broad-except
      return f'--{name}={spec}: {message_of(e)}'
    for path in paths:
      problem = config_lib.unknown_key(config, path)
      if problem:
        return problem
  return ''


def parse_flags(argv: Sequence[str]) -> list[str]:
  """absl flag parsing for app.run's flags_parser, a bad flag as one line."""
  try:
    rest = flags.FLAGS(argv)
    for name in _config_file_flags():
      # A config file that failed to load is only reported when read.
      if flags.FLAGS[name].value is not None:
        flags.FLAGS[name].value.get('method')
    return rest
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError,
          OSError) as e:
    if _verbose(argv):
      raise
    problem = config_problem(argv)
    fail(problem or f'{message_of(e)} (--helpfull lists the flags)',
         USAGE_EXIT)


Main = Callable[[list[str]], object]


def guarded(main: Main) -> Main:
  """main with INPUT_ERRORS and UsageError as one line (see the module doc)."""
  @functools.wraps(main)
  def run_main(argv):
    try:
      return main(argv)
    except app.UsageError as e:
      if _verbose():
        raise
      fail(message_of(e), USAGE_EXIT)
    except INPUT_ERRORS as e:
      if _verbose():
        raise
      fail(message_of(e) + _HINT)
  return run_main


class QuietLibraries(std_logging.Filter):
  """Drops INFO lines of Orbax (dozens per checkpoint) from the console."""

  def filter(self, record):
    return (record.levelno >= std_logging.WARNING
            or 'orbax' not in record.pathname)


def quiet_libraries() -> None:
  """Filters library INFO lines at the absl logger (library code logs
  through it): once, whatever calls it."""
  logger = logging.get_absl_logger()
  if not any(isinstance(f, QuietLibraries) for f in logger.filters):
    logger.addFilter(QuietLibraries())


def run(main: Main) -> None:
  """absl.app.run(main) with one-line errors, --verbose and no Orbax INFO
  lines (see module doc)."""
  define_verbose_flag()

  def quiet_main(argv):
    quiet_libraries()
    return main(argv)

  app.run(guarded(quiet_main), flags_parser=parse_flags)
