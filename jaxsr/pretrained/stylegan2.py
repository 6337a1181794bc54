"""StyleGAN2 weight files -> jaxsr.models.stylegan2 trees, and the GanPrior.

Layouts, told apart by the file and its keys (no code in a file is run):
  * rosinality `.pt` (stylegan2-pytorch's convert_weight.py / train.py): a
    torch zip with 'g_ema' (used; 'g' only when there is no g_ema), 'd'
    (present only when converted with --disc, or in training checkpoints),
    'latent_avg', and maybe 'args' (an argparse.Namespace), optimizer states.
    Keys `style.{i}`, `input.input`, `conv1`, `to_rgb1`, `convs.{i}`,
    `to_rgbs.{i}`; D `convs.0`, `convs.{i}.conv1/conv2/skip`, `final_conv`,
    `final_linear.{0,1}`.
  * NVIDIA stylegan2-ada-pytorch: the `.pkl` (read by `persistent_pickle`
    without executing it) or a torch file of its state dicts ({'G_ema': ...,
    'D': ...} or a bare G state dict): `mapping.fc{i}`, `mapping.w_avg`,
    `synthesis.b{R}.{const,conv0,conv1,torgb}`, D `b{R}.{fromrgb,conv0,
    conv1,skip}`, `b4.{conv,fc,out}`. Same maths as rosinality (the official
    converters map one onto the other with plain transposes); conv_clamp and
    the minibatch-stddev group are read from a pickle's module attributes.
  * flaxmodels `.h5` (`stylegan2_h5`): generator and discriminator files.
Resolution, mapping depth, style size and the channels of every resolution
are read off the tensors; a layout that is not the StyleGAN2 'skip' G with a
'resnet' D, or a conditional model, is refused with a ValueError.
"""

import dataclasses
import os
import pickle
import re
import zipfile
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from jaxsr.models import gan_prior
from jaxsr.models import stylegan2
from jaxsr.models import stylegan2_prior
from jaxsr.pretrained import mapping_stats
from jaxsr.pretrained import persistent_pickle
from jaxsr.pretrained import torch_pickle

_FILTER = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0


@dataclasses.dataclass(frozen=True)
class Imported:
  """A StyleGAN2 file's contents as parameter trees (float32 numpy)."""
  g_params: dict  # {'mapping': ..., 'synthesis': ...}
  d_params: dict | None  # None when the file has no discriminator.
  latent_avg: np.ndarray | None
  layout: str  # 'rosinality', 'nvidia' or 'flaxmodels'.
  conv_clamp: float | None = None
  d_conv_clamp: float | None = None
  stddev_group: int = 4

  @property
  def g_hparams(self) -> dict:
    return stylegan2.generator_hparams(self.g_params)

  @property
  def d_hparams(self) -> dict | None:
    if self.d_params is None:
      return None
    return stylegan2.discriminator_hparams(self.d_params)


class _Reader:
  """Pops arrays from a state dict with clear errors (what is missing)."""

  def __init__(self, sd: dict, what: str):
    self.sd, self.what = sd, what

  def get(self, key: str, ndim: int | None = None) -> np.ndarray:
    if key not in self.sd:
      raise ValueError(f'{self.what}: missing {key} (found '
                       f'{len(self.sd)} keys, e.g. {sorted(self.sd)[:6]})')
    a = np.asarray(self.sd[key], np.float32)
    if ndim is not None and a.ndim != ndim:
      raise ValueError(f'{self.what}: {key} is {a.shape}, expected {ndim}-D')
    return a

  def conv(self, key: str) -> np.ndarray:
    """torch (O, I, kh, kw), or (1, O, I, kh, kw) -> (kh, kw, I, O)."""
    w = self.get(key)
    if w.ndim == 5 and w.shape[0] == 1:
      w = w[0]
    if w.ndim != 4:
      raise ValueError(f'{self.what}: {key} is {w.shape}, expected OIHW')
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))

  def dense(self, prefix: str) -> dict:
    """torch Linear (out, in) + bias -> {'kernel': (in, out), 'bias'}."""
    return {'kernel': np.ascontiguousarray(self.get(f'{prefix}.weight', 2).T),
            'bias': self.get(f'{prefix}.bias', 1)}

  def check_filter(self, key: str, gain: float) -> None:
    """A saved resampling-filter buffer must be StyleGAN2's [1, 3, 3, 1]."""
    if key in self.sd:
      f = np.asarray(self.sd[key], np.float64)
      if f.shape != (4, 4) or not np.allclose(f, _FILTER * gain, atol=1e-6):
        raise ValueError(f'{self.what}: {key} is not the [1, 3, 3, 1] blur '
                         'StyleGAN2 uses')


