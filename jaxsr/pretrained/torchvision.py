"""torchvision `features.{n}.weight/bias` state dicts -> Flax conv params.

torchvision's VGG and AlexNet keep their convolutions in one `features`
Sequential; a conv at position n has `features.{n}.weight` (O, I, kh, kw)
and `features.{n}.bias` (O,). Checkpoints may prefix the keys (`module.`,
`net.`); one common prefix is required.
"""

from collections.abc import Mapping
import re

import numpy as np

FEATURE_KEY = re.compile(r'^(.*?)features\.(\d+)\.(\w+)$')


def read_features(state_dict: Mapping[str, np.ndarray], net: str
                  ) -> dict[tuple[int, str], np.ndarray]:
  """{(n, 'weight' | 'bias' | ...): array} of the `features.{n}.*` keys."""
  found = {}
  prefixes = set()
  for key, value in state_dict.items():
    match = FEATURE_KEY.match(key)
    if match:
      prefix, index, kind = match.groups()
      prefixes.add(prefix)
      found[int(index), kind] = np.asarray(value)
  if not found or len(prefixes) > 1:
    raise ValueError(
        f'expected torchvision {net} keys features.{{n}}.weight/bias (one '
        f'common prefix), found prefixes {sorted(prefixes)} among keys '
        f'{list(state_dict)[:8]}'
    )
  return found


def conv_params(found: Mapping[tuple[int, str], np.ndarray],
                index: Mapping[str, int], net: str, hint: str = ''
                ) -> dict[str, dict[str, np.ndarray]]:
  """{name: {'kernel': (kh, kw, I, O), 'bias': (O,)}} float32 for every
  conv `name` at `features.{index[name]}`; the convs found must be exactly
  those of `index`."""
  got = sorted({n for n, _ in found})
  if got != sorted(index.values()):
    raise ValueError(
        f'torchvision {net} has convs at features {sorted(index.values())}'
        f', found weights at {got}{hint}'
    )
  params = {}
  for name, n in index.items():
    if (n, 'weight') not in found or (n, 'bias') not in found:
      raise ValueError(f'features.{n} ({name}) needs both weight and bias')
    weight = found[n, 'weight']
    if weight.ndim != 4:
      raise ValueError(
          f'features.{n}.weight ({name}) must be OIHW, found {weight.shape}'
      )
    params[name] = {
        'kernel': np.ascontiguousarray(
            weight.astype(np.float32).transpose(2, 3, 1, 0)),
        'bias': found[n, 'bias'].astype(np.float32),
    }
  return params
