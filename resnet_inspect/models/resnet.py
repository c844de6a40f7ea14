"""The one builder: ResNetSpec -> nn.Module."""
from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..plan import BlockPlan, stage_plan
from ..variants import ResNetSpec
from .blocks import (
    BLOCKS, AvgPool2dSame, BaseStem, BatchNormAct2d, BottleneckWithBatchNorm, BottleneckWithFixedBatchNorm,
    DownsampleConv, PreActBottleneck, ShortcutA, StemWithFixedBatchNorm, conv3x3,
)
from .fpn import build_fpn
from .norm import NORM_LAYERS
from .replicate import MetaTemplate, is_meta_module


class SelectAdaptivePool2d(nn.Module):
    """Global average pooling under timm's name (``global_pool`` holding ``pool``)."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)


class ClassifierHead(nn.Module):
    """timm ResNetV2's head: global pool, a 1x1 conv as the classifier, then flatten."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.global_pool = SelectAdaptivePool2d()
        self.fc = nn.Conv2d(in_channels, num_classes, kernel_size=1, bias=True)
        self.flatten = nn.Flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.fc(self.global_pool(x)))


class ResNetStage(nn.Module):
    """timm ResNetV2's stage: a ``blocks`` sequence."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


def deep_stem(width: int, norm: Callable[[int], nn.Module]) -> nn.Sequential:
    """ResNet-C stem (Bag of Tricks): three 3x3 convs, width-width-2*width, the first with stride 2.

    Only the last conv's norm and ReLU sit outside (``bn1``, as timm names them)."""
    return nn.Sequential(
        conv3x3(3, width, stride=2), norm(width), nn.ReLU(inplace=True),
        conv3x3(width, width), norm(width), nn.ReLU(inplace=True),
        conv3x3(width, 2 * width),
    )


class _Norms:
    """The spec's norm layer, as a factory. On meta, a norm of a width already made is a copy of the
    first one (:mod:`resnet_inspect.models.replicate`): a ResNet-50 has 53 batch norms of 6 widths,
    and constructing one costs 80 us, copying it 14 us. Elsewhere every norm is constructed."""

    def __init__(self, norm: Callable[[int], nn.Module]) -> None:
        self.norm = norm
        self.templates: dict[int, MetaTemplate | None] = {}  # by width; None: construct each time

    def __call__(self, channels: int) -> nn.Module:
        template = self.templates.get(channels) if type(channels) is int else None
        if template is not None:
            return template.copy()
        made = self.norm(channels)
        if type(channels) is int and channels not in self.templates:
            self.templates[channels] = _read_template(made)
        return made


def _read_template(module: nn.Module) -> MetaTemplate | None:
    """A template of a module just constructed on meta; None for one elsewhere, or one a copy refuses."""
    if not is_meta_module(module):
        return None
    try:
        return MetaTemplate(module)
    except ValueError:
        return None


