"""Inferring the ResNet a state_dict holds, from names and shapes (never values).

It finds the residual blocks by their names (``layer{N}.{M}.`` as torchvision, timm and
maskrcnn-benchmark write them, or timm ResNetV2's ``stages.{N}.blocks.{M}.``), derives the numbers
a spec needs from them (block type, blocks per stage, groups and width, classes or bins, pyramid
kind), then builds every named variant with those numbers on the meta device and keeps the one
whose keys and shapes match best. Nothing about a variant's naming is hard-coded here beyond the
two block patterns: a new variant is found as soon as the builder knows it.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from ..variants import MAX_BLOCKS, MAX_OUTPUTS, MAX_WIDTH, ResNetSpec, get_spec, spec_replace, variants
from .loading import _LIST

# Builder options the weights cannot show (no tensor changes shape with them): the user may set
# them on a checkpoint. Everything else is read from the checkpoint.
INVISIBLE_OPTIONS = ("stride_in_1x1", "caffe_maxpool", "output_stride", "norm")

# Where the residual blocks sit. ``first`` is the number the first stage carries in the name.
_BLOCK_PATTERNS = (
    (re.compile(r"^(?P<root>(?:[^.]+\.)*?)layer(?P<stage>\d+)\.(?P<block>\d+)\.(?P<rest>.+)$"), 1),
    (re.compile(r"^(?P<root>(?:[^.]+\.)*?)stages\.(?P<stage>\d+)\.blocks\.(?P<block>\d+)\.(?P<rest>.+)$"), 0),
)
_CLASSIFIERS = ("fc.weight", "head.fc.weight")  # torchvision/timm, timm ResNetV2
_COUNTER = "num_batches_tracked"  # BatchNorm2d's step counter: FrozenBatchNorm2d has none


@dataclass
class Inference:
    """The spec a state_dict was recognised as, with the evidence and how sure the match is."""

    path: str
    spec: ResNetSpec
    options: dict[str, Any]  # options on top of ``spec.name`` that rebuild it
    prefix: str  # stripped from every key (``module.``, ``backbone.body.`` ...)
    container: str | None
    evidence: list[str]  # what was read from which tensor
    unseen: list[str]  # what the weights cannot show, and what was assumed instead
    total: int  # tensors the model has
    matched: int  # of those, present in the checkpoint with the same shape
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)  # full checkpoint keys
    notes: list[str] = field(default_factory=list)  # from loading: e.g. an argparse.Namespace read as data

    @property
    def exact(self) -> bool:
        return not self.missing and not self.unexpected

    @property
    def confidence(self) -> str:
        """``exact: ...`` or ``partial: ...`` in one line."""
        if self.exact:
            return f"exact: every key and shape matches ({self.total} tensors)"
        return (f"partial: {self.matched} of the model's {self.total} tensors match, "
                f"{len(self.missing)} missing, {len(self.unexpected)} unexpected")

    @property
    def command(self) -> str:
        """The variant and flags that rebuild this model, as a user would type them."""
        return _command(self.spec.name, self.options)


# -- inference ----------------------------------------------------------------------------------

@dataclass
class _Blocks:
    """The residual blocks found in a checkpoint: where they sit and what they hold."""

    root: str  # the prefix before ``layer1``/``stages``
    first: int  # number of the first stage in the names
    keys: dict[tuple[int, int, str], str]  # (stage from 1, block, rest) -> full key

    def key(self, stage: int, block: int, rest: str) -> str | None:
        return self.keys.get((stage, block, rest))


def infer(tensors: Mapping[str, Any], *, path: str = "checkpoint", container: str | None = None,
          overrides: Mapping[str, Any] | None = None) -> Inference:
    """Recognise the ResNet a state_dict belongs to, from its key names and shapes only.

    ``tensors`` maps keys to anything with a ``.shape``. ``overrides`` are builder options the
    weights cannot show (:data:`INVISIBLE_OPTIONS`). Raises InputError when the shapes fit no ResNet.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(overrides) - set(INVISIBLE_OPTIONS))
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        allowed = ", ".join("--" + k.replace("_", "-") for k in INVISIBLE_OPTIONS)
        raise InputError(f"{flags} cannot be set on a checkpoint: the checkpoint's shapes decide them. Only the "
                         f"options its weights cannot show apply: {allowed}.")
    shapes = {k: tuple(int(d) for d in v.shape) for k, v in tensors.items() if hasattr(v, "shape")}
    if not shapes:
        raise InputError(f"{path} holds no tensors.")
    blocks = _find_blocks(shapes, path)
    derived, evidence, model_root = _derive(shapes, blocks, path)
    _check_bounds(derived, evidence, path)
    has_counter = any(k.endswith(_COUNTER) for k in shapes)
    relative = {k[len(model_root):]: s for k, s in shapes.items() if k.startswith(model_root)}
    outside = sorted(k for k in shapes if not k.startswith(model_root))

    ranked = []
    sample = _first_two_blocks(relative)
    for index, name in enumerate(variants()):
        options = _options_for(name, derived, has_counter)
        try:
            spec = get_spec(name, **options)
            mini = spec_replace(spec, layers=tuple(min(n, 2) for n in spec.layers))
        except InputError:
            continue  # this variant cannot take these numbers (a basic block with groups, 3 vs 4 stages...)
        # Blocks after the second of a stage repeat its shapes, so a two-block model compares
        # every kind of tensor at a fraction of the build cost.
        mini_shapes = _shapes_of(mini)
        bad, missing, unexpected = _compare(mini_shapes, sample)
        # The variant that explains the most tensors (name and shape) wins; conflicts only break
        # ties. Ranking by conflicts first would let a variant that shares no key name at all
        # (zero conflicts) beat the right one with a single wrong-shaped tensor. Ties go to the
        # variant with the fewest disagreements of any kind (a wrong shape, a missing or extra key).
        matched = sum(1 for k, s in mini_shapes.items() if sample.get(k) == s and not k.endswith(_COUNTER))
        depth_named = "layers" in options and spec.name_depth is not None  # resnet50 --layers 2,2,2,2 reads wrong
        ranked.append(((-matched, len(bad) + len(missing) + len(unexpected), depth_named, len(options), index),
                       spec, options))
    if not ranked:
        counts = sorted({len(get_spec(name).layers) for name in variants()})
        raise InputError(f"No ResNet variant can be built with what {path} holds: {'; '.join(evidence)}. (The "
                         f"variants have {' or '.join(map(str, counts))} stages.)")
    ranked.sort(key=lambda item: item[0])
    _, spec, options = ranked[0]

    model_shapes = _shapes_of(spec)
    bad, missing, unexpected = _compare(model_shapes, relative)
    if bad:
        listed = "; ".join(f"{model_root}{k} is {_fmt(shapes[model_root + k])} but {spec.name} needs "
                           f"{_fmt(model_shapes[k])}" for k in bad[:4])
        more = f" (and {len(bad) - 4} more)" if len(bad) > 4 else ""
        raise InputError(f"The shapes in {path} fit no ResNet that resnet-inspect can build. Read from it: "
                         f"{'; '.join(evidence)}. The closest is {_command(spec.name, options)}, and these tensors do "
                         f"not fit it: {listed}{more}.")
    counted = [k for k in model_shapes if not k.endswith(_COUNTER)]
    matched = len(counted) - len(missing)
    if matched * 2 < len(counted):
        raise InputError(f"{path} holds too little of a ResNet: only {matched} of the {len(counted)} tensors of the "
                         f"closest one ({_command(spec.name, options)}) are there. Missing: {_some(missing)}.")

    if overrides:
        options = {**options, **overrides}
        spec = get_spec(spec.name, **options)
    evidence.append(_norm_evidence(spec, has_counter, shapes))
    return Inference(
        path=path, spec=spec, options=options, prefix=model_root, container=container, evidence=evidence,
        unseen=_unseen(spec, overrides), total=len(counted), matched=matched, missing=missing,
        unexpected=[model_root + k for k in unexpected] + outside)


