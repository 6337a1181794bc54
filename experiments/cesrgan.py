"""CESRGAN fine-tuning (paper 000 §4.1, stage 2); G loss eq. 12: CCX + λ L_G^Ra + η |y − G(z)|₁.

Start from a PSNR pre-training workdir (experiments/rrdb_psnr.py) and a VGG19
weight file:
  python -m jaxsr.main --config experiments/cesrgan.py \
      --config.init_from=runs/rrdb_psnr \
      --config.perceptual.weights=/weights/vgg19-dcbb9e9d.pth \
      --config.data.train_dir=/data/DIV2K/DIV2K_train_HR --workdir runs/cesrgan
Demo on the embedded images, with its own short PSNR warm-up (a few CPU
minutes; ends with PSNR/SSIM next to bicubic on held-out images):
  python -m jaxsr.main --config experiments/cesrgan.py:demo --workdir runs/cesrgan-demo
Variants: '' (the paper), 'demo', 'tiny' (smoke tests only).
"""

from jaxsr import config_lib


def get_config(arg=None):
  """The paper's CESRGAN configuration, or a variant ('demo', 'tiny')."""
  config = config_lib.lsrgan_family('cesrgan', perceptual='contextual',
                                    use_encoder=False)
  return config_lib.lsrgan_variant(config, arg)
