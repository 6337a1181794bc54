"""PyTorch twins (NCHW) of jaxsr's networks and training steps, for benchmarks.

Benchmark-only: PyTorch is the `bench` extra and never a jaxsr dependency.
Each twin module names its submodules after the Flax parameter tree of its
jaxsr counterpart, so `params.load_flax` copies jaxsr parameters into it
(HWIO kernels -> OIHW weights, Dense kernels transposed) and the twin is
then the same function (`check.py` measures the forward difference).

  generators.py  RRDBNet (BasicSR layout), SRResNet without BN
  critics.py     ESRGAN VGG-style discriminator, SAN-SR critic
  features.py    VGG19 feature extractor, LSRGAN's encoder L, contextual loss
  steps.py       the PSNR, ESRGAN/LSRGAN family and SAN-SR training steps
  singan.py      SinGAN's per-scale G and D and its training iteration (TTUR,
                 WGAN-GP, FGM/PGD/adaptive attacks on D)
  face_priors.py the DCGAN and StyleGAN2 priors (G, D with block features)
  faces.py       paper 001's latent search (PULSE's spherical optimizer and
                 schedule, the loss terms, per-face G copies)
  amgan.py       AMNet, the kernel predictor, the realness D, DISTS, the
                 on-the-fly degradation, AMGAN's 'sr' and 'predictor' steps
  amgan_rl.py    AMGAN-RL's critic, ring buffer, play, 'fill' and 'ddpg'
  params.py      Flax param tree -> twin module
  check.py       forward and first-step agreement with jaxsr (needs jax)
"""