def _indices(keys, pattern: str, start: int = 0) -> list[int]:
  """The sorted group(1) integers of the keys matching pattern, checked to
  run start, start + 1, ..; e.g. the layers of a torch ModuleList."""
  found = sorted({int(m.group(1)) for m in map(re.compile(pattern).match, keys)
                  if m})
  if found != list(range(start, start + len(found))):
    raise ValueError(
        f'indices of {pattern} are not {start}..{start + len(found) - 1}: '
        f'{found}')
  return found


def generator_from_rosinality(sd: dict, what: str = 'g_ema') -> dict:
  """rosinality's Generator state dict -> {'mapping', 'synthesis'} tree."""
  r = _Reader(sd, what)
  # style.0 is the PixelNorm; style.1 .. style.n_mlp the EqualLinears.
  fcs = _indices(sd, r'^style\.(\d+)\.weight$', start=1)
  if not fcs:
    raise ValueError(f'{what}: no mapping layers style.{{i}}.weight; is this '
                     'a rosinality StyleGAN2 generator?')
  mapping = {f'fc{i - 1}': r.dense(f'style.{i}') for i in fcs}

  def styled(prefix: str, up: bool) -> dict:
    if up:
      r.check_filter(f'{prefix}.conv.blur.kernel', 4.0)
    return {'affine': r.dense(f'{prefix}.conv.modulation'),
            'kernel': r.conv(f'{prefix}.conv.weight'),
            'bias': r.get(f'{prefix}.activate.bias', 1),
            'noise_strength': r.get(f'{prefix}.noise.weight').reshape(())}

  def rgb(prefix: str, up: bool) -> dict:
    if up:
      r.check_filter(f'{prefix}.upsample.kernel', 4.0)
    return {'affine': r.dense(f'{prefix}.conv.modulation'),
            'kernel': r.conv(f'{prefix}.conv.weight'),
            'bias': r.get(f'{prefix}.bias').reshape(3)}

  const = r.get('input.input', 4)
  synthesis = {'b4': {
      'const': np.ascontiguousarray(const[0].transpose(1, 2, 0)),
      'conv1': styled('conv1', False), 'torgb': rgb('to_rgb1', False)}}
  for j in range(1, len(_indices(sd, r'^to_rgbs\.(\d+)\.bias$')) + 1):
    synthesis[f'b{4 * 2**j}'] = {'conv0': styled(f'convs.{2 * j - 2}', True),
                                 'conv1': styled(f'convs.{2 * j - 1}', False),
                                 'torgb': rgb(f'to_rgbs.{j - 1}', True)}
  return {'mapping': mapping, 'synthesis': synthesis}


def discriminator_from_rosinality(sd: dict, what: str = 'd') -> dict:
  """rosinality's Discriminator state dict -> our D tree."""
  r = _Reader(sd, what)

  def conv(prefix: str, down: bool, bias: bool = True) -> dict:
    first = 1 if down else 0
    if down:
      r.check_filter(f'{prefix}.0.kernel', 1.0)
    out = {'kernel': r.conv(f'{prefix}.{first}.weight')}
    if bias:
      out['bias'] = r.get(f'{prefix}.{first + 1}.bias', 1)
    return out

  blocks = [i for i in _indices(sd, r'^convs\.(\d+)\.') if i > 0]
  params = {'fromrgb': conv('convs.0', False)}
  resolution = 4 * 2**len(blocks)
  for i in blocks:
    params[f'b{resolution // 2**(i - 1)}'] = {
        'conv0': conv(f'convs.{i}.conv1', False),
        'conv1': conv(f'convs.{i}.conv2', True),
        'skip': conv(f'convs.{i}.skip', True, bias=False)}
  params['final_conv'] = conv('final_conv', False)
  params['fc'] = r.dense('final_linear.0')
  params['out'] = r.dense('final_linear.1')
  return params


