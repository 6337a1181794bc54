"""Evidence that a twin is jaxsr's network: forward and first-step agreement.

`forward_diffs` runs every network of a method (G, D in training mode, L,
the loss VGG, the SAN critic at its crop size) in jaxsr and in a copy of the
twin, on the same NHWC / NCHW batch, and returns the max absolute difference
and the output scale per network. Every parameter is first perturbed by
N(0, 0.01^2) noise (and copied so), so that layers that start at zero (the
demo G's conv_last under bicubic_skip, zero biases) are exercised too.
`crop_offsets` reproduces the crop offsets that a jaxsr SAN-SR step draws,
so that `step_diffs` can compare the first step's losses of every method.
"""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import torch

from jaxsr.methods import psnr
from jaxsr.methods import san_sr
from jaxsr.models import discriminators
from jaxsr.models import san_critic
from jaxsr.models import vgg
from torch_twin import params as twin_params

# Forward outputs: |diff| <= RTOL * max(1, max |jaxsr output|). float32
# convolutions summed in different orders differ by ~1e-6 relative per layer.
FORWARD_RTOL = 1e-4
# First-step losses: the G terms follow one Adam step of D, whose update
# m / (sqrt(v) + eps) amplifies float noise where D's gradient is ~eps.
STEP_RTOL = 2e-3


def nchw(x) -> torch.Tensor:
  """NHWC array -> contiguous float32 NCHW tensor (on the CPU)."""
  return torch.from_numpy(np.ascontiguousarray(
      np.asarray(x, np.float32).transpose(0, 3, 1, 2)))


def _diff(ref, got: torch.Tensor) -> tuple[float, float]:
  """(max |ref - got|, max |ref|) of an NHWC ref and an NCHW twin output."""
  ref = np.asarray(ref, np.float64).transpose(0, 3, 1, 2) if np.ndim(
      ref) == 4 else np.asarray(ref, np.float64)
  got = got.detach().cpu().double().numpy()
  if ref.shape != got.shape:
    raise AssertionError(f'jaxsr output {ref.shape} vs twin {got.shape}')
  return float(np.max(np.abs(ref - got))), float(np.max(np.abs(ref)))


def _perturbed(params, seed: int = 0):
  """params + N(0, 0.01^2) noise on every leaf, as float32 numpy."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda p: (np.asarray(p, np.float32)
                 + 0.01 * rng.standard_normal(np.shape(p))).astype(
                     np.float32), params)


def _loaded(module, params, batch_stats=None):
  """A copy of the twin module holding params (the benchmarked one is kept)."""
  return twin_params.load_flax(copy.deepcopy(module), params, batch_stats)


def _features(constants, twin, x, layers) -> dict:
  """{'vgg19 layer': (diff, scale)} of the loss VGG on NHWC x."""
  out = {}
  feat = vgg.VGG(depth=19, layers=layers)
  constants = _perturbed(constants, 1)
  ref = feat.apply({'params': constants}, x)
  got = _loaded(twin.feat, constants)(nchw(x).to(_device(twin)))
  for name in layers:
    out[f'vgg19 {name}'] = _diff(ref[name], got[name])
  return out


def _device(twin) -> torch.device:
  """The device the twin's G lives on."""
  return next(twin.g.parameters()).device


