"""Paper 002, Fig. 3: each critic conv's true top singular value vs Miyato's estimate.

  python benchmarks/singular_values.py                     # fresh SAN-SR critic
  python benchmarks/singular_values.py --workdir runs/san_sr --plot fig3.png

For every conv layer: the exact top singular value of the convolution with
circular padding at the layer's input size (Sedghi et al.: largest singular
value over frequencies), Miyato et al.'s estimate (top singular value of the
kernel reshaped to (kh*kw*cin, cout), i.e. their converged power iteration),
and SAN's ‖W‖₀,∞. The paper plots a trained ResNet critic; with --workdir the
critic of a trained san_sr run is used, otherwise a freshly initialised one.
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from jaxsr.models import layers
from jaxsr.models import san_critic
from jaxsr.normalization import san
from jaxsr.normalization import spectral


def critic_params(workdir: str | None):
  """(critic module, its params): from a san_sr workdir, or freshly built."""
  if workdir:
    from jaxsr import restore  # pylint: disable=g-import-not-at-top
    from jaxsr.methods import san_sr  # pylint: disable=g-import-not-at-top
    config = restore.load_config(workdir)
    state = restore.load_state(workdir)
    return san_sr.build_critic(config), jax.device_get(state.d_params)
  critic = san_critic.SANCritic(norm='san')
  key = jax.random.key(0, impl='rbg')
  x = jnp.zeros((1, critic.crop_size, critic.crop_size, 3))
  return critic, critic.init({'params': key, 'san': key}, x)['params']


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument('--workdir', default=None)
  parser.add_argument('--plot', default=None, help='Write a PNG plot here.')
  args = parser.parse_args()
  critic, params = critic_params(args.workdir)
  x = jnp.zeros((1, critic.crop_size, critic.crop_size, 3))
  # The SAN twin pads inside its convs, so it records each conv's unpadded
  # input size, the size of the circular operator (the others record the
  # zero-padded input).
  twin = critic.clone(norm='san')
  key = jax.random.key(0, impl='rbg')
  norm_state = {k: v for k, v in twin.init({'params': key, 'san': key},
                                           x).items() if k != 'params'}
  shapes = layers.conv_input_shapes(twin, {'params': params, **norm_state}, x)
  rows = []
  for path, kernel in san.kernels(params).items():
    if path not in shapes:
      continue  # Dense layers.
    exact = float(spectral.conv_singular_value(kernel, shapes[path]))
    miyato = float(spectral.top_singular_value(
        spectral.kernel_matrix(kernel)))
    rows.append((path, shapes[path], exact, miyato,
                 float(san.conv_norm(kernel, shapes[path]))))
  print('| layer | input | exact σ (Sedghi) | Miyato | exact / Miyato | '
        '‖W‖₀,∞ (SAN) |')
  print('|---|---|---|---|---|---|')
  for path, hw, exact, miyato, sparse in rows:
    print(f'| {path} | {hw[0]}x{hw[1]} | {exact:.4f} | {miyato:.4f} | '
          f'{exact / miyato:.2f} | {sparse:.4f} |')
  ratios = np.array([r[2] / r[3] for r in rows])
  print(f'\nexact / Miyato: median {np.median(ratios):.2f}, '
        f'range {ratios.min():.2f}-{ratios.max():.2f} '
        f'(paper: "typically 4x smaller")')
  if args.plot:
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
    fig, ax = plt.subplots(figsize=(6, 3.5))
    idx = np.arange(1, len(rows) + 1)
    ax.plot(idx, [r[2] for r in rows], 'k.-', label='top singular value')
    ax.plot(idx, [r[3] for r in rows], 'r.-', label='Miyato et al. estimate')
    ax.set_xlabel('conv layer')
    ax.set_ylabel('σ')
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    print(f'plot written to {args.plot}')


if __name__ == '__main__':
  main()
