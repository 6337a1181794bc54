"""Checks every value of an experiment config before anything is built or read.

`validate(config)` raises one error naming the key, its value and what is
expected (ValueError; FileNotFoundError for a missing file or folder), e.g.
"config.scale=0: expected one of 1, 2, 3, 4 (the RRDBNet generator)".
`jaxsr.main` calls it before TensorFlow, a model or an image is touched, so a
bad value costs seconds, not a model build. The method builders still check
what they use; this is the early pass over all of it. Every field of every
experiment config has a rule here (tests/test_config_check.py), so a new
field needs one.
"""

import dataclasses
import math
import os
from collections.abc import Callable
from typing import Any

import ml_collections

from jaxsr import methods
from jaxsr.data import demo
from jaxsr.data import sources
from jaxsr.losses import adversarial
from jaxsr.losses import realness
from jaxsr.methods import amgan
from jaxsr.methods import amgan_rl
from jaxsr.methods import lsrgan
from jaxsr.methods import singan
from jaxsr.models import discriminators
from jaxsr.models import encoders
from jaxsr.models import rrdbnet
from jaxsr.models import san_critic
from jaxsr.models import vgg
from jaxsr.rl import ddpg
from jaxsr.rl import rewards


@dataclasses.dataclass(frozen=True)
class Rule:
  """A predicate on one value and the words for what it accepts."""
  ok: Callable[[Any], bool]
  expected: str


def _is_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
  return (isinstance(v, (int, float)) and not isinstance(v, bool)
          and math.isfinite(v))


def integer(low: int | None = None) -> Rule:
  """An int (not a bool), at least `low` when given."""
  if low is None:
    return Rule(_is_int, 'an integer')
  return Rule(lambda v: _is_int(v) and v >= low, f'an integer >= {low}')


def number(low: float | None = None, high: float | None = None, *,
           low_open: bool = False, high_open: bool = False) -> Rule:
  """A finite int or float in [low, high] (an end excluded when *_open)."""
  def ok(v):
    if not _is_number(v):
      return False
    if low is not None and (v < low or (low_open and v == low)):
      return False
    return high is None or not (v > high or (high_open and v == high))
  if low is None and high is None:
    return Rule(ok, 'a finite number')
  if high is None:
    return Rule(ok, f'a number {">" if low_open else ">="} {low}')
  return Rule(ok, f'a number in {"(" if low_open else "["}{low}, '
                  f'{high}{")" if high_open else "]"}')


def one_of(*choices) -> Rule:
  """One of the given values."""
  return Rule(lambda v: v in choices,
              'one of ' + ', '.join(repr(c) for c in choices))


def _increasing(items, ok) -> bool:
  items = tuple(items) if isinstance(items, (tuple, list)) else None
  return (items is not None and all(ok(x) for x in items)
          and all(a < b for a, b in zip(items, items[1:])))


BOOL = Rule(lambda v: isinstance(v, bool), 'True or False')
TEXT = Rule(lambda v: isinstance(v, str), 'a string')
MILESTONES = Rule(lambda v: _increasing(v, lambda x: _is_int(x) and x >= 1),
                  'increasing step counts >= 1, e.g. (50000, 100000)')
FRACTIONS = Rule(
    lambda v: _increasing(v, lambda x: _is_number(x) and 0 < x < 1),
    'increasing fractions in (0, 1), e.g. (0.5, 0.75)')
VGG19_LAYERS = vgg.vgg_layer_names(19)
_PROBABILITY_OPEN = number(0, 1, high_open=True)
_WEIGHT = number(0)
_POSITIVE = number(0, low_open=True)

# Adam and its schedule (jaxsr.methods.base.schedule), also SinGAN's.
_OPTIM = {
    'lr': _POSITIVE, 'b1': _PROBABILITY_OPEN, 'b2': _PROBABILITY_OPEN,
    'eps': _POSITIVE, 'decay_every': integer(0),
    'decay_factor': number(0, 1, low_open=True), 'milestones': MILESTONES,
    'milestone_fractions': FRACTIONS, 'microbatch_size': integer(0),
    'lr_g': _POSITIVE, 'lr_d': _POSITIVE, 'milestone': integer(0),
    'gamma': _POSITIVE,
}

