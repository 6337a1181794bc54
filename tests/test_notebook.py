"""notebooks/quickstart.ipynb runs top to bottom (tiny variant) and is stored without outputs."""

import os

import pytest

from tests.helpers import REPO

NOTEBOOK = REPO / 'notebooks' / 'quickstart.ipynb'


def test_notebook_is_stored_without_outputs():
  nbformat = pytest.importorskip('nbformat')
  nb = nbformat.read(NOTEBOOK, as_version=4)
  for cell in nb.cells:
    if cell.cell_type == 'code':
      assert not cell.outputs and cell.execution_count is None


def test_notebook_runs_top_to_bottom(tmp_path):
  nbformat = pytest.importorskip('nbformat')
  nbclient = pytest.importorskip('nbclient')
  nb = nbformat.read(NOTEBOOK, as_version=4)
  params = [c for c in nb.cells if 'parameters' in c.metadata.get('tags', [])]
  assert len(params) == 1
  params[0].source = (f"VARIANT = 'tiny'\nNUM_STEPS = 2\n"
                      f"WORKDIR = {str(tmp_path / 'run')!r}")
  env_before = os.environ.get('XLA_FLAGS')
  # The kernel is a fresh process: one CPU device is enough there.
  os.environ['XLA_FLAGS'] = ''
  try:
    nbclient.NotebookClient(nb, timeout=600, kernel_name='python3',
                            resources={'metadata': {'path': str(tmp_path)}}
                            ).execute()
  finally:
    os.environ['XLA_FLAGS'] = env_before or ''
  assert (tmp_path / 'run' / 'chelsea_x4.png').exists()
  assert (tmp_path / 'run' / 'eval' / 'results.md').exists()
