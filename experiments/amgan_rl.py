"""AMGAN-RL (paper 003, Algorithm 1): the actor-critic stages on top of a trained AMGAN.

  python -m jaxsr.main --config experiments/amgan_rl.py \
      --config.init_from=runs/amgan --workdir runs/amgan-rl
  python -m jaxsr.main --config experiments/amgan_rl.py:demo \
      --config.init_from=runs/amgan-demo --workdir runs/amgan-rl-demo

The renderer (AMNet), the pretrained kernel predictor (the actor) and the
kernel PCA come from config.init_from, a workdir of experiments/amgan.py
with the same model sizes; they are the only fields read from it. Stage
'fill' plays the predictor with exploration noise on training LR images and
stores (s, a, r, s') in the replay buffer; stage 'ddpg' keeps playing and
takes one critic and one actor step per played batch. The reward is -NIQE
of the render by default (needs NIQE's pristine model: `python -m
jaxsr.assets niqe`, or $JAXSR_NIQE_PARAMS); `--config.rl.reward=psnr` uses
PSNR against the HR (the demo's reward, see below). At the end, rl_results.json holds the held-out reward
of the pretrained predictor, of the trained actor and of the true code.

Variants (comma-separated): those of experiments/amgan.py (the model sizes
must match the init_from run: use 'demo' with an amgan.py:demo workdir), and
- 'as_written': the critic loss of Algorithm 1 line 7 literally;
- 'psnr': the full-reference reward ('demo' uses it too).
"""

import importlib.util
import os

from jaxsr import config_lib

VARIANTS = ('ragan', 'demo', 'tiny', 'as_written', 'psnr')


def _amgan_config(arg):
  """experiments/amgan.py's config of the same variants (loaded by path:
  experiments/ is not a package)."""
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'amgan.py')
  spec = importlib.util.spec_from_file_location('jaxsr_amgan_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  tokens = config_lib.variant_tokens(arg, VARIANTS)
  return module.get_config(','.join(t for t in tokens
                                    if t in module.VARIANTS) or None), tokens


def get_config(arg=None):
  """AMGAN-RL: 'fill' then 'ddpg' from a trained AMGAN (module doc)."""
  config, tokens = _amgan_config(arg)
  with config.unlocked():
    config.train.num_steps = 0  # No 'sr' stage: the renderer is trained.
    config.predictor_steps = 0  # Nor 'predictor': the actor is pretrained.
    # Renders of 256 px for the NIQE reward (2 x 2 blocks of 96; 128 px
    # would give one). A power of two: the realness D is still built.
    if 'tiny' not in tokens:
      config.data.update(hr_patch=256, batch_size=16)
    config.rl.update(fill_steps=625, ddpg_steps=20_000)  # 625 x 16 = capacity.
    config.train.update(log_every=100, eval_every=0, checkpoint_every=1000)
    if 'as_written' in tokens:
      config.rl.critic_loss = 'as_written'
    if 'psnr' in tokens:
      config.rl.reward = 'psnr'
    if 'demo' in tokens:
      config.data.update(hr_patch=128, batch_size=4)
      # The demo's reward is PSNR: with -NIQE, 300 steps on 128 or 256 px
      # patches made the held-out score worse (-7.06 and -7.00 vs the
      # pretrained predictor's -6.72; README): a patch's NIQE moves by
      # several units between neighbouring codes, too noisy a signal for
      # a CPU-minutes run. `--config.rl.reward=niqe` runs it anyway.
      config.rl.update(fill_steps=64, ddpg_steps=300, capacity=1024,
                       batch_size=32, actor_lr=1e-4, reward='psnr')
      config.train.update(log_every=25, checkpoint_every=100)
    if 'tiny' in tokens:
      # The NIQE reward needs 96 px renders; tiny trains on 16 px patches.
      config.rl.update(fill_steps=2, ddpg_steps=2, reward='psnr')
      config.train.update(log_every=1, checkpoint_every=1)
  return config
