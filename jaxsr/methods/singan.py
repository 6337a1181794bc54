"""SinGAN with TTUR and adaptive FGM/PGD adversarial training of D (paper 004): one stage per scale.

A pyramid of generators G_0..G_N (0 = coarsest) is trained on one image,
scale after scale (§4.1; official SinGAN `training.py`). Stage `scale_n`:
- enter: G_n and D_n start from scale n-1's weights when their widths match
  (the official warm start), and the noise amplitude of scale n is set to
  noise_amp * RMSE(x_n, reconstruction of x_n from the coarser scales).
- step (one of the official `niter` iterations): `d_steps` critic updates on
  -mean D(x_n) + mean D(fake) + λ·GP (WGAN-GP, eq. 7; GP as
  `losses.adversarial.pixel_gradient_penalty`), each on a fake generated
  from a new random sample of the coarser scales, with D's adversarial
  training (§4.2-4.3, `jaxsr.attacks`): none, FGM, PGD or the adaptive
  switch between them, perturbing D's last layer (default) or its input;
  then `g_steps` generator updates on -mean D(fake) + α·MSE(G_n(rec), x_n)
  (eq. 8), the fake **regenerated** with the current G at every G step (the
  official reuses the last D step's graph, which PyTorch >= 1.5 rejects).
The reconstruction noise z_opt is fixed: grey Gaussian at scale 0, zeros
above (eq. 8's {Z_0..Z_N} fixed; the official code draws a new scale-0
z_opt every iteration, a quirk we do not copy).

Every image of the pyramid and every network, optimizer state, z_opt and
noise amplitude live in the state, so a checkpoint alone samples,
super-resolves and paints (`jaxsr.methods.singan_generate`). The training
images and their pyramid come from `jaxsr.data.single_image`. Images are
NHWC in [-1, 1] inside this module.
"""

import dataclasses
import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsr import config_lib
from jaxsr.attacks import perturbations
from jaxsr.data import pyramid as pyramid_lib
from jaxsr.data import single_image
from jaxsr.losses import adversarial
from jaxsr.methods import base
from jaxsr.methods import singan_generate as generation
from jaxsr.methods import stacked
from jaxsr.models import rrdbnet
from jaxsr.models import singan as nets

MODES = ('none', 'fgm', 'pgd', 'adaptive')
TARGETS = ('last_layer', 'input')
PYRAMID_KEYS = {'task', 'scale_factor', 'min_size', 'max_size', 'sr_min_size'}
MODEL_KEYS = {'base_features', 'max_features', 'kernel_grad'}
LOSS_KEYS = {'alpha', 'gp_weight', 'd_steps', 'g_steps', 'noise_amp'}
OPTIM_KEYS = {'lr_g', 'lr_d', 'b1', 'b2', 'milestone', 'gamma'}
ADV_KEYS = {'mode', 'target', 'epsilon', 'radius', 'alpha', 'steps', 'kappa',
            'power_iters'}
SINGAN_KEYS = {'iters_per_scale', 'steps_per_call', 'stack_images'}
STACK_IMAGES = ('auto', 'always', 'never')


@flax.struct.dataclass
class SinGANState:
  """The whole pyramid: per-scale tuples, index 0 = coarsest scale."""
  step: jax.Array
  reals: tuple  # (H_n, W_n, 3) float32 in [-1, 1].
  g: tuple  # {'params', 'batch_stats'} of G_n.
  d: tuple  # {'params', 'batch_stats'} of D_n (always in training mode).
  g_opt: tuple
  d_opt: tuple
  z_opt: tuple  # (1, H_n + 10, W_n + 10, 3): the fixed reconstruction noise.
  noise_amp: jax.Array  # (N,): 1 at scale 0, set by each stage's enter.
  u: tuple  # Power-iteration vector of D_n's attacked layer (W_sigma).


@dataclasses.dataclass(frozen=True)
class Attack:
  """D's adversarial training (§4.2-4.3), static in the jitted step."""
  mode: str  # 'none' | 'fgm' | 'pgd' | 'adaptive'.
  target: str  # 'last_layer' (§4.2's embedding layer) | 'input'.
  epsilon: float  # FGM radius (eq. 12).
  radius: float  # PGD ball radius r (eq. 13).
  alpha: float  # PGD step size α.
  steps: int  # PGD iterations T.
  kappa: float  # κ of the switch W_sigma < κ / (2α).
  power_iters: int


