"""Times one critic update of the SAN-SR critic under each normalization.

  python benchmarks/normalization.py [--batch 8] [--repeats 5] [--batch_norm]

Variants: none, spectral (Miyato, one power iteration), SAN with r = 100% and
r = 25% (eq. 9's compensation), and WGAN-GP (no normalization, gradient
penalty weight 10). One update = hinge loss on real and fake 128x128 crops,
its gradient, Adam, then the normalization refresh (SAN divisors / spectral u).
Ratios are to 'none', measured in one run (paper 002: SAN about as fast as SN,
about 20% cheaper than GP). BN is off by default: with the official critic's
BN after every conv, SAN's conv divisors are cancelled (see san_critic.py).
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from jaxsr.losses import adversarial
from jaxsr.models import san_critic


def make_update(critic, tx, gp_weight: float):
  """A jitted (params, norm, opt, real, fake, key) -> (params, norm, opt)."""

  def update(params, norm, opt_state, real, fake, key):
    k_real, k_fake, k_gp, k_norm = jax.random.split(key, 4)

    def loss_fn(p):
      variables = {'params': p, **norm}
      loss = adversarial.hinge_d_loss(critic.apply(variables, real, k_real),
                                      critic.apply(variables, fake, k_fake))
      if gp_weight:
        crit = lambda x: critic.apply(variables, x)
        crop = critic.crop_size
        loss += adversarial.gradient_penalty(
            crit, real[:, :crop, :crop], fake[:, :crop, :crop], k_gp,
            gp_weight)
      return loss

    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    norm = san_critic.update_norm_state(critic, params, norm, k_norm)
    return params, norm, opt_state

  return jax.jit(update, donate_argnums=(0, 1, 2))


def time_variant(name, critic, gp_weight, batch, repeats, size):
  """Median seconds of one critic update."""
  key = jax.random.key(0, impl='rbg')
  x = jnp.zeros((1, critic.crop_size, critic.crop_size, 3))
  variables = critic.init({'params': key, 'san': key}, x)
  params = variables.pop('params')
  norm = dict(variables)
  tx = optax.adam(2e-4, b1=0.5, b2=0.9)
  opt_state = tx.init(params)
  real = jax.random.uniform(jax.random.key(1), (batch, size, size, 3))
  fake = jax.random.uniform(jax.random.key(2), (batch, size, size, 3))
  update = make_update(critic, tx, gp_weight)
  params, norm, opt_state = update(params, norm, opt_state, real, fake, key)
  jax.block_until_ready(params)
  times = []
  for i in range(repeats):
    t0 = time.perf_counter()
    params, norm, opt_state = update(params, norm, opt_state, real, fake,
                                     jax.random.fold_in(key, i))
    jax.block_until_ready(params)
    times.append(time.perf_counter() - t0)
  del name
  return statistics.median(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--batch', type=int, default=8)
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--size', type=int, default=160,
                      help='HR patch side (the critic crops 128).')
  parser.add_argument('--batch_norm', action='store_true')
  args = parser.parse_args()
  variants = {
      'none': (dict(norm='none'), 0.),
      'spectral': (dict(norm='spectral'), 0.),
      'SAN r=100%': (dict(norm='san', ratio=1.0), 0.),
      'SAN r=25%': (dict(norm='san', ratio=0.25), 0.),
      'WGAN-GP': (dict(norm='none'), 10.),
  }
  results = {}
  for name, (fields, gp) in variants.items():
    critic = san_critic.SANCritic(batch_norm=args.batch_norm, **fields)
    results[name] = time_variant(name, critic, gp, args.batch, args.repeats,
                                 args.size)
  print(f'{jax.devices()[0].device_kind}, batch {args.batch}, '
        f'{args.size}px patches, BN {"on" if args.batch_norm else "off"}\n')
  print('| critic update | s | ratio to none |')
  print('|---|---|---|')
  for name, s in results.items():
    print(f'| {name} | {s:.3f} | {s / results["none"]:.2f} |')


if __name__ == '__main__':
  main()
