"""Tiled vs untiled RRDBNet x4 upscaling: time, peak memory, difference.

  python benchmarks/upscale.py             # full RRDBNet, 510x339 -> 2040x1356
  python benchmarks/upscale.py --quick     # small RRDBNet, 170x113 -> 680x452
  python benchmarks/upscale.py --json out.json

Each mode runs `jaxsr.evaluation.inference.upscale` (what `python -m jaxsr.upscale`
and evaluation use) in a fresh subprocess, so that its peak resident memory
(ru_maxrss of that process) is its own. 'untiled' runs the whole LR image at
once (tile=0); 'tiled' cuts it into --tile x --tile LR cores with --overlap
LR pixels of context (defaults 128 and 32, as `jaxsr.upscale`'s flags). The
JAX predict function is compiled ahead of time, so 'compile s' and 'run s'
are separate; 'RSS ready' is the process before compiling (runtimes, weights
and image loaded) and 'peak - ready' what compiling and running added.

The network has RANDOM weights (ESRGAN's init): speed and memory do not
depend on the values, but the tiled/untiled difference of a trained model may
differ. --quick uses the demo-size RRDBNet with bicubic_skip off (its
zero-initialised last conv would otherwise make the output exactly bicubic).
Tiled output equals untiled only where the receptive field fits in the
overlap: its radius is 2 + 15 x num_block LR pixels in the trunk plus 1.25
in the upsampler (348 for the full net, 33 for the demo net), although with
the residual scaling of 0.2 the far taps contribute little. The table gives
max and mean |tiled - untiled| in [0, 1] units and the largest uint8
difference after rounding, against the first untiled row (JAX's, unless
--frameworks=torch).

When torch and benchmarks/torch_twin are installed (`pip install -e
".[bench]"`), 'torch-*' rows run the same modes with the PyTorch twin of
RRDBNet (NCHW, float32, all cores, inference mode) holding the same
parameters, through the same tiling code; --frameworks=jax skips them.
"""

import argparse
import importlib.util
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

import configs  # benchmarks/configs.py, beside this script.

REPO = pathlib.Path(__file__).resolve().parents[1]


def load_config(arg: str | None):
  """experiments/rrdb_psnr.py:arg (the paper's RRDBNet, or the demo's)."""
  config = configs.experiment('rrdb_psnr', arg)
  config.model.bicubic_skip = False  # Random weights must reach the output.
  return config


def receptive_radius(num_block: int) -> float:
  """LR pixels of context one output pixel sees (3x3 convs, x4 upsampler)."""
  # conv_first + 3 RDB x 5 convs per RRDB + conv_body at LR; conv_up1 at x2,
  # conv_up2, conv_hr and conv_last at x4 (1/2 + 3/4 LR pixel).
  return 2 + 15 * num_block + 1.25


def test_image(height: int, width: int) -> np.ndarray:
  """A float32 height x width x 3 photo in [0, 1] (the embedded 'china')."""
  from jaxsr.data import demo  # pylint: disable=g-import-not-at-top
  (_, photo), = demo.load(['china'])
  im = Image.fromarray(photo).resize((width, height), Image.BICUBIC)
  return np.asarray(im, np.float32) / 255.


def _rss_mb() -> float:
  # Linux reports ru_maxrss in KiB.
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _torch_predict(config, params):
  """The PyTorch twin holding `params`: NHWC numpy batch -> NHWC numpy SR."""
  # pylint: disable=g-import-not-at-top
  import torch
  from torch_twin import generators
  from torch_twin import params as twin_params
  # pylint: enable=g-import-not-at-top
  torch.set_num_threads(os.cpu_count())
  m = config.model
  net = generators.RRDBNet(scale=config.scale, num_feat=m.num_feat,
                           num_block=m.num_block, num_grow_ch=m.num_grow_ch,
                           bicubic_skip=False).eval()
  twin_params.load_flax(net, params)

  def predict(x):
    nchw = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    with torch.inference_mode():
      return net(nchw).numpy().transpose(0, 2, 3, 1)

  return predict


