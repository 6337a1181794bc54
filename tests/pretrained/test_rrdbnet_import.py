"""Tests for RRDBNet state-dict import in the old, mid and BasicSR layouts."""

import numpy as np
import pytest

from jaxsr.models import rrdbnet
from jaxsr.pretrained import rrdbnet as rrdbnet_import
from jaxsr.pretrained import torch_pickle
from jaxsr.pretrained import torch_writer
from tests.models.test_vgg import conv_nchw

_NF, _NB, _GC = 8, 2, 4


def _basicsr_state_dict(rng, scale, cin=3):
  """Random BasicSR-named OIHW weights of a tiny RRDBNet."""
  sd = {}

  def conv(name, cout, cin, std):
    sd[f'{name}.weight'] = (
        rng.standard_normal((cout, cin, 3, 3)) * std
    ).astype(np.float32)
    sd[f'{name}.bias'] = (rng.standard_normal(cout) * 0.1).astype(np.float32)

  unshuffle = {1: 4, 2: 2}.get(scale, 1)
  conv('conv_first', _NF, cin * unshuffle**2, 0.2)
  for i in range(_NB):
    for j in range(1, 4):
      for k in range(1, 6):
        cout = _NF if k == 5 else _GC
        conv(f'body.{i}.rdb{j}.conv{k}', cout, _NF + (k - 1) * _GC, 0.1)
  for name in ('conv_body', 'conv_up1', 'conv_up2', 'conv_hr'):
    if not (scale == 3 and name == 'conv_up2'):
      conv(name, _NF, _NF, 0.15)
  conv('conv_last', 3, _NF, 0.15)
  return sd


