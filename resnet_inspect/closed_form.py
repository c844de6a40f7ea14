"""Params, buffers and MACs of a spec in closed form: pure Python, no torch, no trace.

``list`` shows every variant's params and GMACs without importing torch (which alone takes
about two seconds), so the figures are worked out here from the spec, layer by layer, with the
arithmetic of a derivation by hand:

* a convolution has ``out_channels × in_channels/groups × k × k`` weights (plus ``out_channels``
  biases when it has one) and costs one MAC per weight per output position;
* a linear layer has ``in × out`` weights plus ``out`` biases and costs ``in × out`` MACs;
* BatchNorm2d has 2 parameters per channel (scale and shift) and 2 buffers per channel plus the
  ``num_batches_tracked`` counter; FrozenBatchNorm2d keeps all four tensors as buffers, so it
  adds no parameters at all (maskrcnn-benchmark's convention);
* squeeze-and-excitation adds two biased 1x1 convs on the pooled 1×1 map; option A shortcuts,
  pooling and padding add nothing;
* spatial sizes come from the window formula of :mod:`resnet_inspect.analysis.shapes`.

Only convolutions and linear layers produce MACs (the engine's convention). The engine's traced
totals are the reference: ``tests/test_closed_form.py`` checks that both agree exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .analysis.shapes import Window, window_output
from .errors import InputError
from .inputs import parse_input_size
from .plan import BlockPlan, inner_width, stage_plan
from .variants import ResNetSpec, get_spec

SE_REDUCTION = 16
Size = tuple[int, int]


@dataclass(frozen=True)
class Figures:
    """Totals of one spec at one input size."""

    params: int
    buffers: int
    macs: int

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


@dataclass
class _Tally:
    """Running totals while walking the spec in forward order."""

    batch: int
    frozen_norm: bool
    params: int = 0
    buffers: int = 0
    macs: int = 0

    def conv(self, size: Size, c_in: int, c_out: int, kernel: int, *, stride: int = 1, padding: int = 0,
             dilation: int = 1, groups: int = 1, bias: bool = False, where: str = "") -> Size:
        """Add one Conv2d; return its output size."""
        out = _window(size, Window(kernel, stride, padding, dilation), where)
        weights = c_out * (c_in // groups) * kernel * kernel
        self.params += weights + (c_out if bias else 0)
        # Each output element reads in_channels/groups channels through a k×k window.
        self.macs += self.batch * out[0] * out[1] * weights
        return out

    def norm(self, channels: int) -> None:
        """Add one BatchNorm2d (or FrozenBatchNorm2d, or timm's BatchNormAct2d: a BN and a ReLU)."""
        if self.frozen_norm:
            self.buffers += 4 * channels  # weight, bias, running_mean, running_var: all buffers
        else:
            self.params += 2 * channels
            self.buffers += 2 * channels + 1  # running_mean, running_var, num_batches_tracked

    def linear(self, features_in: int, features_out: int, *, called: bool = True) -> None:
        """Add one Linear layer; one that forward() never calls has parameters but no MACs."""
        self.params += features_in * features_out + features_out
        if called:
            self.macs += self.batch * features_in * features_out


def _window(size: Size, window: Window, where: str) -> Size:
    """Output size of a conv or pool window, or an InputError naming the layer it no longer fits."""
    out = (window_output(size[0], window), window_output(size[1], window))
    if min(out) < 1:
        raise InputError(f"The input is too small: at {where} a {size[0]}×{size[1]} map leaves no room for the "
                         f"{window.kernel}×{window.kernel} window (output {out[0]}×{out[1]}).")
    return out


def figures(spec_or_name: ResNetSpec | str, input_size: Any = None, **options: Any) -> Figures:
    """Params, buffers and MACs of a variant (name plus builder options, or a spec) at ``input_size``.

    ``input_size`` takes what ``--input`` takes (``224``, ``800x1344``, NCHW ...) and defaults to
    the variant's own (``spec.default_input``: 224, 32 for the CIFAR nets, 512 with a pyramid); the batch
    multiplies the MACs.
    """
    spec = spec_or_name if isinstance(spec_or_name, ResNetSpec) else get_spec(spec_or_name, **options)
    batch, channels, height, width = parse_input_size(spec.default_input if input_size is None else input_size)
    if channels != 3:
        raise InputError(f"{spec.name} takes 3 input channels (its first conv reads RGB), not {channels}.")
    tally = _Tally(batch=batch, frozen_norm=spec.norm == "frozen_bn")
    stages = _trunk(spec, tally, (height, width))
    _head(spec, tally, stages[-1][1])
    if spec.fpn is not None:
        _fpn(spec, tally, stages)
    return Figures(params=tally.params, buffers=tally.buffers, macs=tally.macs)


def _stem(spec: ResNetSpec, tally: _Tally, size: Size) -> Size:
    """The stem's convs and norm, then its max pool; returns the size the first stage sees."""
    if spec.stem == "cifar":  # He et al. 2015, section 4.2: one 3x3 conv, no max pool
        size = tally.conv(size, 3, spec.stem_width, 3, padding=1, where="conv1")
    elif spec.stem in ("deep", "deep-wide"):
        # Bag of Tricks' ResNet-C stem: three 3x3 convs (w, w, 2w), only the first with stride 2.
        half = spec.stem_width // 2
        size = tally.conv(size, 3, half, 3, stride=2, padding=1, where="the stem's first 3x3 conv")
        tally.norm(half)
        size = tally.conv(size, half, half, 3, padding=1, where="the stem's second 3x3 conv")
        tally.norm(half)
        size = tally.conv(size, half, spec.stem_width, 3, padding=1, where="the stem's third 3x3 conv")
    else:
        size = tally.conv(size, 3, spec.stem_width, 7, stride=2, padding=3, where="the stem's 7x7 conv")
    if not spec.preact:  # a pre-activation net normalises at the start of each block instead
        tally.norm(spec.stem_width)
    if spec.stem == "cifar":
        return size
    # Caffe's max pool (the MSRA release) has no padding and rounds up; torchvision's pads by 1 and rounds down.
    pool = Window(3, 2, 0, 1, True) if spec.caffe_maxpool else Window(3, 2, 1)
    return _window(size, pool, "the stem's max pool")


def _trunk(spec: ResNetSpec, tally: _Tally, size: Size) -> list[tuple[int, Size]]:
    """Stem and stages; returns each stage's (channels, size), C2..C5."""
    size = _stem(spec, tally, size)
    stages = []
    for stage in stage_plan(spec):
        for block in stage.blocks:
            size = _block(spec, tally, size, block)
        stages.append((stage.out_channels, size))
    if spec.preact:
        tally.norm(stages[-1][0])  # the final BN-ReLU: pre-activation blocks leave their sum un-normalised
    return stages


def _block(spec: ResNetSpec, tally: _Tally, size: Size, plan: BlockPlan) -> Size:
    inplanes, planes, out_channels, where = plan.in_channels, plan.planes, plan.out_channels, plan.name
    stride, dilation, first_dilation = plan.stride, plan.dilation, plan.first_dilation
    if spec.preact:
        tally.norm(inplanes)  # norm1 runs before conv1 (He et al. 2016)
    if spec.block == "basic":
        # Two 3x3 convs (padding = dilation); the first carries the stride.
        mid = tally.conv(size, inplanes, planes, 3, stride=stride, padding=first_dilation, dilation=first_dilation,
                         where=f"{where}.conv1")
        tally.norm(planes)
        out = tally.conv(mid, planes, planes, 3, padding=dilation, dilation=dilation, where=f"{where}.conv2")
        tally.norm(planes)
    else:
        # 1x1 reduce, grouped 3x3, 1x1 expand. The stride sits in the first 1x1 (MSRA/Caffe) or in
        # the 3x3 (torchvision, and the pre-activation net); in a stage's first block the 3x3 keeps
        # the previous stage's dilation.
        width = inner_width(spec, planes)
        stride_1x1, stride_3x3 = (stride, 1) if spec.stride_in_1x1 and not spec.preact else (1, stride)
        mid = tally.conv(size, inplanes, width, 1, stride=stride_1x1, where=f"{where}.conv1")
        tally.norm(width)
        mid = tally.conv(mid, width, width, 3, stride=stride_3x3, padding=first_dilation, dilation=first_dilation,
                         groups=spec.groups, where=f"{where}.conv2")
        tally.norm(width)
        out = tally.conv(mid, width, out_channels, 1, where=f"{where}.conv3")
        if not spec.preact:  # a pre-activation block's three norms come before its convs
            tally.norm(out_channels)
    if spec.se:
        # Squeeze-and-excitation: two biased 1x1 convs on the globally averaged 1×1 map; the
        # reduced width is channels/16 rounded to the nearest multiple of 8, at least 8.
        reduced = max(8, (out_channels + 4 * SE_REDUCTION) // (8 * SE_REDUCTION) * 8)
        tally.conv((1, 1), out_channels, reduced, 1, bias=True, where=f"{where}.se.fc1")
        tally.conv((1, 1), reduced, out_channels, 1, bias=True, where=f"{where}.se.fc2")
    _shortcut(tally, size, plan)
    return out


def _shortcut(tally: _Tally, size: Size, plan: BlockPlan) -> None:
    """The shortcut's weights and MACs, as the plan makes it (the identity and option A have none)."""
    where, stride = f"{plan.name}.downsample", plan.stride
    if plan.shortcut in ("identity", "A"):
        return  # He et al. 2015's option A: subsample and zero-pad the new channels, no parameters
    if plan.shortcut == "preact":
        # A pre-activation block projects its normalised input; no norm follows the conv.
        tally.conv(size, plan.in_channels, plan.out_channels, 1, stride=stride, where=where)
        return
    if plan.pool == "avg":
        # ResNet-D: a 2×2 average pool (ceil_mode) takes the stride, then a stride-1 projection.
        size = _window(size, Window(2, stride, 0, 1, True), f"{where}'s average pool")
        stride = 1
    tally.conv(size, plan.in_channels, plan.out_channels, 1, stride=stride, where=where)
    tally.norm(plan.out_channels)


def _head(spec: ResNetSpec, tally: _Tally, size: Size) -> None:
    features = spec.stage_channels[-1] * spec.expansion
    if spec.head == "classifier":
        # After a global average pool to 1×1: a linear layer, or (timm's ResNetV2) a biased 1x1
        # conv, which has the same weights and MACs.
        tally.linear(features, spec.num_classes)
    elif spec.head == "hopenet":
        # Hopenet (Ruiz et al. 2018): AvgPool2d(7), flattened, then three angle heads. The flattened vector only fits
        # the heads when the pool leaves 1×1, i.e. a 7×7 to 13×13 layer4 map.
        pooled = _window(size, Window(7, 7, 0), "hopenet's AvgPool2d(7)")
        if pooled != (1, 1):
            raise InputError(f"hopenet's AvgPool2d(7) turns the {size[0]}×{size[1]} layer4 map into "
                             f"{pooled[0]}×{pooled[1]}, so its flattened {features * pooled[0] * pooled[1]} features "
                             f"do not fit the {features}-feature angle heads; use an input such as 224.")
        for _ in ("yaw", "pitch", "roll"):
            tally.linear(features, spec.num_bins)
        tally.linear(features + 3, 3, called=False)  # fc_finetune: built but never called


def _fpn(spec: ResNetSpec, tally: _Tally, stages: list[tuple[int, Size]]) -> None:
    assert spec.fpn is not None
    fpn = spec.fpn
    used = stages[fpn.first_stage - 1:]
    if fpn.upsample == "scale":
        # maskrcnn-benchmark doubles the coarser level, so each level must be twice the one above.
        for (_, lower), (_, upper) in zip(used, used[1:]):
            if lower != (2 * upper[0], 2 * upper[1]):
                raise InputError(f"{spec.name}'s FPN upsamples by scale_factor=2, so a {lower[0]}×{lower[1]} level "
                                 f"cannot take the doubled {upper[0]}×{upper[1]} level above it; pad the input to a "
                                 "multiple of 32.")
    for stage, (channels, size) in enumerate(used, start=fpn.first_stage):
        # The FPN's convs keep their bias: no norm follows them, unlike the trunk's.
        tally.conv(size, channels, fpn.out_channels, 1, bias=True, where=f"fpn_inner{stage}")
        tally.conv(size, fpn.out_channels, fpn.out_channels, 3, padding=1, bias=True, where=f"fpn_layer{stage}")
    if fpn.kind == "retinanet":
        # P6 and P7: stride-2 3x3 convs, P6 reading P5 (the size of C5) and P7 reading P6.
        p6 = tally.conv(used[-1][1], fpn.out_channels, fpn.out_channels, 3, stride=2, padding=1, bias=True,
                        where="the P6 conv")
        tally.conv(p6, fpn.out_channels, fpn.out_channels, 3, stride=2, padding=1, bias=True, where="the P7 conv")
    # maskrcnn's P6 is a max pool (kernel 1, stride 2): no params, no MACs.
