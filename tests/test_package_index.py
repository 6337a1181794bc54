"""Tests of jaxsr.package_index: pip's settings, simple-API pages, downloads.

Downloads go to a package index on localhost (tests/local_index.py); the
settings are passed in, so no pip subprocess runs here.
"""

import base64

import pytest

from jaxsr import package_index as pi
from tests import local_index


def test_pip_config_list_and_environment_precedence():
  text = '\n'.join([
      "global.index-url='https://global.example/simple'",
      "global.extra-index-url='https://a.example/simple https://b.example/s'",
      "global.find-links='/wheels'",
      "download.index-url='https://download.example/simple'",
      "global.timeout='30'",
      "global.cert='/etc/ca.pem'",
      'not a setting',
  ])
  sections = pi.parse_pip_config_list(text)
  assert sections['global']['find-links'] == '/wheels'
  # pip's order: environment, then the command's section, then global.
  settings = pi.resolve_settings(sections, {})
  assert settings.index_urls == ('https://download.example/simple',
                                 'https://a.example/simple',
                                 'https://b.example/s')
  assert settings.find_links == ('/wheels',)
  assert settings.timeout == 30.0 and settings.cert == '/etc/ca.pem'
  env = pi.env_config({'PIP_INDEX_URL': 'https://env.example/simple',
                       'PIP_DEFAULT_TIMEOUT': '180', 'HOME': '/root'})
  assert env == {'index-url': 'https://env.example/simple',
                 'default-timeout': '180'}
  settings = pi.resolve_settings(sections, env)
  assert settings.index_urls[0] == 'https://env.example/simple'
  # PIP_DEFAULT_TIMEOUT is pip's --timeout too; the environment wins.
  assert settings.timeout == 180.0
  # --index-url replaces index-url, keeps the extra indexes (as pip does).
  settings = pi.resolve_settings(sections, env, 'https://cli.example/simple')
  assert settings.index_urls[0] == 'https://cli.example/simple'
  assert len(settings.index_urls) == 3
  # Nothing configured: PyPI. no-index: no index at all.
  assert pi.resolve_settings({}, {}).index_urls == (pi.DEFAULT_INDEX_URL,)
  assert pi.resolve_settings({}, {'no-index': 'true'}).index_urls == ()


@pytest.mark.parametrize('filename, kind, want', [
    ('basicsr-1.4.2.tar.gz', 'sdist', True),
    ('basicsr-1.4.2.zip', 'sdist', True),
    ('basicsr-1.4.20.tar.gz', 'sdist', False),
    ('basicsr-1.4.2-py3-none-any.whl', 'sdist', False),
    ('BasicSR-1.4.2.tar.gz', 'sdist', True),
    ('DISTS_pytorch-0.1-py3-none-any.whl', 'wheel', True),  # dists-pytorch
    ('dists_pytorch-0.1-1-py3-none-any.whl', 'wheel', True),  # build tag
    ('DISTS_pytorch-0.1-cp311-cp311-linux_x86_64.whl', 'wheel', False),
    ('DISTS_pytorch-0.10-py3-none-any.whl', 'wheel', False),
    ('../basicsr-1.4.2.tar.gz', 'sdist', False),
])  # pyformat: disable
def test_matches_exact_version_and_kind(filename, kind, want):
  project = 'dists-pytorch' if 'DISTS' in filename or 'dists' in filename else (
      'basicsr')
  version = '0.1' if project == 'dists-pytorch' else '1.4.2'
  assert pi.matches(filename, project, version, kind) is want


def test_parse_html_page_resolves_links_and_hashes():
  body = (b'<html><head><base href="https://files.example/p/"></head><body>'
          b'<a href="x/basicsr-1.4.2.tar.gz#sha256=ab12">basicsr-1.4.2</a>'
          b'<a href="/abs/basicsr%2D1.4.1.tar.gz">old</a><a>no href</a>'
          b'</body></html>')
  links = pi.parse_project_page(body, 'text/html',
                                'https://index.example/simple/basicsr/')
  assert links == [
      pi.Link('basicsr-1.4.2.tar.gz',
              'https://files.example/p/x/basicsr-1.4.2.tar.gz',
              {'sha256': 'ab12'}),
      pi.Link('basicsr-1.4.1.tar.gz',
              'https://files.example/abs/basicsr%2D1.4.1.tar.gz', {})]


def test_parse_json_page_and_refuses_api_v2():
  body = local_index.json_page('lpips', {
      'lpips-0.1.4-py3-none-any.whl': ('../../f/l.whl', {'sha256': 'cd'})})
  links = pi.parse_project_page(body, local_index.JSON,
                                'http://h/simple/lpips/')
  assert links == [pi.Link('lpips-0.1.4-py3-none-any.whl', 'http://h/f/l.whl',
                           {'sha256': 'cd'})]
  with pytest.raises(ValueError, match='simple API version 2'):
    pi.parse_project_page(b'{"meta": {"api-version": "2.0"}, "files": []}',
                          local_index.JSON, 'http://h/simple/lpips/')


def _serve(index, name='basicsr-1.4.2.tar.gz', body=b'tarball', sha=None):
  index.add(f'/f/{name}', body, 'application/octet-stream')
  index.add('/simple/basicsr/', local_index.json_page('basicsr', {
      name: ('../../f/' + name, {'sha256': sha or local_index.sha256(body)})}),
            local_index.JSON)


def test_download_with_credentials_in_the_index_url(tmp_path):
  """user:token@ is stripped from the URL and sent as Basic auth to that
  host, for the page and the file."""
  with local_index.LocalIndex() as index:
    _serve(index)
    index.auth = 'Basic ' + base64.b64encode(b'me:s3cret').decode()
    url = index.url.replace('http://', 'http://me:s3cret@') + '/simple/'
    path = pi.download('basicsr', '1.4.2', 'sdist', tmp_path,
                       pi.Settings(index_urls=(url,)))
  assert path == tmp_path / 'basicsr-1.4.2.tar.gz'
  assert path.read_bytes() == b'tarball'
  assert [a for _, _, a in index.requests] == [index.auth] * 2


def test_download_errors_name_the_sources_and_leave_nothing(tmp_path):
  with local_index.LocalIndex() as index:
    _serve(index, body=b'x' * 1000)
    settings = pi.Settings(index_urls=(index.url + '/nothing/',
                                       index.url + '/simple/'),
                           find_links=(str(tmp_path / 'no-such-folder'),))
    with pytest.raises(ValueError, match='larger than 999 bytes'):
      pi.download('basicsr', '1.4.2', 'sdist', tmp_path / 'out', settings,
                  max_bytes=999)
    assert list((tmp_path / 'out').iterdir()) == []
    with pytest.raises(FileNotFoundError) as e:
      pi.download('basicsr', '1.4.3', 'sdist', tmp_path / 'out', settings)
  message = str(e.value)
  assert message.startswith('no sdist of basicsr==1.4.3 found. Tried: ')
  assert f'{index.url}/nothing/basicsr/: HTTP 404' in message
  assert f'{index.url}/simple/basicsr/: no sdist of 1.4.3' in message
  assert 'no-such-folder: no such file' in message


def test_find_links_folder_is_used_before_the_index(tmp_path):
  folder = tmp_path / 'wheels'
  folder.mkdir()
  (folder / 'basicsr-1.4.2.tar.gz').write_bytes(b'local copy')
  settings = pi.Settings(index_urls=('http://127.0.0.1:9/unreachable/',),
                         find_links=(str(folder),))
  path = pi.download('basicsr', '1.4.2', 'sdist', tmp_path / 'out', settings)
  assert path.read_bytes() == b'local copy'
