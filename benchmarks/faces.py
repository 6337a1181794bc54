"""Times face SR by latent search (paper 001), jaxsr next to its PyTorch twin.

  python benchmarks/faces.py --quick --check --json /tmp/faces_bench.json
  python benchmarks/faces.py --json out.json            # 100 iterations
  python benchmarks/faces.py --device gpu

Prints one Markdown table: seconds per search iteration per face for the
DCGAN prior (the real ../shared/data/face_prior weights when present, else
random; x8, 4x4 -> 32x32) and a 256 px StyleGAN2 with random weights (x16,
16x16 -> 256x256; --sg2_channel_multiplier 2: config-f widths), batch 1 and
16, for jaxsr's search as `jaxsr.main` runs it (`latent_search.stepped_search`:
jitted pieces of --steps_per_call iterations, lax.scan within a piece, faces
vmapped, each with its own fine-tuned copy of G; 0 = 1 per call on the CPU,
50 on a GPU; compile seconds reported, not counted) and the twin
(benchmarks/torch_twin/faces.py: the same losses and optimizers, per-face G
copies by torch.func.vmap, or a loop with --torch_batching loop), with the
ratio JAX/torch (> 1: JAX slower). A row's time is the whole search of
--iters iterations (the LR's D features and the final image included, as
both frameworks do them once per search) divided by iterations and faces;
the median of --repeats interleaved calls, after the twin's one-iteration
warm-up. One restart, the paper's losses (lambda_p 100, lambda_s 0.5,
lambda_g 500 x 1e-4 on PULSE's GEOCROSS), online fine-tuning on.

--quick: 20 iterations for the DCGAN, 2 for StyleGAN2, and on the CPU no
StyleGAN2 batch 16 (jaxsr's StyleGAN2 search takes minutes per iteration
and face on a 2-core CPU: benchmarks/RESULTS.md says why). torch uses
--torch_threads (all cores): on a machine shared with other processes its
OpenMP threads can slow down tenfold; the table then carries a NOTE.

--check first loads each prior into the twin (the DCGAN; a 32 px random
StyleGAN2 of the same code, cheap) and asserts, for 2 faces and 3
iterations with both batching modes, that the first iterate's image and
loss terms agree with jaxsr's within float32 tolerance, and the next
iterations' terms (after spherical Adam on z, Adam on G) within 2e-3; the
check runs both in full float32 (no TF32 on a GPU), the timing with each
framework's defaults.
"""

import argparse
import os
import pathlib
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

from jaxsr.data import imresize
from jaxsr.methods import base
from jaxsr.methods import latent_search
from jaxsr.models import dcgan
from jaxsr.pretrained import dcgan as dcgan_import
from jaxsr.pretrained import stylegan2 as stylegan2_import

import report  # benchmarks/report.py, beside this script.
from torch_twin import face_priors
from torch_twin import faces as twin

REPO = pathlib.Path(__file__).resolve().parents[1]
FACE_PRIOR = REPO.parent / 'shared' / 'data' / 'face_prior'
IMAGE_ATOL = 1e-4  # Images in [0, 1]: float32 convs summed in other orders.
FIRST_RTOL = 1e-4  # The first iterate's terms (no update yet).
# Later iterates follow Adam steps, whose m / (sqrt(v) + eps) amplifies
# float noise where a gradient component is ~eps.
LATER_RTOL = 2e-3


class Setup:
  """One prior as both frameworks run it: jaxsr's GanPrior, the twin's G
  and D (on torch_device), the scale and a label."""

  def __init__(self, label, prior, scale, channels, torch_device):
    self.label, self.prior, self.scale = label, prior, scale
    if prior.name == 'dcgan':
      g, d = face_priors.dcgan_from_jax(prior.g_params, prior.g_buffers,
                                        prior.d_params)
    else:
      g, d = face_priors.stylegan2_from_jax(
          jax.device_get(prior.g_params), jax.device_get(prior.g_buffers),
          jax.device_get(prior.d_params), channels)
    self.g, self.d = g.to(torch_device), d.to(torch_device)
    self.lr_size = prior.resolution // scale


