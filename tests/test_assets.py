"""Tests of the asset fetcher on small tarballs built here (no network)."""

import hashlib
import importlib
import io as pyio
import pathlib
import subprocess
import tarfile

import numpy as np
import pytest

from jaxsr import assets

# jaxsr.metrics.niqe is the function (re-exported); this is its module.
niqe_lib = importlib.import_module('jaxsr.metrics.niqe')


def _sha(data):
  return hashlib.sha256(data).hexdigest()


def _make_tarball(path, payload, extra_members=True):
  """A basicsr-like sdist holding payload at NIQE_MEMBER, plus hostile
  members ('../escape.txt', an absolute name, a symlink) that must never be
  written."""
  with tarfile.open(path, 'w:gz') as tar:
    def add(name, data):
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, pyio.BytesIO(data))
    add('basicsr-1.4.2/setup.py', b'print(1)\n')
    add(assets.NIQE_MEMBER, payload)
    if extra_members:
      add('../escape.txt', b'outside')
      add('/tmp/jaxsr-absolute-escape.txt', b'outside')
      link = tarfile.TarInfo('basicsr-1.4.2/link.npz')
      link.type = tarfile.SYMTYPE
      link.linkname = '/etc/passwd'
      tar.addfile(link)
  return path


def test_extract_member_writes_only_that_member(tmp_path):
  tarball = _make_tarball(tmp_path / 'sdist.tar.gz', b'payload')
  work = tmp_path / 'work'
  dest = work / 'out' / 'x.npz'
  written = assets.extract_member(
      tarball, assets.NIQE_MEMBER, dest, sha256=_sha(b'payload')
  )
  assert written == dest and dest.read_bytes() == b'payload'
  assert sorted(p.name for p in work.rglob('*')) == ['out', 'x.npz']
  assert not (tmp_path / 'escape.txt').exists()
  assert not pathlib.Path('/tmp/jaxsr-absolute-escape.txt').exists()


def test_extract_member_refuses_bad_members(tmp_path):
  tarball = _make_tarball(tmp_path / 'sdist.tar.gz', b'payload')
  dest = tmp_path / 'out.npz'
  with pytest.raises(ValueError, match='has no member'):
    assets.extract_member(tarball, 'basicsr-1.4.2/absent.npz', dest)
  with pytest.raises(ValueError, match='not a regular file'):
    assets.extract_member(tarball, 'basicsr-1.4.2/link.npz', dest)
  with pytest.raises(ValueError, match='SHA-256'):
    assets.extract_member(tarball, assets.NIQE_MEMBER, dest, sha256='0' * 64)
  assert not dest.exists()


def test_fetch_uses_pip_download_then_extracts(tmp_path, monkeypatch):
  calls = []

  def fake_download(requirement, folder):
    calls.append(requirement)
    return _make_tarball(pathlib.Path(folder) / 'basicsr-1.4.2.tar.gz', b'm')

  monkeypatch.setattr(assets, 'download_sdist', fake_download)
  path = assets.fetch_niqe_params(tmp_path / 'cache', sha256=_sha(b'm'))
  assert calls == ['basicsr==1.4.2']
  assert path == tmp_path / 'cache' / 'niqe_pris_params.npz'
  assert path.read_bytes() == b'm'


def test_download_sdist_command_and_failure_message(tmp_path, monkeypatch):
  seen = {}

  def fake_run(command, **kwargs):
    seen['command'] = command
    return subprocess.CompletedProcess(command, 1, '', 'no network')

  monkeypatch.setattr(assets.subprocess, 'run', fake_run)
  with pytest.raises(RuntimeError, match='--sdist') as e:
    assets.download_sdist('basicsr==1.4.2', tmp_path)
  assert 'no network' in str(e.value)
  command = seen['command']
  assert command[1:4] == ['-m', 'pip', 'download']
  for flag in ('--no-deps', '--no-build-isolation', 'basicsr==1.4.2'):
    assert flag in command
  assert command[command.index('--no-binary') + 1] == ':all:'
  assert command[command.index('-d') + 1] == str(tmp_path)


