"""The Method and Stage records every builder returns, and the pieces all methods share.

A method is a sequence of stages run one after another by `jaxsr.train` (a
PSNR warm-up then GAN training; one stage per SinGAN scale; pre-training,
buffer filling and actor-critic), plus a `predict` that may itself be an
optimization (a latent search has no stage at all). The state is one
`flax.struct.dataclass` of arrays with a global `step` field, the same pytree
in every stage, so that a checkpoint restores whatever stage it was saved in.
"""

import dataclasses
import re
from collections.abc import Callable, Iterator
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import optax

from jaxsr import checkpoint
from jaxsr.data import datasets
from jaxsr.data import pipeline
from jaxsr.data import sources
from jaxsr.optim import schedules

State = Any
StepFn = Callable[[State, dict, jax.Array, Any], tuple[State, dict]]
OPTIM_KEYS = {'lr', 'b1', 'b2', 'eps', 'decay_every', 'decay_factor',
              'milestones', 'milestone_fractions'}


@dataclasses.dataclass(frozen=True)
class Stage:
  """One phase of training.

  Attributes:
    name: lower-case identifier; metrics are written as train/<name>/<key>
      and a held-out table as results_<name>.json.
    num_steps: how many steps the stage runs (>= 1).
    step: (state, batch, rng, constants) -> (state, metrics), pure. `rng` is
      the run's training key: fold in state.step (global) for this step's
      randomness. metrics is a flat dict of float32 scalars.
    enter: state -> state, run once (jitted) just before the stage's first
      step, also when a resumed run starts exactly there, never when a run
      resumes inside the stage: warm starts, EMA restarts, target networks.
    evaluate_at_end: score the held-out set when the stage ends and keep the
      table (results_<name>.json) for the final report.
    steps_per_call: steps run by one dispatch (lax.scan over that many
      batches): for small networks whose steps cost less than a dispatch
      (SinGAN). Checkpoints and evaluations then fall on block ends; every
      step's metrics are still logged.
  """
  name: str
  num_steps: int
  step: StepFn
  enter: Callable[[State], State] | None = None
  evaluate_at_end: bool = False
  steps_per_call: int = 1

  def __post_init__(self):
    if not re.fullmatch(r'[a-z][a-z0-9_]*', self.name):
      raise ValueError(f'stage name {self.name!r}: expected a lower-case '
                       'identifier (it names metrics and files)')
    if self.num_steps < 1:
      raise ValueError(f'stage {self.name!r} has num_steps={self.num_steps}; '
                       'leave a stage out instead of giving it no steps')
    if self.steps_per_call < 1:
      raise ValueError(f'stage {self.name!r} has steps_per_call='
                       f'{self.steps_per_call}; expected >= 1')


def steps_per_call_auto() -> int:
  """Iterations per dispatch where a config says 0: 50 on GPU/TPU, 1 on CPU.

  The convs of SinGAN and of a latent search are small, so on an accelerator
  one call per iteration is dominated by dispatch. On XLA:CPU a rolled
  lax.scan of an iteration runs its convolutions' gradients on a generic
  path: SinGAN's coarsest demo scale 5.6x slower per iteration than one call
  each (0.68 vs 0.12 s), a 256 px StyleGAN2 search 185 vs 84 s
  (benchmarks/RESULTS.md); the RRDBNet micro-batches met the same cost.
  """
  return 1 if jax.default_backend() == 'cpu' else 50