# 'section.key' -> rule, for the keys a config has; '*' matches any key of a
# section whose keys are names (checked separately).
RULES = {
    # 'method' is checked against the registry when validating (tests
    # register toy methods at run time).
    'method': TEXT,
    'name': TEXT, 'seed': integer(0), 'init_from': TEXT,
    'psnr_warmup_steps': integer(0), 'allow_random_g': BOOL,
    'scale': integer(1),  # And per method, see _SCALES.
    # Generators: RRDBNet (psnr, lsrgan), SRResNet (san_sr), SinGAN.
    'model.num_feat': integer(1), 'model.num_block': integer(0),
    'model.num_grow_ch': integer(1), 'model.bicubic_skip': BOOL,
    'model.dense': one_of(*rrdbnet.DENSE_IMPLS),
    'model.kernel_grad': one_of(*rrdbnet.KERNEL_GRADS),
    'model.dtype': one_of('float32', 'bfloat16', 'float16'),
    'model.remat': BOOL,
    'model.base_features': integer(1), 'model.max_features': integer(1),
    'encoder.enabled': BOOL, 'encoder.cut': one_of(*encoders.VGG16_CONVS),
    'encoder.num_upsample_feat': integer(1),
    'encoder.width_divisor': integer(1),
    'disc.num_feat': integer(1), 'disc.norm': one_of(*discriminators.NORMS),
    'disc.batch_norm': BOOL,
    'critic.num_features': integer(1), 'critic.max_features': integer(1),
    'critic.num_blocks': integer(1), 'critic.norm': one_of(*san_critic.NORMS),
    'critic.batch_norm': BOOL, 'critic.circular': BOOL,
    'critic.gain': number(0),  # 0: eq. 9's g.
    'critic.ratio': number(0, 1, low_open=True),
    'critic.subset': one_of('pairs', 'channels'),
    'critic.momentum': _PROBABILITY_OPEN, 'critic.legacy_rownorm': BOOL,
    'critic.normalize_every': integer(1),
    'perceptual.weights': TEXT,  # And a file, see _check_files.
    'loss.perceptual': one_of(*lsrgan.PERCEPTUAL_KINDS),
    'loss.perceptual_weight': _WEIGHT,
    'loss.vgg_layer_weights.*': _WEIGHT,
    'loss.cx_layer': one_of(*VGG19_LAYERS),
    'loss.cx_band_width': _POSITIVE, 'loss.cx_max_samples': integer(1),
    'loss.gan_type': one_of(*(t.value for t in adversarial.GanType)),
    'loss.ragan_detach_means': BOOL,
    'loss.adv_weight': _WEIGHT, 'loss.pixel_weight': _WEIGHT,
    'loss.latent_weight': _WEIGHT, 'loss.latent_sign': number(),
    'loss.content_weight': _WEIGHT, 'loss.features_weight': _WEIGHT,
    'loss.feature_layer': one_of(*VGG19_LAYERS),
    'loss.alpha': _WEIGHT, 'loss.gp_weight': _WEIGHT,
    'loss.d_steps': integer(1), 'loss.g_steps': integer(1),
    'loss.noise_amp': _WEIGHT,
    **{f'optim.{k}': rule for k, rule in _OPTIM.items()},
    **{f'd_optim.{k}': rule for k, rule in _OPTIM.items()},
    'ema.decay': _PROBABILITY_OPEN, 'ema.predict': BOOL,
    'data.source': one_of(*sources.SOURCES),
    **{f'data.{k}': TEXT for k in (
        'train_dir', 'train_lr_dir', 'val_dir', 'val_lr_dir', 'tfds_name',
        'tfds_data_dir', 'tfds_train_split', 'tfds_val_split', 'cache_dir',
        'image')},
    'data.hr_patch': integer(1), 'data.batch_size': integer(1),
    'data.augment': BOOL, 'data.num_threads': integer(1),
    'data.prefetch': integer(0), 'data.max_val_images': integer(0),
    'data.demo_image': one_of(*demo.TRAIN, *demo.VAL),
    'data.crop': integer(0), 'data.downscale': integer(1),
    'data.images': Rule(lambda v: isinstance(v, (tuple, list)) and all(
        isinstance(x, str) and x for x in v), 'a tuple of image paths'),
    'pyramid.task': one_of('samples', 'sr'),
    'pyramid.scale_factor': number(0, 1, low_open=True, high_open=True),
    'pyramid.min_size': integer(1), 'pyramid.max_size': integer(1),
    'pyramid.sr_min_size': integer(1),
    'adversarial.mode': one_of(*singan.MODES),
    'adversarial.target': one_of(*singan.TARGETS),
    'adversarial.epsilon': _WEIGHT, 'adversarial.radius': _WEIGHT,
    'adversarial.alpha': _WEIGHT, 'adversarial.steps': integer(1),
    'adversarial.kappa': _WEIGHT, 'adversarial.power_iters': integer(1),
    'singan.iters_per_scale': integer(1), 'singan.steps_per_call': integer(0),
    'singan.stack_images': one_of(*singan.STACK_IMAGES),
    # Face SR by latent exploration (experiments/face_explore.py).
    'prior.kind': one_of('dcgan', 'stylegan2'), 'prior.weights': TEXT,
    'prior.trainable_noise': integer(0), 'prior.stats_samples': integer(1),
    'data.lr_dir': TEXT, 'data.hr_dir': TEXT,
    'data.demo': one_of('', 'prior', 'lfw'), 'data.num_faces': integer(0),
    'search.steps': integer(1), 'search.lr_z': _POSITIVE,
    'search.schedule': one_of('linear1cycledrop', 'fixed'),
    'search.lr_g': _POSITIVE, 'search.finetune_g': BOOL,
    'search.restarts': integer(1), 'search.eps': _POSITIVE,
    'search.blocks': integer(1), 'search.d_input': one_of('bicubic'),
    'search.result': one_of('best', 'last'),
    'search.steps_per_call': integer(0),
    'loss.lambda_p': _WEIGHT, 'loss.lambda_s': _WEIGHT,
    'loss.lambda_g': _WEIGHT, 'loss.geocross_scale': _WEIGHT,
    'loss.clamp_l2': BOOL,
    # Blind SR: AMGAN (experiments/amgan.py).
    'model.mod_hidden': integer(1),
    'predictor.num_feat': integer(1), 'predictor.num_down': integer(0),
    'predictor.bound': number(0),
    'disc.num_outcomes': integer(2),
    'degradation.sigma_min': _POSITIVE, 'degradation.sigma_max': _POSITIVE,
    'degradation.rate_iso': number(0, 1), 'degradation.scaling': _POSITIVE,
    'degradation.noise_max': number(0, 1), 'degradation.rate_clean':
        number(0, 1), 'degradation.noise_code_scale': _POSITIVE,
    'degradation.kernel_size': Rule(
        lambda v: _is_int(v) and v >= 1 and v % 2 == 1,
        'an odd integer >= 1'),
    'degradation.pca_dim': integer(1), 'degradation.pca_seed': integer(0),
    'degradation.pca_kernels': integer(2),
    'loss.vgg_weight': _WEIGHT, 'loss.dists_weight': _WEIGHT,
    'loss.vgg_numerator': _POSITIVE,
    'loss.vgg_layers': Rule(
        lambda v: isinstance(v, (tuple, list)) and len(v) > 0 and all(
            x in VGG19_LAYERS for x in v), 'a tuple of VGG19 layer names'),
    'loss.gan': one_of(*amgan.GANS),
    'loss.anchors': one_of(*realness.NAMINGS),
    'loss.g_loss': one_of(*realness.G_LOSSES),
    'loss.positive_skew': number(), 'loss.negative_skew': number(),
    'degradation.val_width': _POSITIVE,
    # AMGAN-RL (experiments/amgan_rl.py).
    'rl.fill_steps': integer(0), 'rl.ddpg_steps': integer(0),
    'rl.capacity': integer(1), 'rl.batch_size': integer(1),
    'rl.explore_std': _WEIGHT, 'rl.reward': one_of(*rewards.REWARDS),
    'rl.niqe_params': TEXT, 'rl.crop_border': integer(0),
    'rl.critic_loss': one_of(*ddpg.CRITIC_LOSSES), 'rl.gamma': number(0, 1),
    'rl.critic_lr': _POSITIVE, 'rl.actor_lr': _POSITIVE,
    'rl.critic_features': Rule(
        lambda v: isinstance(v, (tuple, list)) and len(v) > 0 and all(
            _is_int(x) and x >= 1 for x in v), 'a tuple of widths >= 1'),
    'rl.critic_hidden': Rule(
        lambda v: isinstance(v, (tuple, list)) and all(
            _is_int(x) and x >= 1 for x in v), 'a tuple of widths >= 1'),
    'rl.eval_widths': Rule(
        lambda v: isinstance(v, (tuple, list)) and len(v) > 0 and all(
            _is_number(x) and x > 0 for x in v),
        'a tuple of kernel widths > 0'),
    'rl.spread_samples': integer(2),
    'rl.baseline': one_of(*amgan_rl.BASELINES),
    'rl.reward_clip': _WEIGHT,
    'rl.critic_input': one_of(*amgan_rl.CRITIC_INPUTS),
    'features.vgg19': TEXT, 'features.dists': TEXT,
    'features.dists_vgg16': TEXT,
    'predictor_steps': integer(0),
    'train.num_steps': integer(0), 'train.log_every': integer(1),
    'train.eval_every': integer(0), 'train.checkpoint_every': integer(0),
    'train.keep_checkpoints': integer(1),
    'eval.tile': integer(0), 'eval.overlap': integer(0),
    'eval.rounded_y': BOOL, 'eval.grid_images': integer(0),
}

