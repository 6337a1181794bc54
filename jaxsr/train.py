"""The one method-agnostic training loop: mesh, data, jit(step), clu hooks, evals, checkpoints."""

import json
import os

from absl import logging
from clu import metric_writers
from clu import periodic_actions
import jax
import numpy as np
from PIL import Image

from jaxsr import checkpoint
from jaxsr import methods
from jaxsr import report
from jaxsr import scoring
from jaxsr import sharding
from jaxsr import xla_flags
from jaxsr.data import datasets
from jaxsr.data import pipeline
from jaxsr.data import sources

TRAIN_KEYS = {'num_steps', 'log_every', 'eval_every', 'checkpoint_every',
              'keep_checkpoints'}
EVAL_KEYS = {'tile', 'overlap', 'rounded_y', 'grid_images'}


def _check_config(config) -> None:
  for name, allowed in (('train', TRAIN_KEYS), ('eval', EVAL_KEYS)):
    unknown = set(config[name].keys()) - allowed
    if unknown:
      raise ValueError(f'unknown key(s) {sorted(unknown)} in config.{name}; '
                       f'expected some of {sorted(allowed)}')
  sources.check(config.data)
  if config.data.hr_patch % config.scale:
    raise ValueError(f'config.data.hr_patch={config.data.hr_patch} is not a '
                     f'multiple of config.scale={config.scale}')


def init_key(seed: int) -> jax.Array:
  """The parameter-initialization key: the 'rbg' PRNG, deterministic per seed.

  Measured on a 2-core CPU, building the full RRDBNet+L state takes 52 s under
  jit with threefry keys (XLA compiles one hash per parameter shape), 9.5 s
  eagerly with threefry and 4.2 s eagerly with rbg.
  """
  return jax.random.key(seed, impl='rbg')


def create_state(method, mesh, rng):
  """The method's initial state, replicated over the mesh.

  Built eagerly (op by op, cached per shape) rather than under jit: our models
  are small enough for one device, and eager init avoids a long compile.
  """
  return jax.device_put(method.init(rng), sharding.replicated(mesh))


def evaluate_dataset(predict, state, dataset: datasets.Dataset, scale: int,
                     eval_config) -> tuple[list[dict], list[list[np.ndarray]]]:
  """Per-image rows (model and bicubic scores) and grid rows (bicubic|SR|HR).

  Each image gives two grid rows: the whole image and a 96x96 centre crop.
  """
  jit_predict = jax.jit(predict)
  rows, grid = [], []
  for i, name in enumerate(dataset.names):
    hr = dataset.load_hr(i)
    lr = datasets.lr_of(dataset, i, scale)
    sr = scoring.model_sr(lambda x: jit_predict(state, x), lr, scale,
                          eval_config.tile, eval_config.overlap)
    bic = scoring.bicubic(lr, scale)
    model = scoring.score_pair(sr, hr, scale, eval_config.rounded_y)
    base = scoring.score_pair(bic, hr, scale, eval_config.rounded_y)
    rows.append({'name': name, **model,
                 **{f'bicubic_{k}': v for k, v in base.items()}})
    if i < eval_config.grid_images:
      grid.append([bic, sr, hr])
      grid.append([report.center_crop(x, 96) for x in (bic, sr, hr)])
  return rows, grid


WARMUP_RESULTS = 'results_warmup.json'


def _final_report(rows, grid, workdir: str) -> str:
  """Writes results.md/.json and grid.png; returns the Markdown text.

  When the run had a PSNR warm-up, its held-out scores (results_warmup.json,
  written as the warm-up ended) appear as a 'PSNR model' column.
  """
  warm = None
  warm_path = os.path.join(workdir, WARMUP_RESULTS)
  if os.path.exists(warm_path):
    with open(warm_path) as f:
      warm = {r['name']: r for r in json.load(f)['images']}
  columns = [('bicubic PSNR', 'bicubic_psnr', rows),
             ('model PSNR', 'psnr', rows),
             ('bicubic SSIM', 'bicubic_ssim', rows),
             ('model SSIM', 'ssim', rows)]
  if warm is not None:
    warm_rows = [warm[r['name']] for r in rows]
    columns.insert(1, ('PSNR-model PSNR', 'psnr', warm_rows))
    columns.insert(4, ('PSNR-model SSIM', 'ssim', warm_rows))
  table_rows = [[r['name']] + [src[i][key] for _, key, src in columns]
                for i, r in enumerate(rows)]
  means = [float(np.mean([r[key] for r in src])) for _, key, src in columns]
  table_rows.append(['**mean**'] + means)
  table = report.markdown_table(['image'] + [c[0] for c in columns],
                                table_rows)
  mean = {k: float(np.mean([r[k] for r in rows]))
          for k in ('bicubic_psnr', 'psnr', 'bicubic_ssim', 'ssim')}
  gain = mean['psnr'] - mean['bicubic_psnr']
  text = (f'{table}\n\nY channel, border = scale. Model vs bicubic: '
          f'{gain:+.3f} dB PSNR.\n')
  with open(os.path.join(workdir, 'results.md'), 'w') as f:
    f.write(text)
  with open(os.path.join(workdir, 'results.json'), 'w') as f:
    json.dump({'images': rows, 'mean': mean}, f, indent=2)
  if grid:
    Image.fromarray(report.image_grid(grid)).save(
        os.path.join(workdir, 'grid.png'))
  return text


