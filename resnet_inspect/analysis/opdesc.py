"""What an operator is, as the counting rule saw it: one small frozen type per operator family.

A record's ``op`` is one of these (or a :class:`Chain` when a leaf module runs several shaped
operators, as option A's shortcut pools and then pads). Views dispatch on the type, as fvcore
dispatches a handle on an operator's name, instead of guessing from which keys are present.

``to_dict()`` gives the JSON form the report has always written (see ``Report.to_dict``), so
exports and snapshots do not change.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar, Union

Ints = tuple[int, ...]


@dataclass(frozen=True)
class WindowOp:
    """A sliding window: a convolution (1-D, 2-D, 3-D, transposed) or a max/avg pool.

    ``groups`` and the channel counts are set for convolutions only; ``ceil_mode`` is None where
    the operator has no such option (1-D/3-D and transposed convs).
    """

    kernel: Ints
    stride: Ints
    padding: Ints
    dilation: Ints
    ceil_mode: bool | None = None
    groups: int | None = None
    in_channels: int | None = None
    out_channels: int | None = None
    output_padding: Ints | None = None
    transposed: bool = False

    @property
    def is_conv(self) -> bool:
        """A convolution (it has filters), not a pool."""
        return self.groups is not None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kernel": list(self.kernel), "stride": list(self.stride),
                                "padding": list(self.padding), "dilation": list(self.dilation)}
        if self.ceil_mode is not None:
            data["ceil_mode"] = self.ceil_mode
        if self.output_padding is not None:
            data["output_padding"] = list(self.output_padding)
        if self.is_conv:
            data.update(groups=self.groups, in_channels=self.in_channels, out_channels=self.out_channels)
        if self.transposed:
            data["transposed"] = True
        return data


@dataclass(frozen=True)
class LinearOp:
    """A fully connected layer."""

    in_features: int
    out_features: int

    def to_dict(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features}


@dataclass(frozen=True)
class MatMulOp:
    """A product of two activations (or an activation and a matrix): ``inner`` MACs per output."""

    inner: int

    def to_dict(self) -> dict[str, Any]:
        return {"inner": self.inner}


@dataclass(frozen=True)
class AttentionOp:
    """Scaled dot-product attention (alone, or inside a multi-head attention with its projections).

    Every query position attends to every key position, so the receptive field is global.
    ``heads`` query heads, ``queries`` × ``keys`` positions, ``head_dim`` and ``value_dim`` per head.
    """

    heads: int
    queries: int
    keys: int
    head_dim: int
    value_dim: int
    causal: bool = False
    projections: bool = False  # the in- and out-projections are part of the op (multi-head attention)

    def to_dict(self) -> dict[str, Any]:
        return {"heads": self.heads, "queries": self.queries, "keys": self.keys, "head_dim": self.head_dim,
                "value_dim": self.value_dim, "causal": self.causal, "projections": self.projections}


@dataclass(frozen=True)
class PadOp:
    """``F.pad``: ``pad`` as torch takes it, last dimension first (option A's zero channels)."""

    pad: Ints
    mode: str = "constant"

    def to_dict(self) -> dict[str, Any]:
        return {"pad": list(self.pad), "mode": self.mode}


@dataclass(frozen=True)
class MeanOp:
    """A mean over ``dims`` (SE's squeeze when they are H and W)."""

    dims: Ints
    keepdim: bool = False

    @property
    def is_global_spatial(self) -> bool:
        """A mean over H and W of an NCHW map: a global average pool."""
        return self.dims == (2, 3)

    def to_dict(self) -> dict[str, Any]:
        return {"reduce": list(self.dims), "keepdim": self.keepdim}


@dataclass(frozen=True)
class AdaptivePoolOp:
    """An adaptive pool: its output is ``output_size`` (H, W) whatever the input."""

    output_size: tuple[int, int]

    def to_dict(self) -> dict[str, Any]:
        return {"output_size": list(self.output_size)}


@dataclass(frozen=True)
class ResizeOp:
    """``F.interpolate``, with its arguments as given (either a size or a scale factor)."""

    mode: str | None
    scale_factor: Any = None
    size: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "scale_factor": self.scale_factor, "size": self.size}


@dataclass(frozen=True)
class Chain:
    """Several shaped operators run by one leaf module, in call order."""

    ops: tuple[OpDesc, ...]

    def to_dict(self) -> dict[str, Any]:
        # As the records always merged them: a later operator's key wins, in the first one's place.
        data: dict[str, Any] = {}
        for op in self.ops:
            data.update(op.to_dict())
        return data


OpDesc = Union[WindowOp, LinearOp, MatMulOp, AttentionOp, PadOp, MeanOp, AdaptivePoolOp, ResizeOp, Chain]
T = TypeVar("T")


def chain(first: OpDesc | None, then: OpDesc) -> OpDesc:
    """The op of a record that already ran ``first`` and now runs ``then``."""
    if first is None:
        return then
    earlier = first.ops if isinstance(first, Chain) else (first,)
    return Chain((*earlier, then))


def parts(op: OpDesc | None) -> tuple[OpDesc, ...]:
    """The operators an op stands for, in call order (none for None)."""
    if op is None:
        return ()
    return op.ops if isinstance(op, Chain) else (op,)


def find(op: OpDesc | None, kind: type[T]) -> T | None:
    """The last operator of this kind in ``op``, or None."""
    if not isinstance(op, Chain):  # one operator, or None: most records (asked once per record by each analysis)
        return op if isinstance(op, kind) else None
    for part in reversed(op.ops):
        if isinstance(part, kind):
            return part
    return None


def main_op(op: OpDesc | None) -> OpDesc | None:
    """The operator that decides what a record is: a window over anything else it runs (option A
    pools, then pads: it is a window with a pad), then the other families in a fixed order."""
    for kind in (WindowOp, LinearOp, AttentionOp, AdaptivePoolOp, PadOp, MeanOp, ResizeOp, MatMulOp):
        found = find(op, kind)
        if found is not None:
            return found
    return None
