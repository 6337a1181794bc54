"""Config sections shared by experiment files (experiments/ is not a package).

Each function returns a fresh ml_collections.ConfigDict holding the paper's
values (the comments name their source); experiment files assemble them and
apply their variants.
"""

import difflib
import importlib.util
import os

import ml_collections

ConfigDict = ml_collections.ConfigDict


def load_file(spec: str) -> ConfigDict:
  """get_config(arg) of a config file named 'path/to/file.py[:arg]', unlocked
  (as --config does for python -m jaxsr.main)."""
  path, _, arg = spec.partition(':')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'no config file {path}')
  module_spec = importlib.util.spec_from_file_location(
      os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  config = module.get_config(arg or None)
  config.unlock()
  return config


def variant_tokens(arg: str | None, allowed) -> list[str]:
  """The comma-separated variants of an experiment's `arg` ('' and None:
  none), each checked against `allowed` (ValueError naming the unknown)."""
  tokens = [t for t in (arg or '').split(',') if t]
  unknown = [t for t in tokens if t not in allowed]
  if unknown:
    raise ValueError(f'unknown variant(s) {unknown}; expected a comma-'
                     f'separated list of {tuple(allowed)}')
  return tokens


def check_keys(section, allowed, name: str) -> None:
  """Raises ValueError naming the unknown keys of config.<name> and the valid ones."""
  unknown = set(section.keys()) - set(allowed)
  if unknown:
    raise ValueError(f'unknown key(s) {sorted(unknown)} in config.{name}; '
                     f'expected some of {sorted(allowed)}')


def unknown_key(config, path: str) -> str:
  """Why the dotted override path 'section.key' names no field of config,
  in one line with the section's valid keys; '' when it names one."""
  node, where = config, 'config'
  for part in path.split('.'):
    if not isinstance(node, ml_collections.ConfigDict):
      return (f'{where} is a value ({node!r}), not a section: it has no key '
              f'{part!r}')
    if part not in node:
      valid = sorted(node.keys())
      close = difflib.get_close_matches(part, valid, n=1, cutoff=0.8)
      hint = f' (did you mean {close[0]!r}?)' if close else ''
      section = 'the top level of config' if where == 'config' else where
      return (f'unknown config key {part!r} in {section}{hint}; valid keys: '
              f'{", ".join(valid)}')
    node, where = node[part], f'{where}.{part}'
  return ''


def generator() -> ConfigDict:
  """ESRGAN's RRDBNet (23 RRDB, 64 features, growth 32), kept by LSRGAN (§3.1)."""
  # dense: 'concat' (BasicSR) or 'fused', the same function computed with
  # wider convs and no concatenations (benchmarks/RESULTS.md).
  # kernel_grad: 'auto' (Winograd on CPU, XLA's on GPU/TPU), 'xla' or
  # 'winograd': how the dense-block convs' kernel gradients are computed
  # (Winograd F(4x4, 3x3), ~1e-5 relative; the forward pass is the same).
  # On CPU, Winograd with XLA's concurrency-optimized scheduler off (jaxsr's
  # default XLA_FLAGS) is the fastest measured step, at 2-3x the compile
  # time (benchmarks/RESULTS.md); an implementation choice, not a paper one.
  # dtype: compute dtype of G ('bfloat16' for GPU/TPU; parameters stay
  # float32); remat: recompute RRDB activations in the backward pass.
  return ConfigDict(dict(num_feat=64, num_block=23, num_grow_ch=32,
                         bicubic_skip=False, dense='concat', kernel_grad='auto',
                         dtype='float32',
                         remat=False))


def encoder(enabled: bool = True) -> ConfigDict:
  """LSR encoder L: "the first few layers of the VGG16 ... followed by a few
  upscaling layers" (paper 000 §3.1). Where to cut is not in the paper: ours."""
  return ConfigDict(dict(enabled=enabled, cut='conv4_3', num_upsample_feat=64,
                         width_divisor=1))


def data() -> ConfigDict:
  """DIV2K patches as in paper 000 §4.1."""
  return ConfigDict(dict(
      source='folder',  # 'folder' | 'demo' | 'tfds'.
      train_dir='',  # DIV2K 800 training images (§4.1): DIV2K_train_HR.
      train_lr_dir='',  # '' = MATLAB bicubic LR made on the fly (§4.1).
      val_dir='', val_lr_dir='',
      tfds_name='div2k/bicubic_x4', tfds_data_dir='',
      tfds_train_split='train', tfds_val_split='validation',
      hr_patch=128,  # §4.1: "HR patches of size 128x128".
      batch_size=16,  # §4.1: "The mini-batch size is set to 16".
      augment=True,  # §4.1: "flipped and rotated".
      num_threads=8, prefetch=2, max_val_images=10,
      # A folder for decoded training images (.npy, memory-mapped): PNG
      # decoding is ~96% of the pipeline's CPU (benchmarks/pipeline.py);
      # DIV2K's 800 images take ~6.6 GB there.
      cache_dir=''))


def train(num_steps: int) -> ConfigDict:
  """Loop settings: steps, logging, evaluation and checkpoint intervals."""
  return ConfigDict(dict(num_steps=num_steps, log_every=100, eval_every=5_000,
                         checkpoint_every=5_000, keep_checkpoints=3))


def evaluation() -> ConfigDict:
  """Evaluation of the held-out set during and after training."""
  return ConfigDict(dict(tile=128, overlap=32, rounded_y=True, grid_images=4))


def adam(lr: float, **schedule) -> ConfigDict:
  """Adam β1=0.9, β2=0.999, ε=1e-8, no weight decay (paper 000 §4.1)."""
  # milestones count the steps of the stage the optimizer trains in (the GAN
  # stage after a warm-up); milestone_fractions are fractions of its length.
  fields = dict(lr=lr, b1=0.9, b2=0.999, eps=1e-8, decay_every=0,
                decay_factor=0.5, milestones=(), milestone_fractions=())
  fields.update(schedule)
  return ConfigDict(fields)


def small_generator(config) -> None:
  """Demo departure: a small RRDBNet whose output starts at bicubic."""
  config.model.update(num_feat=32, num_block=2, num_grow_ch=16,
                      bicubic_skip=True)


def demo_data(config, hr_patch: int, batch_size: int) -> None:
  """Demo departure: the embedded images, small patches and batches."""
  config.data.update(source='demo', hr_patch=hr_patch, batch_size=batch_size,
                     num_threads=2)
  config.eval.update(tile=0, grid_images=3)


def tiny(config, hr_patch: int = 32) -> None:
  """Smoke-test sizes: every network a few thousand parameters, 4 steps."""
  config.model.update(num_feat=8, num_block=1, num_grow_ch=4,
                      bicubic_skip=True)
  config.encoder.update(cut='conv3_3', num_upsample_feat=8, width_divisor=8)
  config.data.update(source='demo', hr_patch=hr_patch, batch_size=4,
                     num_threads=2, max_val_images=1)
  config.train.update(num_steps=4, log_every=1, eval_every=0,
                      checkpoint_every=2)
  config.eval.update(tile=0, grid_images=1)


def lsrgan_family(method_name: str, perceptual: str,
                  use_encoder: bool) -> ConfigDict:
  """Stage 2 of paper 000 (§4.1) for ESRGAN/LSRGAN (perceptual='vgg') and
  CESRGAN/CLSRGAN ('contextual'); the encoder L and μ term when use_encoder."""
  config = ConfigDict()
  config.method = 'lsrgan'
  config.name = method_name  # For tables only.
  config.seed = 0
  config.scale = 4  # §4.1.
  # §4.1: G and L start from the PSNR pre-training (rrdb_psnr.py workdir).
  config.init_from = ''
  config.psnr_warmup_steps = 0  # Only for runs without init_from (demos).
  # True: a GAN run may start from a random G (no init_from, no warm-up);
  # training refuses that otherwise (methods/base.py pretrained_g_check).
  config.allow_random_g = False
  config.model = generator()
  config.encoder = encoder(enabled=use_encoder)
  # ESRGAN's VGG-style D (§3.1) with BN and no weight normalization;
  # norm='spectral' is paper 002's ESRGAN* (experiments/esrgan_sn.py).
  config.disc = ConfigDict(dict(num_feat=64, norm='none', batch_norm=True))
  # VGG19 weights for the perceptual/contextual loss: a torchvision .pth, a
  # Keras .h5 or our .npz; 'random' only for smoke tests (logged loudly).
  config.perceptual = ConfigDict(dict(weights=''))
  config.loss = ConfigDict(dict(
      perceptual=perceptual,  # eq. 1/10: 'vgg'; eq. 12/13: 'contextual'.
      perceptual_weight=1.0,  # eq. 1: L_percep has weight 1.
      # ESRGAN: VGG19 conv5_4 before ReLU, L1 (eq. 1).
      vgg_layer_weights=ConfigDict({'conv5_4': 1.0}),
      # §3: "VGG19-conv34 feature maps", as Mechrez et al.'s official code
      # names them: its conv3_4 is the ReLU output (roimehrez/contextualLoss
      # vgg_model.py build_net; the PyTorch port's default is relu3_4).
      cx_layer='relu3_4',
      cx_band_width=0.5,  # h of eq. 11 (contextual-loss code's default).
      cx_max_samples=65,  # Official CX code samples at most 65x65 positions.
      gan_type='ragan',  # L_G^Ra / L_D^Ra (eq. 1, §1).
      # False: D's RaGAN loss is differentiated through both means, as in
      # the old BasicSR that ESRGAN and LSRGAN were released with
      # (codes/models/SRRaGAN_model.py); True: the current BasicSR
      # (basicsr/models/esrgan_model.py), which detaches them.
      ragan_detach_means=False,
      adv_weight=5e-3,  # λ, §4.1.
      pixel_weight=1e-2,  # η, §4.1.
      latent_weight=1e-3 if use_encoder else 0.0,  # μ, §4.1 (eqs. 10, 13).
      latent_sign=-1.0,  # eq. 8/10 write −μ|L(y) − L(G(z))|₁.
  ))
  # §4.1: lr 1e-4 "halved at [50k, 100k, 200k, 300k] iterations", Adam as in
  # stage 1, for D, G and L.
  config.optim = adam(1e-4, milestones=(50_000, 100_000, 200_000, 300_000))
  # Not in the paper: BasicSR keeps an EMA of G (0.999). The paper's G is
  # used for prediction unless ema.predict is set.
  config.ema = ConfigDict(dict(decay=0.999, predict=False))
  config.data = data()
  config.train = train(500_000)  # §4.1: "up to 500000 iterations".
  config.eval = evaluation()
  return config


def lsrgan_variant(config, arg) -> ConfigDict:
  """Applies a variant ('demo', 'tiny') to an lsrgan_family config; locks it."""
  if arg == 'demo':
    # Departures for a few CPU minutes on the embedded images: a small G
    # starting at bicubic with its own PSNR warm-up, a narrow encoder and D,
    # a random-initialised VGG19 (no weights can be downloaded here) read at
    # conv2_2 (conv5_4 would cost ~13 GFLOP per 128x128 image), batch 4 and
    # a constant lr.
    small_generator(config)
    config.encoder.update(cut='conv3_3', num_upsample_feat=32,
                          width_divisor=4)
    config.disc.num_feat = 16
    config.perceptual.weights = 'random'
    config.loss.vgg_layer_weights = ConfigDict({'conv2_2': 1.0})
    config.loss.cx_layer = 'relu2_2'
    config.optim.update(lr=2e-4, milestones=())
    config.psnr_warmup_steps = 600
    demo_data(config, hr_patch=128, batch_size=4)
    config.train.update(num_steps=800, log_every=50, eval_every=0,
                        checkpoint_every=200)
  elif arg == 'tiny':
    tiny(config, hr_patch=128)  # The ESRGAN D needs 128x128 inputs.
    config.model.bicubic_skip = True
    config.disc.num_feat = 4
    config.perceptual.weights = 'random'
    config.loss.vgg_layer_weights = ConfigDict({'conv1_1': 1.0})
    config.loss.cx_layer = 'relu1_1'
    config.loss.cx_max_samples = 8
    config.psnr_warmup_steps = 1
    config.data.batch_size = 4
  elif arg:
    raise ValueError(f'unknown variant {arg!r}; expected "", "demo" or "tiny"')
  config.lock()
  return config
