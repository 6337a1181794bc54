"""ESRGAN/BasicSR RRDBNet state dicts (three layouts) -> RRDBNet params.

Detects the layout from the keys (see `jaxsr.models.rrdbnet` for the full
mapping): (a) the old arch of ESRGAN and LSRGAN, `model.0`,
`model.1.sub.{i}.RDB{j}.conv{k}.0`, `model.1.sub.{B}` (possibly under
`module.`, from DataParallel); (b) ESRGAN's mid arch, `conv_first`,
`RRDB_trunk.{i}.RDB{j}.conv{k}`, `trunk_conv`, `upconv1/2`, `HRconv`;
(c) BasicSR, `conv_first`, `body.{i}.rdb{j}.conv{k}`, `conv_body`,
`conv_up1/2`, `conv_hr`, `conv_last`, often inside {'params', 'params_ema'}.
The hyper-parameters are read off the shapes: num_feat from conv_first's
output, num_grow_ch from conv1's, num_block from the body indices, and the
scale from the number of upsampling stages and conv_first's input channels
(BasicSR folds x2 / x1 inputs into 4x / 16x channels).
"""

import re
from typing import Any, Mapping

from absl import logging
import numpy as np

# Our names for the convs outside the body, per layout; conv_up2 is absent
# for one-stage (x3) checkpoints.
_HEAD_TAIL = {
    'basicsr': {
        'conv_first': 'conv_first',
        'conv_body': 'conv_body',
        'conv_up1': 'conv_up1',
        'conv_up2': 'conv_up2',
        'conv_hr': 'conv_hr',
        'conv_last': 'conv_last',
    },
    'mid': {
        'conv_first': 'conv_first',
        'conv_body': 'trunk_conv',
        'conv_up1': 'upconv1',
        'conv_up2': 'upconv2',
        'conv_hr': 'HRconv',
        'conv_last': 'conv_last',
    },
}
# Old arch indices in `model`: two stages at x4, one at x3.
_OLD_X4 = {'conv_up1': 3, 'conv_up2': 6, 'conv_hr': 8, 'conv_last': 10}
_OLD_X3 = {'conv_up1': 3, 'conv_hr': 5, 'conv_last': 7}

# Body conv key patterns; group 1 is the block, 2 the RDB, 3 the conv.
_BODY = {
    'basicsr': (re.compile(r'^body\.(\d+)\.rdb(\d)\.conv(\d)\.(weight|bias)$'),
                'body.{i}.rdb{j}.conv{k}'),
    'mid': (re.compile(r'^RRDB_trunk\.(\d+)\.RDB(\d)\.conv(\d)\.'
                       r'(weight|bias)$'),
            'RRDB_trunk.{i}.RDB{j}.conv{k}'),
    'old': (re.compile(r'^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.'
                       r'(weight|bias)$'),
            'model.1.sub.{i}.RDB{j}.conv{k}.0'),
}  # pyformat: disable


def _unwrap(state_dict: Mapping[str, Any], key: str) -> Mapping[str, Any]:
  """Picks state_dict[key] from a BasicSR {'params', 'params_ema'} wrapper."""
  if all(isinstance(v, np.ndarray) for v in state_dict.values()):
    return state_dict
  wrappers = [k for k, v in state_dict.items() if isinstance(v, Mapping)]
  if key in wrappers:
    return state_dict[key]
  if key == 'params_ema' and 'params' in wrappers:
    logging.warning('No params_ema in the checkpoint; using its params.')
    return state_dict['params']
  raise ValueError(
      f'expected a flat state dict or one under {key!r}, found entries '
      f'{sorted(state_dict)[:8]}'
  )


def _detect(keys: list[str]) -> str:
  if 'model.0.weight' in keys:
    return 'old'
  if 'trunk_conv.weight' in keys or any(
      k.startswith('RRDB_trunk.') for k in keys
  ):
    return 'mid'
  if 'conv_first.weight' in keys:
    return 'basicsr'
  raise ValueError(
      'unknown RRDBNet layout: expected model.0.* (old ESRGAN/LSRGAN), '
      'RRDB_trunk.* (ESRGAN) or conv_first/body.* (BasicSR) keys, found '
      f'{keys[:8]}'
  )


