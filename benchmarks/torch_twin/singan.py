"""SinGAN twin (PyTorch, NCHW): one scale's G and D and its training iteration.

Written as the official SinGAN (tamarott/SinGAN models.py, training.py)
with jaxsr's choices where they differ (`jaxsr.methods.singan`):
- ConvBlock = Conv2d 3x3 (padding 0) -> BatchNorm2d -> LeakyReLU(0.2);
  G = head + 3 body blocks + tail conv + tanh, added to the centre-cropped
  padded coarser image; D = the same body, tail conv to 1 channel. Module
  names follow jaxsr's Flax tree (body.head.conv, ..., tail), so `load`
  copies one scale's {'params', 'batch_stats'} in.
- `SinGANScaleTwin.iteration` is one `_scale_step`: d_steps critic updates
  on -mean D(real) + mean D(fake) + GP, the WGAN term also taken at the
  FGM / PGD / adaptive perturbation of the tail weight (jaxsr.attacks: the
  clean gradient plus the gradient at the perturbed weight, the GP
  unperturbed), then g_steps G updates on -mean D(G(z)) + alpha MSE(G(rec),
  real) with the fake regenerated at each G step (the official reuses the
  last D step's fake, which PyTorch >= 1.5 rejects). D's weights take no
  gradient in the G steps (the official computes and discards one).
- `FrozenPyramid.draw` is the official draw_concat: the finished coarser
  G's in eval mode, each output upsampled to the next scale. The official
  resizes with its numpy MATLAB resizer after a uint8 round trip (slower
  still); the twin uses torch's bicubic interpolate, which favours it.
- The reconstruction input (noise_amp z_opt + the coarser scales'
  reconstruction) is computed once per scale, as the official does;
  jaxsr's step recomputes it through every coarser G at each iteration.
- Learning rates are constant (no MultiStepLR): it costs nothing.
"""

import collections
from collections.abc import Mapping, Sequence
import dataclasses
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from torch_twin import params as twin_params

PAD = 5  # (kernel 3 - 1) * 5 layers / 2: the official m_noise / m_image.
MODES = ('none', 'fgm', 'pgd', 'adaptive')


class ConvBlock(nn.Sequential):
  """conv3x3 (no padding) -> BatchNorm2d -> LeakyReLU(0.2), the official's."""

  def __init__(self, cin: int, cout: int):
    super().__init__(collections.OrderedDict(
        conv=nn.Conv2d(cin, cout, 3, 1, 0),
        norm=nn.BatchNorm2d(cout),
        LeakyRelu=nn.LeakyReLU(0.2, inplace=True)))


def _body(cin: int, features: int) -> nn.Sequential:
  """head + block1..3, all `features` wide (trims 4 pixels per side)."""
  return nn.Sequential(collections.OrderedDict(
      [('head', ConvBlock(cin, features))]
      + [(f'block{i}', ConvBlock(features, features)) for i in (1, 2, 3)]))


class Generator(nn.Module):
  """(N, 3, H+10, W+10) noisy input x and padded coarser y -> (N, 3, H, W)."""

  def __init__(self, features: int = 32, channels: int = 3):
    super().__init__()
    self.body = _body(channels, features)
    self.tail = nn.Conv2d(features, channels, 3, 1, 0)

  def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """y + tanh(tail(body(x))), y centre-cropped to the output (eq. 6)."""
    h = torch.tanh(self.tail(self.body(x)))
    ind = (y.shape[2] - h.shape[2]) // 2
    return h + y[:, :, ind:y.shape[2] - ind, ind:y.shape[3] - ind]


class Discriminator(nn.Module):
  """(N, 3, H, W) -> (N, 1, H-10, W-10): one critic value per 11x11 patch."""

  def __init__(self, features: int = 32, channels: int = 3):
    super().__init__()
    self.body = _body(channels, features)
    self.tail = nn.Conv2d(features, 1, 3, 1, 0)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    """The patch map of critic values."""
    return self.tail(self.body(x))


