"""Latent-search twin (PyTorch): paper 001's search of a batch of faces, each with its own fine-tuned G.

The same objective as jaxsr.methods.latent_search, written as PULSE's code
would run it (PULSE.py, SphericalOptimizer.py, loss.py):

  L = lambda_p max(L2, eps) + lambda_s L_s + lambda_g scale GEOCROSS
  L2   mean over pixels of (down(y) - x)^2, [0, 1] units, `down` the MATLAB
       bicubic (antialiased) as two matrix products (jaxsr.data.imresize's
       numpy matrices, the same maths as imresize_jax);
  L_s  sum over D's last `blocks` blocks of mean |D(up(down(y))) - D(up(x))|
       (up: the MATLAB bicubic to D's resolution, images in [-1, 1]);
  GEOCROSS  PULSE's _loss_geocross of the W+ rows (0 for one row).

Optimizers: PULSE's SphericalOptimizer (Adam, then every (face, row) of the
latent and every (face) noise map back on the sphere of its initial radius)
with PULSE's LambdaLR 'linear1cycledrop' on the latents, and Adam(lr_g) on
G's parameters (online fine-tuning). Both Adams act elementwise, so one Adam
over parameters stacked along a face axis is exactly one Adam per face.

Per-face G copies. PULSE batches faces through ONE shared G (frozen); the
paper fine-tunes G per face, so every face here has its own copy:
  'vmap'  parameters stacked (B, ...); torch.func.functional_call under
          torch.func.vmap (convolutions with per-face weights become grouped
          convolutions), then one backward of the summed loss.
  'loop'  B separate parameter sets, G called once per face.
D is frozen and shared, so it runs on the whole batch at once. The iterate
with the lowest total loss is kept per face (torch.where, no host sync), as
jaxsr does; every iteration's terms stay on the device until the end.
"""

import dataclasses

import numpy as np
import torch

from jaxsr.data import imresize

TERMS = ('total', 'l2', 'semantic', 'geocross')


@dataclasses.dataclass(frozen=True)
class Weights:
  """The search's hyper-parameters (latent_search.SearchConfig's values)."""
  lr_z: float = 0.4
  lr_g: float = 5e-5
  finetune_g: bool = True
  lambda_p: float = 100.0
  lambda_s: float = 0.5
  lambda_g: float = 500.0
  geocross_scale: float = 1e-4
  eps: float = 2e-3
  blocks: int = 3


def linear1cycledrop(steps: int):
  """PULSE's schedule function of LambdaLR (PULSE.py, verbatim)."""
  return lambda x: ((9 * (1 - np.abs(x / (0.9 * steps) - 1 / 2) * 2) + 1) / 10
                    if x < 0.9 * steps else
                    1 / 10 + (x - 0.9 * steps) / (0.1 * steps) * (1 / 1000
                                                                  - 1 / 10))


class SphericalOptimizer:
  """PULSE's SphericalOptimizer: each slice [i, j, ...] of a param (its first
  two axes) kept on the sphere of its initial radius."""

  def __init__(self, optimizer, params, **kwargs):
    self.opt = optimizer(params, **kwargs)
    self.params = params
    with torch.no_grad():
      self.radii = [self._norm(p) for p in params]

  @staticmethod
  def _norm(p):
    return (p.pow(2).sum(tuple(range(2, p.ndim)), keepdim=True) + 1e-9).sqrt()

  @torch.no_grad()
  def step(self):
    self.opt.step()
    for p, r in zip(self.params, self.radii):
      p.div_(self._norm(p)).mul_(r)


def geocross(rows: torch.Tensor) -> torch.Tensor:
  """PULSE's GEOCROSS per face: rows (B, n, S) -> (B,); 0 for n = 1."""
  if rows.shape[1] == 1:
    return torch.zeros(rows.shape[0], device=rows.device)
  x, y = rows[:, None], rows[:, :, None]
  a = ((x - y).pow(2).sum(-1) + 1e-9).sqrt()
  b = ((x + y).pow(2).sum(-1) + 1e-9).sqrt()
  d = 2 * torch.atan2(a, b)
  return (d.pow(2) * 512).mean((1, 2)) / 8.0


class Bicubic:
  """MATLAB bicubic resize of (N, C, H, W) to out_hw as two matmuls (the
  axis with the smaller scale first, as MATLAB and imresize_jax)."""

  def __init__(self, in_hw, out_hw, device):
    self.mats = []
    scales = [o / i for i, o in zip(in_hw, out_hw)]
    order = (0, 1) if scales[0] <= scales[1] else (1, 0)
    for axis in order:
      m = imresize.resize_matrix(int(in_hw[axis]), int(out_hw[axis]),
                                 scales[axis])
      self.mats.append((axis, torch.from_numpy(
          np.array(m, np.float32)).to(device)))

  def __call__(self, x: torch.Tensor) -> torch.Tensor:
    for axis, m in self.mats:
      x = m @ x if axis == 0 else x @ m.t()
    return x


