"""Twin critics (NCHW): ESRGAN's VGG-style D and SAN-SR's critic -> (N, 1).

`VGGStyleDiscriminator` is `jaxsr.models.discriminators` with norm 'none'
(BasicSR's D: BN in training mode, LeakyReLU 0.2, 4x4 flattened in NCHW
order, linear 100 -> 1). `SANCritic` is `jaxsr.models.san_critic` (official
`d_sanvanilla`): a random crop, blocks of (3x3 s1, 4x4 s2) convs padded
circularly (or with zeros), BN on batch statistics, LeakyReLU 0.1, FC
head. With norm 'san' the forward divides each conv weight by its divisor
s = max |FFT2(w_ij padded to H x W)| * gain + eps (eq. 8) and each FC weight
by its top singular value, both buffers refreshed by `refresh_norm()`
without gradient, as jaxsr's 'san' collection.
"""

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class VGGStyleDiscriminator(nn.Module):
  """ESRGAN D: (N, 3, S, S), S = input_size in (128, 256) -> logits (N, 1)."""

  def __init__(self, num_feat: int = 64, input_size: int = 128,
               batch_norm: bool = True, num_in_ch: int = 3):
    super().__init__()
    if input_size not in (128, 256):
      raise ValueError(f'input_size must be 128 or 256, got {input_size}')
    self.batch_norm = batch_norm
    self.input_size = input_size
    nf = num_feat
    self.conv0_0 = nn.Conv2d(num_in_ch, nf, 3, 1, 1)
    self.conv0_1 = nn.Conv2d(nf, nf, 4, 2, 1, bias=False)
    widths = [nf, 2 * nf, 4 * nf, 8 * nf, 8 * nf]
    if input_size == 256:
      widths.append(8 * nf)
    self.num_stages = len(widths) - 1
    # BN momentum 0.1 and eps 1e-5: jaxsr's values are torch's defaults.
    self.bn0_1 = nn.BatchNorm2d(nf) if batch_norm else nn.Identity()
    for i in range(1, len(widths)):
      cin, cout = widths[i - 1], widths[i]
      self.add_module(f'conv{i}_0', nn.Conv2d(cin, cout, 3, 1, 1, bias=False))
      self.add_module(f'conv{i}_1', nn.Conv2d(cout, cout, 4, 2, 1, bias=False))
      self.add_module(f'bn{i}_0',
                      nn.BatchNorm2d(cout) if batch_norm else nn.Identity())
      self.add_module(f'bn{i}_1',
                      nn.BatchNorm2d(cout) if batch_norm else nn.Identity())
    self.linear1 = nn.Linear(widths[-1] * 4 * 4, 100)
    self.linear2 = nn.Linear(100, 1)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    """(N, 3, S, S) -> (N, 1); BN uses batch statistics in train() mode."""
    if x.shape[-2:] != (self.input_size, self.input_size):
      raise ValueError(
          f'the discriminator expects {self.input_size}x{self.input_size} '
          f'inputs, got {x.shape[-2]}x{x.shape[-1]}')
    lrelu = lambda h: F.leaky_relu(h, 0.2)
    h = lrelu(self.conv0_0(x))
    h = lrelu(self.bn0_1(self.conv0_1(h)))
    for i in range(1, self.num_stages + 1):
      h = lrelu(getattr(self, f'bn{i}_0')(getattr(self, f'conv{i}_0')(h)))
      h = lrelu(getattr(self, f'bn{i}_1')(getattr(self, f'conv{i}_1')(h)))
    h = lrelu(self.linear1(h.flatten(1)))  # NCHW flatten, as BasicSR.
    return self.linear2(h)


class NormConv(nn.Module):
  """Conv padded 1 (circular or zeros), weight divided by the buffer s."""

  def __init__(self, cin: int, cout: int, size: int, stride: int,
               bias: bool, circular: bool):
    super().__init__()
    self.weight = nn.Parameter(torch.empty(cout, cin, size, size))
    nn.init.kaiming_normal_(self.weight)
    self.bias = nn.Parameter(torch.zeros(cout)) if bias else None
    self.stride = stride
    self.circular = circular
    self.register_buffer('s', torch.ones(()))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    """(N, cin, H, W) -> (N, cout, H', W') with weight / s."""
    x = F.pad(x, (1, 1, 1, 1), mode='circular' if self.circular else
              'constant')
    return F.conv2d(x, self.weight / self.s, self.bias, self.stride)

  @torch.no_grad()
  def refresh(self, spatial: tuple[int, int], gain: float, eps: float):
    """s = max over (out, in) pairs of |FFT2(w padded to H x W)|, eq. 8."""
    spectrum = torch.fft.rfft2(self.weight, s=spatial)
    self.s.copy_(spectrum.abs().amax() * gain + eps)