def generator_from_nvidia(sd: dict, what: str = 'G_ema') -> dict:
  """stylegan2-ada's Generator state dict -> {'mapping', 'synthesis'}."""
  r = _Reader(sd, what)
  if any(k.startswith('mapping.embed.') for k in sd):
    raise ValueError(f'{what}: a conditional generator (mapping.embed); '
                     'only unconditional StyleGAN2 priors are supported')
  fcs = _indices(sd, r'^mapping\.fc(\d+)\.weight$')
  if not fcs:
    raise ValueError(f'{what}: no mapping layers mapping.fc{{i}}')
  mapping = {f'fc{i}': r.dense(f'mapping.fc{i}') for i in fcs}
  res = sorted({int(m.group(1)) for m in map(
      re.compile(r'^synthesis\.b(\d+)\.').match, sd) if m})
  if not res or res[0] != 4:
    raise ValueError(f'{what}: no synthesis.b4 block (found resolutions '
                     f'{res}); is this a stylegan2-ada generator?')
  if any(re.match(r'^synthesis\.b\d+\.skip\.', k) for k in sd):
    raise ValueError(f'{what}: a resnet-architecture generator; only '
                     "StyleGAN2's skip generator is supported")

  def layer(prefix: str) -> dict:
    r.check_filter(f'{prefix}.resample_filter', 1.0)
    return {'affine': r.dense(f'{prefix}.affine'),
            'kernel': r.conv(f'{prefix}.weight'),
            'bias': r.get(f'{prefix}.bias', 1),
            'noise_strength': r.get(f'{prefix}.noise_strength').reshape(())}

  def rgb(prefix: str) -> dict:
    if f'{prefix}.weight' not in sd:
      raise ValueError(f'{what}: no {prefix}: only the skip architecture '
                       '(a toRGB at every resolution) is supported')
    return {'affine': r.dense(f'{prefix}.affine'),
            'kernel': r.conv(f'{prefix}.weight'),
            'bias': r.get(f'{prefix}.bias', 1)}

  synthesis = {}
  for rr in res:
    p = f'synthesis.b{rr}'
    block = {'conv1': layer(f'{p}.conv1'), 'torgb': rgb(f'{p}.torgb')}
    if rr == 4:
      block['const'] = np.ascontiguousarray(
          r.get(f'{p}.const', 3).transpose(1, 2, 0))
    else:
      block['conv0'] = layer(f'{p}.conv0')
    synthesis[f'b{rr}'] = block
  return {'mapping': mapping, 'synthesis': synthesis}


def discriminator_from_nvidia(sd: dict, what: str = 'D') -> dict:
  """stylegan2-ada's (resnet) Discriminator state dict -> our D tree."""
  r = _Reader(sd, what)
  if any(k.startswith(('mapping.', 'b4.cmap')) for k in sd):
    raise ValueError(f'{what}: a conditional discriminator; only '
                     'unconditional StyleGAN2 priors are supported')
  res = sorted({int(m.group(1)) for m in map(
      re.compile(r'^b(\d+)\.conv0\.').match, sd) if m})
  if not res:
    raise ValueError(f'{what}: no b{{R}}.conv0 blocks; is this a '
                     'stylegan2-ada discriminator?')
  rgb_keys = [k for k in sd if re.match(r'^b\d+\.fromrgb\.weight$', k)]
  if rgb_keys != [f'b{res[-1]}.fromrgb.weight']:
    raise ValueError(f'{what}: fromRGB layers {rgb_keys}; only the resnet '
                     'discriminator (one fromRGB, at the top) is supported')

  def conv(prefix: str, bias: bool = True) -> dict:
    out = {'kernel': r.conv(f'{prefix}.weight')}
    if bias:
      out['bias'] = r.get(f'{prefix}.bias', 1)
    return out

  params = {'fromrgb': conv(f'b{res[-1]}.fromrgb')}
  for rr in res:
    r.check_filter(f'b{rr}.resample_filter', 1.0)
    params[f'b{rr}'] = {'conv0': conv(f'b{rr}.conv0'),
                        'conv1': conv(f'b{rr}.conv1'),
                        'skip': conv(f'b{rr}.skip', bias=False)}
  params['final_conv'] = conv('b4.conv')
  params['fc'] = r.dense('b4.fc')
  params['out'] = r.dense('b4.out')
  return params


