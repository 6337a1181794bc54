"""SAN-SR (paper 002, §Single Image Super Resolution): SRResNet G, SAN critic.

Start from a PSNR-trained SRResNet (the ':psnr' variant's workdir, or any
workdir whose g_params are this SRResNet) and a VGG19 weight file:
  python -m jaxsr.main --config experiments/san_sr.py:psnr \
      --config.data.train_dir=/data/DIV2K/DIV2K_train_HR \
      --workdir runs/srresnet_psnr
  python -m jaxsr.main --config experiments/san_sr.py \
      --config.init_from=runs/srresnet_psnr \
      --config.perceptual.weights=/weights/vgg19-dcbb9e9d.pth \
      --config.data.train_dir=/data/DIV2K/DIV2K_train_HR --workdir runs/san_sr
Demo on the embedded images, with its own short PSNR warm-up (a few CPU
minutes; ends with PSNR/SSIM of the warm-up model and of the GAN model next
to bicubic on held-out images):
  python -m jaxsr.main --config experiments/san_sr.py:demo \
      --workdir runs/san-demo
The variant string is a comma-separated list, at most one of each group:
- recipe: '' (the paper, λ_adv = 0.1), 'adv001' (λ_adv = 0.01, Table 2's
  "Ours (0.01)"), 'official' (the official README's SAN-SRGAN command),
  'psnr' (G-only L1 pre-training, the README's PSNR command);
- critic: '' (the official d_sanvanilla: BN after every conv, which cancels
  SAN on the convs), 'nobn' (the paper's text: no BN, so SAN's divisors act
  on all ten convs);
- size: 'demo', 'tiny' (smoke tests only).
E.g. `experiments/san_sr.py:nobn,demo` is the demo with the paper's critic.
GAN runs start from a PSNR-trained G: init_from, a warm-up, or
--config.allow_random_g=True to train from a random G anyway.
"""

import ml_collections

from jaxsr import config_lib

ConfigDict = ml_collections.ConfigDict
# Each group's tokens exclude one another; '' alone is the paper's recipe.
GROUPS = (('adv001', 'official', 'psnr'), ('nobn',), ('demo', 'tiny'))
VARIANTS = ('',) + sum(GROUPS, ())

# The official runs count epochs; with DIV2K's 800 images and batch 16, one
# patch per image per epoch (our pipeline's epoch) is 50 steps.
_OFFICIAL_STEPS_PER_EPOCH = 800 // 16


def _official(config) -> None:
  """The README's settings shared by its PSNR and SAN-SRGAN commands."""
  # main.py defaults: Adam lr 2e-4, G betas (0.9, 0.99), batch 16, StepLR
  # (step 300 epochs, gamma 0.5) over 1000 epochs.
  config.optim.update(lr=2e-4, b1=0.9, b2=0.99, milestone_fractions=(),
                      decay_every=300 * _OFFICIAL_STEPS_PER_EPOCH)
  config.d_optim.update(lr=2e-4, milestone_fractions=(),
                        decay_every=300 * _OFFICIAL_STEPS_PER_EPOCH)
  config.data.batch_size = 16
  config.data.hr_patch = 160  # --crop-size 40 (LR) at x4.
  config.train.num_steps = 1000 * _OFFICIAL_STEPS_PER_EPOCH


def _tokens(arg) -> list[str]:
  """The variant string's comma-separated tokens, validated."""
  tokens = config_lib.variant_tokens(arg, VARIANTS[1:])
  for group in GROUPS:
    chosen = [t for t in tokens if t in group]
    if len(chosen) > 1:
      raise ValueError(f'variants {chosen} exclude one another; give one')
  return tokens


