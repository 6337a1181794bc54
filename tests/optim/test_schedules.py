"""Tests for jaxsr.optim.schedules.linear1cycledrop against PULSE's lambda.

Truths: PULSE's `schedule_dict['linear1cycledrop']` (PULSE.py) transcribed
in plain Python floats, hand values, piecewise linearity, and (with torch
installed) the learning rate torch's LambdaLR gives each optimizer step.
"""

import numpy as np
import optax
import pytest

from jaxsr.optim import schedules


def _pulse(x, steps):
  """PULSE.py: the LambdaLR multiplier of 'linear1cycledrop'."""
  if x < 0.9 * steps:
    return (9 * (1 - np.abs(x / (0.9 * steps) - 1 / 2) * 2) + 1) / 10
  return 1 / 10 + (x - 0.9 * steps) / (0.1 * steps) * (1 / 1000 - 1 / 10)


@pytest.mark.parametrize('steps', [100, 15, 7, 1])
def test_every_step_matches_pulse(steps):
  lr = 0.4
  sched = schedules.linear1cycledrop(lr, steps)
  got = np.array([float(sched(i)) for i in range(steps + 1)])
  want = np.array([lr * _pulse(i, steps) for i in range(steps + 1)])
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


def test_shape_for_100_steps():
  lr = 2.0
  sched = schedules.linear1cycledrop(lr, 100)
  f = np.array([float(sched(i)) for i in range(101)]) / lr
  # 0.1 at the start and at 90 %, the peak 1.0 at 45 %, 1e-3 at the end.
  np.testing.assert_allclose(f[[0, 45, 90, 100]], [0.1, 1.0, 0.1, 1e-3],
                             rtol=1e-6)
  assert f.argmax() == 45
  # Linear up (slope 0.9 / 45), down (-0.9 / 45), then the drop (-0.099 / 10).
  np.testing.assert_allclose(np.diff(f[:46]), 0.9 / 45, rtol=1e-4)
  np.testing.assert_allclose(np.diff(f[45:91]), -0.9 / 45, rtol=1e-4)
  np.testing.assert_allclose(np.diff(f[90:]), -0.099 / 10, rtol=1e-4)


def test_bad_steps():
  with pytest.raises(ValueError, match='positive'):
    schedules.linear1cycledrop(0.4, 0)


def test_optimizer_step_i_uses_the_lambdalr_factor_of_torch():
  torch = pytest.importorskip('torch')
  steps, lr = 12, 0.4
  p = torch.nn.Parameter(torch.zeros(()))
  opt = torch.optim.SGD([p], lr=lr)
  sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda x: _pulse(x, steps))
  torch_lrs = []
  for _ in range(steps):   # PULSE's loop: opt.step(), then scheduler.step()
    torch_lrs.append(opt.param_groups[0]['lr'])
    p.grad = torch.ones(())
    opt.step()
    sched.step()
  # optax: SGD with the schedule; a unit gradient's update is -lr at step i.
  tx = optax.sgd(schedules.linear1cycledrop(lr, steps))
  state = tx.init(np.zeros(()))
  ours = []
  for _ in range(steps):
    u, state = tx.update(np.ones((), np.float32), state)
    ours.append(-float(u))
  np.testing.assert_allclose(ours, torch_lrs, rtol=1e-6)