# The SR factors each method's generator builds.
_SCALES = {
    'psnr': ((1, 2, 3, 4), 'the RRDBNet generator'),
    'lsrgan': ((1, 2, 3, 4), 'the RRDBNet generator'),
    'san_sr': ((2, 4, 8), 'the SRResNet generator: log2(scale) x2 stages'),
    'amgan': ((2, 3, 4), 'the AMNet generator'),
}
# The input sizes VGGStyleDiscriminator supports (its D input is the HR patch).
_ESRGAN_D_SIZES = (128, 256)
# Methods trained on paired patches of config.data (methods.base.patch_data).
_PATCH_METHODS = ('psnr', 'lsrgan', 'san_sr', 'amgan')


def leaves(config, prefix: str = '') -> list[tuple[str, Any]]:
  """[('section.key', value)] of every field, sections flattened."""
  out = []
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      out += leaves(value, f'{prefix}{key}.')
    else:
      out.append((prefix + key, value))
  return out


def rule_for(path: str) -> Rule | None:
  """The rule of a dotted field path ('a.b.*' rules match any last key)."""
  if path in RULES:
    return RULES[path]
  return RULES.get(path.rpartition('.')[0] + '.*')


def _fail(path: str, value, expected: str, why: str = '') -> ValueError:
  return ValueError(f'config.{path}={value!r}: expected {expected}'
                    + (f' ({why})' if why else ''))


