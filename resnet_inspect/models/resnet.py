"""The one builder: ResNetSpec -> nn.Module."""
from __future__ import annotations

import math

import torch
from torch import nn

from ..variants import ResNetSpec
from .blocks import BLOCKS, BaseStem, BottleneckWithFixedBatchNorm, StemWithFixedBatchNorm
from .fpn import build_fpn
from .norm import NORM_LAYERS, FrozenBatchNorm2d

STAGE_PLANES = (64, 128, 256, 512)


class ResNet(nn.Module):
    """A ResNet trunk with an optional head.

    ``layout="torchvision"`` names the stem ``conv1/bn1/relu/maxpool`` at the top level, so a
    torchvision state_dict loads with ``strict=True``; ``layout="maskrcnn"`` puts it in a ``stem``
    module as seed 003 prints it. ``head`` is ``classifier`` (global average pool + fc),
    ``hopenet`` (seed 000's AvgPool2d(7) and three angle heads) or ``none`` (the forward returns
    the four stage outputs C2..C5 for a pyramid).
    """

    def __init__(self, spec: ResNetSpec) -> None:
        super().__init__()
        self.spec = spec
        norm = NORM_LAYERS[spec.norm]
        if spec.layout == "maskrcnn":
            if spec.norm == "frozen_bn":
                self.stem = StemWithFixedBatchNorm(64, caffe_maxpool=spec.caffe_maxpool)
            else:
                self.stem = BaseStem(64, norm_layer=norm, caffe_maxpool=spec.caffe_maxpool)
        else:
            self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.bn1 = norm(64)
            self.relu = nn.ReLU(inplace=True)
            if spec.caffe_maxpool:  # seed 002: no padding, round up
                self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
            else:
                self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._inplanes = 64
        self._dilation = 1
        for index, (planes, blocks) in enumerate(zip(STAGE_PLANES, spec.layers)):
            stride = 1 if index == 0 else 2
            self.add_module(f"layer{index + 1}", self._make_layer(planes, blocks, stride, spec.stage_dilations[index]))
        width = STAGE_PLANES[-1] * spec.expansion
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
            self.output_names = ("c2", "c3", "c4", "c5")
        _init_weights(self)

    def _make_layer(self, planes: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
        spec = self.spec
        block = BLOCKS[spec.block]
        if spec.layout == "maskrcnn" and spec.block == "bottleneck":
            block = BottleneckWithFixedBatchNorm
        norm = NORM_LAYERS[spec.norm]
        # Dilation replaces the stride (output stride 16/8): the first block keeps the previous
        # dilation for its strided conv, as torchvision does.
        previous_dilation = self._dilation
        if dilation > 1:
            self._dilation = dilation
            stride = 1
        out_channels = planes * block.expansion
        downsample = None
        # torchvision's single rule: project when the block changes resolution or channels.
        if stride != 1 or self._inplanes != out_channels:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, out_channels, kernel_size=1, stride=stride, bias=False),
                norm(out_channels),
            )
        common = dict(groups=spec.groups, width_per_group=spec.width_per_group,
                      stride_in_1x1=spec.stride_in_1x1, norm_layer=norm)
        layers = [block(self._inplanes, planes, stride=stride, downsample=downsample,
                        dilation=self._dilation, first_dilation=previous_dilation, **common)]
        self._inplanes = out_channels
        layers += [block(self._inplanes, planes, dilation=self._dilation, **common) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...] | list[torch.Tensor]:
        if "stem" in self._modules:
            x = self.stem(x)
        else:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = []
        for index in range(1, len(self.spec.layers) + 1):
            x = getattr(self, f"layer{index}")(x)
            features.append(x)
        if self.head == "none":
            return features
        x = self.avgpool(x)
        if self.head == "hopenet":
            x = x.view(x.size(0), -1)
            return self.fc_yaw(x), self.fc_pitch(x), self.fc_roll(x)
        return self.fc(torch.flatten(x, 1))


class Hopenet(ResNet):
    """Seed 000's head-pose network: a ResNet-50 trunk with yaw, pitch and roll heads."""


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
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, FrozenBatchNorm2d):
            pass  # buffers are already 1/0/0/1


def build_model(spec: ResNetSpec) -> nn.Module:
    """Turn a spec into modules, on the current default device (``torch.device("meta")`` works)."""
    cls = Hopenet if spec.head == "hopenet" else ResNet
    trunk = cls(spec)
    if spec.fpn is None:
        return trunk
    stage_channels = {i + 1: p * spec.expansion for i, p in enumerate(STAGE_PLANES)}
    fpn = build_fpn(spec.fpn.kind, stage_channels, spec.fpn.out_channels, spec.fpn.upsample)
    model = nn.Sequential()
    model.add_module("body", trunk)
    model.add_module("fpn", fpn)
    model.output_names = fpn.output_names  # plain attribute: names the tuple the forward returns
    _init_weights(fpn)
    return model