def _have_torch_twin() -> bool:
  """Whether torch and benchmarks/torch_twin are there (the bench extra)."""
  return (importlib.util.find_spec('torch') is not None
          and (REPO / 'benchmarks' / 'torch_twin' / 'generators.py').exists())


def child(args) -> dict:
  """Runs in the subprocess: one upscale, returns timings and peak RSS."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jaxsr.evaluation import inference  # pylint: disable=g-import-not-at-top
  from jaxsr.methods import psnr  # pylint: disable=g-import-not-at-top

  config = load_config('demo' if args.quick else None)
  g = psnr.build_generator(config)
  params = g.init(jax.random.key(0, impl='rbg'),
                  jnp.zeros((1, 8, 8, 3)))['params']
  lr = test_image(args.height, args.width)
  h, w, _ = lr.shape
  tile, overlap = args.tile, args.overlap
  if args.mode.endswith('untiled'):
    tile = 0
    window = (h, w)
  else:
    window = (min(h, tile + 2 * overlap), min(w, tile + 2 * overlap))
  if args.mode.startswith('torch'):
    predict, compile_s = _torch_predict(config, params), None  # Eager.
    rss_setup = _rss_mb()
  else:
    rss_setup = _rss_mb()
    t0 = time.perf_counter()
    compiled = jax.jit(lambda p, x: g.apply({'params': p}, x)).lower(
        params, jax.ShapeDtypeStruct((1, *window, 3), jnp.float32)).compile()
    compile_s = time.perf_counter() - t0
    predict = lambda x: compiled(params, x)
  rss_compiled = _rss_mb()
  t0 = time.perf_counter()
  sr = inference.upscale(predict, lr, config.scale, tile, overlap)
  run_s = time.perf_counter() - t0
  np.save(args.out, sr)
  return {'mode': args.mode, 'tile': tile, 'overlap': overlap if tile else 0,
          'window': list(window), 'lr': [h, w], 'sr': list(sr.shape[:2]),
          'num_block': config.model.num_block,
          'num_feat': config.model.num_feat, 'compile_s': compile_s,
          'run_s': run_s, 'rss_setup_mb': rss_setup,
          'rss_compiled_mb': rss_compiled, 'peak_rss_mb': _rss_mb()}


def _levels(x: np.ndarray) -> np.ndarray:
  """[0, 1] floats -> int16 copy of the uint8 levels an output PNG holds."""
  from jaxsr.data import color  # pylint: disable=g-import-not-at-top
  return color.to_uint8(x).astype(np.int16)


def run_child(args, mode: str, overlap: int, out: str) -> dict:
  """One mode in a fresh process; a crash (e.g. out of memory) is a row."""
  cmd = [sys.executable, __file__, '--_child', '--mode', mode, '--out', out,
         '--tile', str(args.tile), '--overlap', str(overlap),
         '--height', str(args.height), '--width', str(args.width)]
  if args.quick:
    cmd.append('--quick')
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if proc.returncode:
    return {'mode': mode, 'overlap': overlap, 'failed': proc.returncode,
            'stderr': proc.stderr[-2000:]}
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument('--quick', action='store_true')
  parser.add_argument('--height', type=int, default=None,
                      help='LR height (default 339, --quick 113)')
  parser.add_argument('--width', type=int, default=None,
                      help='LR width (default 510, --quick 170)')
  parser.add_argument('--tile', type=int, default=None,
                      help='LR tile (default 128, --quick 48)')
  parser.add_argument('--overlaps', default=None,
                      help='tiled runs, one per overlap (default "32", '
                      '--quick "4,16")')
  parser.add_argument('--skip_untiled', action='store_true',
                      help='when the whole image does not fit in memory')
  parser.add_argument('--frameworks', default='jax,torch',
                      help='jax and/or torch (torch rows only when the twin '
                      'is installed)')
  parser.add_argument('--json', default=None)
  parser.add_argument('--_child', action='store_true', help=argparse.SUPPRESS)
  parser.add_argument('--mode', default='tiled', help=argparse.SUPPRESS)
  parser.add_argument('--overlap', type=int, default=32,
                      help=argparse.SUPPRESS)
  parser.add_argument('--out', default='', help=argparse.SUPPRESS)
  args = parser.parse_args()
  args.height = args.height or (113 if args.quick else 339)
  args.width = args.width or (170 if args.quick else 510)
  args.tile = args.tile or (48 if args.quick else 128)
  if args._child:  # pylint: disable=protected-access
    print(json.dumps(child(args)))
    return

  overlaps = [int(v) for v in
              (args.overlaps or ('4,16' if args.quick else '32')).split(',')]
  modes = [] if args.skip_untiled else [('untiled', 0)]
  modes += [('tiled', o) for o in overlaps]
  frameworks = args.frameworks.split(',')
  runs = list(modes) if 'jax' in frameworks else []
  if 'torch' in frameworks and _have_torch_twin():
    runs += [(f'torch-{mode}', o) for mode, o in modes]
  load0 = os.getloadavg()[0]
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    outputs = {}
    for mode, overlap in runs:
      out = os.path.join(tmp, f'{mode}_{overlap}.npy')
      t0 = time.perf_counter()
      row = run_child(args, mode, overlap, out)
      print(f'{mode} (overlap {overlap}) done in '
            f'{time.perf_counter() - t0:.0f} s', file=sys.stderr)
      rows.append(row)
      if 'failed' not in row:
        outputs[len(rows) - 1] = np.load(out)
    # The first untiled row (JAX when it ran) is the reference.
    ref = outputs.get(0) if runs[0][0].endswith('untiled') else None
    for i, row in enumerate(rows):
      if ref is not None and i in outputs and i:
        d = np.abs(outputs[i].astype(np.float64) - ref)
        d8 = np.abs(_levels(outputs[i]) - _levels(ref))
        row.update(max_abs_diff=float(d.max()), mean_abs_diff=float(d.mean()),
                   max_uint8_diff=int(d8.max()))

  done = [r for r in rows if 'failed' not in r]
  if done:
    r0 = done[0]
    print(f'\nRRDBNet {r0["num_block"]} blocks, {r0["num_feat"]} features, '
          f'random weights; LR {r0["lr"][1]}x{r0["lr"][0]} -> SR '
          f'{r0["sr"][1]}x{r0["sr"][0]} (WxH); receptive-field radius '
          f'{receptive_radius(r0["num_block"]):.0f} LR px; '
          f'{os.cpu_count()} CPU cores, 1-min load average {load0:.1f} at '
          f'start, {os.getloadavg()[0]:.1f} at end\n')
  print('| mode | tile | overlap | window | compile s | run s | RSS ready MB '
        '| peak RSS MB | peak - ready MB | max abs diff | mean abs diff '
        '| max uint8 diff |')
  print('|---|---|---|---|---|---|---|---|---|---|---|---|')
  for r in rows:
    if 'failed' in r:
      print(f'| {r["mode"]} | | {r["overlap"]} | | failed (exit '
            f'{r["failed"]}) | | | | | | | |')
      continue
    diff = (f'{r["max_abs_diff"]:.2e} | {r["mean_abs_diff"]:.2e} | '
            f'{r["max_uint8_diff"]}' if 'max_abs_diff' in r
            else 'reference | | ')
    compile_s = '-' if r['compile_s'] is None else f'{r["compile_s"]:.1f}'
    print(f'| {r["mode"]} | {r["tile"] or "-"} | {r["overlap"] or "-"} '
          f'| {"x".join(map(str, r["window"]))} | {compile_s} '
          f'| {r["run_s"]:.1f} | {r["rss_setup_mb"]:.0f} '
          f'| {r["peak_rss_mb"]:.0f} '
          f'| {r["peak_rss_mb"] - r["rss_setup_mb"]:.0f} | {diff} |')
  for r in rows:
    if 'failed' in r:
      print(f'\n{r["mode"]} (overlap {r["overlap"]}) failed:\n{r["stderr"]}')
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == '__main__':
  main()