def dcgan_setup(torch_device) -> Setup:
  """The shared real DCGAN when present, else random weights."""
  if (FACE_PRIOR / dcgan_import.GENERATOR_FILE).is_file():
    return Setup('dcgan (real)', dcgan_import.load_prior(FACE_PRIOR), 8, None,
                 torch_device)
  return Setup('dcgan (random)', dcgan.random_prior(0), 8, None, torch_device)


def stylegan2_setup(torch_device, resolution=256, channel_multiplier=2,
                    scale=16, **kwargs) -> Setup:
  """A random-weights StyleGAN2 (PULSE's 5 trainable noise maps)."""
  prior = stylegan2_import.random_prior(
      jax.random.key(0), resolution=resolution,
      channel_multiplier=channel_multiplier, stats_samples=4096, **kwargs)
  channels = tuple(int(prior.g_params[f'b{4 * 2**i}']['conv1']['kernel']
                       .shape[-1]) for i in range(len(prior.g_params)))
  return Setup(f'stylegan2 {resolution} px (random)', prior, scale, channels,
               torch_device)


def lr_faces(setup: Setup, keys) -> jax.Array:
  """(B, h, w, 3) LR faces in [0, 1]: the prior's samples at `keys`,
  MATLAB-bicubic downscaled by the setup's scale."""
  p = setup.prior
  images = jax.jit(jax.vmap(lambda k: p.generate(
      p.g_params, p.g_buffers, p.sample_latent(k))))(keys)
  images = jnp.clip((images + 1.0) / 2.0, 0.0, 1.0)
  return imresize.imresize_jax(images, output_shape=(setup.lr_size,) * 2)


def initial_latents(prior, keys):
  """Each face's first latent as search_face draws it (restart 0 of 1)."""
  return jax.vmap(lambda k: prior.sample_latent(jax.random.split(k, 1)[0]))(
      keys)


def search_fn(setup: Setup, cfg: latent_search.SearchConfig,
              steps_per_call: int = 0):
  """The search as face_explore runs it: (keys, lr01, g_params, g_buffers,
  d_params) -> search_batch's output, dispatched `steps_per_call` iterations
  at a time (0: base.steps_per_call_auto, 1 on CPU)."""
  return latent_search.stepped_search(
      prior=setup.prior, scale=setup.scale, cfg=cfg,
      steps_per_call=steps_per_call or base.steps_per_call_auto())


def twin_weights(cfg: latent_search.SearchConfig) -> twin.Weights:
  return twin.Weights(
      lr_z=cfg.lr_z, lr_g=cfg.lr_g, finetune_g=cfg.finetune_g,
      lambda_p=cfg.lambda_p, lambda_s=cfg.lambda_s, lambda_g=cfg.lambda_g,
      geocross_scale=cfg.geocross_scale, eps=cfg.eps, blocks=cfg.blocks)


def twin_inputs(latents, device):
  """jaxsr latents -> (z (B, rows, S), [noise (B, 1, H, W), ...]) tensors."""
  z = torch.from_numpy(np.array(latents['z'], np.float32)).to(device)
  noise = [torch.from_numpy(np.array(n, np.float32))[:, None].to(device)
           for n in latents.get('noise', ())]
  return z, noise


def _sync(device: torch.device) -> None:
  if device.type == 'cuda':
    torch.cuda.synchronize(device)


# --check ------------------------------------------------------------------

def _close(ref: float, got: float, rtol: float) -> bool:
  return abs(ref - got) <= rtol * abs(ref) + 1e-7