@dataclasses.dataclass(frozen=True)
class Losses:
  """Eq. 7-8's weights and the official inner loop counts."""
  alpha: float  # Reconstruction weight (10; 100 for SR).
  gp_weight: float  # λ of the WGAN-GP (0.1).
  d_steps: int
  g_steps: int
  noise_amp: float  # noise_amp_init (0.1).


def _with_tail_offset(params, delta):
  tail = dict(params['tail'], kernel=params['tail']['kernel'] + delta)
  return dict(params, tail=tail)


def _attacked_kernel(params, target: str) -> jax.Array:
  if target == 'last_layer':
    return params['tail']['kernel']
  return params['body']['head']['conv']['kernel']


def _d_step(d_vars, d_opt_state, u, real, fake, key, *, disc, d_tx,
            losses: Losses, attack: Attack):
  """One critic update of D_n on (real, fake) (1, H, W, 3); returns
  (D variables, optimizer state, power-iteration vector, metrics)."""
  stats = d_vars['batch_stats']

  def critic(params, x):
    # Training mode (batch statistics), as the official D always runs; its
    # running statistics are never read, so they are not tracked.
    return disc.apply({'params': params, 'batch_stats': stats}, x,
                      train=True, mutable=['batch_stats'])[0]

  def loss_fn(params, delta):
    """The Wasserstein term (eq. 7's L_adv for D) at the perturbation."""
    x_real, x_fake = real, fake
    if attack.target == 'last_layer':
      params = _with_tail_offset(params, delta)
    else:
      x_real, x_fake = real + delta[0], fake + delta[1]
    d_real = jnp.mean(critic(params, x_real))
    d_fake = jnp.mean(critic(params, x_fake))
    return -d_real + d_fake, {'d_real': d_real, 'd_fake': d_fake}

  def gp_fn(params):
    return adversarial.pixel_gradient_penalty(
        lambda x: critic(params, x), real, fake, key, losses.gp_weight)

  params = d_vars['params']
  if attack.target == 'last_layer':
    delta0 = jnp.zeros_like(params['tail']['kernel'])
  else:
    delta0 = (jnp.zeros_like(real), jnp.zeros_like(fake))
  matrix = perturbations.kernel_matrix(_attacked_kernel(params, attack.target))
  sigma, u = perturbations.top_singular_value(matrix, u, attack.power_iters)
  # The attack perturbs the critic's loss; the gradient penalty, a
  # constraint on the clean critic, is added unperturbed (our reading: the
  # paper does not say, and this keeps D's step one second-order pass).
  (wgan, aux), grads, info = perturbations.adversarial_grads(
      loss_fn, params, delta0, mode=attack.mode, epsilon=attack.epsilon,
      alpha=attack.alpha, radius=attack.radius, steps=attack.steps,
      sigma=sigma, kappa=attack.kappa, has_aux=True)
  gp, gp_grads = jax.value_and_grad(gp_fn)(params)
  grads = jax.tree.map(jnp.add, grads, gp_grads)
  loss = wgan + gp
  aux['gp'] = gp
  updates, d_opt_state = d_tx.update(grads, d_opt_state, params)
  params = optax.apply_updates(params, updates)
  metrics = {'d_loss': loss, **aux, 'sigma': sigma, 'pgd': info['pgd'],
             'delta_norm': info['delta_norm']}
  metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
  return dict(d_vars, params=params), d_opt_state, u, metrics


_D_METRICS = ('d_loss', 'd_real', 'd_fake', 'gp', 'sigma', 'pgd',
              'delta_norm')


def _replace(items: tuple, n: int, value) -> tuple:
  return tuple(value if i == n else x for i, x in enumerate(items))


