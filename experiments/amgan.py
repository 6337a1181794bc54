"""AMGAN (paper 003, the supplement of "Learning the Non-differentiable Optimization for Blind SR").

  python -m jaxsr.main --config experiments/amgan.py \
      --config.data.train_dir=DIV2K_train_HR \
      --config.features.vgg19=vgg19-dcbb9e9d.pth \
      --config.features.dists=weights.pt \
      --config.features.dists_vgg16=vgg16-397923af.pth --workdir runs/amgan
  python -m jaxsr.main --config experiments/amgan.py:demo --workdir runs/amgan-demo

Trains AMNet on HR patches degraded on the fly (random isotropic Gaussian
kernels of width U(0.2, 4.0) on 21x21, MATLAB bicubic x4, as IKC's x4
protocol) with the true kernel's PCA code (stage 'sr'), then the kernel
predictor by regression on that code (stage 'predictor'); the model then
super-resolves from the LR alone. Score it blind with
`python -m jaxsr.evaluate --workdir runs/amgan --data Set5 --scale 4
--degradation gaussian --kernel_width 0.2,1.3,2.6` (Table 1's protocol).

Variants (comma-separated):
- 'ragan': AMGAN* (the supplement's Table 1 ablation: ESRGAN's relativistic
  GAN instead of RealnessGAN);
- 'demo': CPU minutes on the embedded images (random-initialised VGG19 and
  DISTS backbone, logged as warnings: no ImageNet weights can be had here);
- 'tiny': tests only.
"""

import ml_collections

from jaxsr import config_lib

ConfigDict = ml_collections.ConfigDict
VARIANTS = ('ragan', 'demo', 'tiny')


def rl_config() -> ConfigDict:
  """AMGAN-RL's stages (jaxsr/methods/amgan_rl.py), off (0 steps).

  Algorithm 1 gives no number; every value is ours unless noted.
  """
  return ConfigDict(dict(
      fill_steps=0, ddpg_steps=0,
      capacity=10_000,  # Transitions held (replay buffer R).
      batch_size=64,  # N of lines 6-8 (DDPG's minibatch, Lillicrap et al.).
      # DDPG's Gaussian action noise, in units of each code component's
      # spread over the training degradations.
      explore_std=0.3,
      # 'niqe': r = -NIQE(render) (the CVPR abstract's example of a
      # non-differentiable reward; MATLAB-exact, host callback); 'psnr':
      # PSNR against the HR. niqe_params: '' = $JAXSR_NIQE_PARAMS or
      # `python -m jaxsr.assets niqe`'s cache.
      reward='niqe', niqe_params='', crop_border=0,
      # 'as_written': line 7 literally (its gradient ignores r, see
      # jaxsr/rl/ddpg.py); 'squared_td': (r - Q)^2, one-step episodes.
      critic_loss='squared_td',
      # 'pretrained': r = score(render) - score(pretrained predictor's
      # render of the same LR) (same best code, far less variance);
      # 'none': the raw score.
      baseline='pretrained',
      reward_clip=5.0,  # |r| <= 5 (DQN's clipping; 0: none).
      # 'code_and_pretrained': Q reads the pretrained code of s too.
      critic_input='code_and_pretrained',
      gamma=0.99,  # Line 7's gamma (as_written only); DDPG's usual value.
      critic_lr=1e-3, actor_lr=1e-4,  # DDPG's (Lillicrap et al.).
      critic_features=(32, 64, 64), critic_hidden=(128, 128),
      eval_widths=(0.2, 1.3, 2.6),  # Table 1's widths (rl_results.json).
      spread_samples=4096,  # Codes drawn to measure their spread.
  ))