def _nvidia_clamp(attrs: dict, prefix: str) -> float | None:
  clamps = {v for k, v in attrs.items()
            if k.startswith(prefix) and k.endswith('conv_clamp') and v}
  return float(max(clamps)) if clamps else None


def _from_torch_object(obj: dict, path: str, need_d: bool) -> Imported:
  """A torch-file dict (rosinality checkpoint or NVIDIA state dicts)."""
  if 'g_ema' in obj or 'g' in obj or 'style.1.weight' in obj:
    if 'style.1.weight' in obj:
      g_sd, what = obj, 'generator state dict'
    elif 'g_ema' in obj:
      g_sd, what = obj['g_ema'], 'g_ema'
    else:
      logging.warning('%s has no g_ema; using its g (not averaged).', path)
      g_sd, what = obj['g'], 'g'
    d_sd = obj.get('d')
    latent_avg = obj.get('latent_avg')
    return Imported(
        g_params=generator_from_rosinality(g_sd, f'{path}: {what}'),
        d_params=(discriminator_from_rosinality(d_sd, f'{path}: d')
                  if d_sd is not None and need_d else None),
        latent_avg=None if latent_avg is None else np.asarray(
            latent_avg, np.float32).reshape(-1),
        layout='rosinality')
  if 'G_ema' in obj or 'G' in obj or 'mapping.fc0.weight' in obj:
    g_sd = obj if 'mapping.fc0.weight' in obj else obj.get('G_ema', obj.get(
        'G'))
    d_sd = obj.get('D') if 'mapping.fc0.weight' not in obj else None
    return _from_nvidia(g_sd, d_sd, {}, {}, path, need_d)
  raise ValueError(
      f'{path}: not a StyleGAN2 checkpoint: expected g_ema/d (rosinality) or '
      f'G_ema/D (stylegan2-ada) entries, found {sorted(obj)[:10]}')


def _from_nvidia(g_sd, d_sd, g_attrs, d_attrs, path, need_d) -> Imported:
  latent_avg = g_sd.get('mapping.w_avg')
  return Imported(
      g_params=generator_from_nvidia(g_sd, f'{path}: G_ema'),
      d_params=(discriminator_from_nvidia(d_sd, f'{path}: D')
                if d_sd is not None and need_d else None),
      latent_avg=None if latent_avg is None else np.asarray(
          latent_avg, np.float32),
      layout='nvidia', conv_clamp=_nvidia_clamp(g_attrs, 'synthesis.'),
      d_conv_clamp=_nvidia_clamp(d_attrs, ''),
      stddev_group=int(d_attrs.get('b4.mbstd.group_size') or 4))


def _is_hdf5(path: str) -> bool:
  with open(path, 'rb') as f:
    return f.read(8) == b'\x89HDF\r\n\x1a\n'


def _is_network_pickle(path: str) -> bool:
  """A pickle (PROTO opcode first) that is not a legacy torch.save file."""
  legacy = pickle.dumps(torch_pickle.LEGACY_MAGIC, protocol=2)
  with open(path, 'rb') as f:
    head = f.read(len(legacy))
  return head[:1] == b'\x80' and head != legacy and not zipfile.is_zipfile(
      path)


