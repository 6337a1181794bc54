"""Image-quality metrics: PSNR/SSIM/L1 on Y with the MATLAB SR conventions."""

from jaxsr.metrics.niqe import niqe
from jaxsr.metrics.psnr_ssim import l1_y
from jaxsr.metrics.psnr_ssim import psnr
from jaxsr.metrics.psnr_ssim import psnr_rgb
from jaxsr.metrics.psnr_ssim import psnr_y
from jaxsr.metrics.psnr_ssim import ssim
from jaxsr.metrics.psnr_ssim import ssim_y
from jaxsr.metrics.psnr_ssim import summarize
