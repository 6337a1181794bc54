"""Images/s of the training patch pipeline vs what one training step eats.

  python benchmarks/pipeline.py            # 20 synthetic 2040x1356 PNGs
  python benchmarks/pipeline.py --quick    # 4 PNGs, fewer batches (~1 min)
  python benchmarks/pipeline.py --json out.json

Measures `jaxsr.data.pipeline.TrainBatches` (decode, aligned crop, dihedral
augmentation, MATLAB bicubic LR of the crop, uint8 -> float32 batches) for
the paper's data configs (experiments/rrdb_psnr.py, lsrgan.py: HR 128, x4,
batch 16; san_sr.py: HR 160, batch 32), with each config's own thread count
and prefetch, on two sources built by the same code as `jaxsr.data.sources`:
- 'demo': the embedded images (decoded once, held in memory);
- 'folder': a DIV2K-like folder of large PNGs written to a temp dir (photos
  from the demo set resized to 2040x1356 plus sensor-like noise, so the files
  compress like DIV2K's ~4-5 MB PNGs). This path decodes the whole PNG for
  every sample.
A third row, 'folder + cache_dir', is the same folder with
`config.data.cache_dir` set (each image decoded once into an .npy, then
memory-mapped); its cache is filled before timing.

Per row: wall images/s, process CPU seconds per image (all threads), the
cores kept busy (their product: below the core count when the GIL or the
thread count limits it), and the CPU share the pipeline would take from a
training step on this machine. The step times default to the ones measured
on this 2-core CPU by benchmarks/train_step.py at batch 4 (PSNR 7.1 s,
LSRGAN 13.0 s, SAN-SR 5.4 s), scaled linearly to each config's batch;
override with --step_s.
Then a per-sample breakdown of the folder path (one thread). The page cache
holds the PNGs, so this is decode CPU, not disk I/O. Timings on a shared
machine are noisy.
"""

import argparse
import json
import os
import pathlib
import statistics
import tempfile
import time

import numpy as np
from PIL import Image

from jaxsr.data import demo
from jaxsr.data import pipeline
from jaxsr.data import sources

import configs  # benchmarks/configs.py, beside this script.


# (row name, experiment file, seconds per step at batch 4 on this 2-core CPU,
# from benchmarks/train_step.py on the paper-size networks).
CONFIGS = (
    ('rrdb_psnr', 'rrdb_psnr', 7.1),
    ('esrgan/lsrgan', 'lsrgan', 13.0),
    ('san_sr', 'san_sr', 5.4),
)
REFERENCE_BATCH = 4


def load_config(name: str):
  """get_config() of experiments/<name>.py (the paper variant)."""
  return configs.experiment(name)


def make_div2k_like(folder: str, count: int, height: int, width: int,
                    seed: int = 0) -> list[str]:
  """Writes `count` RGB PNGs of height x width; returns their paths.

  Demo photos, randomly flipped and resized (bicubic) to the DIV2K size, plus
  Gaussian noise (sigma 3 levels) so that zlib sees photo-like entropy.
  """
  rng = np.random.default_rng(seed)
  photos = demo.load(demo.TRAIN)
  paths = []
  for k in range(count):
    _, photo = photos[k % len(photos)]
    if k // len(photos) % 2:
      photo = photo[:, ::-1]
    im = np.asarray(Image.fromarray(np.ascontiguousarray(photo)).resize(
        (width, height), Image.BICUBIC), np.float32)
    im += rng.normal(0, 3, im.shape).astype(np.float32)
    path = os.path.join(folder, f'{k + 1:04d}.png')
    Image.fromarray(np.clip(im + 0.5, 0, 255).astype(np.uint8)).save(path)
    paths.append(path)
  return paths


