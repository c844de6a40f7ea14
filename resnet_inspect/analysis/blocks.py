"""The architecture read from the data flow: stem, stages of residual blocks, SE gates, the
feature pyramid and the head.

Every record says which records produced its inputs (``LayerRecord.input_from``). From that
graph, and from the module nesting the trace saw, :func:`build_structure` finds:

- a residual block: the region between a fork and the add that joins its two branches, with its
  main path and its shortcut (identity, projection, pool + projection, or He et al. 2016's
  option A: subsample and zero-pad);
- an SE gate (Hu et al. 2018): a branch that multiplies the main path by a per-channel factor;
- a stage: a run of blocks at one stride, a new one starting where a shortcut changes the shape
  (torchvision's ``_make_layer`` rule: stride ≠ 1 or the channels change);
- a feature pyramid (Lin et al. 2017): the outputs at different strides, each with its output
  conv, its lateral, the top-down add that merges it and whether it is an extra level.

Names are never read: a network with every module renamed has the same structure. Display
labels (``res2``..``res5``, the stride 2**k of detectron2) are derived from positions.
"""
from __future__ import annotations

import heapq
import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from functools import cached_property
from typing import Literal, NamedTuple

from .opdesc import WindowOp, find
from .records import LayerRecord

ShortcutKind = Literal["identity", "projection", "pool+projection", "option-a"]
_RESIZE_TYPES = ("F.interpolate", "Upsample", "UpsamplingNearest2d", "UpsamplingBilinear2d")


@dataclass(frozen=True)
class Shortcut:
    """The branch that skips the main path. ``records`` is empty for an identity."""

    kind: ShortcutKind
    records: tuple[int, ...]
    reads: int  # the record whose output the shortcut takes (the fork)
    preactivated: bool  # it reads a tensor made inside the block (a pre-activation net's BN-ReLU)


@dataclass(frozen=True)
class Gate:
    """A squeeze-and-excitation branch: ``records`` compute a per-channel factor, ``multiply``
    scales the main path with it."""

    records: tuple[int, ...]
    multiply: int


@dataclass(frozen=True)
class Block:
    """One residual block. Indices are into ``Report.layers``."""

    container: int | None  # the module call whose forward made the add, if it holds this block only
    fork: int  # the record whose output both branches read
    main: tuple[int, ...]  # main-path leaves before the add (a pre-activation's BN-ReLU included)
    shortcut: Shortcut
    gate: Gate | None
    add: int
    after: tuple[int, ...]  # leaves after the add inside the block (the ReLU of He et al. 2016)
    stride: int  # product of the strides on the main path
    idle: tuple[int, ...] = ()  # leaves of the block on no data path (an nn.Identity in a shortcut)

    @cached_property
    def members(self) -> tuple[int, ...]:
        """Every leaf record of the block, in call order (worked out once: every analysis asks)."""
        gate = (*self.gate.records, self.gate.multiply) if self.gate else ()
        return tuple(sorted({*self.main, *self.shortcut.records, *gate, self.add, *self.after, *self.idle}))


@dataclass(frozen=True)
class Stage:
    """A run of blocks at one stride; ``label`` is res{k} for the k-th stage after the stem (k ≥ 2)."""

    label: str
    stride: int  # the effective stride of its output
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Level:
    """One output of a feature pyramid."""

    name: str
    stride: int
    output: int  # the record that produced the output tensor
    lateral: int | None  # the conv that reads the trunk for this level (None for an extra level)
    merge: int | None  # the top-down add that joins the lateral and the coarser level
    resize: int | None  # the upsampling that feeds that add
    source: int | None  # the trunk record the level is built from
    extra: bool  # a level beyond the trunk's strides (P6, P7), made by downsampling
    records: tuple[int, ...]  # leaves that belong to this level only


@dataclass(frozen=True)
class Pyramid:
    """The feature pyramid: its levels, finest first, and all of its leaf records."""

    levels: tuple[Level, ...]
    records: tuple[int, ...]


@dataclass(frozen=True)
class Structure:
    """What the data flow says the network is. Indices are into ``Report.layers``."""

    stem: tuple[int, ...]
    stages: tuple[Stage, ...]
    pyramid: Pyramid | None
    head: tuple[int, ...]

    @property
    def blocks(self) -> tuple[Block, ...]:
        """All blocks, in order."""
        return tuple(b for s in self.stages for b in s.blocks)

    @cached_property
    def _owners(self) -> dict[int, tuple[Stage, Block]]:
        return {i: (stage, block) for stage in self.stages for block in stage.blocks for i in block.members}

    def block_of(self, index: int) -> tuple[Stage, Block] | None:
        """The stage and block a leaf record belongs to, if any."""
        return self._owners.get(index)


