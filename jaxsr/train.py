"""The one method-agnostic training loop: build, restore, step through the stages, log, checkpoint, evaluate."""

import itertools
import os
import time

from absl import logging
from clu import metric_writers
from clu import periodic_actions
import jax
import numpy as np
from orbax.checkpoint import multihost as ocp_multihost

from jaxsr import checkpoint
from jaxsr import config_lib
from jaxsr import methods
from jaxsr import sharding
from jaxsr import workdir as workdir_lib
from jaxsr import xla_flags
from jaxsr.evaluation import held_out
from jaxsr.evaluation import scoring
from jaxsr.methods import base

TRAIN_KEYS = {'num_steps', 'log_every', 'eval_every', 'checkpoint_every',
              'keep_checkpoints'}
EVAL_KEYS = {'tile', 'overlap', 'rounded_y', 'grid_images'}


def _check_finite(metrics: dict, step: int, mngr) -> None:
  bad = [k for k, v in metrics.items() if not np.all(np.isfinite(v))]
  if bad:
    raise FloatingPointError(
        f'non-finite {", ".join(bad)} at step {step}; training stopped and the '
        f'last good checkpoint (step {mngr.latest_step()}) kept')


def _runner(stage, k: int):
  """stage.step, or k of its steps in one call (lax.scan over k batches
  stacked on a leading axis; the metrics come back stacked the same way)."""
  if k == 1:
    return stage.step

  def block(state, batches, rng, constants):
    return jax.lax.scan(lambda s, b: stage.step(s, b, rng, constants), state,
                        batches, length=k)
  return block


def _next_batches(batches, k: int, mesh) -> dict:
  """The next k host batches as global arrays ({} when the steps read none),
  stacked on a leading axis when k > 1."""
  if batches is None:
    return {}
  items = [next(batches) for _ in range(k)]
  if k == 1:
    return sharding.put_batch(items[0], mesh)
  return sharding.put_batch(jax.tree.map(lambda *x: np.stack(x), *items),
                            mesh, block=True)


def _crossed(before: int, after: int, every: int) -> bool:
  """Whether a multiple of `every` lies in (before, after]."""
  return bool(every) and after // every > before // every


def _model_sr(method, state, config):
  """uint8 LR -> uint8 SR with the method's predict (tiled when it may be)."""
  predict = jax.jit(method.predict)
  rng = jax.random.fold_in(jax.random.key(config.seed), 2)
  tile = config.eval.tile if method.tileable else 0
  return lambda lr: scoring.model_sr(
      lambda x: predict(state, {'lr': x}, rng), lr, config.scale, tile,
      config.eval.overlap)