def _conv(sd: Mapping[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
  """A torch conv's weight (O, I, kh, kw) and bias -> Flax kernel, bias."""
  for part in ('weight', 'bias'):
    if f'{name}.{part}' not in sd:
      raise ValueError(f'state dict lacks {name}.{part}')
  weight = np.asarray(sd[f'{name}.weight'], np.float32)
  if weight.ndim != 4:
    raise ValueError(f'{name}.weight is {weight.shape}, expected 4-D OIHW')
  return {
      'kernel': np.ascontiguousarray(weight.transpose(2, 3, 1, 0)),
      'bias': np.asarray(sd[f'{name}.bias'], np.float32),
  }


def rrdbnet_from_state_dict(
    state_dict: Mapping[str, Any],
    num_block: int | None = None,
    key: str = 'params_ema',
) -> tuple[dict[str, Any], dict[str, Any]]:
  """A PyTorch RRDBNet state dict -> (RRDBNet params, hyper-parameters).

  Args:
    state_dict: {name: OIHW ndarray}, e.g. from `torch_pickle.load_torch_file`,
      or a BasicSR checkpoint {'params': ..., 'params_ema': ...}.
    num_block: if given, the expected number of RRDBs (checked).
    key: which BasicSR wrapper entry to use, 'params_ema' (the default, as
      BasicSR's released models) or 'params'.

  Returns:
    (params, info): params for `jaxsr.models.rrdbnet.RRDBNet(**info without
    'layout' and with scale=info['scale_hint'])`; info has num_feat,
    num_block, num_grow_ch, num_in_ch, num_out_ch, scale_hint and layout
    ('old', 'mid' or 'basicsr').
  """
  sd = _unwrap(state_dict, key)
  if sd and all(k.startswith('module.') for k in sd):
    sd = {k[len('module.') :]: v for k, v in sd.items()}
  keys = list(sd)
  layout = _detect(keys)

  pattern, template = _BODY[layout]
  blocks = {int(m.group(1)) for m in map(pattern.match, keys) if m}
  found_blocks = len(blocks)
  if blocks != set(range(found_blocks)):
    raise ValueError(f'RRDB indices are not 0..n-1: {sorted(blocks)}')
  if num_block is not None and num_block != found_blocks:
    raise ValueError(
        f'expected {num_block} RRDB blocks, the state dict has {found_blocks}'
    )

  names: dict[str, str] = {}  # our name -> torch prefix
  if layout == 'old':
    names['conv_first'] = 'model.0'
    names['conv_body'] = f'model.1.sub.{found_blocks}'
    stages = _OLD_X4 if 'model.10.weight' in sd else _OLD_X3
    names.update({n: f'model.{i}' for n, i in stages.items()})
    if stages is _OLD_X3:
      logging.warning(
          'Old-arch RRDBNet with one upsampling stage: importing it as x3; '
          'an old x2 model has the same keys but RRDBNet cannot run it.'
      )
  else:
    names.update(_HEAD_TAIL[layout])
    if f"{names['conv_up2']}.weight" not in sd:
      del names['conv_up2']

  params = {ours: _conv(sd, theirs) for ours, theirs in names.items()}
  for i in range(found_blocks):
    params[f'body_{i}'] = {
        f'rdb{j}': {
            f'conv{k}': _conv(sd, template.format(i=i, j=j, k=k))
            for k in range(1, 6)
        }
        for j in range(1, 4)
    }

  used = {f'{p}.{part}' for p in names.values() for part in ('weight', 'bias')}
  used |= {k for k in keys if pattern.match(k)}
  unused = sorted(set(keys) - used)
  if unused:
    raise ValueError(
        f'{layout} RRDBNet state dict has keys this importer does not map: '
        f'{unused[:8]}'
    )

  num_feat = params['conv_first']['kernel'].shape[3]
  in_ch = params['conv_first']['kernel'].shape[2]
  num_out_ch = params['conv_last']['kernel'].shape[3]
  if 'conv_up2' not in params:
    scale, num_in_ch = 3, in_ch
  elif layout == 'basicsr' and in_ch == 16 * num_out_ch:
    scale, num_in_ch = 1, in_ch // 16  # pixel-unshuffled by 4
  elif layout == 'basicsr' and in_ch == 4 * num_out_ch:
    scale, num_in_ch = 2, in_ch // 4  # pixel-unshuffled by 2
  else:
    scale, num_in_ch = 4, in_ch
  num_grow_ch = (
      params['body_0']['rdb1']['conv1']['kernel'].shape[3]
      if found_blocks
      else 32
  )
  info = dict(
      num_feat=int(num_feat),
      num_block=found_blocks,
      num_grow_ch=int(num_grow_ch),
      num_in_ch=int(num_in_ch),
      num_out_ch=int(num_out_ch),
      scale_hint=scale,
      layout=layout,
  )
  logging.info('Imported a %s-layout RRDBNet: %s', layout, info)
  return params, info
