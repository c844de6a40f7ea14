"""Read the architecture out of the records: stages, depth as the paper counts it, where each
stage downsamples, and the FPN's levels.

Everything here works from the trace: the records, the longest weighted path to each output and
the :class:`~.blocks.Structure` read from the data flow, so it applies to any traced ResNet-like
model, whatever its modules are called. Names are only labels (``stage_of`` labels a network
that has no residual blocks).
"""
from __future__ import annotations

import re
from collections import Counter, OrderedDict
from collections.abc import Hashable, Mapping
from typing import Any

from .blocks import Block, Structure
from .opdesc import AttentionOp, WindowOp, find, main_op
from .records import (
    Carrier, DepthCount, Dilated, DownsampleStep, LayerRecord, LevelSummary, OutputInfo, Projection, PyramidSummary,
    StageDepth,
)

_STEM_NAMES = {"conv1", "bn1", "relu", "maxpool", "stem"}
_TORCHVISION_STAGE = re.compile(r"layer(\d+)")


def stage_of(name: str) -> str:
    """Display stage of a qualified name, for a network without residual blocks only (there the
    data flow has no stages to give): stem, res2..res5, fpn or head. ``layer{k}`` is ``res{k+1}``."""
    path = name.split(":")[0]
    parts = [p for p in path.split(".") if p]
    if parts and parts[0] == "body":
        parts = parts[1:]
    if not parts:
        return ""
    if parts[0] == "fpn":
        return "fpn"
    match = _TORCHVISION_STAGE.fullmatch(parts[0])
    if match:
        return f"res{int(match.group(1)) + 1}"
    if parts[0] == "stages" and len(parts) > 1 and parts[1].isdigit():  # timm ResNetV2: stages.0 is res2
        return f"res{int(parts[1]) + 2}"
    if parts[0] in _STEM_NAMES:
        return "stem"
    if parts[0] in ("avgpool", "fc", "head", "norm") or parts[0].startswith("fc_"):
        return "head"
    return ""


def label_stages(records: list[LayerRecord], structure: Structure) -> None:
    """Stage labels from the structure: stem, res2.. (one per stage), fpn, head. A container takes
    the label its leaves share; anything else is labelled by its effective stride ("stride 4"),
    or "head" once the output is no longer a feature map."""
    leaf_labels = _leaf_labels(structure)
    shared = shared_by_leaves(records, leaf_labels) if structure.stages else {}
    has_stages = bool(structure.stages)
    for rec in records:
        if not has_stages:  # no residual blocks: the names are the only hint
            rec.stage = stage_of(rec.name)
        elif rec.is_leaf:
            rec.stage = leaf_labels.get(rec.index, "")
        else:
            rec.stage = shared.get(rec.index, "")
        if rec.stage or not rec.name:
            continue
        spatial = bool(rec.output_shapes) and len(rec.output_shapes[0]) == 4
        if spatial and rec.jump is not None:
            rec.stage = f"stride {int(rec.jump[0])}" if float(rec.jump[0]).is_integer() else f"stride {rec.jump[0]}"
        else:
            rec.stage = "head"


def _leaf_labels(structure: Structure) -> dict[int, str]:
    labels = {i: "stem" for i in structure.stem}
    for stage in structure.stages:
        for block in stage.blocks:
            labels.update((i, stage.label) for i in block.members)
    if structure.pyramid is not None:
        labels.update((i, "fpn") for i in structure.pyramid.records)
    labels.update((i, "head") for i in structure.head)
    return labels


def leaves_under(records: list[LayerRecord], container: LayerRecord) -> list[int]:
    """Leaf records called inside a container call (they follow it, one level deeper)."""
    end = container.index + 1
    while end < len(records) and records[end].depth > container.depth:
        end += 1
    return [i for i in range(container.index + 1, end) if records[i].is_leaf]


# What the leaves under a call have in common: before any leaf is seen, and once two of them differ.
_NO_LEAF, _MIXED = object(), object()


