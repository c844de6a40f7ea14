"""The stage plan of a spec: per stage and block, the numbers that build it (no torch).

models/resnet.py builds its modules from this plan and closed_form.py counts it, so the stage loop
and torchvision's shortcut rule exist once. Stages follow He et al. 2016, Table 1: the first keeps
the stem's resolution, each later one halves it in its first block (or, for output stride 16/8,
dilates instead, as torchvision's ``replace_stride_with_dilation`` does).
"""
from __future__ import annotations

from dataclasses import dataclass

from .variants import ResNetSpec

# How a block's shortcut is made: the identity, He et al.'s option A (subsample and zero-pad), a
# strided 1x1 projection + norm (option B), a pre-activation net's bare projection, or ResNet-D's
# 2x2 average pool before a stride-1 projection.
SHORTCUTS = ("identity", "A", "projection", "preact", "avg_down")


def needs_projection(stride: int, in_channels: int, out_channels: int) -> bool:
    """torchvision's ``_make_layer`` rule: a block needs a shortcut module when it changes the
    resolution or the channels (``stride != 1 or inplanes != planes * expansion``)."""
    return stride != 1 or in_channels != out_channels


def inner_width(spec: ResNetSpec, planes: int) -> int:
    """Channels of a block's 3x3 conv: ``planes`` for a basic block; torchvision's
    ``int(planes * width_per_group / 64) * groups`` for a bottleneck (ResNeXt, Wide ResNet)."""
    if spec.block == "basic":
        return planes
    return int(planes * spec.width_per_group / 64) * spec.groups


def groups_and_width(spec: ResNetSpec) -> tuple[int, int]:
    """The ``32 × 4`` of resnext50_32x4d: the groups of the first stage's 3x3 conv and the channels of each
    group (16 for the CIFAR nets, whose first stage is 16 channels wide; 64 for ResNet-50)."""
    return spec.groups, inner_width(spec, spec.stage_channels[0]) // spec.groups


@dataclass(frozen=True)
class BlockPlan:
    """One residual block: what it reads and makes, where its stride sits, and its shortcut."""

    stage: int  # 0-based: stage 0 is torchvision's layer1 (res2)
    index: int  # within the stage
    in_channels: int
    planes: int  # the block's width before expansion
    out_channels: int
    stride: int
    dilation: int
    first_dilation: int  # the strided conv's dilation: the previous stage's in a stage's first block
    shortcut: str  # one of SHORTCUTS
    pool: str | None = None  # avg_down only: "avg" (stride 2), "avg_same" (dilated, stride 1) or None

    @property
    def name(self) -> str:
        """torchvision's qualified name, ``layer2.0``."""
        return f"layer{self.stage + 1}.{self.index}"


@dataclass(frozen=True)
class StagePlan:
    """One stage: its blocks and what it emits."""

    index: int
    planes: int
    blocks: tuple[BlockPlan, ...]

    @property
    def out_channels(self) -> int:
        return self.blocks[-1].out_channels


def _shortcut_kind(spec: ResNetSpec, stride: int, in_channels: int, out_channels: int) -> str:
    if not needs_projection(stride, in_channels, out_channels):
        return "identity"
    if spec.shortcut == "A":
        return "A"
    if spec.preact:
        return "preact"
    return "avg_down" if spec.avg_down else "projection"


def _pool(kind: str, stride: int, dilation: int) -> str | None:
    """ResNet-D's pool: a strided 2x2 average, or (where dilation replaced the stride) timm's
    stride-1 "same" average; a block with neither gets none."""
    if kind != "avg_down":
        return None
    if stride > 1:
        return "avg"
    return "avg_same" if dilation > 1 else None


def stage_plan(spec: ResNetSpec) -> tuple[StagePlan, ...]:
    """Every stage of ``spec`` with its blocks, in forward order."""
    in_channels, dilation = spec.stem_width, 1
    stages = []
    for index, (planes, count) in enumerate(zip(spec.stage_channels, spec.layers)):
        stride = 1 if index == 0 else 2
        previous_dilation = dilation
        if spec.stage_dilations[index] > 1:  # output stride 16/8: dilation replaces the stride
            dilation, stride = spec.stage_dilations[index], 1
        out_channels = planes * spec.expansion
        blocks = []
        for block in range(count):
            first = block == 0
            block_stride = stride if first else 1
            kind = _shortcut_kind(spec, block_stride, in_channels, out_channels)
            blocks.append(BlockPlan(
                stage=index, index=block, in_channels=in_channels, planes=planes, out_channels=out_channels,
                stride=block_stride, dilation=dilation, first_dilation=previous_dilation if first else dilation,
                shortcut=kind, pool=_pool(kind, block_stride, dilation)))
            in_channels = out_channels
        stages.append(StagePlan(index=index, planes=planes, blocks=tuple(blocks)))
    return tuple(stages)
