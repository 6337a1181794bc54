"""notebooks/amgan.ipynb runs top to bottom (tiny variants, PSNR reward; tests/test_notebook.py checks it is stored without outputs)."""

import json
import shutil

from tests.helpers import REPO
from tests.test_notebook import _execute

NOTEBOOK = REPO / 'notebooks' / 'amgan.ipynb'


def test_amgan_notebook_runs_top_to_bottom(amgan_tiny_run, tmp_path):
  """WORKDIR is a copy of the session's finished experiments/amgan.py:tiny
  run: the notebook's training cell resumes it (no step runs) and its picture
  cells write into the copy; the tiny AMGAN-RL run then trains from it. The
  run was saved on this session's 4 CPU devices and the kernel has one:
  resume and init_from read it across device counts."""
  from jaxsr.data import io  # pylint: disable=g-import-not-at-top
  work, rl_work = tmp_path / 'amgan', tmp_path / 'amgan-rl'
  shutil.copytree(amgan_tiny_run, work)
  checkpoints = sorted(p.name for p in (work / 'checkpoints').iterdir())
  _execute(NOTEBOOK, "VARIANT = 'tiny'\nRL_VARIANT = 'tiny'\n"
           f"WORKDIR = {str(work)!r}\nRL_WORKDIR = {str(rl_work)!r}\n"
           "REWARD = 'psnr'\nNIQE_PARAMS = None", tmp_path)
  # Resumed: no new step was trained into the copy.
  assert sorted(p.name for p in (work / 'checkpoints').iterdir()) == checkpoints
  # 4 demo patches x (HR, kernel, LR, decoded kernel), 128 px rows.
  assert io.read_image(work / 'degradations.png').shape[0] > 4 * 128
  # One held-out image (tiny keeps 1) at Table 1's 3 widths, 5 columns.
  assert io.read_image(work / 'blind_sr.png').shape[1] >= 5 * 16
  results = json.loads((rl_work / 'rl_results.json').read_text())
  assert results['reward'] == 'psnr'
  assert results['step'] == 4  # 2 'fill' + 2 'ddpg' steps.
  assert {(r['image'], r['width']) for r in results['rows']} == {
      ('chelsea', 1.3)}
  assert set(results['mean']) == {'pretrained', 'pretrained_in_box',
                                  'trained', 'true_code'}
  for picture in ('rl_curves.png', 'rl_codes.png'):
    assert (rl_work / picture).exists()