def _scale_step(state, batch, rng, constants, *, n, net, g_tx, d_tx,
                losses: Losses, attack: Attack):
  """One iteration at scale n: d_steps critic updates, g_steps G updates."""
  del batch, constants  # The image lives in the state.
  key = jax.random.fold_in(rng, state.step)
  k_noise, k_d = jax.random.split(key)
  size = net.sizes[n]
  real = state.reals[n][None]
  amp = state.noise_amp[n]
  # One draw per iteration.
  noise_ = generation.pad(generation.noise(k_noise, n, size))
  gen, disc = net.gens[n], net.discs[n]

  def d_body(carry, j):
    # A new sample of the coarser scales each D step, the same noise_.
    g_vars, d_vars, d_opt, u, _ = carry
    k_prev, k_gp = jax.random.split(jax.random.fold_in(k_d, j))
    prev_p = generation.pad(net.draw(state, n, k_prev))
    z_in = amp * noise_ + prev_p
    fake, up = gen.apply(g_vars, z_in, prev_p, train=True,
                         mutable=['batch_stats'])
    g_vars = dict(g_vars, batch_stats=up['batch_stats'])
    d_vars, d_opt, u, metrics = _d_step(
        d_vars, d_opt, u, real, jax.lax.stop_gradient(fake), k_gp, disc=disc,
        d_tx=d_tx, losses=losses, attack=attack)
    return (g_vars, d_vars, d_opt, u, (z_in, prev_p, metrics)), None

  # Unrolled: XLA:CPU runs a rolled loop of these convs ~5x slower.
  empty = {k: jnp.zeros((), jnp.float32) for k in _D_METRICS}
  init = (state.g[n], state.d[n], state.d_opt[n], state.u[n],
          (jnp.zeros_like(noise_), jnp.zeros_like(noise_), empty))
  (g_vars, d_vars, d_opt, u, (z_in, prev_p, metrics)), _ = jax.lax.scan(
      d_body, init, jnp.arange(losses.d_steps), unroll=True)

  # The G steps read the last D step's noise and coarser sample (official).
  rec_p = generation.pad(net.draw(state, n, None))
  rec_in = amp * state.z_opt[n] + rec_p

  def g_loss_fn(params, stats):
    fake, up = gen.apply({'params': params, 'batch_stats': stats}, z_in,
                         prev_p, train=True, mutable=['batch_stats'])
    rec, up = gen.apply({'params': params, 'batch_stats': up['batch_stats']},
                        rec_in, rec_p, train=True, mutable=['batch_stats'])
    d_fake = disc.apply(d_vars, fake, train=True, mutable=['batch_stats'])[0]
    adv = -jnp.mean(d_fake)
    rec_loss = losses.alpha * jnp.mean(jnp.square(rec - real))
    return adv + rec_loss, ({'g_adv': adv, 'g_rec': rec_loss},
                            up['batch_stats'])

  def g_body(carry, _):
    g_vars, g_opt, _ = carry
    (_, (g_metrics, stats)), grads = jax.value_and_grad(
        g_loss_fn, has_aux=True)(g_vars['params'], g_vars['batch_stats'])
    updates, g_opt = g_tx.update(grads, g_opt, g_vars['params'])
    g_vars = {'params': optax.apply_updates(g_vars['params'], updates),
              'batch_stats': stats}
    return (g_vars, g_opt, g_metrics), None

  zero = jnp.zeros((), jnp.float32)
  (g_vars, g_opt, g_metrics), _ = jax.lax.scan(
      g_body, (g_vars, state.g_opt[n], {'g_adv': zero, 'g_rec': zero}),
      None, length=losses.g_steps, unroll=True)
  metrics.update(g_metrics, noise_amp=amp)
  state = state.replace(
      step=state.step + 1, g=_replace(state.g, n, g_vars),
      d=_replace(state.d, n, d_vars), g_opt=_replace(state.g_opt, n, g_opt),
      d_opt=_replace(state.d_opt, n, d_opt), u=_replace(state.u, n, u))
  return state, {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}


