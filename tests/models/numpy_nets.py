"""Independent float64 numpy forwards of jaxsr's SRResNet and LSR encoder.

Written from the layer lists of the official code (SANGAN `g_srgan`,
torchvision VGG16 `features`), not from jaxsr: every conv is an explicit sum
over kernel taps, activations and pooling are spelled out, so that a removed
ReLU, a changed LeakyReLU slope or a misplaced pool makes the forwards differ.
"""

import math

import numpy as np


def conv(x, p, pad: int):
  """x (N, H, W, I) ⋆ p['kernel'] (k, k, I, O) + p['bias'] with `pad` zeros."""
  w = np.asarray(p['kernel'], np.float64)
  k = w.shape[0]
  n, h, wd, _ = x.shape
  xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  oh, ow = h + 2 * pad - k + 1, wd + 2 * pad - k + 1
  out = np.zeros((n, oh, ow, w.shape[-1]))
  for dy in range(k):
    for dx in range(k):
      out += xp[:, dy:dy + oh, dx:dx + ow, :] @ w[dy, dx]
  if 'bias' in p:
    out += np.asarray(p['bias'], np.float64)
  return out


def relu(x):
  return np.where(x > 0, x, 0.0)


def leaky_relu(x, slope: float):
  return np.where(x > 0, x, slope * x)


def pixel_shuffle(x, r: int):
  """PyTorch nn.PixelShuffle: out[c, h*r + i, w*r + j] = in[c*r*r + i*r + j]."""
  n, h, w, crr = x.shape
  c = crr // (r * r)
  out = np.zeros((n, h * r, w * r, c))
  for ch in range(c):
    for i in range(r):
      for j in range(r):
        out[:, i::r, j::r, ch] = x[:, :, :, ch * r * r + i * r + j]
  return out


def torch_bilinear(x, scale: int):
  """PyTorch's upsample_bilinear2d (align_corners=False), pixel by pixel."""
  n, h, w, c = x.shape
  out = np.zeros((n, h * scale, w * scale, c))
  for oh in range(h * scale):
    h1r = max((oh + 0.5) / scale - 0.5, 0.0)
    h1 = int(h1r)
    h1p = 1 if h1 < h - 1 else 0
    lh = h1r - h1
    for ow in range(w * scale):
      w1r = max((ow + 0.5) / scale - 0.5, 0.0)
      w1 = int(w1r)
      w1p = 1 if w1 < w - 1 else 0
      lw = w1r - w1
      out[:, oh, ow] = (
          (1 - lh) * ((1 - lw) * x[:, h1, w1] + lw * x[:, h1, w1 + w1p])
          + lh * ((1 - lw) * x[:, h1 + h1p, w1]
                  + lw * x[:, h1 + h1p, w1 + w1p]))
  return out


def max_pool2(x):
  """2x2 max-pool, stride 2."""
  n, h, w, c = x.shape
  return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def nearest2(x):
  """Nearest-neighbour x2 upsampling (F.interpolate mode='nearest')."""
  return x.repeat(2, axis=1).repeat(2, axis=2)


def srresnet(params, lr, scale: int, num_block: int):
  """SANGAN's g_srgan: LR (N, h, w, 3) -> SR (N, s*h, s*w, 3)."""
  lr = np.asarray(lr, np.float64)
  x = leaky_relu(conv(lr, params['conv_first'], 2), 0.1)  # 5x5 + LReLU 0.1.
  for i in range(num_block):  # ResBlock: x + conv2(ReLU(conv1(x))).
    block = params[f'body_{i}']
    x = x + conv(relu(conv(x, block['conv1'], 1)), block['conv2'], 1)
  for i in range(int(math.log2(scale))):  # UpsampleX2: conv, shuffle, LReLU.
    x = leaky_relu(pixel_shuffle(conv(x, params[f'up_{i}'], 1), 2), 0.1)
  x = leaky_relu(conv(x, params['conv_hr'], 1), 0.1)
  return conv(x, params['conv_last'], 2) + torch_bilinear(lr, scale)


# torchvision VGG16 `features` (BN-free), with its 2x2 max-pools.
_VGG16 = ('conv1_1', 'conv1_2', 'pool', 'conv2_1', 'conv2_2', 'pool',
          'conv3_1', 'conv3_2', 'conv3_3', 'pool', 'conv4_1', 'conv4_2',
          'conv4_3', 'pool', 'conv5_1', 'conv5_2', 'conv5_3')


def lsr_encoder(params, hr, cut: str, stages: int):
  """LSRGAN's L: ImageNet-normalized HR -> VGG16 trunk (conv + ReLU, pools)
  up to `cut` -> `stages` x (nearest x2, conv 3x3, LReLU 0.2), or conv_mid +
  LReLU 0.2 when stages == 0 -> conv_last 3x3 (no activation)."""
  mean = np.array([0.485, 0.456, 0.406])
  std = np.array([0.229, 0.224, 0.225])
  x = (np.asarray(hr, np.float64) - mean) / std
  for name in _VGG16[:_VGG16.index(cut) + 1]:
    x = max_pool2(x) if name == 'pool' else relu(conv(x, params[name], 1))
  if stages == 0:
    x = leaky_relu(conv(x, params['conv_mid'], 1), 0.2)
  for i in range(1, stages + 1):
    x = leaky_relu(conv(nearest2(x), params[f'conv_up{i}'], 1), 0.2)
  return conv(x, params['conv_last'], 1)


def random_params(shapes, seed: int):
  """float32 parameters for a tree of shapes (jax.eval_shape of an init):
  kernels N(0, 2 / fan_in), biases N(0, 0.1) (inits are zero, which would
  hide a bias added in the wrong place). No init runs: eager inits of deep
  nets cost seconds per test on CPU."""
  rng = np.random.default_rng(seed)

  def draw(name, shape):
    std = 0.1 if name == 'bias' else math.sqrt(2 / math.prod(shape[:-1]))
    return rng.normal(0, std, shape).astype(np.float32)

  def walk(tree):
    return {k: walk(v) if isinstance(v, dict) else draw(k, v.shape)
            for k, v in tree.items()}
  return walk(shapes)
