"""Feature pyramid network in maskrcnn-benchmark's layout (its R-50-FPN-RetinaNet config).

Lateral 1x1 convs are ``fpn_inner{k}`` and 3x3 output convs ``fpn_layer{k}``, where ``k`` is the
trunk stage (``layer{k}``) they read; ``top_blocks`` adds the extra levels.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LastLevelMaxPool(nn.Module):
    """P6 = max_pool2d(P5, kernel 1, stride 2): Mask R-CNN's extra level."""

    def forward(self, c5: torch.Tensor, p5: torch.Tensor) -> list[torch.Tensor]:
        del c5
        return [F.max_pool2d(p5, 1, 2, 0)]


class LastLevelP6P7(nn.Module):
    """P6 and P7 by stride-2 3x3 convs: RetinaNet's extra levels.

    P6 reads P5 when the channel counts agree (maskrcnn-benchmark's RetinaNet prints ``p6: Conv2d(256, 256)``),
    otherwise C5.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, 2, 1)
        self.use_p5 = in_channels == out_channels

    def forward(self, c5: torch.Tensor, p5: torch.Tensor) -> list[torch.Tensor]:
        p6 = self.p6(p5 if self.use_p5 else c5)
        p7 = self.p7(F.relu(p6))
        return [p6, p7]


class FPN(nn.Module):
    """Top-down pyramid: lateral 1x1, upsample-and-add from above, then a 3x3 per level.

    ``upsample="scale"`` doubles the coarser map (``scale_factor=2``, maskrcnn-benchmark), which only
    lines up when the input is a multiple of 32; ``upsample="size"`` resizes it to the lateral's
    size (torchvision), which works for any input.
    """

    def __init__(self, in_channels: dict[int, int], out_channels: int, top_blocks: nn.Module | None,
                 *, upsample: str = "size") -> None:
        super().__init__()
        self.stages = sorted(in_channels)
        for stage in self.stages:
            self.add_module(f"fpn_inner{stage}", nn.Conv2d(in_channels[stage], out_channels, 1))
            self.add_module(f"fpn_layer{stage}", nn.Conv2d(out_channels, out_channels, 3, 1, 1))
        self.top_blocks = top_blocks
        self.upsample = upsample
        # Trunk stage k (layer{k}) has stride 2**(k+1), so its level is P{k+1}.
        extra = {LastLevelMaxPool: 1, LastLevelP6P7: 2}.get(type(top_blocks), 0)
        last = self.stages[-1] + 1
        self.output_names = tuple(f"p{s + 1}" for s in self.stages) + tuple(f"p{last + i}" for i in range(1, extra + 1))

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        feats = dict(zip(range(1, len(features) + 1), features))
        top = self.stages[-1]
        last_inner = getattr(self, f"fpn_inner{top}")(feats[top])
        results = [getattr(self, f"fpn_layer{top}")(last_inner)]
        for stage in reversed(self.stages[:-1]):
            lateral = getattr(self, f"fpn_inner{stage}")(feats[stage])
            if self.upsample == "scale":
                top_down = F.interpolate(last_inner, scale_factor=2, mode="nearest")
            else:
                top_down = F.interpolate(last_inner, size=lateral.shape[-2:], mode="nearest")
            last_inner = lateral + top_down
            results.insert(0, getattr(self, f"fpn_layer{stage}")(last_inner))
        if self.top_blocks is not None:
            results.extend(self.top_blocks(feats[top], results[-1]))
        return tuple(results)


def build_fpn(kind: str, stage_channels: dict[int, int], out_channels: int, upsample: str) -> FPN:
    """FPN over trunk stages: all four for ``maskrcnn``, stages 2-4 for ``retinanet``."""
    first = 1 if kind == "maskrcnn" else 2
    in_channels = {s: c for s, c in stage_channels.items() if s >= first}
    top: nn.Module = LastLevelMaxPool() if kind == "maskrcnn" else LastLevelP6P7(out_channels, out_channels)
    return FPN(in_channels, out_channels, top, upsample=upsample)
