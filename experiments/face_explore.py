"""Face SR by regularized latent exploration (paper 001) over a GAN prior.

  python -m jaxsr.main --config experiments/face_explore.py \
      --config.prior.weights=stylegan2-ffhq-config-f.pt \
      --config.data.lr_dir=faces_lr --config.scale=16 --workdir runs/faces
  python -m jaxsr.main --config experiments/face_explore.py:dcgan \
      --config.prior.weights=../shared/data/face_prior \
      --config.data.lr_dir=faces_4px --config.scale=8 --workdir runs/faces-dcgan

There is nothing to train: the run checkpoints the prior (so that evaluate
and restore work from the workdir alone) and searches every input face,
writing sr/<name>.png, best/ and last/<name>.png, lr/<name>.png (the LR next
to the downscaled SR), hr/<name>.png (with HR faces), curves/<name>.csv|.png
and results.json (per-face lr_l2 and PULSE's success lr_l2 <= eps;
PSNR/SSIM/NIQE and bicubic's when HR faces are given).

Variants (comma-separated):
- 'dcgan': the offline prior, the 32x32 CelebA DCGAN of ../shared/data/
  face_prior (x8 from 4x4 by default, x4 from 8x8 with --config.scale=4);
- 'pulse': PULSE (no semantic loss, G frozen), the baseline of Table 1;
- 'no_semantic': the paper's method without L_s (Table 2's ablation);
- 'demo': the DCGAN prior on embedded faces (faces sampled from the prior
  at fixed seeds; 'demo_lfw': scikit-image's LFW crops), CPU minutes;
- 'tiny': tests only.
"""

import ml_collections

from jaxsr import config_lib

ConfigDict = ml_collections.ConfigDict
VARIANTS = ('dcgan', 'pulse', 'no_semantic', 'demo', 'demo_lfw', 'tiny')


def get_config(arg=None):
  """The paper's method (StyleGAN2 prior, x16), or variants (module doc)."""
  tokens = config_lib.variant_tokens(arg, VARIANTS)
  config = ConfigDict()
  config.method = 'face_explore'
  config.seed = 0
  config.init_from = ''
  # §3.1: x8 and x16 (CelebA 128 px; a 1024 px StyleGAN2 from 64 px is x16).
  config.scale = 16
  config.prior = ConfigDict(dict(
      kind='stylegan2',  # §3: "StyleGAN pretrained on FFHQ" ('dcgan': ours).
      weights='',  # A local file (StyleGAN2) or folder (DCGAN); required.
      trainable_noise=5,  # PULSE's num_trainable_noise_layers (StyleGAN2).
      stats_samples=1_000_000,  # PULSE's mapping statistics (chunked).
  ))
  config.data = ConfigDict(dict(
      lr_dir='',  # LR faces, searched as they are.
      # HR faces: LR = MATLAB-bicubic downscale by config.scale; the run then
      # scores PSNR/SSIM/NIQE against them, with bicubic upscaling alongside.
      hr_dir='',
      demo='',  # 'prior' or 'lfw' (no download), see jaxsr/data/faces.py.
      num_faces=0,  # At most this many faces (0: all), sorted by name.
      batch_size=16,  # Faces searched at once (vmap; sharded over devices).
  ))
  config.search = ConfigDict(dict(
      steps=100,  # §3: "we iterate 100 times".
      lr_z=0.4,  # §3: "spherical optimizer with learning rate 0.4" (Adam).
      schedule='linear1cycledrop',  # PULSE's default (the paper is silent).
      lr_g=5e-5,  # §3: G fine-tuned online "adopting Adam ... 5e-5".
      finetune_g=True,  # §2: "θ_g is online finetuned".
      # Random restarts per face, the lowest loss kept (the paper: "starting
      # with a random initialization", i.e. one).
      restarts=1,
      eps=2e-3,  # PULSE's -eps: success iff lr_l2 <= eps.
      blocks=3,  # §3: "the last three convolution blocks of discriminator".
      # How an LR-sized image enters D (eq. 4 compares D(y_down) and D(x)):
      # MATLAB-bicubic upscaled to D's resolution (a choice of ours).
      d_input='bicubic',
      result='best',  # PULSE returns its lowest-loss iterate ('last').
      # Iterations per dispatch, 0: base.steps_per_call_auto (1 on CPU, where
      # a rolled lax.scan of the search runs far slower, 50 on GPU/TPU).
      # The same iterations either way.
      steps_per_call=0,
  ))
  config.loss = ConfigDict(dict(
      lambda_p=100.0,  # Eq. 2's λ_p (= PULSE's 100*L2).
      lambda_s=0.5,  # Eq. 2's λ_s; eq. 4 as a per-block mean |.|, summed.
      lambda_g=500.0,  # Eq. 2's λ_g.
      # L_g = geocross_scale * PULSE's GEOCROSS (mean(d^2 * 512) / 8 over W+
      # row pairs): with 1e-4, λ_g = 500 is exactly PULSE's 0.05 * GEOCROSS;
      # on PULSE's own scale 500 would outweigh λ_p L_p ~1e4-fold and pull
      # all W+ rows together. The raw value is logged. 0 for the DCGAN (one
      # latent row: no pairs).
      geocross_scale=1e-4,
      clamp_l2=True,  # PULSE: L2 clamped at eps from below.
  ))
  config.train = ConfigDict(dict(log_every=1, eval_every=0,
                                 checkpoint_every=0, keep_checkpoints=1))
  config.eval = ConfigDict(dict(tile=0, overlap=0, rounded_y=True,
                                grid_images=0))

  if 'dcgan' in tokens or 'demo' in tokens or 'demo_lfw' in tokens:
    config.prior.kind = 'dcgan'
    config.scale = 8  # 4x4 -> 32x32, the paper's x8.
  if 'pulse' in tokens:
    # PULSE: 100*L2 + 0.05*GEOCROSS, G frozen, no discriminator.
    config.loss.lambda_s = 0.0
    config.search.finetune_g = False
  if 'no_semantic' in tokens:
    config.loss.lambda_s = 0.0
  if 'demo' in tokens or 'demo_lfw' in tokens:
    config.prior.weights = '../shared/data/face_prior'
    config.data.update(demo='lfw' if 'demo_lfw' in tokens else 'prior',
                       num_faces=16)
  if 'tiny' in tokens:
    config.search.update(steps=3)
    config.data.update(num_faces=2, batch_size=2)
  config.lock()
  return config