@torch.no_grad()
def forward_diffs(config, state, constants, twin, batch) -> dict:
  """{network: (max abs diff, max |output|)} of jaxsr vs the loaded twin."""
  lr, hr = jnp.asarray(batch['lr']), jnp.asarray(batch['hr'])
  dev = _device(twin)
  t_lr, t_hr = nchw(lr).to(dev), nchw(hr).to(dev)
  out = {}
  if config.method in ('psnr', 'lsrgan'):
    g, g_params = psnr.build_generator(config), _perturbed(state.g_params)
    out['G (RRDBNet)'] = _diff(g.apply({'params': g_params}, lr),
                               _loaded(twin.g, g_params)(t_lr))
    l = psnr.build_encoder(config)
    if l is not None:
      l_params = _perturbed(state.l_params, 2)
      out['L (encoder)'] = _diff(l.apply({'params': l_params}, hr),
                                 _loaded(twin.l, l_params)(t_hr))
  if config.method == 'lsrgan':
    kwargs = {k: config.disc[k] for k in ('norm', 'batch_norm')
              if k in config.disc}
    d = discriminators.VGGStyleDiscriminator(
        num_feat=config.disc.num_feat, input_size=config.data.hr_patch,
        **kwargs)
    d_params = _perturbed(state.d_params, 3)
    ref, _ = d.apply({'params': d_params,
                      'batch_stats': state.d_batch_stats}, hr, train=True,
                     mutable=['batch_stats'])
    twin_d = _loaded(twin.d, d_params, state.d_batch_stats)
    out['D (VGG-style)'] = _diff(ref, twin_d.train()(t_hr))
    loss = config.loss
    layers = (tuple(loss.vgg_layer_weights.keys())
              if loss.perceptual == 'vgg' else (loss.cx_layer,))
    out.update(_features(constants, twin, hr, layers))
  if config.method == 'san_sr':
    g, g_params = san_sr.build_generator(config), _perturbed(state.g_params)
    out['G (SRResNet)'] = _diff(g.apply({'params': g_params}, lr),
                                _loaded(twin.g, g_params)(t_lr))
    d, d_params = san_sr.build_critic(config), _perturbed(state.d_params, 3)
    # The divisors of the perturbed weights, in jaxsr and in the twin.
    d_norm = san_critic.update_norm_state(d, d_params, state.d_norm,
                                          jax.random.key(0))
    twin_d = _loaded(twin.d, d_params)
    twin_d.refresh_norm()
    crop = d.crop_size
    ref = d.apply({'params': d_params, **d_norm}, hr[:, :crop, :crop])
    out['D (SAN critic)'] = _diff(ref, twin_d(t_hr, (0, 0)))
    out.update(_features(constants, twin, hr, (config.loss.feature_layer,)))
  return out


def crop_offsets(config, rng: jax.Array, step: int) -> dict | None:
  """{'real', 'fake', 'gen': (top, left)} a SAN-SR step draws, else None."""
  if config.method != 'san_sr':
    return None
  size = 4 * 2**config.critic.num_blocks
  span = config.data.hr_patch - size + 1
  if span == 1:
    return {name: (0, 0) for name in ('real', 'fake', 'gen')}
  keys = san_sr.step_keys(rng, jnp.asarray(step))
  offsets = {}
  for name in ('real', 'fake', 'gen'):
    # models.san_critic.random_crop: split, then one randint per axis.
    key_h, key_w = jax.random.split(keys[name])
    offsets[name] = (int(jax.random.randint(key_h, (), 0, span)),
                     int(jax.random.randint(key_w, (), 0, span)))
  return offsets


def step_diffs(jax_metrics: dict, twin_metrics: dict) -> dict:
  """{loss: (jaxsr value, twin value)} for the losses both steps report."""
  out = {}
  for name, value in twin_metrics.items():
    if name in jax_metrics:
      out[name] = (float(jax_metrics[name]), float(value))
  return out


def failures(forward: dict, losses: dict) -> list[str]:
  """Lines naming every forward output or loss outside its tolerance."""
  bad = []
  for name, (diff, scale) in forward.items():
    if diff > FORWARD_RTOL * max(1.0, scale):
      bad.append(f'{name}: max |diff| {diff:.3g} > {FORWARD_RTOL} * '
                 f'max(1, {scale:.3g})')
  for name, (ref, got) in losses.items():
    if abs(ref - got) > STEP_RTOL * max(1.0, abs(ref)):
      bad.append(f'{name}: jaxsr {ref:.6g} vs twin {got:.6g}')
  return bad