def _check_values(config) -> None:
  for path, value in leaves(config):
    rule = rule_for(path)
    if rule is not None and not rule.ok(value):
      raise _fail(path, value, rule.expected)
  layers = config.get('loss', {}).get('vgg_layer_weights', {})
  for name in layers:
    if name not in VGG19_LAYERS:
      raise ValueError(
          f'config.loss.vgg_layer_weights has the key {name!r}: expected '
          f'VGG19 layer names ({", ".join(VGG19_LAYERS)})')


def _check_patch_method(config) -> None:
  """Cross-field rules of the paired-patch methods (psnr, lsrgan, san_sr)."""
  data, scale = config.data, config.scale
  if data.hr_patch % scale:
    raise _fail('data.hr_patch', data.hr_patch,
                f'a multiple of config.scale={scale}')
  size = config.optim.get('microbatch_size', 0)
  if size and data.batch_size % size:
    raise _fail('optim.microbatch_size', size,
                f'0 (the whole batch) or a divisor of config.data.batch_size='
                f'{data.batch_size}')
  for section in ('optim', 'd_optim'):
    opt = config.get(section)
    if opt is not None and opt.get('milestones') and opt.get(
        'milestone_fractions'):
      raise ValueError(f'config.{section}: give milestones or '
                       'milestone_fractions, not both')
  if 'encoder' in config and config.encoder.enabled:
    try:
      encoders.num_upsample_stages(scale, config.encoder.cut)
    except ValueError as e:
      raise ValueError(f'config.encoder.cut={config.encoder.cut!r} with '
                       f'config.scale={scale}: {e}') from None
  if config.method == 'lsrgan':
    if data.hr_patch not in _ESRGAN_D_SIZES:
      raise _fail('data.hr_patch', data.hr_patch, f'one of {_ESRGAN_D_SIZES}',
                  "the ESRGAN discriminator's input size")
    if config.loss.latent_weight and not config.encoder.enabled:
      raise ValueError('config.loss.latent_weight > 0 (μ) needs '
                       'config.encoder.enabled=True')
  if config.method == 'amgan':
    size = data.hr_patch
    if size < 8 or size & (size - 1):
      raise _fail('data.hr_patch', size, 'a power of two >= 8',
                  "the realness discriminator's input size")
    d = config.degradation
    if d.sigma_min > d.sigma_max:
      raise _fail('degradation.sigma_min', d.sigma_min,
                  f'<= config.degradation.sigma_max={d.sigma_max}')
    if d.pca_dim > d.kernel_size**2:
      raise _fail('degradation.pca_dim', d.pca_dim,
                  f'<= kernel_size^2 = {d.kernel_size**2}')
    rl = config.rl
    if rl.fill_steps or rl.ddpg_steps:
      if rl.reward == 'niqe' and size - 2 * rl.crop_border < 96:
        raise _fail('data.hr_patch', size, f'>= 96 + 2 * rl.crop_border',
                    'the NIQE reward scores renders in 96 x 96 blocks')
      if data.batch_size > rl.capacity:
        raise _fail('rl.capacity', rl.capacity,
                    f'>= config.data.batch_size={data.batch_size}',
                    'a played batch must fit in the replay buffer')
  if config.method == 'san_sr':
    crop = 4 * 2**config.critic.num_blocks
    if data.hr_patch < crop:
      raise _fail('data.hr_patch', data.hr_patch, f'>= {crop}',
                  f'the critic crop 4 * 2^critic.num_blocks, num_blocks='
                  f'{config.critic.num_blocks}')


