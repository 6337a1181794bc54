"""benchmarks/hlo_profile.py and profile_step.py's trace reading."""

import importlib.util
import pathlib
import sys

import jax
import jax.numpy as jnp
import pytest

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / 'benchmarks'


def _load(name: str):
  sys.path.insert(0, str(BENCHMARKS))
  try:
    spec = importlib.util.spec_from_file_location(name,
                                                  BENCHMARKS / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
  finally:
    sys.path.remove(str(BENCHMARKS))


hlo_profile = _load('hlo_profile')

# XLA:CPU's compiled gradient of sum(leaky_relu(conv(x, k))^2), trimmed,
# plus a reduce fusion and a dot.
HLO = """\
HloModule jit_f, is_scheduled=true

%fused_computation (param_0.1: f32[4,32,32,64]) -> f32[32,32,4,64] {
  %param_0.1 = f32[4,32,32,64]{3,2,1,0} parameter(0)
  %transpose.6 = f32[32,32,4,64]{3,1,0,2} transpose(%param_0.1), dimensions={1,2,0,3}
  ROOT %copy.4 = f32[32,32,4,64]{3,2,1,0} copy(%transpose.6)
}

%fused_computation.3 (param_0.11: f32[4,32,32,64]) -> f32[4,32,32,64] {
  %param_0.11 = f32[4,32,32,64]{3,2,1,0} parameter(0)
  %constant.12 = f32[] constant(0), metadata={op_name="jit(f)/jvp(jit(leaky_relu))"}
  %ge.5 = f32[4,32,32,64]{3,2,1,0} broadcast(%constant.12), dimensions={}
  %ge.4 = pred[4,32,32,64]{3,2,1,0} compare(%param_0.11, %ge.5), direction=GE
  ROOT %select_n.11 = f32[4,32,32,64]{3,2,1,0} select(%ge.4, %param_0.11, %ge.5)
}

%add (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %sum = f32[] add(%a, %b)
}

%fused_reduce (p: f32[4,32,32,64]) -> f32[64] {
  %p = f32[4,32,32,64]{3,2,1,0} parameter(0)
  %m = f32[4,32,32,64]{3,2,1,0} multiply(%p, %p)
  %z = f32[] constant(0)
  ROOT %r = f32[64]{0} reduce(%m, %z), dimensions={0,1,2}, to_apply=%add
}

ENTRY %main.5 (x.1: f32[4,32,32,64], k.1: f32[3,3,64,64]) -> (f32[4,32,32,64], f32[64]) {
  %k.1 = f32[3,3,64,64]{3,2,1,0} parameter(1), metadata={op_name="k"}
  %x.1 = f32[4,32,32,64]{3,2,1,0} parameter(0), metadata={op_name="x"}
  %conv_general_dilated.3 = f32[4,32,32,64]{3,2,1,0} convolution(%x.1, %k.1), window={size=3x3 pad=1_1x1_1}, dim_labels=b01f_01io->b01f
  %multiply_add_fusion = f32[4,32,32,64]{3,2,1,0} fusion(%conv_general_dilated.3), kind=kLoop, calls=%fused_computation.3, backend_config={"outer_dimension_partitions":["2"]}
  %transpose_copy_fusion = f32[32,32,4,64]{3,2,1,0} fusion(%multiply_add_fusion), kind=kLoop, calls=%fused_computation
  %reduce_fusion = f32[64]{0} fusion(%multiply_add_fusion), kind=kInput, calls=%fused_reduce
  %dot.1 = f32[64,64]{1,0} dot(%k.1, %k.1), lhs_contracting_dims={0}, rhs_contracting_dims={0}
  ROOT %tuple.6 = (f32[4,32,32,64]{3,2,1,0}, f32[64]{0}) tuple(%multiply_add_fusion, %reduce_fusion)
}
"""


def test_parse_hlo_reads_instructions_and_called_computations():
  instructions, computations = hlo_profile.parse_hlo(HLO)
  assert set(computations) == {'fused_computation', 'fused_computation.3',
                               'add', 'fused_reduce', 'main.5'}
  assert computations['main.5'] == [
      'k.1', 'x.1', 'conv_general_dilated.3', 'multiply_add_fusion',
      'transpose_copy_fusion', 'reduce_fusion', 'dot.1', 'tuple.6']
  assert instructions['multiply_add_fusion'] == (
      'fusion', 'f32[4,32,32,64]{3,2,1,0}', 'fused_computation.3')
  assert instructions['r'] == ('reduce', 'f32[64]{0}', 'add')
  assert instructions['tuple.6'][0] == 'tuple'
  assert instructions['tuple.6'][1].startswith('(f32[4,32,32,64]')


@pytest.mark.parametrize('name, category', [
    ('conv_general_dilated.3', 'convolution'),
    ('multiply_add_fusion', 'elementwise'),
    ('transpose_copy_fusion', 'data movement'),
    ('reduce_fusion', 'reduce'),
    ('dot.1', 'dot'),
])
def test_categorize_by_what_a_fusion_contains(name, category):
  instructions, computations = hlo_profile.parse_hlo(HLO)
  assert hlo_profile.categorize(name, instructions, computations) == category


def test_covered_is_the_length_of_the_union():
  assert hlo_profile.covered_ps([]) == 0
  assert hlo_profile.covered_ps([(20, 25), (0, 10), (5, 15)]) == 20
  assert hlo_profile.covered_ps([(0, 10), (2, 3), (10, 12)]) == 12


def test_async_thunks_last_until_their_end_marker():
  instructions, _ = hlo_profile.parse_hlo(HLO)
  conv = 'conv_general_dilated.3'
  events = [
      # Two executions of the conv: start events of 1 unit, results at
      # 50 and 250; the fusion's marker ends inside its own event.
      (conv, 0, 1), (f'end: {conv}', 50, 0), (conv, 200, 1),
      (f'end: {conv}', 250, 0), ('multiply_add_fusion', 60, 30),
      ('end: multiply_add_fusion', 85, 0),
      # Not instructions: left out.
      ('ThunkExecutor::Execute', 0, 300), ('end: nothing', 5, 0)]
  got = sorted(hlo_profile.thunk_intervals(events, instructions))
  assert got == [(conv, 0, 50), (conv, 200, 250),
                 ('multiply_add_fusion', 60, 90)]


def test_wall_shares_split_overlaps_equally():
  # [0, 4] alone on [0, 2], with [2, 6] on [2, 4]; [2, 6] alone on [4, 6];
  # [10, 11] alone.
  shares = hlo_profile.wall_shares([(0, 4), (2, 6), (10, 11)])
  assert shares == [3, 3, 1]
  # Three equal intervals share a third each; a nested one half its length.
  assert hlo_profile.wall_shares([(0, 3)] * 3) == [1, 1, 1]
  assert hlo_profile.wall_shares([(0, 10), (4, 6)]) == [9, 1]


def test_summarize_per_step_milliseconds():
  instructions, computations = hlo_profile.parse_hlo(HLO)
  ms = 10**9  # Picoseconds per millisecond.
  events = [('conv_general_dilated.3', 0, 1 * ms),
            ('end: conv_general_dilated.3', 4 * ms, 0),
            ('multiply_add_fusion', 2 * ms, 4 * ms),  # Overlaps the conv.
            ('dot.1', 10 * ms, 2 * ms),
            ('conv_general_dilated.3', 20 * ms, 2 * ms)]
  s = hlo_profile.summarize(events, instructions, computations, steps=2)
  c = s['categories']
  # Conv [0, 4] shares [2, 4] with the fusion [2, 6] (2 + 1), conv [20, 22]
  # runs alone (2): 5 ms over 2 steps.
  assert c['convolution'] == {'thunks': 1, 'ms': 2.5, 'thunk_ms': 3}
  assert c['elementwise'] == {'thunks': 0.5, 'ms': 1.5, 'thunk_ms': 2}
  assert c['dot'] == {'thunks': 0.5, 'ms': 1, 'thunk_ms': 1}
  assert c['data movement'] == {'thunks': 0, 'ms': 0, 'thunk_ms': 0}
  # Union: [0, 6] + [10, 12] + [20, 22] = 10 ms over 2 steps.
  assert s['covered_ms'] == 5
  assert sum(v['ms'] for v in c.values()) == pytest.approx(s['covered_ms'])
  assert s['top_shapes'][0] == ('convolution', 'f32[4,32,32,64]{3,2,1,0}',
                                2.5)


def test_a_real_trace_attributes_the_conv_and_the_matmul(tmp_path):
  """The profiler's events of a jitted conv + matmul name its thunks."""
  xplane = pytest.importorskip('tensorflow.tsl.profiler.protobuf.xplane_pb2')
  del xplane
  profile_step = _load('profile_step')
  x = jnp.ones((2, 32, 32, 16))
  k = jnp.ones((3, 3, 16, 16))
  m = jnp.ones((256, 256))

  @jax.jit
  def f(x, k, m):
    y = jax.lax.conv_general_dilated(x, k, (1, 1), 'SAME',
                                     dimension_numbers=('NHWC', 'HWIO',
                                                        'NHWC'))
    return jnp.tanh(y).sum(), m @ m

  compiled = f.lower(x, k, m).compile()
  jax.block_until_ready(compiled(x, k, m))
  with jax.profiler.trace(str(tmp_path)):
    jax.block_until_ready(compiled(x, k, m))
  events = profile_step.trace_events(str(tmp_path))
  instructions, computations = hlo_profile.parse_hlo(compiled.as_text())
  s = hlo_profile.summarize(events, instructions, computations, steps=1)
  assert s['categories']['convolution']['thunks'] == 1
  assert s['categories']['dot']['thunks'] == 1
  assert s['categories']['convolution']['ms'] > 0
  assert s['categories']['dot']['ms'] > 0
  wall = sum(c['ms'] for c in s['categories'].values())
  assert wall == pytest.approx(s['covered_ms'])
  assert 0 < s['covered_ms'] <= sum(
      c['thunk_ms'] for c in s['categories'].values()) + 1e-9
