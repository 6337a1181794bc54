"""Writers of StyleGAN2 files in each supported layout, for tests.

Each starts from one rosinality-named state dict (tests.models.
numpy_stylegan2.random_*_sd) and writes it the way the other layouts store
it, following their public code: stylegan2-ada's key names, module tree and
persistence pickling (torch_utils/persistence.py: every network reduces to
_reconstruct_persistent_obj(meta) with the module source in meta; storages
pickle as torch.storage._load_from_bytes of a legacy torch.save), and
flaxmodels' TensorFlow layouts (HWIO kernels, (in, out) dense weights, mod
biases without their +1, up-conv kernels flipped).
"""

import collections
import io
import math
import pickle
import re
import struct
import types

import h5py
import numpy as np

from jaxsr.pretrained import torch_pickle
from jaxsr.pretrained import torch_writer
from tests.models import numpy_stylegan2 as ref

# pylint: disable=protected-access


def _n_blocks(g_sd):
  return len([k for k in g_sd if re.match(r'^to_rgbs\.\d+\.bias$', k)])


def nvidia_g(g_sd, latent_avg):
  """rosinality g_ema names -> stylegan2-ada G names (flat state dict)."""
  out = {}
  n_mlp = len([k for k in g_sd if k.startswith('style.') and
               k.endswith('.weight')])
  for i in range(n_mlp):
    out[f'mapping.fc{i}.weight'] = g_sd[f'style.{i + 1}.weight']
    out[f'mapping.fc{i}.bias'] = g_sd[f'style.{i + 1}.bias']
  out['mapping.w_avg'] = latent_avg
  filt = np.float32(ref.make_kernel())

  def layer(dst, src, res):
    out[f'{dst}.weight'] = g_sd[f'{src}.conv.weight'][0]
    out[f'{dst}.bias'] = g_sd[f'{src}.activate.bias']
    out[f'{dst}.noise_strength'] = g_sd[f'{src}.noise.weight'].reshape(())
    out[f'{dst}.noise_const'] = np.zeros((res, res), np.float32)
    out[f'{dst}.affine.weight'] = g_sd[f'{src}.conv.modulation.weight']
    out[f'{dst}.affine.bias'] = g_sd[f'{src}.conv.modulation.bias']
    out[f'{dst}.resample_filter'] = filt

  def rgb(dst, src):
    out[f'{dst}.weight'] = g_sd[f'{src}.conv.weight'][0]
    out[f'{dst}.bias'] = g_sd[f'{src}.bias'].reshape(3)
    out[f'{dst}.affine.weight'] = g_sd[f'{src}.conv.modulation.weight']
    out[f'{dst}.affine.bias'] = g_sd[f'{src}.conv.modulation.bias']

  out['synthesis.b4.const'] = g_sd['input.input'][0]
  out['synthesis.b4.resample_filter'] = filt
  layer('synthesis.b4.conv1', 'conv1', 4)
  rgb('synthesis.b4.torgb', 'to_rgb1')
  for j in range(1, _n_blocks(g_sd) + 1):
    r = 4 * 2**j
    out[f'synthesis.b{r}.resample_filter'] = filt
    layer(f'synthesis.b{r}.conv0', f'convs.{2 * j - 2}', r)
    layer(f'synthesis.b{r}.conv1', f'convs.{2 * j - 1}', r)
    rgb(f'synthesis.b{r}.torgb', f'to_rgbs.{j - 1}')
  return out


def nvidia_d(d_sd):
  """rosinality d names -> stylegan2-ada (resnet) D names."""
  blocks = sorted({int(k.split('.')[1]) for k in d_sd
                   if k.startswith('convs.') and k.split('.')[1] != '0'})
  res = 4 * 2**len(blocks)
  out = {f'b{res}.fromrgb.weight': d_sd['convs.0.0.weight'],
         f'b{res}.fromrgb.bias': d_sd['convs.0.1.bias']}
  for i in blocks:
    r = res // 2**(i - 1)
    out[f'b{r}.conv0.weight'] = d_sd[f'convs.{i}.conv1.0.weight']
    out[f'b{r}.conv0.bias'] = d_sd[f'convs.{i}.conv1.1.bias']
    out[f'b{r}.conv1.weight'] = d_sd[f'convs.{i}.conv2.1.weight']
    out[f'b{r}.conv1.bias'] = d_sd[f'convs.{i}.conv2.2.bias']
    out[f'b{r}.skip.weight'] = d_sd[f'convs.{i}.skip.1.weight']
    out[f'b{r}.resample_filter'] = np.float32(ref.make_kernel())
  out['b4.conv.weight'] = d_sd['final_conv.0.weight']
  out['b4.conv.bias'] = d_sd['final_conv.1.bias']
  for ours, theirs in (('fc', 'final_linear.0'), ('out', 'final_linear.1')):
    out[f'b4.{ours}.weight'] = d_sd[f'{theirs}.weight']
    out[f'b4.{ours}.bias'] = d_sd[f'{theirs}.bias']
  return out


