"""Downloads one release file of a PyPI project from pip's index, without pip.

`download(project, version, kind, folder)` finds the sdist or the pure-Python
wheel of exactly `project==version` and writes it into folder, checking the
hash the index gives. Nothing is built or installed, so a package whose
metadata step needs heavy build requirements (basicsr's `setup_requires`
pulls in torch) is fetched as plain bytes. The sources are pip's:
`index-url` (default https://pypi.org/simple/), `extra-index-url`,
`find-links`, `no-index`, `cert`, `proxy` and `timeout`, read from pip's
configuration files (`pip config list`, sections 'download' over 'global')
and from `PIP_*` environment variables, which win as they do in pip.
Indexes are read through the simple API (PEP 691 JSON, else PEP 503 HTML);
credentials in an index URL (https://user:token@host/simple) are sent to
that host only. Standard library only.
"""

import ast
import base64
import dataclasses
import hashlib
import html.parser
import http.client
import json
import os
import pathlib
import re
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_INDEX_URL = 'https://pypi.org/simple/'
# PEP 691 content negotiation: JSON preferred, HTML accepted.
ACCEPT = ('application/vnd.pypi.simple.v1+json, '
          'application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01')
KINDS = ('sdist', 'wheel')
_SDIST_SUFFIXES = ('.tar.gz', '.zip')
_MAX_PAGE_BYTES = 64 * 2**20  # PyPI's largest project pages are a few MB.
_CHUNK = 2**16
_TRUE = ('1', 'true', 'yes', 'on', 'y', 't')


@dataclasses.dataclass(frozen=True)
class Settings:
  """Where pip would look: indexes in order, find-links, TLS, proxy, timeout."""
  index_urls: tuple[str, ...] = (DEFAULT_INDEX_URL,)
  find_links: tuple[str, ...] = ()
  cert: str | None = None
  proxy: str | None = None
  timeout: float = 15.0  # pip's default, in seconds.


@dataclasses.dataclass(frozen=True)
class Link:
  """One file on a project page: its name, absolute URL and {algo: hex}."""
  filename: str
  url: str
  hashes: dict[str, str]


def normalize_name(name: str) -> str:
  """PEP 503 project name: runs of -_. become '-', lower case."""
  return re.sub(r'[-_.]+', '-', name).lower()


def parse_pip_config_list(text: str) -> dict[str, dict[str, str]]:
  """`pip config list` output (section.key='value' lines) -> {section: {key:
  value}}."""
  sections = {}
  for line in text.splitlines():
    key, sep, value = line.partition('=')
    section, dot, name = key.rpartition('.')
    if not sep or not dot:
      continue
    try:
      value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      continue
    sections.setdefault(section, {})[name] = str(value)
  return sections


def env_config(environ) -> dict[str, str]:
  """PIP_* environment variables as pip config keys (PIP_INDEX_URL ->
  index-url)."""
  return {k[4:].lower().replace('_', '-'): v for k, v in environ.items()
          if k.startswith('PIP_') and len(k) > 4}


def resolve_settings(sections: dict[str, dict[str, str]], env: dict[str, str],
                     index_url: str | None = None) -> Settings:
  """Settings from pip's config sections and env keys; index_url (pip's
  --index-url) replaces their index-url.

  pip's precedence: environment, then the command's section ('download'),
  then 'global'.
  """
  def get(*keys):
    for source in (env, sections.get('download', {}),
                   sections.get('global', {})):
      for key in keys:
        if source.get(key):
          return source[key]
    return None

  if (get('no-index') or '').lower() in _TRUE and not index_url:
    indexes = ()
  else:  # index_url replaces index-url only, as pip's --index-url does.
    extra = (get('extra-index-url') or '').split()
    indexes = (index_url or get('index-url') or DEFAULT_INDEX_URL, *extra)
  timeout = get('timeout', 'default-timeout')
  return Settings(
      index_urls=tuple(indexes),
      find_links=tuple((get('find-links') or '').split()),
      cert=get('cert'), proxy=get('proxy'),
      timeout=float(timeout) if timeout else Settings.timeout)


def pip_settings(index_url: str | None = None) -> Settings:
  """pip's configured sources: its config files (`pip config list`), PIP_*."""
  sections = {}
  try:
    result = subprocess.run(
        [sys.executable, '-m', 'pip', 'config', 'list'], capture_output=True,
        text=True, check=False, timeout=120)
    if result.returncode == 0:
      sections = parse_pip_config_list(result.stdout)
  except (OSError, subprocess.TimeoutExpired):
    pass  # No pip here: the environment variables and defaults remain.
  sections.pop(':env:', None)  # Read from os.environ directly below.
  return resolve_settings(sections, env_config(os.environ), index_url)


