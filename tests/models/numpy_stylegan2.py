"""rosinality's StyleGAN2 (model.py) transcribed to numpy float64, NCHW.

Independent of jaxsr.models.stylegan2: it reads rosinality's own state-dict
keys and shapes (`style.{i}.weight` (out, in), `conv1.conv.weight` (1, O, I,
k, k), ...), uses the fused per-sample modulated weights, a literal
scatter for conv_transpose2d and a literal upfirdn2d (zero insertion after
each sample, padding, true convolution). Also random state dicts in that
layout, for tests.
"""

import math
import re

import numpy as np

SQRT2 = math.sqrt(2.0)


def make_kernel(taps=(1, 3, 3, 1)):
  k = np.outer(taps, taps).astype(np.float64)
  return k / k.sum()


def upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
  n, c, h, w = x.shape
  if up > 1:
    z = np.zeros((n, c, h * up, w * up))
    z[:, :, ::up, ::up] = x
    x = z
  x = np.pad(x, ((0, 0), (0, 0), pad, pad))
  kf = kernel[::-1, ::-1]
  kh, kw = kernel.shape
  oh, ow = x.shape[2] - kh + 1, x.shape[3] - kw + 1
  out = np.zeros((n, c, oh, ow))
  for a in range(kh):
    for b in range(kw):
      out += x[:, :, a:a + oh, b:b + ow] * kf[a, b]
  return out[:, :, ::down, ::down]


def conv2d(x, w, stride=1, pad=0):
  """torch.nn.functional.conv2d (a correlation), w (O, I, kh, kw)."""
  x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
  _, _, kh, kw = w.shape
  oh = (x.shape[2] - kh) // stride + 1
  ow = (x.shape[3] - kw) // stride + 1
  out = np.zeros((x.shape[0], w.shape[0], oh, ow))
  for a in range(kh):
    for b in range(kw):
      tap = x[:, :, a:a + stride * (oh - 1) + 1:stride,
              b:b + stride * (ow - 1) + 1:stride]
      out += np.einsum('nihw,oi->nohw', tap, w[:, :, a, b])
  return out


def conv_transpose2d(x, w, stride=2):
  """torch conv_transpose2d, padding 0: w (I, O, kh, kw), a scatter."""
  n, _, h, wd = x.shape
  _, o, kh, kw = w.shape
  out = np.zeros((n, o, (h - 1) * stride + kh, (wd - 1) * stride + kw))
  for a in range(kh):
    for b in range(kw):
      out[:, :, a:a + stride * (h - 1) + 1:stride,
          b:b + stride * (wd - 1) + 1:stride] += np.einsum(
              'nihw,io->nohw', x, w[:, :, a, b])
  return out


def fused_lrelu(x, bias):
  bias = bias.reshape((1, -1) + (1,) * (x.ndim - 2))
  y = x + bias
  return np.where(y >= 0, y, 0.2 * y) * SQRT2


def equal_linear(x, weight, bias, lr_mul=1.0, activate=False):
  out = x @ (weight * (lr_mul / math.sqrt(weight.shape[1]))).T
  if activate:
    return fused_lrelu(out, bias * lr_mul)
  return out + bias * lr_mul


