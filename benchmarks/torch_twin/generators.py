"""Twin generators (NCHW): RRDBNet and SRResNet, LR (N, 3, h, w) -> SR.

Same layouts, names and activations as `jaxsr.models.rrdbnet.RRDBNet`
(BasicSR `rrdbnet_arch.py`: 3x3 convs, LeakyReLU 0.2, residuals scaled by
0.2, nearest upsampling) and `jaxsr.models.srresnet.SRResNet` (official SAN
`g_srgan`: no BN, LeakyReLU 0.1, pixel shuffle, bilinear global skip).
Weights start at PyTorch's defaults; `params.load_flax` overwrites them.
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


def _conv3(cin: int, cout: int) -> nn.Conv2d:
  """3x3 stride-1 conv padded by 1, with bias."""
  return nn.Conv2d(cin, cout, 3, 1, 1)


class ResidualDenseBlock(nn.Module):
  """Five dense 3x3 convs, residual scaled by 0.2: (N, F, H, W) -> same."""

  def __init__(self, num_feat: int, num_grow_ch: int):
    super().__init__()
    for k in range(1, 5):
      self.add_module(f'conv{k}',
                      _conv3(num_feat + (k - 1) * num_grow_ch, num_grow_ch))
    self.conv5 = _conv3(num_feat + 4 * num_grow_ch, num_feat)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    """(N, F, H, W) -> (N, F, H, W)."""
    lrelu = lambda h: F.leaky_relu(h, 0.2)
    x1 = lrelu(self.conv1(x))
    x2 = lrelu(self.conv2(torch.cat((x, x1), 1)))
    x3 = lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
    x4 = lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
    x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
    return x5 * 0.2 + x


class RRDB(nn.Module):
  """Three ResidualDenseBlocks, residual scaled by 0.2: (N, F, H, W) -> same."""

  def __init__(self, num_feat: int, num_grow_ch: int):
    super().__init__()
    self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
    self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
    self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    """(N, F, H, W) -> (N, F, H, W)."""
    return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class BicubicUpsample(nn.Module):
  """MATLAB bicubic upsampling as two fixed matmuls: (N, C, h, w) -> x s."""

  def __init__(self, height: int, width: int, scale: int):
    super().__init__()
    # The weights of jaxsr's MATLAB-exact resize (numpy only, no jax).
    from jaxsr.data import imresize  # pylint: disable=g-import-not-at-top
    rows = imresize.resize_matrix(height, height * scale, scale)
    cols = imresize.resize_matrix(width, width * scale, scale)
    self.register_buffer('rows', torch.tensor(rows, dtype=torch.float32))
    self.register_buffer('cols', torch.tensor(cols, dtype=torch.float32))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, s*h, s*w): rows @ x @ cols^T per channel."""
    if x.shape[-2:] != (self.rows.shape[1], self.cols.shape[1]):
      raise ValueError(
          f'BicubicUpsample was built for {self.rows.shape[1]}x'
          f'{self.cols.shape[1]} inputs, got {x.shape[-2]}x{x.shape[-1]}')
    return self.rows @ x @ self.cols.T


class RRDBNet(nn.Module):
  """ESRGAN generator: (N, 3, h, w) in [0, 1] -> (N, 3, s*h, s*w), unclamped.

  bicubic_skip needs the LR size (lr_size) to build its fixed resize
  matrices; the body is BasicSR's for scale 4 (and 1, 2 by pixel-unshuffle).
  """

  def __init__(self, scale: int = 4, num_feat: int = 64, num_block: int = 23,
               num_grow_ch: int = 32, bicubic_skip: bool = False,
               lr_size: int | None = None, num_in_ch: int = 3,
               num_out_ch: int = 3):
    super().__init__()
    if scale not in (1, 2, 4):
      raise ValueError(f'the RRDBNet twin supports scale 1, 2 or 4, got '
                       f'{scale}')
    self.scale = scale
    self.unshuffle = {1: 4, 2: 2}.get(scale, 1)
    self.num_block = num_block
    cin = num_in_ch * self.unshuffle**2
    self.conv_first = _conv3(cin, num_feat)
    for i in range(num_block):
      self.add_module(f'body_{i}', RRDB(num_feat, num_grow_ch))
    self.conv_body = _conv3(num_feat, num_feat)
    self.conv_up1 = _conv3(num_feat, num_feat)
    self.conv_up2 = _conv3(num_feat, num_feat)
    self.conv_hr = _conv3(num_feat, num_feat)
    self.conv_last = _conv3(num_feat, num_out_ch)
    self.skip = None
    if bicubic_skip:
      if lr_size is None:
        raise ValueError('bicubic_skip needs lr_size (the LR patch side)')
      self.skip = BicubicUpsample(lr_size, lr_size, scale)

  def forward(self, lr: torch.Tensor) -> torch.Tensor:
    """(N, 3, h, w) -> (N, 3, s*h, s*w)."""
    lrelu = lambda h: F.leaky_relu(h, 0.2)
    feat = F.pixel_unshuffle(lr, self.unshuffle) if self.unshuffle > 1 else lr
    feat = self.conv_first(feat)
    body = feat
    for i in range(self.num_block):
      body = getattr(self, f'body_{i}')(body)
    feat = feat + self.conv_body(body)
    feat = lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2.,
                                             mode='nearest')))
    feat = lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2.,
                                             mode='nearest')))
    out = self.conv_last(lrelu(self.conv_hr(feat)))
    if self.skip is not None:
      out = out + self.skip(lr)
    return out


class ResBlock(nn.Module):
  """The official SAN ResBlock: x + conv2(ReLU(conv1(x))), no BN, no bias."""

  def __init__(self, num_feat: int):
    super().__init__()
    self.conv1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=False)
    self.conv2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1, bias=False)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    """(N, F, H, W) -> (N, F, H, W)."""
    return x + self.conv2(F.relu(self.conv1(x)))


class SRResNet(nn.Module):
  """SAN-SR's G: (N, 3, h, w) -> (N, 3, s*h, s*w), s in (2, 4, 8)."""

  def __init__(self, scale: int = 4, num_feat: int = 64, num_block: int = 16,
               num_in_ch: int = 3):
    super().__init__()
    if scale not in (2, 4, 8):
      raise ValueError(f'SRResNet scale must be 2, 4 or 8, got {scale}')
    self.scale = scale
    self.num_block = num_block
    self.num_up = int(np.log2(scale))
    self.conv_first = nn.Conv2d(num_in_ch, num_feat, 5, 1, 2)
    for i in range(num_block):
      self.add_module(f'body_{i}', ResBlock(num_feat))
    for i in range(self.num_up):
      self.add_module(f'up_{i}', _conv3(num_feat, 4 * num_feat))
    self.conv_hr = _conv3(num_feat, num_feat)
    self.conv_last = nn.Conv2d(num_feat, num_in_ch, 5, 1, 2)

  def forward(self, lr: torch.Tensor) -> torch.Tensor:
    """(N, 3, h, w) -> (N, 3, s*h, s*w), plus the bilinear skip."""
    lrelu = lambda h: F.leaky_relu(h, 0.1)
    skip = F.interpolate(lr, scale_factor=float(self.scale), mode='bilinear',
                         align_corners=False)
    x = lrelu(self.conv_first(lr))
    for i in range(self.num_block):
      x = getattr(self, f'body_{i}')(x)
    for i in range(self.num_up):
      x = lrelu(F.pixel_shuffle(getattr(self, f'up_{i}')(x), 2))
    x = lrelu(self.conv_hr(x))
    return self.conv_last(x) + skip
