"""The receptive field of the generators, computed from a config, for tiled inference.

A tile's kept core equals whole-image inference only when every output pixel
of the core depends on LR pixels inside the tile's window, i.e. when the
overlap is at least the network's receptive radius (in LR pixels). The
radius is computed exactly, layer by layer, from the architecture the config
describes (RRDBNet for 'psnr'/'lsrgan', SRResNet for 'san_sr'): each layer
maps an output interval back to the input interval it reads (a 3x3 conv
widens it by 1, nearest or pixel-shuffle x f divides by f, ...), along the
longest path and the skip branch. tests/evaluation/test_receptive_field.py
checks it against the gradient support of the real modules.
"""

import dataclasses
import math

# One layer, seen backwards: (kind, size). 'conv': radius (3x3 -> 1, 5x5 -> 2);
# 'up': nearest or pixel-shuffle x size; 'unshuffle': pixel-unshuffle by size;
# 'bilinear' / 'bicubic': PyTorch bilinear (align_corners=False) / MATLAB
# imresize upsampling x size.
Layer = tuple[str, int]


@dataclasses.dataclass(frozen=True)
class Geometry:
  """radius: LR pixels an output pixel reads on each side; multiple: tiles,
  overlaps and images must be multiples of it (pixel-unshuffle); name: which
  network, for messages."""
  radius: int
  multiple: int
  name: str


def _back(layer: Layer, lo: int, hi: int) -> tuple[int, int]:
  """The input interval [lo', hi'] that output interval [lo, hi] reads."""
  kind, n = layer
  if kind == 'conv':
    return lo - n, hi + n
  if kind == 'up':
    return lo // n, hi // n
  if kind == 'unshuffle':
    return lo * n, hi * n + n - 1
  if kind == 'bilinear':
    # src = (i + 0.5) / n - 0.5 reads floor(src) and, with weight > 0, +1.
    def taps(i):
      src = (2 * i + 1 - n) / (2 * n)
      return math.floor(src), math.floor(src) + (src != math.floor(src))
    return taps(lo)[0], taps(hi)[1]
  if kind == 'bicubic':
    # MATLAB (1-based): x = i / n + (1 - 1 / n) / 2; the cubic kernel is
    # non-zero on |x - j| < 2.
    def x_of(i):
      return (i + 1) / n + 0.5 * (1 - 1 / n)
    return (math.floor(x_of(lo) - 2) + 1) - 1, (math.ceil(x_of(hi) + 2) - 1) - 1
  raise ValueError(f'unknown layer kind {kind!r}')


def radius_of(branches: list[list[Layer]], scale: int, multiple: int = 1
              ) -> int:
  """LR radius of a network given as branches (input-to-output layer lists).

  The max over every output pixel of an LR pixel (and every pixel-unshuffle
  phase) of how far its input interval reaches left or right of that pixel.
  """
  base = 1000 * multiple  # Far from 0, so floors act as in the interior.
  worst = 0
  for p in range(base, base + multiple):
    for i in range(p * scale, (p + 1) * scale):
      for layers in branches:
        lo, hi = i, i
        for layer in reversed(layers):
          lo, hi = _back(layer, lo, hi)
        worst = max(worst, p - lo, hi - p)
  return worst


def rrdbnet_layers(scale: int, num_block: int, bicubic_skip: bool
                   ) -> list[list[Layer]]:
  """RRDBNet (jaxsr.models.rrdbnet): its longest path and bicubic skip."""
  unshuffle = {1: 4, 2: 2}.get(scale, 1)
  path = [('unshuffle', unshuffle)] if unshuffle > 1 else []
  path.append(('conv', 1))  # conv_first
  # Each RRDB: three dense blocks; their longest path is five 3x3 convs.
  path += [('conv', 1)] * (15 * num_block)
  path.append(('conv', 1))  # conv_body
  for factor in ((3,) if scale == 3 else (2, 2)):
    path += [('up', factor), ('conv', 1)]
  path += [('conv', 1), ('conv', 1)]  # conv_hr, conv_last
  return [path] + ([[('bicubic', scale)]] if bicubic_skip else [])


def srresnet_layers(scale: int, num_block: int) -> list[list[Layer]]:
  """SRResNet (jaxsr.models.srresnet): its main path and bilinear skip."""
  path = [('conv', 2)] + [('conv', 1)] * (2 * num_block)
  for _ in range(int(math.log2(scale))):
    path += [('conv', 1), ('up', 2)]
  path += [('conv', 1), ('conv', 2)]
  return [path, [('bilinear', scale)]]


def geometry(config) -> Geometry | None:
  """The generator's Geometry from a run's config; None for other methods."""
  scale, model = int(config.scale), config.get('model')  # Not every method's.
  if config.method in ('psnr', 'lsrgan'):
    multiple = {1: 4, 2: 2}.get(scale, 1)
    layers = rrdbnet_layers(scale, model.num_block, model.bicubic_skip)
    return Geometry(radius_of(layers, scale, multiple), multiple,
                    f'RRDBNet (num_block={model.num_block}, x{scale})')
  if config.method == 'san_sr':
    return Geometry(radius_of(srresnet_layers(scale, model.num_block), scale),
                    1, f'SRResNet (num_block={model.num_block}, x{scale})')
  return None


def check_tiling(tile: int, overlap: int, geo: Geometry | None = None) -> None:
  """Raises ValueError for tile/overlap values tiled inference cannot use."""
  if tile < 0:
    raise ValueError(f'--tile must be >= 0 (0: whole image), found {tile}')
  if overlap < 0:
    raise ValueError(f'--overlap must be >= 0 LR pixels, found {overlap}')
  if geo is not None and tile > 0 and geo.multiple > 1 and (
      tile % geo.multiple or overlap % geo.multiple):
    raise ValueError(
        f'this {geo.name} folds {geo.multiple}x{geo.multiple} LR pixels into '
        f'one: --tile and --overlap must be multiples of {geo.multiple}, found '
        f'{tile} and {overlap}')


def overlap_warning(tile: int, overlap: int, geo: Geometry | None
                    ) -> str | None:
  """The warning for an overlap below the receptive radius, else None."""
  if tile <= 0 or geo is None or overlap >= geo.radius:
    return None
  return (f'--overlap {overlap} is below the receptive field of this '
          f'{geo.name}, {geo.radius} LR pixels on each side: tiles of '
          f'--tile {tile} may differ from whole-image inference at their '
          f'borders (visible seams); use --overlap {geo.radius}, or --tile 0 '
          'for images that fit in memory')
