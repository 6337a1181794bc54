"""Two toy methods that exercise what the Method/Stage interface promises.

- `pyramid`: a two-scale x2 -> x2 pyramid trained in three stages: 'coarse'
  trains G0 (LR -> HR/2); 'fine' enters by starting G1 from a copy of G0
  (the network in use grows to two scales, as a SinGAN scale starts from
  the previous one) and trains G1 on G0's frozen output; 'joint' trains both.
- `backproject`: no stage at all; predict *is* an optimization with an rng
  (as a latent search): a noisy bicubic start refined by gradient descent on
  the LR consistency |bicubic_down(SR) - LR|^2 (iterative back-projection).

Registered into jaxsr.methods.METHODS by `register()` (tests/methods/
toy_config.py calls it, so `python -m jaxsr.main --config
tests/methods/toy_config.py:pyramid` runs them). `config.toy.kill_at` makes
the training-batch iterator SIGKILL its own process right before that step,
once that step's checkpoint is on disk: a real kill -9 at a chosen step.
"""

import functools
import os
import signal
import time
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxsr import methods
from jaxsr.data import imresize
from jaxsr.methods import base
from jaxsr.methods import psnr


class Up2(nn.Module):
  """x2 upsampler: bilinear skip + conv, conv, pixel shuffle."""
  features: int = 8

  @nn.compact
  def __call__(self, x):
    n, h, w, c = x.shape
    y = nn.relu(nn.Conv(self.features, (3, 3))(x))
    y = nn.Conv(4 * c, (3, 3), kernel_init=nn.initializers.zeros)(y)
    y = y.reshape(n, h, w, 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
    y = y.reshape(n, 2 * h, 2 * w, c)
    return jax.image.resize(x, (n, 2 * h, 2 * w, c), 'bilinear') + y


@flax.struct.dataclass
class PyramidState:
  step: jax.Array
  g0_params: Any
  g0_opt_state: Any
  g1_params: Any
  g1_opt_state: Any


def _half(hr):
  n, h, w, c = hr.shape
  return hr.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def _pyramid_init(rng, *, g, tx, lr_size):
  x = jnp.zeros((1, lr_size, lr_size, 3))
  k0, k1 = jax.random.split(rng)
  g0 = g.init(k0, x)['params']
  g1 = g.init(k1, jnp.zeros((1, 2 * lr_size, 2 * lr_size, 3)))['params']
  return PyramidState(step=jnp.zeros((), jnp.int32), g0_params=g0,
                      g0_opt_state=tx.init(g0), g1_params=g1,
                      g1_opt_state=tx.init(g1))


def _coarse(state, batch, rng, constants, *, g, tx):
  del rng, constants
  g0, opt, loss = psnr.l1_update(state.g0_params, state.g0_opt_state, tx,
                                 g.apply, batch['lr'], _half(batch['hr']))
  return state.replace(step=state.step + 1, g0_params=g0,
                       g0_opt_state=opt), {'l1_half': loss}


def _grow(state, *, tx):
  """Scale 1 starts from scale 0 (same width), with a fresh optimizer."""
  g1 = jax.tree.map(jnp.copy, state.g0_params)
  return state.replace(g1_params=g1, g1_opt_state=tx.init(g1))


def _fine(state, batch, rng, constants, *, g, tx):
  del rng, constants
  mid = jax.lax.stop_gradient(g.apply({'params': state.g0_params},
                                      batch['lr']))
  g1, opt, loss = psnr.l1_update(state.g1_params, state.g1_opt_state, tx,
                                 g.apply, mid, batch['hr'])
  return state.replace(step=state.step + 1, g1_params=g1,
                       g1_opt_state=opt), {'l1': loss}


def _joint(state, batch, rng, constants, *, g, tx):
  del rng, constants

  def loss_fn(params):
    g0, g1 = params
    sr = g.apply({'params': g1}, g.apply({'params': g0}, batch['lr']))
    return jnp.mean(jnp.abs(sr - batch['hr']))

  params = (state.g0_params, state.g1_params)
  loss, grads = jax.value_and_grad(loss_fn)(params)
  u0, o0 = tx.update(grads[0], state.g0_opt_state, params[0])
  u1, o1 = tx.update(grads[1], state.g1_opt_state, params[1])
  return state.replace(
      step=state.step + 1, g0_params=optax.apply_updates(params[0], u0),
      g0_opt_state=o0, g1_params=optax.apply_updates(params[1], u1),
      g1_opt_state=o1), {'l1': loss}


def _pyramid_predict(state, inputs, rng, *, g):
  del rng
  mid = g.apply({'params': state.g0_params}, inputs['lr'])
  return g.apply({'params': state.g1_params}, mid)


def _killing(train_batches, kill_at: int, workdir: str):
  """train_batches whose iterator SIGKILLs the process before step kill_at,
  once checkpoints/<kill_at> is written."""
  def batches(start, index, count):
    inner = train_batches(start, index, count)
    step = start
    while True:
      if step == kill_at:
        done = os.path.join(workdir, 'checkpoints', str(kill_at))
        deadline = time.time() + 120
        while not os.path.isdir(done) and time.time() < deadline:
          time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGKILL)
      step += 1
      yield next(inner)
  return batches