def shared_by_leaves(records: list[LayerRecord], keys: Mapping[int, Hashable],
                     default: Hashable = "") -> dict[int, Hashable]:
    """Record index -> the key (``keys[leaf index]``, else ``default``) that every leaf under that
    call has, for each call that is not a leaf and whose leaves all agree (none for a call without
    leaves). One pass over the records: ``leaves_under`` for every call would read each leaf once
    per enclosing call."""
    shared: dict[int, Hashable] = {}
    open_calls: list[list[Any]] = []  # [depth, index, what its leaves so far share] of each call not yet closed
    for rec in records:
        depth = rec.depth
        while open_calls and open_calls[-1][0] >= depth:
            _close(open_calls, shared)
        if not rec.is_leaf:
            open_calls.append([depth, rec.index, _NO_LEAF])
        elif open_calls:  # a leaf is under every open call: the innermost passes it on as it closes
            parent, key = open_calls[-1], keys.get(rec.index, default)
            common = parent[2]
            if common is _NO_LEAF:
                parent[2] = key
            elif common is not _MIXED and common != key:
                parent[2] = _MIXED
    while open_calls:
        _close(open_calls, shared)
    return shared


def _close(open_calls: list[list[Any]], shared: dict[int, Hashable]) -> None:
    """Close the innermost open call: keep what its leaves share, and pass it to the enclosing call."""
    _, index, common = open_calls.pop()
    if common is _NO_LEAF:
        return
    if common is not _MIXED:
        shared[index] = common
    if open_calls:
        parent = open_calls[-1]
        parent[2] = common if parent[2] is _NO_LEAF else _agree(parent[2], common)


def _agree(a: Any, b: Any) -> Any:
    """What two groups of leaves share: their key if both have the same one, else ``_MIXED``."""
    return a if a is not _MIXED and b is not _MIXED and a == b else _MIXED


def path_records(records: list[LayerRecord], path: Any) -> list[LayerRecord]:
    """The weighted records on a longest path, input to output."""
    out = []
    while path is not None:
        out.append(records[path.record])
        path = path.previous
    return out[::-1]


def block_label(records: list[LayerRecord], block: Block) -> str:
    """A block's display label: the qualified name of the module call that holds it
    (``layer1.0``), or of its add when no module holds it alone."""
    return records[block.container if block.container is not None else block.add].name


def _block_labels(records: list[LayerRecord], structure: Structure) -> dict[int, str]:
    """Leaf index -> label of the block it belongs to."""
    labels: dict[int, str] = {}
    for block in structure.blocks:
        labels.update(dict.fromkeys(block.members, block_label(records, block)))
    return labels


def _kind(rec: LayerRecord) -> str:
    """A weighted layer's kind in the depth formula: conv, fc, attention (its projections and
    products, one layer), or its type."""
    if isinstance(main_op(rec.op), AttentionOp):
        return "attention"
    return "conv" if "Conv" in rec.type else "fc" if rec.type in ("Linear", "F.linear") else rec.type


