"""Pure helpers of profile_step.py: categorize a compiled HLO module's ops
and sum profiler events per category (no JAX, no profiler: testable alone).

The categories answer "where does a step's time go": convolutions, matmuls
(dot: the Winograd kernel gradients are these), reductions, data movement
(copies, transposes, concatenations, pads, slices: layout work that does no
arithmetic) and elementwise fusions. A fusion takes the category of the
heaviest op kind it contains, in that order.
"""

import collections
import re

CATEGORIES = ('convolution', 'dot', 'reduce', 'data movement', 'elementwise',
              'other')
# Ops that only rename, route or create values (no work of their own).
_TRIVIAL = frozenset({
    'parameter', 'constant', 'bitcast', 'tuple', 'get-tuple-element', 'iota',
    'broadcast', 'reshape', 'bitcast-convert', 'after-all', 'opt-barrier'})
_MOVEMENT = frozenset({
    'copy', 'transpose', 'concatenate', 'pad', 'slice', 'dynamic-slice',
    'dynamic-update-slice', 'reverse', 'gather', 'scatter', 'copy-start',
    'copy-done'})
_REDUCE = frozenset({'reduce', 'reduce-window', 'select-and-scatter',
                     'reduce-precision', 'sort'})
_OTHER = frozenset({'while', 'conditional', 'call', 'custom-call',
                    'rng-bit-generator', 'rng', 'all-reduce', 'all-gather',
                    'reduce-scatter', 'all-to-all', 'collective-permute',
                    'infeed', 'outfeed', 'send', 'recv', 'async-start',
                    'async-done'})

_COMPUTATION = re.compile(r'^(?:ENTRY\s+)?%(?P<name>[\w.\-]+)\s*\(.*\{\s*$')
_INSTRUCTION = re.compile(
    r'^\s*(?:ROOT\s+)?%(?P<name>[\w.\-]+)\s*=\s*(?P<type>.*?)\s'
    r'(?P<op>[a-z][a-z0-9\-]*)\((?P<rest>.*)$')
_CALLS = re.compile(r'(?:calls|to_apply|body|condition)=\{?%([\w.\-]+)')


def parse_hlo(text: str) -> tuple[dict, dict]:
  """(instructions, computations) of an HLO module's text.

  instructions: name -> (opcode, result type, called computation or None);
  computations: name -> list of its instruction names.
  """
  instructions, computations, current = {}, {}, None
  for line in text.splitlines():
    match = _COMPUTATION.match(line)
    if match:
      current = computations.setdefault(match['name'], [])
      continue
    if line.strip() == '}':
      current = None
      continue
    match = _INSTRUCTION.match(line)
    if match and current is not None:
      called = _CALLS.search(match['rest'])
      instructions[match['name']] = (match['op'], match['type'],
                                     called[1] if called else None)
      current.append(match['name'])
  return instructions, computations


def _op_kinds(computation: str, instructions, computations,
              seen=frozenset()) -> set[str]:
  """Opcodes used in a computation, called computations included."""
  kinds = set()
  for name in computations.get(computation, ()):
    op, _, called = instructions[name]
    kinds.add(op)
    if called and called not in seen:
      kinds |= _op_kinds(called, instructions, computations, seen | {called})
  return kinds


def categorize(name: str, instructions, computations) -> str:
  """CATEGORIES entry of one instruction (a fusion by what it fuses)."""
  op, _, called = instructions[name]
  if op == 'fusion' and called:
    kinds = _op_kinds(called, instructions, computations) - _TRIVIAL
  else:
    kinds = {op}
  if 'convolution' in kinds:
    return 'convolution'
  if 'dot' in kinds:
    return 'dot'
  if kinds & _OTHER:
    return 'other'
  if kinds & _REDUCE:
    return 'reduce'
  if kinds and kinds <= _MOVEMENT | _TRIVIAL:
    return 'data movement'
  return 'elementwise'


def covered_ps(intervals) -> int:
  """Length of the union of (start, end) intervals (any units)."""
  total, reach = 0, None
  for start, end in sorted(intervals):
    if reach is None or start > reach:
      total += end - start
      reach = end
    elif end > reach:
      total += end - reach
      reach = end
  return total


def thunk_intervals(events, instructions) -> list[tuple[str, int, int]]:
  """(instruction, start, end) of every executed thunk in the events.

  XLA:CPU records a thunk as an event named after its instruction when it
  starts and a marker 'end: <name>' when its result is ready; for async
  thunks (convolutions, large dots, copies) the marker comes long after the
  start event ends, so a thunk's interval runs from its start to its
  marker (the start event's own end where there is no marker).
  """
  starts, ends = collections.defaultdict(list), collections.defaultdict(list)
  for name, start, duration in events:
    if name.startswith('end: ') and name[5:] in instructions:
      ends[name[5:]].append(start)
    elif name in instructions:
      starts[name].append((start, start + duration))
  out = []
  for name, spans in starts.items():
    spans.sort()
    marks = sorted(ends.get(name, ()))
    for k, (start, end) in enumerate(spans):
      # The k-th execution's marker: the first one at or after its start.
      mark = next((m for m in marks[k:] if m >= start), None)
      out.append((name, start, end if mark is None else max(end, mark)))
  return out


def wall_shares(intervals) -> list[float]:
  """Each interval's share of the wall time (the shares sum to covered_ps).

  Every instant is split equally among the intervals that cover it.
  """
  bounds = sorted({t for start, end in intervals for t in (start, end)})
  share = [0.0] * len(intervals)
  # Sweep the elementary segments between consecutive bounds.
  order = sorted(range(len(intervals)), key=lambda i: intervals[i][0])
  active, nxt = set(), 0
  for left, right in zip(bounds, bounds[1:]):
    while nxt < len(order) and intervals[order[nxt]][0] <= left:
      active.add(order[nxt])
      nxt += 1
    active = {i for i in active if intervals[i][1] > left}
    for i in active:
      share[i] += (right - left) / len(active)
  return share


def summarize(events, instructions, computations, steps: int) -> dict:
  """Per category thunks and milliseconds per step, from profiler events.

  events: (name, start, duration) in picoseconds of the profiler events on
  XLA's threads (thunk_intervals reads them). Two times per category: 'ms',
  its share of the wall time (each instant split equally among the thunks
  running then: the categories sum to 'covered_ms', the time at least one
  thunk runs; the step's wall time minus it is dispatch and idle time), and
  'thunk_ms', the thunks' own start-to-result times summed, which count
  overlapping thunks twice and include an async thunk's wait for a thread.
  """
  named = thunk_intervals(events, instructions)
  intervals = [(start, end) for _, start, end in named]
  shares = wall_shares(intervals)
  wall_ps, thunk_ps = collections.Counter(), collections.Counter()
  count, by_shape = collections.Counter(), collections.Counter()
  for (name, start, end), share in zip(named, shares):
    category = categorize(name, instructions, computations)
    wall_ps[category] += share
    thunk_ps[category] += end - start
    count[category] += 1
    by_shape[(category, instructions[name][1])] += share
  ms = lambda ps: ps / 1e9 / steps
  return {
      'categories': {c: {'thunks': count[c] / steps, 'ms': ms(wall_ps[c]),
                         'thunk_ms': ms(thunk_ps[c])} for c in CATEGORIES},
      'top_shapes': [(c, t, ms(ps)) for (c, t), ps in by_shape.most_common(12)],
      'covered_ms': ms(covered_ps(intervals)),
  }
