"""The notebooks run top to bottom (tiny variants) and are stored without outputs."""

import os
import shutil

import numpy as np
import pytest

from tests.helpers import REPO

NOTEBOOK = REPO / 'notebooks' / 'quickstart.ipynb'
SINGAN = REPO / 'notebooks' / 'singan.ipynb'


@pytest.mark.parametrize('path', sorted((REPO / 'notebooks').glob('*.ipynb')),
                         ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
  nbformat = pytest.importorskip('nbformat')
  nb = nbformat.read(path, as_version=4)
  for cell in nb.cells:
    if cell.cell_type == 'code':
      assert not cell.outputs and cell.execution_count is None
  # One parameters cell, which the tests replace with the tiny variants.
  tagged = [c for c in nb.cells if 'parameters' in c.metadata.get('tags', [])]
  assert len(tagged) == 1


def _execute(path, params: str, tmp_path) -> None:
  """Runs the notebook at path with its parameters cell replaced."""
  nbformat = pytest.importorskip('nbformat')
  nbclient = pytest.importorskip('nbclient')
  nb = nbformat.read(path, as_version=4)
  cells = [c for c in nb.cells if 'parameters' in c.metadata.get('tags', [])]
  assert len(cells) == 1
  cells[0].source = params
  env_before = os.environ.get('XLA_FLAGS')
  # The kernel is a fresh process: one CPU device is enough there.
  os.environ['XLA_FLAGS'] = ''
  try:
    nbclient.NotebookClient(nb, timeout=600, kernel_name='python3',
                            resources={'metadata': {'path': str(tmp_path)}}
                            ).execute()
  finally:
    os.environ['XLA_FLAGS'] = env_before or ''


def test_notebook_runs_top_to_bottom(tmp_path):
  _execute(NOTEBOOK, f"VARIANT = 'tiny'\nNUM_STEPS = 2\n"
           f"WORKDIR = {str(tmp_path / 'run')!r}", tmp_path)
  assert (tmp_path / 'run' / 'chelsea_x4.png').exists()
  assert (tmp_path / 'run' / 'eval' / 'results.md').exists()


def test_singan_notebook_runs_top_to_bottom(singan_tiny_run, tmp_path):
  # WORKDIR holds the session's finished tiny run (the same config): the
  # notebook's training cell resumes it, and its sampling and paint cells
  # write into this copy. SR_WORKDIR trains from scratch in the notebook.
  shutil.copytree(singan_tiny_run[0], tmp_path / 'run')
  _execute(SINGAN, f"VARIANT = 'tiny'\nSR_VARIANT = 'sr,tiny'\n"
           f"WORKDIR = {str(tmp_path / 'run')!r}\n"
           f"SR_WORKDIR = {str(tmp_path / 'sr')!r}", tmp_path)
  from jaxsr.data import io  # pylint: disable=g-import-not-at-top
  for start in (0, 1):
    assert len(list((tmp_path / 'run' / 'samples' / f'start{start}'
                     ).glob('000*.png'))) == 4
  painted = io.read_image(tmp_path / 'run' / 'paint2image.png')
  paint = io.read_image(tmp_path / 'run' / 'paint.png')
  assert painted.shape == paint.shape
  assert len(np.unique(paint.reshape(-1, 3), axis=0)) <= 6
  # sr,tiny trains on the x1/4 of chelsea's 64 px centre crop: 16 -> 64 px.
  assert io.read_image(tmp_path / 'sr' / 'sr.png').shape == (64, 64, 3)
  assert (tmp_path / 'sr' / 'sr_grid.png').exists()
