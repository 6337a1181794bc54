"""Image-quality metrics: PSNR/SSIM/L1/RMSE on Y, NIQE, Ma/PI, SIFID, ..."""

# `sifid` and `rmse` stay module names (jaxsr.metrics.sifid.sifid,
# jaxsr.metrics.rmse.rmse); `niqe` is re-exported as the function.

from jaxsr.losses.dists import dists
from jaxsr.metrics.ma import load_model as load_ma_model
from jaxsr.metrics.ma import ma_score
from jaxsr.metrics.ma import perceptual_index
from jaxsr.metrics.ma import pi
from jaxsr.metrics.niqe import niqe
from jaxsr.metrics.psnr_ssim import l1_y
from jaxsr.metrics.psnr_ssim import psnr
from jaxsr.metrics.psnr_ssim import psnr_rgb
from jaxsr.metrics.psnr_ssim import psnr_y
from jaxsr.metrics.psnr_ssim import ssim
from jaxsr.metrics.psnr_ssim import ssim_y
from jaxsr.metrics.psnr_ssim import summarize
from jaxsr.metrics.rmse import mse_y
from jaxsr.metrics.rmse import rmse_over_set
from jaxsr.metrics.rmse import rmse_y
from jaxsr.metrics.sifid import activation_statistics
from jaxsr.metrics.sifid import feature_statistics
from jaxsr.metrics.sifid import frechet_distance