def get_config(arg=None):
  """The paper's SAN-SR configuration, or variants (see the module doc)."""
  tokens = _tokens(arg)
  config = ConfigDict()
  config.method = 'san_sr'
  config.name = 'san_sr'  # For tables only.
  config.seed = 0
  config.scale = 4  # "We focus on 4x SR for images down-sampled with bicubic".
  # "The generator's weights are initialized to those of a pre-trained model
  # optimized to minimize mean squared error": a PSNR workdir (':psnr').
  config.init_from = ''
  config.psnr_warmup_steps = 0  # Only for runs without init_from (demos).
  # True: a GAN run may start from a random G (no init_from, no warm-up);
  # training refuses that otherwise, as the paper starts from a PSNR model.
  config.allow_random_g = False
  # "The much slimmer SRGAN network ... we remove the batch normalization
  # layers": official g_srgan, 64 features, 16 residual blocks (1.52M).
  config.model = ConfigDict(dict(num_feat=64, num_block=16))
  config.critic = ConfigDict(dict(
      # "10 convolutional layers and 2 fully connected ones": the official
      # d_sanvanilla, widths 64..512, FC 8192 -> 64 -> 1, 128x128 crops.
      num_features=64, max_features=512, num_blocks=5,
      norm='san',  # Eq. 8 for convs, top singular value for FC layers.
      # Official d_sanvanilla; the paper's text has no BN ('nobn'). BN after
      # each conv cancels the conv divisors (models/san_critic.py).
      batch_norm=True,
      # "We use cyclic padding for all convolutional layers" (Lemma 1); the
      # official d_vanilla (norm 'spectral' or 'none') pads with zeros.
      circular=True,
      # Eq. 9: the SR experiments state no subset; r = 100% of the filters,
      # so g = 1 (0 here means "eq. 9's g for r").
      gain=0.0, ratio=1.0, subset='pairs',
      momentum=0.0,  # Official default: s is recomputed, not averaged.
      legacy_rownorm=False,  # True: the released code's norm under torch 1.7+.
      # "In all our experiments, we apply normalization after each critic
      # update step" (every N steps: Fig. 6; the official update_rate).
      normalize_every=1,
  ))
  # VGG19 weights for the features term: a torchvision .pth, a Keras .h5
  # or our .npz; 'random' only for smoke tests and demos (logged loudly).
  config.perceptual = ConfigDict(dict(weights=''))
  config.loss = ConfigDict(dict(
      content_weight=1e-2,  # λ_content of eq. 10 (L1 on pixels): 10^-2.
      features_weight=1.0,  # Eq. 10: L_features is unweighted.
      # "The 4th convolution layer (before the 5th max-pooling) of a
      # pre-trained 19-layer VGG": conv5_4, pre-ReLU, L1 (official code).
      feature_layer='conv5_4',
      adv_weight=0.1,  # λ_adversarial of eq. 10: 10^-1 (or 10^-2).
  ))
  # "Adam ... with momentum parameters set to 0.5 and 0.9"; "the learning
  # rate is initialized to 2·10^-4 and is decreased by a factor of 2 at
  # 12.5%, 25%, 50% and 75% of the total number of iterations" (of 400K):
  # fractions of the GAN stage's length, so they follow train.num_steps.
  fractions = (0.125, 0.25, 0.5, 0.75)
  config.optim = config_lib.adam(2e-4, b1=0.5, b2=0.9,
                                 milestone_fractions=fractions)
  config.d_optim = config_lib.adam(2e-4, b1=0.5, b2=0.9,
                                   milestone_fractions=fractions)
  config.data = config_lib.data()
  # "800 DIV2K training images ... random cropping and horizontal
  # flipping" (our pipeline flips and rotates); "a batch size of 32".
  config.data.batch_size = 32
  # Not in the paper: HR patches larger than the critic's 128 crop, as the
  # official README's --crop-size 40 (LR) -> 160 (HR).
  config.data.hr_patch = 160
  config.train = config_lib.train(400_000)  # "400K equal D and G updates".
  config.eval = config_lib.evaluation()

  if 'adv001' in tokens:
    config.loss.adv_weight = 1e-2  # Table 2, "Ours (0.01)".
  elif 'official' in tokens:
    # README "Train SAN-SRGAN x4 model": --reconstruction-weight 1
    # --perceptual-weight 1 --adversarial-weight 0.1, d_sanvanilla with
    # max_features 512 and gain 1.05, --dis-betas 0.5 0.9.
    _official(config)
    config.loss.update(content_weight=1.0, features_weight=1.0,
                       adv_weight=0.1)
    config.critic.gain = 1.05
    config.d_optim.update(b1=0.5, b2=0.9)
    # Official update_rate 2 counts forward calls (3 per step: D(real),
    # D(fake), D(G)), so s is refreshed 1.5 times per step on average; once
    # per step after the critic update is the closest whole number.
    config.critic.normalize_every = 1
  elif 'psnr' in tokens:
    # README "Train SRGAN x4 PSNR model": --reconstruction-weight 1 (L1)
    # only; the paper says MSE. Every step is the warm-up step (linked:
    # overriding train.num_steps keeps it so).
    _official(config)
    config.psnr_warmup_steps = config.train.get_ref('num_steps')
  if 'nobn' in tokens:
    # The paper: "a simple feed forward CNN architecture with 10 convolutional
    # layers and 2 fully connected ones", normalized by SAN; no BN.
    config.critic.batch_norm = False
    config.name = 'san_sr_nobn'
  if 'demo' in tokens:
    # Departures for a few CPU minutes on the embedded images: a small G and
    # critic (4 blocks: 64x64 crops of 96x96 patches), its own PSNR
    # warm-up, a random-initialised VGG19 (no weights can be downloaded
    # here) read at conv2_2 (conv5_4 would cost ~13 GFLOP per 128x128
    # image), batch 4 and a constant lr.
    config.model.update(num_feat=32, num_block=4)
    config.critic.update(num_features=16, max_features=64, num_blocks=4)
    config.perceptual.weights = 'random'
    config.loss.feature_layer = 'conv2_2'
    config.optim.update(milestone_fractions=())
    config.d_optim.update(milestone_fractions=())
    config.psnr_warmup_steps = 1000
    config_lib.demo_data(config, hr_patch=96, batch_size=4)
    config.train.update(num_steps=1400, log_every=50, eval_every=0,
                        checkpoint_every=200)
  elif 'tiny' in tokens:
    # Smoke-test sizes (config_lib.tiny's fields, for this method's nets).
    config.model.update(num_feat=8, num_block=1)
    config.critic.update(num_features=4, max_features=8, num_blocks=2)
    config.perceptual.weights = 'random'
    config.loss.feature_layer = 'conv1_1'
    config.psnr_warmup_steps = 1
    config.optim.update(milestone_fractions=())  # Constant lr, 4 steps.
    config.d_optim.update(milestone_fractions=())
    config.data.update(source='demo', hr_patch=24, batch_size=4,
                       num_threads=2, max_val_images=1)
    config.train.update(num_steps=4, log_every=1, eval_every=0,
                        checkpoint_every=2)
    config.eval.update(tile=0, grid_images=1)
  config.lock()
  return config
