"""Data records of an inspection. Numbers only: ``render/`` turns them into text."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .blocks import Structure

from .opdesc import OpDesc

Shape = tuple[int, ...]

CONVENTION = (
    "MACs count one multiply-accumulate per weight use in Conv2d and Linear layers (bias adds "
    "excluded), as torchvision's model tables and He et al.'s 'FLOPs' (multiply-adds) do. "
    "FLOPs = 2 x MACs. Other ops (normalisation, activations, pooling, residual adds, upsampling "
    "and bias adds) are counted separately, one per element operation, so the totals of fvcore, "
    "ptflops and thop can be explained from them."
)


@dataclass
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
        return data


@dataclass
class Report:
    """The result of :func:`resnet_inspect.inspect`."""

    model: str
    input_size: Shape
    layers: list[LayerRecord]
    totals: dict[str, int]
    outputs: dict[str, Shape]
    output_info: dict[str, OutputInfo]
    depth: dict[str, Any]
    downsample: list[dict[str, Any]]
    uncalled: list[dict[str, Any]]
    fpn: dict[str, Any] | None = None
    counter: str = "analytic"
    device: str = "meta"
    options: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    padded_from: Shape | None = None
    convention: str = CONVENTION
    structure: Structure | None = None  # stages, blocks, pyramid: read from the data flow (blocks.py)

    def layer(self, name: str) -> LayerRecord:
        """The first record with this qualified name."""
        for rec in self.layers:
            if rec.name == name:
                return rec
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with stable keys."""
        return _jsonable({
            "model": self.model,
            "input_size": self.input_size,
            "padded_from": self.padded_from,
            "options": self.options,
            "counter": self.counter,
            "device": self.device,
            "convention": self.convention,
            "layers": [r.to_dict() for r in self.layers],
            "totals": self.totals,
            "outputs": self.outputs,
            "output_info": {name: info.to_dict() for name, info in self.output_info.items()},
            "depth": self.depth,
            "downsample": self.downsample,
            "uncalled": self.uncalled,
            "fpn": self.fpn,
            "warnings": self.warnings,
        })


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