def depth_breakdown(records: list[LayerRecord], structure: Structure, main_path: list[LayerRecord],
                    name_depth: int | None, model: str, n_heads: int) -> DepthCount:
    """Count weighted layers on the longest path, as the paper counts depth."""
    block_of = _block_labels(records, structure)
    for rec in main_path:
        rec.on_main_path = True
    stem = [r for r in main_path if r.stage == "stem"]
    in_blocks = [r for r in main_path if r.stage.startswith("res")]
    head = [r for r in main_path if r.stage == "head"]
    fpn = [r for r in main_path if r.stage == "fpn"]
    other = [r for r in main_path if r.stage != "stem" and not r.stage.startswith("res") and r.stage not in ("head", "fpn")]
    blocks = OrderedDict()
    for rec in in_blocks:
        blocks.setdefault(block_of.get(rec.index, ""), []).append(rec.name)
    per_block = Counter(len(v) for v in blocks.values())
    stage_blocks: OrderedDict[str, set[str]] = OrderedDict()
    for rec in in_blocks:
        stage_blocks.setdefault(rec.stage, set()).add(block_of.get(rec.index, ""))
    stage_layers = Counter(rec.stage for rec in in_blocks)
    counted = len(stem) + len(in_blocks) + len(head) + len(other)
    excluded = [r.name for r in records if r.weighted and not r.on_main_path and r.call == 0]
    in_shortcuts = {records[i].name for b in structure.blocks for i in b.shortcut.records}
    projections = [n for n in excluded if n in in_shortcuts]
    projected = set(projections)
    terms = []
    if stem:
        terms.append(f"{len(stem)} stem conv{'s' if len(stem) > 1 else ''}")
    merged = bool(other) and not in_blocks
    if other:  # a model that is not laid out as a ResNet: count its layers by kind; with no residual
        # stages, the head's with them (a transformer's MLPs and its classifier: one "fc" term, not two)
        kinds = Counter(_kind(r) for r in (other + head if merged else other))
        terms.extend(f"{n} {kind}" for kind, n in kinds.items())
    if len(per_block) == 1:
        (convs, n_blocks), = per_block.items()
        terms.append(f"{n_blocks} blocks × {convs} convs")
    else:
        terms.extend(f"{n} blocks × {c} convs" for c, n in sorted(per_block.items()))
    if head and not merged:  # the classifier: a Linear, or timm ResNetV2's 1x1 conv
        kinds = Counter("fc" if r.type in ("Linear", "F.linear") or r.name.endswith("fc") else
                        "conv" if "Conv" in r.type else r.type for r in head)
        terms.extend(f"{n} {kind}" for kind, n in kinds.items())
    formula = " + ".join(terms) + f" = {counted}"
    notes = []
    if name_depth is not None and counted != name_depth:
        if not head and fpn:
            notes.append(f"The trunk has no classifier here: the paper's {name_depth} counts its fc layer, "
                         f"which the FPN replaces ({counted} + 1 fc = {counted + 1}).")
        else:
            notes.append(f"The name says {name_depth} but the main path has {counted} weighted layers.")
    if n_heads > 1:
        notes.append(f"{model} has {n_heads} parallel heads; each path from input to a head has this depth, "
                     "and the heads are not added up.")
    if fpn:
        notes.append(f"The longest path continues through {len(fpn)} FPN conv(s) to the deepest pyramid level "
                     f"({counted + len(fpn)} weighted layers in all); the paper's depth counts the trunk only.")
    return DepthCount(
        counted=counted, name_depth=name_depth, formula=formula, stem=len(stem), blocks=len(blocks),
        convs_per_block=tuple(per_block.items()), head=len(head), fpn=len(fpn), other=len(other),
        per_stage=tuple(StageDepth(k, len(v), stage_layers[k]) for k, v in stage_blocks.items()),
        path=tuple(r.name for r in main_path), projections_not_counted=tuple(projections),
        other_not_counted=tuple(n for n in excluded if n not in projected), notes=tuple(notes),
    )


def downsample_table(records: list[LayerRecord], structure: Structure) -> tuple[DownsampleStep, ...]:
    """Per stage: what carries the stride, the shortcut and why it exists, sizes before/after.

    Layers of the trunk that no block holds (a strided conv or pool between two stages, or a
    residual unit with a single weighted layer, which He et al. 2016 do not count as a block) get
    a step of their own where they change the size, labelled as the summary labels them
    ("stride 8"), so that every place the trunk shrinks is in the table."""
    in_shortcut = {i for b in structure.blocks for i in b.shortcut.records}
    block_of = _block_labels(records, structure)
    blocks = {s.label: s.blocks for s in structure.stages}
    table = []
    for stage, recs, outside in _segments(records, structure):
        step = _step(records, stage, recs, in_shortcut, block_of, blocks.get(stage, ()), outside)
        if not outside or step.size_before != step.size_after:
            table.append(step)
    return tuple(table)


