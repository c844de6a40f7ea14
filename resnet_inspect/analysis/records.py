"""Data records of an inspection. Numbers only: ``render/`` turns them into text."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .blocks import Structure

from ..collector import collector_paused
from .opdesc import AdaptivePoolOp, AttentionOp, LinearOp, MatMulOp, MeanOp, OpDesc, PadOp, WindowOp

Shape = tuple[int, ...]

CONVENTION = (
    "MACs count one multiply-accumulate per weight use in Conv2d and Linear layers (bias adds "
    "excluded), as torchvision's model tables and He et al.'s 'FLOPs' (multiply-adds) do. "
    "FLOPs = 2 x MACs. Other ops (normalisation, activations, pooling, residual adds, upsampling "
    "and bias adds) are counted separately, one per element operation, so the totals of fvcore, "
    "ptflops and thop can be explained from them."
)


@dataclass(slots=True)
class LayerRecord:
    """One module call (or one functional op called directly in a container's forward)."""

    index: int
    name: str
    type: str
    kind: str = "module"  # "module" or "function"
    depth: int = 0
    parent: str | None = None
    is_leaf: bool = True
    call: int = 0  # 0 for a module's first call; 1, 2 ... for repeat calls of a shared module
    input_shapes: list[Shape] = field(default_factory=list)
    output_shapes: list[Shape] = field(default_factory=list)
    params: int = 0
    trainable_params: int = 0
    buffers: int = 0
    shared: list[str] = field(default_factory=list)  # parameters counted at an earlier record
    macs: int = 0
    other_ops: int = 0
    op: OpDesc | None = None  # what the operator is (a window, a linear layer, a pad ...), set by its counting rule
    analytic_shape: Shape | None = None
    shape_ok: bool | None = None
    working: list[str] = field(default_factory=list)  # per-dimension shape arithmetic
    receptive_field: tuple[int, int] | None = None
    jump: tuple[float, float] | None = None
    start: tuple[float, float] | None = None
    global_field: bool = False  # attention ran on the way: the field is the whole input, not receptive_field
    stage: str = ""
    weighted: bool = False  # a conv or linear layer: what the paper's depth counts
    on_main_path: bool = False
    path_depth: int = 0
    inplace: bool = False
    output_bytes: int = 0
    input_from: list[str] = field(default_factory=list)  # records that produced this call's inputs
    # Indices of the records whose outputs this call's counted operators read: a module may take
    # an input it never uses (maskrcnn-benchmark's LastLevelMaxPool takes C5 and P5, pools P5).
    read_from: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Every field, the op in its JSON form (a shallow copy; ``_jsonable`` makes tuples lists)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["op"] = self.op.to_dict() if self.op is not None else None
        return data

    def json_dict(self) -> dict[str, Any]:
        """``_jsonable(self.to_dict())``, built directly: the report's JSON holds one per record, so the
        generic walk over every number cost more than writing the JSON (issue 19). The fields typed as
        ints, strings and bools are taken as they are (the trace makes them so); the rest go through
        what ``_jsonable`` does to them (lists for tuples, ints for integral floats)."""
        return {
            "index": self.index, "name": self.name, "type": self.type, "kind": self.kind, "depth": self.depth,
            "parent": self.parent, "is_leaf": self.is_leaf, "call": self.call,
            "input_shapes": list(map(list, self.input_shapes)),
            "output_shapes": list(map(list, self.output_shapes)),
            "params": self.params, "trainable_params": self.trainable_params, "buffers": self.buffers,
            "shared": list(self.shared),
            # Peer counters (fvcore, torch) fill these two: keep whatever they gave as _jsonable would.
            "macs": self.macs if type(self.macs) is int else _jsonable(self.macs),
            "other_ops": self.other_ops if type(self.other_ops) is int else _jsonable(self.other_ops),
            "op": None if self.op is None else op_json(self.op),
            "analytic_shape": list(self.analytic_shape) if self.analytic_shape is not None else None,
            "shape_ok": self.shape_ok, "working": list(self.working),
            "receptive_field": list(self.receptive_field) if self.receptive_field is not None else None,
            "jump": None if self.jump is None else json_numbers(self.jump),
            "start": None if self.start is None else json_numbers(self.start),
            "global_field": self.global_field, "stage": self.stage, "weighted": self.weighted,
            "on_main_path": self.on_main_path, "path_depth": self.path_depth, "inplace": self.inplace,
            "output_bytes": self.output_bytes, "input_from": list(self.input_from), "read_from": list(self.read_from),
        }


@dataclass(frozen=True)
class OutputInfo:
    """One output of the model (a feature map, an FPN level, a head's logits).

    Stride, receptive field and depth are known when the output comes from the image through
    traced layers; ``stride`` is one number when H and W agree, else (H, W).
    """

    shape: Shape
    stride: float | tuple[float, float] | None = None
    receptive_field: tuple[int, int] | None = None
    depth: int | None = None  # weighted layers on its deepest path
    head: bool = False  # a 2-D (N, features) output: a classifier or regression head
    global_field: bool = False  # attention ran on the way: every position sees the whole input

    @property
    def traced(self) -> bool:
        """Whether the output comes from the image through traced layers."""
        return self.receptive_field is not None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form the report has always written."""
        data: dict[str, Any] = {"shape": list(self.shape)}
        if self.traced:
            stride = list(self.stride) if isinstance(self.stride, tuple) else self.stride
            data.update(stride=stride, receptive_field=list(self.receptive_field or ()), depth=self.depth,
                        head=self.head)
            if self.global_field:
                data["global_field"] = True
        return data


@dataclass(frozen=True)
class StageDepth:
    """One stage's share of the counted depth: its blocks and its layers on the longest path."""

    stage: str  # display label (res2 ..)
    blocks: int
    layers: int

    def to_dict(self) -> dict[str, int]:
        """The JSON form (the stage is the key it sits under)."""
        return {"blocks": self.blocks, "layers": self.layers}


@dataclass(frozen=True)
class DepthCount:
    """Depth as He et al. 2016 count it: weighted layers (convs, linear) on the longest path."""

    counted: int
    name_depth: int | None  # the number in the variant's name (50 for resnet50), if any
    formula: str  # "1 stem conv + 16 blocks × 3 convs + 1 fc = 50"
    stem: int
    blocks: int
    convs_per_block: tuple[tuple[int, int], ...]  # (convs in a block, blocks with that many), in path order
    head: int
    fpn: int  # FPN convs on the longest path beyond the trunk (not in ``counted``)
    other: int  # weighted layers outside stem, stages, head and FPN
    per_stage: tuple[StageDepth, ...]
    path: tuple[str, ...]  # the longest path's weighted layers, input to output
    projections_not_counted: tuple[str, ...]  # projection shortcuts: beside the path, not on it
    other_not_counted: tuple[str, ...]
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON form the report has always written."""
        return {
            "counted": self.counted, "name_depth": self.name_depth, "formula": self.formula, "stem": self.stem,
            "blocks": self.blocks, "convs_per_block": dict(self.convs_per_block), "head": self.head,
            "fpn": self.fpn, "other": self.other,
            "per_stage": {s.stage: s.to_dict() for s in self.per_stage},
            "path": list(self.path), "projections_not_counted": list(self.projections_not_counted),
            "other_not_counted": list(self.other_not_counted), "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Carrier:
    """A main-path layer whose window has stride > 1: it carries a stage's downsampling."""

    name: str
    type: str
    kernel: int
    stride: int
    block: str  # the label of its block, or the stage's for a layer in no block (the stem)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"name": self.name, "type": self.type, "kernel": self.kernel, "stride": self.stride,
                "block": self.block}


