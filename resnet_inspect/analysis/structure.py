"""Read the architecture out of the records: stages, depth as the paper counts it, where each
stage downsamples, and the FPN's levels.

Everything here works from the trace (records and the longest weighted path to each output),
so it applies to any traced ResNet-like model, not only to the variants built here.
"""
from __future__ import annotations

import re
from collections import Counter, OrderedDict
from typing import Any

from .opdesc import WindowOp, find
from .records import LayerRecord, OutputInfo

_STEM_NAMES = {"conv1", "bn1", "relu", "maxpool", "stem"}
_BLOCK = re.compile(r"(?:body\.)?(?:layer\d+|stages\.\d+\.blocks)\.\d+")


def stage_of(name: str) -> str:
    """Display stage of a qualified name: stem, res2..res5 (stride 2**k, detectron2's labels),
    fpn or head. ``layer{k}`` is stage ``res{k+1}``."""
    path = name.split(":")[0]
    parts = [p for p in path.split(".") if p]
    if parts and parts[0] == "body":
        parts = parts[1:]
    if not parts:
        return ""
    if parts[0] == "fpn":
        return "fpn"
    match = re.fullmatch(r"layer(\d+)", parts[0])
    if match:
        return f"res{int(match.group(1)) + 1}"
    if parts[0] == "stages" and len(parts) > 1 and parts[1].isdigit():  # timm ResNetV2: stages.0 is res2
        return f"res{int(parts[1]) + 2}"
    if parts[0] in _STEM_NAMES:
        return "stem"
    if parts[0] in ("avgpool", "fc", "head", "norm") or parts[0].startswith("fc_"):
        return "head"
    return ""


def label_stages(records: list[LayerRecord]) -> None:
    """Stage labels from ResNet names; other models get a label from their effective stride
    ("stride 4", ...) or "head" once the output is no longer a feature map."""
    for rec in records:
        rec.stage = stage_of(rec.name)
        if rec.stage or not rec.name:
            continue
        spatial = bool(rec.output_shapes) and len(rec.output_shapes[0]) == 4
        if spatial and rec.jump is not None:
            rec.stage = f"stride {int(rec.jump[0])}" if float(rec.jump[0]).is_integer() else f"stride {rec.jump[0]}"
        else:
            rec.stage = "head"


def path_records(records: list[LayerRecord], path: Any) -> list[LayerRecord]:
    """The weighted records on a longest path, input to output."""
    out = []
    while path is not None:
        out.append(records[path.record])
        path = path.previous
    return out[::-1]


def _block_of(rec: LayerRecord) -> str:
    """The residual block a record belongs to: ``layer1.0`` for ``layer1.0.conv2``."""
    match = _BLOCK.match(rec.name)
    return match.group(0) if match else ""


def _shortcut_of(name: str) -> str | None:
    """The shortcut branch a record sits in (``layer2.0.downsample``), if any."""
    match = re.match(r"(.*?\.(?:downsample|shortcut))(?:[.:]|$)", name)
    return match.group(1) if match else None


def depth_breakdown(records: list[LayerRecord], main_path: list[LayerRecord], name_depth: int | None,
                    model: str, n_heads: int) -> dict[str, Any]:
    """Count weighted layers on the longest path, as the paper counts depth."""
    for rec in main_path:
        rec.on_main_path = True
    stem = [r for r in main_path if r.stage == "stem"]
    in_blocks = [r for r in main_path if r.stage.startswith("res")]
    head = [r for r in main_path if r.stage == "head"]
    fpn = [r for r in main_path if r.stage == "fpn"]
    other = [r for r in main_path if r.stage != "stem" and not r.stage.startswith("res") and r.stage not in ("head", "fpn")]
    blocks = OrderedDict()
    for rec in in_blocks:
        blocks.setdefault(_block_of(rec), []).append(rec.name)
    per_block = Counter(len(v) for v in blocks.values())
    per_stage = OrderedDict()
    for rec in in_blocks:
        entry = per_stage.setdefault(rec.stage, {"blocks": set(), "layers": 0})
        entry["blocks"].add(_block_of(rec))
        entry["layers"] += 1
    counted = len(stem) + len(in_blocks) + len(head) + len(other)
    excluded = [r.name for r in records if r.weighted and not r.on_main_path and r.call == 0]
    projections = [n for n in excluded if ".downsample" in n or "shortcut" in n]
    terms = []
    if stem:
        terms.append(f"{len(stem)} stem conv{'s' if len(stem) > 1 else ''}")
    if other:  # a model that is not laid out as a ResNet: count its layers by kind
        kinds = Counter("conv" if "Conv" in r.type else "fc" if r.type in ("Linear", "F.linear") else r.type
                        for r in other)
        terms.extend(f"{n} {kind}" for kind, n in kinds.items())
    if len(per_block) == 1:
        (convs, n_blocks), = per_block.items()
        terms.append(f"{n_blocks} blocks × {convs} convs")
    else:
        terms.extend(f"{n} blocks × {c} convs" for c, n in sorted(per_block.items()))
    if head:  # the classifier: a Linear, or timm ResNetV2's 1x1 conv
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
    return {
        "counted": counted,
        "name_depth": name_depth,
        "formula": formula,
        "stem": len(stem),
        "blocks": len(blocks),
        "convs_per_block": dict(per_block),
        "head": len(head),
        "fpn": len(fpn),
        "other": len(other),
        "per_stage": {k: {"blocks": len(v["blocks"]), "layers": v["layers"]} for k, v in per_stage.items()},
        "path": [r.name for r in main_path],
        "projections_not_counted": projections,
        "other_not_counted": [n for n in excluded if n not in projections],
        "notes": notes,
    }