def _find_blocks(shapes: Mapping[str, tuple[int, ...]], path: str) -> _Blocks:
    found: dict[tuple[str, int], _Blocks] = {}
    for key in shapes:
        for pattern, first in _BLOCK_PATTERNS:
            match = pattern.match(key)
            if match is None:
                continue
            group = found.setdefault((match["root"], first), _Blocks(match["root"], first, {}))
            group.keys[(int(match["stage"]) - first + 1, int(match["block"]), match["rest"])] = key
            break
    if not found:
        sample = ", ".join(list(shapes)[:5])
        raise InputError(f"{path} does not hold a ResNet: no key names a residual block (such as "
                         f"layer1.0.conv1.weight, or stages.0.blocks.0.conv1.weight in timm's ResNetV2). "
                         f"Its first keys: {sample}.")
    # Several networks in one file (a teacher and a student...): take the one with most block tensors.
    return max(found.values(), key=lambda b: len(b.keys))


def _derive(shapes: Mapping[str, tuple[int, ...]], blocks: _Blocks, path: str
            ) -> tuple[dict[str, Any], list[str], str]:
    """The numbers a spec needs, read from the block tensors; plus the evidence and the model's root."""
    stages = sorted({s for s, _, _ in blocks.keys})
    if stages != list(range(1, len(stages) + 1)):
        names = ", ".join(f"stage {s}" for s in stages)
        raise InputError(f"The residual stages in {path} are not numbered 1, 2, 3...: found {names}.")
    layers = tuple(max(b for s, b, _ in blocks.keys if s == stage) + 1 for stage in stages)
    rests = {rest for _, _, rest in blocks.keys}
    conv2 = blocks.key(1, 0, "conv2.weight")
    if conv2 is None:
        raise InputError(f"Cannot tell the block type in {path}: the first block has no conv2.weight "
                         f"(its tensors: {_some(sorted(r for s, b, r in blocks.keys if (s, b) == (1, 0)))}).")
    w2 = shapes[conv2]
    if len(w2) != 4:
        raise InputError(f"{conv2} in {path} has shape {_fmt(w2)}; a ResNet's 3x3 conv weight is 4-D.")
    block = "bottleneck" if "conv3.weight" in rests else "basic"
    stage_names = "stages.N.blocks" if blocks.first == 0 else "layerN"
    evidence = [f"blocks per stage {','.join(map(str, layers))} (the highest block index under each {stage_names})",
                f"{block} blocks ({'a conv3 is present' if block == 'bottleneck' else 'two convs, no conv3'})"]
    derived: dict[str, Any] = {"block": block, "layers": layers, "groups": 1, "width_per_group": 64}
    if block == "bottleneck":
        conv3 = blocks.key(1, 0, "conv3.weight")
        if conv3 is None or len(shapes[conv3]) != 4:
            raise InputError(f"The first block in {path} has a conv2 but no 4-D conv3.weight.")
        width, per_group, out = w2[0], w2[1], shapes[conv3][0]
        if per_group < 1 or width < 1 or width % per_group or out < 4 or out % 4:
            raise InputError(f"{conv2} in {path} is {_fmt(w2)} and {conv3} is {_fmt(shapes[conv3])}: no grouped "
                             "bottleneck has these shapes (the 3x3's channels must divide into groups, and the "
                             "block's output must be 4 × its planes).")
        groups, planes = width // per_group, out // 4
        # torchvision: width = int(planes * width_per_group / 64) * groups, so per_group = planes * wpg / 64.
        if (per_group * 64) % planes:
            raise InputError(f"{conv2} in {path} has {per_group} channels per group for {planes} planes: no "
                             "integer width_per_group gives that.")
        derived.update(groups=groups, width_per_group=per_group * 64 // planes)
        evidence.append(f"groups {groups}, width per group {derived['width_per_group']} ({conv2} is {_fmt(w2)}, "
                        f"the block's output {out} = 4 × {planes} planes)")

    root = blocks.root
    model_root = root
    fpn = None
    if root == "body." or root.endswith(".body."):
        parent = root[: -len("body.")]
        if f"{parent}fpn.fpn_inner1.weight" in shapes:
            fpn = "maskrcnn"
            evidence.append(f"a maskrcnn FPN (P2-P6: {parent}fpn.fpn_inner1 reads C2)")
        elif any(k.startswith(f"{parent}fpn.top_blocks.p6.") for k in shapes):
            fpn = "retinanet"
            evidence.append(f"a retinanet FPN (P3-P7: {parent}fpn.top_blocks.p6 exists)")
        if fpn is not None:
            model_root = parent
    derived["fpn"] = fpn
    trunk = "body." if fpn else ""
    for name in _CLASSIFIERS:
        weight = shapes.get(f"{model_root}{trunk}{name}")
        if weight:
            derived["num_classes"] = weight[0]
            evidence.append(f"{weight[0]} classes ({model_root}{trunk}{name} is {_fmt(weight)})")
            break
    yaw = shapes.get(f"{model_root}{trunk}fc_yaw.weight")
    if yaw:
        derived["num_bins"] = yaw[0]
        evidence.append(f"hopenet's three heads with {yaw[0]} bins ({model_root}fc_yaw.weight is {_fmt(yaw)})")
    if "num_classes" not in derived and "num_bins" not in derived and fpn is None:
        evidence.append("no classifier")
    return derived, evidence, model_root


def _check_bounds(derived: Mapping[str, Any], evidence: list[str], path: str) -> None:
    """Refuse numbers no real ResNet has (a crafted file can claim any shape without holding the
    numbers) with the builder's own limits, before anything is built from them."""
    limits = [("blocks in one stage", max(derived["layers"]), MAX_BLOCKS),
              ("channels per grouped 3x3 (groups × width per group)",
               derived["groups"] * derived["width_per_group"], MAX_WIDTH),
              ("classes", derived.get("num_classes", 0), MAX_OUTPUTS),
              ("bins", derived.get("num_bins", 0), MAX_OUTPUTS)]
    for what, value, limit in limits:
        if value > limit:
            raise InputError(f"{path} claims {value:,} {what}, over resnet-inspect's limit of {limit:,}; no published "
                             f"ResNet comes near it, so the file is refused before a model is built from it. Read from "
                             f"it: {'; '.join(evidence)}.")


def _options_for(name: str, derived: Mapping[str, Any], has_counter: bool) -> dict[str, Any]:
    """The options that give variant ``name`` the derived numbers (only those that differ from it)."""
    base = get_spec(name)
    options: dict[str, Any] = {}
    for key in ("block", "layers", "groups", "width_per_group", "num_classes", "num_bins"):
        if key in derived and getattr(base, key) != derived[key]:
            options[key] = derived[key]
    base_fpn = base.fpn.kind if base.fpn is not None else None
    if derived["fpn"] != base_fpn:
        options["fpn"] = derived["fpn"] or "none"
    if has_counter and base.norm == "frozen_bn":
        options["norm"] = "bn"  # num_batches_tracked is BatchNorm2d's: the norm is not frozen
    return options


def _compare(model: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]
             ) -> tuple[list[str], list[str], list[str]]:
    """Keys whose shapes differ, keys the checkpoint lacks, keys the model lacks.

    num_batches_tracked is left out both ways: BatchNorm2d loads without it (checkpoints before
    PyTorch 0.4.1 lack it), and it is the only key FrozenBatchNorm2d lacks.
    """
    bad = [k for k in model if k in found and found[k] != model[k]]
    missing = [k for k in model if k not in found and not k.endswith(_COUNTER)]
    unexpected = [k for k in found if k not in model and not k.endswith(_COUNTER)]
    return bad, missing, unexpected