def _check_shapes(imported: Imported, path: str) -> None:
  """Every tensor has the shape the inferred architecture expects."""
  hp = imported.g_hparams
  trees = [('G', imported.g_params, jax.eval_shape(
      stylegan2.Generator(**hp).init, jax.random.key(0),
      np.zeros((1, hp['style_dim']), np.float32))['params'])]
  if imported.d_params is not None:
    dp = imported.d_hparams
    if dp['resolution'] != hp['resolution']:
      raise ValueError(f'{path}: D is for {dp["resolution"]} px, G makes '
                       f'{hp["resolution"]} px')
    trees.append(('D', imported.d_params, jax.eval_shape(
        stylegan2.Discriminator(**dp).init, jax.random.key(0),
        np.zeros((1, hp['resolution'], hp['resolution'], 3),
                 np.float32))['params']))
  for name, got, want in trees:
    got_flat = {jax.tree_util.keystr(k): v.shape
                for k, v in jax.tree_util.tree_leaves_with_path(got)}
    want_flat = {jax.tree_util.keystr(k): v.shape
                 for k, v in jax.tree_util.tree_leaves_with_path(want)}
    if got_flat != want_flat:
      bad = sorted(k for k in got_flat.keys() | want_flat.keys()
                   if got_flat.get(k) != want_flat.get(k))
      raise ValueError(
          f'{path}: {name} tensors do not fit a StyleGAN2 of the inferred '
          f'size ({hp}): {bad[0]} is {got_flat.get(bad[0])}, expected '
          f'{want_flat.get(bad[0])} ({len(bad)} mismatches)')


def read(path: str | os.PathLike, *, need_d: bool = True,
         d_path: str | os.PathLike | None = None) -> Imported:
  """Reads a StyleGAN2 file of any supported layout (module doc).

  Args:
    path: the weight file (.pt, .pkl, or flaxmodels' generator .h5).
    need_d: the discriminator is required (a file without one is an error);
      False reads G only.
    d_path: flaxmodels only: the discriminator .h5, if not next to `path`
      with 'generator' replaced by 'discriminator' in its name.
  """
  path = os.fspath(os.path.expanduser(path))
  if not os.path.isfile(path):
    raise FileNotFoundError(f'StyleGAN2 weights: no file {path}')
  # pylint: disable=g-import-not-at-top (h5py only for .h5 files)
  if _is_hdf5(path):
    from jaxsr.pretrained import stylegan2_h5
    imported = stylegan2_h5.read(path, need_d=need_d, d_path=d_path)
  elif _is_network_pickle(path):
    nets = persistent_pickle.load_network_pickle(path)
    g = nets.get('G_ema') or nets.get('G')
    if g is None:
      raise ValueError(f'{path}: the pickle holds no G_ema or G network')
    d = nets.get('D')
    imported = _from_nvidia(g['state_dict'], d and d['state_dict'],
                            g['attrs'], d['attrs'] if d else {}, path, need_d)
  else:
    imported = _from_torch_object(torch_pickle.load_torch_file(path), path,
                                  need_d)
  if need_d and imported.d_params is None:
    raise ValueError(
        f'{path} ({imported.layout} layout) has no discriminator, which the '
        'semantic loss needs: bring a file with one (rosinality: '
        'convert_weight.py --disc, or a training checkpoint with "d"; '
        'stylegan2-ada: the .pkl holds D; flaxmodels: the discriminator '
        '.h5), or run without D (lambda_s = 0, need_d=False)')
  _check_shapes(imported, path)
  return imported


def random_params(module, seed: int, *args) -> dict:
  """Random raw weights in the files' convention, without a jitted init.

  Kernels and the const ~ N(0, 1) (mapping kernels N(0, 1) / lr_mul, as
  rosinality initialises them), biases 0, affine biases 1, noise strengths
  0.1 (nonzero, so noise inputs matter). Benchmarks and tests only.
  """
  shapes = jax.eval_shape(module.init, jax.random.key(0), *args)['params']
  rng = np.random.default_rng(seed)

  def leaf(path, s):
    names = [getattr(p, 'key', '') for p in path]
    if names[-1] in ('kernel', 'const'):
      scale = 100.0 if names[0] == 'mapping' else 1.0
      return np.float32(rng.standard_normal(s.shape) * scale)
    if names[-1] == 'noise_strength':
      return np.full(s.shape, 0.1, np.float32)
    return np.full(s.shape, 1.0 if names[-2:-1] == ['affine'] else 0.0,
                   np.float32)

  return jax.tree_util.tree_map_with_path(leaf, shapes)