def downsample_table(records: list[LayerRecord]) -> list[dict[str, Any]]:
    """Per stage: what carries the stride, the shortcut and why it exists, sizes before/after."""
    by_name = {r.name: r for r in records if r.kind == "module" and r.call == 0}
    stages: OrderedDict[str, list[LayerRecord]] = OrderedDict()
    for rec in records:
        if rec.stage == "stem" or rec.stage.startswith("res"):
            stages.setdefault(rec.stage, []).append(rec)
    table = []
    for stage, recs in stages.items():
        first = next(r for r in recs if r.input_shapes)
        spatial = [r for r in recs if r.output_shapes and len(r.output_shapes[0]) == 4]
        last = max(spatial, key=lambda r: r.index, default=recs[-1])
        carriers, dilated = [], []
        shortcuts: OrderedDict[str, list[LayerRecord]] = OrderedDict()
        for rec in recs:
            branch = _shortcut_of(rec.name)
            if branch is not None:
                shortcuts.setdefault(branch, []).append(rec)
                continue
            window = find(rec.op, WindowOp)
            if window is None:
                continue
            if max(window.stride) > 1:
                carriers.append({"name": rec.name, "type": rec.type, "kernel": window.kernel[0],
                                 "stride": max(window.stride), "block": _block_of(rec) or stage})
            if max(window.dilation) > 1:
                dilated.append({"name": rec.name, "dilation": max(window.dilation)})
        before = first.input_shapes[0][-2:] if first.input_shapes and len(first.input_shapes[0]) == 4 else None
        after = last.output_shapes[0][-2:] if last.output_shapes else None
        factor = 1
        for c in carriers:
            factor *= c["stride"]
        table.append({
            "stage": stage,
            "size_before": list(before) if before else None,
            "size_after": list(after) if after else None,
            "stride": factor,
            "carriers": carriers,
            "projection": [_describe_shortcut(name, branch, by_name) for name, branch in shortcuts.items()],
            "dilation": dilated,
            "dilation_replaces_stride": bool(dilated) and factor == 1 and stage not in ("stem", "res2"),
        })
    return table


def _describe_shortcut(name: str, branch: list[LayerRecord], by_name: dict[str, LayerRecord]) -> dict[str, Any]:
    """One shortcut branch: its ops, overall stride, why it exists and what input it reads."""
    container = by_name.get(name)
    ops = [(r, w) for r in branch if (w := find(r.op, WindowOp)) is not None]
    stride = 1
    for _, w in ops:
        stride *= max(w.stride)
    shapes = container if container is not None else branch[0]
    cin = shapes.input_shapes[0][1] if shapes.input_shapes and len(shapes.input_shapes[0]) > 1 else None
    cout = shapes.output_shapes[0][1] if shapes.output_shapes and len(shapes.output_shapes[0]) > 1 else None
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
    entry: dict[str, Any] = {
        "name": conv.name if conv is not None else name,
        "shortcut": name,
        "kernel": _window_of(conv).kernel[0] if conv is not None else None,
        "stride": stride,
        "kind": kind,
        "reason": " and ".join(reasons) or "none (an identity would do)",
        "input_from": shapes.input_from[0] if shapes.input_from else None,
    }
    if entry["input_from"] and re.search(r"\.norm1(\.|$)", entry["input_from"]):
        entry["note"] = "takes the pre-activated input (the output of norm1's BN-ReLU), not the raw block input"
    return entry


def _window_of(rec: LayerRecord) -> WindowOp:
    """The window of a weighted record: a conv's, or a linear layer's 1×1 with stride 1."""
    return find(rec.op, WindowOp) or WindowOp(kernel=(1, 1), stride=(1, 1), padding=(0, 0), dilation=(1, 1))


def _kernel(rec: LayerRecord) -> int | None:
    """The first kernel size of a record's window, or None."""
    window = find(rec.op, WindowOp)
    return window.kernel[0] if window is not None else None


def fpn_summary(records: list[LayerRecord], output_info: dict[str, OutputInfo]) -> dict[str, Any] | None:
    """Laterals, outputs, top-down merges and extra levels of a pyramid, with each level."""
    fpn = [r for r in records if r.stage == "fpn"]
    if not fpn:
        return None
    leaf_convs = [r for r in fpn if r.weighted]
    lateral = [r.name for r in leaf_convs if _kernel(r) == 1]
    extra = [r.name for r in fpn if ".top_blocks" in r.name or r.name.startswith("fpn.top_blocks")
             or "top_blocks:" in r.name]
    output = [r.name for r in leaf_convs if _kernel(r) == 3 and r.name not in extra]
    top_down = [r.name for r in fpn if r.kind == "function" and r.type in ("F.interpolate", "F.add")
                and r.name not in extra]
    return {"lateral": lateral, "output": output, "top_down": top_down, "extra": extra,
            "levels": {k: v.to_dict() for k, v in output_info.items()}}