class NormDense(nn.Module):
  """Linear layer whose weight is divided by the buffer s (top singular)."""

  def __init__(self, cin: int, cout: int):
    super().__init__()
    self.weight = nn.Parameter(torch.empty(cout, cin))
    nn.init.kaiming_normal_(self.weight)
    self.bias = nn.Parameter(torch.zeros(cout))
    self.register_buffer('s', torch.ones(()))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    """(N, cin) -> (N, cout)."""
    return F.linear(x, self.weight / self.s, self.bias)

  @torch.no_grad()
  def refresh(self):
    """s = the exact largest singular value of the weight (1 if it is 0)."""
    sigma = torch.linalg.matrix_norm(self.weight, ord=2)
    self.s.copy_(torch.where(sigma > 0, sigma, torch.ones_like(sigma)))


class BatchStatsNorm(nn.Module):
  """Affine BN on the batch statistics only (no running averages)."""

  def __init__(self, channels: int, eps: float = 1e-5):
    super().__init__()
    self.weight = nn.Parameter(torch.ones(channels))
    self.bias = nn.Parameter(torch.zeros(channels))
    self.eps = eps

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) normalized per channel over (N, H, W), biased variance."""
    return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.,
                        self.eps)


class SANCritic(nn.Module):
  """SAN-SR critic: (N, 3, H, W), H, W >= crop -> logits (N, 1).

  norm is 'san' (divisors, refreshed by refresh_norm) or 'none'; crops are
  drawn from `rng` (a numpy Generator) unless forward gets an offset.
  """

  def __init__(self, num_features: int = 64, max_features: int = 512,
               num_blocks: int = 5, norm: str = 'san', batch_norm: bool = True,
               circular: bool | None = None, gain: float | None = None,
               negative_slope: float = 0.1, num_in_ch: int = 3, seed: int = 0):
    super().__init__()
    if norm not in ('san', 'none'):
      raise ValueError(f"the SAN critic twin supports norm 'san' or 'none', "
                       f'got {norm!r}')
    self.norm = norm
    self.gain = 1.0 if gain is None else gain  # Eq. 9's g is 1 at r = 1.
    self.crop = 4 * 2**num_blocks
    self.num_blocks = num_blocks
    self.slope = negative_slope
    self.rng = np.random.default_rng(seed)
    circular = norm == 'san' if circular is None else circular
    outs = [min(max_features, num_features * 2**i) for i in range(num_blocks)]
    ins = [num_in_ch] + outs[:-1]
    for i, (cin, cout) in enumerate(zip(ins, outs)):
      self.add_module(f'block_{i}_conv1',
                      NormConv(cin, cout, 3, 1, i == 0, circular))
      self.add_module(f'block_{i}_conv2',
                      NormConv(cout, cout, 4, 2, i == 0, circular))
      for k in (1, 2):
        self.add_module(f'block_{i}_bn{k}', BatchStatsNorm(cout) if batch_norm
                        else nn.Identity())
    self.fc1 = NormDense(outs[-1] * 4 * 4, num_features)
    self.fc2 = NormDense(num_features, 1)

  def refresh_norm(self):
    """Recomputes every divisor from the current weights ('san' only)."""
    if self.norm != 'san':
      return
    for i in range(self.num_blocks):
      # Both convs of block i read the (crop / 2^i)^2 map (before padding).
      side = self.crop // 2**i
      for k in (1, 2):
        getattr(self, f'block_{i}_conv{k}').refresh((side, side), self.gain,
                                                    1e-8)
    self.fc1.refresh()
    self.fc2.refresh()

  def forward(self, x: torch.Tensor,
              offset: tuple[int, int] | None = None) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1), at a random (or the given) crop offset."""
    h, w = x.shape[-2:]
    if h < self.crop or w < self.crop:
      raise ValueError(f'the critic crops {self.crop}x{self.crop} but its '
                       f'input is {h}x{w}')
    if offset is None:
      offset = (int(self.rng.integers(0, h - self.crop + 1)),
                int(self.rng.integers(0, w - self.crop + 1)))
    top, left = offset
    x = x[:, :, top:top + self.crop, left:left + self.crop]
    for i in range(self.num_blocks):
      for k in (1, 2):
        x = getattr(self, f'block_{i}_conv{k}')(x)
        x = F.leaky_relu(getattr(self, f'block_{i}_bn{k}')(x), self.slope)
    x = F.leaky_relu(self.fc1(x.flatten(1)), self.slope)
    return self.fc2(x)
