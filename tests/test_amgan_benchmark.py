"""benchmarks/amgan.py --check: the PyTorch twins of AMGAN's 'sr' step and AMGAN-RL's 'fill' / 'ddpg' steps agree with jaxsr's.

The twin (benchmarks/torch_twin/amgan.py) is an independent PyTorch writing
of AMNet, the realness D, the VGG19 and DISTS losses, RealnessGAN's
projection and KL terms and the D-then-G Adam updates; the check compares
it with jaxsr's jitted stage step on the tiny config, from the same
perturbed weights and fed the LR, code and anchors jaxsr's step draws, and
must notice a twin whose G or D differs slightly. The RL twin
(benchmarks/torch_twin/amgan_rl.py: critic, ring buffer, play, critic and
actor Adam steps) is compared the same way, fed the LR, exploration noise
and minibatch positions that jaxsr's steps draw, and must notice a critic
padded as PyTorch pads, a minibatch read one slot off, and a different
pretrained actor (the reward's baseline).
"""

import pytest

from tests import helpers

torch = pytest.importorskip('torch')

@pytest.mark.slow
def test_twin_check_passes_and_catches_a_different_g_or_d():
  import jax  # pylint: disable=g-import-not-at-top
  bench_lib = helpers.load_benchmark('amgan')
  check_lib = bench_lib.check
  cpu = torch.device('cpu')
  from jaxsr.pretrained import dists  # pylint: disable=g-import-not-at-top
  config = bench_lib.config_for('tiny')
  # The step without its DISTS term compiles in a third of the time; DISTS
  # itself is compared in the forward check (its params given by hand).
  config.loss.dists_weight = 0.0
  bench = bench_lib.JaxAMGAN(config, jax.devices('cpu')[0], 'tiny')
  bench.constants['dists'] = dists.load_params('random', 'random')
  state = check_lib._perturbed_state(bench.state)
  forward = check_lib.forward_diffs(bench, state, cpu)
  assert set(forward) >= {'AMNet', 'predictor', 'D (train)', 'DISTS',
                          'vgg19 relu1_1'}, sorted(forward)
  assert not check_lib.twin_check.failures(forward, {}), forward
  ref = check_lib.jax_steps(bench, 'sr', state, num_steps=1)
  rows = check_lib.twin_steps(check_lib.twin_of(bench, state, cpu), 'sr', ref,
                              cpu)
  assert set(rows[0]) == set(check_lib.SR_LOSSES), rows
  assert not check_lib.loss_failures('sr', rows), rows
  # Every term but the switched-off DISTS is non-trivial.
  assert rows[0]['g_dists'] == (0.0, 0.0), rows
  assert all(abs(rows[0][k][0]) > 1e-3 for k in check_lib.SR_LOSSES
             if k != 'g_dists'), rows

  # A G whose output is shifted slightly: the G terms move.
  t = check_lib.twin_of(bench, state, cpu)
  with torch.no_grad():
    t.g.conv_last.bias.add_(0.05)
  bad = check_lib.loss_failures('sr', check_lib.twin_steps(t, 'sr', ref, cpu))
  assert any(' g_' in b for b in bad), bad
  # A D with one outcome's logit moved: the first step's D loss moves.
  t = check_lib.twin_of(bench, state, cpu)
  with torch.no_grad():
    t.d.linear2.weight[0].add_(0.1)  # Outcome 0's logit.
  bad = check_lib.loss_failures('sr', check_lib.twin_steps(t, 'sr', ref, cpu))
  assert any('step 0 d_loss' in b for b in bad), bad


@pytest.mark.slow
def test_rl_twin_check_passes_and_catches_padding_sampling_or_baseline(
    monkeypatch):
  import jax  # pylint: disable=g-import-not-at-top
  bench_lib = helpers.load_benchmark('amgan')
  check_lib = bench_lib.check
  rl = bench_lib.rl_steps
  cpu = torch.device('cpu')
  config = rl.config_for('tiny', 'psnr')
  # Two 'ddpg' steps (each plays and stores a batch, as 'fill' does, then
  # trains) of 4 items: the second one's write wraps around.
  config.rl.capacity = 6
  bench = bench_lib.JaxAMGAN(config, jax.devices('cpu')[0], 'tiny')
  state = rl.perturbed_state(bench, bench.state, check_lib.perturbed)
  ref = rl.jax_steps(bench, state, bench.hr(2), fill_steps=0, ddpg_steps=2)
  check = lambda t: rl.failures(rl.twin_steps(t, ref, cpu),
                                check_lib.FIRST_RTOL)
  t = rl.make_twin(bench, state, cpu)
  rows = rl.twin_steps(t, ref, cpu)
  assert not rl.failures(rows, check_lib.FIRST_RTOL), rows
  assert [r['buffer_size'][0] for r in rows['ddpg']] == [4., 6.], rows
  assert t.buffer.index == 2 and t.buffer.full
  for k in ('critic_loss', 'actor_loss', 'q_mean', 'box_penalty'):
    assert abs(rows['ddpg'][0][k][0]) > 1e-3, rows['ddpg'][0]
  assert all(abs(r['reward'][0]) > 1e-5 for r in rows['ddpg']), rows

  # The critic's stride-2 convs padded 1 on both sides (PyTorch's way).
  with monkeypatch.context() as m:
    m.setattr(bench_lib.rl_steps.twin, 'same_padding', lambda size: (1, 1))
    bad = check(rl.make_twin(bench, state, cpu))
  assert any('ddpg step 0 critic_loss' in b for b in bad), bad
  # The minibatch read one slot after the positions jaxsr's step drew.
  t = rl.make_twin(bench, state, cpu)
  sample = t.buffer.sample
  t.buffer.sample = lambda n, at: sample(n, (at + 1) % 6)
  bad = check(t)
  assert any('ddpg step 0 q_mean' in b for b in bad), bad
  # A pretrained actor (the reward's baseline) other than jaxsr's.
  t = rl.make_twin(bench, state, cpu)
  with torch.no_grad():
    t.p0.fc2.bias.add_(0.05)
  bad = check(t)
  assert any('ddpg step 0 reward' in b for b in bad), bad
