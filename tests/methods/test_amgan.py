"""AMGAN (paper 003): the 'sr' and 'predictor' stages on the tiny config, resume, restore, blind hooks."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr import checkpoint
from jaxsr import methods
from jaxsr import restore
from jaxsr import train
from jaxsr.data import degradations
from jaxsr.methods import amgan
from jaxsr.methods import base
from tests import helpers


def _config(**overrides):
  return helpers.experiment_config('amgan', 'tiny', **overrides)


def _changed(a, b) -> bool:
  return any(not np.array_equal(x, y) for x, y in zip(
      jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture(scope='module')
def stepped():
  """(method, initial state, state after one 'sr' step, after one
  'predictor' step on top of it)."""
  config = _config()
  method = methods.build(config)
  state0 = method.init(base.init_key(config.seed))
  consts = method.constants()
  batch = {'hr': jnp.asarray(np.random.default_rng(0).random(
      (2, 16, 16, 3), np.float32))}
  rng = jax.random.key(1)
  sr_stage, predictor_stage = method.stages
  assert (sr_stage.name, predictor_stage.name) == ('sr', 'predictor')
  state1, m1 = jax.jit(sr_stage.step)(state0, batch, rng, consts)
  state2, m2 = jax.jit(predictor_stage.step)(state1, batch, rng, consts)
  return method, state0, (state1, m1), (state2, m2)


def test_sr_step_trains_g_and_d_only(stepped):
  _, state0, (state1, metrics), _ = stepped
  assert _changed(state0.g_params, state1.g_params)
  assert _changed(state0.d_params, state1.d_params)
  assert not _changed(state0.p_params, state1.p_params)
  assert not _changed(state0.pca, state1.pca)
  for k in ('d_loss', 'g_total', 'g_pixel', 'g_vgg', 'g_adv', 'g_dists'):
    assert np.isfinite(metrics[k]), k
  # The supplement's total: L1 + 15 Lvgg + 0.01 Lrealness + 10 LDISTS.
  np.testing.assert_allclose(
      metrics['g_total'], metrics['g_pixel'] + 15 * metrics['g_vgg']
      + 0.01 * metrics['g_adv'] + 10 * metrics['g_dists'], rtol=1e-5)


def test_predictor_step_leaves_the_renderer_and_d_alone(stepped):
  _, _, (state1, _), (state2, metrics) = stepped
  assert _changed(state1.p_params, state2.p_params)
  for field in ('g_params', 'g_opt_state', 'd_params', 'd_batch_stats',
                'd_opt_state', 'pca'):
    assert not _changed(getattr(state1, field), getattr(state2, field)), field
  assert np.isfinite(metrics['p_code_mse'])


def test_predictor_regresses_the_true_code(stepped):
  # The step's loss is the MSE between the predictor's code and the code of
  # the kernels the step drew: recompute both independently.
  method, _, (state1, _), (_, metrics) = stepped
  config = _config()
  hr = jnp.asarray(np.random.default_rng(0).random((2, 16, 16, 3),
                                                   np.float32))
  key = jax.random.fold_in(jax.random.key(1), state1.step)
  data = degradations.random_degradation(
      key, hr, scale=4, pca=state1.pca, sigma_range=(0.2, 4.0))
  _, p, _ = amgan.build_networks(config)
  code = p.apply({'params': state1.p_params}, data['lr'])
  np.testing.assert_allclose(
      metrics['p_code_mse'], np.mean((code - data['code']) ** 2), rtol=1e-4)
  # The code is (flat kernel - mean) @ basis of the stored PCA.
  flat = np.asarray(data['kernel'], np.float64).reshape(2, -1)
  want = (flat - np.asarray(state1.pca.mean)) @ np.asarray(state1.pca.basis)
  np.testing.assert_allclose(data['code'], want, atol=1e-5)
  del method


def test_the_pca_is_fitted_from_its_seed_and_kept_in_the_state(stepped):
  _, state0, _, _ = stepped
  config = _config()
  assert state0.pca.basis.shape == (21 * 21, 4)
  basis = np.asarray(state0.pca.basis, np.float64)
  np.testing.assert_allclose(basis.T @ basis, np.eye(4), atol=1e-5)
  other = amgan.fit_pca(helpers.experiment_config(
      'amgan', 'tiny', **{'degradation.pca_seed': 1}))
  assert not np.allclose(other.basis, state0.pca.basis)
  again = amgan.fit_pca(config)
  np.testing.assert_array_equal(again.basis, state0.pca.basis)


def test_trains_resumes_and_restores_blind(tmp_path, amgan_tiny_run):
  # The session's tiny run (2 'sr' + 2 'predictor' steps, a checkpoint per
  # step), copied: lose the predictor stage's checkpoints and the rerun
  # resumes at step 2 (the end of 'sr') and repeats the same steps.
  workdir = str(tmp_path / 'amgan')
  shutil.copytree(amgan_tiny_run, workdir)
  first = checkpoint.load_raw(workdir)
  assert int(first['step']) == 4
  assert checkpoint.steps_on_disk(workdir) == [2, 3, 4]
  for step in (3, 4):
    shutil.rmtree(os.path.join(checkpoint.checkpoint_dir(workdir), str(step)))
  again = train.train_and_evaluate(_config(), workdir)
  assert int(again.step) == 4
  for a, b in zip(jax.tree.leaves(first),
                  jax.tree.leaves(checkpoint.load_raw(workdir))):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5,
                               atol=1e-6)
  model = restore.load_model(workdir)
  lr = np.random.default_rng(1).random((1, 5, 6, 3), np.float32)
  assert model.predict(lr).shape == (1, 20, 24, 3)
  code = np.asarray(model.predict_code(lr))
  assert code.shape == (1, 4)
  kernel = degradations.gaussian_kernel_np(1.3)[None]
  true = np.asarray(model.encode_kernel(jnp.asarray(kernel, jnp.float32)))
  pca = again.pca
  want = (kernel.reshape(1, -1) - np.asarray(pca.mean)) @ np.asarray(
      pca.basis)
  np.testing.assert_allclose(true, want, atol=1e-6)


def test_bad_configs_name_the_problem():
  with pytest.raises(ValueError, match='config.loss.gan'):
    methods.build(_config(**{'loss.gan': 'wgan'}))
  with pytest.raises(ValueError, match='unknown key'):
    methods.build(_config(**{'degradation.sigma': 1.0}))
  with pytest.raises(ValueError, match='sigma'):
    methods.build(_config(**{'degradation.sigma_min': 5.0}))


def test_ragan_variant_is_amgan_star():
  config = helpers.experiment_config('amgan', 'tiny,ragan')
  _, _, d = amgan.build_networks(config)
  assert d.num_outputs == 1 and config.loss.gan == 'ragan'
  paper = helpers.load_experiment('amgan', None)
  assert (paper.loss.pixel_weight, paper.loss.vgg_weight,
          paper.loss.adv_weight, paper.loss.dists_weight) == (1, 15, 0.01, 10)
  assert paper.loss.anchors == 'supplement'


def test_a_config_written_before_amgan_rl_still_builds():
  # Workdirs of the first AMGAN slice have no rl section and no val_width:
  # they restore with the RL stages off and the Table 1 middle width.
  config = _config()
  del config['rl']
  del config.degradation['val_width']
  method = methods.build(config)
  assert [s.name for s in method.stages] == ['sr', 'predictor']
  assert method.held_out() is not None