def features_at(scale: int, base: int = 32, cap: int = 128) -> int:
  """Block width at scale n: the official min(nfc 2^floor(n / 4), 128)."""
  return min(base * 2**(scale // 4), cap)


def load(module: nn.Module, variables: Mapping[str, Any]) -> nn.Module:
  """Copies one scale's Flax {'params', 'batch_stats'} into G or D in place.

  Kernels HWIO -> OIHW (transpose 3, 2, 0, 1), BN scale / bias -> weight /
  bias, batch_stats mean / var -> running_mean / running_var.
  """
  return twin_params.load_flax(module, variables['params'],
                               variables.get('batch_stats'))


def pad(x: torch.Tensor) -> torch.Tensor:
  """Zero padding by 5 on each side."""
  return F.pad(x, (PAD, PAD, PAD, PAD))


def noise(scale: int, size: Sequence[int], device) -> torch.Tensor:
  """N(0, 1) noise (1, 3, H, W), one grey channel at scale 0 (official)."""
  if scale == 0:
    return torch.randn(1, 1, *size, device=device).expand(1, 3, *size)
  return torch.randn(1, 3, *size, device=device)


def upsample(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
  """x resized to `size` by torch's bicubic, clipped to [-1, 1]."""
  up = F.interpolate(x, size=tuple(size), mode='bicubic', align_corners=False)
  return up.clamp_(-1., 1.)


class FrozenPyramid:
  """The finished scales 0..n-1 and the official draw_concat."""

  def __init__(self, sizes: Sequence[Sequence[int]], device):
    self.sizes = [tuple(s) for s in sizes]  # Of every scale, 0..N.
    self.device = device
    self.gens, self.amps, self.z_opts = [], [], []

  def add(self, g: Generator, amp: float, z_opt: torch.Tensor) -> None:
    """Freezes a finished G (eval mode, no gradients) as the next scale."""
    g.eval()
    for p in g.parameters():
      p.requires_grad_(False)
    self.gens.append(g)
    self.amps.append(float(amp))
    self.z_opts.append(z_opt)

  @torch.no_grad()
  def draw(self, random: bool = True) -> torch.Tensor:
    """The input image of scale n = len(self.gens), (1, 3, H_n, W_n): a
    random sample of the coarser scales or (random False) the
    reconstruction from their z_opt; zeros at scale 0."""
    image = torch.zeros(1, 3, *self.sizes[0], device=self.device)
    for i, (g, amp) in enumerate(zip(self.gens, self.amps)):
      z = pad(noise(i, self.sizes[i], self.device)) if random else (
          self.z_opts[i])
      prev = pad(image)
      image = upsample(g(amp * z + prev, prev), self.sizes[i + 1])
    return image


@dataclasses.dataclass(frozen=True)
class Attack:
  """config.adversarial (jaxsr.methods.singan.Attack), tail weight only."""
  mode: str
  epsilon: float
  radius: float
  alpha: float
  steps: int
  kappa: float
  power_iters: int

  @classmethod
  def from_config(cls, adv) -> 'Attack':
    if adv.mode not in MODES:
      raise ValueError(f'adversarial.mode {adv.mode!r}; expected one of '
                       f'{MODES}')
    if adv.target != 'last_layer':
      raise ValueError("the SinGAN twin perturbs D's tail weight only "
                       f"(adversarial.target 'last_layer'), got "
                       f'{adv.target!r}')
    return cls(adv.mode, float(adv.epsilon), float(adv.radius),
               float(adv.alpha), int(adv.steps), float(adv.kappa),
               int(adv.power_iters))


def _normalize(x: torch.Tensor) -> torch.Tensor:
  """x / ||x||, a zero x staying zero (jaxsr.attacks.normalize)."""
  norm = x.norm()
  return x / torch.where(norm > 0, norm, torch.ones_like(norm))


def top_singular_value(matrix: torch.Tensor, u: torch.Tensor, iters: int):
  """Power iteration from u (m,): (sigma, new u), as jaxsr.attacks."""
  v = None
  for _ in range(iters):
    v = _normalize(matrix.t() @ u)
    u = _normalize(matrix @ v)
  return u @ (matrix @ v), u


def fgm(grad: torch.Tensor, epsilon: float) -> torch.Tensor:
  """eps g / ||g|| (eq. 12), zero for a zero g; no host sync."""
  norm = grad.norm()
  safe = torch.where(norm > 0, norm, torch.ones_like(norm))
  return grad * torch.where(norm > 0, epsilon / safe, torch.zeros_like(norm))


def project(delta: torch.Tensor, radius: float) -> torch.Tensor:
  """delta scaled by min(1, r / ||delta||): onto the r-ball."""
  norm = delta.norm()
  safe = torch.where(norm > 0, norm, torch.ones_like(norm))
  return delta * torch.clamp(radius / safe, max=1.)


class SinGANScaleTwin:
  """One scale's G_n, D_n, their Adams and the jaxsr iteration, in torch.

  g_vars, d_vars: the scale's Flax {'params', 'batch_stats'} (None: the
  official N(0, 0.02) init at `features` wide); real (1, 3, H, W) in
  [-1, 1]; u (1,): the power-iteration vector of D's tail; coarser: the
  frozen scales below (None at scale 0); noise_amp: this scale's (None:
  the official rule, 1 at scale 0, else noise_amp_init times the RMSE of
  the reconstruction from the coarser scales).
  """

  def __init__(self, config, g_vars, d_vars, real: torch.Tensor, *,
               scale: int = 0, u=None, coarser: FrozenPyramid | None = None,
               noise_amp: float | None = None,
               z_opt: torch.Tensor | None = None,
               features: int | None = None):
    self.device = real.device
    self.real = real
    self.scale = scale
    self.loss = config.loss
    self.attack = Attack.from_config(config.adversarial)
    if features is None:
      features = features_at(scale, config.model.base_features,
                             config.model.max_features)
    self.g = Generator(features).to(self.device).train()
    self.d = Discriminator(features).to(self.device).train()
    if g_vars is not None:
      load(self.g, g_vars)
    else:
      self.g.apply(weights_init)
    if d_vars is not None:
      load(self.d, d_vars)
    else:
      self.d.apply(weights_init)
    opt = config.optim
    self.g_opt = torch.optim.Adam(self.g.parameters(), lr=opt.lr_g,
                                  betas=(opt.b1, opt.b2))
    self.d_opt = torch.optim.Adam(self.d.parameters(), lr=opt.lr_d,
                                  betas=(opt.b1, opt.b2))
    if u is None:
      u = _normalize(torch.randn(1))
    if not isinstance(u, torch.Tensor):
      u = torch.from_numpy(np.array(u, np.float32))
    self.u = u.to(self.device, torch.float32)
    self.coarser = coarser or FrozenPyramid([real.shape[2:]], self.device)
    size = tuple(real.shape[2:])
    if z_opt is None:  # Grey noise at scale 0, zeros above (eq. 8).
      z_opt = pad(noise(0, size, self.device) if scale == 0 else
                  torch.zeros(1, 3, *size, device=self.device))
    self.z_opt = z_opt
    # The official computes the reconstruction input once per scale.
    rec = self.coarser.draw(random=False)
    if noise_amp is None:
      noise_amp = 1.0 if scale == 0 else self.loss.noise_amp * float(
          torch.sqrt(F.mse_loss(real, rec)))
    self.noise_amp = float(noise_amp)
    self.rec_prev = pad(rec)
    self.rec_in = self.noise_amp * z_opt + self.rec_prev

  # D's critic, clean or with the tail weight replaced.
  def _critic(self, x: torch.Tensor, tail_weight=None) -> torch.Tensor:
    if tail_weight is None:
      return self.d(x)
    return torch.func.functional_call(self.d, {'tail.weight': tail_weight},
                                      (x,))

  def _wgan(self, fake, tail_weight=None):
    d_real = self._critic(self.real, tail_weight).mean()
    d_fake = self._critic(fake, tail_weight).mean()
    return d_fake - d_real, d_real, d_fake

  def _gradient_penalty(self, fake, a) -> torch.Tensor:
    """The official calc_gradient_penalty with one interpolation scalar a."""
    if a is None:
      a = torch.rand((), device=self.device)
    x_hat = (a * self.real + (1. - a) * fake).requires_grad_(True)
    out = self.d(x_hat)
    grad, = torch.autograd.grad(out, x_hat, torch.ones_like(out),
                                create_graph=True)
    return self.loss.gp_weight * ((grad.norm(2, dim=1) - 1.)**2).mean()

  def _delta(self, fake, grad0: torch.Tensor, use_pgd: bool):
    """The tail-weight perturbation: FGM (eq. 12) or PGD (eq. 13)."""
    at = self.attack
    if not use_pgd:
      return fgm(grad0, at.epsilon)
    delta = project(fgm(grad0, at.alpha), at.radius)
    weight = self.d.tail.weight.detach()
    for _ in range(1, at.steps):
      delta = delta.detach().requires_grad_(True)
      wgan, _, _ = self._wgan(fake, weight + delta)
      grad, = torch.autograd.grad(wgan, delta)
      delta = project(delta.detach() + fgm(grad, at.alpha), at.radius)
    return delta.detach()

  def _d_step(self, fake: torch.Tensor, gp_alpha) -> dict:
    """One critic update on (real, fake); its losses as 0-d tensors."""
    at, tail = self.attack, self.d.tail
    out = {}
    use_pgd = at.mode == 'pgd'
    if at.mode == 'adaptive':
      matrix = tail.weight.detach().reshape(tail.weight.shape[0], -1)
      sigma, self.u = top_singular_value(matrix, self.u, at.power_iters)
      # Algorithm 1's switch, on the host as a PyTorch loop would.
      use_pgd = bool(sigma < at.kappa / (2. * at.alpha))
      out['sigma'] = sigma
      out['pgd'] = torch.tensor(float(use_pgd))
    self.d_opt.zero_grad(set_to_none=True)
    wgan, d_real, d_fake = self._wgan(fake)
    wgan.backward()
    grad0 = None if at.mode == 'none' else tail.weight.grad.clone()
    gp = self._gradient_penalty(fake, gp_alpha)
    gp.backward()
    if at.mode != 'none':
      delta = self._delta(fake, grad0, use_pgd)
      # The NLP recipe: add the gradient at the perturbed weight.
      adv, _, _ = self._wgan(fake, tail.weight + delta)
      adv.backward()
    self.d_opt.step()
    out.update(d_loss=(wgan + gp).detach(), d_real=d_real.detach(),
               d_fake=d_fake.detach(), gp=gp.detach())
    return out

  def _g_step(self, z_in, prev) -> dict:
    """One G update, the fake regenerated with the current G."""
    self.g_opt.zero_grad(set_to_none=True)
    fake = self.g(z_in, prev)
    rec = self.g(self.rec_in, self.rec_prev)
    adv = -self.d(fake).mean()
    rec_loss = self.loss.alpha * F.mse_loss(rec, self.real)
    (adv + rec_loss).backward()
    self.g_opt.step()
    return {'g_adv': adv.detach(), 'g_rec': rec_loss.detach()}

  def iteration(self, noise_map: torch.Tensor, prev, rec_in=None,
                rec_prev=None, gp_alphas=None) -> dict[str, float]:
    """One jaxsr `_scale_step`; the last D and G steps' losses as floats.

    noise_map: (1, 3, H+10, W+10) padded noise, one per iteration; prev:
    the padded coarser image (same shape), or one per D step (a list);
    rec_in, rec_prev: the padded reconstruction inputs (None: this twin's,
    computed once); gp_alphas: one GP interpolation scalar per D step
    (None: torch.rand each, as the official).
    """
    if rec_in is not None:
      self.rec_in, self.rec_prev = rec_in, rec_prev
    steps = self.loss.d_steps
    prevs = list(prev) if isinstance(prev, (list, tuple)) else [prev] * steps
    alphas = [None] * steps if gp_alphas is None else list(gp_alphas)
    if len(prevs) != steps or len(alphas) != steps:
      raise ValueError(f'{steps} D steps need {steps} coarser images and GP '
                       f'scalars, got {len(prevs)} and {len(alphas)}')
    out = {}
    for j in range(steps):
      z_in = self.noise_amp * noise_map + prevs[j]
      with torch.no_grad():
        fake = self.g(z_in, prevs[j])
      out.update(self._d_step(fake, alphas[j]))
    for p in self.d.parameters():
      p.requires_grad_(False)
    for _ in range(self.loss.g_steps):
      out.update(self._g_step(z_in, prevs[-1]))
    for p in self.d.parameters():
      p.requires_grad_(True)
    names = list(out)
    values = torch.stack([torch.as_tensor(out[k], dtype=torch.float32,
                                          device=self.device) for k in names])
    return dict(zip(names, values.tolist()))  # One host sync.

  def free_iteration(self) -> dict[str, float]:
    """One iteration drawing its own noise, coarser samples (one per D step,
    the frozen G's in eval mode) and GP scalars, as the official loop."""
    size = tuple(self.real.shape[2:])
    noise_map = pad(noise(self.scale, size, self.device))
    prevs = [pad(self.coarser.draw()) for _ in range(self.loss.d_steps)]
    return self.iteration(noise_map, prevs)


def weights_init(m: nn.Module) -> None:
  """The official init: conv weights N(0, 0.02), BN N(1, 0.02) and bias 0."""
  name = type(m).__name__
  if name.find('Conv2d') != -1:
    m.weight.data.normal_(0.0, 0.02)
  elif name.find('Norm') != -1:
    m.weight.data.normal_(1.0, 0.02)
    m.bias.data.fill_(0)


class TwinPyramid:
  """Trains scale after scale as the official train(): warm start when the
  width is unchanged, noise_amp from the reconstruction's RMSE, then the
  finished G frozen into the pyramid the next scales draw from.

  reals: (1, 3, H_n, W_n) per scale; g_vars / d_vars: Flax variables per
  scale to start from (None: the official init); z_opt0: scale 0's padded
  reconstruction noise.
  """

  def __init__(self, config, reals: Sequence[torch.Tensor], g_vars=None,
               d_vars=None, z_opt0: torch.Tensor | None = None):
    self.config = config
    self.reals = list(reals)
    self.g_vars, self.d_vars = g_vars, d_vars
    self.z_opt0 = z_opt0
    self.device = reals[0].device
    self.frozen = FrozenPyramid([r.shape[2:] for r in reals], self.device)
    self.twin = None

  def start_scale(self, n: int) -> SinGANScaleTwin:
    """The twin of scale n (after scales 0..n-1 were finished)."""
    if n != len(self.frozen.gens):
      raise ValueError(f'scale {n} needs scales 0..{n - 1} finished, have '
                       f'{len(self.frozen.gens)}')
    prev = self.twin
    g_vars = self.g_vars[n] if self.g_vars else None
    d_vars = self.d_vars[n] if self.d_vars else None
    twin = SinGANScaleTwin(
        self.config, g_vars, d_vars, self.reals[n], scale=n,
        coarser=self.frozen, z_opt=self.z_opt0 if n == 0 else None)
    if prev is not None and (prev.g.tail.in_channels
                             == twin.g.tail.in_channels):
      twin.g.load_state_dict(prev.g.state_dict())
      twin.d.load_state_dict(prev.d.state_dict())
    self.twin = twin
    return twin

  def finish_scale(self) -> None:
    """Freezes the current scale's G into the pyramid."""
    self.frozen.add(self.twin.g, self.twin.noise_amp, self.twin.z_opt)
