"""Shared test helpers: load experiment configs, override them, random batches."""

import importlib.util
import pathlib

import jax.numpy as jnp
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_experiment(name, arg=None):
  """experiments/<name>.py's get_config(arg) (experiments/ is not a package)."""
  spec = importlib.util.spec_from_file_location(
      name, REPO / 'experiments' / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def experiment_config(name, arg='tiny', **overrides):
  """An unlocked config with 'section.field' overrides applied."""
  config = load_experiment(name, arg)
  config.unlock()
  for key, value in overrides.items():
    section, _, field = key.rpartition('.')
    (config[section] if section else config)[field] = value
  return config


def random_batch(config, n=4, seed=0):
  """A batch of uniform random LR/HR images shaped for config."""
  rng = np.random.default_rng(seed)
  p, s = config.data.hr_patch, config.scale
  return {'lr': jnp.asarray(rng.random((n, p // s, p // s, 3), np.float32)),
          'hr': jnp.asarray(rng.random((n, p, p, 3), np.float32))}


def train_scalars(workdir) -> dict[int, dict[str, float]]:
  """{step: {tag without 'train/': value}} from every event file of a workdir
  (several when a run was resumed)."""
  import glob  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  out = {}
  for path in sorted(glob.glob(str(pathlib.Path(workdir) / 'events.out.*'))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag.startswith('train/'):
          number = float(tf.make_ndarray(value.tensor))
          out.setdefault(event.step, {})[value.tag[len('train/'):]] = number
  return out


# The pre-Stage warm-up step logged its L1 terms under the GAN step's names.
_WARMUP_KEYS = {
    'rrdb_psnr': {'psnr/g_l1': 'g_l1', 'psnr/l_l1': 'l_l1'},
    'san_sr': {'psnr/g_l1': 'g_content'},
}
_LSRGAN_WARMUP = {'psnr/g_l1': 'g_pixel', 'psnr/l_l1': 'l_loss'}


def assert_matches_pre_stage(name: str, workdir, state, rtol: float = 1e-3):
  """Checks a tiny run of experiments/<name>.py (3 steps, warm-up 1, logged
  every step) against the metrics and final state recorded with the code
  before the Method/Stage interface (tests/methods/golden_pre_stage.json)."""
  import json  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  golden = json.loads((REPO / 'tests' / 'methods' / 'golden_pre_stage.json')
                      .read_text())['runs'][name]
  got = train_scalars(workdir)
  assert sorted(got) == [1, 2, 3], sorted(got)
  warm = _WARMUP_KEYS.get(name, _LSRGAN_WARMUP)
  compared = 0
  for step, values in got.items():
    want = golden['metrics'][str(step)]
    for tag, value in values.items():
      stage, key = tag.split('/')
      old = warm.get(tag, key) if stage == 'psnr' else key
      if key == 'learning_rate':
        old = 'learning_rate'
      np.testing.assert_allclose(value, want[old], rtol=rtol, atol=1e-6,
                                 err_msg=f'{name} step {step} {tag}')
      compared += 1
  assert compared >= 3 * 2
  for field, total in golden['state_abs_sums'].items():
    leaves = [np.asarray(x, np.float64).ravel()
              for x in jax.tree.leaves(getattr(state, field))]
    # Adam moments turn rounding noise of near-zero gradients into larger
    # relative changes: their sums differ by up to 4.4e-4 across CPUs
    # (measured: esrgan's d_opt_state on an AMD EPYC VM).
    np.testing.assert_allclose(sum(np.abs(x).sum() for x in leaves), total,
                               rtol=2e-3 if 'opt' in field else 1e-4,
                               err_msg=f'{name} final {field}')
    # A random projection sees a change of ~1e-4 in many weights (e.g. an EMA
    # restarted one step late) that the sum of |x| averages away.
    projection = sum(float(np.random.default_rng(i).standard_normal(x.size)
                           @ x) for i, x in enumerate(leaves))
    # A projection cancels to ~1e-4 of the |x| sum, so its cross-CPU noise
    # (Adam's +-lr steps on near-zero gradients) is bounded against that sum:
    # measured on an AMD EPYC VM, 1.6e-4 of it for d_opt_state, 1.4e-6 for
    # d_params; an EMA restarted one step late moves ema_params' by ~1e-4.
    np.testing.assert_allclose(
        projection, golden['state_projections'][field], rtol=2e-4,
        atol=max(1e-5, (1e-3 if 'opt' in field else 1e-5) * total),
        err_msg=f'{name} final {field}')


def run_stages(method, batches, num_steps: int, state=None, constants=None,
               rng=None):
  """Runs the first num_steps global steps of a method as the loop does
  (enter at each stage's first step), on one device, without the loop."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxsr.methods import base  # pylint: disable=g-import-not-at-top
  state = method.init(base.init_key(0)) if state is None else state
  constants = method.constants() if constants is None else constants
  rng = jax.random.key(1) if rng is None else rng
  for step in range(int(state.step), num_steps):
    stage, first = method.stage_at(step)
    if step == first and stage.enter is not None:
      state = jax.jit(stage.enter)(state)
    state, _ = jax.jit(stage.step)(state, batches(step), rng, constants)
  return state


def implied_adam_lr(params_before, params_after, opt_state_after, b1: float,
                    b2: float, eps: float) -> float:
  """The learning rate an optax Adam step applied, read off the states.

  Adam moves p by -lr * m̂ / (sqrt(v̂) + eps) with m̂ = mu / (1 - b1^t),
  v̂ = nu / (1 - b2^t), t = the update count after the step: the median of
  (p_before - p_after) / (m̂ / (sqrt(v̂) + eps)) over well-conditioned
  elements.
  """
  import jax  # pylint: disable=g-import-not-at-top
  adam_state = opt_state_after[0]
  t = float(adam_state.count)
  ratios = []
  for p0, p1, mu, nu in zip(*(jax.tree.leaves(x) for x in (
      params_before, params_after, adam_state.mu, adam_state.nu))):
    mhat = np.asarray(mu, np.float64) / (1 - b1**t)
    vhat = np.asarray(nu, np.float64) / (1 - b2**t)
    direction = mhat / (np.sqrt(vhat) + eps)
    ok = np.abs(direction) > 0.1
    delta = np.asarray(p0, np.float64) - np.asarray(p1, np.float64)
    ratios.append((delta[ok] / direction[ok]).ravel())
  return float(np.median(np.concatenate(ratios)))


def load_benchmark(name: str):
  """benchmarks/<name>.py as a module (benchmarks/ is not a package; its
  sibling imports resolve while it loads)."""
  import sys  # pylint: disable=g-import-not-at-top
  folder = str(REPO / 'benchmarks')
  sys.path.insert(0, folder)
  try:
    spec = importlib.util.spec_from_file_location(
        f'benchmarks_{name}', REPO / 'benchmarks' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
  finally:
    sys.path.remove(folder)