def _first_two_blocks(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    kept = {}
    for key, shape in shapes.items():
        match = next((m for m in (p.match(key) for p, _ in _BLOCK_PATTERNS) if m is not None), None)
        if match is None or int(match["block"]) < 2:
            kept[key] = shape
    return kept


@functools.lru_cache(maxsize=256)
def _shapes_of(spec: ResNetSpec) -> dict[str, tuple[int, ...]]:
    """Every state_dict key of the model a spec builds, with its shape (built on meta; read-only)."""
    import torch

    from ..models.resnet import build_model

    with torch.device("meta"):
        model = build_model(spec)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _norm_evidence(spec: ResNetSpec, has_counter: bool, shapes: Mapping[str, tuple[int, ...]]) -> str:
    label = {"bn": "BatchNorm2d", "frozen_bn": "FrozenBatchNorm2d"}[spec.norm]
    if has_counter:
        return f"{label} (num_batches_tracked is present, so the norms are trainable BatchNorm2d)"
    if not any(k.endswith("running_mean") for k in shapes):
        return f"{label} (kept {spec.name}'s: the checkpoint has no batch-norm statistics)"
    return (f"{label}, a guess: there is no num_batches_tracked, which FrozenBatchNorm2d and a BatchNorm2d saved "
            f"before PyTorch 0.4.1 both lack, so {spec.name}'s own norm is kept (--norm changes it)")


def _unseen(spec: ResNetSpec, overrides: Mapping[str, Any]) -> list[str]:
    """What no tensor shows: strides, pooling, dilation, upsampling. Say what was assumed."""
    notes = []
    if spec.block == "bottleneck" and not spec.preact and "stride_in_1x1" not in overrides:
        where = "first 1x1 (MSRA/Caffe)" if spec.stride_in_1x1 else "3x3 (torchvision)"
        notes.append(f"which conv carries the stride (its weights have the same shape either way): {spec.name}'s, "
                     f"the {where}, kept; --stride-in-1x1/--stride-in-3x3 changes it")
    if "caffe_maxpool" not in overrides and spec.stem != "cifar":
        notes.append(f"the max pool: {'Caffe (ceil mode)' if spec.caffe_maxpool else 'padded'} kept; "
                     "--caffe-maxpool changes it")
    if "output_stride" not in overrides and spec.stem != "cifar":  # the CIFAR nets take no --output-stride
        notes.append(f"dilation: output stride {spec.output_stride} kept; --output-stride changes it")
    if spec.fpn is not None:
        notes.append(f"the FPN's upsampling: {spec.name}'s ({spec.fpn.upsample}) kept")
    return notes


def _command(name: str, options: Mapping[str, Any]) -> str:
    """``resnet50 --layers 3,4,5,3``: a variant and its options as CLI flags."""
    flags = []
    for key, value in sorted(options.items()):
        if key == "stride_in_1x1":
            flags.append("--stride-in-1x1" if value else "--stride-in-3x3")
        elif isinstance(value, bool):
            flags.append(f"--{key.replace('_', '-')}" if value else f"--no-{key.replace('_', '-')}")
        else:
            shown = ",".join(map(str, value)) if isinstance(value, (tuple, list)) else value
            flags.append(f"--{key.replace('_', '-')} {shown}")
    return " ".join([name, *flags])


def _fmt(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape)) if shape else "a scalar"


def _some(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LIST])
    return shown + (f" and {len(keys) - _LIST} more" if len(keys) > _LIST else "") if keys else "none"