def _check_singan(config) -> None:
  if config.scale < 2:
    raise _fail('scale', config.scale, 'an integer >= 2',
                'the SR factor of predict')
  p = config.pyramid
  if p.task == 'samples' and p.min_size > p.max_size:
    raise _fail('pyramid.min_size', p.min_size,
                f'<= config.pyramid.max_size={p.max_size}')


def _check_face_explore(config) -> None:
  data = config.data
  given = [k for k in ('lr_dir', 'hr_dir', 'demo') if data[k]]
  if len(given) != 1:
    raise ValueError('give exactly one of config.data.lr_dir, data.hr_dir, '
                     f'data.demo (found {", ".join(given) or "none"})')
  for key in ('lr_dir', 'hr_dir'):
    _check_folder(f'data.{key}', data[key])
  weights = config.prior.weights
  if not weights:
    raise ValueError(f'config.prior.weights is empty: give the '
                     f'{config.prior.kind} prior file (or folder); nothing '
                     'is downloaded')
  if not os.path.exists(os.path.expanduser(weights)):
    raise FileNotFoundError(f'config.prior.weights={weights!r}: no such file '
                            'or folder')


def _is_remote(path: str) -> bool:
  return '://' in path


def _check_folder(path_key: str, folder: str) -> None:
  if folder and not _is_remote(folder) and not os.path.isdir(
      os.path.expanduser(folder)):
    raise FileNotFoundError(f'config.{path_key}={folder!r}: no such folder')


