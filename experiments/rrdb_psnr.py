"""PSNR pre-training of RRDBNet G (LR->HR) and the LSR encoder L (HR->LR): LSRGAN stage 1.

Paper 000 (LSRGAN), §4.1. Run on DIV2K:
  python -m jaxsr.main --config experiments/rrdb_psnr.py \
      --config.data.train_dir=/data/DIV2K/DIV2K_train_HR --workdir runs/rrdb_psnr
Demo on the embedded images (about 8 minutes on a 2-core CPU; ends with a table
of PSNR/SSIM on held-out images, model vs bicubic, and writes grid.png):
  python -m jaxsr.main --config experiments/rrdb_psnr.py:demo --workdir runs/demo
Variants: '' (the paper), 'demo', 'tiny' (smoke tests only).
"""

import ml_collections

from jaxsr import config_lib


def get_config(arg=None):
  """The paper's configuration, or a named variant ('demo', 'tiny')."""
  config = ml_collections.ConfigDict()
  config.method = 'psnr'
  config.seed = 0
  config.scale = 4  # §4.1: "an upscaling factor of 4".
  config.init_from = ''  # Another workdir whose weights start this run.
  config.model = config_lib.generator()
  config.encoder = config_lib.encoder()
  # §4.1: lr 2e-4 "decayed by a half every 2×10^5 of mini-batch updates".
  config.optim = config_lib.adam(2e-4, decay_every=200_000)
  # Not a paper value, and not a change of the math: the batch-16 gradient
  # is computed 4 images at a time and averaged (unrolled). On the 2-core CPU
  # the paper step drops from 26.9 s to 19.5 s (benchmarks/RESULTS.md);
  # 0 = the whole batch at once.
  config.optim.microbatch_size = 4
  config.data = config_lib.data()
  config.train = config_lib.train(500_000)  # §4.1: "over 500000 iterations".
  config.eval = config_lib.evaluation()

  if arg == 'demo':
    # Departures from the paper, for a few CPU minutes on the embedded images:
    # a small RRDBNet starting at bicubic, no encoder L (its VGG16 trunk would
    # dominate the CPU cost), 96x96 patches, batch 8, constant lr 5e-4.
    config_lib.small_generator(config)
    config.encoder.enabled = False
    config.optim.update(lr=5e-4, decay_every=0, microbatch_size=0)
    config_lib.demo_data(config, hr_patch=96, batch_size=8)
    config.train.update(num_steps=1500, log_every=50, eval_every=0,
                        checkpoint_every=500)
  elif arg == 'tiny':
    config_lib.tiny(config)
    config.optim.microbatch_size = 0
  elif arg:
    raise ValueError(f'unknown variant {arg!r}; expected "", "demo" or "tiny"')
  config.lock()
  return config