def jax_reference(setup: Setup, batch: int = 2, steps: int = 3) -> dict:
  """jaxsr's search of `batch` faces for `steps` iterations, with what the
  twin needs to repeat it: {'cfg', 'lr', 'latents', 'image0' (B, 3, R, R)
  in [0, 1], 'out' (search_batch's output, on the host)}."""
  cfg = latent_search.SearchConfig(steps=steps, restarts=1)
  prior = setup.prior
  keys = jax.random.split(jax.random.key(1), batch)
  lr = lr_faces(setup, jax.random.split(jax.random.key(2), batch))
  out = jax.device_get(search_fn(setup, cfg)(
      keys, lr, prior.g_params, prior.g_buffers, prior.d_params))
  latents = initial_latents(prior, keys)
  image0 = np.asarray(jax.vmap(lambda l: prior.generate(
      prior.g_params, prior.g_buffers, l))(latents)) / 2.0 + 0.5
  return {'cfg': cfg, 'lr': np.asarray(lr), 'latents': latents,
          'image0': image0.transpose(0, 3, 1, 2), 'out': out}


def compare(setup: Setup, ref: dict, torch_device
            ) -> tuple[dict, list[str]]:
  """The twin's search from jaxsr's latents vs `ref` (jax_reference), in
  both batching modes: image 0, every iteration's terms, the last image.
  Returns (results, failures)."""
  cfg, out = ref['cfg'], ref['out']
  batch, steps = ref['lr'].shape[0], cfg.steps
  z0, noise0 = twin_inputs(ref['latents'], torch_device)
  results, bad = {}, []
  for mode in ('vmap', 'loop'):
    t = twin.FaceSearchTwin(setup.g, setup.d,
                            twin.nchw(ref['lr']).to(torch_device),
                            setup.prior.resolution, twin_weights(cfg), mode)
    with torch.no_grad():
      _, _, sr0 = t.terms(t.g_copies(), z0, noise0)
    got = t.search(z0, noise0, steps)
    image_diff = float(np.max(np.abs(ref['image0'] - sr0.cpu().numpy())))
    last_diff = float(np.max(np.abs(
        np.asarray(out['last']).transpose(0, 3, 1, 2)
        - got['last'].cpu().numpy())))
    row = {'image0_max_abs_diff': image_diff,
           'last_image_max_abs_diff': last_diff, 'terms': {}}
    if image_diff > IMAGE_ATOL:
      bad.append(f'{setup.label} {mode}: first image max |diff| '
                 f'{image_diff:.3g} > {IMAGE_ATOL}')
    for k in twin.TERMS:
      r = np.asarray(out['curves'][k], np.float64)  # (B, steps)
      g = got['curves'][k].cpu().double().numpy().T
      row['terms'][k] = {'jax': r.tolist(), 'torch': g.tolist()}
      for b in range(batch):
        for j in range(steps):
          rtol = FIRST_RTOL if j == 0 else LATER_RTOL
          if not _close(r[b, j], g[b, j], rtol):
            bad.append(f'{setup.label} {mode} face {b} iteration {j} {k}: '
                       f'jaxsr {r[b, j]:.7g} vs twin {g[b, j]:.7g}')
    results[mode] = row
  return results, bad


def check_setup(setup: Setup, torch_device) -> tuple[dict, list[str]]:
  """compare(setup, jax_reference(setup)): 2 faces, 3 iterations."""
  return compare(setup, jax_reference(setup), torch_device)


def print_check(label: str, results: dict) -> None:
  print(f'\n{label}: 2 faces, 3 iterations (jaxsr | twin vmap | twin loop)')
  for mode, row in results.items():
    print(f'  {mode}: first image max |diff| {row["image0_max_abs_diff"]:.2g},'
          f' last image {row["last_image_max_abs_diff"]:.2g}')
  terms = results['vmap']['terms']
  for k in twin.TERMS:
    for j in range(len(terms[k]['jax'][0])):
      vals = [terms[k]['jax'][0][j], terms[k]['torch'][0][j],
              results['loop']['terms'][k]['torch'][0][j]]
      print(f'  face 0 it {j} {k:<9} ' + '  '.join(f'{v:+.7f}' for v in vals))


# Timing --------------------------------------------------------------------