def random_prior(key: jax.Array, *, resolution: int = 256,
                 channel_multiplier: int = 1,
                 channels: tuple[int, ...] | None = None, style_dim: int = 512,
                 n_mlp: int = 8, trainable_noise: int = 5,
                 stats_samples: int = 10_000) -> gan_prior.GanPrior:
  """A StyleGAN2 GanPrior with random weights (benchmarks and tests only)."""
  channels = stylegan2.resolve_channels(resolution, channel_multiplier,
                                        channels)
  g_params = random_params(
      stylegan2.Generator(resolution, style_dim, n_mlp, channels=channels),
      0, np.zeros((1, style_dim), np.float32))
  d_module = stylegan2.Discriminator(resolution, channels=channels)
  d_params = random_params(d_module, 1, np.zeros(
      (1, resolution, resolution, 3), np.float32))
  mean, std = mapping_stats.compute(g_params['mapping'], stats_samples,
                                    min(stats_samples, 16384))
  g_buffers = {'w_mean': mean, 'w_std': std,
               'noise': stylegan2_prior.fixed_noise(key, resolution,
                                                    trainable_noise),
               'mapping': g_params['mapping']}
  as_jax = lambda t: jax.tree.map(jnp.asarray, t)
  return stylegan2_prior.prior(
      as_jax(g_params['synthesis']), as_jax(g_buffers), as_jax(d_params),
      resolution=resolution, channels=channels,
      d_hparams=stylegan2.discriminator_hparams(d_params),
      trainable_noise=trainable_noise)


def load_prior(path: str | os.PathLike, *, key: jax.Array,
               trainable_noise: int = 5, need_d: bool = True,
               stats_samples: int = 1_000_000, stats_chunk: int = 16384,
               d_path: str | os.PathLike | None = None
               ) -> gan_prior.GanPrior:
  """A StyleGAN2 file -> GanPrior (jaxsr.models.stylegan2_prior).

  Args:
    path: the weights (any layout `read` supports).
    key: draws the fixed noise maps (those after the trainable ones).
    trainable_noise: leading noise maps that are part of the latent.
    need_d: a file without a discriminator is an error (else G only, and
      the prior's discriminate raises).
    stats_samples, stats_chunk: the mapping statistics' sample count and
      chunk size (cached next to the weights, see mapping_stats).
    d_path: flaxmodels' discriminator .h5, if not found next to `path`.
  """
  path = os.path.expanduser(os.fspath(path))
  imported = read(path, need_d=need_d, d_path=d_path)
  hp = imported.g_hparams
  logging.info('StyleGAN2 %s (%s layout): %s, D %s', path, imported.layout,
               hp, imported.d_hparams)
  mean, std = mapping_stats.load_or_compute(
      path, imported.g_params['mapping'], samples=stats_samples,
      chunk=stats_chunk)
  as_jax = lambda t: jax.tree.map(jnp.asarray, t)
  g_buffers = {'w_mean': mean, 'w_std': std,
               'noise': stylegan2_prior.fixed_noise(key, hp['resolution'],
                                                    trainable_noise)}
  if imported.latent_avg is not None:
    g_buffers['latent_avg'] = imported.latent_avg
  g_buffers['mapping'] = imported.g_params['mapping']
  return stylegan2_prior.prior(
      as_jax(imported.g_params['synthesis']), as_jax(g_buffers),
      as_jax(imported.d_params) if imported.d_params is not None else {},
      resolution=hp['resolution'], channels=hp['channels'],
      d_hparams=imported.d_hparams,
      trainable_noise=trainable_noise, conv_clamp=imported.conv_clamp,
      d_conv_clamp=imported.d_conv_clamp,
      stddev_group=imported.stddev_group)
