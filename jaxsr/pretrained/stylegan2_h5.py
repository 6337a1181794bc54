"""flaxmodels' StyleGAN2 .h5 files -> jaxsr.models.stylegan2 trees.

flaxmodels (matthias-wright/flaxmodels, `stylegan2_generator_<set>.h5` and
`stylegan2_discriminator_<set>.h5`) keeps TensorFlow's layouts:
  generator: mapping_network/fc{i}/{weight (in, out), bias}, w_avg;
    synthesis_network/const (1, 4, 4, C); synthesis_network/block_{R}x{R}/
    layer{0,1}/{affine/{weight, bias}, conv/{weight (k, k, I, O), bias},
    noise_strength, noise_const}, .../torgb/{affine, conv}.
  discriminator: discriminator/block_{R}x{R}/{fromrgb (top block only),
    conv0, conv1, skip (weight only)}/{weight, bias}, block_4x4/{conv0, fc0},
    output/{weight, bias}.
Two conventions differ from rosinality's and are converted here:
  * the affine ("mod") biases are stored without StyleGAN2's bias_init of 1,
    which flaxmodels' LinearLayer adds at run time, so 1 is added;
  * the upsampling convs (layer0 of blocks 8..R) hold TensorFlow's
    orientation: flaxmodels' upsample_conv_2d flips them before its
    gradient-style transposed conv, which is rosinality's conv_transpose2d
    with the kernel flipped, so they are flipped back.
fc0's rows follow the NCHW flatten (flaxmodels transposes to NCHW first), as
ours. Labels (label_embedding) are refused: only unconditional priors.
"""

import os

import h5py
import numpy as np

from jaxsr.pretrained import stylegan2 as importer


def _arr(group: h5py.Group, key: str, what: str) -> np.ndarray:
  if key not in group:
    raise ValueError(f'{what}: missing {group.name}/{key} (has '
                     f'{sorted(group.keys())[:8]})')
  return np.asarray(group[key], np.float32)


def _dense(group: h5py.Group, what: str, bias_init: float = 0.0) -> dict:
  return {'kernel': _arr(group, 'weight', what),
          'bias': _arr(group, 'bias', what) + np.float32(bias_init)}


def _conv(group: h5py.Group, what: str, flip: bool = False,
          bias: bool = True) -> dict:
  w = _arr(group, 'weight', what)
  if w.ndim != 4:
    raise ValueError(f'{what}: {group.name}/weight is {w.shape}, expected '
                     '(k, k, in, out)')
  out = {'kernel': np.ascontiguousarray(w[::-1, ::-1] if flip else w)}
  if bias:
    out['bias'] = _arr(group, 'bias', what)
  return out


def _group(parent: h5py.Group, key: str, what: str) -> h5py.Group:
  if key not in parent or not isinstance(parent[key], h5py.Group):
    raise ValueError(f'{what}: no group {parent.name.rstrip("/")}/{key} '
                     f'(has {sorted(parent.keys())[:8]})')
  return parent[key]


def _blocks(group: h5py.Group, what: str) -> list[int]:
  res = sorted(int(k.split('_')[1].split('x')[0]) for k in group
               if k.startswith('block_'))
  want = [2**i for i in range(2, 2 + len(res))]
  if not res or res != want:
    raise ValueError(f'{what}: blocks {res} are not 4, 8, .. '
                     f'{want[-1] if want else "?"}')
  return res