def source_dataset(data_config, scale: int, source: str, train_dir: str = '',
                   cache_dir: str = ''):
  """The training set exactly as jaxsr.data.sources builds it; a cache_dir
  is filled (every image loaded once) before it is returned."""
  data_config = data_config.copy_and_resolve_references()
  data_config.unlock()
  data_config.update(source=source, train_dir=train_dir, cache_dir=cache_dir)
  dataset = sources.train_set(data_config, scale)
  if cache_dir:
    for i in range(len(dataset)):
      dataset.load_hr(i)
  return dataset


def pipeline_rate(dataset, data_config, scale: int, batches: int) -> dict:
  """Wall images/s and CPU s/image of TrainBatches after one warm-up batch."""
  it = pipeline.TrainBatches(
      dataset, scale=scale, hr_patch=data_config.hr_patch,
      batch_size=data_config.batch_size, seed=0,
      num_threads=data_config.num_threads, prefetch=data_config.prefetch)
  try:
    next(it)  # Warm-up: pools started, first prefetches queued.
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(batches):
      batch = next(it)
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
  finally:
    it.close()
  p, b = data_config.hr_patch, data_config.batch_size
  if batch['hr'].shape != (b, p, p, 3) or batch['lr'].shape != (
      b, p // scale, p // scale, 3):
    raise RuntimeError(f'unexpected batch shapes {batch["hr"].shape}, '
                       f'{batch["lr"].shape}')
  images = batches * b
  return {'images_per_s': images / wall, 'cpu_s_per_image': cpu / images}


def breakdown(dataset, hr_patch: int, scale: int, samples: int) -> dict:
  """Median milliseconds per sample of each stage, on one thread."""
  rng = np.random.default_rng(1)
  times = {'decode': [], 'crop + LR': [], 'augment + float': [], 'total': []}
  for s in range(samples):
    i = s % len(dataset)
    t0 = time.perf_counter()
    dataset.load_hr(i)
    t1 = time.perf_counter()
    lr, hr = pipeline.random_patch(dataset, i, hr_patch, scale, rng)
    t2 = time.perf_counter()
    k = int(rng.integers(8))
    lr = pipeline.dihedral(lr, k).astype(np.float32) / 255.
    hr = pipeline.dihedral(hr, k).astype(np.float32) / 255.
    t3 = time.perf_counter()
    times['decode'].append(t1 - t0)
    # random_patch decodes again: its own time minus one decode is the rest.
    times['crop + LR'].append(max(t2 - t1 - (t1 - t0), 0.0))
    times['augment + float'].append(t3 - t2)
    times['total'].append((t1 - t0) + times['crop + LR'][-1] + (t3 - t2))
  return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  parser.add_argument('--quick', action='store_true')
  parser.add_argument('--images', type=int, default=None,
                      help='synthetic PNGs (default 20, --quick 4)')
  parser.add_argument('--size', default='1356x2040', help='HxW of the PNGs')
  parser.add_argument('--batches', type=int, default=None,
                      help='timed batches per row (default 8, --quick 2)')
  parser.add_argument('--step_s', default='',
                      help='step seconds at batch 4 per config, e.g. '
                      '"rrdb_psnr=7.1,esrgan/lsrgan=13,san_sr=5.4"')
  parser.add_argument('--json', default=None)
  args = parser.parse_args()
  num_images = args.images or (4 if args.quick else 20)
  num_batches = args.batches or (2 if args.quick else 8)
  height, width = (int(v) for v in args.size.split('x'))
  step_s = {name: s for name, _, s in CONFIGS}
  for item in filter(None, args.step_s.split(',')):
    name, value = item.split('=')
    if name not in step_s:
      raise ValueError(f'--step_s names {name!r}; expected one of '
                       f'{sorted(step_s)}')
    step_s[name] = float(value)

  load0 = os.getloadavg()[0]
  rows = []
  results = {'rows': rows}
  with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    paths = make_div2k_like(tmp, num_images, height, width)
    mb = statistics.mean(os.path.getsize(p) for p in paths) / 2**20
    print(f'wrote {num_images} PNGs of {height}x{width} ({mb:.1f} MB each; '
          f'DIV2K train HR averages ~4.4 MB) in '
          f'{time.perf_counter() - t0:.0f} s')
    cache_dir = os.path.join(tmp, 'npy')
    for name, experiment, _ in CONFIGS:
      config = load_config(experiment)
      data, scale = config.data, config.scale
      if scale != 4:
        raise ValueError(f'{experiment}: scale {scale}, expected 4')
      step = step_s[name] * data.batch_size / REFERENCE_BATCH
      consumed = data.batch_size / step
      sets = (('demo', source_dataset(data, scale, 'demo')),
              ('folder', source_dataset(data, scale, 'folder', tmp)),
              ('folder + cache_dir',
               source_dataset(data, scale, 'folder', tmp, cache_dir)))
      for source, dataset in sets:
        r = pipeline_rate(dataset, data, scale, num_batches)
        cpu_per_step = r['cpu_s_per_image'] * data.batch_size
        rows.append({
            'config': name, 'source': source, 'hr_patch': data.hr_patch,
            'batch': data.batch_size, 'threads': data.num_threads, **r,
            'pipeline_steps_per_s': r['images_per_s'] / data.batch_size,
            'step_s': step, 'consumed_images_per_s': consumed,
            'cpu_share_of_step': cpu_per_step / step})
    data = load_config('lsrgan').data
    folder_set = source_dataset(data, 4, 'folder', tmp)
    samples = max(num_images, 6 if args.quick else 20)
    results['breakdown_folder'] = breakdown(folder_set, data.hr_patch, 4,
                                            samples)
    cached = source_dataset(data, 4, 'folder', tmp, cache_dir)
    results['breakdown_npy'] = breakdown(cached, data.hr_patch, 4, samples)

  print(f'\n{os.cpu_count()} CPU cores (1-min load average {load0:.1f} at '
        f'start, {os.getloadavg()[0]:.1f} at end: other jobs share them), '
        f'{num_batches} timed batches per row, {num_images} PNGs of '
        f'{height}x{width}\n')
  print('| config | source | HR patch | batch | threads | pipeline img/s '
        '| CPU ms/img | cores busy | pipeline steps/s | step s (scaled) '
        '| step eats img/s | pipeline/step | CPU share of step |')
  print('|---|---|---|---|---|---|---|---|---|---|---|---|---|')
  for r in rows:
    print(f'| {r["config"]} | {r["source"]} | {r["hr_patch"]} | {r["batch"]} '
          f'| {r["threads"]} | {r["images_per_s"]:.1f} '
          f'| {1e3 * r["cpu_s_per_image"]:.1f} '
          f'| {r["images_per_s"] * r["cpu_s_per_image"]:.2f} '
          f'| {r["pipeline_steps_per_s"]:.2f} | {r["step_s"]:.1f} '
          f'| {r["consumed_images_per_s"]:.2f} '
          f'| {r["images_per_s"] / r["consumed_images_per_s"]:.0f}x '
          f'| {100 * r["cpu_share_of_step"]:.1f}% |')
  print('\nPer-sample breakdown, HR 128 x4, one thread, median ms:\n')
  stages = list(results['breakdown_folder'])
  print('| source | ' + ' | '.join(stages) + ' |')
  print('|---|' + '---|' * len(stages))
  for label, key in (('folder', 'breakdown_folder'),
                     ('folder + cache_dir', 'breakdown_npy')):
    print(f'| {label} | ' + ' | '.join(
        f'{results[key][s]:.1f}' for s in stages) + ' |')
  worst = min(r['images_per_s'] / r['consumed_images_per_s'] for r in rows
              if 'cache' not in r['source'])
  print(f'\nOn this CPU the pipeline without a cache delivers at least {worst:.0f}x '
        'what the step consumes (it runs in threads beside the step, so its '
        'cost is the CPU share column). An accelerator step faster than '
        '1 / (pipeline steps/s) would wait on it.')
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == '__main__':
  main()