def time_row(setup: Setup, batch: int, iters: int, repeats: int, jax_device,
             torch_device, batching: str, steps_per_call: int = 0) -> dict:
  """Seconds per iteration per face, JAX and twin interleaved."""
  cfg = latent_search.SearchConfig(steps=iters, restarts=1)
  prior = setup.prior
  keys = jax.random.split(jax.random.key(3), batch)
  lr = lr_faces(setup, jax.random.split(jax.random.key(4), batch))
  args = jax.device_put((keys, lr, prior.g_params, prior.g_buffers,
                         prior.d_params), jax_device)
  search = search_fn(setup, cfg, steps_per_call)
  t0 = time.perf_counter()
  jax.block_until_ready(search(*args))  # Compiles its pieces.
  first_s = time.perf_counter() - t0
  z0, noise0 = twin_inputs(initial_latents(prior, keys), torch_device)
  t = twin.FaceSearchTwin(setup.g, setup.d, twin.nchw(lr).to(torch_device),
                          prior.resolution, twin_weights(cfg), batching)

  def jax_call():
    jax.block_until_ready(search(*args))

  def torch_call(steps=iters):
    out = t.search(z0, noise0, steps)
    _sync(torch_device)
    return out

  torch_call(1)  # Warm-up (allocator, kernel selection), untimed.
  times = report.alternating_times({'jax': jax_call, 'torch': torch_call},
                                   repeats)
  per = lambda name: statistics.median(times[name]) / iters / batch
  row = {'prior': setup.label, 'resolution': prior.resolution,
         'lr_size': setup.lr_size, 'scale': setup.scale, 'batch': batch,
         'iters': iters,
         'torch_batching': 'direct' if batch == 1 else t.batching,
         'steps_per_call': steps_per_call or base.steps_per_call_auto(),
         'compile_s': first_s - statistics.median(times['jax']),
         'jax_s_per_it_face': per('jax'),
         'torch_s_per_it_face': per('torch'),
         'jax_spread': max(times['jax']) / min(times['jax']),
         'torch_spread': max(times['torch']) / min(times['torch'])}
  row['ratio'] = row['jax_s_per_it_face'] / row['torch_s_per_it_face']
  return row