def get_config(arg=None):
  """AMGAN as the supplement describes it, or variants (module doc)."""
  tokens = config_lib.variant_tokens(arg, VARIANTS)
  config = ConfigDict()
  config.method = 'amgan'
  config.seed = 0
  config.init_from = ''
  config.scale = 4  # Table 1 and Figures 2-3: x4.
  # AMNet (jaxsr/models/amnet.py): the paper gives no sizes; EDSR-baseline
  # widths, one adaptive modulation layer per residual block (ours).
  config.model = ConfigDict(dict(num_feat=64, num_block=16, mod_hidden=64,
                                 bicubic_skip=False))
  # The kernel predictor (LR -> code; the actor of AMGAN-RL): ours.
  # bound > 0 squashes its output to (-bound, bound); 0: unbounded.
  config.predictor = ConfigDict(dict(num_feat=64, num_down=3, bound=0.0))
  # The realness D: ESRGAN's VGG-style D (the supplement's Fig. 1 is not in
  # the text) ending in num_outcomes logits; 51 outcomes as RealnessGAN's
  # image runs (the supplement gives none).
  config.disc = ConfigDict(dict(num_feat=64, num_outcomes=51, norm='none',
                                batch_norm=True))
  # Degradations (jaxsr/data/degradations.py), IKC's x4 protocol (the paper
  # compares with IKC/DAN; research/prior-art.md §4): isotropic Gaussian
  # widths U(0.2, 4.0) on 21x21, no noise; rate_iso < 1 mixes in IKC's
  # anisotropic kernels, noise_max > 0 adds noise (its level joins the
  # code). The kernel PCA (10 dims, IKC/DAN) is fitted on pca_kernels
  # kernels drawn from pca_seed and kept in the checkpoint.
  config.degradation = ConfigDict(dict(
      sigma_min=0.2, sigma_max=4.0, rate_iso=1.0, scaling=3.0,
      noise_max=0.0, rate_clean=0.2, noise_code_scale=10.0, kernel_size=21,
      pca_dim=10, pca_seed=0, pca_kernels=30_000,
      # The held-out LR scored during training: Table 1's middle width.
      val_width=1.3))
  config.loss = ConfigDict(dict(
      # Supplement, total loss: L1 + 15 Lvgg + 0.01 Lrealness + 10 LDISTS.
      pixel_weight=1.0, vgg_weight=15.0, adv_weight=0.01, dists_weight=10.0,
      # Supplement, L_vgg: VGG19 relu1_1..relu5_1, w_l = 1e3 / C_l^2, each
      # layer's L1 divided by its number of elements.
      vgg_layers=('relu1_1', 'relu2_1', 'relu3_1', 'relu4_1', 'relu5_1'),
      vgg_numerator=1e3,
      gan='realness',  # 'ragan': AMGAN* (supplement Table 1).
      # Supplement: A1 (real) ~ Gaussian, A0 (fake) ~ Uniform;
      # 'public_code': RealnessGAN's code, the opposite naming.
      anchors='supplement',
      # Supplement's L_realness = KL(A1 || D(G)) - KL(A0 || D(G));
      # 'relativistic' / 'ce': RealnessGAN's code's G losses.
      g_loss='supplement',
      # RealnessGAN's code shifts A1 by +1 and A0 by -1 on supports
      # linspace(-1, 1, outcomes) (the supplement names no skew).
      positive_skew=1.0, negative_skew=-1.0,
  ))
  # Local weight files of the loss networks; 'random' only for demos/tests
  # (logged as a warning). dists: DISTS' weights.pt (alpha, beta);
  # dists_vgg16: torchvision's ImageNet VGG16 ('from_weights' when the dists
  # file is a whole-module state dict).
  config.features = ConfigDict(dict(vgg19='', dists='', dists_vgg16=''))
  # The supplement gives no optimizer settings: ESRGAN's (Adam 1e-4,
  # betas 0.9/0.999, halved at 50k/100k/200k/300k).
  config.optim = config_lib.adam(
      1e-4, milestones=(50_000, 100_000, 200_000, 300_000))
  config.data = config_lib.data()  # DIV2K HR patches of 128 (ESRGAN's).
  config.train = config_lib.train(400_000)  # The 'sr' stage (ours).
  config.predictor_steps = 100_000  # The 'predictor' stage (ours).
  config.eval = config_lib.evaluation()
  config.rl = rl_config()  # No RL step here: experiments/amgan_rl.py.
  if 'ragan' in tokens:
    # "the same model trained with Relativistic GAN": only the GAN changes
    # (the adversarial weight stays 0.01; ESRGAN's D with one logit).
    config.loss.gan = 'ragan'
  if 'demo' in tokens:
    config.model.update(num_feat=32, num_block=4, mod_hidden=32,
                        bicubic_skip=True)
    config.predictor.num_feat = 32
    config.disc.update(num_feat=16, num_outcomes=11)
    config.features.update(vgg19='random', dists='random',
                           dists_vgg16='random')
    config.degradation.pca_kernels = 5_000
    config.optim.update(lr=2e-4, milestones=())
    config_lib.demo_data(config, hr_patch=64, batch_size=4)
    config.predictor_steps = 300
    config.train.update(num_steps=600, log_every=50, eval_every=0,
                        checkpoint_every=100)
  if 'tiny' in tokens:
    config.model.update(num_feat=4, num_block=1, mod_hidden=4,
                        bicubic_skip=True)
    config.predictor.update(num_feat=4, num_down=1)
    config.disc.update(num_feat=4, num_outcomes=5)
    config.features.update(vgg19='random', dists='random',
                           dists_vgg16='random')
    config.loss.vgg_layers = ('relu1_1', 'relu2_1')
    config.degradation.update(pca_kernels=500, pca_dim=4)
    config.data.update(source='demo', hr_patch=16, batch_size=4,
                       num_threads=2, max_val_images=1)
    config.predictor_steps = 2
    config.train.update(num_steps=2, log_every=1, eval_every=0,
                        checkpoint_every=1)
    config.eval.update(tile=0, grid_images=1)
    config.rl.update(capacity=16, batch_size=4, critic_features=(4,),
                     critic_hidden=(8,), eval_widths=(1.3,),
                     spread_samples=64, reward='psnr')
  config.lock()
  return config
