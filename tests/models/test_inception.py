"""Tests for jaxsr.models.inception against numpy transcripts of torch ops."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsr.models import inception

_key = functools.partial(jax.random.key, impl='rbg')
_BN_EPS = 1e-3


def torchvision_conv_shapes():
  """{module: OIHW shape} of every BasicConv2d of torchvision's Inception3.

  Transcribed from torchvision/models/inception.py (Inception3.__init__ and
  InceptionA-E), independently of the Flax module.
  """
  shapes = {}

  def add(name, cin, cout, kh, kw=None):
    shapes[name] = (cout, cin, kh, kh if kw is None else kw)

  add('Conv2d_1a_3x3', 3, 32, 3)
  add('Conv2d_2a_3x3', 32, 32, 3)
  add('Conv2d_2b_3x3', 32, 64, 3)
  add('Conv2d_3b_1x1', 64, 80, 1)
  add('Conv2d_4a_3x3', 80, 192, 3)
  for m, cin, pool in (('Mixed_5b', 192, 32), ('Mixed_5c', 256, 64),
                       ('Mixed_5d', 288, 64)):
    add(f'{m}.branch1x1', cin, 64, 1)
    add(f'{m}.branch5x5_1', cin, 48, 1)
    add(f'{m}.branch5x5_2', 48, 64, 5)
    add(f'{m}.branch3x3dbl_1', cin, 64, 1)
    add(f'{m}.branch3x3dbl_2', 64, 96, 3)
    add(f'{m}.branch3x3dbl_3', 96, 96, 3)
    add(f'{m}.branch_pool', cin, pool, 1)
  add('Mixed_6a.branch3x3', 288, 384, 3)
  add('Mixed_6a.branch3x3dbl_1', 288, 64, 1)
  add('Mixed_6a.branch3x3dbl_2', 64, 96, 3)
  add('Mixed_6a.branch3x3dbl_3', 96, 96, 3)
  for m, c7 in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160),
                ('Mixed_6e', 192)):
    add(f'{m}.branch1x1', 768, 192, 1)
    add(f'{m}.branch7x7_1', 768, c7, 1)
    add(f'{m}.branch7x7_2', c7, c7, 1, 7)
    add(f'{m}.branch7x7_3', c7, 192, 7, 1)
    add(f'{m}.branch7x7dbl_1', 768, c7, 1)
    add(f'{m}.branch7x7dbl_2', c7, c7, 7, 1)
    add(f'{m}.branch7x7dbl_3', c7, c7, 1, 7)
    add(f'{m}.branch7x7dbl_4', c7, c7, 7, 1)
    add(f'{m}.branch7x7dbl_5', c7, 192, 1, 7)
    add(f'{m}.branch_pool', 768, 192, 1)
  add('Mixed_7a.branch3x3_1', 768, 192, 1)
  add('Mixed_7a.branch3x3_2', 192, 320, 3)
  add('Mixed_7a.branch7x7x3_1', 768, 192, 1)
  add('Mixed_7a.branch7x7x3_2', 192, 192, 1, 7)
  add('Mixed_7a.branch7x7x3_3', 192, 192, 7, 1)
  add('Mixed_7a.branch7x7x3_4', 192, 192, 3)
  for m, cin in (('Mixed_7b', 1280), ('Mixed_7c', 2048)):
    add(f'{m}.branch1x1', cin, 320, 1)
    add(f'{m}.branch3x3_1', cin, 384, 1)
    add(f'{m}.branch3x3_2a', 384, 384, 1, 3)
    add(f'{m}.branch3x3_2b', 384, 384, 3, 1)
    add(f'{m}.branch3x3dbl_1', cin, 448, 1)
    add(f'{m}.branch3x3dbl_2', 448, 384, 3)
    add(f'{m}.branch3x3dbl_3a', 384, 384, 1, 3)
    add(f'{m}.branch3x3dbl_3b', 384, 384, 3, 1)
    add(f'{m}.branch_pool', cin, 192, 1)
  return shapes


def random_basic_conv(rng, shape):
  """torch-layout weights of one BasicConv2d with non-trivial BN stats."""
  cout, cin, kh, kw = shape
  std = np.sqrt(2.0 / (cin * kh * kw))
  return {
      'conv.weight': (rng.standard_normal(shape) * std).astype(np.float32),
      'bn.weight': rng.uniform(0.5, 1.5, cout).astype(np.float32),
      'bn.bias': rng.uniform(-0.3, 0.3, cout).astype(np.float32),
      'bn.running_mean': rng.uniform(-0.2, 0.2, cout).astype(np.float32),
      'bn.running_var': rng.uniform(0.5, 2.0, cout).astype(np.float32),
  }


def torch_state_dict(rng, modules):
  """A pytorch-fid-layout state dict ({module}.conv.weight ...) for modules."""
  shapes = torchvision_conv_shapes()
  sd = {}
  for name in modules:
    for leaf, value in random_basic_conv(rng, shapes[name]).items():
      sd[f'{name}.{leaf}'] = value
  return sd


def to_variables(sd):
  """Test-side torch state dict -> Flax variables (keys split on dots)."""
  variables = {'params': {}, 'batch_stats': {}}
  leaves = {'weight': ('params', 'scale'), 'bias': ('params', 'bias'),
            'running_mean': ('batch_stats', 'mean'),
            'running_var': ('batch_stats', 'var')}
  for key, value in sd.items():
    *path, layer, leaf = key.split('.')
    if layer == 'conv':
      coll, name, value = 'params', 'kernel', value.transpose(2, 3, 1, 0)
    else:
      coll, name = leaves[leaf]
    tree = variables[coll]
    for p in path + [layer]:
      tree = tree.setdefault(p, {})
    tree[name] = jnp.asarray(value)
  return variables


# ---- numpy NCHW transcriptions of the torch ops -------------------------


def np_conv(x, w, stride=1, pad=(0, 0)):
  """torch conv2d without bias, float64: x (N, I, H, W), w (O, I, kh, kw)."""
  x = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
  _, _, kh, kw = w.shape
  ho = (x.shape[2] - kh) // stride + 1
  wo = (x.shape[3] - kw) // stride + 1
  y = np.zeros((x.shape[0], w.shape[0], ho, wo))
  for dy in range(kh):
    for dx in range(kw):
      tap = x[:, :, dy:dy + stride * (ho - 1) + 1:stride,
              dx:dx + stride * (wo - 1) + 1:stride]
      y += np.einsum('oi,nihw->nohw', w[:, :, dy, dx], tap, optimize=True)
  return y


def np_basic(x, p, stride=1, pad=(0, 0)):
  """BasicConv2d: conv, (x - mean) / sqrt(var + eps) * gamma + beta, relu."""
  y = np_conv(x, np.float64(p['conv.weight']), stride, pad)
  c = lambda k: np.float64(p[k])[None, :, None, None]
  y = (y - c('bn.running_mean')) / np.sqrt(c('bn.running_var') + _BN_EPS)
  return np.maximum(y * c('bn.weight') + c('bn.bias'), 0.0)


def np_max_pool(x, k=3, stride=2, pad=0):
  """torch max_pool2d (padding never wins: pads with -inf)."""
  x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)),
             constant_values=-np.inf)
  ho = (x.shape[2] - k) // stride + 1
  wo = (x.shape[3] - k) // stride + 1
  out = np.full(x.shape[:2] + (ho, wo), -np.inf)
  for dy in range(k):
    for dx in range(k):
      out = np.maximum(out, x[:, :, dy:dy + stride * (ho - 1) + 1:stride,
                              dx:dx + stride * (wo - 1) + 1:stride])
  return out


def np_avg_pool_3x3(x, count_include_pad):
  """torch avg_pool2d(3, stride=1, padding=1, count_include_pad=...)."""
  h, w = x.shape[2:]
  xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
  ones = np.pad(np.ones((h, w)), 1)
  total = sum(xp[:, :, dy:dy + h, dx:dx + w]
              for dy in range(3) for dx in range(3))
  count = 9.0 if count_include_pad else sum(
      ones[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3))
  return total / count


def numpy_stem(sd, x_nhwc):
  """pytorch-fid blocks 0 and 1 in numpy: {output name: NHWC float64}."""
  x = 2.0 * np.asarray(x_nhwc, np.float64).transpose(0, 3, 1, 2) - 1.0
  p = lambda m: {k[len(m) + 1:]: v for k, v in sd.items()
                 if k.startswith(m + '.')}
  nhwc = lambda a: a.transpose(0, 2, 3, 1)
  out = {}
  x = np_basic(x, p('Conv2d_1a_3x3'), stride=2)
  x = np_basic(x, p('Conv2d_2a_3x3'))
  x = np_basic(x, p('Conv2d_2b_3x3'), pad=(1, 1))
  out['conv2d_2b'] = nhwc(x)
  x = np_max_pool(x)
  out['block0'] = nhwc(x)
  if 'Conv2d_3b_1x1.conv.weight' in sd:
    x = np_basic(x, p('Conv2d_3b_1x1'))
    x = np_basic(x, p('Conv2d_4a_3x3'))
    out['conv2d_4a'] = nhwc(x)
    out['block1'] = nhwc(np_max_pool(x))
  return out


STEM = ('Conv2d_1a_3x3', 'Conv2d_2a_3x3', 'Conv2d_2b_3x3')
BLOCK1 = STEM + ('Conv2d_3b_1x1', 'Conv2d_4a_3x3')


def assert_close(got, want, rtol=2e-4, err_msg=''):
  scale = np.abs(want).max()
  assert scale > 0, err_msg
  np.testing.assert_allclose(np.asarray(got), want, atol=rtol * scale,
                             err_msg=err_msg)


# ---- tests ---------------------------------------------------------------


def test_blocks_0_and_1_match_numpy():
  rng = np.random.default_rng(0)
  sd = torch_state_dict(rng, BLOCK1)
  # 35 x 33: odd, non-square sizes exercise the floor of stride 2 and pools.
  x = rng.uniform(size=(2, 35, 33, 3)).astype(np.float32)
  model = inception.InceptionV3(
      outputs=('conv2d_2b', 'block0', 'conv2d_4a', 'block1'))
  out = jax.jit(model.apply)(to_variables(sd), jnp.asarray(x))
  want = numpy_stem(sd, x)
  for name in ('conv2d_2b', 'block0', 'conv2d_4a', 'block1'):
    assert out[name].shape == want[name].shape, name
    assert out[name].dtype == jnp.float32
    assert_close(out[name], want[name], err_msg=name)


def test_stops_at_deepest_output():
  model = inception.InceptionV3(outputs=('block0',))
  variables = jax.eval_shape(model.init, _key(0), jnp.zeros((1, 32, 32, 3)))
  assert set(variables['params']) == set(STEM)


def test_shapes_match_pytorch_fid_at_299():
  # pytorch-fid's documented block sizes at 299 x 299: 73, 35, 17, 1.
  model = inception.InceptionV3(outputs=inception.OUTPUTS)
  x = jnp.zeros((2, 299, 299, 3))
  out, _ = jax.eval_shape(model.init_with_output, _key(0), x)
  got = {k: v.shape for k, v in out.items()}
  assert got == {
      'conv2d_2b': (2, 147, 147, 64), 'block0': (2, 73, 73, 64),
      'conv2d_4a': (2, 71, 71, 192), 'block1': (2, 35, 35, 192),
      'block2': (2, 17, 17, 768), 'block3': (2, 1, 1, 2048),
  }
  for name, shape in got.items():
    assert inception.feature_size(299, name) == shape[1], name
    assert inception.CHANNELS[name] == shape[-1], name


def test_every_layer_matches_torchvision_shapes():
  model = inception.InceptionV3(outputs=('block3',))
  variables = jax.eval_shape(model.init, _key(0), jnp.zeros((1, 75, 75, 3)))
  flat = jax.tree_util.tree_flatten_with_path(variables)[0]
  got = {}
  for path, leaf in flat:
    keys = [p.key for p in path]
    got.setdefault('.'.join(keys[1:-2]), {})[
        f'{keys[0]}/{keys[-2]}/{keys[-1]}'] = leaf.shape
  want = torchvision_conv_shapes()
  assert set(got) == set(want)
  for name, (cout, cin, kh, kw) in want.items():
    assert got[name] == {
        'params/conv/kernel': (kh, kw, cin, cout),
        'params/bn/scale': (cout,), 'params/bn/bias': (cout,),
        'batch_stats/bn/mean': (cout,), 'batch_stats/bn/var': (cout,),
    }, name


def _np_inception_a(sd, x, m, fid):
  p = lambda b: {k[len(f'{m}.{b}') + 1:]: v for k, v in sd.items()
                 if k.startswith(f'{m}.{b}.')}
  b1 = np_basic(x, p('branch1x1'))
  b5 = np_basic(np_basic(x, p('branch5x5_1')), p('branch5x5_2'), pad=(2, 2))
  bd = np_basic(x, p('branch3x3dbl_1'))
  bd = np_basic(bd, p('branch3x3dbl_2'), pad=(1, 1))
  bd = np_basic(bd, p('branch3x3dbl_3'), pad=(1, 1))
  bp = np_basic(np_avg_pool_3x3(x, not fid), p('branch_pool'))
  return np.concatenate([b1, b5, bd, bp], axis=1)


def _np_inception_e(sd, x, m, pool):
  p = lambda b: {k[len(f'{m}.{b}') + 1:]: v for k, v in sd.items()
                 if k.startswith(f'{m}.{b}.')}
  b1 = np_basic(x, p('branch1x1'))
  b3 = np_basic(x, p('branch3x3_1'))
  b3 = np.concatenate([np_basic(b3, p('branch3x3_2a'), pad=(0, 1)),
                       np_basic(b3, p('branch3x3_2b'), pad=(1, 0))], axis=1)
  bd = np_basic(np_basic(x, p('branch3x3dbl_1')), p('branch3x3dbl_2'),
                pad=(1, 1))
  bd = np.concatenate([np_basic(bd, p('branch3x3dbl_3a'), pad=(0, 1)),
                       np_basic(bd, p('branch3x3dbl_3b'), pad=(1, 0))], axis=1)
  if pool == 'max':
    pooled = np_max_pool(x, 3, 1, 1)
  else:
    pooled = np_avg_pool_3x3(x, pool == 'avg')
  bp = np_basic(pooled, p('branch_pool'))
  return np.concatenate([b1, b3, bd, bp], axis=1)


def _small_input_sd(rng, module, cin):
  """Random weights for `module` with its input convs narrowed to cin."""
  shapes = torchvision_conv_shapes()
  sd = {}
  for name, shape in shapes.items():
    if name.startswith(module + '.'):
      if shape[1] in (192, 1280, 2048):  # The block's input width.
        shape = (shape[0], cin) + shape[2:]
      for leaf, value in random_basic_conv(rng, shape).items():
        sd[f'{name}.{leaf}'] = value
  return sd


@pytest.mark.parametrize('fid', [True, False])
def test_inception_a_pooling_variants_match_numpy(fid):
  rng = np.random.default_rng(1)
  sd = _small_input_sd(rng, 'Mixed_5b', 6)
  # A positive input makes the border average differ between the variants.
  x = rng.uniform(0.5, 1.5, (1, 6, 5, 4))
  block = inception.InceptionA(pool_features=32, fid=fid)
  variables = to_variables(sd)
  variables = {c: t['Mixed_5b'] for c, t in variables.items()}
  got = jax.jit(block.apply)(
      variables, jnp.asarray(x.transpose(0, 2, 3, 1), jnp.float32))
  want = _np_inception_a(sd, x, 'Mixed_5b', fid).transpose(0, 2, 3, 1)
  assert got.shape == (1, 5, 4, 256)
  assert_close(got, want)
  other = _np_inception_a(sd, x, 'Mixed_5b', not fid).transpose(0, 2, 3, 1)
  assert np.abs(np.asarray(got) - other).max() > 1e-3


@pytest.mark.parametrize('pool', ['avg_exclude_pad', 'max'])
def test_inception_e_pooling_variants_match_numpy(pool):
  rng = np.random.default_rng(2)
  sd = _small_input_sd(rng, 'Mixed_7b', 5)
  x = rng.normal(size=(1, 5, 3, 3))
  block = inception.InceptionE(pool=pool)
  variables = to_variables(sd)
  variables = {c: t['Mixed_7b'] for c, t in variables.items()}
  got = jax.jit(block.apply)(
      variables, jnp.asarray(x.transpose(0, 2, 3, 1), jnp.float32))
  want = _np_inception_e(sd, x, 'Mixed_7b', pool).transpose(0, 2, 3, 1)
  assert got.shape == (1, 3, 3, 2048)
  assert_close(got, want)


def _np_resize_axis(x, out, axis):
  """torch bilinear, align_corners=False, along one axis (float64)."""
  n = x.shape[axis]
  src = np.maximum((np.arange(out) + 0.5) * n / out - 0.5, 0.0)
  i0 = np.minimum(np.floor(src).astype(int), n - 1)
  i1 = np.minimum(i0 + 1, n - 1)
  frac = src - i0
  shape = [1] * x.ndim
  shape[axis] = out
  frac = frac.reshape(shape)
  return (np.take(x, i0, axis) * (1 - frac) + np.take(x, i1, axis) * frac)


@pytest.mark.parametrize('size', [(7, 5), (19, 23)])
def test_resize_matches_torch_bilinear(size):
  x = np.random.default_rng(3).uniform(size=(1, 11, 13, 2))
  want = _np_resize_axis(_np_resize_axis(x, size[0], 1), size[1], 2)
  got = inception.resize_bilinear(jnp.asarray(x, jnp.float32), size)
  np.testing.assert_allclose(got, want, atol=1e-5)


def test_errors_name_the_problem():
  x = jnp.zeros((1, 40, 40, 3))
  with pytest.raises(ValueError, match='unknown InceptionV3 output'):
    inception.InceptionV3(outputs=('pool3',)).init(_key(0), x)
  with pytest.raises(ValueError, match='too small'):
    inception.InceptionV3(outputs=('block3',)).init(_key(0), x)
  with pytest.raises(ValueError, match='variant'):
    inception.InceptionV3(variant='tf').init(_key(0), x)
  with pytest.raises(ValueError, match=r'\(N, H, W, 3\)'):
    inception.InceptionV3().init(_key(0), jnp.zeros((1, 80, 80)))
