"""SinGAN with TTUR and adaptive adversarial training (paper 004): one image, one stage per scale.

Train a pyramid on one image (coarsest 25 px, finest 250 px), then sample:
  python -m jaxsr.main --config experiments/singan.py \
      --config.data.image=photo.png --workdir runs/singan
  python -m jaxsr.singan sample --workdir runs/singan --num 8 --size 1.0,1.5 \
      --out runs/singan/samples
x4 super-resolution of a low-resolution image (its own only training data):
  python -m jaxsr.main --config experiments/singan.py:sr \
      --config.data.image=lr.png --workdir runs/singan-sr
  python -m jaxsr.singan sr --workdir runs/singan-sr --factor 4 --out sr.png
CPU-sized runs on an embedded image (no download): ':demo' (samples of
sklearn's 'china'), ':sr_demo' (x4 SR of chelsea's 64 px LR of a 256 px crop).

The variant string is a comma-separated list:
- training (paper 004's table rows): 'singan' (plain SinGAN), 'ttur', 'ttur_fgm',
  'ttur_pgd', 'ttur_adaptive' (the paper's method, the default);
- task: 'sr' (paper §5.4: alpha 100, pyramid ratio r = s^(1/k));
- size: 'demo', 'sr_demo' (= sr + CPU sizes), 'tiny' (tests only).
E.g. `experiments/singan.py:sr,ttur_pgd` is Table 4's "SinGAN+TTUR+PGD" row.
"""

import ml_collections

from jaxsr import config_lib

ConfigDict = ml_collections.ConfigDict
TRAINING = ('singan', 'ttur', 'ttur_fgm', 'ttur_pgd', 'ttur_adaptive')
OTHERS = ('sr', 'demo', 'sr_demo', 'tiny')


def _training(config, name: str) -> None:
  """The training method of one of the paper's table rows."""
  if name == 'singan':
    # Official SinGAN: lr_g = lr_d = 5e-4, no adversarial training of D.
    config.optim.update(lr_g=5e-4, lr_d=5e-4)
    config.adversarial.mode = 'none'
    return
  # TTUR (§4.2, Heusel et al.): D learns faster than G. The paper prints no
  # values; these are SAGAN's TTUR rates, which a public SinGAN fork also
  # uses (research/prior-art.md §5.2): a choice of ours.
  config.optim.update(lr_g=1e-4, lr_d=4e-4)
  config.adversarial.mode = {'ttur': 'none', 'ttur_fgm': 'fgm',
                             'ttur_pgd': 'pgd',
                             'ttur_adaptive': 'adaptive'}[name]