class _StageBuilder:
    """Builds the stages of any layout from the spec's stage plan (:mod:`resnet_inspect.plan`)."""

    def __init__(self, spec: ResNetSpec, norm: _Norms) -> None:
        self.spec = spec
        self.norm = norm
        self.plan = stage_plan(spec)

    @property
    def out_channels(self) -> int:
        """What the last stage emits."""
        return self.plan[-1].out_channels

    def block_class(self) -> type[nn.Module]:
        spec = self.spec
        if spec.preact:
            return PreActBottleneck
        if spec.layout == "maskrcnn" and spec.block == "bottleneck":
            return BottleneckWithFixedBatchNorm if spec.norm == "frozen_bn" else BottleneckWithBatchNorm
        return BLOCKS[spec.block]

    def shortcut(self, plan: BlockPlan) -> nn.Module | None:
        """The block's shortcut module, as the plan says (None for the identity)."""
        norm = self.norm
        c_in, c_out, stride = plan.in_channels, plan.out_channels, plan.stride
        if plan.shortcut == "identity":
            return None
        if plan.shortcut == "A":
            return ShortcutA(c_in, c_out, stride)
        if plan.shortcut == "preact":
            return DownsampleConv(c_in, c_out, stride)
        if plan.shortcut == "avg_down":
            # ResNet-D: average-pool first (ceil_mode, padding excluded from the mean, as timm sets
            # it), so the 1x1 projection no longer skips three quarters of its input. Where dilation
            # has replaced the stride, timm still averages 2x2 windows, at stride 1 with "same"
            # padding; only a block with neither stride nor dilation gets an Identity.
            pool: nn.Module
            if plan.pool == "avg":
                pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
            elif plan.pool == "avg_same":
                pool = AvgPool2dSame(2, 1, ceil_mode=True, count_include_pad=False)
            else:
                pool = nn.Identity()
            return nn.Sequential(pool, nn.Conv2d(c_in, c_out, 1, stride=1, bias=False), norm(c_out))
        return nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False), norm(c_out))

    def stage(self, index: int) -> list[nn.Module]:
        """The blocks of stage ``index`` (0-based)."""
        spec = self.spec
        block = self.block_class()
        common = dict(groups=spec.groups, width_per_group=spec.width_per_group, stride_in_1x1=spec.stride_in_1x1,
                      norm_layer=self.norm)
        if block is not PreActBottleneck:
            common["se"] = spec.se
        blocks: list[nn.Module] = []
        built: dict[tuple[Any, ...], nn.Module] = {}  # blocks without a shortcut module, by what builds them
        templates: dict[tuple[Any, ...], MetaTemplate] = {}  # ... read at their first repeat
        refused: set[tuple[Any, ...]] = set()  # ... and those a copy cannot tell are safe to share
        for plan in self.plan[index].blocks:
            downsample = self.shortcut(plan)
            key = (plan.in_channels, plan.planes, plan.stride, plan.dilation, plan.first_dilation)
            if downsample is None and key in built:  # on meta: the same block again, new tensors (models.replicate)
                try:
                    if key not in templates:
                        templates[key] = MetaTemplate(built[key])
                    blocks.append(templates[key].copy())
                    continue
                except ValueError:  # constructed, then, as every block used to be
                    refused.add(key)
                    del built[key]
            made = block(plan.in_channels, plan.planes, stride=plan.stride, downsample=downsample,
                         dilation=plan.dilation, first_dilation=plan.first_dilation, **common)
            if downsample is None and key not in refused and is_meta_module(made):
                built[key] = made
            blocks.append(made)
        return blocks