# -- the data-flow graph ---------------------------------------------------------------------

class Flow:
    """Producers of every record: the records whose outputs its counted operators read
    (``read_from``), or for a call that ran none (a Flatten, an nn.Identity) the producers of its
    inputs, resolved from ``input_from`` names: a shared module called several times has one
    name for all its calls, and the producer is its latest call before the consumer.
    """

    def __init__(self, records: list[LayerRecord]) -> None:
        self.records = records
        calls: dict[str, list[int]] = {}
        for rec in records:
            if rec.is_leaf:
                calls.setdefault(rec.name, []).append(rec.index)
        self.producers: dict[int, tuple[int, ...]] = {}
        for rec in records:
            if rec.read_from:
                self.producers[rec.index] = tuple(rec.read_from)
                continue
            found = []
            for name in rec.input_from:
                indices = calls.get(name, [])
                at = bisect_left(indices, rec.index) - 1
                if at >= 0 and indices[at] not in found:
                    found.append(indices[at])
            self.producers[rec.index] = tuple(found)

    def fork(self, a: int, b: int) -> int | None:
        """The latest record both ``a`` and ``b`` descend from (either one itself included)."""
        if a == b:
            return a
        sides = {a: 1, b: 2}
        heap = [-a, -b]
        heapq.heapify(heap)
        while heap:
            node = -heapq.heappop(heap)
            if sides[node] == 3:
                return node
            for p in self.producers.get(node, ()):
                if p not in sides:
                    sides[p] = 0
                    heapq.heappush(heap, -p)
                sides[p] |= sides[node]
        return None

    def branches(self, a: int, b: int) -> tuple[int, tuple[int, ...], tuple[int, ...]] | None:
        """:meth:`fork` of ``a`` and ``b`` with :meth:`between` each of them and the fork, in one walk.

        The walk takes the latest record first, so a record is taken after every record that reads it:
        the records it took before the fork that descend from ``a`` are ``between(a, fork)`` (none
        descends from both, or it would be a later fork), and the same for ``b``."""
        if a == b:
            return a, (), ()
        sides = {a: 1, b: 2}
        heap = [-a, -b]
        heapq.heapify(heap)
        taken: tuple[list[int], list[int]] = ([], [])
        while heap:
            node = -heapq.heappop(heap)
            side = sides[node]
            if side == 3:
                return node, tuple(reversed(taken[0])), tuple(reversed(taken[1]))
            taken[side - 1].append(node)
            for p in self.producers.get(node, ()):
                if p not in sides:
                    sides[p] = 0
                    heapq.heappush(heap, -p)
                sides[p] |= side
        return None

    def between(self, start: int, stop: int) -> tuple[int, ...]:
        """The records on the paths from ``start`` back to (not including) ``stop``."""
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            if node == stop or node in seen or node < stop:
                continue
            seen.add(node)
            todo.extend(self.producers.get(node, ()))
        return tuple(sorted(seen))


def producers(records: list[LayerRecord]) -> dict[int, tuple[int, ...]]:
    """Record index -> the indices of the records that produced its inputs."""
    return Flow(records).producers


def _spatial(rec: LayerRecord) -> bool:
    return bool(rec.output_shapes) and len(rec.output_shapes[0]) == 4


def _stride(rec: LayerRecord) -> int:
    window = find(rec.op, WindowOp)
    return max(window.stride) if window is not None else 1


def is_resize(rec: LayerRecord) -> bool:
    """An upsampling (``F.interpolate`` or an ``nn.Upsample``): an FPN's top-down step."""
    return rec.type in _RESIZE_TYPES


def _descendants(records: list[LayerRecord], container: LayerRecord) -> range:
    """Indices of the records called inside a container call (they follow it, one level deeper)."""
    end = container.index + 1
    while end < len(records) and records[end].depth > container.depth:
        end += 1
    return range(container.index + 1, end)


def _container_of(records: list[LayerRecord], rec: LayerRecord) -> LayerRecord | None:
    """The module call whose forward ran a function record: the nearest shallower record before it."""
    for i in range(rec.index - 1, -1, -1):
        if records[i].depth < rec.depth:
            return records[i] if records[i].kind == "module" else None
    return None


# -- blocks ----------------------------------------------------------------------------------

class _Join(NamedTuple):
    """A residual add, the record both branches fork from, and the records on each branch."""

    add: LayerRecord
    fork: int
    main: tuple[int, ...]  # the records from the main operand back to the fork (not included)
    short: tuple[int, ...]  # the same for the shortcut operand: empty for an identity


