"""Restores a trained model from a workdir (its config.json and newest intact checkpoint).

Read-only: nothing here creates or writes anything in the workdir.
"""

import dataclasses
import functools
import json
import os
from collections.abc import Callable

import jax
import ml_collections
import numpy as np

from jaxsr import checkpoint
from jaxsr import methods
from jaxsr import sharding
from jaxsr.methods import base


@dataclasses.dataclass(frozen=True)
class Model:
  """A restored model: predict maps float32 NHWC LR in [0,1] to SR.

  `predict(lr, rng=None)`: rng defaults to a fixed key of the run's seed, so
  a stochastic method (a latent search) gives the same SR every time.
  `tileable` says whether the SR of tiles may be stitched (else whole images
  only). A blind method also has `predict_code(lr) -> (N, dim)` and
  `encode_kernel(kernels (N, k, k)) -> (N, dim)` (None otherwise).
  """
  config: ml_collections.ConfigDict
  step: int
  predict: Callable[..., np.ndarray]
  tileable: bool = True
  predict_code: Callable[..., np.ndarray] | None = None
  encode_kernel: Callable[..., np.ndarray] | None = None

  @property
  def scale(self) -> int:
    return int(self.config.scale)


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a workdir was trained with (workdir/config.json)."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'{path} is missing: expected a workdir written by '
                            'python -m jaxsr.main')
  with open(path) as f:
    text = f.read()
  try:
    return ml_collections.ConfigDict(json.loads(text))
  except ValueError as e:
    raise ValueError(f'{path} is not valid JSON ({e}): the workdir\'s config '
                     'record is damaged') from None


def load_state(workdir: str, method: base.Method | None = None):
  """The newest intact checkpointed state of `workdir` on one device.

  `method` is the workdir's method when the caller built it already. A
  damaged newer step folder is skipped with a warning naming it; when no step
  restores, the error names every step folder and why.
  """
  mngr = checkpoint.reader(workdir)  # Fails first when there is none.
  try:
    if method is None:
      method = methods.build(load_config(workdir))
    mesh = sharding.make_mesh(jax.devices()[:1])
    # Shapes only: no random init, and no frozen loss networks to load.
    repl = sharding.replicated(mesh)
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl),
        jax.eval_shape(method.init, base.init_key(0)))
    state = checkpoint.restore_latest(mngr, abstract)
  finally:
    mngr.close()
  if state is None:
    raise FileNotFoundError(
        f'no checkpoint under {checkpoint.checkpoint_dir(workdir)}')
  return state


def load_model(workdir: str) -> Model:
  """The newest intact checkpoint of `workdir`, ready for inference on one device."""
  config = load_config(workdir)
  if not checkpoint.steps_on_disk(workdir):  # Before building anything.
    raise FileNotFoundError(
        f'no checkpoint under {checkpoint.checkpoint_dir(workdir)}: expected '
        'a workdir written by python -m jaxsr.main')
  method = methods.build(config)
  state = load_state(workdir, method)
  jit_predict = jax.jit(method.predict)
  default_rng = jax.random.fold_in(jax.random.key(config.seed), 2)

  def predict(lr, rng=None):
    return jit_predict(state, {'lr': lr},
                       default_rng if rng is None else rng)

  blind = {}
  for name in ('predict_code', 'encode_kernel'):
    fn = getattr(method, name)
    if fn is not None:
      blind[name] = functools.partial(jax.jit(fn), state)
  return Model(config=config, step=int(state.step), predict=predict,
               tileable=method.tileable, **blind)
