"""The training run's held-out grid names each image and scores each SR tile."""

import ml_collections
import numpy as np
from PIL import Image

from jaxsr.data import datasets
from jaxsr.evaluation import held_out


def test_training_grid_names_images_and_prints_scores_under_sr_tiles(
    tmp_path):
  """A flat HR of 100 (Y = round(16 + 219 * 100 / 255) = 102) against a flat
  SR of 110 (Y = 110): PSNR = 20 log10(255 / 8) = 30.07 dB, and SSIM of two
  constants (2 * 110 * 102 + C1) / (110^2 + 102^2 + C1), C1 = 2.55^2, is
  0.9972. Bicubic of a flat image is the image: PSNR inf, SSIM 1."""
  hr = np.full((48, 48, 3), 100, np.uint8)
  dataset = datasets.Dataset(names=['flat'], sizes=[(48, 48)],
                             load_hr=lambda i: hr)
  config = ml_collections.ConfigDict(dict(rounded_y=True, grid_images=1))
  rows, grid = held_out.evaluate_model(
      lambda lr: np.full((48, 48, 3), 110, np.uint8), dataset, 4, config)
  c1 = 2.55**2
  ssim = (2 * 110 * 102 + c1) / (110**2 + 102**2 + c1)
  assert f'{ssim:.4f}' == '0.9972'
  whole, centre = grid
  assert whole.title == 'flat' and centre.title == 'flat: centre 96x96'
  assert list(whole.captions) == ['PSNR inf dB  SSIM 1.0000',
                                  'PSNR 30.07 dB  SSIM 0.9972',
                                  'ground truth']
  held_out.final_report(str(tmp_path), rows, grid, step=4)
  png = np.asarray(Image.open(tmp_path / 'grid.png'))
  _, images = held_out.summaries(rows, grid, 'eval/val')
  np.testing.assert_array_equal(images['eval/val/grid'][0], png)
  # Header, title, 256-pixel tiles, captions, title, tiles; 4-pixel gaps.
  assert png.shape == (16 * 4 + 256 * 2 + 4 * 5, 3 * 256 + 2 * 4, 3)
  strips = {'header': png[:16], 'title': png[20:36],
            'captions': png[20 + 16 + 4 + 256 + 4:][:16]}
  for name, strip in strips.items():
    assert (strip < 128).any(), f'no text in the {name} strip'
  # Each caption is written under its own tile.
  for col in range(3):
    assert (strips['captions'][:, col * 260:col * 260 + 256] < 128).any()