class FaceSearchTwin:
  """The search of B faces: G twin (one face per call), frozen batched D.

  g: a generator twin (torch_twin/face_priors.py) on `device`, copied per
  face; d: the frozen D twin; lr01 (B, 3, h, w) in [0, 1]; resolution: G's
  output size; batching: 'vmap' or 'loop' (module doc); with B = 1 G is
  called directly either way.
  """

  def __init__(self, g, d, lr01: torch.Tensor, resolution: int,
               weights: Weights = Weights(), batching: str = 'vmap'):
    if batching not in ('vmap', 'loop'):
      raise ValueError(f"batching {batching!r}: expected 'vmap' or 'loop'")
    self.g, self.d, self.w = g, d, weights
    self.lr01 = lr01
    self.device = lr01.device
    self.batch = lr01.shape[0]
    self.batching = 'loop' if self.batch == 1 else batching
    h, w = lr01.shape[2:]
    self.down = Bicubic((resolution, resolution), (h, w), self.device)
    self.up = Bicubic((h, w), (resolution, resolution), self.device)
    for p in d.parameters():
      p.requires_grad_(False)
    with torch.no_grad():
      self.target = self.features(lr01) if weights.lambda_s else ()

  def features(self, small01: torch.Tensor):
    """D's last `blocks` features of LR-sized [0, 1] images, upscaled."""
    _, feats = self.d(self.up(small01) * 2.0 - 1.0)
    return feats[-self.w.blocks:]

  def g_copies(self):
    """Per-face copies of G's parameters, leaf tensors with gradients."""
    named = {k: v.detach() for k, v in self.g.named_parameters()}
    if self.batching == 'vmap':
      return [{k: v.expand(self.batch, *v.shape).clone().requires_grad_()
               for k, v in named.items()}]
    return [{k: v.clone().requires_grad_() for k, v in named.items()}
            for _ in range(self.batch)]

  def generate(self, params, z, noise) -> torch.Tensor:
    """(B, 3, R, R) images in [-1, 1], each face through its own G."""
    call = torch.func.functional_call
    if self.batching == 'vmap':
      one = lambda p, zi, ni: call(self.g, p, (zi, ni))
      return torch.func.vmap(one)(params[0], z, noise)
    return torch.stack([
        call(self.g, params[i], (z[i], tuple(n[i] for n in noise)))
        for i in range(self.batch)])

  def terms(self, params, z, noise):
    """(total per face (B,), {term: (B,)}, SR (B, 3, R, R) in [0, 1])."""
    w = self.w
    sr = (self.generate(params, z, noise) + 1.0) / 2.0
    small = self.down(sr)
    l2 = (small - self.lr01).pow(2).mean((1, 2, 3))
    semantic = torch.zeros_like(l2)
    if w.lambda_s:
      for f, t in zip(self.features(small), self.target):
        semantic = semantic + (f - t).abs().mean((1, 2, 3))
    w_rows = getattr(self.g, 'w_rows', None)
    geo = (geocross(w_rows(z)) if w_rows is not None
           else torch.zeros_like(l2))
    total = (w.lambda_p * l2.clamp(min=w.eps) + w.lambda_s * semantic
             + w.lambda_g * w.geocross_scale * geo)
    return total, {'total': total, 'l2': l2, 'semantic': semantic,
                   'geocross': geo}, sr

  def search(self, z0: torch.Tensor, noise0=(), steps: int = 100) -> dict:
    """`steps` iterations from latents z0 (B, rows, S) and trainable noise
    maps (B, 1, H, W); returns {'best', 'best_loss', 'last', 'curves'
    {term: (steps, B)}} as tensors (one host sync if read)."""
    w = self.w
    z = z0.detach().clone().requires_grad_()
    noise = [n.detach().clone().requires_grad_() for n in noise0]
    params = self.g_copies()
    z_opt = SphericalOptimizer(torch.optim.Adam, [z] + noise, lr=w.lr_z)
    sched = torch.optim.lr_scheduler.LambdaLR(z_opt.opt,
                                              linear1cycledrop(steps))
    g_opt = torch.optim.Adam([p for ps in params for p in ps.values()],
                             lr=w.lr_g) if w.finetune_g else None
    best = best_loss = None
    curves = {k: [] for k in TERMS}
    for _ in range(steps):
      z_opt.opt.zero_grad(set_to_none=True)
      if g_opt is not None:
        g_opt.zero_grad(set_to_none=True)
      total, terms, sr = self.terms(params, z, noise)
      total.sum().backward()
      with torch.no_grad():
        if best is None:
          best, best_loss = sr.detach().clone(), total.detach().clone()
        else:
          better = total < best_loss
          best = torch.where(better[:, None, None, None], sr, best)
          best_loss = torch.where(better, total, best_loss)
      for k in TERMS:
        curves[k].append(terms[k].detach())
      z_opt.step()
      sched.step()
      if g_opt is not None:
        g_opt.step()
    with torch.no_grad():
      last = (self.generate(params, z, noise) + 1.0) / 2.0
    return {'best': best, 'best_loss': best_loss, 'last': last,
            'curves': {k: torch.stack(v) for k, v in curves.items()}}


def nchw(x) -> torch.Tensor:
  """NHWC / HWC array -> NCHW / CHW float32 tensor (CPU)."""
  x = np.asarray(x, np.float32)
  axes = (0, 3, 1, 2) if x.ndim == 4 else (2, 0, 1)
  return torch.from_numpy(np.ascontiguousarray(x.transpose(axes)))