def matches(filename: str, project: str, version: str, kind: str) -> bool:
  """Whether filename is project==version's sdist or pure-Python wheel."""
  if '/' in filename or '\\' in filename:
    return False  # Only a plain file name may name the file we write.
  if kind == 'wheel':
    parts = filename[:-len('.whl')].split('-') if filename.endswith(
        '.whl') else []
    # name-version[-build]-python-abi-platform.whl; data-only use: pure wheels.
    return (len(parts) in (5, 6) and parts[-2:] == ['none', 'any']
            and normalize_name(parts[0]) == normalize_name(project)
            and parts[1] == version)
  for suffix in _SDIST_SUFFIXES:
    if filename.endswith(suffix):
      name, _, found = filename[:-len(suffix)].rpartition('-')
      return normalize_name(name) == normalize_name(project) and (
          found == version)
  return False


class _Anchors(html.parser.HTMLParser):
  """The hrefs of <a> tags and of a <base> tag, in document order."""

  def __init__(self):
    super().__init__()
    self.hrefs, self.base = [], None

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == 'a' and attrs.get('href'):
      self.hrefs.append(attrs['href'])
    elif tag == 'base' and attrs.get('href') and self.base is None:
      self.base = attrs['href']


def parse_project_page(body: bytes, content_type: str,
                       page_url: str) -> list[Link]:
  """A simple-API project page (PEP 691 JSON or PEP 503 HTML) -> its files."""
  if 'json' in content_type or body.lstrip()[:1] == b'{':
    page = json.loads(body)
    major = str(page.get('meta', {}).get('api-version', '1.0')).split('.')[0]
    if major != '1':
      raise ValueError(
          f'{page_url}: simple API version {major}.x, expected 1.x')
    return [Link(f['filename'], urllib.parse.urljoin(page_url, f['url']),
                 dict(f.get('hashes', {}))) for f in page.get('files', [])]
  anchors = _Anchors()
  anchors.feed(body.decode('utf-8', 'replace'))
  base = urllib.parse.urljoin(page_url, anchors.base or '')
  links = []
  for href in anchors.hrefs:
    url, fragment = urllib.parse.urldefrag(urllib.parse.urljoin(base, href))
    algo, _, digest = fragment.partition('=')
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rsplit(
        '/', 1)[-1])
    links.append(Link(name, url, {algo: digest} if digest else {}))
  return links


def _split_credentials(url: str) -> tuple[str, str | None, str | None]:
  """url without user:password@, its host and a Basic Authorization value."""
  parts = urllib.parse.urlsplit(url)
  if parts.username is None:
    return url, parts.hostname, None
  netloc = parts.hostname + (f':{parts.port}' if parts.port else '')
  token = urllib.parse.unquote(parts.username) + ':' + urllib.parse.unquote(
      parts.password or '')
  auth = 'Basic ' + base64.b64encode(token.encode()).decode()
  return parts._replace(netloc=netloc).geturl(), parts.hostname, auth


class _Client:
  """GETs with pip's TLS, proxy and timeout settings; file:// read directly."""

  def __init__(self, settings: Settings):
    self.timeout = settings.timeout
    context = ssl.create_default_context(cafile=settings.cert)
    handlers = [urllib.request.HTTPSHandler(context=context)]
    if settings.proxy:
      handlers.append(urllib.request.ProxyHandler(
          {'http': settings.proxy, 'https': settings.proxy}))
    self.opener = urllib.request.build_opener(*handlers)
    self.auth = {}  # host -> Authorization, for the indexes given with one.

  def open(self, url: str, accept: str | None = None):
    """(response-like, final URL, content type) for url."""
    url, host, auth = _split_credentials(url)
    if auth:
      self.auth[host] = auth
    if urllib.parse.urlsplit(url).scheme == 'file':
      path = pathlib.Path(urllib.request.url2pathname(
          urllib.parse.urlsplit(url).path))
      if path.is_dir():  # pip reads a local index's index.html.
        path = path / 'index.html'
      return open(path, 'rb'), url, ''  # pylint: disable=consider-using-with
    headers = {'Accept': accept} if accept else {}
    if host in self.auth:
      headers['Authorization'] = self.auth[host]
    response = self.opener.open(urllib.request.Request(url, headers=headers),
                                timeout=self.timeout)
    return response, response.geturl(), response.headers.get(
        'Content-Type', '')


