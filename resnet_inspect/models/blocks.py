"""Residual blocks and stems.

Two layouts appear in the seeds and both are built here:

* torchvision / MSRA-Caffe layout (torchvision, Hopenet): the block owns a shared ``relu`` module and
  registers ``downsample`` last.
* maskrcnn-benchmark layout: ``downsample`` is registered first, ReLU is functional
  (``F.relu_``), and the stem is a module of its own with a functional max pool.

Only the registration order, the ReLU style and the class name differ, so one Bottleneck class
serves both; the maskrcnn names are thin subclasses that bind the frozen norm, as upstream does.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .norm import FrozenBatchNorm2d

NormFactory = Callable[[int], nn.Module]


def conv3x3(in_planes: int, out_planes: int, *, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 convolution whose padding equals its dilation, so stride 1 keeps the size."""
    return nn.Conv2d(
        in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation,
        groups=groups, dilation=dilation, bias=False,
    )


def conv1x1(in_planes: int, out_planes: int, *, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution: changes channels, and downsamples when the stride is 2."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def _act(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A block's ReLU: its shared ``relu`` module (torchvision) or ``F.relu_`` (maskrcnn-benchmark)."""
    return block.relu(x) if block.acts == "shared" else F.relu_(x)


class SEModule(nn.Module):
    """Squeeze-and-excitation (Hu et al.), as timm builds it: global average, 1x1 conv down by
    ``reduction`` (rounded to a multiple of 8), ReLU, 1x1 conv up, sigmoid gate on the channels."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        reduced = max(8, int(channels / reduction + 4) // 8 * 8)  # nearest multiple of 8
        self.fc1 = nn.Conv2d(channels, reduced, kernel_size=1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(reduced, channels, kernel_size=1, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(squeezed))))


class ShortcutA(nn.Module):
    """He et al. 2015's option A shortcut: no parameters. It subsamples with the stride (a 1x1
    window, which is what ``x[:, :, ::s, ::s]`` does) and zero-pads the new channels, half on
    each side."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = F.max_pool2d(x, kernel_size=1, stride=self.stride)
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, zero_channels={self.pad}"


class AvgPool2dSame(nn.AvgPool2d):
    """Average pool with TensorFlow-style "same" padding, as timm's ResNet-D shortcut uses it when
    dilation replaces a stage's stride (output stride 16 or 8): a 2x2 window at stride 1.

    The input is zero-padded so that the output is ``ceil(I / stride)`` long, the odd pixel of
    the padding going after (right and bottom). The zeros are real elements of the padded map,
    so they count in the mean: ``count_include_pad`` only concerns the pool's own padding, which
    is 0 here (timm behaves the same way).
    """

    def __init__(self, kernel_size: int, stride: int, *, ceil_mode: bool = True,
                 count_include_pad: bool = False) -> None:
        super().__init__(kernel_size, stride, padding=0, ceil_mode=ceil_mode, count_include_pad=count_include_pad)

    def _same_pad(self, size: int, kernel: int, stride: int) -> tuple[int, int]:
        total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
        return total // 2, total - total // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = (self.kernel_size,) * 2 if isinstance(self.kernel_size, int) else self.kernel_size
        sh, sw = (self.stride,) * 2 if isinstance(self.stride, int) else self.stride
        top, bottom = self._same_pad(x.shape[-2], kh, sh)
        left, right = self._same_pad(x.shape[-1], kw, sw)
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return F.avg_pool2d(x, (kh, kw), (sh, sw), 0, self.ceil_mode, self.count_include_pad)


class BatchNormAct2d(nn.BatchNorm2d):
    """timm's norm + activation in one module (pre-activation nets): batch norm, then ``act``."""

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(super().forward(x))