def get_config(arg=None):
  """The paper's method on one image, or variants (see the module doc)."""
  tokens = config_lib.variant_tokens(arg, TRAINING + OTHERS)
  config = ConfigDict()
  config.method = 'singan'
  config.seed = 0
  # The SR factor of predict (evaluate, upscale, `singan sr`); the 'sr'
  # task's s (§5.4, Table 4: x4).
  config.scale = 4
  config.init_from = ''
  # The training image ('' = an embedded demo image, no download).
  config.data = ConfigDict(dict(
      image='', demo_image='chelsea',
      # Beyond the paper: several same-size images, one pyramid each,
      # trained at once (one vmapped program; sr_benchmark uses it).
      images=(),
      crop=0,  # > 0: train on the centre crop x crop square.
      # > 1: train on the (cropped) image bicubic-downscaled by this factor,
      # so that an SR run can be scored against it (the demos; not the paper).
      downscale=1))
  config.pyramid = ConfigDict(dict(
      task='samples',  # 'samples' (official rules) or 'sr' (§5.4).
      # §5.1: "coarsest scale to 25px and the finest scale to 250px", r ~ 4/3
      # (official scale_factor 0.75, min_size 25, max_size 250).
      scale_factor=0.75, min_size=25, max_size=250,
      sr_min_size=18,  # Official SR min_size.
  ))
  # Official nfc = min_nfc = 32, doubled every 4 scales, at most 128.
  config.model = ConfigDict(dict(
      base_features=32, max_features=128,
      # How the convs' gradients are computed (not the function): 'auto' =
      # 'winograd' on CPU (no XLA kernel-gradient convolutions, which
      # XLA:CPU runs slowly for one image: sr_demo's pyramid 0.65x the time),
      # 'xla' on GPU/TPU; 'xla' or 'winograd' to choose.
      kernel_grad='auto'))
  config.loss = ConfigDict(dict(
      alpha=10.0,  # Eq. 7's α (official alpha 10).
      gp_weight=0.1,  # WGAN-GP λ (official lambda_grad 0.1).
      d_steps=3, g_steps=3,  # Official Dsteps, Gsteps.
      noise_amp=0.1,  # Official noise_amp (times the reconstruction RMSE).
  ))
  config.optim = ConfigDict(dict(
      lr_g=1e-4, lr_d=4e-4,  # TTUR, see _training.
      b1=0.5, b2=0.999,  # Official Adam betas.
      milestone=1600, gamma=0.1,  # Official MultiStepLR (iterations).
  ))
  config.adversarial = ConfigDict(dict(
      mode='adaptive',  # Algorithm 1.
      # §4.2: "the embedding layer in multi-scale GANs is the last layer":
      # the tail conv's weights are perturbed (the NLP FGM/PGD recipe on an
      # embedding matrix); 'input' perturbs D's input images instead.
      target='last_layer',
      # The paper gives no values. Radii are absolute L2 norms of the
      # perturbation of the tail kernel (3x3x32 -> 1, norm ~0.34 at init):
      # 0.1 moves D's output by at most 10% of a unit-norm layer's.
      epsilon=0.1,  # FGM (eq. 12).
      radius=0.1,  # PGD ball r (eq. 13).
      alpha=0.03,  # PGD step α: 0.3 r, the NLP PGD recipe's ratio.
      steps=3,  # PGD T (the NLP recipe's K = 3).
      # Switch (Algorithm 1): PGD while W_sigma < kappa / (2 alpha) = 1, i.e.
      # while the attacked layer is a contraction, FGM once it expands.
      kappa=0.06,
      power_iters=3,  # Per D step, warm-started from the state's u.
  ))
  config.singan = ConfigDict(dict(
      iters_per_scale=2000,  # Official niter.
      # Iterations per dispatch (lax.scan over them): 0 = 50 on GPU/TPU, 1 on
      # CPU (methods/base.py steps_per_call_auto says why).
      steps_per_call=0,
      # `sr_benchmark`: same-size LRs as one stacked run (data.images) or one
      # by one: 'auto' = stacked on GPU/TPU, one by one on CPU (faster there:
      # methods/singan.py stacks_images), or 'always' / 'never'.
      stack_images='auto',
  ))
  config.train = ConfigDict(dict(log_every=50, eval_every=0,
                                 checkpoint_every=500, keep_checkpoints=2))
  config.eval = ConfigDict(dict(tile=0, overlap=0, rounded_y=True,
                                grid_images=0))

  training = [t for t in tokens if t in TRAINING]
  if len(training) > 1:
    raise ValueError(f'give one training variant, got {training}')
  _training(config, training[0] if training else 'ttur_adaptive')
  if 'sr' in tokens or 'sr_demo' in tokens:
    # §5.4: "we set the reconstruction loss weight α = 100 and pyramid scale
    # factor r = s^(1/k)".
    config.pyramid.task = 'sr'
    config.loss.alpha = 100.0
  if 'demo' in tokens or 'sr_demo' in tokens:
    # Departures for CPU minutes: fewer iterations per scale, a smaller
    # image (the pyramid rules are the paper's).
    config.singan.update(iters_per_scale=400)
    config.optim.milestone = 320  # The official 80% point.
    config.pyramid.max_size = 64
    if 'demo' in tokens:
      # A landscape (the paper's samples are scenes; an object's scale-0
      # samples rearrange its parts). 427x640, the pyramid 25x38 .. 43x64.
      config.data.demo_image = 'china'
    else:
      # x4 SR of chelsea's 256 px centre crop from its 64 px bicubic LR: a
      # 6-scale pyramid 18 .. 64 px, scored against the crop.
      config.data.update(crop=256, downscale=4)
    config.train.update(log_every=50, checkpoint_every=200)
  if 'tiny' in tokens:
    config.pyramid.update(max_size=32, min_size=20, sr_min_size=12)
    config.model.update(base_features=4, max_features=8)
    config.singan.update(iters_per_scale=2, steps_per_call=1)
    config.loss.update(d_steps=2, g_steps=2)
    config.train.update(log_every=1, checkpoint_every=1, keep_checkpoints=50)
    if config.pyramid.task == 'sr':
      config.data.update(crop=64, downscale=4)  # A 16 px LR, 3 scales.
  config.lock()
  return config
