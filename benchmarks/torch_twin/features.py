"""Twin feature networks (NCHW): VGG19/16 features, LSR encoder L, CX loss.

`VGG` is torchvision's `vgg19().features` cut at the deepest requested
layer, ImageNet input normalization inside (jaxsr.models.vgg); `forward`
returns {layer: (N, C, h, w)} for the names of BasicSR's vgg_arch (convB_K
before ReLU). `LSREncoder` is jaxsr.models.encoders.LSREncoder: the VGG16
trunk to `cut` (widths divided by width_divisor), then nearest x2 -> conv
-> LeakyReLU 0.2 stages and a final 3-channel conv. `contextual_loss` is
jaxsr.losses.contextual's eq. 11 with (1 - cos) / 2 distances.
"""

import torch
from torch import nn
from torch.nn import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_CONVS_PER_BLOCK = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
_WIDTHS = (64, 128, 256, 512, 512)


def layer_names(depth: int) -> tuple[str, ...]:
  """conv1_1, relu1_1, ..., pool5 of VGG{depth} features, in order."""
  if depth not in _CONVS_PER_BLOCK:
    raise ValueError(f'VGG depth must be 16 or 19, got {depth!r}')
  names = []
  for block, convs in enumerate(_CONVS_PER_BLOCK[depth], start=1):
    for k in range(1, convs + 1):
      names += [f'conv{block}_{k}', f'relu{block}_{k}']
    names.append(f'pool{block}')
  return tuple(names)


class _Normalize(nn.Module):
  """(x - ImageNet mean) / std on (N, 3, H, W) RGB in [0, 1]."""

  def __init__(self):
    super().__init__()
    self.register_buffer('mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
    self.register_buffer('std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> same, normalized."""
    return (x - self.mean) / self.std


class VGG(nn.Module):
  """VGG features up to the deepest of `layers`: (N, 3, H, W) -> {name: map}."""

  def __init__(self, depth: int = 19, layers: tuple[str, ...] = ('conv5_4',)):
    super().__init__()
    names = layer_names(depth)
    unknown = [n for n in layers if n not in names]
    if not layers or unknown:
      raise ValueError(f'expected VGG{depth} layers out of {names}, got '
                       f'{layers}')
    self.wanted = set(layers)
    self.names = names[:max(names.index(n) for n in layers) + 1]
    self.normalize = _Normalize()
    cin = 3
    for name in self.names:
      if name.startswith('conv'):
        width = _WIDTHS[int(name[4]) - 1]
        self.add_module(name, nn.Conv2d(cin, width, 3, 1, 1))
        cin = width

  def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """(N, 3, H, W) in [0, 1] -> {layer: (N, C, h, w)}."""
    x = self.normalize(x)
    out = {}
    for name in self.names:
      if name.startswith('conv'):
        x = getattr(self, name)(x)
      elif name.startswith('relu'):
        x = F.relu(x)
      else:
        x = F.max_pool2d(x, 2, 2)
      if name in self.wanted:
        out[name] = x
    return out


class LSREncoder(nn.Module):
  """LSRGAN's L: HR (N, 3, H, W) in [0, 1] -> (N, 3, H/s, W/s)."""

  def __init__(self, scale: int = 4, cut: str = 'conv4_3',
               num_upsample_feat: int = 64, width_divisor: int = 1):
    super().__init__()
    names = [n for n in layer_names(16) if not n.startswith('relu')]
    if cut not in names or not cut.startswith('conv'):
      raise ValueError(f'cut must be a VGG16 conv layer, got {cut!r}')
    self.layers = names[:names.index(cut) + 1]
    down = 2**sum(n.startswith('pool') for n in self.layers)
    ratio = down // scale
    if down % scale or ratio & (ratio - 1):
      raise ValueError(f'cut {cut!r} downsamples by {down}, not a power-of-'
                       f'two multiple of scale {scale}')
    self.stages = ratio.bit_length() - 1
    self.normalize = _Normalize()
    cin = 3
    for name in self.layers:
      if name.startswith('conv'):
        width = max(1, _WIDTHS[int(name[4]) - 1] // width_divisor)
        self.add_module(name, nn.Conv2d(cin, width, 3, 1, 1))
        cin = width
    nf = num_upsample_feat
    if self.stages == 0:
      self.conv_mid = nn.Conv2d(cin, nf, 3, 1, 1)
      cin = nf
    for i in range(1, self.stages + 1):
      self.add_module(f'conv_up{i}', nn.Conv2d(cin, nf, 3, 1, 1))
      cin = nf
    self.conv_last = nn.Conv2d(cin, 3, 3, 1, 1)

  def forward(self, hr: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 3, H/s, W/s)."""
    x = self.normalize(hr)
    for name in self.layers:
      if name.startswith('pool'):
        x = F.max_pool2d(x, 2, 2)
      else:
        x = F.relu(getattr(self, name)(x))
    if self.stages == 0:
      x = F.leaky_relu(self.conv_mid(x), 0.2)
    for i in range(1, self.stages + 1):
      x = F.interpolate(x, scale_factor=2., mode='nearest')
      x = F.leaky_relu(getattr(self, f'conv_up{i}')(x), 0.2)
    return self.conv_last(x)


def contextual_loss(x: torch.Tensor, y: torch.Tensor, band_width: float = 0.5,
                    max_samples: int | None = 65,
                    eps: float = 1e-5) -> torch.Tensor:
  """-log CX(x, y) (eq. 11) averaged over images; x, y (N, C, H, W) -> scalar.

  x: generated features (with gradient); y: target features (constants).
  """
  h, w = x.shape[-2:]
  xs = x.flatten(2).transpose(1, 2)  # (N, P, C)
  ys = y.flatten(2).transpose(1, 2)
  if max_samples is not None and h * w > max_samples**2:
    # One random subset of positions shared by x, y and all images.
    idx = torch.randperm(h * w, device=x.device)[:max_samples**2]
    xs, ys = xs[:, idx], ys[:, idx]
  r = ys.mean(dim=(0, 1), keepdim=True)  # Centred on the target mean.
  xs = F.normalize(xs - r, dim=-1, eps=1e-12)
  ys = F.normalize(ys - r, dim=-1, eps=1e-12)
  d = ((1. - xs @ ys.transpose(1, 2)) / 2.).clamp_min(0.)  # (N, P, Q)
  d_rel = d / (d.amin(dim=2, keepdim=True) + eps)
  a = torch.softmax((1. - d_rel) / band_width, dim=2)
  cx = a.amax(dim=1).mean(dim=1)  # max over generated i, mean over j.
  return (-torch.log(cx)).mean()
