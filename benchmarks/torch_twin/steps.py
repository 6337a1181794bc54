"""Twin training steps (PyTorch) of jaxsr's methods, built from the same config.

`build(config, device)` mirrors `jaxsr.methods.build(config)` for
  psnr    L1 + Adam on G (LR -> HR) and, when config.encoder.enabled, on the
          encoder L (HR -> LR), as jaxsr.methods.psnr;
  lsrgan  ESRGAN / LSRGAN / CESRGAN / CLSRGAN (jaxsr.methods.lsrgan): D on
          RaGAN (BasicSR's detached means), then G on percep_w * P + λ adv
          + η L1 (− μ |L(y) − L(G(z))|₁ with L), then L on eq. 9, then the
          EMA of G; D's BN runs on batch statistics and advances its running
          averages on every call, as jaxsr's chained batch_stats;
  san_sr  the SAN critic's hinge step, its divisors refreshed from the new
          weights, then G on content + features + adversarial (eq. 10).
A twin is called as `twin(lr, hr, crops=None)` on NCHW float32 tensors and
returns its losses as 0-d tensors (no host sync); `load(state, constants)`
copies a jaxsr state's parameters in. Learning-rate schedules are left out
(constant lr): they cost nothing at these step counts.
"""

import torch
from torch import nn
from torch.nn import functional as F

from torch_twin import critics
from torch_twin import features
from torch_twin import generators
from torch_twin import params as twin_params


def _adam(parameters, optim_config) -> torch.optim.Optimizer:
  """Adam with the config's lr, betas and eps; torch's default kernels."""
  return torch.optim.Adam(list(parameters), lr=optim_config.lr,
                          betas=(optim_config.b1, optim_config.b2),
                          eps=optim_config.eps)