@dataclasses.dataclass(frozen=True)
class Method:
  """A method's pure functions; `jaxsr.train` knows nothing else about it.

  Attributes:
    init: rng -> state (arrays only, with a scalar int32 `step`).
    stages: run in order; () when there is nothing to train (the run then
      checkpoints step 0 and evaluates).
    predict: (state, inputs, rng) -> sr, float32 NHWC (not clipped); inputs
      holds 'lr' float32 NHWC in [0, 1] (and whatever else a method reads).
    constants: () -> pytree of frozen arrays every step reads (say, VGG19
      weights of a perceptual loss), loaded once by the loop when there are
      steps to run, passed to each step as an argument and never
      checkpointed; prediction never reads them.
    init_fields: state fields that `config.init_from` copies from another run.
    tileable: whether predict may run on tiles of a large image (False for
      whole-image methods: a latent search, SinGAN).
    train_batches: (start_step, process_index, process_count) -> iterator of
      this host's batches from that step on (a dict of arrays); None when the
      steps read no batch (they get {}).
    held_out: () -> the held-out dataset scored during and after training, or
      None.
    num_devices: devices of the mesh; None for all (data parallel), 1 for a
      single-image method.
    check_start: workdir -> None, called by the training loop before it
      builds or writes anything: raises ValueError when the config must not
      be trained as it is (a GAN from a random G: `pretrained_g_check`).
    resumable_keys: config keys (fnmatch patterns) of this method that a
      rerun of a workdir may change, on top of jaxsr.workdir.RESUMABLE.
    finish: (state, workdir) -> None, run by process 0 once the last
      checkpoint is written, before the held-out report: the per-input
      outputs of a method whose result is a search (face SR by latent
      exploration writes its faces, curves and results.json). Runs again on
      a rerun of a finished workdir, so it must skip what it wrote before.
    predict_code: (state, lr) -> (N, dim), the degradation code a blind
      method reads from the LR (None for others); with encode_kernel:
      (state, kernels (N, k, k)) -> (N, dim), the true kernels' codes in the
      method's own PCA, `jaxsr.evaluate` scores the code's error.
  """
  init: Callable[[jax.Array], State]
  stages: tuple[Stage, ...]
  predict: Callable[[State, dict, jax.Array], jax.Array]
  constants: Callable[[], Any] = dict
  init_fields: tuple[str, ...] = ('g_params',)
  tileable: bool = True
  train_batches: Callable[[int, int, int], Iterator[dict]] | None = None
  held_out: Callable[[], datasets.Dataset | None] = lambda: None
  num_devices: int | None = None
  check_start: Callable[[str], None] = lambda workdir: None
  resumable_keys: tuple[str, ...] = ()
  finish: Callable[[State, str], None] | None = None
  predict_code: Callable[[State, jax.Array], jax.Array] | None = None
  encode_kernel: Callable[[State, jax.Array], jax.Array] | None = None

  def __post_init__(self):
    names = [s.name for s in self.stages]
    if len(set(names)) != len(names):
      raise ValueError(f'stage names must be unique, got {names}')

  @property
  def num_steps(self) -> int:
    """Steps of all stages together."""
    return sum(s.num_steps for s in self.stages)

  def stage_at(self, step: int) -> tuple[Stage, int]:
    """(the stage that runs global step `step`, the step it starts at)."""
    start = 0
    for stage in self.stages:
      if step < start + stage.num_steps:
        return stage, start
      start += stage.num_steps
    raise ValueError(f'step {step} is past the last stage (the method has '
                     f'{self.num_steps} steps)')


def init_key(seed: int) -> jax.Array:
  """The parameter-initialization key: the 'rbg' PRNG, deterministic per seed.

  Measured on a 2-core CPU, building the full RRDBNet+L state takes 52 s under
  jit with threefry keys (XLA compiles one hash per parameter shape), 9.5 s
  eagerly with threefry and 4.2 s eagerly with rbg.
  """
  return jax.random.key(seed, impl='rbg')


def random_g_error(config, warmup: int, gan_steps: int,
                   pretrain: str) -> str:
  """Why the GAN stage of this config would start from a random G ('' if not).

  The papers fine-tune a PSNR-trained G (paper 000 §4.1, paper 002 §SR):
  without config.init_from and without a warm-up (`warmup` = 0 steps) the
  'gan' stage (`gan_steps` > 0) would start from the random init. `pretrain`
  names the config that trains the PSNR G.
  """
  if not gan_steps or warmup or config.init_from:
    return ''
  return ('config.init_from is empty and config.psnr_warmup_steps is 0: GAN '
          'training would start from a random G, but the paper fine-tunes a '
          f'PSNR-trained G; train one with {pretrain} and pass '
          '--config.init_from=<its workdir>, or set --config.psnr_warmup_steps'
          ', or --config.allow_random_g=True to start from a random G anyway')


