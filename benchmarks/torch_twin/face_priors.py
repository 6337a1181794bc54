"""Face-prior twins (PyTorch, NCHW): the 32x32 CelebA DCGAN and StyleGAN2, G and D.

Each generator computes ONE face from its search variable, unbatched, so that
`torch.func.vmap` over stacked per-face parameters (benchmarks/torch_twin/
faces.py) runs every face through its own copy of G:

  DCGAN      forward(z (1, 100) Gaussian u, noise ()) -> (3, 32, 32): G reads
             erf(u / sqrt 2) ~ U(-1, 1) (jaxsr.models.dcgan); the layers of
             ../shared/data/face_prior/README.md, BN in eval mode.
  StyleGAN2  forward(z (rows, S), noise (trainable maps (1, H, W), ...)) ->
             (3, R, R): W+ = lrelu(z std + mean, 0.2) (PULSE's latent_in),
             then rosinality's synthesis (model.py): modulated weights per
             face (the fused form, demodulated), the upsampling conv as
             conv_transpose2d stride 2 + [1, 3, 3, 1] blur, noise times a
             learned strength, fused lrelu, toRGB skips upsampled by
             upfirdn2d. The fixed noise maps and the mapping statistics are
             buffers.

Discriminators are batched and frozen (no per-face copy): their forward
returns (logits (N,), block features, first block first). The StyleGAN2 D
groups its minibatch stddev per image (group 1), as jaxsr's per-image
`discriminate`. `dcgan_from_jax` / `stylegan2_from_jax` copy jaxsr's trees
(a `GanPrior`'s g_params, g_buffers, d_params) into the twins.
"""

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

SQRT2 = math.sqrt(2.0)


def _t(x) -> torch.Tensor:
  return torch.from_numpy(np.array(x, np.float32))


def _oihw(kernel) -> torch.Tensor:
  """Flax HWIO -> torch OIHW."""
  return _t(np.asarray(kernel).transpose(3, 2, 0, 1))


def _set(module: nn.Module, values: dict) -> nn.Module:
  """Copies {name: tensor} into the module's parameters and buffers; every
  parameter must be written, and shapes must agree."""
  own = dict(module.named_parameters()) | dict(module.named_buffers())
  missing = sorted(set(dict(module.named_parameters())) - set(values))
  unknown = sorted(set(values) - set(own))
  if missing or unknown:
    raise ValueError(f'{type(module).__name__}: no value for {missing[:4]}, '
                     f'no slot for {unknown[:4]}')
  with torch.no_grad():
    for name, value in values.items():
      if tuple(own[name].shape) != tuple(value.shape):
        raise ValueError(f'{type(module).__name__}.{name}: twin '
                         f'{tuple(own[name].shape)}, jaxsr '
                         f'{tuple(value.shape)}')
      own[name].copy_(value)
  return module


# DCGAN --------------------------------------------------------------------