def generator_from_h5(f: h5py.Group, what: str):
  """A flaxmodels generator file -> ({'mapping', 'synthesis'}, w_avg)."""
  mapping_group = _group(f, 'mapping_network', what)
  if 'label_embedding' in mapping_group:
    raise ValueError(f'{what}: a conditional generator (label_embedding); '
                     'only unconditional StyleGAN2 priors are supported')
  n_mlp = len([k for k in mapping_group if k.startswith('fc')])
  mapping = {f'fc{i}': _dense(_group(mapping_group, f'fc{i}', what), what)
             for i in range(n_mlp)}
  if not mapping:
    raise ValueError(f'{what}: no mapping_network/fc{{i}} layers')
  syn = _group(f, 'synthesis_network', what)

  def layer(g: h5py.Group, flip: bool) -> dict:
    out = _conv(_group(g, 'conv', what), what, flip=flip)
    out['affine'] = _dense(_group(g, 'affine', what), what, bias_init=1.0)
    out['noise_strength'] = _arr(g, 'noise_strength', what).reshape(())
    return out

  def rgb(g: h5py.Group) -> dict:
    out = _conv(_group(g, 'conv', what), what)
    out['affine'] = _dense(_group(g, 'affine', what), what, bias_init=1.0)
    return out

  synthesis = {}
  for r in _blocks(syn, what):
    g = _group(syn, f'block_{r}x{r}', what)
    if r == 4:
      const = _arr(syn, 'const', what)
      synthesis['b4'] = {'const': const.reshape(const.shape[-3:]),
                         'conv1': layer(_group(g, 'layer0', what), False),
                         'torgb': rgb(_group(g, 'torgb', what))}
    else:
      synthesis[f'b{r}'] = {'conv0': layer(_group(g, 'layer0', what), True),
                            'conv1': layer(_group(g, 'layer1', what), False),
                            'torgb': rgb(_group(g, 'torgb', what))}
  w_avg = (_arr(mapping_group, 'w_avg', what)
           if 'w_avg' in mapping_group else None)
  return {'mapping': mapping, 'synthesis': synthesis}, w_avg


def discriminator_from_h5(f: h5py.Group, what: str) -> dict:
  """A flaxmodels discriminator file -> our D tree."""
  d = _group(f, 'discriminator', what)
  if 'label_embedding' in d:
    raise ValueError(f'{what}: a conditional discriminator; only '
                     'unconditional StyleGAN2 priors are supported')
  res = _blocks(d, what)
  top = _group(d, f'block_{res[-1]}x{res[-1]}', what)
  params = {'fromrgb': _conv(_group(top, 'fromrgb', what), what)}
  for r in res[1:]:
    g = _group(d, f'block_{r}x{r}', what)
    params[f'b{r}'] = {'conv0': _conv(_group(g, 'conv0', what), what),
                       'conv1': _conv(_group(g, 'conv1', what), what),
                       'skip': _conv(_group(g, 'skip', what), what,
                                     bias=False)}
  g4 = _group(d, 'block_4x4', what)
  params['final_conv'] = _conv(_group(g4, 'conv0', what), what)
  params['fc'] = _dense(_group(g4, 'fc0', what), what)
  params['out'] = _dense(_group(d, 'output', what), what)
  return params


def _discriminator_path(path: str, d_path) -> str | None:
  if d_path is not None:
    return os.fspath(os.path.expanduser(d_path))
  folder, name = os.path.split(path)
  if 'generator' in name:
    return os.path.join(folder, name.replace('generator', 'discriminator'))
  return None


def read(path: str, *, need_d: bool = True, d_path=None) -> importer.Imported:
  """flaxmodels generator .h5 (+ its discriminator .h5) -> Imported.

  D is read from `d_path`, else from the same file when it has a
  'discriminator' group, else from the sibling file named with
  'discriminator' for 'generator' (flaxmodels' names).
  """
  with h5py.File(path, 'r') as f:
    g_params, w_avg = generator_from_h5(f, path)
    d_params = None
    if need_d and 'discriminator' in f and d_path is None:
      d_params = discriminator_from_h5(f, path)
  if need_d and d_params is None:
    other = _discriminator_path(path, d_path)
    if other is None or not os.path.isfile(other):
      raise ValueError(
          f'{path}: no discriminator group and no discriminator file '
          f'{other or "(give d_path)"}; flaxmodels ships D as '
          'stylegan2_discriminator_<set>.h5 next to the generator')
    with h5py.File(other, 'r') as f:
      d_params = discriminator_from_h5(f, other)
  return importer.Imported(g_params=g_params, d_params=d_params,
                           latent_avg=w_avg, layout='flaxmodels')