def _residual_adds(records: list[LayerRecord], flow: Flow) -> list[_Join]:
    """Each residual join, in call order.

    A residual add sums two same-shaped feature maps that fork from one tensor, its deeper branch
    holds two or more weighted layers, and neither branch holds an earlier residual add or an
    upsampling: that rules out an FPN's top-down sum.
    """
    found: list[_Join] = []
    joins: set[int] = set()
    # Asked of every region: which records upsample and which are weighted, read once for all.
    resizes = {rec.index for rec in records if is_resize(rec)}
    weighted = {rec.index for rec in records if rec.weighted}
    for rec in [rec for rec in records if rec.type == "F.add"]:
        operands = flow.producers.get(rec.index, ())
        if len(operands) != 2 or not _spatial(rec):
            continue
        if len(set(rec.input_shapes[:2])) != 1:
            continue
        split = flow.branches(*operands)
        if split is None:
            continue
        fork, *paths = split
        branches = [set(path) for path in paths]
        region = branches[0] | branches[1]
        if not region.isdisjoint(joins) or not region.isdisjoint(resizes):
            continue
        # The main path is the deeper branch (more weighted layers); an identity has none.
        weight = [len(weighted.intersection(br)) for br in branches]
        main, short = (0, 1) if (weight[0], len(branches[0])) >= (weight[1], len(branches[1])) else (1, 0)
        if weight[main] < 2:
            # He et al. 2016, §3.1: the residual function has two or three layers; with one,
            # y = W1·x + x is "similar to a linear layer". Such a skip is not counted as a block.
            continue
        found.append(_Join(rec, fork, paths[main], paths[short]))
        joins.add(rec.index)
    return found


def _gates(records: list[LayerRecord], flow: Flow) -> list[Gate]:
    """Multiplications of a feature map by a per-channel factor computed from it (SE)."""
    gates = []
    for rec in records:
        if rec.type != "F.mul":
            continue
        operands = flow.producers.get(rec.index, ())
        if len(operands) != 2 or len(rec.input_shapes) < 2:
            continue
        small = [i for i, s in enumerate(rec.input_shapes[:2]) if len(s) == 4 and s[-2:] == (1, 1)]
        if len(small) != 1 or rec.input_shapes[1 - small[0]][-2:] == (1, 1):
            continue
        fork = flow.fork(*operands)
        if fork is None:
            continue
        gates.append(Gate(flow.between(operands[small[0]], fork), rec.index))
    return gates


def _shortcut_kind(records: list[LayerRecord], branch: tuple[int, ...]) -> ShortcutKind:
    if not branch:
        return "identity"
    weighted = [i for i in branch if records[i].weighted]
    if not weighted:
        return "option-a"
    pools = [i for i in branch if i < weighted[0] and not records[i].weighted
             and find(records[i].op, WindowOp) is not None]
    return "pool+projection" if pools else "projection"


def _block(records: list[LayerRecord], join: _Join, own_container: LayerRecord | None,
           gates: dict[int, Gate]) -> Block:
    """One block from its join: members come from its container call, or else from the region."""
    add, fork, short = join.add, join.fork, join.short
    main_branch = set(join.main)
    if own_container is not None:
        leaves = {i for i in _descendants(records, own_container) if records[i].is_leaf}
    else:
        leaves = main_branch | set(short) | {add.index}
    # The first gate (in call order) whose multiplication is in the block.
    gate = gates[min(i for i in leaves if i in gates)] if not gates.keys().isdisjoint(leaves) else None
    gated = set(gate.records) | {gate.multiply} if gate else set()
    ordered, off_main = sorted(leaves), gated.union(short)
    after = tuple(ordered[bisect_right(ordered, add.index):])
    # Leaves before the fork (a pre-activation's BN-ReLU) and on the deeper branch; a
    # pass-through such as nn.Identity is on neither path and is left out.
    main = tuple(i for i in ordered if (i <= fork or i in main_branch) and i not in off_main)
    return Block(
        container=own_container.index if own_container is not None else None, fork=fork, main=main,
        shortcut=Shortcut(_shortcut_kind(records, short), short, fork, fork in leaves),
        gate=gate, add=add.index, after=after,
        stride=math.prod(_stride(records[i]) for i in main if records[i].op is not None),  # no op: stride 1
        idle=tuple(sorted(leaves.difference(main, off_main, after, (add.index,)))),
    )