def build_pyramid(config) -> base.Method:
  """The three-stage, two-scale toy pyramid (config.toy.steps per stage)."""
  if config.scale != 4:
    raise ValueError('the toy pyramid is x2 then x2: config.scale must be 4')
  g = Up2()
  tx = optax.adam(config.toy.lr)
  n0, n1, n2 = config.toy.steps
  data = base.patch_data(config)
  if config.toy.kill_at >= 0:
    data['train_batches'] = _killing(data['train_batches'],
                                     config.toy.kill_at, config.toy.workdir)
  k = config.toy.steps_per_call
  stages = (
      base.Stage('coarse', n0, functools.partial(_coarse, g=g, tx=tx),
                 evaluate_at_end=True, steps_per_call=k),
      base.Stage('fine', n1, functools.partial(_fine, g=g, tx=tx),
                 enter=functools.partial(_grow, tx=tx), steps_per_call=k),
      base.Stage('joint', n2, functools.partial(_joint, g=g, tx=tx),
                 steps_per_call=k),
  )
  return base.Method(
      init=functools.partial(_pyramid_init, g=g, tx=tx,
                             lr_size=config.data.hr_patch // 4),
      stages=stages,
      predict=functools.partial(_pyramid_predict, g=g),
      init_fields=('g0_params', 'g1_params'),
      resumable_keys=('toy.kill_at', 'toy.workdir'),  # Fault injection.
      **data)


@flax.struct.dataclass
class BackprojectState:
  step: jax.Array
  step_size: jax.Array


def _backproject_predict(state, inputs, rng, *, scale, iterations, noise):
  lr = inputs['lr']
  n, h, w, c = lr.shape
  start = imresize.imresize_jax(lr, scale)
  start = start + noise * jax.random.normal(rng, start.shape)

  def consistency(sr):
    return 0.5 * jnp.sum(jnp.square(imresize.imresize_jax(sr, 1 / scale)
                                    - lr))

  def body(_, sr):
    return sr - state.step_size * jax.grad(consistency)(sr)

  del n, h, w, c
  return jax.lax.fori_loop(0, iterations, body, start)


def build_backproject(config) -> base.Method:
  """No stages: the prediction is an optimization with an rng."""
  def init(rng):
    del rng
    return BackprojectState(step=jnp.zeros((), jnp.int32),
                            step_size=jnp.asarray(config.toy.lr, jnp.float32))
  data = base.patch_data(config)
  return base.Method(
      init=init, stages=(),
      predict=functools.partial(_backproject_predict, scale=config.scale,
                                iterations=config.toy.steps[0],
                                noise=config.toy.noise),
      init_fields=(), tileable=False, num_devices=1,
      held_out=data['held_out'])


def register() -> None:
  """Adds the toys to the method registry (tests only)."""
  methods.METHODS['toy_pyramid'] = build_pyramid
  methods.METHODS['toy_backproject'] = build_backproject