def pretrained_g_check(config, warmup: int,
                       gan_steps: int, pretrain: str) -> Callable[[str], None]:
  """Method.check_start of a GAN fine-tuned from a PSNR-trained G.

  The returned check passes when the workdir holds a checkpoint (a resumed
  run), refuses a start from a random G (`random_g_error`) with a ValueError
  unless config.allow_random_g is True, and then logs a warning instead.
  """
  error = random_g_error(config, warmup, gan_steps, pretrain)
  allowed = bool(config.get('allow_random_g', False))

  def check(workdir: str) -> None:
    if not error or checkpoint.steps_on_disk(workdir):  # A resume.
      return
    if not allowed:
      raise ValueError(error)
    logging.warning('config.allow_random_g=True: GAN training starts from a '
                    'random G, not from a PSNR-trained one as in the paper')

  return check


def patch_data(config) -> dict:
  """Method fields for paired-patch SR training on config.data (see
  jaxsr.data.sources): `train_batches` and `held_out`."""
  sources.check(config.data)
  if config.data.hr_patch % config.scale:
    raise ValueError(f'config.data.hr_patch={config.data.hr_patch} is not a '
                     f'multiple of config.scale={config.scale}')
  data = config.data

  def train_batches(start_step, process_index, process_count):
    return pipeline.TrainBatches(
        sources.train_set(data, config.scale), scale=config.scale,
        hr_patch=data.hr_patch, batch_size=data.batch_size, seed=config.seed,
        start_step=start_step, augment=data.augment,
        process_index=process_index, process_count=process_count,
        num_threads=data.num_threads, prefetch=data.prefetch)

  return {'train_batches': train_batches,
          'held_out': lambda: sources.val_set(data, config.scale)}


def with_learning_rate(step_fn: StepFn, lr_schedule: optax.Schedule,
                       first_step: int = 0) -> StepFn:
  """step_fn with its learning rate in the metrics, as lr_schedule of the
  stage's own step count (state.step - first_step)."""
  def step(state, batch, rng, constants):
    new_state, metrics = step_fn(state, batch, rng, constants)
    metrics['learning_rate'] = jnp.asarray(
        lr_schedule(state.step - first_step), jnp.float32)
    return new_state, metrics
  return step


def adam(optim_config, schedule: optax.Schedule) -> optax.GradientTransformation:
  """Adam with the configured betas/eps and no weight decay."""
  return optax.adam(schedule, b1=optim_config.b1, b2=optim_config.b2,
                    eps=optim_config.eps)


def schedule(optim_config, num_steps: int) -> optax.Schedule:
  """The configured schedule of a stage of `num_steps` steps, counted from 0.

  Decay at `milestones` (steps of the stage), at `milestone_fractions` of
  num_steps, or every `decay_every` steps; else constant.
  """
  milestones = tuple(optim_config.get('milestones') or ())
  fractions = tuple(optim_config.get('milestone_fractions') or ())
  if milestones and fractions:
    raise ValueError('give milestones or milestone_fractions, not both')
  if fractions:
    if not all(0 < f < 1 for f in fractions):
      raise ValueError(f'milestone_fractions={fractions} must lie in (0, 1)')
    milestones = tuple(int(num_steps * f) for f in fractions)
  if milestones:
    return schedules.multistep(optim_config.lr, milestones,
                               optim_config.decay_factor)
  if optim_config.get('decay_every'):
    return schedules.step_decay(optim_config.lr, optim_config.decay_every,
                                optim_config.decay_factor)
  return optax.constant_schedule(optim_config.lr)


def counted_from(lr_schedule: optax.Schedule, offset: int) -> optax.Schedule:
  """lr_schedule(count - offset): the schedule of an optimizer that made
  `offset` updates in earlier stages, so that it counts this stage's steps
  (G after a PSNR warm-up of `offset` steps reads the same learning rate as
  a D that starts with the stage)."""
  if not offset:
    return lr_schedule
  return lambda count: lr_schedule(jnp.maximum(count - offset, 0))


def generator_predict(state, inputs: dict, rng: jax.Array, *, g,
                      field: str = 'g_params') -> jax.Array:
  """A feed-forward generator's SR of inputs['lr'] with state.<field>."""
  del rng  # Deterministic.
  return g.apply({'params': getattr(state, field)}, inputs['lr'])
