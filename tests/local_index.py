"""A package index on localhost for tests: simple-API pages and files."""

import hashlib
import http.server
import json
import threading


def sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def json_page(name: str, files: dict[str, tuple[str, dict[str, str]]]) -> bytes:
  """A PEP 691 project page: {filename: (url, hashes)}."""
  return json.dumps({
      'meta': {'api-version': '1.1'}, 'name': name,
      'files': [{'filename': f, 'url': url, 'hashes': hashes}
                for f, (url, hashes) in files.items()],
  }).encode()


def html_page(hrefs: list[str]) -> bytes:
  """A PEP 503 project page with one anchor per href."""
  anchors = ''.join(f'<a href="{h}">{h.split("#")[0].rsplit("/", 1)[-1]}</a>'
                    for h in hrefs)
  return f'<!DOCTYPE html><html><body>{anchors}</body></html>'.encode()


class LocalIndex:
  """Serves {path: (content type, body)} on 127.0.0.1; records every request.

  `requests` holds (path, Accept, Authorization) per GET; `auth`, when set,
  is the Authorization value every request must carry (else 401).
  """

  def __init__(self):
    self.routes = {}
    self.requests = []
    self.auth = None
    index = self

    class Handler(http.server.BaseHTTPRequestHandler):

      def do_GET(self):  # pylint: disable=invalid-name
        index.requests.append((self.path, self.headers.get('Accept'),
                               self.headers.get('Authorization')))
        if index.auth and self.headers.get('Authorization') != index.auth:
          self.send_error(401)
          return
        if self.path not in index.routes:
          self.send_error(404)
          return
        content_type, body = index.routes[self.path]
        self.send_response(200)
        self.send_header('Content-Type', content_type)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

      def log_message(self, *args):
        del args  # Quiet test output.

    self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    self.url = f'http://127.0.0.1:{self.server.server_address[1]}'
    self.thread = threading.Thread(target=self.server.serve_forever,
                                   daemon=True)

  def __enter__(self):
    self.thread.start()
    return self

  def __exit__(self, *exc):
    self.server.shutdown()
    self.server.server_close()
    self.thread.join()

  def add(self, path: str, body: bytes, content_type: str) -> str:
    """Serves body at path; returns its absolute URL."""
    self.routes[path] = (content_type, body)
    return self.url + path


JSON = 'application/vnd.pypi.simple.v1+json'
HTML = 'text/html'


def isolate_pip(monkeypatch, tmp_path, **env) -> None:
  """No pip config file and no PIP_* variable but env; localhost unproxied."""
  import os  # pylint: disable=g-import-not-at-top
  for key in list(os.environ):
    if key.startswith('PIP_') or key.lower() in ('http_proxy', 'https_proxy'):
      monkeypatch.delenv(key)
  monkeypatch.setenv('PIP_CONFIG_FILE', os.devnull)
  monkeypatch.setenv('NO_PROXY', '127.0.0.1')
  monkeypatch.setenv('no_proxy', '127.0.0.1')
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  for key, value in env.items():
    monkeypatch.setenv(key, value)