def train_and_evaluate(config, workdir: str):
  """Runs config.method's stages, resuming from workdir; returns the final state.

  A rerun whose config changes the state or the method of the run stored in
  workdir is refused before anything is initialized (jaxsr/workdir.py);
  config.json is written only once the state has been restored or built.
  """
  method = methods.build(config)  # Validates the method's config first.
  steps = checkpoint.steps_on_disk(workdir)
  changes = workdir_lib.check_rerun(config, workdir,
                                    steps[-1] if steps else None,
                                    method.resumable_keys)
  method.check_start(workdir)  # E.g. a GAN from a random G: refused.
  config_lib.check_keys(config.train, TRAIN_KEYS, 'train')
  config_lib.check_keys(config.eval, EVAL_KEYS, 'eval')
  tc = config.train
  os.makedirs(workdir, exist_ok=True)
  mesh = sharding.make_mesh(jax.devices()[:method.num_devices])
  repl, data = sharding.replicated(mesh), sharding.data_sharded(mesh)
  block = sharding.data_sharded(mesh, block=True)
  # Built eagerly (op by op, cached per shape), not under jit: a long compile
  # for networks that fit one device.
  state = jax.device_put(method.init(base.init_key(config.seed)), repl)
  mngr = checkpoint.manager(workdir, tc.keep_checkpoints)
  state = checkpoint.restore_or_init(mngr, state, config.init_from,
                                     method.init_fields)
  start, total = int(state.step), method.num_steps
  if any(s > start for s in steps):  # Damaged steps the restore skipped.
    if jax.process_index() == 0:
      checkpoint.set_aside(workdir, after=start)
    ocp_multihost.sync_global_processes(f'jaxsr_set_aside_{start}')
    mngr.reload()
  logging.info('%s on %d device(s), steps %d..%d, stages %s', config.method,
               mesh.devices.size, start, total,
               [(s.name, s.num_steps) for s in method.stages])
  if jax.default_backend() == 'cpu' and xla_flags.cpu_convs_use_ynn():
    logging.warning(
        'XLA:CPU hands convolutions to YNNPACK here, several times slower for '
        'these networks: JAX started before jaxsr was imported, or XLA_FLAGS '
        'sets --%s (see jaxsr/xla_flags.py).', xla_flags.YNN_FLAG)

  train_rng = jax.random.fold_in(jax.random.key(config.seed), 1)
  runners = {}  # (stage name, steps per call) -> jitted; compiled once.
  enters = {s.name: jax.jit(s.enter, in_shardings=repl, out_shardings=repl,
                            donate_argnums=0)
            for s in method.stages if s.enter is not None}
  val_ds = method.held_out()
  batches = source = constants = None
  if start < total:
    constants = jax.device_put(method.constants(), repl)
    if method.train_batches is not None:
      batches = source = method.train_batches(start, jax.process_index(),
                                              jax.process_count())
      first_batch = next(batches)
      sharding.check_batch(first_batch, mesh)  # Before any step runs.
      batches = itertools.chain([first_batch], batches)
  if jax.process_index() == 0:  # The run is known to be valid from here on.
    workdir_lib.write_config(config, workdir, changes, start)
  writer = metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() > 0)
  progress = periodic_actions.ReportProgress(
      num_train_steps=total, writer=writer, every_steps=tc.log_every)
  try:
    with metric_writers.ensure_flushes(writer):
      step, last_time = start, time.monotonic()
      while step < total:
        stage, first = method.stage_at(step)
        last = first + stage.num_steps
        if step == first and stage.name in enters:
          state = enters[stage.name](state)
        k = min(stage.steps_per_call, last - step)
        if (stage.name, k) not in runners:
          runners[stage.name, k] = jax.jit(
              _runner(stage, k), in_shardings=(
                  repl, data if k == 1 else block, repl, repl),
              out_shardings=(repl, repl), donate_argnums=0)
        with jax.profiler.StepTraceAnnotation(stage.name, step_num=step):
          batch = _next_batches(batches, k, mesh)
          state, metrics = runners[stage.name, k](state, batch, train_rng,
                                                  constants)
        done = step + k
        now = time.monotonic()
        for i, s in enumerate(range(done - k + 1, done + 1)):
          # A block's steps are spread over its wall time, so that a report
          # inside the first block measures a rate, not 0 s.
          progress(s, t=last_time + (now - last_time) * (i + 1) / k)
        last_time = now
        logged = [s for s in range(done - k + 1, done + 1)
                  if s % tc.log_every == 0 or s == last]
        if logged:
          metrics = jax.device_get(metrics)
        for s in logged:
          values = metrics if k == 1 else {
              key: v[s - done + k - 1] for key, v in metrics.items()}
          _check_finite(values, s, mngr)
          writer.write_scalars(s, {f'train/{stage.name}/{key}': v
                                   for key, v in values.items()})
        if _crossed(done - k, done, tc.checkpoint_every) or done == last:
          with progress.timed('checkpoint'):
            checkpoint.save(mngr, done, state)
        evaluates = val_ds is not None and jax.process_index() == 0
        if evaluates and done == last and stage.evaluate_at_end:
          rows, _ = held_out.evaluate_model(_model_sr(method, state, config),
                                            val_ds, config.scale, config.eval)
          held_out.write_stage_results(workdir, stage.name, done, rows)
        if evaluates and _crossed(done - k, done, tc.eval_every):
          with progress.timed('eval'):
            rows, grid = held_out.evaluate_model(
                _model_sr(method, state, config), val_ds, config.scale,
                config.eval)
          scalars, images = held_out.summaries(rows, grid, 'eval/val')
          writer.write_scalars(done, scalars)
          writer.write_images(done, images)
        step = done
      if mngr.latest_step() != int(state.step):
        checkpoint.save(mngr, int(state.step), state)  # E.g. no stages at all.
      if method.finish is not None and jax.process_index() == 0:
        method.finish(state, workdir)
      if val_ds is not None and jax.process_index() == 0:
        rows, grid = held_out.evaluate_model(_model_sr(method, state, config),
                                             val_ds, config.scale, config.eval)
        text = held_out.final_report(workdir, rows, grid, int(state.step),
                                     [s.name for s in method.stages])
        logging.info('Held-out images after %d steps:\n%s', int(state.step),
                     text)
  finally:
    if hasattr(source, 'close'):
      source.close()
    mngr.wait_until_finished()
    mngr.close()
  return state
