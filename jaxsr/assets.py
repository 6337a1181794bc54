"""Fetches evaluation assets that cannot ship with jaxsr, from PyPI packages.

    python -m jaxsr.assets niqe [--dest DIR] [--sdist basicsr-1.4.2.tar.gz]
    python -m jaxsr.assets lpips [--dest DIR] [--wheel lpips-0.1.4-....whl]
    python -m jaxsr.assets dists [--dest DIR] [--wheel DISTS_pytorch-0.1-....whl]

`niqe` downloads the basicsr==1.4.2 source package from PyPI with pip,
extracts only `basicsr/metrics/niqe_pris_params.npz` (bit-identical to
MATLAB's `modelparameters.mat`), checks its SHA-256 and writes it to DEST
(default ~/.cache/jaxsr/), where `jaxsr.metrics.niqe` looks by default.
`lpips` takes the official v0.1 linear weights (alex.pth, vgg.pth,
squeeze.pth) from the lpips==0.1.4 wheel into DEST/lpips/; `dists` takes
DISTS' alpha/beta (weights.pt) from the dists-pytorch==0.1 wheel into
DEST/dists/. Every file's SHA-256 is checked. --sdist / --wheel use an
already downloaded package instead of pip. The ImageNet backbones (AlexNet,
VGG16) are not on PyPI: see jaxsr.pretrained.lpips / dists. Standard
library only, so the metrics can import it cheaply.
"""

import argparse
import hashlib
import os
import pathlib
import subprocess
import sys
import tarfile
import tempfile
from typing import Sequence
import zipfile

NIQE_REQUIREMENT = 'basicsr==1.4.2'
NIQE_MEMBER = 'basicsr-1.4.2/basicsr/metrics/niqe_pris_params.npz'
NIQE_FILENAME = 'niqe_pris_params.npz'
# SHA-256 of that member (checked against the original MATLAB model).
NIQE_SHA256 = (
    '2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296'
)
# Wheels with the official LPIPS / DISTS weights: {file: (member, SHA-256)}.
LPIPS_REQUIREMENT = 'lpips==0.1.4'
LPIPS_FILES = {
    f'{net}.pth': (f'lpips/weights/v0.1/{net}.pth', sha)
    for net, sha in (
        ('alex', 'df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0'),
        ('vgg', 'a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868'),
        ('squeeze', '4a5350f23600cb79923ce65bb07cbf57dca461329894153e05a1346bd531cf76'),
    )
}
DISTS_REQUIREMENT = 'dists-pytorch==0.1'
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


def download_sdist(
    requirement: str, folder: str | os.PathLike
) -> pathlib.Path:
  """Downloads the source package of a pinned requirement into folder with pip.

  --no-build-isolation: otherwise pip would install basicsr's build
  requirements (torch) just to read its metadata, and fail without them; the
  metadata step then only needs setuptools in this environment.
  """
  return _pip_download(
      ['--no-binary', ':all:', '--no-build-isolation', requirement], folder,
      '*.tar.gz', 'tarballs',
      f'Download {requirement.replace("==", "-")}.tar.gz from '
      'https://pypi.org/project/basicsr/1.4.2/#files and pass --sdist.')


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


def _pip_download(args: list[str], folder: str | os.PathLike, pattern: str,
                  kind: str, hint: str) -> pathlib.Path:
  """`pip download --no-deps ARGS -d folder`; the one file matching pattern."""
  folder = pathlib.Path(folder)
  command = [sys.executable, '-m', 'pip', 'download', '--no-deps', *args,
             '-d', str(folder)]
  result = subprocess.run(command, capture_output=True, text=True, check=False)
  found = sorted(folder.glob(pattern))
  if result.returncode != 0 or len(found) != 1:
    raise RuntimeError(
        f'`{" ".join(command)}` failed (exit {result.returncode}, '
        f'{len(found)} {kind}):\n{result.stderr[-2000:]}\n{hint}'
    )
  return found[0]


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


