"""AMGAN-RL twin (PyTorch, NCHW): the critic, a ring replay buffer and the 'fill' / 'ddpg' steps.

The same functions as jaxsr.methods.amgan_rl, written as a PyTorch user
would, on the AMNet, kernel predictor and degradation twins of
torch_twin/amgan.py:
  Critic        jaxsr.models.critic.Critic: 3x3 stride-2 convs with XLA's
                SAME padding (for an even size: 0 before, 1 after; torch's
                padding=1 would pad both sides and shift every window),
                LReLU 0.2, global mean, concat the code, Dense + LReLU,
                Dense(1).
  ReplayBuffer  jaxsr.rl.replay: tensors of `capacity` items written in ring
                order; uniform sampling with replacement over the held items
                counted from the oldest (flashbax's mapping), or at given
                physical indices (the check feeds jaxsr's).
  play          a batch degraded on the fly; action = predictor(lr) +
                explore_std * code_spread * N(0, 1), clipped to the action box
                [code_low, code_high]; the frozen AMNet renders the action and,
                with baseline 'pretrained', the pretrained predictor's action
                (clipped too); r = clip(score - baseline score).
  ddpg_step     play and store, sample config.rl.batch_size transitions, one
                critic Adam step on squared TD (y = r) or Algorithm 1's line 7
                as written, then one actor Adam step on -mean Q(s, mu(s))
                through the updated critic plus the box penalty (squared
                distance outside the box in spreads). The critic reads the
                code clipped and standardized, (a - code_mean) / code_spread,
                and with critic_input 'code_and_pretrained' the pretrained
                code of s the same way (computed once per step).
Rewards: 'psnr' in torch (PSNR of the 8-bit render against the 8-bit HR);
'niqe' through a host function of uint8 NHWC images (the benchmark passes
jaxsr's numpy NIQE, the function jaxsr's step calls back to the host).
"""

from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from torch_twin import amgan as amgan_twin
from torch_twin import params as twin_params
from torch_twin import steps

HostReward = Callable[[np.ndarray], np.ndarray]  # uint8 (N, H, W, 3) -> (N,)