def test_default_path_is_under_the_home_cache(tmp_path, monkeypatch):
  monkeypatch.setenv('HOME', str(tmp_path))
  monkeypatch.delenv(niqe_lib.PARAMS_ENV, raising=False)
  expected = tmp_path / '.cache' / 'jaxsr' / 'niqe_pris_params.npz'
  assert assets.default_niqe_params_path() == expected
  assert niqe_lib.default_params_path() == expected


def test_main_with_a_local_sdist_gives_loadable_params(
    shared_data, tmp_path, capsys
):
  # The real npz bytes, so the built-in SHA-256 check passes.
  npz = (shared_data / 'niqe' / 'niqe_pris_params.npz').read_bytes()
  assert _sha(npz) == assets.NIQE_SHA256
  tarball = _make_tarball(tmp_path / 'basicsr-1.4.2.tar.gz', npz)
  dest = tmp_path / 'assets'
  argv = ['niqe', '--sdist', str(tarball), '--dest', str(dest)]
  assert assets.main(argv) == 0
  path = dest / 'niqe_pris_params.npz'
  assert str(path) in capsys.readouterr().out
  params = niqe_lib.load_pristine_params(path)
  assert params['mu_pris_param'].shape == (1, 36)
  with np.load(shared_data / 'niqe' / 'niqe_pris_params.npz') as original:
    np.testing.assert_array_equal(
        params['cov_pris_param'], original['cov_pris_param']
    )


def _make_wheel(path, members):
  import zipfile  # pylint: disable=g-import-not-at-top
  with zipfile.ZipFile(path, 'w') as zf:
    for name, data in members.items():
      zf.writestr(name, data)
  return path


def test_lpips_and_dists_weights_from_wheels(shared_data, tmp_path):
  """The pinned SHA-256s are those of the official files (../shared/data);
  the extracted files load as LPIPS / DISTS weights."""
  from jaxsr.pretrained import dists as dists_import  # pylint: disable=g-import-not-at-top
  from jaxsr.pretrained import lpips as lpips_import  # pylint: disable=g-import-not-at-top
  lpips_wheel = _make_wheel(tmp_path / 'lpips.whl', {
      member: (shared_data / 'lpips' / name).read_bytes()
      for name, (member, _) in assets.LPIPS_FILES.items()})
  dists_wheel = _make_wheel(tmp_path / 'dists.whl', {
      'DISTS_pytorch/weights.pt':
          (shared_data / 'dists' / 'weights.pt').read_bytes()})
  assert assets.main(['lpips', '--dest', str(tmp_path / 'c'),
                      '--wheel', str(lpips_wheel)]) == 0
  assert assets.main(['dists', '--dest', str(tmp_path / 'c'),
                      '--wheel', str(dists_wheel)]) == 0
  lin = lpips_import.load_lin(tmp_path / 'c' / 'lpips' / 'alex.pth', 'alex')
  assert len(lin) == 5
  alpha, beta = dists_import.load_alpha_beta(
      tmp_path / 'c' / 'dists' / 'weights.pt')
  assert alpha.shape == beta.shape == (1475,)


def test_wheel_member_with_wrong_hash_is_refused(tmp_path):
  wheel = _make_wheel(tmp_path / 'x.whl',
                      {'DISTS_pytorch/weights.pt': b'not the weights'})
  with pytest.raises(ValueError, match='SHA-256'):
    assets.main(['dists', '--dest', str(tmp_path / 'c'), '--wheel',
                 str(wheel)])
  assert not (tmp_path / 'c' / 'dists' / 'weights.pt').exists()
  with pytest.raises(ValueError, match='no member'):
    assets.extract_wheel_member(wheel, 'nope.pt', tmp_path / 'y')