def _basicsr_forward(sd, lr, scale):
  """BasicSR's RRDBNet.forward in numpy float64 on BasicSR-named weights."""

  def conv(name, x):
    return conv_nchw(x, sd[f'{name}.weight'].astype(np.float64),
                     sd[f'{name}.bias'])

  def lrelu(x):
    return np.where(x >= 0, x, 0.2 * x)

  x = np.asarray(lr, np.float64).transpose(0, 3, 1, 2)
  f = {1: 4, 2: 2}.get(scale)
  if f:  # torch.nn.functional.pixel_unshuffle
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // f, f, w // f, f).transpose(0, 1, 3, 5, 2, 4)
    x = x.reshape(b, c * f * f, h // f, w // f)
  feat = conv('conv_first', x)
  body = feat
  for i in range(_NB):
    rrdb_in = body
    for j in range(1, 4):
      xs = [body]
      for k in range(1, 5):
        xs.append(lrelu(conv(f'body.{i}.rdb{j}.conv{k}',
                             np.concatenate(xs, axis=1))))
      out = conv(f'body.{i}.rdb{j}.conv5', np.concatenate(xs, axis=1))
      body = out * 0.2 + body
    body = body * 0.2 + rrdb_in
  feat = feat + conv('conv_body', body)
  stages = ['conv_up1'] if scale == 3 else ['conv_up1', 'conv_up2']
  for name in stages:
    up = 3 if scale == 3 else 2
    feat = lrelu(conv(name, feat.repeat(up, axis=2).repeat(up, axis=3)))
  out = conv('conv_last', lrelu(conv('conv_hr', feat)))
  return out.transpose(0, 2, 3, 1)


def _to_mid(sd):
  """BasicSR names -> ESRGAN's RRDBNet_arch.py names (transer_RRDB_models)."""
  renames = {'conv_body': 'trunk_conv', 'conv_up1': 'upconv1',
             'conv_up2': 'upconv2', 'conv_hr': 'HRconv'}
  out = {}
  for key, value in sd.items():
    name, part = key.rsplit('.', 1)
    if name.startswith('body.'):
      _, i, rdb, k = name.split('.')
      name = f'RRDB_trunk.{i}.RDB{rdb[3]}.{k}'
    out[f'{renames.get(name, name)}.{part}'] = value
  return out


def _to_old(sd, scale):
  """BasicSR names -> the old arch's `model.*` (LSRGAN), DataParallel-style."""
  if scale == 3:
    indices = {'conv_up1': 3, 'conv_hr': 5, 'conv_last': 7}
  else:
    indices = {'conv_up1': 3, 'conv_up2': 6, 'conv_hr': 8, 'conv_last': 10}
  indices.update(conv_first=0)
  out = {}
  for key, value in sd.items():
    name, part = key.rsplit('.', 1)
    if name.startswith('body.'):
      _, i, rdb, k = name.split('.')
      new = f'model.1.sub.{i}.RDB{rdb[3]}.{k}.0'
    elif name == 'conv_body':
      new = f'model.1.sub.{_NB}'
    else:
      new = f'model.{indices[name]}'
    out[f'module.{new}.{part}'] = value
  return out


def _run(params, info, lr):
  model = rrdbnet.RRDBNet(
      num_in_ch=info['num_in_ch'], num_out_ch=info['num_out_ch'],
      scale=info['scale_hint'], num_feat=info['num_feat'],
      num_block=info['num_block'], num_grow_ch=info['num_grow_ch'])
  return np.asarray(model.apply({'params': params}, lr))


@pytest.mark.parametrize('layout, scale, storage', [
    ('old', 4, 'legacy'),
    ('old', 3, 'dict'),
    ('mid', 4, 'zip'),
    ('basicsr', 2, 'zip'),
    ('basicsr', 1, 'dict'),
])  # pyformat: disable
def test_import_matches_basicsr_forward(tmp_path, layout, scale, storage):
  rng = np.random.default_rng(scale)
  sd = _basicsr_state_dict(rng, scale)
  lr = rng.uniform(size=(1, 8, 8, 3)).astype(np.float32)
  ref = _basicsr_forward(sd, lr, scale)
  if layout == 'old':
    ckpt = _to_old(sd, scale)
  elif layout == 'mid':
    ckpt = _to_mid(sd)
  else:
    # BasicSR saves {'params': G, 'params_ema': EMA of G}; EMA is the default.
    other = _basicsr_state_dict(np.random.default_rng(99), scale)
    ckpt = {'params': other, 'params_ema': sd}
  if storage != 'dict':
    path = tmp_path / 'net_g.pth'
    torch_writer.save_torch_file(path, ckpt, legacy=storage == 'legacy')
    ckpt = torch_pickle.load_torch_file(path)

  params, info = rrdbnet_import.rrdbnet_from_state_dict(ckpt, num_block=_NB)
  assert info == dict(num_feat=_NF, num_block=_NB, num_grow_ch=_GC,
                      num_in_ch=3, num_out_ch=3, scale_hint=scale,
                      layout=layout)
  sr = _run(params, info, lr)
  assert sr.shape == (1, 8 * scale, 8 * scale, 3)
  np.testing.assert_allclose(sr, ref, atol=1e-4 * np.abs(ref).max())


def test_basicsr_params_key_and_fallback():
  rng = np.random.default_rng(0)
  sd, other = _basicsr_state_dict(rng, 4), _basicsr_state_dict(rng, 4)
  ckpt = {'params': other, 'params_ema': sd}
  params, _ = rrdbnet_import.rrdbnet_from_state_dict(ckpt, key='params')
  np.testing.assert_array_equal(params['conv_last']['bias'],
                                other['conv_last.bias'])
  # Without EMA weights, 'params' is used.
  params, _ = rrdbnet_import.rrdbnet_from_state_dict({'params': other})
  np.testing.assert_array_equal(
      params['conv_first']['kernel'],
      other['conv_first.weight'].transpose(2, 3, 1, 0))


def test_errors_name_what_was_found():
  sd = _basicsr_state_dict(np.random.default_rng(0), 4)
  with pytest.raises(ValueError, match='unknown RRDBNet layout.*foo'):
    rrdbnet_import.rrdbnet_from_state_dict({'foo.weight': np.zeros(1)})
  with pytest.raises(ValueError, match='expected 23 RRDB blocks.* has 2'):
    rrdbnet_import.rrdbnet_from_state_dict(sd, num_block=23)
  with pytest.raises(ValueError, match='does not map.*extra'):
    rrdbnet_import.rrdbnet_from_state_dict(
        dict(sd, **{'extra.weight': np.zeros(1)}))
  del sd['body.1.rdb2.conv3.bias']
  with pytest.raises(ValueError, match='lacks body.1.rdb2.conv3.bias'):
    rrdbnet_import.rrdbnet_from_state_dict(sd)
  with pytest.raises(ValueError, match="under 'params_ema'"):
    rrdbnet_import.rrdbnet_from_state_dict({'optimizer': {}, 'iter': 5})
