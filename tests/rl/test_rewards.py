"""AMGAN-RL rewards: PSNR against a numpy transcription, NIQE through the host callback against the metric itself."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.metrics import niqe as niqe_metric
from jaxsr.rl import rewards


def test_psnr_reward_is_the_8_bit_psnr():
  rng = np.random.default_rng(0)
  hr = rng.random((3, 8, 9, 3)).astype(np.float32)
  sr = np.clip(hr + rng.normal(0, 0.05, hr.shape), -0.1, 1.1).astype(
      np.float32)
  got = jax.jit(rewards.psnr_reward)(sr, hr)
  a = np.round(np.clip(sr.astype(np.float64), 0, 1) * 255)
  b = np.round(hr.astype(np.float64) * 255)
  want = [10 * np.log10(255**2 / np.mean((x - y) ** 2)) for x, y in zip(a, b)]
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # Identical images: a finite 100 dB, not inf.
  np.testing.assert_allclose(rewards.psnr_reward(hr, hr), 100.0, rtol=1e-6)


def test_niqe_reward_is_minus_niqe_of_the_png_the_render_would_be(
    shared_data):
  from jaxsr.metrics.niqe import load_pristine_params  # pylint: disable=g-import-not-at-top
  params = load_pristine_params(shared_data / 'niqe' / 'niqe_pris_params.npz')
  rng = np.random.default_rng(1)
  # Smooth random images (NIQE of white noise is far off the pristine model).
  base = rng.random((2, 13, 13, 3))
  sr = jax.image.resize(jnp.asarray(base, jnp.float32), (2, 104, 100, 3),
                        'cubic') + 0.02
  reward = rewards.niqe_reward(params, crop_border=2)
  got = jax.jit(reward)(sr)
  for i in range(2):
    png = np.floor(np.clip(np.asarray(sr[i]), 0, 1) * 255 + 0.5).astype(
        np.uint8)
    np.testing.assert_allclose(
        got[i], -niqe_metric(png, crop_border=2, params=params), rtol=1e-5)
  # Under vmap (one image per call) the same values.
  np.testing.assert_allclose(jax.vmap(lambda x: reward(x[None])[0])(sr), got,
                             rtol=1e-6)


def test_renders_too_small_for_niqe_are_refused():
  rewards.check_render_size('niqe', 96, 0)
  rewards.check_render_size('psnr', 16, 0)
  with pytest.raises(ValueError, match='96 x 96'):
    rewards.check_render_size('niqe', 128, 17)