class DownsampleConv(nn.Module):
    """The projection of a pre-activation block: a strided 1x1 conv, no norm after it."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class PreActBottleneck(nn.Module):
    """Pre-activation bottleneck (He et al. 2016, "Identity Mappings"): BN-ReLU before each conv.

    The projection shortcut reads the *pre-activated* input (``norm1``'s output), as timm's
    ResNetV2 does; the identity shortcut reads the raw input. The stride sits in the 3x3.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, *, stride: int = 1, downsample: nn.Module | None = None,
                 groups: int = 1, width_per_group: int = 64, dilation: int = 1, first_dilation: int | None = None,
                 **unused: object) -> None:
        super().__init__()
        width = int(planes * (width_per_group / 64.0)) * groups
        self.downsample = downsample
        self.norm1 = BatchNormAct2d(inplanes)
        self.conv1 = conv1x1(inplanes, width)
        self.norm2 = BatchNormAct2d(width)
        self.conv2 = conv3x3(width, width, stride=stride, groups=groups, dilation=first_dilation or dilation)
        self.norm3 = BatchNormAct2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_preact = self.norm1(x)
        shortcut = self.downsample(x_preact) if self.downsample is not None else x
        out = self.conv1(x_preact)
        out = self.conv2(self.norm2(out))
        out = self.conv3(self.norm3(out))
        return out + shortcut


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34). The first carries the stage's stride."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, *, stride: int = 1, downsample: nn.Module | None = None,
        groups: int = 1, width_per_group: int = 64, dilation: int = 1, first_dilation: int | None = None,
        stride_in_1x1: bool = False, norm_layer: NormFactory = nn.BatchNorm2d, acts: str = "shared",
        se: bool = False,
    ) -> None:
        super().__init__()
        if groups != 1 or width_per_group != 64:
            raise ValueError("BasicBlock only supports groups=1 and width_per_group=64")
        del stride_in_1x1  # a basic block has no 1x1 conv: the stride always sits in conv1
        self.acts = acts
        self.conv1 = conv3x3(inplanes, planes, stride=stride, dilation=first_dilation or dilation)
        self.bn1 = norm_layer(planes)
        if acts == "shared":
            self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, dilation=dilation)
        self.bn2 = norm_layer(planes)
        self.se = SEModule(planes) if se else None
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = _act(self, self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return _act(self, out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (ResNet-50 and deeper, ResNeXt, Wide ResNet).

    ``stride_in_1x1`` chooses which conv carries the stage's stride. The original MSRA/Caffe
    models put it in the first 1x1 (the MSRA Caffe release, maskrcnn-benchmark's default); torchvision
    and fb.torch put it in the 3x3, which costs more MACs but keeps more information.
    """

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, *, stride: int = 1, downsample: nn.Module | None = None,
        groups: int = 1, width_per_group: int = 64, dilation: int = 1, first_dilation: int | None = None,
        stride_in_1x1: bool = False, norm_layer: NormFactory = nn.BatchNorm2d,
        shortcut_first: bool = False, acts: str = "shared", se: bool = False,
    ) -> None:
        super().__init__()
        width = int(planes * (width_per_group / 64.0)) * groups
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.acts = acts
        if shortcut_first:
            self.downsample = downsample
        self.conv1 = conv1x1(inplanes, width, stride=stride_1x1)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride=stride_3x3, groups=groups, dilation=first_dilation or dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.se = SEModule(planes * self.expansion) if se else None
        if acts == "shared":
            self.relu = nn.ReLU(inplace=True)
        if not shortcut_first:
            self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = _act(self, self.bn1(self.conv1(x)))
        out = _act(self, self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se is not None:
            out = self.se(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return _act(self, out)


class BottleneckWithFixedBatchNorm(Bottleneck):
    """maskrcnn-benchmark's bottleneck: shortcut registered first, functional ReLU, frozen BN."""

    def __init__(self, inplanes: int, planes: int, **kwargs: object) -> None:
        kwargs.setdefault("norm_layer", FrozenBatchNorm2d)
        super().__init__(inplanes, planes, shortcut_first=True, acts="functional", **kwargs)  # type: ignore[arg-type]


class BottleneckWithBatchNorm(Bottleneck):
    """The maskrcnn-benchmark bottleneck layout with a trainable BatchNorm2d (``--norm bn``).

    maskrcnn-benchmark itself only ships the frozen-norm class; this name says what the block holds.
    """

    def __init__(self, inplanes: int, planes: int, **kwargs: object) -> None:
        kwargs.setdefault("norm_layer", nn.BatchNorm2d)
        super().__init__(inplanes, planes, shortcut_first=True, acts="functional", **kwargs)  # type: ignore[arg-type]


class BaseStem(nn.Module):
    """maskrcnn-benchmark's stem: 7x7/2 conv, norm, functional ReLU and 3x3/2 max pool."""

    def __init__(self, out_channels: int = 64, *, norm_layer: NormFactory = nn.BatchNorm2d,
                 caffe_maxpool: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, out_channels, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(out_channels)
        self.caffe_maxpool = caffe_maxpool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu_(self.bn1(self.conv1(x)))
        if self.caffe_maxpool:
            return F.max_pool2d(x, kernel_size=3, stride=2, padding=0, ceil_mode=True)
        return F.max_pool2d(x, kernel_size=3, stride=2, padding=1)


class StemWithFixedBatchNorm(BaseStem):
    """The stem with FrozenBatchNorm2d, as maskrcnn-benchmark names it."""

    def __init__(self, out_channels: int = 64, *, caffe_maxpool: bool = False) -> None:
        super().__init__(out_channels, norm_layer=FrozenBatchNorm2d, caffe_maxpool=caffe_maxpool)


BLOCKS: dict[str, type[nn.Module]] = {"basic": BasicBlock, "bottleneck": Bottleneck}