def _update(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
  """One backward pass of loss and one optimizer step."""
  optimizer.zero_grad(set_to_none=True)
  loss.backward()
  optimizer.step()


def _trainable(module: nn.Module | None, flag: bool) -> None:
  """Turns parameter gradients of a network on or off (BasicSR's idiom)."""
  if module is not None:
    for p in module.parameters():
      p.requires_grad_(flag)


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
  """Mean BCE of sigmoid(logits) against a constant label."""
  return F.binary_cross_entropy_with_logits(
      logits, torch.full_like(logits, target))


def rrdbnet(config) -> generators.RRDBNet:
  """The RRDBNet twin of config.model (jaxsr.methods.psnr.build_generator)."""
  m = config.model
  if m.get('dtype', 'float32') != 'float32':
    raise ValueError(f'the twin computes in float32, config.model.dtype is '
                     f'{m.dtype!r}')
  return generators.RRDBNet(
      scale=config.scale, num_feat=m.num_feat, num_block=m.num_block,
      num_grow_ch=m.num_grow_ch, bicubic_skip=m.bicubic_skip,
      lr_size=config.data.hr_patch // config.scale)


def encoder(config) -> features.LSREncoder | None:
  """The LSR encoder twin of config.encoder, or None when disabled."""
  e = config.encoder
  if not e.enabled:
    return None
  return features.LSREncoder(scale=config.scale, cut=e.cut,
                             num_upsample_feat=e.num_upsample_feat,
                             width_divisor=e.get('width_divisor', 1))


class PSNRTwin:
  """L1 + Adam on G, then on L when enabled (jaxsr.methods.psnr)."""

  def __init__(self, config, device: torch.device):
    self.g = rrdbnet(config).to(device)
    self.l = encoder(config)
    self.g_opt = _adam(self.g.parameters(), config.optim)
    if self.l is not None:
      self.l = self.l.to(device)
      self.l_opt = _adam(self.l.parameters(), config.optim)

  def load(self, state, constants) -> None:
    """Copies g_params (and l_params) of a jaxsr PSNRState."""
    del constants
    twin_params.load_flax(self.g, state.g_params)
    if self.l is not None:
      twin_params.load_flax(self.l, state.l_params)

  def __call__(self, lr, hr, crops=None) -> dict[str, torch.Tensor]:
    """One step on NCHW lr, hr -> {'g_l1'[, 'l_l1']}."""
    del crops
    loss = F.l1_loss(self.g(lr), hr)
    _update(self.g_opt, loss)
    out = {'g_l1': loss.detach()}
    if self.l is not None:
      l_loss = F.l1_loss(self.l(hr), lr)
      _update(self.l_opt, l_loss)
      out['l_l1'] = l_loss.detach()
    return out


class GANTwin:
  """D, then G, then L, then the EMA of G (jaxsr.methods.lsrgan)."""

  def __init__(self, config, device: torch.device):
    disc = config.disc
    if disc.get('norm', 'none') != 'none':
      raise ValueError(f"the D twin has norm 'none' only, config.disc.norm is "
                       f'{disc.norm!r}')
    self.loss = config.loss
    if self.loss.gan_type not in ('ragan', 'vanilla'):
      raise ValueError(f'gan_type {self.loss.gan_type!r}; expected ragan or '
                       'vanilla')
    self.g = rrdbnet(config).to(device)
    self.d = critics.VGGStyleDiscriminator(
        num_feat=disc.num_feat, input_size=config.data.hr_patch,
        batch_norm=disc.get('batch_norm', True)).to(device).train()
    self.l = encoder(config)
    if self.loss.perceptual == 'vgg':
      layers = tuple(self.loss.vgg_layer_weights.keys())
    else:
      layers = (self.loss.cx_layer,)
    self.feat = features.VGG(19, layers).to(device)
    _trainable(self.feat, False)  # Frozen loss network.
    self.g_opt = _adam(self.g.parameters(), config.optim)
    self.d_opt = _adam(self.d.parameters(), config.optim)
    if self.l is not None:
      self.l = self.l.to(device)
      self.l_opt = _adam(self.l.parameters(), config.optim)
    self.ema_decay = config.ema.decay
    self.ema = [p.detach().clone() for p in self.g.parameters()]

  def load(self, state, constants) -> None:
    """Copies G, D (with BN statistics), L, the EMA and the VGG params."""
    twin_params.load_flax(self.g, state.g_params)
    twin_params.load_flax(self.d, state.d_params, state.d_batch_stats)
    if self.l is not None:
      twin_params.load_flax(self.l, state.l_params)
    twin_params.load_flax(self.feat, constants)
    self.ema = [p.detach().clone() for p in self.g.parameters()]

  def _perceptual(self, sr_feats, hr_feats) -> torch.Tensor:
    if self.loss.perceptual == 'vgg':
      return sum(w * F.l1_loss(sr_feats[k], hr_feats[k])
                 for k, w in self.loss.vgg_layer_weights.items())
    k = self.loss.cx_layer
    return features.contextual_loss(sr_feats[k], hr_feats[k],
                                    self.loss.cx_band_width,
                                    self.loss.cx_max_samples)

  def __call__(self, lr, hr, crops=None) -> dict[str, torch.Tensor]:
    """One D, G, L step on NCHW lr, hr -> jaxsr's metric names."""
    del crops
    loss, ragan = self.loss, self.loss.gan_type == 'ragan'
    # 1. D on HR and on the current G's output (no gradient to G).
    with torch.no_grad():
      sr = self.g(lr)
    _trainable(self.d, True)
    real, fake = self.d(hr), self.d(sr)
    if ragan:
      # config.loss.ragan_detach_means: the current BasicSR detaches the
      # other half's mean; the old one (ESRGAN's, LSRGAN's) does not.
      real_mean, fake_mean = real.mean(), fake.mean()
      if loss.get('ragan_detach_means', True):
        real_mean, fake_mean = real_mean.detach(), fake_mean.detach()
      d_loss = 0.5 * (_bce(real - fake_mean, 1.) + _bce(fake - real_mean, 0.))
    else:
      d_loss = _bce(real, 1.) + _bce(fake, 0.)
    _update(self.d_opt, d_loss)

    # 2. G against the updated D; D, L and the VGG are fixed here.
    _trainable(self.d, False)
    _trainable(self.l, False)
    with torch.no_grad():
      hr_feats = self.feat(hr)
      l_hr = self.l(hr) if self.l is not None else None
      real_g = self.d(hr)  # A constant of G; advances BN statistics.
    out = self.g(lr)
    fake_g = self.d(out)
    if ragan:
      adv = 0.5 * (_bce(real_g - fake_g.mean(), 0.)
                   + _bce(fake_g - real_g.mean(), 1.))
    else:
      adv = _bce(fake_g, 1.)
    percep = self._perceptual(self.feat(out), hr_feats)
    pixel = F.l1_loss(out, hr)
    latent = torch.zeros((), device=out.device)
    if self.l is not None:
      latent = F.l1_loss(self.l(out), l_hr)
    total = (loss.perceptual_weight * percep + loss.adv_weight * adv
             + loss.pixel_weight * pixel
             + loss.latent_sign * loss.latent_weight * latent)
    _update(self.g_opt, total)

    # 3. L on eq. 9 with this step's G(z), then the EMA of G.
    l_loss = torch.zeros((), device=out.device)
    if self.l is not None:
      _trainable(self.l, True)
      l_loss = F.l1_loss(self.l(out.detach()), self.l(hr))
      _update(self.l_opt, l_loss)
    with torch.no_grad():
      g_params = [p.detach() for p in self.g.parameters()]
      # ema <- ema + (1 - decay) (g - ema), one multi-tensor op (as timm).
      # pylint: disable-next=protected-access
      torch._foreach_lerp_(self.ema, g_params, 1. - self.ema_decay)
    return {'d_loss': d_loss.detach(), 'd_real': real.detach().mean(),
            'd_fake': fake.detach().mean(), 'l_loss': l_loss.detach(),
            'g_total': total.detach(), 'g_perceptual': percep.detach(),
            'g_adv': adv.detach(), 'g_pixel': pixel.detach(),
            'g_latent': latent.detach()}


class SANTwin:
  """The critic's hinge step, its divisors, then G (jaxsr.methods.san_sr)."""

  def __init__(self, config, device: torch.device):
    c = config.critic
    if c.ratio != 1.0 or c.legacy_rownorm or c.momentum:
      raise ValueError('the SAN critic twin covers ratio 1, momentum 0 and '
                       f'the exact norm; got ratio {c.ratio}, momentum '
                       f'{c.momentum}, legacy_rownorm {c.legacy_rownorm}')
    self.loss = config.loss
    self.every = int(c.normalize_every)
    self.step = 0
    self.g = generators.SRResNet(scale=config.scale,
                                 num_feat=config.model.num_feat,
                                 num_block=config.model.num_block).to(device)
    self.d = critics.SANCritic(
        num_features=c.num_features, max_features=c.max_features,
        num_blocks=c.num_blocks, norm=c.norm, batch_norm=c.batch_norm,
        circular=c.circular, gain=c.gain or None).to(device)
    self.feat = features.VGG(19, (self.loss.feature_layer,)).to(device)
    _trainable(self.feat, False)
    self.g_opt = _adam(self.g.parameters(), config.optim)
    self.d_opt = _adam(self.d.parameters(), config.d_optim)
    self.d.refresh_norm()

  def load(self, state, constants) -> None:
    """Copies G, the critic and the VGG; divisors from the copied weights."""
    twin_params.load_flax(self.g, state.g_params)
    twin_params.load_flax(self.d, state.d_params)
    twin_params.load_flax(self.feat, constants)
    self.d.refresh_norm()  # jaxsr's init stores the exact divisors too.

  def __call__(self, lr, hr, crops=None) -> dict[str, torch.Tensor]:
    """One critic and one G step; crops: {'real', 'fake', 'gen': (t, l)}."""
    crops = crops or {}
    layer = self.loss.feature_layer
    # 1. The critic's hinge step on HR and the current G's output.
    with torch.no_grad():
      sr = self.g(lr)
    _trainable(self.d, True)
    real = self.d(hr, crops.get('real'))
    fake = self.d(sr, crops.get('fake'))
    d_loss = F.relu(1. - real).mean() + F.relu(1. + fake).mean()
    _update(self.d_opt, d_loss)
    if self.step % self.every == 0:
      self.d.refresh_norm()  # "After every update step" (Fig. 6: every N).
    self.step += 1

    # 2. G on eq. 10 against the updated critic.
    _trainable(self.d, False)
    with torch.no_grad():
      hr_feats = self.feat(hr)[layer]
    out = self.g(lr)
    adv = -self.d(out, crops.get('gen')).mean()
    content = F.l1_loss(out, hr)
    feats = F.l1_loss(self.feat(out)[layer], hr_feats)
    total = (self.loss.content_weight * content
             + self.loss.features_weight * feats + self.loss.adv_weight * adv)
    _update(self.g_opt, total)
    return {'d_loss': d_loss.detach(), 'd_real': real.detach().mean(),
            'd_fake': fake.detach().mean(), 'g_total': total.detach(),
            'g_content': content.detach(), 'g_features': feats.detach(),
            'g_adv': adv.detach()}


_TWINS = {'psnr': PSNRTwin, 'lsrgan': GANTwin, 'san_sr': SANTwin}


def build(config, device: str | torch.device = 'cpu'):
  """The twin of jaxsr.methods.build(config) on `device`; ValueError if none."""
  if config.method not in _TWINS:
    raise ValueError(f'no PyTorch twin for method {config.method!r}; '
                     f'expected one of {sorted(_TWINS)}')
  return _TWINS[config.method](config, torch.device(device))