def _read_limited(stream, limit: int, what: str) -> bytes:
  data = stream.read(limit + 1)
  if len(data) > limit:
    raise ValueError(f'{what} is larger than {limit} bytes')
  return data


def _why(error: BaseException) -> str:
  if isinstance(error, urllib.error.HTTPError):
    return f'HTTP {error.code}'
  if isinstance(error, urllib.error.URLError):
    return str(error.reason)
  return str(error)


def _find(client: _Client, settings: Settings, project: str, version: str,
          kind: str) -> tuple[Link | None, list[str]]:
  """The first matching file over find-links folders, indexes, find-links
  pages; and what each source said, for the error message."""
  tried = []
  pages = []
  for place in settings.find_links:
    scheme = urllib.parse.urlsplit(place).scheme
    if scheme in ('http', 'https'):
      pages.append(place)
      continue
    folder = pathlib.Path(urllib.request.url2pathname(
        urllib.parse.urlsplit(place).path) if scheme == 'file' else place)
    found = sorted(p for p in folder.glob('*')
                   if matches(p.name, project, version, kind)) if (
                       folder.is_dir()) else []
    if found:
      return Link(found[0].name, found[0].resolve().as_uri(), {}), tried
    tried.append(f'{place}: no such file')
  name = normalize_name(project)
  for index in settings.index_urls:
    pages.append(index.rstrip('/') + f'/{name}/')
  for page in pages:
    try:
      stream, final, content_type = client.open(page, ACCEPT)
      with stream:
        body = _read_limited(stream, _MAX_PAGE_BYTES, page)
      links = parse_project_page(body, content_type, final)
    # URLError, HTTPError and timeouts are OSErrors; bad pages ValueErrors.
    except (OSError, ValueError, http.client.HTTPException) as e:
      tried.append(f'{_split_credentials(page)[0]}: {_why(e)}')
      continue
    found = [link for link in links
             if matches(link.filename, project, version, kind)]
    if found:
      return found[0], tried
    tried.append(f'{_split_credentials(page)[0]}: no {kind} of {version}')
  return None, tried


def _check_hashes(link: Link, digests: dict) -> None:
  """Raises ValueError unless every digest is the one the index gives."""
  for algo, hasher in digests.items():
    if hasher.hexdigest() != link.hashes[algo].lower():
      raise ValueError(
          f'{link.filename} from {_split_credentials(link.url)[0]} has '
          f'{algo} {hasher.hexdigest()}, the index says {link.hashes[algo]}')


def download(project: str, version: str, kind: str,
             folder: str | os.PathLike, settings: Settings | None = None,
             max_bytes: int = 64 * 2**20) -> pathlib.Path:
  """Writes project==version's sdist or pure wheel into folder; its path.

  settings defaults to `pip_settings()`. Raises FileNotFoundError naming
  every source tried when none has the file, ValueError when the download
  is larger than max_bytes or its hash is not the one the index gives.
  """
  if kind not in KINDS:
    raise ValueError(f'kind must be one of {KINDS}, got {kind!r}')
  settings = pip_settings() if settings is None else settings
  client = _Client(settings)
  link, tried = _find(client, settings, project, version, kind)
  if link is None:
    sources = '; '.join(tried) or 'no index (pip has no-index set)'
    raise FileNotFoundError(
        f'no {kind} of {project}=={version} found. Tried: {sources}')
  digests = {algo: hashlib.new(algo) for algo in link.hashes
             if algo in hashlib.algorithms_available}
  dest = pathlib.Path(folder) / link.filename
  dest.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f'.{link.filename}.')
  try:
    with os.fdopen(fd, 'wb') as out:
      stream, _, _ = client.open(link.url)
      with stream:
        size = 0
        while chunk := stream.read(_CHUNK):
          size += len(chunk)
          if size > max_bytes:
            raise ValueError(
                f'{link.filename} from {_split_credentials(link.url)[0]} is '
                f'larger than {max_bytes} bytes')
          out.write(chunk)
          for hasher in digests.values():
            hasher.update(chunk)
    _check_hashes(link, digests)
    os.replace(tmp, dest)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise
  return dest
