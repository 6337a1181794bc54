"""notebooks/faces.ipynb runs top to bottom on the real DCGAN prior (resuming the tiny compare runs) and is stored without outputs."""

import json
import shutil

import pytest

from tests import conftest
from tests import test_faces_cli
from tests.helpers import REPO
from tests.test_notebook import _execute

NOTEBOOK = REPO / 'notebooks' / 'faces.ipynb'
PRIOR = conftest.SHARED_DATA / 'face_prior'


@pytest.mark.slow
def test_faces_notebook_runs_top_to_bottom(tmp_path, tmp_path_factory):
  """The prior set's three tiny runs (2 faces, 3 iterations) are the
  session's `python -m jaxsr.faces compare` runs (tests/test_faces_cli.py),
  copied: the notebook's comparison cell resumes them (every face is
  searched already) and all its other cells run as they are. The LFW set
  is the same code on other faces (its faces: test_face_compare.py)."""
  if not PRIOR.is_dir():
    pytest.skip(f'{PRIOR} is absent')
  rc, _, err, compared = test_faces_cli.tiny_compare(tmp_path_factory)
  assert rc == 0, err[-3000:]
  work = tmp_path / 'faces'
  shutil.copytree(compared, work)
  searched = {p: p.stat().st_mtime_ns for p in work.glob('*/sr/*.png')}
  assert len(searched) == 6
  nbformat = pytest.importorskip('nbformat')
  defaults, = [c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells
               if 'parameters' in c.metadata.get('tags', [])]
  _execute(NOTEBOOK, defaults + "\nNUM_FACES = 2\nEXTRA = 'tiny'\n"
           f"SETS = ('prior',)\nWORKDIR = {str(work)!r}", tmp_path)
  assert {p: p.stat().st_mtime_ns for p in searched} == searched  # Resumed.
  assert len(list((work / 'samples').glob('00*.png'))) == 16
  for method in ('pulse', 'ours_no_ls', 'ours'):
    results = json.loads((work / f'prior_x8_{method}' / 'results.json'
                          ).read_text())
    assert [r['name'] for r in results['faces']] == ['prior_000', 'prior_001']
  for picture in ('grid', 'lr'):
    assert (work / f'prior_x8_{picture}.png').exists()
