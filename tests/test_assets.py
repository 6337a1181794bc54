"""Tests of the asset fetcher on small packages built here, served by a package
index on localhost (no network)."""

import hashlib
import importlib
import io as pyio
import os
import pathlib
import tarfile

import numpy as np
import pytest

from jaxsr import assets
from tests import local_index

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


def test_wheel_member_with_wrong_hash_is_refused(tmp_path, capsys):
  wheel = _make_wheel(tmp_path / 'x.whl',
                      {'DISTS_pytorch/weights.pt': b'not the weights'})
  assert assets.main(['dists', '--dest', str(tmp_path / 'c'), '--wheel',
                      str(wheel)]) == 1
  assert not (tmp_path / 'c' / 'dists' / 'weights.pt').exists()
  err = capsys.readouterr().err.strip()
  assert err.startswith('python -m jaxsr.assets dists: ') and 'SHA-256' in err
  assert len(err.splitlines()) == 1
  with pytest.raises(ValueError, match='no member'):
    assets.extract_wheel_member(wheel, 'nope.pt', tmp_path / 'y')


# NIQE on a fresh install (issue 16): the sdist's bytes from pip's index,
# never built. basicsr's real setup.py needs torch to produce metadata; the
# tarballs here have a setup.py that cannot produce any, so building one
# (what `pip download` of an sdist does) fails too.


def _serve_basicsr(index, tarball_bytes, sha=None, page='json'):
  """basicsr's project page (with a decoy version) and its tarball."""
  url = '/files/basicsr-1.4.2.tar.gz'
  index.add(url, tarball_bytes, 'application/octet-stream')
  sha = sha or local_index.sha256(tarball_bytes)
  if page == 'json':
    body = local_index.json_page('basicsr', {
        'basicsr-1.4.1.tar.gz': ('../../files/basicsr-1.4.1.tar.gz', {}),
        'basicsr-1.4.2.tar.gz': ('../../files/basicsr-1.4.2.tar.gz',
                                 {'sha256': sha})})
    index.add('/simple/basicsr/', body, local_index.JSON)
  else:
    body = local_index.html_page([
        '../../files/basicsr-1.4.1.tar.gz',
        f'../../files/basicsr-1.4.2.tar.gz#sha256={sha}'])
    index.add('/simple/basicsr/', body, local_index.HTML)


def _npz_tarball(shared_data, tmp_path):
  npz = (shared_data / 'niqe' / 'niqe_pris_params.npz').read_bytes()
  tarball = _make_tarball(tmp_path / 'built.tar.gz', npz)
  return npz, tarball.read_bytes()


def test_niqe_from_pips_index_without_building(shared_data, tmp_path,
                                               monkeypatch, capsys):
  """`python -m jaxsr.assets niqe` with PIP_INDEX_URL at a local index (PEP
  691 JSON): the file is extracted, loadable, and nothing else was asked."""
  npz, tarball = _npz_tarball(shared_data, tmp_path)
  with local_index.LocalIndex() as index:
    _serve_basicsr(index, tarball)
    local_index.isolate_pip(monkeypatch, tmp_path,
                            PIP_INDEX_URL=index.url + '/simple/')
    dest = tmp_path / 'assets'
    assert assets.main(['niqe', '--dest', str(dest)]) == 0, (
        capsys.readouterr().err)
  path = dest / 'niqe_pris_params.npz'
  assert path.read_bytes() == npz
  assert niqe_lib.load_pristine_params(path)['mu_pris_param'].shape == (1, 36)
  paths = [p for p, _, _ in index.requests]
  assert paths == ['/simple/basicsr/', '/files/basicsr-1.4.2.tar.gz']
  assert index.requests[0][1].startswith(local_index.JSON)
  assert sorted(os.listdir(dest)) == ['niqe_pris_params.npz']


def test_niqe_from_a_pip_conf_html_index_after_a_404(shared_data, tmp_path,
                                                     monkeypatch):
  """index-url and extra-index-url from a pip.conf file: the first index
  lacks basicsr (404), the second serves PEP 503 HTML."""
  npz, tarball = _npz_tarball(shared_data, tmp_path)
  with local_index.LocalIndex() as index:
    _serve_basicsr(index, tarball, page='html')
    conf = tmp_path / 'pip.conf'
    conf.write_text(f'[global]\nindex-url = {index.url}/empty/\n'
                    f'extra-index-url = {index.url}/simple/\n')
    local_index.isolate_pip(monkeypatch, tmp_path, PIP_CONFIG_FILE=str(conf),
                            XDG_CONFIG_HOME=str(tmp_path / 'xdg'))
    path = assets.fetch_niqe_params(tmp_path / 'assets')
  assert path.read_bytes() == npz
  assert [p for p, _, _ in index.requests] == [
      '/empty/basicsr/', '/simple/basicsr/', '/files/basicsr-1.4.2.tar.gz']


def test_index_hash_mismatch_is_refused(shared_data, tmp_path, monkeypatch,
                                        capsys):
  _, tarball = _npz_tarball(shared_data, tmp_path)
  with local_index.LocalIndex() as index:
    _serve_basicsr(index, tarball, sha='0' * 64)
    local_index.isolate_pip(monkeypatch, tmp_path)
    dest = tmp_path / 'assets'
    assert assets.main(['niqe', '--dest', str(dest), '--index-url',
                        index.url + '/simple']) == 1
  err = capsys.readouterr().err
  assert 'basicsr-1.4.2.tar.gz from http://127.0.0.1:' in err
  assert f'sha256 {local_index.sha256(tarball)}, the index says {"0" * 64}' in (
      err)
  assert not dest.exists()


def test_lpips_wheel_from_an_index_url(shared_data, tmp_path, monkeypatch):
  """--index-url overrides pip's index; the pure wheel of the pinned version
  is picked among other versions and an sdist."""
  wheel = _make_wheel(tmp_path / 'w.whl', {
      member: (shared_data / 'lpips' / name).read_bytes()
      for name, (member, _) in assets.LPIPS_FILES.items()}).read_bytes()
  with local_index.LocalIndex() as index:
    files = {}
    for name, body in (('lpips-0.1.3-py3-none-any.whl', b'old'),
                       ('lpips-0.1.4.tar.gz', b'sdist'),
                       ('lpips-0.1.4-py3-none-any.whl', wheel)):
      index.add(f'/f/{name}', body, 'application/octet-stream')
      files[name] = (f'{index.url}/f/{name}',
                     {'sha256': local_index.sha256(body)})
    index.add('/simple/lpips/', local_index.json_page('lpips', files),
              local_index.JSON)
    local_index.isolate_pip(monkeypatch, tmp_path,
                            PIP_INDEX_URL='http://127.0.0.1:9/unused/')
    assert assets.main(['lpips', '--dest', str(tmp_path / 'c'),
                        '--index-url', index.url + '/simple/']) == 0
  for name in ('alex', 'vgg', 'squeeze'):
    assert (tmp_path / 'c' / 'lpips' / f'{name}.pth').read_bytes() == (
        shared_data / 'lpips' / f'{name}.pth').read_bytes()
  assert [p for p, _, _ in index.requests][-1] == (
      '/f/lpips-0.1.4-py3-none-any.whl')