def _check_files(config) -> None:
  """The files and folders the run will read exist (nothing is read)."""
  data = config.get('data')
  if data is not None and config.method in _PATCH_METHODS:
    if data.source == 'folder':
      if not data.train_dir:
        raise ValueError('config.data.train_dir is empty: point it at an HR '
                         'folder (e.g. DIV2K/DIV2K_train_HR), or use '
                         'data.source=demo')
      for key in ('train_dir', 'train_lr_dir', 'val_dir', 'val_lr_dir'):
        _check_folder(f'data.{key}', data[key])
    cache = data.get('cache_dir', '')
    if cache and os.path.exists(cache) and not os.path.isdir(cache):
      raise _fail('data.cache_dir', cache, 'a folder (it is a file)')
  images = [('image', data.get('image'))] if data is not None else []
  images += [('images', p) for p in (data or {}).get('images', ())]
  for key, path in images:
    if path and not os.path.isfile(os.path.expanduser(path)):
      raise FileNotFoundError(f'config.data.{key} names {path!r}: no such '
                              'image file')
  features = config.get('features', {})
  if config.get('method') == 'amgan' and not config.train.num_steps:
    features = {}  # Only the 'sr' stage reads them (AMGAN-RL runs do not).
  for key, value in features.items():
    if key == 'dists_vgg16' and value == 'from_weights':
      continue
    if key.startswith('dists') and not config.loss.dists_weight:
      continue  # DISTS is not read.
    if not value:
      raise ValueError(f'config.features.{key} is empty: give the local '
                       'weight file, or \'random\' for a smoke test')
    if value != 'random' and not os.path.isfile(os.path.expanduser(value)):
      raise FileNotFoundError(f'config.features.{key}={value!r}: no such '
                              'file')
  weights = config.get('perceptual', {}).get('weights')
  if weights is not None:
    if not weights:
      raise ValueError('config.perceptual.weights is empty: give a VGG19 '
                       'weight file (.pth, .h5 or .npz), or \'random\' for a '
                       'smoke test')
    if weights != 'random' and not os.path.isfile(os.path.expanduser(weights)):
      raise FileNotFoundError(f'config.perceptual.weights={weights!r}: no '
                              'such file')


def validate(config) -> None:
  """Raises ValueError (FileNotFoundError for a missing path) for the first
  value of config that the run would reject, before anything is built."""
  if config.get('method') not in methods.METHODS:
    raise ValueError(f'config.method={config.get("method")!r}: expected one '
                     f'of {", ".join(map(repr, sorted(methods.METHODS)))}')
  _check_values(config)
  method = config.method
  if method in _SCALES:
    allowed, why = _SCALES[method]
    if config.scale not in allowed:
      raise _fail('scale', config.scale,
                  'one of ' + ', '.join(map(str, allowed)), why)
  if method in _PATCH_METHODS:
    _check_patch_method(config)
  if method == 'singan':
    _check_singan(config)
  if method == 'face_explore':
    _check_face_explore(config)
  _check_files(config)


def check_devices(config, num_devices: int, num_processes: int = 1) -> None:
  """The global batch of a data-parallel method splits over the devices."""
  if config.method not in _PATCH_METHODS:
    return
  batch = config.data.batch_size
  for n, what in ((num_devices, 'devices'), (num_processes, 'processes')):
    if batch % n:
      raise _fail('data.batch_size', batch,
                  f'a multiple of the number of {what} ({n})',
                  f'e.g. {max(n, batch - batch % n)}')
