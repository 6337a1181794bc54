"""ESRGAN* (paper 002, Table 2): ESRGAN with a spectrally normalized D.

Paper 002 §Single Image Super Resolution: "for a fair comparison, we train an
equivalent version, ESRGAN*, with spectral normalization (Miyato et al.
2018)". Everything else is ESRGAN (paper 000 §4.1 values, see
experiments/esrgan.py): RRDBNet G from a PSNR pre-training, RaGAN, VGG19
conv5_4 perceptual loss, λ = 5e-3, η = 1e-2. Run:
  python -m jaxsr.main --config experiments/esrgan_sn.py \
      --config.init_from=runs/rrdb_psnr \
      --config.perceptual.weights=/weights/vgg19-dcbb9e9d.pth \
      --config.data.train_dir=/data/DIV2K/DIV2K_train_HR --workdir runs/esrgan_sn
Demo on the embedded images (a few CPU minutes; ends with PSNR/SSIM next to
bicubic on held-out images):
  python -m jaxsr.main --config experiments/esrgan_sn.py:demo \
      --workdir runs/esrgan-sn-demo
Variants: '' (the paper), 'demo', 'tiny' (smoke tests only).
"""

from jaxsr import config_lib


def get_config(arg=None):
  """ESRGAN with spectral normalization in D, or a variant ('demo', 'tiny')."""
  config = config_lib.lsrgan_family('esrgan_sn', perceptual='vgg',
                                    use_encoder=False)
  # Paper 002, Table 2 (ESRGAN*): spectral normalization of every conv and
  # linear layer of D, one power iteration per D call (Miyato et al.).
  # Paper 002 does not say whether BN stays; we keep ESRGAN's D otherwise
  # unchanged (departure-free reading of "an equivalent version").
  config.disc.norm = 'spectral'
  return config_lib.lsrgan_variant(config, arg)