def same_padding(size: int, kernel: int = 3, stride: int = 2
                 ) -> tuple[int, int]:
  """XLA's SAME padding (before, after) of one axis: ceil(size / stride)
  outputs, the odd pixel of padding after."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


class Critic(nn.Module):
  """Q(s, a): (N, 3, h, w) LR and (N, A) input code -> (N,)."""

  def __init__(self, features: tuple[int, ...], hidden: tuple[int, ...],
               code_width: int):
    super().__init__()
    self.num_conv, self.num_fc = len(features), len(hidden)
    cin = 3
    for i, width in enumerate(features):
      self.add_module(f'conv{i}', nn.Conv2d(cin, width, 3, 2, 0))
      cin = width
    cin += code_width
    for i, width in enumerate(hidden):
      self.add_module(f'fc{i}', nn.Linear(cin, width))
      cin = width
    self.q = nn.Linear(cin, 1)

  def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    x = s
    for i in range(self.num_conv):
      (top, bottom), (left, right) = (same_padding(n) for n in x.shape[2:])
      x = F.pad(x, (left, right, top, bottom))
      x = F.leaky_relu(getattr(self, f'conv{i}')(x), 0.2)
    x = torch.cat([x.mean((2, 3)), a], 1)
    for i in range(self.num_fc):
      x = F.leaky_relu(getattr(self, f'fc{i}')(x), 0.2)
    return self.q(x)[:, 0]


class ReplayBuffer:
  """`capacity` transitions (s NCHW, a, r) as tensors, ring order."""

  def __init__(self, capacity: int, lr_size: int, dim: int, device):
    self.capacity, self.device = capacity, device
    self.s = torch.zeros(capacity, 3, lr_size, lr_size, device=device)
    self.a = torch.zeros(capacity, dim, device=device)
    self.r = torch.zeros(capacity, device=device)
    self.index, self.full = 0, False

  def size(self) -> int:
    return self.capacity if self.full else self.index

  def add(self, s, a, r) -> None:
    """Writes a batch at index, index + 1, ... (mod capacity)."""
    n = s.shape[0]
    if n > self.capacity:
      raise ValueError(f'cannot add {n} items to a replay buffer of capacity '
                       f'{self.capacity}')
    at = (self.index + torch.arange(n, device=self.device)) % self.capacity
    self.s[at], self.a[at], self.r[at] = s, a, r
    self.full = self.full or self.index + n >= self.capacity
    self.index = (self.index + n) % self.capacity

  def sample(self, n: int, indices: torch.Tensor | None = None):
    """(s, a, r) of n items drawn uniformly with replacement, or of the
    physical `indices`."""
    if indices is None:
      head = self.index if self.full else 0
      logical = torch.randint(0, self.size(), (n,), device=self.device)
      indices = (head + logical) % self.capacity
    return self.s[indices], self.a[indices], self.r[indices]

  def load(self, s, a, r, index: int, full: bool) -> None:
    """Copies a whole buffer in (s NCHW (capacity, 3, h, w))."""
    self.s.copy_(s)
    self.a.copy_(a)
    self.r.copy_(r)
    self.index, self.full = int(index), bool(full)


def psnr_reward(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
  """(N,) PSNR in dB of the 8-bit render against the 8-bit HR."""
  levels = lambda x: torch.round(x.clamp(0., 1.) * 255.)
  mse = (levels(sr) - levels(hr)).pow(2).mean((1, 2, 3))
  return 10. * torch.log10(255.**2 / mse.clamp_min(255.**2 * 1e-10))


def host_reward(fn: HostReward) -> Callable:
  """A reward (sr, hr) -> (N,) from a host function of the uint8 renders."""
  def reward(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    del hr  # No-reference.
    levels = torch.round(sr.clamp(0., 1.) * 255.).to(torch.uint8)
    images = levels.permute(0, 2, 3, 1).cpu().numpy()
    return torch.as_tensor(np.asarray(fn(images), np.float32),
                           device=sr.device)
  return reward


class AMGANRLTwin:
  """The frozen renderer G, the actor P, the pretrained actor P0, the critic,
  their Adams and the replay buffer of config (experiments/amgan_rl.py)."""

  def __init__(self, config, pca_mean, pca_basis, device,
               niqe: HostReward | None = None):
    rl, m, p = config.rl, config.model, config.predictor
    dim, scale = amgan_twin.code_dim(config), int(config.scale)
    hr_size = int(config.data.hr_patch)
    lr_size = hr_size // scale
    if rl.reward == 'niqe' and niqe is None:
      raise ValueError("config.rl.reward='niqe' needs the host NIQE function "
                       '(niqe=)')
    self.rl, self.device = rl, device
    self.g = amgan_twin.AMNet(scale, m.num_feat, m.num_block, dim,
                              m.mod_hidden, m.bicubic_skip,
                              lr_size).to(device)
    predictor = lambda: amgan_twin.KernelPredictor(
        dim, p.num_feat, p.num_down, float(p.bound) or None).to(device)
    self.p, self.p0 = predictor(), predictor()
    width = dim * (2 if rl.critic_input == 'code_and_pretrained' else 1)
    self.critic = Critic(tuple(rl.critic_features), tuple(rl.critic_hidden),
                         width).to(device)
    steps._trainable(self.g, False)  # pylint: disable=protected-access
    steps._trainable(self.p0, False)  # pylint: disable=protected-access
    # DDPG's Adam: default betas and eps, constant rates (optax.adam).
    self.actor_opt = torch.optim.Adam(self.p.parameters(), lr=rl.actor_lr)
    self.critic_opt = torch.optim.Adam(self.critic.parameters(),
                                       lr=rl.critic_lr)
    self.buffer = ReplayBuffer(int(rl.capacity), lr_size, dim, device)
    self.mean = self.low = self.high = torch.zeros(dim, device=device)
    self.spread = torch.ones(dim, device=device)
    self.degrader = amgan_twin.Degrader(config.degradation, pca_mean,
                                        pca_basis, hr_size, scale, device)
    self.reward = (psnr_reward if rl.reward == 'psnr'
                   else host_reward(niqe))

  def load(self, state) -> None:
    """Copies an AMGANState (after the RL stage's enter): G, the actor, the
    pretrained actor, the critic, code_spread and the buffer's items."""
    twin_params.load_flax(self.g, state.g_params)
    twin_params.load_flax(self.p, state.p_params)
    twin_params.load_flax(self.p0, state.rl.actor0_params)
    twin_params.load_flax(self.critic, state.rl.q_params)
    tensor = lambda x: torch.tensor(np.asarray(x), dtype=torch.float32,
                                    device=self.device)
    self.mean, self.spread, self.low, self.high = (
        tensor(getattr(state.rl, f'code_{k}'))
        for k in ('mean', 'spread', 'low', 'high'))
    buf = state.rl.buffer
    exp = buf.experience
    self.buffer.load(tensor(exp.s[0]).permute(0, 3, 1, 2), tensor(exp.a[0]),
                     tensor(exp.r[0]), int(buf.current_index),
                     bool(buf.is_full))

  def play(self, hr, data=None, noise=None):
    """((s, a, r), metrics) of one played batch of NCHW hr; data {'lr',
    'code'} and the N(0, 1) exploration noise (B, D) drawn here if None."""
    rl = self.rl
    with torch.no_grad():
      if data is None:
        data = self.degrader(hr)
      lr = data['lr']
      action = self.p(lr)
      if noise is None:
        noise = torch.randn_like(action)
      action = self.in_box(action + rl.explore_std * self.spread * noise)
      if rl.baseline == 'pretrained':
        renders = self.g(torch.cat([lr, lr]),
                         torch.cat([action, self.in_box(self.p0(lr))]))
        score, base = self.reward(renders, torch.cat([hr, hr])).chunk(2)
      else:
        score = self.reward(self.g(lr, action), hr)
        base = torch.zeros_like(score)
      r = score - base
      if rl.reward_clip:
        r = r.clamp(-rl.reward_clip, rl.reward_clip)
    metrics = {'reward': r.mean(), 'score': score.mean(),
               'code_mse': (action - data['code']).pow(2).mean()}
    return (lr, action, r), metrics

  def fill_step(self, hr, data=None, noise=None) -> dict:
    """Play one batch and store it -> jaxsr's 'fill' metrics."""
    transitions, metrics = self.play(hr, data, noise)
    self.buffer.add(*transitions)
    metrics['buffer_size'] = torch.tensor(float(self.buffer.size()))
    return metrics

  def in_box(self, a: torch.Tensor) -> torch.Tensor:
    return torch.clamp(a, self.low, self.high)

  def _critic_code(self, a, a0):
    """The critic's code input: a (and a0) clipped and standardized."""
    x = (self.in_box(a) - self.mean) / self.spread
    if a0 is not None:
      x = torch.cat([x, (self.in_box(a0) - self.mean) / self.spread], 1)
    return x

  def box_penalty(self, a: torch.Tensor) -> torch.Tensor:
    out = F.relu(a - self.high) + F.relu(self.low - a)
    return (out / self.spread).pow(2).sum(1).mean()

  def ddpg_step(self, hr, data=None, noise=None, indices=None) -> dict:
    """Play and store, then one critic and one actor step on a minibatch
    (at the physical `indices` if given) -> jaxsr's 'ddpg' metrics."""
    rl, upd = self.rl, steps._update  # pylint: disable=protected-access
    transitions, metrics = self.play(hr, data, noise)
    self.buffer.add(*transitions)
    s, a, r = self.buffer.sample(int(rl.batch_size), indices)
    a0 = None
    if rl.critic_input == 'code_and_pretrained':
      with torch.no_grad():
        a0 = self.p0(s)  # A fixed function of s: once per step.
    # Critic (line 7).
    q = self.critic(s, self._critic_code(a, a0))
    if rl.critic_loss == 'squared_td':
      critic_loss = (r - q).pow(2).mean()  # y = r: one-step episodes.
    else:
      critic_loss = (F.relu(-rl.gamma * q) + (r - q)).mean()
    upd(self.critic_opt, critic_loss)
    # Actor (line 8) through the updated critic, whose weights stay fixed.
    steps._trainable(self.critic, False)  # pylint: disable=protected-access
    action = self.p(s)
    actor_loss = -self.critic(s, self._critic_code(action, a0)).mean()
    penalty = self.box_penalty(action)
    upd(self.actor_opt, actor_loss + penalty)
    steps._trainable(self.critic, True)  # pylint: disable=protected-access
    metrics.update({
        'critic_loss': critic_loss.detach(), 'actor_loss': actor_loss.detach(),
        'box_penalty': penalty.detach(),
        'q_mean': q.detach().mean(), 'minibatch_reward': r.mean(),
        'buffer_size': torch.tensor(float(self.buffer.size()))})
    return metrics