@dataclass(frozen=True)
class Projection:
    """A shortcut branch that is not an identity: its ops, overall stride and why it exists."""

    name: str  # its weighted layer, or the branch's module when it has none (option A)
    shortcut: str  # the module call that holds the branch (``layer2.0.downsample``)
    kernel: int | None
    stride: int
    kind: str  # "projection Conv2d 1×1/2", "AvgPool2d 2×2/2 then Conv2d 1×1/1", option A's words
    reason: str  # "stride 2 ≠ 1 and channels change 256 → 512"
    input_from: str  # the record whose output the branch reads
    note: str | None = None  # set when the branch reads the pre-activated input (ResNetV2)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``note`` only when set)."""
        data: dict[str, Any] = {"name": self.name, "shortcut": self.shortcut, "kernel": self.kernel,
                                "stride": self.stride, "kind": self.kind, "reason": self.reason,
                                "input_from": self.input_from}
        if self.note is not None:
            data["note"] = self.note
        return data


@dataclass(frozen=True)
class Dilated:
    """A main-path window with dilation > 1 (output stride 8 or 16)."""

    name: str
    dilation: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"name": self.name, "dilation": self.dilation}


@dataclass(frozen=True)
class DownsampleStep:
    """One stage of the downsampling table: sizes, stride, its carriers and its shortcuts."""

    stage: str
    size_before: tuple[int, ...] | None  # (H, W) of the stage's input
    size_after: tuple[int, ...] | None  # (H, W) of its last feature map
    stride: int  # the product of the carriers' strides (outside blocks: how much the effective stride grows)
    carriers: tuple[Carrier, ...]
    projection: tuple[Projection, ...]
    dilation: tuple[Dilated, ...]
    dilation_replaces_stride: bool

    def to_dict(self) -> dict[str, Any]:
        """The JSON form the report has always written."""
        return {
            "stage": self.stage,
            "size_before": list(self.size_before) if self.size_before is not None else None,
            "size_after": list(self.size_after) if self.size_after is not None else None,
            "stride": self.stride,
            "carriers": [c.to_dict() for c in self.carriers],
            "projection": [p.to_dict() for p in self.projection],
            "dilation": [d.to_dict() for d in self.dilation],
            "dilation_replaces_stride": self.dilation_replaces_stride,
        }


