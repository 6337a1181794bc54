"""AMGAN twin (PyTorch, NCHW): AMNet, the kernel predictor, the realness D, DISTS and the 'sr' / 'predictor' steps.

The same functions as jaxsr's, written as a PyTorch user would:
  AMNet            jaxsr.models.amnet.AMNet: conv_first -> blocks of
                   conv1 -> AMLayer -> ReLU -> conv2 (+ x) -> conv_body (+
                   long skip) -> EDSR pixel-shuffle upsampler -> conv_last
                   (+ MATLAB bicubic of the LR with bicubic_skip); AMLayer
                   x * (1 + to_scale(h)) + to_shift(h), h = LReLU(mlp(code)).
  KernelPredictor  jaxsr.models.amnet.KernelPredictor: 3x3 convs (stride 2
                   num_down times), LReLU 0.2, global mean, two Linears,
                   optional bound * tanh(y / bound).
  RealnessD        critics.VGGStyleDiscriminator at any power-of-two size
                   >= 8 with K outcome logits (jaxsr's num_outputs).
  DistsVGG, dists  jaxsr.losses.dists: VGG16 to relu5_3 with L2 pooling,
                   S1 / S2 over six stages, alpha and beta renormalized.
  realness losses  jaxsr.losses.realness: anchors as histograms of 1000
                   N(0, 0.1) / U(-1, 1) draws (torch.histc over the draws'
                   range), the C51 projection as the matrix
                   relu(1 - |b_j - k|), CE / KL on log_softmax.
  Degrader         jaxsr.data.degradations.random_degradation: IKC's kernel
                   sampler, blur as a grouped conv after reflect padding,
                   MATLAB bicubic downscale as two matmuls
                   (faces.Bicubic), optional noise, the PCA code.
`AMGANTwin.sr_step(hr)` = one D update then one G update (L1 + 15 Lvgg +
0.01 Lrealness + 10 LDISTS with the config's weights), the order of
jaxsr.methods.amgan._sr_step, with the degradation and anchors drawn inside
(the timed run) or given (`data`, `anchors`: the check feeds jaxsr's).
`predictor_step(hr)`: the kernel predictor's MSE regression on the code.
D's BN runs on batch statistics in every call and advances its running
averages, as jaxsr's chained batch_stats. Adam with constant lr (the
schedules are constant over the steps timed). Only gan 'realness' and
norm 'none' are twinned (AMGAN*'s RaGAN is not).
"""

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from torch_twin import critics
from torch_twin import faces
from torch_twin import features
from torch_twin import generators
from torch_twin import params as twin_params
from torch_twin import steps

NUM_ANCHOR_SAMPLES = 1000  # jaxsr.losses.realness (RealnessGAN's train.py).
DISTS_STAGES = ('input', 'relu1_2', 'relu2_2', 'relu3_3', 'relu4_3',
                'relu5_3')
DISTS_C = 1e-6  # c1 = c2 of DISTS.


def _lrelu(x: torch.Tensor) -> torch.Tensor:
  return F.leaky_relu(x, 0.2)


class AMLayer(nn.Module):
  """x * (1 + Δγ(code)) + β(code) per channel: (N, F, H, W), (N, D)."""

  def __init__(self, code_dim: int, num_feat: int, hidden: int):
    super().__init__()
    self.mlp = nn.Linear(code_dim, hidden)
    self.to_scale = nn.Linear(hidden, num_feat)
    self.to_shift = nn.Linear(hidden, num_feat)

  def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """(N, F, H, W), (N, D) -> (N, F, H, W)."""
    h = _lrelu(self.mlp(code))
    scale, shift = self.to_scale(h), self.to_shift(h)
    return x * (1. + scale[:, :, None, None]) + shift[:, :, None, None]


class AMResBlock(nn.Module):
  """x + conv2(ReLU(AMLayer(conv1(x), code)))."""

  def __init__(self, code_dim: int, num_feat: int, hidden: int):
    super().__init__()
    self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
    self.am = AMLayer(code_dim, num_feat, hidden)
    self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)

  def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    return x + self.conv2(F.relu(self.am(self.conv1(x), code)))