def _enter_scale(state, *, n, net, noise_amp_init: float):
  """Warm start from scale n-1 when widths match; scale n's noise amplitude."""
  if n > 0 and net.gens[n].features == net.gens[n - 1].features:
    state = state.replace(g=_replace(state.g, n, state.g[n - 1]),
                          d=_replace(state.d, n, state.d[n - 1]))
  if n > 0:
    rec = net.draw(state, n, None)
    rmse = jnp.sqrt(jnp.mean(jnp.square(state.reals[n][None] - rec)))
    state = state.replace(noise_amp=state.noise_amp.at[n].set(
        noise_amp_init * rmse))
  return state


def _init(rng, *, net, reals, g_tx, d_tx, target: str):
  keys = jax.random.split(rng, 3 * len(reals) + 1)
  g, d, g_opt, d_opt, z_opt, u = [], [], [], [], [], []
  for n, real in enumerate(reals):
    h, w = real.shape[:2]
    x = jnp.zeros((1, h + 2 * nets.PAD, w + 2 * nets.PAD, 3))
    g_vars = flax.core.unfreeze(net.gens[n].init(keys[3 * n], x, x,
                                                 train=False))
    d_vars = flax.core.unfreeze(net.discs[n].init(keys[3 * n + 1], real[None],
                                                  train=False))
    g.append(g_vars)
    d.append(d_vars)
    g_opt.append(g_tx.init(g_vars['params']))
    d_opt.append(d_tx.init(d_vars['params']))
    z = (generation.noise(keys[-1], 0, (h, w)) if n == 0
         else jnp.zeros((1, h, w, 3)))
    z_opt.append(generation.pad(z))
    rows = perturbations.kernel_matrix(
        _attacked_kernel(d_vars['params'], target)).shape[0]
    v = jax.random.normal(keys[3 * n + 2], (rows,))
    u.append(v / jnp.linalg.norm(v))
  return SinGANState(
      step=jnp.zeros((), jnp.int32),
      reals=tuple(jnp.asarray(r) for r in reals), g=tuple(g), d=tuple(d),
      g_opt=tuple(g_opt), d_opt=tuple(d_opt), z_opt=tuple(z_opt),
      noise_amp=jnp.ones((len(reals),), jnp.float32), u=tuple(u))


def _predict(state, inputs, rng, *, net, factor):
  sr = generation.super_resolve(state, inputs['lr'] * 2. - 1., rng, net=net,
                                factor=factor)
  return (sr + 1.) / 2.


def _schedule(lr: float, optim_config, steps_per_iter: int) -> optax.Schedule:
  """lr times gamma from `milestone` iterations on (official MultiStepLR at
  1600, gamma 0.1), counted in optimizer updates (steps_per_iter of them per
  iteration)."""
  return optax.piecewise_constant_schedule(
      lr, {int(optim_config.milestone) * steps_per_iter:
           float(optim_config.gamma)})


def _check(config) -> None:
  single_image.check(config.data)
  config_lib.check_keys(config.pyramid, PYRAMID_KEYS, 'pyramid')
  config_lib.check_keys(config.model, MODEL_KEYS, 'model')
  config_lib.check_keys(config.loss, LOSS_KEYS, 'loss')
  config_lib.check_keys(config.optim, OPTIM_KEYS, 'optim')
  config_lib.check_keys(config.adversarial, ADV_KEYS, 'adversarial')
  config_lib.check_keys(config.singan, SINGAN_KEYS, 'singan')
  adv = config.adversarial
  if adv.mode not in MODES:
    raise ValueError(f'config.adversarial.mode={adv.mode!r}; expected one of '
                     f'{MODES}')
  if adv.target not in TARGETS:
    raise ValueError(f'config.adversarial.target={adv.target!r}; expected one '
                     f'of {TARGETS}')
  if config.singan.iters_per_scale < 1 or config.singan.steps_per_call < 0:
    raise ValueError('config.singan.iters_per_scale must be >= 1 and '
                     'steps_per_call >= 0')
  stacks_images(config)  # Checks its value.
  if min(config.loss.d_steps, config.loss.g_steps) < 1:
    raise ValueError('config.loss.d_steps and g_steps must be >= 1')
  if config.scale < 2:
    raise ValueError(f'config.scale={config.scale}: the SR factor of predict '
                     'must be >= 2')


