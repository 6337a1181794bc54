"""Network interpolation between a PSNR and a GAN generator."""

import jax
import numpy as np
import pytest

from jaxsr import interpolate
from jaxsr import restore
from jaxsr import train
from tests.test_train import tiny_config


def test_interpolate_params_is_the_convex_combination():
  a = {'w': np.array([0., 2.]), 'b': {'c': np.array(1.)}}
  b = {'w': np.array([1., 4.]), 'b': {'c': np.array(3.)}}
  out = interpolate.interpolate_params(a, b, 0.8)
  np.testing.assert_allclose(out['w'], [0.8, 3.6])
  np.testing.assert_allclose(out['b']['c'], 2.6)
  with pytest.raises(ValueError, match='alpha'):
    interpolate.interpolate_params(a, b, 1.5)
  with pytest.raises(ValueError, match='shapes'):
    interpolate.interpolate_params(a, {'w': np.zeros(3), 'b': b['b']}, 0.5)


def test_interpolated_workdir_is_usable(tmp_path):
  a = train.train_and_evaluate(tiny_config(num_steps=1), str(tmp_path / 'a'))
  b = train.train_and_evaluate(tiny_config(num_steps=2), str(tmp_path / 'b'))
  out = interpolate.interpolate_workdirs(str(tmp_path / 'a'),
                                         str(tmp_path / 'b'), 0.25,
                                         str(tmp_path / 'mix'))
  mixed = restore.load_state(out)
  jax.tree.map(lambda x, y, m: np.testing.assert_allclose(
      m, 0.75 * np.asarray(x) + 0.25 * np.asarray(y), rtol=1e-6, atol=1e-7),
               a.g_params, b.g_params, mixed.g_params)
  model = restore.load_model(out)
  sr = model.predict(np.zeros((1, 8, 8, 3), np.float32))
  assert sr.shape == (1, 32, 32, 3)