def print_table(rows: list, skipped: list) -> None:
  print('\nSeconds per search iteration per face (JAX compile not counted)\n')
  print('| prior | LR -> HR | batch | iters | JAX its/call | torch G copies '
        '| JAX compile s | JAX s/it/face | torch s/it/face | JAX/torch |')
  print('|---|---|---|---|---|---|---|---|---|---|')
  for r in rows:
    print(f'| {r["prior"]} | {r["lr_size"]}->{r["resolution"]} | '
          f'{r["batch"]} | {r["iters"]} | {r["steps_per_call"]} | '
          f'{r["torch_batching"]} | '
          f'{r["compile_s"]:.1f} | {r["jax_s_per_it_face"]:.4g} | '
          f'{r["torch_s_per_it_face"]:.4g} | {r["ratio"]:.2f} |')
  for note in skipped:
    print(f'| {note} |')
  spread = max([max(r['jax_spread'], r['torch_spread']) for r in rows]
               or [1.0])
  if spread > 1.5:
    print(f'\nNOTE: the slowest timed call was {spread:.1f}x the fastest of '
          'its row: the machine was busy; rerun when idle.')


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument('--quick', action='store_true',
                      help='few iterations, no StyleGAN2 batch 16 on CPU')
  parser.add_argument('--check', action='store_true',
                      help='assert the twin matches jaxsr before timing')
  parser.add_argument('--check_only', action='store_true',
                      help='--check, then stop (no timing)')
  parser.add_argument('--device', choices=('cpu', 'gpu'), default='cpu')
  parser.add_argument('--priors', default='dcgan,stylegan2',
                      help='comma-separated: dcgan, stylegan2')
  parser.add_argument('--batches', default='1,16')
  parser.add_argument('--iters', type=int, default=None,
                      help='iterations per search (default 100; --quick: '
                      '20 DCGAN, 2 StyleGAN2)')
  parser.add_argument('--repeats', type=int, default=None,
                      help='timed calls per row and framework (default 3; '
                      '--quick: 3 DCGAN, 1 StyleGAN2)')
  parser.add_argument('--torch_batching', choices=('vmap', 'loop'),
                      default='vmap', help='per-face G copies in the twin')
  parser.add_argument('--sg2_channel_multiplier', type=int, default=2)
  parser.add_argument('--steps_per_call', type=int, default=0,
                      help='JAX iterations per dispatch (0: 1 on CPU, 50 on '
                      'GPU)')
  parser.add_argument('--torch_threads', type=int, default=os.cpu_count())
  parser.add_argument('--json', default=None, help='write the results here')
  args = parser.parse_args()
  priors = [p for p in args.priors.split(',') if p]
  if set(priors) - {'dcgan', 'stylegan2'}:
    parser.error(f'--priors {args.priors!r}: expected dcgan and/or stylegan2')
  batches = [int(b) for b in args.batches.split(',') if b]
  if args.iters is not None and args.iters < 2:
    # XLA inlines a one-trip while loop: 1 iteration would time another
    # program than the search's loop.
    parser.error(f'--iters must be >= 2, got {args.iters}')
  if args.device == 'cpu':
    jax.config.update('jax_platforms', 'cpu')
  jax_device = jax.devices(args.device)[0]
  if args.device == 'gpu' and not torch.cuda.is_available():
    parser.error(f'torch {torch.__version__} sees no CUDA device')
  torch_device = torch.device('cuda' if args.device == 'gpu' else 'cpu')
  torch.set_num_threads(args.torch_threads)
  torch.set_flush_denormal(True)  # XLA:CPU flushes denormals too.
  torch.backends.cudnn.benchmark = True
  check = args.check or args.check_only

  results, failures, rows, skipped = {}, [], [], []
  with jax.default_device(jax_device):
    setups = {}
    if 'dcgan' in priors:
      setups['dcgan'] = dcgan_setup(torch_device)
    if check:
      small = {'dcgan': setups.get('dcgan')}
      if 'stylegan2' in priors:
        small['stylegan2'] = stylegan2_setup(
            torch_device, resolution=32, scale=4, channels=(32, 32, 32, 32),
            style_dim=64, n_mlp=2)
      results['check'] = {}
      # float32 on both sides (no TF32 / bf16 passes on a GPU) for the check.
      tf32 = torch.backends.cudnn.allow_tf32
      torch.backends.cudnn.allow_tf32 = False
      with jax.default_matmul_precision('highest'):
        for setup in small.values():
          if setup is None:
            continue
          res, bad = check_setup(setup, torch_device)
          print_check(setup.label, res)
          results['check'][setup.label] = res
          failures += bad
      torch.backends.cudnn.allow_tf32 = tf32
    if not args.check_only:
      if 'stylegan2' in priors:
        setups['stylegan2'] = stylegan2_setup(
            torch_device, channel_multiplier=args.sg2_channel_multiplier)
      for name, setup in setups.items():
        sg2 = name == 'stylegan2'
        iters = args.iters or ((2 if sg2 else 20) if args.quick else 100)
        repeats = args.repeats or (1 if sg2 and args.quick else 3)
        for b in batches:
          if sg2 and b > 1 and args.quick and args.device == 'cpu':
            skipped.append(f'{setup.label} | {setup.lr_size}->'
                           f'{setup.prior.resolution} | {b} | skipped with '
                           '--quick on the CPU (run without --quick) | | | | '
                           '| |')
            continue
          rows.append(time_row(setup, b, iters, repeats, jax_device,
                               torch_device, args.torch_batching,
                               args.steps_per_call))
          print(f'  {rows[-1]}', flush=True)

  load = ', '.join(f'{x:.1f}' for x in os.getloadavg())
  if rows or skipped:
    print(f'\n{jax_device.device_kind} ({os.cpu_count()} CPUs, load {load}), '
          f'jax {jax.__version__}, torch {torch.__version__} with '
          f'{torch.get_num_threads()} threads; median of interleaved calls')
    print_table(rows, skipped)
  results.update(rows=rows, skipped=skipped, device=jax_device.device_kind,
                 load_average=os.getloadavg(), quick=args.quick)
  report.finish(results, args.json, failures, check,
                "the first iterate's image and loss terms, and the next "
                "iterations' terms, agree within tolerance")


if __name__ == '__main__':
  main()
