"""Tiled inference equals whole-image inference when the overlap covers the receptive field."""

import numpy as np

from jaxsr.evaluation import inference


def _local_net(x):
  """A stand-in x2 SR net with a 5x5 receptive field (radius 2)."""
  pad = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)), mode='reflect')
  acc = np.zeros_like(x)
  for dy in range(5):
    for dx in range(5):
      acc += pad[:, dy:dy + x.shape[1], dx:dx + x.shape[2]] * (dy + 2 * dx)
  return np.repeat(np.repeat(acc, 2, axis=1), 2, axis=2)


def test_tiled_equals_untiled_away_from_image_edges():
  rng = np.random.default_rng(0)
  lr = rng.random((37, 53, 3)).astype(np.float32)
  whole = inference.upscale(_local_net, lr, 2, tile=0)
  tiled = inference.upscale(_local_net, lr, 2, tile=10, overlap=3)
  assert tiled.shape == whole.shape == (74, 106, 3)
  # Reflect padding at window edges differs from the image's only inside the
  # receptive field; with overlap >= radius every kept core pixel matches.
  np.testing.assert_allclose(tiled, whole, atol=1e-4)


def test_tile_bigger_than_image_is_one_call():
  calls = []

  def net(x):
    calls.append(x.shape)
    return _local_net(x)

  lr = np.zeros((12, 9, 3), np.float32)
  out = inference.upscale(net, lr, 2, tile=64, overlap=8)
  assert out.shape == (24, 18, 3) and calls == [(1, 12, 9, 3)]