def stacks_images(config) -> bool:
  """Whether `sr_benchmark` trains same-size LRs as one stacked run:
  config.singan.stack_images 'always', 'never', or 'auto' = not on a CPU
  default backend (there a vmapped conv with per-run kernels is a grouped
  conv, which XLA:CPU runs slowly: benchmarks/RESULTS.md, "Several
  pyramids at once on XLA:CPU")."""
  stack = config.singan.get('stack_images', 'auto')  # Old configs: 'auto'.
  if stack not in STACK_IMAGES:
    raise ValueError(f'config.singan.stack_images={stack!r}; expected one of '
                     f'{STACK_IMAGES}')
  if stack == 'auto':
    return jax.default_backend() != 'cpu'
  return stack == 'always'


def build_nets(config, pyramid: pyramid_lib.Pyramid) -> generation.Nets:
  """The per-scale G and D of a pyramid (widths per config.model)."""
  widths = [nets.features_at(n, config.model.base_features,
                             config.model.max_features)
            for n in range(pyramid.num_scales)]
  # Configs saved before the option existed mean 'auto'.
  kernel_grad = rrdbnet.resolve_kernel_grad(
      config.model.get('kernel_grad', 'auto'))
  return generation.Nets(
      gens=tuple(nets.Generator(features=w, kernel_grad=kernel_grad)
                 for w in widths),
      discs=tuple(nets.Discriminator(features=w, kernel_grad=kernel_grad)
                  for w in widths),
      sizes=pyramid.sizes, factor=pyramid.factor)


def image_and_nets(config) -> tuple[np.ndarray, list[np.ndarray],
                                     generation.Nets]:
  """The (first) training image, its pyramid images and the networks."""
  images, pyramid = single_image.load(config.data, config.pyramid,
                                      config.scale)
  return images[0], pyramid_lib.images(images[0], pyramid), build_nets(
      config, pyramid)


def build(config) -> base.Method:
  """SinGAN from config.{data,pyramid,model,loss,optim,adversarial,singan}."""
  _check(config)
  images, pyramid = single_image.load(config.data, config.pyramid,
                                      config.scale)
  net = build_nets(config, pyramid)
  reals = [pyramid_lib.images(image, pyramid) for image in images]
  losses = Losses(alpha=float(config.loss.alpha),
                  gp_weight=float(config.loss.gp_weight),
                  d_steps=int(config.loss.d_steps),
                  g_steps=int(config.loss.g_steps),
                  noise_amp=float(config.loss.noise_amp))
  adv = config.adversarial
  attack = Attack(mode=adv.mode, target=adv.target,
                  epsilon=float(adv.epsilon), radius=float(adv.radius),
                  alpha=float(adv.alpha), steps=int(adv.steps),
                  kappa=float(adv.kappa), power_iters=int(adv.power_iters))
  opt = config.optim
  g_tx = optax.adam(_schedule(opt.lr_g, opt, losses.g_steps), b1=opt.b1,
                    b2=opt.b2)
  d_tx = optax.adam(_schedule(opt.lr_d, opt, losses.d_steps), b1=opt.b1,
                    b2=opt.b2)
  iters = int(config.singan.iters_per_scale)
  per_call = int(config.singan.steps_per_call) or base.steps_per_call_auto()
  stages = tuple(
      base.Stage(
          f'scale_{n}', iters,
          step=functools.partial(_scale_step, n=n, net=net, g_tx=g_tx,
                                 d_tx=d_tx, losses=losses, attack=attack),
          enter=functools.partial(_enter_scale, n=n, net=net,
                                  noise_amp_init=losses.noise_amp),
          steps_per_call=min(per_call, iters))
      for n in range(len(net.sizes)))
  inits = [functools.partial(_init, net=net, reals=r, g_tx=g_tx, d_tx=d_tx,
                             target=attack.target) for r in reals]
  method = base.Method(
      init=inits[0], stages=stages,
      predict=functools.partial(_predict, net=net, factor=float(config.scale)),
      init_fields=(), tileable=False, num_devices=1)
  # Several images: one vmapped program (their runs read their images from
  # the state only).
  return stacked.stack(method, inits) if len(inits) > 1 else method
