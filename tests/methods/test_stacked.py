"""Several SinGAN pyramids trained as one vmapped run equal the runs trained one by one."""

import jax
import numpy as np
import pytest

from jaxsr import methods
from jaxsr import train
from jaxsr.data import demo
from jaxsr.data import io
from jaxsr.methods import base
from jaxsr.methods import singan
from jaxsr.methods import stacked
from tests import helpers


@pytest.fixture(scope='module')
def images(tmp_path_factory):
  """Two different 30 x 45 photos (crops of two embedded images)."""
  folder = tmp_path_factory.mktemp('images')
  paths = []
  for name in ('coffee', 'astronaut'):
    (_, image), = demo.load([name])
    paths.append(str(folder / f'{name}.png'))
    io.write_image(paths[-1], image[100:130, 100:145])
  return paths


def _config(**overrides):
  # TTUR without the attack: the vmapped adaptive step (both branches of the
  # switch) compiles for minutes on 2 CPU cores; the attack is per-run
  # state like the rest (tests/methods/test_singan.py tests it).
  return helpers.experiment_config('singan', 'tiny,ttur', **overrides)


@pytest.fixture(scope='module')
def trained(images, tmp_path_factory):
  """(workdir, final state) of both images trained as one stacked run."""
  workdir = tmp_path_factory.mktemp('stacked')
  config = _config(**{'data.images': tuple(images)})
  return workdir, train.train_and_evaluate(config, str(workdir))


def _close(a, b, skip_bn_conv_bias=False, of_max=None, step_atol=0.,
           **tol):
  """Leaf by leaf: assert_allclose(**tol), or with of_max, every leaf within
  of_max of its own largest entry, the networks' variables (.g, .d) within
  that plus step_atol.

  of_max is for states after a step: batched (vmapped) and single
  convolutions round differently, and Adam turns the rounding of a
  near-zero gradient entry into a step of about +-lr (its first step is
  lr * g / |g|): D's parameters after its steps then differ by up to lr_d in
  places, and G's gradients through that D by more than an elementwise rtol
  allows. Measured on an AMD EPYC VM (jax 0.10.2, Winograd kernel
  gradients): Adam moments up to 2.1e-3 of their leaf's largest entry in a
  1-device process, 1.6e-2 with the tests' 4 forced CPU devices (G's mu at
  scale 1); a run reading another run's image, noise or weights moves a
  moment by O(1) of it. step_atol bounds the networks' variables' +-lr
  steps."""
  flat_a, _ = jax.tree_util.tree_flatten_with_path(a)
  flat_b, _ = jax.tree_util.tree_flatten_with_path(b)
  assert len(flat_a) == len(flat_b)
  for (path, x), (_, y) in zip(flat_a, flat_b):
    name = jax.tree_util.keystr(path)
    # The bias of a conv followed by BatchNorm has a zero gradient: Adam
    # turns its rounding noise into steps of +-lr, different for batched
    # and unbatched convs; the BN running means that follow absorb them.
    if skip_bn_conv_bias and ("['conv']['bias']" in name
                              or "['norm']['mean']" in name):
      continue
    if of_max is None:
      np.testing.assert_allclose(np.asarray(x), np.asarray(y), err_msg=name,
                                 **tol)
      continue
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if '.nu[' in name:  # Adam's second moment: compare RMS gradients.
      x, y = np.sqrt(x), np.sqrt(y)
    err = np.max(np.abs(x - y), initial=0.)
    largest = np.max(np.abs(y), initial=0.)
    atol = step_atol if name.startswith(('.g[', '.d[')) else 0.
    assert err <= of_max * largest + atol, (name, err, largest)


def test_stacked_runs_equal_the_runs_alone(images, trained):
  """Init, every stage's enter and a step of each run, from equal states."""
  config = _config(**{'data.images': tuple(images)})
  together = methods.build(config)
  alone = [methods.build(_config(**{'data.image': p})) for p in images]
  key = base.init_key(config.seed)
  state = together.init(key)
  assert stacked.num_runs(state) == 2 and state.step.shape == ()
  # Run i starts as the single run initialized with split(key, 2)[i].
  for i, keys in enumerate(jax.random.split(key, 2)):
    _close(stacked.select(state, i), alone[i].init(keys), rtol=0, atol=0)
  rng = jax.random.key(7)
  for n, stage in enumerate(together.stages):
    entered = jax.jit(stage.enter)(state)
    stepped, metrics = jax.jit(stage.step)(entered, {}, rng, {})
    means = {k: 0. for k in metrics}
    for i, run_rng in enumerate(jax.random.split(rng, 2)):
      single = alone[i].stages[n]
      mine = stacked.select(entered, i)
      ref = jax.jit(single.enter)(stacked.select(state, i))
      _close(mine, ref, rtol=1e-5, atol=1e-6)
      # Each run reads its own image, noise and coarser scales.
      ref, ref_metrics = jax.jit(single.step)(mine, {}, run_rng, {})
      _close(stacked.select(stepped, i), ref, skip_bn_conv_bias=True,
             of_max=5e-2,
             step_atol=1e-5)  # 0.1 lr_g.
      for k, v in ref_metrics.items():
        means[k] += float(v) / 2
    for k, v in metrics.items():
      np.testing.assert_allclose(float(v), means[k], rtol=1e-4, atol=1e-6)
    state = stepped
  # The loop trained both: different images, different pyramids.
  _, final = trained
  assert int(final.step) == together.num_steps
  first, second = stacked.select(final, 0), stacked.select(final, 1)
  assert not np.allclose(first.reals[-1], second.reals[-1])
  assert not np.allclose(first.g[-1]['params']['tail']['kernel'],
                         second.g[-1]['params']['tail']['kernel'])


def test_stacked_predict_and_cli_select_a_run(images, trained, tmp_path):
  from jaxsr import singan as cli  # pylint: disable=g-import-not-at-top
  workdir, _ = trained
  _, _, second = cli.load(str(workdir), run=1)
  np.testing.assert_array_equal(
      second.reals[-1], singan.image_and_nets(
          _config(**{'data.image': images[1]}))[1][-1])
  with pytest.raises(ValueError, match='out of range'):
    cli.load(str(workdir), run=2)
  out = cli.sr_file(str(workdir), 2, str(tmp_path / 'sr.png'), run=1)
  h, w = second.reals[-1].shape[:2]  # The finest scale: max_size 32.
  assert io.read_image(out).shape == (2 * h, 2 * w, 3)


def test_images_of_different_sizes_are_refused(images, tmp_path):
  io.write_image(tmp_path / 'odd.png', np.zeros((31, 45, 3), np.uint8))
  with pytest.raises(ValueError, match='must share one size'):
    methods.build(_config(**{'data.images': (images[0],
                                             str(tmp_path / 'odd.png'))}))