class AMNet(nn.Module):
  """(N, 3, h, w), (N, D) -> (N, 3, s h, s w), unclamped."""

  def __init__(self, scale: int, num_feat: int, num_block: int,
               code_dim: int, mod_hidden: int, bicubic_skip: bool,
               lr_size: int):
    super().__init__()
    if scale not in (2, 3, 4):
      raise ValueError(f'AMNet scale must be 2, 3 or 4, got {scale}')
    f = num_feat
    self.num_block = num_block
    self.conv_first = nn.Conv2d(3, f, 3, 1, 1)
    for i in range(num_block):
      self.add_module(f'body_{i}', AMResBlock(code_dim, f, mod_hidden))
    self.conv_body = nn.Conv2d(f, f, 3, 1, 1)
    self.factors = (2, 2) if scale == 4 else (scale,)
    for i, k in enumerate(self.factors):
      self.add_module(f'up_{i}', nn.Conv2d(f, f * k * k, 3, 1, 1))
    self.conv_last = nn.Conv2d(f, 3, 3, 1, 1)
    self.skip = (generators.BicubicUpsample(lr_size, lr_size, scale)
                 if bicubic_skip else None)

  def forward(self, lr: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    feat = self.conv_first(lr)
    body = feat
    for i in range(self.num_block):
      body = getattr(self, f'body_{i}')(body, code)
    feat = feat + self.conv_body(body)
    for i, k in enumerate(self.factors):
      feat = F.pixel_shuffle(getattr(self, f'up_{i}')(feat), k)
    out = self.conv_last(feat)
    return out if self.skip is None else out + self.skip(lr)


class KernelPredictor(nn.Module):
  """LR (N, 3, h, w) -> code (N, D)."""

  def __init__(self, code_dim: int, num_feat: int, num_down: int,
               bound: float | None):
    super().__init__()
    f = num_feat
    self.num_down, self.bound = num_down, bound
    self.conv_first = nn.Conv2d(3, f, 3, 1, 1)
    for i in range(num_down):
      self.add_module(f'down_{i}', nn.Conv2d(f, f, 3, 2, 1))
    self.conv_last = nn.Conv2d(f, f, 3, 1, 1)
    self.fc1 = nn.Linear(f, f)
    self.fc2 = nn.Linear(f, code_dim)

  def forward(self, lr: torch.Tensor) -> torch.Tensor:
    x = _lrelu(self.conv_first(lr))
    for i in range(self.num_down):
      x = _lrelu(getattr(self, f'down_{i}')(x))
    x = _lrelu(self.conv_last(x)).mean((2, 3))
    y = self.fc2(_lrelu(self.fc1(x)))
    return y if self.bound is None else self.bound * torch.tanh(y / self.bound)


class RealnessD(critics.VGGStyleDiscriminator):
  """ESRGAN's D at input_size = 2^n >= 8 with K logits: (N, 3, S, S) -> (N, K).

  The layers of jaxsr's VGGStyleDiscriminator (stage widths min(2^i, 8) nf);
  the forward is the parent's.
  """

  def __init__(self, num_feat: int, input_size: int, num_outputs: int,
               batch_norm: bool = True):
    nn.Module.__init__(self)  # pylint: disable=non-parent-init-called
    if input_size < 8 or input_size & (input_size - 1):
      raise ValueError(f'input_size must be a power of two >= 8, got '
                       f'{input_size}')
    self.batch_norm, self.input_size = batch_norm, input_size
    nf = num_feat
    self.num_stages = input_size.bit_length() - 4
    widths = [nf] + [min(2**i, 8) * nf for i in range(1, self.num_stages + 1)]
    bn = lambda c: nn.BatchNorm2d(c) if batch_norm else nn.Identity()
    self.conv0_0 = nn.Conv2d(3, nf, 3, 1, 1)
    self.conv0_1 = nn.Conv2d(nf, nf, 4, 2, 1, bias=False)
    self.bn0_1 = bn(nf)
    for i in range(1, len(widths)):
      cin, cout = widths[i - 1], widths[i]
      self.add_module(f'conv{i}_0', nn.Conv2d(cin, cout, 3, 1, 1, bias=False))
      self.add_module(f'bn{i}_0', bn(cout))
      self.add_module(f'conv{i}_1', nn.Conv2d(cout, cout, 4, 2, 1, bias=False))
      self.add_module(f'bn{i}_1', bn(cout))
    self.linear1 = nn.Linear(widths[-1] * 16, 100)
    self.linear2 = nn.Linear(100, num_outputs)


class DistsVGG(nn.Module):
  """DISTS' L2-pooled VGG16: (N, 3, H, W) in [0, 1] -> {stage: map}."""

  def __init__(self):
    super().__init__()
    names = features.layer_names(16)
    self.names = names[:names.index('relu5_3') + 1]
    self.normalize = features._Normalize()  # pylint: disable=protected-access
    cin = 3
    for name in self.names:
      if name.startswith('conv'):
        width = features._WIDTHS[int(name[4]) - 1]  # pylint: disable=protected-access
        self.add_module(name, nn.Conv2d(cin, width, 3, 1, 1))
        cin = width
    h = np.hanning(5)[1:-1]
    g = np.outer(h, h) / np.outer(h, h).sum()
    self.register_buffer('window', torch.tensor(g, dtype=torch.float32))

  def l2pool(self, x: torch.Tensor) -> torch.Tensor:
    """sqrt(hanning * x^2 + 1e-12), stride 2, zero padding 1, per channel."""
    c = x.shape[1]
    w = self.window.expand(c, 1, 3, 3)
    return (F.conv2d(x * x, w, stride=2, padding=1, groups=c) + 1e-12).sqrt()

  def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
    out = {'input': x}
    h = self.normalize(x)
    for name in self.names:
      if name.startswith('conv'):
        h = getattr(self, name)(h)
      elif name.startswith('relu'):
        h = F.relu(h)
      else:
        h = self.l2pool(h)
      if name in DISTS_STAGES:
        out[name] = h
    return out


def dists(vgg: DistsVGG, x: torch.Tensor, y: torch.Tensor,
          alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
  """Per-image DISTS (N,) of x, y (N, 3, H, W) in [0, 1]; one VGG pass."""
  n = x.shape[0]
  feats = vgg(torch.cat([x, y]))
  total = alpha.sum() + beta.sum()
  alpha, beta = alpha / total, beta / total
  sim, start = 0., 0
  for stage in DISTS_STAGES:
    f = feats[stage]
    fx, fy = f[:n], f[n:]
    width = f.shape[1]
    mx, my = fx.mean((2, 3), keepdim=True), fy.mean((2, 3), keepdim=True)
    dx, dy = fx - mx, fy - my
    var_x, var_y = dx.pow(2).mean((2, 3)), dy.pow(2).mean((2, 3))
    cov = (dx * dy).mean((2, 3))
    mx, my = mx[:, :, 0, 0], my[:, :, 0, 0]
    s1 = (2 * mx * my + DISTS_C) / (mx.pow(2) + my.pow(2) + DISTS_C)
    s2 = (2 * cov + DISTS_C) / (var_x + var_y + DISTS_C)
    sim = sim + s1 @ alpha[start:start + width] + s2 @ beta[start:start + width]
    start += width
  return 1. - sim


# RealnessGAN ----------------------------------------------------------------

def projection_matrix(k: int, skew: float, v_min: float, v_max: float,
                      device) -> torch.Tensor:
  """(K, K): row j = where the mass at support j lands after the skew."""
  supports = torch.linspace(v_min, v_max, k, device=device)
  b = ((supports + skew).clamp(v_min, v_max) - v_min) / ((v_max - v_min)
                                                          / (k - 1))
  atoms = torch.arange(k, device=device, dtype=b.dtype)
  return F.relu(1. - (b[:, None] - atoms[None, :]).abs())


def sample_anchors(k: int, naming: str, device) -> tuple[torch.Tensor,
                                                         torch.Tensor]:
  """(A1 real, A0 fake) histograms of fresh N(0, 0.1) and U(-1, 1) draws."""
  gauss = 0.1 * torch.randn(NUM_ANCHOR_SAMPLES, device=device)
  unif = torch.rand(NUM_ANCHOR_SAMPLES, device=device) * 2. - 1.
  # histc with min = max = 0 spans the draws' own range, as np.histogram.
  bell = torch.histc(gauss, k) / NUM_ANCHOR_SAMPLES
  flat = torch.histc(unif, k) / NUM_ANCHOR_SAMPLES
  return (bell, flat) if naming == 'supplement' else (flat, bell)


def cross_entropy(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
  """Batch mean of -sum_k t_k log softmax(logits)_k."""
  return -(target * F.log_softmax(logits, -1)).sum(-1).mean()


def kl(target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
  """Batch mean of KL(target || softmax(logits)), target (K,)."""
  entropy = -torch.xlogy(target, target).sum(-1)
  return cross_entropy(target, logits) - entropy


# Degradations ---------------------------------------------------------------

class Degrader:
  """random_degradation in torch: hr (B, 3, H, W) -> {'lr', 'code'}."""

  def __init__(self, d, pca_mean, pca_basis, hr_size: int, scale: int,
               device):
    if not d.sigma_min <= d.sigma_max:
      raise ValueError(f'sigma range ({d.sigma_min}, {d.sigma_max})')
    self.d, self.device = d, device
    self.mean = torch.tensor(np.asarray(pca_mean), dtype=torch.float32,
                             device=device)
    self.basis = torch.tensor(np.asarray(pca_basis), dtype=torch.float32,
                              device=device)
    self.size = math.isqrt(self.basis.shape[0])
    r = self.size // 2
    grid = torch.arange(-r, r + 1, dtype=torch.float32, device=device)
    self.y, self.x = grid[:, None], grid[None, :]
    self.down = faces.Bicubic((hr_size, hr_size),
                              (hr_size // scale, hr_size // scale), device)

  def kernels(self, batch: int) -> torch.Tensor:
    """IKC's sampler: (B, k, k) Gaussians summing to 1."""
    d, dev = self.d, self.device
    u = lambda lo, hi: torch.rand(batch, device=dev) * (hi - lo) + lo
    iso = torch.rand(batch, device=dev) < d.rate_iso
    theta = u(-math.pi, math.pi)
    sx = u(d.sigma_min, d.sigma_max)
    sy = (torch.rand(batch, device=dev) * d.scaling * sx).clamp(
        d.sigma_min, d.sigma_max)
    sy = torch.where(iso, sx, sy)
    theta = torch.where(iso, torch.zeros_like(theta), theta)
    c, s = theta.cos()[:, None, None], theta.sin()[:, None, None]
    a = c * self.x + s * self.y
    b = -s * self.x + c * self.y
    k = torch.exp(-0.5 * ((a / sx[:, None, None])**2
                          + (b / sy[:, None, None])**2))
    return k / k.sum((1, 2), keepdim=True)

  def degrade(self, hr: torch.Tensor, kernels: torch.Tensor,
              noise: torch.Tensor | None = None) -> torch.Tensor:
    """blur (reflect pad, correlation) -> bicubic 1/s [-> + noise] -> clip."""
    b, c, h, w = hr.shape
    r = self.size // 2
    padded = F.pad(hr, (r, r, r, r), mode='reflect').reshape(
        1, b * c, h + 2 * r, w + 2 * r)
    weight = kernels.repeat_interleave(c, 0)[:, None]  # (B*C, 1, k, k)
    blurred = F.conv2d(padded, weight, groups=b * c).reshape(b, c, h, w)
    lr = self.down(blurred)
    if noise is not None:
      lr = lr + noise[:, None, None, None] * torch.randn_like(lr)
    return lr.clamp(0., 1.)

  def __call__(self, hr: torch.Tensor) -> dict[str, torch.Tensor]:
    d = self.d
    kernels = self.kernels(hr.shape[0])
    code = (kernels.flatten(1) - self.mean) @ self.basis
    if d.noise_max > 0:
      level = torch.rand(hr.shape[0], device=self.device) * d.noise_max
      noisy = torch.rand(hr.shape[0], device=self.device) >= d.rate_clean
      noise = torch.where(noisy, level, torch.zeros_like(level))
      lr = self.degrade(hr, kernels, noise)
      code = torch.cat([code, d.noise_code_scale * noise[:, None]], 1)
    else:
      lr = self.degrade(hr, kernels)
    return {'lr': lr, 'code': code}


# The steps -------------------------------------------------------------------

def code_dim(config) -> int:
  """The code's length (jaxsr.methods.amgan.code_dim)."""
  return int(config.degradation.pca_dim) + (
      1 if config.degradation.noise_max > 0 else 0)


class AMGANTwin:
  """AMNet G, predictor P, realness D, their Adams, the loss networks."""

  def __init__(self, config, pca_mean, pca_basis, device):
    loss, disc = config.loss, config.disc
    if loss.gan != 'realness' or disc.norm != 'none':
      raise ValueError(f"the AMGAN twin covers gan 'realness' with D norm "
                       f"'none'; got gan {loss.gan!r}, norm {disc.norm!r}")
    m, p = config.model, config.predictor
    dim, scale = code_dim(config), int(config.scale)
    hr_size = int(config.data.hr_patch)
    self.loss, self.device = loss, device
    self.g = AMNet(scale, m.num_feat, m.num_block, dim, m.mod_hidden,
                   m.bicubic_skip, hr_size // scale).to(device)
    self.p = KernelPredictor(dim, p.num_feat, p.num_down,
                             float(p.bound) or None).to(device)
    self.d = RealnessD(disc.num_feat, hr_size, disc.num_outcomes,
                       disc.batch_norm).to(device).train()
    layers = tuple(loss.vgg_layers)
    self.feat = features.VGG(19, layers).to(device)
    # The supplement's w_l = 1e3 / C_l^2 (C_l: the layer's channels).
    self.vgg_weights = {k: float(loss.vgg_numerator)
                        / features._WIDTHS[int(k[4]) - 1]**2  # pylint: disable=protected-access
                        for k in layers}
    self.dists_vgg = DistsVGG().to(device)
    self.alpha = self.beta = None
    steps._trainable(self.feat, False)  # pylint: disable=protected-access
    steps._trainable(self.dists_vgg, False)  # pylint: disable=protected-access
    adam = steps._adam  # pylint: disable=protected-access
    self.g_opt = adam(self.g.parameters(), config.optim)
    self.d_opt = adam(self.d.parameters(), config.optim)
    self.p_opt = adam(self.p.parameters(), config.optim)
    k = int(disc.num_outcomes)
    skews = (float(loss.negative_skew), float(loss.positive_skew))
    self.p_real = projection_matrix(k, skews[1], *skews, device)
    self.p_fake = projection_matrix(k, skews[0], *skews, device)
    self.degrader = Degrader(config.degradation, pca_mean, pca_basis, hr_size,
                             scale, device)

  def load(self, state, constants) -> None:
    """Copies a jaxsr AMGANState's G, P, D (+ BN statistics) and the loss
    networks of method.constants()."""
    twin_params.load_flax(self.g, state.g_params)
    twin_params.load_flax(self.p, state.p_params)
    twin_params.load_flax(self.d, state.d_params, state.d_batch_stats)
    twin_params.load_flax(self.feat, constants['vgg19'])
    if 'dists' in constants:
      twin_params.load_flax(self.dists_vgg, constants['dists']['vgg'])
      self.alpha, self.beta = (
          torch.tensor(np.asarray(constants['dists'][k]), dtype=torch.float32,
                       device=self.device) for k in ('alpha', 'beta'))

  def _g_adv(self, real, fake, a1, a0) -> torch.Tensor:
    kind = self.loss.g_loss
    if kind == 'supplement':
      return kl(a1, fake) - kl(a0, fake)
    if kind == 'ce':
      return cross_entropy(a1, fake) - cross_entropy(a0, fake)
    return cross_entropy(F.softmax(real, -1), fake) - cross_entropy(a0, fake)

  def sr_step(self, hr, data=None, anchors=None) -> dict[str, torch.Tensor]:
    """One D then one G update on NCHW hr (B, 3, H, W) -> jaxsr's metrics.

    data: {'lr', 'code'} (else degraded here); anchors: (A1, A0) (else
    drawn here).
    """
    loss, upd = self.loss, steps._update  # pylint: disable=protected-access
    trainable = steps._trainable  # pylint: disable=protected-access
    if data is None:
      data = self.degrader(hr)
    if anchors is None:
      anchors = sample_anchors(self.p_real.shape[0], loss.anchors,
                               self.device)
    lr, code = data['lr'], data['code']
    a1, a0 = anchors[0] @ self.p_real, anchors[1] @ self.p_fake
    # 1. D on HR and on the current G's output.
    with torch.no_grad():
      sr = self.g(lr, code)
    trainable(self.d, True)
    d_loss = cross_entropy(a1, self.d(hr)) + cross_entropy(a0, self.d(sr))
    upd(self.d_opt, d_loss)
    # 2. G against the updated D (D and the loss networks fixed).
    trainable(self.d, False)
    with torch.no_grad():
      hr_feats = self.feat(hr)
      real = self.d(hr)  # A constant of G; advances BN statistics.
    out = self.g(lr, code)
    fake = self.d(out)
    sr_feats = self.feat(out)
    terms = {
        'g_pixel': F.l1_loss(out, hr),
        'g_vgg': sum(w * F.l1_loss(sr_feats[k], hr_feats[k])
                     for k, w in self.vgg_weights.items()),
        'g_adv': self._g_adv(real, fake, a1, a0),
        'g_dists': (dists(self.dists_vgg, out, hr, self.alpha,
                          self.beta).mean() if loss.dists_weight
                    else torch.zeros((), device=out.device)),
    }
    total = (loss.pixel_weight * terms['g_pixel']
             + loss.vgg_weight * terms['g_vgg']
             + loss.adv_weight * terms['g_adv']
             + loss.dists_weight * terms['g_dists'])
    upd(self.g_opt, total)
    return {'d_loss': d_loss.detach(), 'g_total': total.detach(),
            **{k: v.detach() for k, v in terms.items()}}

  def predictor_step(self, hr, data=None) -> dict[str, torch.Tensor]:
    """One Adam step of P on the MSE to the true code -> {'p_code_mse'}."""
    if data is None:
      with torch.no_grad():
        data = self.degrader(hr)
    mse = (self.p(data['lr']) - data['code']).pow(2).mean()
    steps._update(self.p_opt, mse)  # pylint: disable=protected-access
    return {'p_code_mse': mse.detach()}
