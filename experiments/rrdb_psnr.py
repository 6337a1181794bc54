"""PSNR pre-training of RRDBNet G (LR->HR) and the LSR encoder L (HR->LR): LSRGAN stage 1.

Paper 000 (LSRGAN), §4.1. Run on DIV2K:
  python -m jaxsr.main --config experiments/rrdb_psnr.py \
      --config.data.train_dir=/data/DIV2K/DIV2K_train_HR --workdir runs/rrdb_psnr
Demo on the embedded images (a few minutes on a 2-core CPU; prints a table of
PSNR/SSIM on held-out images, model vs bicubic, and writes grid.png):
  python -m jaxsr.main --config experiments/rrdb_psnr.py:demo --workdir runs/demo
Variants: '' (the paper), 'demo', 'tiny' (smoke tests only).
"""

import ml_collections


def get_config(arg=None):
  """The paper's configuration, or a named variant ('demo', 'tiny')."""
  config = ml_collections.ConfigDict()
  config.method = 'psnr'
  config.seed = 0
  config.scale = 4  # §4.1: "an upscaling factor of 4".
  config.init_from = ''  # Another workdir whose weights start this run.

  # ESRGAN's RRDBNet, kept unchanged by LSRGAN (§3.1).
  config.model = ml_collections.ConfigDict(dict(
      num_feat=64, num_block=23, num_grow_ch=32, bicubic_skip=False))
  # L: "the first few layers of the VGG16 ... followed by a few upscaling
  # layers" (§3.1). Where to cut is not given in the paper: our choice.
  config.encoder = ml_collections.ConfigDict(dict(
      enabled=True, cut='conv4_3', num_upsample_feat=64))

  # §4.1: Adam β1=0.9, β2=0.999, ε=1e-8, no weight decay; lr 2e-4 halved
  # every 2e5 mini-batch updates.
  config.optim = ml_collections.ConfigDict(dict(
      lr=2e-4, b1=0.9, b2=0.999, eps=1e-8, decay_every=200_000,
      decay_factor=0.5, milestones=()))

  config.data = ml_collections.ConfigDict(dict(
      source='folder',  # 'folder' | 'demo' | 'tfds'.
      train_dir='',  # DIV2K 800 training images (§4.1): DIV2K_train_HR.
      train_lr_dir='',  # '' = MATLAB bicubic LR made on the fly (§4.1).
      val_dir='', val_lr_dir='',
      tfds_name='div2k/bicubic_x4', tfds_data_dir='',
      tfds_train_split='train', tfds_val_split='validation',
      hr_patch=128,  # §4.1: "HR patches of size 128x128".
      batch_size=16,  # §4.1: "The mini-batch size is set to 16".
      augment=True,  # §4.1: "flipped and rotated".
      num_threads=8, prefetch=2, max_val_images=10))

  config.train = ml_collections.ConfigDict(dict(
      num_steps=500_000,  # §4.1: "over 500000 iterations".
      log_every=100, eval_every=5_000, checkpoint_every=5_000,
      keep_checkpoints=3))
  config.eval = ml_collections.ConfigDict(dict(
      tile=128, overlap=32, rounded_y=True, grid_images=4))

  if arg == 'demo':
    # Departures from the paper, for a few CPU minutes on the embedded images:
    # a small RRDBNet whose output starts at bicubic (global bicubic skip),
    # no encoder L (its VGG16 trunk dominates the CPU cost), small patches,
    # a constant learning rate.
    config.model.update(num_feat=32, num_block=2, num_grow_ch=16,
                        bicubic_skip=True)
    config.encoder.enabled = False
    config.optim.update(lr=5e-4, decay_every=0)
    config.data.update(source='demo', hr_patch=96, batch_size=8,
                       num_threads=2)
    config.train.update(num_steps=1500, log_every=50, eval_every=0,
                        checkpoint_every=500)
    config.eval.update(tile=0, grid_images=3)
  elif arg == 'tiny':
    # Smoke tests: a few seconds per step budget, both networks exercised.
    config.model.update(num_feat=8, num_block=1, num_grow_ch=4,
                        bicubic_skip=True)
    config.encoder.update(cut='conv3_3', num_upsample_feat=8)
    config.data.update(source='demo', hr_patch=32, batch_size=4,
                       num_threads=2, max_val_images=1)
    config.train.update(num_steps=4, log_every=1, eval_every=0,
                        checkpoint_every=2)
    config.eval.update(tile=0, grid_images=1)
  elif arg:
    raise ValueError(f'unknown variant {arg!r}; expected "", "demo" or "tiny"')
  config.lock()
  return config