def download_wheel(requirement: str, folder: str | os.PathLike
                   ) -> pathlib.Path:
  """Downloads the wheel of a pinned requirement into folder with pip."""
  return _pip_download(
      ['--only-binary', ':all:', requirement], folder, '*.whl', 'wheels',
      f'Download the {requirement} wheel from PyPI and pass --wheel.')


def fetch_from_wheel(
    requirement: str,
    files: dict[str, tuple[str, str]],
    dest_dir: str | os.PathLike,
    wheel: str | os.PathLike | None = None,
) -> list[pathlib.Path]:
  """Extracts {name: (member, sha256)} of a wheel into dest_dir."""
  dest_dir = pathlib.Path(dest_dir)

  def extract(path):
    return [extract_wheel_member(path, member, dest_dir / name, sha)
            for name, (member, sha) in files.items()]

  if wheel is not None:
    return extract(wheel)
  with tempfile.TemporaryDirectory(prefix='jaxsr-assets-') as tmp:
    return extract(download_wheel(requirement, tmp))


def fetch_niqe_params(
    dest_dir: str | os.PathLike | None = None,
    sdist: str | os.PathLike | None = None,
    sha256: str | None = NIQE_SHA256,
) -> pathlib.Path:
  """Writes niqe_pris_params.npz into dest_dir (default ~/.cache/jaxsr).

  Uses the tarball `sdist` if given, else downloads basicsr==1.4.2 with pip
  into a temporary folder. Returns the written path.
  """
  dest = pathlib.Path(dest_dir or default_cache_dir()) / NIQE_FILENAME
  if sdist is not None:
    return extract_member(sdist, NIQE_MEMBER, dest, sha256)
  with tempfile.TemporaryDirectory(prefix='jaxsr-assets-') as tmp:
    tarball = download_sdist(NIQE_REQUIREMENT, tmp)
    return extract_member(tarball, NIQE_MEMBER, dest, sha256)


def main(argv: Sequence[str] | None = None) -> int:
  """Command line: `niqe [--dest DIR] [--sdist PATH]`; prints the file path."""
  # argparse rather than absl flags: importing this module (as the metrics
  # do) must not register global flags.
  parser = argparse.ArgumentParser(
      prog='python -m jaxsr.assets', description=__doc__.splitlines()[0]
  )
  sub = parser.add_subparsers(dest='asset', required=True)
  niqe = sub.add_parser('niqe', help='the NIQE pristine model (basicsr 1.4.2)')
  niqe.add_argument(
      '--dest', default=None,
      help=f'output folder (default {default_cache_dir()})',
  )
  niqe.add_argument(
      '--sdist', default=None,
      help='a downloaded basicsr-1.4.2.tar.gz to use instead of pip',
  )
  wheels = {'lpips': (LPIPS_REQUIREMENT, LPIPS_FILES),
            'dists': (DISTS_REQUIREMENT, DISTS_FILES)}
  for name, (requirement, _) in wheels.items():
    command = sub.add_parser(name, help=f'official weights from {requirement}')
    command.add_argument('--dest', default=None,
                         help=f'output folder (default {default_cache_dir()})')
    command.add_argument('--wheel', default=None,
                         help=f'a downloaded {requirement} wheel')
  args = parser.parse_args(argv)
  if args.asset in wheels:
    requirement, files = wheels[args.asset]
    dest = pathlib.Path(args.dest or default_cache_dir()) / args.asset
    for path in fetch_from_wheel(requirement, files, dest, args.wheel):
      print(f'wrote {path}')
    return 0
  path = fetch_niqe_params(args.dest, args.sdist)
  # This command's output: where the file went.
  print(f'wrote {path}')
  if path.resolve() != default_niqe_params_path().resolve():
    print(
        'jaxsr.metrics.niqe looks in ~/.cache/jaxsr by default; set '
        f'JAXSR_NIQE_PARAMS={path} or pass the path to load_pristine_params'
    )
  return 0


if __name__ == '__main__':
  sys.exit(main())
