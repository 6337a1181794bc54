"""benchmarks/faces.py --check: the PyTorch twin of the face search agrees with jaxsr's.

The twin (benchmarks/torch_twin/) is an independent PyTorch writing of the
DCGAN prior and of PULSE's search (its SphericalOptimizer, LambdaLR
schedule and losses); the check compares it with jaxsr's search of 2 faces
for 2 iterations on the real shared DCGAN (random weights when absent).
"""

import pytest

from tests import helpers

torch = pytest.importorskip('torch')

@pytest.mark.slow
def test_twin_check_passes_and_catches_a_different_g():
  faces = helpers.load_benchmark('faces')
  cpu = torch.device('cpu')
  setup = faces.dcgan_setup(cpu)
  ref = faces.jax_reference(setup, batch=2, steps=2)
  results, failures = faces.compare(setup, ref, cpu)
  assert not failures, failures
  for mode in ('vmap', 'loop'):
    assert results[mode]['image0_max_abs_diff'] < faces.IMAGE_ATOL
  # The same comparison must notice a twin G that differs slightly.
  with torch.no_grad():
    setup.g.deconv4.bias.add_(1e-3)
  _, failures = faces.compare(setup, ref, cpu)
  assert any('first image' in f for f in failures), failures
  assert any('iteration 0 l2' in f for f in failures), failures