def _fake(module, name):
  """A stand-in function pickled as the global module.name."""
  def fake(*args):
    raise AssertionError(f'{module}.{name} placeholder called with {args}')
  fake.fake_global = (module, name)
  return fake


EasyDict = type('EasyDict', (dict,), {'fake_global': ('dnnlib.util',
                                                       'EasyDict')})
_RECONSTRUCT = _fake('torch_utils.persistence', '_reconstruct_persistent_obj')
_LOAD_FROM_BYTES = _fake('torch.storage', '_load_from_bytes')
_REBUILD_TENSOR = _fake('torch._utils', '_rebuild_tensor_v2')
_REBUILD_PARAMETER = _fake('torch._utils', '_rebuild_parameter')


class _Pickler(pickle._Pickler):
  """Writes fake_global objects as globals without importing them."""
  dispatch = dict(pickle._Pickler.dispatch)

  def save_global(self, obj, name=None):
    fake = obj.__dict__.get('fake_global') if hasattr(obj, '__dict__') else None
    if fake is None:
      return super().save_global(obj, name)
    module, name = fake
    if self.proto >= 4:
      self.save(module)
      self.save(name)
      self.write(pickle.STACK_GLOBAL)
    else:
      self.write(pickle.GLOBAL + f'{module}\n{name}\n'.encode())
    self.memoize(obj)

  dispatch[types.FunctionType] = save_global  # Classes: via save_type.


def legacy_storage_bytes(array) -> bytes:
  """torch.save(storage, _use_new_zipfile_serialization=False) bytes."""
  flat = np.ascontiguousarray(array, np.float32).reshape(-1)
  storage = torch_writer._Storage('0', flat)
  buf = io.BytesIO()
  for header in (torch_pickle.LEGACY_MAGIC, torch_pickle.LEGACY_PROTOCOL,
                 dict(protocol_version=1001, little_endian=True,
                      type_sizes=dict(short=2, int=4, long=4))):
    buf.write(pickle.dumps(header, protocol=2))
  torch_writer._TorchPickler(buf, legacy=True).dump(storage)
  buf.write(pickle.dumps(['0'], protocol=2))
  buf.write(struct.pack('<q', flat.size))
  buf.write(flat.astype('<f4').tobytes())
  return buf.getvalue()


class _StorageObj:
  def __init__(self, array):
    self.array = array

  def __reduce__(self):
    return _LOAD_FROM_BYTES, (legacy_storage_bytes(self.array),)


class _Param:
  """A torch.nn.Parameter: _rebuild_parameter(_rebuild_tensor_v2(...))."""

  def __init__(self, array):
    self.array = np.asarray(array, np.float32)

  def __reduce__(self):
    shape = self.array.shape
    stride = tuple(int(np.prod(shape[i + 1:])) for i in range(len(shape)))
    tensor = _Tensor(_StorageObj(self.array), shape, stride)
    return _REBUILD_PARAMETER, (tensor, False, collections.OrderedDict())


class _Tensor:
  def __init__(self, storage, shape, stride):
    self.args = (storage, 0, shape, stride, False, collections.OrderedDict())

  def __reduce__(self):
    return _REBUILD_TENSOR, self.args


class _Net:
  """A persistent torch module: reduces as persistence.py's Decorator."""

  def __init__(self, class_name, module_src, attrs=None):
    self.class_name, self.module_src = class_name, module_src
    self.state = {
        'training': False,
        '_parameters': collections.OrderedDict(),
        '_buffers': collections.OrderedDict(),
        '_non_persistent_buffers_set': set(),
        '_backward_hooks': collections.OrderedDict(),
        '_forward_hooks': collections.OrderedDict(),
        '_modules': collections.OrderedDict(),
        '_init_args': (),
        '_init_kwargs': {'mapping_kwargs': EasyDict(num_layers=2)},
        'weight_gain': np.float64(1 / math.sqrt(3.0)),
        **(attrs or {}),
    }

  def __reduce__(self):
    meta = dict(type='class', version=6, module_src=self.module_src,
                class_name=self.class_name, state=self.state)
    return _RECONSTRUCT, (meta,)


def _tree(flat, class_name, module_src, attrs):
  root = _Net(class_name, module_src)
  for name, value in flat.items():
    *path, leaf = name.split('.')
    node = root
    for part in path:
      children = node.state['_modules']
      if part not in children:
        children[part] = _Net('Layer', module_src, attrs)
      node = children[part]
    group = '_buffers' if leaf in ('w_avg', 'noise_const',
                                   'resample_filter') else '_parameters'
    node.state[group][leaf] = _Param(value)
  return root