def _segments(records: list[LayerRecord], structure: Structure) -> list[tuple[str, list[LayerRecord], bool]]:
    """The trunk in call order, cut into its stem and stages (by their labels) and the runs of
    leaves between blocks that no block holds: (label, records, whether it is such a run)."""
    members = {i for b in structure.blocks for i in b.members}
    first, last = (min(members), max(members)) if members else (0, -1)
    pyramid = set(structure.pyramid.records) if structure.pyramid is not None else set()
    segments: list[tuple[str, list[LayerRecord], bool]] = []
    by_stage: dict[str, list[LayerRecord]] = {}
    run: list[LayerRecord] | None = None  # the run of outside leaves being read, if any
    for rec in records:
        index, stage = rec.index, rec.stage
        outside = rec.is_leaf and first < index < last and index not in members and index not in pyramid
        if outside:
            if run is None:
                run = []
                segments.append(("", run, True))
            run.append(rec)
        elif stage == "stem" or stage.startswith("res"):
            if stage not in by_stage:
                by_stage[stage] = []
                segments.append((stage, by_stage[stage], False))
            by_stage[stage].append(rec)
        if rec.is_leaf and not outside:
            run = None
    # A run is labelled as the summary labels its last layer: by the stride it leaves ("stride 8").
    return [(recs[-1].stage if outside else label, recs, outside) for label, recs, outside in segments]


def _step(records: list[LayerRecord], stage: str, recs: list[LayerRecord], in_shortcut: set[int],
          block_of: dict[int, str], blocks: tuple[Block, ...], outside: bool) -> DownsampleStep:
    """One row of the downsampling table."""
    first = next((r for r in recs if r.input_shapes), recs[0])
    # The last feature map (``recs`` are in call order).
    last = next((r for r in reversed(recs) if r.output_shapes and len(r.output_shapes[0]) == 4), recs[-1])
    carriers: list[Carrier] = []
    dilated: list[Dilated] = []
    for rec in recs:
        window = find(rec.op, WindowOp) if rec.op is not None and rec.index not in in_shortcut else None
        if window is None:
            continue
        if max(window.stride) > 1:
            carriers.append(Carrier(rec.name, rec.type, window.kernel[0], max(window.stride),
                                    block_of.get(rec.index) or stage))
        if max(window.dilation) > 1:
            dilated.append(Dilated(rec.name, max(window.dilation)))
    before = first.input_shapes[0][-2:] if first.input_shapes and len(first.input_shapes[0]) == 4 else None
    after = last.output_shapes[0][-2:] if last.output_shapes else None
    factor = 1
    for c in carriers:
        factor *= c.stride
    if outside:  # parallel strided branches (a one-conv residual unit) shrink the map once, not twice
        factor = _added_stride(records, first, last) or factor
    return DownsampleStep(
        stage=stage, size_before=tuple(before) if before else None, size_after=tuple(after) if after else None,
        stride=factor, carriers=tuple(carriers),
        projection=tuple(_describe_shortcut(records, b) for b in blocks if b.shortcut.records),
        dilation=tuple(dilated),
        dilation_replaces_stride=bool(dilated) and factor == 1 and stage not in ("stem", "res2"),
    )


def _added_stride(records: list[LayerRecord], first: LayerRecord, last: LayerRecord) -> int | None:
    """How much a run of layers multiplies the effective stride: its last output's over the output
    of the leaf before it; None when the trace has no stride for either."""
    before = next((records[i] for i in range(first.index - 1, -1, -1)
                   if records[i].is_leaf and records[i].jump is not None), None)
    if before is None or last.jump is None:
        return None
    ratio = last.jump[0] / before.jump[0]
    return int(ratio) if float(ratio).is_integer() else None


def shortcut_container(records: list[LayerRecord], block: Block) -> LayerRecord:
    """The module call that holds a shortcut branch and nothing else (``layer2.0.downsample``);
    the branch's only leaf when no module does."""
    branch = set(block.shortcut.records)
    first = records[min(branch)]
    best = first
    for i in range(first.index - 1, -1, -1):
        rec = records[i]
        if rec.depth >= best.depth:
            continue
        leaves = [j for j in leaves_under(records, rec)]
        # A pass-through (nn.Identity) inside the branch's module is on no data path: allow it.
        if not branch <= set(leaves) or any(j not in branch and records[j].op for j in leaves) or any(
                j not in branch and records[j].output_bytes for j in leaves):
            break
        best = rec
    return best