@dataclass(frozen=True)
class LevelSummary:
    """One output listed with the pyramid: its name and what is known of it."""

    name: str
    info: OutputInfo


@dataclass(frozen=True)
class PyramidSummary:
    """The FPN's layers by role, as qualified names, and the model's outputs."""

    lateral: tuple[str, ...]  # 1×1 convs reading the trunk
    output: tuple[str, ...]  # the 3×3 convs after each merge
    top_down: tuple[str, ...]  # the upsamplings and the adds of the top-down path
    extra: tuple[str, ...]  # records of the levels beyond the trunk (P6, P7), containers included
    levels: tuple[LevelSummary, ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form the report has always written."""
        return {"lateral": list(self.lateral), "output": list(self.output), "top_down": list(self.top_down),
                "extra": list(self.extra), "levels": {lv.name: lv.info.to_dict() for lv in self.levels}}


@dataclass(frozen=True)
class TraceStop:
    """Where a meta trace stopped: an operator whose output size depends on values (a detector's
    ``nonzero`` in box decoding). Every layer before it is reported; a real forward runs the rest."""

    op: str
    layer: str  # the innermost module running it ("" for the root module)
    layer_type: str
    reason: str  # torch's own words

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "layer": self.layer, "layer_type": self.layer_type, "reason": self.reason}


@dataclass
class Report:
    """The result of :func:`resnet_inspect.inspect`."""

    model: str
    input_size: Shape
    layers: list[LayerRecord]
    totals: dict[str, int]
    outputs: dict[str, Shape]
    output_info: dict[str, OutputInfo]
    depth: DepthCount
    downsample: tuple[DownsampleStep, ...]
    uncalled: list[dict[str, Any]]
    fpn: PyramidSummary | None = None
    counter: str = "analytic"
    device: str = "meta"
    options: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    padded_from: Shape | None = None
    convention: str = CONVENTION
    structure: Structure | None = None  # stages, blocks, pyramid: read from the data flow (blocks.py)
    # Buffer elements by what they hold: running_statistics, frozen_constants, other (inspect.buffer_kind).
    buffer_kinds: dict[str, int] = field(default_factory=dict)
    stopped: TraceStop | None = None  # the meta trace stopped at a data-dependent operator

    def layer(self, name: str) -> LayerRecord:
        """The first record with this qualified name."""
        for rec in self.layers:
            if rec.name == name:
                return rec
        raise KeyError(name)

    # How a report shows itself in Python: ``print`` and ``rich.print`` give the summary table,
    # Jupyter an HTML table, the REPL one line (render/notebook.py does the rendering).
    def __str__(self) -> str:
        from ..render.notebook import plain_text

        return plain_text(self)

    def __repr__(self) -> str:
        from ..render.notebook import short_repr

        return short_repr(self)

    def __rich__(self) -> Any:
        from ..render.notebook import Renderable

        return Renderable(self)

    def _repr_html_(self) -> str:
        from ..render.notebook import html

        return html(self)

    @collector_paused()  # its passes over the records of 800 blocks doubled the time
    def to_dict(self, records: Callable[[list[LayerRecord]], Any] | None = None) -> dict[str, Any]:
        """JSON-ready dict with stable keys.

        ``records`` makes the "layers" value of the records; by default it is the list of their
        ``json_dict()`` (render/jsonreport.py writes their JSON text straight from the fields instead).
        """
        parts = {
            "model": self.model,
            "input_size": self.input_size,
            "padded_from": self.padded_from,
            "options": self.options,
            "counter": self.counter,
            "device": self.device,
            "convention": self.convention,
            "layers": self.layers,
            "totals": self.totals,
            "buffer_kinds": self.buffer_kinds,
            "outputs": self.outputs,
            "output_info": {name: info.to_dict() for name, info in self.output_info.items()},
            "depth": self.depth.to_dict(),
            "downsample": [step.to_dict() for step in self.downsample],
            "uncalled": self.uncalled,
            "fpn": self.fpn.to_dict() if self.fpn is not None else None,
            "warnings": self.warnings,
            **({"stopped": self.stopped.to_dict()} if self.stopped is not None else {}),
        }
        # The records are most of it: each builds its own JSON form (LayerRecord.json_dict).
        layers = records or _json_dicts
        return {key: layers(value) if key == "layers" else _jsonable(value) for key, value in parts.items()}


def _json_dicts(records: list[LayerRecord]) -> list[dict[str, Any]]:
    return [r.json_dict() for r in records]


# Operators whose fields are all typed ints, bools and strings (tuples of ints): their to_dict() is
# JSON-ready as it is. ResizeOp keeps the caller's arguments as given and a Chain may hold one.
TYPED_OPS = (WindowOp, LinearOp, MatMulOp, AttentionOp, PadOp, MeanOp, AdaptivePoolOp)


def op_json(op: OpDesc) -> dict[str, Any]:
    """An op's JSON form in the report (its ``to_dict()``, through ``_jsonable`` where it may hold the caller's values)."""
    return op.to_dict() if type(op) in TYPED_OPS else _jsonable(op.to_dict())


def json_numbers(pair: tuple[float, ...]) -> list[Any]:
    """A tuple of floats as ``_jsonable`` writes it: a list, integral floats as ints (NaN and inf kept)."""
    numbers = []
    for v in pair:  # a loop, not a comprehension or a call per number: one of these per record and field
        if type(v) is float:
            numbers.append(int(v) if v.is_integer() else v)
        else:
            numbers.append(v if type(v) is int else _jsonable(v))
    return numbers


# Values that _jsonable keeps as they are: a list of only these (the names on the longest path) is copied whole.
_KEPT = {str, int, bool, type(None)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if set(map(type, value)) <= _KEPT:
            return list(value)
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