def modulated_conv(x, weight, style, demodulate=True, upsample=False):
  """rosinality's fused ModulatedConv2d; style (N, I) is the modulation."""
  _, o, i, k, _ = weight.shape
  w = weight * (1 / math.sqrt(i * k * k)) * style[:, None, :, None, None]
  if demodulate:
    w = w / np.sqrt((w**2).sum((2, 3, 4)) + 1e-8)[:, :, None, None, None]
  outs = []
  for n in range(x.shape[0]):
    if upsample:
      out = conv_transpose2d(x[n:n + 1], w[n].transpose(1, 0, 2, 3))
      out = upfirdn2d(out, make_kernel() * 4, pad=(1, 1))
    else:
      out = conv2d(x[n:n + 1], w[n], pad=k // 2)
    outs.append(out)
  return np.concatenate(outs)


def _get(sd, name):
  return np.asarray(sd[name], np.float64)


def modulation(sd, prefix, w):
  return equal_linear(w, _get(sd, prefix + '.conv.modulation.weight'),
                      _get(sd, prefix + '.conv.modulation.bias'))


def styled_conv(sd, prefix, x, w, noise, upsample=False):
  style = modulation(sd, prefix, w)
  out = modulated_conv(x, _get(sd, prefix + '.conv.weight'), style,
                       upsample=upsample)
  if noise is not None:
    out = out + _get(sd, prefix + '.noise.weight')[0] * noise
  return fused_lrelu(out, _get(sd, prefix + '.activate.bias'))


def to_rgb(sd, prefix, x, w, skip=None):
  style = modulation(sd, prefix, w)
  out = modulated_conv(x, _get(sd, prefix + '.conv.weight'), style,
                       demodulate=False)
  out = out + _get(sd, prefix + '.bias')
  if skip is not None:
    out = out + upfirdn2d(skip, make_kernel() * 4, up=2, pad=(2, 1))
  return out


def mapping(sd, z, n_mlp, lr_mul=0.01):
  x = np.asarray(z, np.float64)
  x = x / np.sqrt((x**2).mean(1, keepdims=True) + 1e-8)
  for i in range(1, n_mlp + 1):
    x = equal_linear(x, _get(sd, f'style.{i}.weight'),
                     _get(sd, f'style.{i}.bias'), lr_mul, activate=True)
  return x


def generator(sd, latent, noises):
  """Generator.forward(input_is_latent) on W+ latent (N, n_latent, S).

  noises: one (N, 1, H, W) array (or None) per layer. Returns NCHW.
  """
  latent = np.asarray(latent, np.float64)
  x = _get(sd, 'input.input').repeat(latent.shape[0], 0)
  x = styled_conv(sd, 'conv1', x, latent[:, 0], noises[0])
  skip = to_rgb(sd, 'to_rgb1', x, latent[:, 1])
  n_blocks = len([k for k in sd if re.match(r'^to_rgbs\.\d+\.bias$', k)])
  for j in range(n_blocks):
    i = 2 * j + 1
    x = styled_conv(sd, f'convs.{2 * j}', x, latent[:, i], noises[i],
                    upsample=True)
    x = styled_conv(sd, f'convs.{2 * j + 1}', x, latent[:, i + 1],
                    noises[i + 1])
    skip = to_rgb(sd, f'to_rgbs.{j}', x, latent[:, i + 2], skip)
  return skip


def conv_layer(sd, prefix, x, k, downsample=False, bias=True, activate=True):
  """rosinality's ConvLayer (Sequential: [Blur], EqualConv2d, [FusedLReLU])."""
  first = 1 if downsample else 0
  weight = _get(sd, f'{prefix}.{first}.weight')
  w = weight * (1 / math.sqrt(weight.shape[1] * k * k))
  if downsample:
    p = 2 + (k - 1)
    x = upfirdn2d(x, make_kernel(), pad=((p + 1) // 2, p // 2))
    out = conv2d(x, w, stride=2)
  else:
    out = conv2d(x, w, pad=k // 2)
  if activate:
    return fused_lrelu(out, _get(sd, f'{prefix}.{first + 1}.bias'))
  return out


def discriminator(sd, images, group=4):
  """Discriminator.forward on NCHW images -> (logits (N,), block outputs)."""
  x = conv_layer(sd, 'convs.0', np.asarray(images, np.float64), 1)
  feats = []
  i = 1
  while f'convs.{i}.conv1.0.weight' in sd:
    out = conv_layer(sd, f'convs.{i}.conv1', x, 3)
    out = conv_layer(sd, f'convs.{i}.conv2', out, 3, downsample=True)
    skip = conv_layer(sd, f'convs.{i}.skip', x, 1, downsample=True,
                      bias=False, activate=False)
    x = (out + skip) / SQRT2
    feats.append(x)
    i += 1
  n, c, h, w = x.shape
  g = min(n, group)
  y = x.reshape(g, n // g, 1, c, h, w)
  std = np.sqrt(y.var(0) + 1e-8).mean((2, 3, 4))  # (n // g, 1)
  std = np.tile(std, (g, 1))[:, :, None, None] * np.ones((1, 1, h, w))
  x = np.concatenate([x, std], 1)
  x = conv_layer(sd, 'final_conv', x, 3)
  x = x.reshape(n, -1)
  x = equal_linear(x, _get(sd, 'final_linear.0.weight'),
                   _get(sd, 'final_linear.0.bias'), activate=True)
  x = equal_linear(x, _get(sd, 'final_linear.1.weight'),
                   _get(sd, 'final_linear.1.bias'))
  return x[:, 0], feats


def _f32(a):
  return np.asarray(a, np.float32)


def random_generator_sd(rng, resolution, style_dim, n_mlp, channels):
  """A random rosinality g_ema state dict (all keys, buffers included)."""
  sd = {}
  log = int(math.log2(resolution))
  for i in range(1, n_mlp + 1):
    sd[f'style.{i}.weight'] = _f32(rng.standard_normal((style_dim,) * 2)
                                   * 100)  # Raw weights are N(0, 1) / lr_mul.
    sd[f'style.{i}.bias'] = _f32(rng.standard_normal(style_dim) * 10)

  def styled(prefix, cin, cout, up):
    sd[f'{prefix}.conv.weight'] = _f32(
        rng.standard_normal((1, cout, cin, 3, 3)))
    sd[f'{prefix}.conv.modulation.weight'] = _f32(
        rng.standard_normal((cin, style_dim)))
    sd[f'{prefix}.conv.modulation.bias'] = _f32(
        1 + 0.2 * rng.standard_normal(cin))
    if up:
      sd[f'{prefix}.conv.blur.kernel'] = _f32(make_kernel() * 4)
    sd[f'{prefix}.noise.weight'] = _f32(0.3 * rng.standard_normal(1))
    sd[f'{prefix}.activate.bias'] = _f32(0.1 * rng.standard_normal(cout))

  def rgb(prefix, cin, up):
    sd[f'{prefix}.conv.weight'] = _f32(rng.standard_normal((1, 3, cin, 1, 1)))
    sd[f'{prefix}.conv.modulation.weight'] = _f32(
        rng.standard_normal((cin, style_dim)))
    sd[f'{prefix}.conv.modulation.bias'] = _f32(
        1 + 0.2 * rng.standard_normal(cin))
    sd[f'{prefix}.bias'] = _f32(0.1 * rng.standard_normal((1, 3, 1, 1)))
    if up:
      sd[f'{prefix}.upsample.kernel'] = _f32(make_kernel() * 4)

  sd['input.input'] = _f32(rng.standard_normal((1, channels[0], 4, 4)))
  styled('conv1', channels[0], channels[0], False)
  rgb('to_rgb1', channels[0], False)
  for j in range(1, log - 1):
    styled(f'convs.{2 * j - 2}', channels[j - 1], channels[j], True)
    styled(f'convs.{2 * j - 1}', channels[j], channels[j], False)
    rgb(f'to_rgbs.{j - 1}', channels[j], True)
  for i in range(2 * log - 3):
    size = 2 ** ((i + 5) // 2)
    sd[f'noises.noise_{i}'] = _f32(rng.standard_normal((1, 1, size, size)))
  return sd


def random_discriminator_sd(rng, resolution, channels):
  """A random rosinality Discriminator state dict (blur buffers included)."""
  sd = {}
  log = int(math.log2(resolution))
  ch = {2**(i + 2): c for i, c in enumerate(channels)}

  def conv(prefix, cin, cout, k, down, bias=True):
    first = 1 if down else 0
    sd[f'{prefix}.{first}.weight'] = _f32(
        rng.standard_normal((cout, cin, k, k)))
    if down:
      sd[f'{prefix}.0.kernel'] = _f32(make_kernel())
    if bias:
      sd[f'{prefix}.{first + 1}.bias'] = _f32(0.1 * rng.standard_normal(cout))

  conv('convs.0', 3, ch[resolution], 1, False)
  for i, res in enumerate(range(log, 2, -1), start=1):
    cin, cout = ch[2**res], ch[2**(res - 1)]
    conv(f'convs.{i}.conv1', cin, cin, 3, False)
    conv(f'convs.{i}.conv2', cin, cout, 3, True)
    conv(f'convs.{i}.skip', cin, cout, 1, True, bias=False)
  conv('final_conv', ch[4] + 1, ch[4], 3, False)
  sd['final_linear.0.weight'] = _f32(rng.standard_normal((ch[4], ch[4] * 16)))
  sd['final_linear.0.bias'] = _f32(0.1 * rng.standard_normal(ch[4]))
  sd['final_linear.1.weight'] = _f32(rng.standard_normal((1, ch[4])))
  sd['final_linear.1.bias'] = _f32(0.1 * rng.standard_normal(1))
  return sd