class DCGANGenerator(nn.Module):
  """The README's G; forward(u (1, 100), noise=()) -> (3, 32, 32) in [-1, 1]."""

  def __init__(self):
    super().__init__()
    self.deconv0 = nn.ConvTranspose2d(100, 256, 4, 1, 0, bias=False)
    self.bn0 = nn.BatchNorm2d(256)
    self.conv1 = nn.Conv2d(256, 128, 3, 1, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(128)
    self.deconv2 = nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(64)
    self.deconv3 = nn.ConvTranspose2d(64, 32, 4, 2, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(32)
    self.deconv4 = nn.ConvTranspose2d(32, 3, 4, 2, 1, bias=True)
    self.eval()

  def forward(self, u: torch.Tensor, noise=()) -> torch.Tensor:
    del noise
    z = torch.erf(u / SQRT2)  # N(0, 1) -> U(-1, 1), jaxsr.models.dcgan.
    x = self.bn0(self.deconv0(z.reshape(1, 100, 1, 1)))
    x = F.leaky_relu(self.bn1(self.conv1(x)), 0.2)
    x = F.leaky_relu(self.bn2(self.deconv2(x)), 0.2)
    x = F.leaky_relu(self.bn3(self.deconv3(x)), 0.2)
    return torch.tanh(self.deconv4(x))[0]


class DCGANDiscriminator(nn.Module):
  """The README's D: (N, 3, 32, 32) -> (logits (N,), 4 block features)."""

  def __init__(self):
    super().__init__()
    widths = (3, 32, 64, 128, 256)
    self.convs = nn.ModuleList(
        nn.Conv2d(widths[i], widths[i + 1], 4, 2, 1, bias=i == 0)
        for i in range(4))
    self.bns = nn.ModuleList(nn.BatchNorm2d(w) for w in widths[2:])
    self.linear = nn.Linear(1024, 1)
    self.eval()

  def forward(self, x: torch.Tensor):
    blocks = []
    for i, conv in enumerate(self.convs):
      x = conv(x)
      if i > 0:
        x = self.bns[i - 1](x)
      x = F.leaky_relu(x, 0.2)
      blocks.append(x)
    return self.linear(x.flatten(1))[:, 0], tuple(blocks)


def _bn(prefix: str, params, stats) -> dict:
  return {f'{prefix}.weight': _t(params['scale']),
          f'{prefix}.bias': _t(params['bias']),
          f'{prefix}.running_mean': _t(stats['mean']),
          f'{prefix}.running_var': _t(stats['var'])}


def dcgan_generator_values(g_params, g_buffers) -> dict:
  """jaxsr's G {'params'} and {'batch_stats'} trees -> the twin's names."""
  out = {}
  for i in (0, 2, 3, 4):
    # TorchConvTranspose keeps torch's (in, out, k, k) as (k, k, in, out).
    out[f'deconv{i}.weight'] = _t(
        np.asarray(g_params[f'deconv{i}']['kernel']).transpose(2, 3, 0, 1))
  out['deconv4.bias'] = _t(g_params['deconv4']['bias'])
  out['conv1.weight'] = _oihw(g_params['conv1']['kernel'])
  for i in range(4):
    out.update(_bn(f'bn{i}', g_params[f'bn{i}'], g_buffers[f'bn{i}']))
  return out


def dcgan_from_jax(g_params, g_buffers, d_variables):
  """(G twin, D twin) holding a jaxsr DCGAN prior's weights."""
  g = _set(DCGANGenerator(), dcgan_generator_values(g_params, g_buffers))
  p, s = d_variables['params'], d_variables['batch_stats']
  values = {'convs.0.bias': _t(p['conv0']['bias'])}
  for i in range(4):
    values[f'convs.{i}.weight'] = _oihw(p[f'conv{i}']['kernel'])
    if i > 0:
      values.update(_bn(f'bns.{i - 1}', p[f'bn{i}'], s[f'bn{i}']))
  # jaxsr flattens (H, W, C); torch flattens (C, H, W).
  kernel = np.asarray(p['linear']['kernel']).reshape(2, 2, 256, 1)
  values['linear.weight'] = _t(kernel.transpose(3, 2, 0, 1).reshape(1, 1024))
  values['linear.bias'] = _t(p['linear']['bias'])
  d = _set(DCGANDiscriminator(), values)
  return g, d


# StyleGAN2 ----------------------------------------------------------------

_KERNELS = {}  # (gain, device) -> the 4x4 blur, made once per device.


def _blur_kernel(gain: float, device) -> torch.Tensor:
  key = (gain, str(device))
  if key not in _KERNELS:
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = k[:, None] * k[None, :]
    _KERNELS[key] = (k / k.sum() * gain).to(device)
  return _KERNELS[key]


def upfirdn2d(x: torch.Tensor, gain: float, up: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
  """rosinality's upfirdn2d_native (down 1) with the [1, 3, 3, 1] blur
  times gain: zeros inserted, padded, then convolved (flipped kernel) per
  channel; x (N, C, H, W)."""
  n, c, h, w = x.shape
  if up > 1:
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
    x = x.reshape(n, c, h * up, w * up)
  x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
  kernel = _blur_kernel(gain, x.device)
  weight = torch.flip(kernel, (0, 1))[None, None].expand(c, 1, 4, 4)
  return F.conv2d(x, weight, groups=c)


def fused_lrelu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
  """lrelu(x + bias, 0.2) * sqrt(2), bias per channel (dim 1)."""
  shape = (1, -1) + (1,) * (x.ndim - 2)
  return F.leaky_relu(x + bias.view(shape), 0.2) * SQRT2


class EqualLinear(nn.Module):
  """x @ (W lr_mul / sqrt(in))^T + b lr_mul, optional fused lrelu."""

  def __init__(self, cin: int, cout: int, bias_init: float = 0.0,
               activate: bool = False):
    super().__init__()
    self.weight = nn.Parameter(torch.randn(cout, cin))
    self.bias = nn.Parameter(torch.full((cout,), bias_init))
    self.scale = 1.0 / math.sqrt(cin)
    self.activate = activate

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    if self.activate:
      return fused_lrelu(F.linear(x, self.weight * self.scale), self.bias)
    return F.linear(x, self.weight * self.scale, self.bias)


class ModulatedConv(nn.Module):
  """rosinality's ModulatedConv2d for one face (batch 1, groups 1)."""

  def __init__(self, cin: int, cout: int, k: int, style_dim: int,
               demodulate: bool = True, upsample: bool = False):
    super().__init__()
    self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
    self.modulation = EqualLinear(style_dim, cin, bias_init=1.0)
    self.scale = 1.0 / math.sqrt(cin * k * k)
    self.k, self.demodulate, self.upsample = k, demodulate, upsample

  def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    style = self.modulation(w)  # (in,)
    weight = self.scale * self.weight * style[None, :, None, None]
    if self.demodulate:
      demod = torch.rsqrt(weight.pow(2).sum((1, 2, 3)) + 1e-8)
      weight = weight * demod[:, None, None, None]
    if self.upsample:
      out = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
      return upfirdn2d(out, 4.0, pad=(1, 1))
    return F.conv2d(x, weight, padding=self.k // 2)


class StyledConv(nn.Module):
  """Modulated 3x3 conv + noise * strength + fused lrelu (bias)."""

  def __init__(self, cin: int, cout: int, style_dim: int,
               upsample: bool = False):
    super().__init__()
    self.conv = ModulatedConv(cin, cout, 3, style_dim, upsample=upsample)
    self.noise_strength = nn.Parameter(torch.zeros(()))
    self.bias = nn.Parameter(torch.zeros(cout))

  def forward(self, x, w, noise):
    out = self.conv(x, w) + self.noise_strength * noise
    return fused_lrelu(out, self.bias)


class ToRGB(nn.Module):
  """1x1 modulated conv (no demodulation) + bias + upsampled skip."""

  def __init__(self, cin: int, style_dim: int):
    super().__init__()
    self.conv = ModulatedConv(cin, 3, 1, style_dim, demodulate=False)
    self.bias = nn.Parameter(torch.zeros(3))

  def forward(self, x, w, skip=None):
    out = self.conv(x, w) + self.bias.view(1, 3, 1, 1)
    if skip is not None:
      out = out + upfirdn2d(skip, 4.0, up=2, pad=(2, 1))
    return out


class StyleGAN2Generator(nn.Module):
  """One face: forward(z (rows, S), noise ((1, H, W), ...)) -> (3, R, R).

  channels: widths at 4, 8, .., R; w_mean, w_std: mapping statistics (S,);
  fixed_noise: the non-trainable maps (H, W), after the trainable ones.
  """

  def __init__(self, channels, style_dim, w_mean, w_std, fixed_noise):
    super().__init__()
    self.channels = tuple(channels)
    self.const = nn.Parameter(torch.randn(1, channels[0], 4, 4))
    self.conv1 = StyledConv(channels[0], channels[0], style_dim)
    self.to_rgb1 = ToRGB(channels[0], style_dim)
    self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
    for cin, cout in zip(channels[:-1], channels[1:]):
      self.convs.append(StyledConv(cin, cout, style_dim, upsample=True))
      self.convs.append(StyledConv(cout, cout, style_dim))
      self.to_rgbs.append(ToRGB(cout, style_dim))
    self.register_buffer('w_mean', _t(w_mean))
    self.register_buffer('w_std', _t(w_std))
    self.fixed = len(fixed_noise)
    for i, n in enumerate(fixed_noise):
      self.register_buffer(f'noise_fixed{i}', _t(n)[None, None])

  def w_rows(self, z: torch.Tensor) -> torch.Tensor:
    """PULSE's latent_in: lrelu(z std + mean, 0.2), any leading axes."""
    return F.leaky_relu(z * self.w_std + self.w_mean, 0.2)

  def forward(self, z: torch.Tensor, noise=()) -> torch.Tensor:
    w = self.w_rows(z)
    noise = [n[None] for n in noise] + [
        getattr(self, f'noise_fixed{i}') for i in range(self.fixed)]
    out = self.conv1(self.const, w[0], noise[0])
    skip = self.to_rgb1(out, w[1])
    for j, to_rgb in enumerate(self.to_rgbs):
      i = 2 * j + 1
      out = self.convs[2 * j](out, w[i], noise[i])
      out = self.convs[2 * j + 1](out, w[i + 1], noise[i + 1])
      skip = to_rgb(out, w[i + 2], skip)
    return skip[0]


class ConvLayer(nn.Module):
  """rosinality's ConvLayer: (blur + stride 2 when down) EqualConv2d, then
  fused lrelu with its bias, or a plain bias, or none."""

  def __init__(self, cin, cout, k, down=False, bias=True, activate=True):
    super().__init__()
    self.weight = nn.Parameter(torch.randn(cout, cin, k, k))
    self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
    self.scale = 1.0 / math.sqrt(cin * k * k)
    self.k, self.down, self.activate = k, down, activate

  def forward(self, x):
    w = self.weight * self.scale
    if self.down:
      p = 2 + (self.k - 1)
      x = upfirdn2d(x, 1.0, pad=((p + 1) // 2, p // 2))
      x = F.conv2d(x, w, stride=2)
    else:
      x = F.conv2d(x, w, padding=self.k // 2)
    if self.bias is None:
      return x
    if self.activate:
      return fused_lrelu(x, self.bias)
    return x + self.bias.view(1, -1, 1, 1)


class ResBlock(nn.Module):
  def __init__(self, cin, cout):
    super().__init__()
    self.conv1 = ConvLayer(cin, cin, 3)
    self.conv2 = ConvLayer(cin, cout, 3, down=True)
    self.skip = ConvLayer(cin, cout, 1, down=True, bias=False, activate=False)

  def forward(self, x):
    return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2


class StyleGAN2Discriminator(nn.Module):
  """rosinality's D, minibatch stddev per image: (N, 3, R, R) -> (logits,
  ResBlock outputs first block first)."""

  def __init__(self, channels, stddev_feat: int = 1):
    super().__init__()
    ch = tuple(channels)  # At 4, 8, .., R.
    self.fromrgb = ConvLayer(3, ch[-1], 1)
    self.blocks = nn.ModuleList(ResBlock(ch[i], ch[i - 1])
                                for i in range(len(ch) - 1, 0, -1))
    self.stddev_feat = stddev_feat
    self.final_conv = ConvLayer(ch[0] + stddev_feat, ch[0], 3)
    self.fc = EqualLinear(ch[0] * 16, ch[0], activate=True)
    self.out = EqualLinear(ch[0], 1)
    for p in self.parameters():
      p.requires_grad_(False)

  def forward(self, x):
    x = self.fromrgb(x)
    feats = []
    for block in self.blocks:
      x = block(x)
      feats.append(x)
    n, _, h, w = x.shape
    # Group 1: the std of one image is 0, sqrt(0 + 1e-8) = 1e-4.
    std = torch.full((n, self.stddev_feat, h, w), 1e-4, device=x.device)
    x = self.final_conv(torch.cat([x, std], 1))
    return self.out(self.fc(x.flatten(1)))[:, 0], tuple(feats)


def _dense(prefix, p) -> dict:
  return {f'{prefix}.weight': _t(np.asarray(p['kernel']).T),
          f'{prefix}.bias': _t(p['bias'])}


def stylegan2_generator_values(syn) -> dict:
  """jaxsr's synthesis tree -> the twin generator's parameter names."""

  def styled(prefix, p):
    return {f'{prefix}.conv.weight': _oihw(p['kernel']),
            f'{prefix}.bias': _t(p['bias']),
            f'{prefix}.noise_strength': _t(p['noise_strength']),
            **_dense(f'{prefix}.conv.modulation', p['affine'])}

  def rgb(prefix, p):
    return {f'{prefix}.conv.weight': _oihw(p['kernel']),
            f'{prefix}.bias': _t(p['bias']),
            **_dense(f'{prefix}.conv.modulation', p['affine'])}

  b4 = syn['b4']
  out = {'const': _t(np.asarray(b4['const']).transpose(2, 0, 1)[None]),
         **styled('conv1', b4['conv1']), **rgb('to_rgb1', b4['torgb'])}
  blocks = sorted(int(k[1:]) for k in syn if k != 'b4')
  for j, r in enumerate(blocks):
    b = syn[f'b{r}']
    out.update(styled(f'convs.{2 * j}', b['conv0']))
    out.update(styled(f'convs.{2 * j + 1}', b['conv1']))
    out.update(rgb(f'to_rgbs.{j}', b['torgb']))
  return out


def stylegan2_from_jax(g_params, g_buffers, d_params, channels):
  """(G twin, D twin) of a jaxsr StyleGAN2 prior (synthesis tree, buffers
  {'w_mean', 'w_std', 'noise'}, D tree); channels at 4 .. R."""
  style_dim = int(np.shape(g_buffers['w_mean'])[-1])
  g = StyleGAN2Generator(channels, style_dim, g_buffers['w_mean'],
                         g_buffers['w_std'], g_buffers['noise'])
  _set(g, stylegan2_generator_values(g_params))

  def conv(prefix, p):
    out = {f'{prefix}.weight': _oihw(p['kernel'])}
    if 'bias' in p:
      out[f'{prefix}.bias'] = _t(p['bias'])
    return out

  d_ch = [int(np.shape(d_params['final_conv']['kernel'])[-1])]
  d_ch += [int(np.shape(d_params[f'b{4 * 2**i}']['conv0']['kernel'])[-1])
           for i in range(1, len(channels))]
  stddev_feat = int(np.shape(d_params['final_conv']['kernel'])[2]) - d_ch[0]
  d = StyleGAN2Discriminator(d_ch, stddev_feat)
  values = {**conv('fromrgb', d_params['fromrgb']),
            **conv('final_conv', d_params['final_conv']),
            **_dense('fc', d_params['fc']), **_dense('out', d_params['out'])}
  for j, i in enumerate(range(len(d_ch) - 1, 0, -1)):
    b = d_params[f'b{4 * 2**i}']
    values.update(conv(f'blocks.{j}.conv1', b['conv0']))
    values.update(conv(f'blocks.{j}.conv2', b['conv1']))
    values.update(conv(f'blocks.{j}.skip', b['skip']))
  _set(d, values)
  return g, d