def write_nvidia_pickle(path, g_flat, d_flat, module_src, protocol=4,
                        conv_clamp=None):
  """A stylegan2-ada network pickle {G, D, G_ema, augment_pipe, ...}."""
  attrs = {'conv_clamp': conv_clamp}
  data = {
      'G': _tree(g_flat, 'Generator', module_src, attrs),
      'D': _tree(d_flat, 'Discriminator', module_src, attrs)
           if d_flat is not None else None,
      'G_ema': _tree(g_flat, 'Generator', module_src, attrs),
      'augment_pipe': None,
      'training_set_kwargs': {'resolution': 32, 'xflip': False},
  }
  with open(path, 'wb') as f:
    _Pickler(f, protocol=protocol).dump(data)


def write_flaxmodels_h5(g_path, d_path, g_sd, d_sd, latent_avg):
  """flaxmodels' stylegan2_generator / discriminator .h5 files."""
  hwio = lambda w: np.ascontiguousarray(w.transpose(2, 3, 1, 0))
  with h5py.File(g_path, 'w') as f:
    m = f.create_group('mapping_network')
    n_mlp = len([k for k in g_sd if k.startswith('style.') and
                 k.endswith('.weight')])
    for i in range(n_mlp):
      m[f'fc{i}/weight'] = g_sd[f'style.{i + 1}.weight'].T
      m[f'fc{i}/bias'] = g_sd[f'style.{i + 1}.bias']
    m['w_avg'] = latent_avg
    s = f.create_group('synthesis_network')
    s['const'] = g_sd['input.input'].transpose(0, 2, 3, 1)

    def layer(group, src, flip, res):
      w = hwio(g_sd[f'{src}.conv.weight'][0])
      group['conv/weight'] = w[::-1, ::-1] if flip else w
      group['conv/bias'] = g_sd[f'{src}.activate.bias']
      group['affine/weight'] = g_sd[f'{src}.conv.modulation.weight'].T
      group['affine/bias'] = g_sd[f'{src}.conv.modulation.bias'] - 1
      group['noise_strength'] = g_sd[f'{src}.noise.weight'][0]
      group['noise_const'] = np.zeros((1, res, res, 1), np.float32)

    def rgb(group, src):
      group['conv/weight'] = hwio(g_sd[f'{src}.conv.weight'][0])
      group['conv/bias'] = g_sd[f'{src}.bias'].reshape(3)
      group['affine/weight'] = g_sd[f'{src}.conv.modulation.weight'].T
      group['affine/bias'] = g_sd[f'{src}.conv.modulation.bias'] - 1

    layer(s.create_group('block_4x4/layer0'), 'conv1', False, 4)
    rgb(s.create_group('block_4x4/torgb'), 'to_rgb1')
    for j in range(1, _n_blocks(g_sd) + 1):
      r = 4 * 2**j
      layer(s.create_group(f'block_{r}x{r}/layer0'), f'convs.{2 * j - 2}',
            True, r)
      layer(s.create_group(f'block_{r}x{r}/layer1'), f'convs.{2 * j - 1}',
            False, r)
      rgb(s.create_group(f'block_{r}x{r}/torgb'), f'to_rgbs.{j - 1}')
  if d_path is None:
    return
  nv = nvidia_d(d_sd)
  res = max(int(k.split('.')[0][1:]) for k in nv)
  with h5py.File(d_path, 'w') as f:
    d = f.create_group('discriminator')
    d[f'block_{res}x{res}/fromrgb/weight'] = hwio(nv[f'b{res}.fromrgb.weight'])
    d[f'block_{res}x{res}/fromrgb/bias'] = nv[f'b{res}.fromrgb.bias']
    r = res
    while r > 4:
      for name in ('conv0', 'conv1'):
        d[f'block_{r}x{r}/{name}/weight'] = hwio(nv[f'b{r}.{name}.weight'])
        d[f'block_{r}x{r}/{name}/bias'] = nv[f'b{r}.{name}.bias']
      d[f'block_{r}x{r}/skip/weight'] = hwio(nv[f'b{r}.skip.weight'])
      r //= 2
    d['block_4x4/conv0/weight'] = hwio(nv['b4.conv.weight'])
    d['block_4x4/conv0/bias'] = nv['b4.conv.bias']
    d['block_4x4/fc0/weight'] = nv['b4.fc.weight'].T
    d['block_4x4/fc0/bias'] = nv['b4.fc.bias']
    d['output/weight'] = nv['b4.out.weight'].T
    d['output/bias'] = nv['b4.out.bias']