def shortcut_leaves(records: list[LayerRecord], block: Block) -> tuple[int, ...]:
    """A shortcut's leaves with any pass-through inside its module (ResNet-D's stride-1
    nn.Identity, on no data path), in call order; empty for an identity shortcut."""
    if not block.shortcut.records:
        return ()
    inside = set(leaves_under(records, shortcut_container(records, block)))
    return tuple(sorted({*block.shortcut.records, *(set(block.idle) & inside)}))


def _describe_shortcut(records: list[LayerRecord], block: Block) -> Projection:
    """One shortcut branch: its ops, overall stride, why it exists and what input it reads."""
    branch = [records[i] for i in block.shortcut.records]
    holder = shortcut_container(records, block)
    ops = [(r, w) for r in branch if (w := find(r.op, WindowOp)) is not None]
    stride = 1
    for _, w in ops:
        stride *= max(w.stride)
    first, last = (holder, holder) if not holder.is_leaf or len(branch) == 1 else (branch[0], branch[-1])
    cin = first.input_shapes[0][1] if first.input_shapes and len(first.input_shapes[0]) > 1 else None
    cout = last.output_shapes[0][1] if last.output_shapes and len(last.output_shapes[0]) > 1 else None
    reasons = []
    if stride != 1:
        reasons.append(f"stride {stride} ≠ 1")
    if cin != cout:
        reasons.append(f"channels change {cin} → {cout}")
    weighted = [r for r in branch if r.weighted]
    conv = weighted[0] if weighted else None
    if conv is None:
        subsample = "subsample and " if stride != 1 else ""
        kind = f"parameter-free: {subsample}zero-pad the new channels (option A)"
    elif len(ops) > 1:
        kind = " then ".join(f"{r.type} {w.kernel[0]}×{w.kernel[1]}/{max(w.stride)}" for r, w in ops)
    else:
        w = _window_of(conv)
        kind = f"projection {conv.type} {w.kernel[0]}×{w.kernel[1]}/{max(w.stride)}"
    return Projection(
        name=conv.name if conv is not None else holder.name, shortcut=holder.name,
        kernel=_window_of(conv).kernel[0] if conv is not None else None, stride=stride, kind=kind,
        reason=" and ".join(reasons) or "none (an identity would do)",
        input_from=records[block.shortcut.reads].name,
        note="takes the pre-activated input (the output of norm1's BN-ReLU), not the raw block input"
        if block.shortcut.preactivated else None,
    )


def _window_of(rec: LayerRecord) -> WindowOp:
    """The window of a weighted record: a conv's, or a linear layer's 1×1 with stride 1."""
    return find(rec.op, WindowOp) or WindowOp(kernel=(1, 1), stride=(1, 1), padding=(0, 0), dilation=(1, 1))


def fpn_summary(records: list[LayerRecord], structure: Structure,
                output_info: dict[str, OutputInfo]) -> PyramidSummary | None:
    """Laterals, outputs, top-down merges and extra levels of a pyramid, with each level."""
    pyramid = structure.pyramid
    if pyramid is None:
        return None
    levels = pyramid.levels
    extra_leaves = {i for lv in levels if lv.extra for i in lv.records}
    # Calls whose leaves are all in extra levels (none without leaves).
    in_extra = shared_by_leaves(records, dict.fromkeys(extra_leaves, True), False)
    extra = sorted(extra_leaves | {i for i, inside in in_extra.items() if inside and not records[i].is_leaf})
    return PyramidSummary(
        lateral=tuple(records[i].name for i in sorted(lv.lateral for lv in levels if lv.lateral is not None)),
        output=tuple(records[i].name for i in sorted(lv.output for lv in levels if not lv.extra)),
        top_down=tuple(records[i].name for i in sorted(i for lv in levels for i in (lv.resize, lv.merge)
                                                       if i is not None)),
        extra=tuple(records[i].name for i in extra),
        levels=tuple(LevelSummary(k, v) for k, v in output_info.items()),
    )