def _check_finite(metrics: dict, step: int, mngr) -> None:
  bad = [k for k, v in metrics.items() if not np.all(np.isfinite(v))]
  if bad:
    raise FloatingPointError(
        f'non-finite {", ".join(bad)} at step {step}; training stopped and the '
        f'last good checkpoint (step {mngr.latest_step()}) kept')


def train_and_evaluate(config, workdir: str):
  """Trains config.method per config, resuming from workdir; returns the final state."""
  _check_config(config)
  os.makedirs(workdir, exist_ok=True)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2))
  mesh = sharding.make_mesh()
  sharding.check_batch_size(config.data.batch_size, mesh)
  method = methods.build(config)
  init_rng = init_key(config.seed)
  train_rng = jax.random.fold_in(jax.random.key(config.seed), 1)
  train_ds = sources.train_set(config.data, config.scale)
  val_ds = sources.val_set(config.data, config.scale)

  state = create_state(method, mesh, init_rng)
  mngr = checkpoint.manager(workdir, config.train.keep_checkpoints)
  restored = checkpoint.restore_latest(mngr, state)
  if restored is not None:
    state = restored
  elif config.init_from:
    state = checkpoint.init_from(state, config.init_from, method.init_fields)
  start = int(state.step)
  num_steps = config.train.num_steps
  logging.info('%s on %d device(s), steps %d..%d', config.method,
               mesh.devices.size, start, num_steps)
  if jax.default_backend() == 'cpu' and xla_flags.cpu_convs_use_ynn():
    logging.warning(
        'XLA:CPU hands convolutions to YNNPACK here, several times slower for '
        'these networks: JAX started before jaxsr was imported, or XLA_FLAGS '
        'sets --%s (see jaxsr/xla_flags.py).', xla_flags.YNN_FLAG)

  repl, data = sharding.replicated(mesh), sharding.data_sharded(mesh)
  constants = jax.device_put(method.constants(), repl)
  jit_step, jit_warmup = (
      jax.jit(fn, in_shardings=(repl, data, repl, repl),
              out_shardings=(repl, repl), donate_argnums=0)
      if fn is not None else None
      for fn in (method.train_step, method.warmup_step))
  batches = pipeline.TrainBatches(
      train_ds, scale=config.scale, hr_patch=config.data.hr_patch,
      batch_size=config.data.batch_size, seed=config.seed, start_step=start,
      augment=config.data.augment, process_index=jax.process_index(),
      process_count=jax.process_count(), num_threads=config.data.num_threads,
      prefetch=config.data.prefetch)
  writer = metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() > 0)
  progress = periodic_actions.ReportProgress(
      num_train_steps=num_steps, writer=writer,
      every_steps=config.train.log_every)
  tc = config.train
  try:
    with metric_writers.ensure_flushes(writer):
      for step in range(start, num_steps):
        with jax.profiler.StepTraceAnnotation('train', step_num=step):
          batch = sharding.put_batch(next(batches), mesh)
          step_fn = jit_warmup if step < method.warmup_steps else jit_step
          state, metrics = step_fn(state, batch, train_rng, constants)
        done = step + 1
        progress(done)
        if done % tc.log_every == 0 or done == num_steps:
          metrics = jax.device_get(metrics)
          _check_finite(metrics, done, mngr)
          writer.write_scalars(done, {f'train/{k}': v
                                      for k, v in metrics.items()})
        if done % tc.checkpoint_every == 0 or done == num_steps:
          with progress.timed('checkpoint'):
            checkpoint.save(mngr, done, state)
        if (done == method.warmup_steps and val_ds is not None
            and jax.process_index() == 0):
          # The PSNR model the GAN phase starts from, for the final table.
          rows, _ = evaluate_dataset(method.predict, state, val_ds,
                                     config.scale, config.eval)
          with open(os.path.join(workdir, WARMUP_RESULTS), 'w') as f:
            json.dump({'step': done, 'images': rows}, f, indent=2)
        if val_ds is not None and tc.eval_every and done % tc.eval_every == 0:
          with progress.timed('eval'):
            rows, grid = evaluate_dataset(method.predict, state, val_ds,
                                          config.scale, config.eval)
          summary = scoring.summarize(rows)
          writer.write_scalars(done, {f'eval/val/{k}': summary[k]
                                      for k in ('psnr', 'ssim')})
          if grid:  # bicubic | SR | HR rows, viewable in TensorBoard.
            writer.write_images(done, {'eval/val/grid': report.image_grid(
                grid)[None]})
      if val_ds is not None and jax.process_index() == 0:
        rows, grid = evaluate_dataset(method.predict, state, val_ds,
                                      config.scale, config.eval)
        logging.info('Held-out images after %d steps:\n%s', int(state.step),
                     _final_report(rows, grid, workdir))
  finally:
    batches.close()
    mngr.wait_until_finished()
    mngr.close()
  return state