class ResNet(nn.Module):
    """A ResNet trunk with an optional head.

    ``layout="torchvision"`` names the stem ``conv1/bn1/relu/maxpool`` at the top level, so a
    torchvision state_dict loads with ``strict=True``; ``layout="maskrcnn"`` puts the stem in a
    ``stem`` module as maskrcnn-benchmark prints it. ``head`` is ``classifier`` (global average pool + fc), ``hopenet`` (Ruiz et al. 2018's
    AvgPool2d(7) and three angle heads) or ``none`` (the forward returns the stage outputs).
    """

    def __init__(self, spec: ResNetSpec) -> None:
        super().__init__()
        self.spec = spec
        norm = _Norms(NORM_LAYERS[spec.norm])
        if spec.layout == "maskrcnn":
            if spec.norm == "frozen_bn":
                self.stem = StemWithFixedBatchNorm(64, caffe_maxpool=spec.caffe_maxpool)
            else:
                self.stem = BaseStem(64, norm_layer=norm, caffe_maxpool=spec.caffe_maxpool)
        else:
            if spec.stem == "cifar":  # He et al. 2015, section 4.2: one 3x3 conv, no max pool
                self.conv1 = conv3x3(3, spec.stem_width)
            elif spec.stem in ("deep", "deep-wide"):
                self.conv1 = deep_stem(spec.stem_width // 2, norm)
            else:
                self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = norm(spec.stem_width)
            self.relu = nn.ReLU(inplace=True)
            if spec.stem == "cifar":
                self.maxpool = None
            elif spec.caffe_maxpool:  # Caffe (MSRA release): no padding, round up
                self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
            else:
                self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        builder = _StageBuilder(spec, norm)
        for index in range(len(builder.plan)):
            self.add_module(f"layer{index + 1}", nn.Sequential(*builder.stage(index)))
        width = builder.out_channels
        self.head = spec.head
        if spec.head == "classifier":
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(width, spec.num_classes)
        elif spec.head == "hopenet":
            self.avgpool = nn.AvgPool2d(7)
            self.fc_yaw = nn.Linear(width, spec.num_bins)
            self.fc_pitch = nn.Linear(width, spec.num_bins)
            self.fc_roll = nn.Linear(width, spec.num_bins)
            # Vestigial layer from Hopenet's earlier experiments: built, never called.
            self.fc_finetune = nn.Linear(width + 3, 3)
            self.output_names = ("yaw", "pitch", "roll")
        else:
            self.output_names = tuple(f"c{i + 2}" for i in range(len(spec.layers)))
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor]:
        if "stem" in self._modules:
            x = self.stem(x)
        else:
            x = self.relu(self.bn1(self.conv1(x)))
            if self.maxpool is not None:
                x = self.maxpool(x)
        features = []
        for index in range(1, len(self.spec.layers) + 1):
            x = getattr(self, f"layer{index}")(x)
            features.append(x)
        if self.head == "none":
            return features
        if self.head == "hopenet":
            x = self.avgpool(x)
            x = x.view(x.size(0), -1)
            return self.fc_yaw(x), self.fc_pitch(x), self.fc_roll(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


class Hopenet(ResNet):
    """Hopenet, the head-pose network of Ruiz et al. 2018: a ResNet-50 trunk with yaw, pitch and roll heads."""


class ResNetV2(nn.Module):
    """Pre-activation ResNet with timm's names: ``stem.conv``, ``stages.N.blocks.M``, ``norm``,
    ``head.fc`` (a 1x1 conv). The last stage's output goes through a final BN-ReLU (``norm``)
    before pooling, because pre-activation blocks leave their sum un-normalised."""

    def __init__(self, spec: ResNetSpec) -> None:
        super().__init__()
        self.spec = spec
        self.stem = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False),
            pool=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        ))
        builder = _StageBuilder(spec, _Norms(NORM_LAYERS[spec.norm]))
        self.stages = nn.Sequential(*[ResNetStage(builder.stage(i)) for i in range(len(builder.plan))])
        self.norm = BatchNormAct2d(builder.out_channels)
        self.head = ClassifierHead(builder.out_channels, spec.num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.stages(self.stem(x))))


def _init_weights(model: nn.Module) -> None:
    """The seeds' initialisation: conv weights ~ N(0, 2/n) with n = k*k*out_channels, BN 1 and 0.

    Skipped on the meta device, where there are no values to set (and where ``normal_`` would
    go through a slow Python decomposition).
    """
    if any(p.is_meta for p in model.parameters()):
        return
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):  # a FrozenBatchNorm2d's buffers are already 1/0/0/1
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def build_model(spec: ResNetSpec) -> nn.Module:
    """Turn a spec into modules, on the current default device (``torch.device("meta")`` works)."""
    if spec.preact:
        return ResNetV2(spec)
    cls = Hopenet if spec.head == "hopenet" else ResNet
    trunk = cls(spec)
    if spec.fpn is None:
        return trunk
    stage_channels = {i + 1: p * spec.expansion for i, p in enumerate(spec.stage_channels)}
    fpn = build_fpn(spec.fpn.kind, stage_channels, spec.fpn.out_channels, spec.fpn.upsample)
    model = nn.Sequential()
    model.add_module("body", trunk)
    model.add_module("fpn", fpn)
    model.output_names = fpn.output_names  # plain attribute: names the tuple the forward returns
    model.spec = spec
    _init_weights(fpn)
    return model