def _blocks(records: list[LayerRecord], flow: Flow) -> list[Block]:
    joins = _residual_adds(records, flow)
    gates = {gate.multiply: gate for gate in _gates(records, flow)}
    containers = [_container_of(records, join.add) for join in joins]
    holds: dict[int, int] = {}
    for c in containers:
        if c is not None:
            holds[c.index] = holds.get(c.index, 0) + 1
    blocks = []
    for join, container in zip(joins, containers):
        own = container if container is not None and holds[container.index] == 1 and container.depth > 0 else None
        blocks.append(_block(records, join, own, gates))
    return blocks


def _stages(records: list[LayerRecord], blocks: list[Block]) -> tuple[Stage, ...]:
    """Group blocks: a new stage where a shortcut changes the shape or the stride changes."""
    runs: list[list[Block]] = []
    for block in blocks:
        stride = _jump(records[block.add])
        if not runs or block.shortcut.kind != "identity" or _jump(records[runs[-1][-1].add]) != stride:
            runs.append([])
        runs[-1].append(block)
    return tuple(Stage(f"res{k + 2}", _jump(records[run[-1].add]), tuple(run)) for k, run in enumerate(runs))


def _jump(rec: LayerRecord) -> int:
    return int(rec.jump[0]) if rec.jump is not None else 1


# -- the pyramid -----------------------------------------------------------------------------

def _pyramid(records: list[LayerRecord], flow: Flow, trunk: set[int],
             outputs: list[tuple[str, int | None]]) -> Pyramid | None:
    """Levels of a feature pyramid: two or more feature-map outputs at different strides, made
    outside the trunk."""
    maps = [(name, p) for name, p in outputs if p is not None and _spatial(records[p]) and p not in trunk]
    if len(maps) < 2 or len({_jump(records[p]) for _, p in maps}) < 2:
        return None
    outs = {p for _, p in maps}
    levels = []
    for name, out in sorted(maps, key=lambda m: _jump(records[m[1]])):
        walk = _walk_to_trunk(records, flow, out, trunk)
        source = walk[-1] if walk and walk[-1] in trunk else None
        path = [i for i in walk if i not in trunk]
        built_on = next((k for k, i in enumerate(path) if i in outs and i != out), None)
        own = path if built_on is None else path[:built_on]
        extra = built_on is not None or source is None or _jump(records[out]) > _jump(records[source])
        merge = next((i for i in own if records[i].type == "F.add"), None)
        resize = None
        if merge is not None:
            resize = next((p for p in flow.producers[merge] if is_resize(records[p])), None)
        lateral = None if extra else next((i for i in reversed(own) if records[i].weighted), None)
        mine = tuple(sorted({*own, *([resize] if resize is not None else [])}))
        levels.append(Level(name, _jump(records[out]), out, lateral, merge, resize, source, extra, mine))
    region: set[int] = set()
    for _, out in maps:
        region.update(i for i in flow.between(out, -1) if i not in trunk)
    return Pyramid(tuple(levels), tuple(sorted(region)))


def _walk_to_trunk(records: list[LayerRecord], flow: Flow, start: int, trunk: set[int]) -> list[int]:
    """From a level's output back to the trunk, choosing at a merge the operand that is not an
    upsampled coarser level; ends with the trunk record it reads."""
    path, node = [start], start
    while node not in trunk:
        producers = flow.producers.get(node, ())
        if not producers:
            break
        plain = [p for p in producers if not is_resize(records[p])]
        node = (plain or list(producers))[0]
        path.append(node)
    return path


# -- all together ----------------------------------------------------------------------------

def build_structure(records: list[LayerRecord], outputs: list[tuple[str, int | None]]) -> Structure:
    """The structure of a traced network. ``outputs`` pairs each output's name with the index of
    the record that produced it."""
    flow = Flow(records)
    blocks = _blocks(records, flow)
    stages = _stages(records, blocks)
    leaves = [r.index for r in records if r.is_leaf]
    in_blocks = {i for b in blocks for i in b.members}
    if not blocks:
        return Structure((), (), _pyramid(records, flow, set(), outputs), ())
    first, last = min(in_blocks), max(in_blocks)
    # The leaves are in call order: those before, between and after the blocks are slices.
    stem = tuple(i for i in leaves[:bisect_left(leaves, first)] if _spatial(records[i]))
    trunk = set(stem) | in_blocks
    trunk.update(leaves[bisect_right(leaves, first):bisect_left(leaves, last)])  # first < i < last
    pyramid = _pyramid(records, flow, trunk, outputs)
    in_pyramid = set(pyramid.records) if pyramid else set()
    head = tuple(i for i in leaves[bisect_right(leaves, last):] if i not in in_pyramid)
    return Structure(stem, stages, pyramid, head)
