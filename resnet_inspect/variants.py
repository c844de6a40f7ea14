"""The named variants as data.

A variant is a frozen :class:`ResNetSpec`; one builder (:func:`resnet_inspect.models.resnet.build_model`)
turns any spec into modules. This module imports nothing heavy, so the CLI can list and validate
names without importing torch.
"""
from __future__ import annotations

import dataclasses
import difflib
import operator
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import InputError
from .text import clip

BLOCK_EXPANSION = {"basic": 1, "bottleneck": 4}
NORMS = ("bn", "frozen_bn")
FPN_KINDS = ("maskrcnn", "retinanet")
OUTPUT_STRIDES = (32, 16, 8)
# The input each command uses when none is given (ResNetSpec.default_input, the one place it is
# decided): ImageNet's 224×224 for a classifier (He et al. 2016); 32×32 for the CIFAR nets (He et
# al. 2015, §4.2); and for a net with a feature pyramid a square multiple of 32, as its top-down
# path needs (maskrcnn-benchmark pads to SIZE_DIVISIBILITY 32), small enough to trace at once.
IMAGENET_INPUT, CIFAR_INPUT, FPN_INPUT = 224, 32, 512


@dataclass(frozen=True)
class FPNSpec:
    """A feature pyramid on top of the trunk.

    ``kind`` picks the levels: ``maskrcnn`` builds P2-P5 from C2-C5 plus P6 by max pool
    (LastLevelMaxPool); ``retinanet`` builds P3-P5 from C3-C5 plus P6, P7 by stride-2 convs
    (LastLevelP6P7, P6 computed from P5). ``upsample`` is ``scale`` for maskrcnn-benchmark's
    ``scale_factor=2`` (inputs must then be multiples of 32) or ``size`` for torchvision's
    upsample-to-the-lateral's-size, which accepts any input.
    """

    kind: str = "retinanet"
    out_channels: int = 256
    upsample: str = "size"

    @property
    def first_stage(self) -> int:
        """Index (1-based, as in ``layer1``) of the first trunk stage that gets a lateral conv."""
        return 1 if self.kind == "maskrcnn" else 2


@dataclass(frozen=True)
class ResNetSpec:
    """Everything that decides a ResNet's modules: a handful of numbers and switches, and the input
    every command traces it at when none is given (``default_input``)."""

    name: str
    block: str
    layers: tuple[int, ...]
    groups: int = 1
    width_per_group: int = 64
    stride_in_1x1: bool = False
    caffe_maxpool: bool = False
    norm: str = "bn"
    output_stride: int = 32
    num_classes: int = 1000
    head: str = "classifier"  # classifier | hopenet | none
    num_bins: int = 66
    fpn: FPNSpec | None = None
    # Module naming: torchvision (flat stem), maskrcnn (stem module, as maskrcnn-benchmark) or timm_v2 (timm's
    # pre-activation ResNetV2: stem.conv, stages.N.blocks.M, norm, head.fc). The timm-named
    # ResNet presets (resnet50d, seresnet50 ...) use the torchvision layout: their parameter names
    # are timm's (conv1.0..6, downsample.1/.2, se.fc1/fc2), and parameter-free modules keep
    # torchvision's names, so a diff against resnet50 shows only what really changed.
    layout: str = "torchvision"
    stem: str = "standard"  # standard 7x7 | deep (ResNet-C, 32-32-64) | deep-wide (64-64-128) | cifar (3x3)
    avg_down: bool = False  # ResNet-D: 2x2 average pool, then a stride-1 projection in the shortcut
    shortcut: str = "B"  # B: projection when shape changes (torchvision) | A: subsample + zero-pad (CIFAR)
    preact: bool = False  # BN-ReLU before each conv (He et al. 2016)
    se: bool = False  # squeeze-and-excitation, reduction 16
    stage_channels: tuple[int, ...] = (64, 128, 256, 512)
    default_input: int = IMAGENET_INPUT
    source: str = "torchvision"
    options: tuple[tuple[str, Any], ...] = field(default=(), compare=False)

    @property
    def expansion(self) -> int:
        return BLOCK_EXPANSION[self.block]

    @property
    def convs_per_block(self) -> int:
        return 2 if self.block == "basic" else 3

    @property
    def stage_dilations(self) -> tuple[int, ...]:
        """Dilation of each stage once ``output_stride`` has replaced strides with dilation."""
        dilations = {32: (1, 1, 1, 1), 16: (1, 1, 1, 2), 8: (1, 1, 2, 4)}[self.output_stride]
        return dilations[-len(self.layers):] if len(self.layers) < 4 else dilations

    @property
    def stem_width(self) -> int:
        """Channels the stem hands to the first stage."""
        return {"deep-wide": 128, "cifar": self.stage_channels[0]}.get(self.stem, 64)

    @property
    def name_depth(self) -> int | None:
        """The number in the variant's name (the 50 of resnet50), if it has one."""
        match = re.search(r"resne[xs]?t?(?:v2_)?(\d+)|_r(\d+)_", self.name)
        if match is None:
            return None
        return int(match.group(1) or match.group(2))

    def to_options(self) -> dict[str, Any]:
        """The keyword options that rebuild this spec from its base name."""
        return dict(self.options)


def _zoo(block: str, layers: tuple[int, ...], groups: int = 1, width: int = 64, **kw: Any) -> dict[str, Any]:
    return dict(block=block, layers=layers, groups=groups, width_per_group=width, **kw)


_R50 = (3, 4, 6, 3)
_TRICKS = "Bag of Tricks (He et al. 2019), timm naming"
_R101 = (3, 4, 23, 3)

# name -> (fields, where it comes from). Figures for `list` are computed, never stored here.
_VARIANTS: dict[str, dict[str, Any]] = {
    "resnet18": _zoo("basic", (2, 2, 2, 2)),
    "resnet34": _zoo("basic", (3, 4, 6, 3)),
    "resnet50": _zoo("bottleneck", _R50),
    "resnet101": _zoo("bottleneck", _R101),
    "resnet152": _zoo("bottleneck", (3, 8, 36, 3)),
    "resnext50_32x4d": _zoo("bottleneck", _R50, 32, 4),
    "resnext101_32x8d": _zoo("bottleneck", _R101, 32, 8),
    "resnext101_64x4d": _zoo("bottleneck", _R101, 64, 4),
    "wide_resnet50_2": _zoo("bottleneck", _R50, 1, 128),
    "wide_resnet101_2": _zoo("bottleneck", _R101, 1, 128),
    "hopenet": _zoo("bottleneck", _R50, head="hopenet", source="Ruiz et al. 2018 (Hopenet)"),
    "resnet50_caffe": _zoo("bottleneck", _R50, stride_in_1x1=True, caffe_maxpool=True,
                           source="MSRA Caffe release"),
    "retinanet_r50_fpn": _zoo(
        "bottleneck", _R50, stride_in_1x1=True, norm="frozen_bn", head="none", layout="maskrcnn",
        fpn=FPNSpec("retinanet", upsample="scale"), default_input=FPN_INPUT, source="maskrcnn-benchmark"),
    "maskrcnn_r50_fpn": _zoo(
        "bottleneck", _R50, stride_in_1x1=True, norm="frozen_bn", head="none", layout="maskrcnn",
        fpn=FPNSpec("maskrcnn", upsample="scale"), default_input=FPN_INPUT, source="maskrcnn-benchmark"),
    "resnet": _zoo("basic", (1, 1, 1, 1), source="custom (--block, --layers)"),
    # He et al. 2015, section 4.2: 6n+2 layers on 32x32 CIFAR-10 images, option A shortcuts.
    **{f"cifar_resnet{6 * n + 2}": _zoo(
        "basic", (n, n, n), stage_channels=(16, 32, 64), stem="cifar", shortcut="A", num_classes=10,
        default_input=CIFAR_INPUT, source="paper (He et al. 2015, §4.2)") for n in (3, 5, 7, 9, 18, 200)},
    # Bag of Tricks (He et al. 2019) tweaks, with timm's parameter names.
    "resnet18d": _zoo("basic", (2, 2, 2, 2), stem="deep", avg_down=True, source=_TRICKS),
    "resnet26d": _zoo("bottleneck", (2, 2, 2, 2), stem="deep", avg_down=True, source=_TRICKS),
    "resnet50c": _zoo("bottleneck", _R50, stem="deep", source=_TRICKS),
    "resnet50d": _zoo("bottleneck", _R50, stem="deep", avg_down=True, source=_TRICKS),
    "resnet50s": _zoo("bottleneck", _R50, stem="deep-wide", source=_TRICKS),
    "resnet101d": _zoo("bottleneck", _R101, stem="deep", avg_down=True, source=_TRICKS),
    "resnetv2_50": _zoo("bottleneck", _R50, preact=True, layout="timm_v2",
                        source="Identity Mappings (He et al. 2016), timm naming"),
    "seresnet50": _zoo("bottleneck", _R50, se=True, source="SENet (Hu et al. 2018), timm naming"),
}

OPTION_NAMES = (
    "block", "layers", "groups", "width_per_group", "stride_in_1x1", "caffe_maxpool", "norm",
    "output_stride", "num_classes", "num_bins", "fpn", "stem", "avg_down", "shortcut", "se",
)
STEMS = ("standard", "deep", "deep-wide", "cifar")
_BOOL_OPTIONS = ("stride_in_1x1", "caffe_maxpool", "avg_down", "se")
_INT_OPTIONS = ("groups", "width_per_group", "output_stride", "num_classes", "num_bins")
_STR_OPTIONS = ("block", "norm", "stem", "shortcut")
# Bounds on what a user may ask for, far above any published net, so that a typo (an extra zero,
# a million classes) is refused up front instead of ending in a giant allocation or a build that
# never finishes.
MAX_BLOCKS = 1000  # blocks per stage
MAX_WIDTH = 1024  # groups × width_per_group: the channels of stage 1's grouped 3x3 (64 for ResNet-50)
MAX_OUTPUTS = 1_000_000  # classes, or hopenet's bins per angle


def variants() -> list[str]:
    """Names that :func:`resnet_inspect.build` accepts."""
    return list(_VARIANTS)


def unknown_name_error(name: str) -> InputError:
    close = difflib.get_close_matches(name, list(_VARIANTS), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return InputError(
        f"Unknown model '{name}'.{hint} Run `resnet-inspect list` for every name, or pass "
        "`package.module:factory` for a model of your own."
    )


def get_spec(name: str, **options: Any) -> ResNetSpec:
    """Resolve a variant name plus builder options into a validated spec."""
    if name not in _VARIANTS:
        raise unknown_name_error(name)
    base = dict(_VARIANTS[name])
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(set(given) - set(OPTION_NAMES))
    if unknown:
        raise InputError(f"Unknown option(s) {', '.join(unknown)}. Known options: {', '.join(OPTION_NAMES)}.")
    _check_types(given)
    fields = {**base, **given}
    if "fpn" in given:
        fields["fpn"] = _fpn_option(given["fpn"], base.get("fpn"))
        if fields["fpn"] is not None and "head" not in base:
            fields["head"] = "none"
        if fields["fpn"] is not None:  # a pyramid added or kept: the detection input
            fields["default_input"] = FPN_INPUT
        elif base.get("fpn") is not None:  # a preset's pyramid taken off (--fpn none): the trunk's own
            fields["default_input"] = IMAGENET_INPUT
    if "layers" in given:
        fields["layers"] = parse_layers(given["layers"], len(fields.get("stage_channels", (64, 128, 256, 512))))
    spec = ResNetSpec(name=name, options=tuple(sorted(given.items(), key=lambda kv: kv[0])), **fields)
    _validate(spec)
    _check_effect(spec, given)
    return spec


def _flag(option: str) -> str:
    return "--" + option.replace("_", "-")


def _check_types(given: dict[str, Any]) -> None:
    """Refuse an option of the wrong type before it is used: ``"no"`` is truthy, ``3.7`` truncates."""
    for option, value in given.items():
        for number in value if isinstance(value, (list, tuple)) else (value,):
            # Python 3.11 cannot even print an integer of over 4,300 digits: refuse it before any message does.
            if isinstance(number, int) and not isinstance(number, bool) and abs(number).bit_length() > 64:
                digits = int(abs(number).bit_length() * 0.30103) + 1
                raise InputError(f"{option} (CLI {_flag(option)}) is given an integer of about {digits:,} digits, "
                                 "far over any limit resnet-inspect has.")
    for option, value in given.items():
        if option in _BOOL_OPTIONS and not isinstance(value, bool):
            raise InputError(f"{option} (CLI {_flag(option)}) is a switch and takes True or False, not {value!r}: "
                             "a string such as 'no' would count as True.")
        if option in _INT_OPTIONS and (isinstance(value, bool) or not isinstance(value, int)):
            raise InputError(f"{option} (CLI {_flag(option)}) takes a whole number, not {value!r}.")
        if option in _STR_OPTIONS and not isinstance(value, str):
            raise InputError(f"{option} (CLI {_flag(option)}) takes a name, not {value!r}.")
    for option, limit, what in (("num_classes", MAX_OUTPUTS, "classes"), ("num_bins", MAX_OUTPUTS, "bins")):
        if given.get(option, 0) > limit:
            raise InputError(f"{_flag(option)} {given[option]:,} is over resnet-inspect's limit of {limit:,} {what}, "
                             "far more than any published ResNet has; check for a typo (the head's weights would "
                             "grow with it).")


def _check_effect(spec: ResNetSpec, given: dict[str, Any]) -> None:
    """Refuse an option the built network would silently ignore, or build wrong."""
    # On a basic block the option is accepted: He et al.'s Table 1 lists the MSRA ResNet-18 and -34
    # with the others, and there the first 3x3 carries the stride under either placement.
    if "stride_in_1x1" in given and spec.preact:
        raise InputError(f"--stride-in-1x1/--stride-in-3x3 changes nothing on {spec.name}: the pre-activation "
                         "bottleneck keeps the stride in its 3x3.")
    if "caffe_maxpool" in given and spec.stem == "cifar":
        raise InputError(f"--caffe-maxpool changes nothing on {spec.name}: the CIFAR stem is a single 3x3 conv "
                         "with no max pool.")
    if "output_stride" in given and spec.stem == "cifar":
        raise InputError(f"--output-stride does not apply to {spec.name}: the CIFAR nets have no max pool and one "
                         "stride-2 stage fewer, so their strides are not the 32, 16 or 8 that --output-stride "
                         "assumes.")
    if "num_bins" in given and spec.head != "hopenet":
        raise InputError(f"--num-bins changes nothing on {spec.name}: only hopenet has bins (its yaw, pitch and roll "
                         "heads); use --num-classes for a classifier.")
    if "num_classes" in given and spec.head != "classifier":
        what = "a feature pyramid" if spec.fpn is not None else (
            "hopenet's three angle heads (use --num-bins)" if spec.head == "hopenet" else "no classifier")
        raise InputError(f"--num-classes changes nothing on {spec.name}: it ends in {what}, not a classifier.")
    if spec.shortcut == "A" and spec.stem_width > spec.stage_channels[0] * spec.expansion:
        raise InputError(f"Option A shortcuts cannot narrow: the {spec.stem} stem gives {spec.stem_width} channels but "
                         f"{spec.name}'s first stage has {spec.stage_channels[0] * spec.expansion}, so the zero-pad "
                         "shortcut would drop channels. Use --shortcut B (a projection) or the cifar stem.")


def _fpn_option(value: Any, preset: FPNSpec | None) -> FPNSpec | None:
    if value == "":
        raise InputError(f"--fpn is empty: give one of {', '.join(FPN_KINDS)}, or none for no pyramid.")
    if value in (None, False, "none"):
        return None
    if isinstance(value, FPNSpec):
        return value
    if value is True:
        value = "retinanet"
    if value not in FPN_KINDS:
        raise InputError(f"--fpn must be one of {', '.join(FPN_KINDS)}, not '{value}'.")
    # The seed presets keep maskrcnn-benchmark's scale_factor=2; an FPN added to a zoo backbone
    # upsamples to the lateral's size as torchvision does, so any input size works.
    return FPNSpec(value, upsample=preset.upsample if preset else "size")


def parse_layers(value: Any, stages: int = 4) -> tuple[int, ...]:
    """Parse a blocks-per-stage list: ``"3,4,6,3"``, ``[3, 4, 6, 3]`` ... (``stages`` entries)."""
    example = ",".join(["3", "4", "6", "3"][:stages]) if stages <= 4 else "3,4,6,3"
    if isinstance(value, str):
        parts = [p.strip() for p in value.replace("x", ",").split(",")]
        if not all(re.fullmatch(r"\d{1,6}", p) for p in parts):
            raise InputError(f"Malformed layer list '{clip(value)}': give {stages} positive integers such as "
                             f"{example}.")
        value = [int(p) for p in parts]
    try:
        items = list(value)
        # operator.index refuses 3.7 where int() would truncate it to 3; True is no block count either.
        if any(isinstance(v, bool) for v in items):
            raise TypeError("a bool is not a block count")
        layers = tuple(operator.index(v) for v in items)
    except (TypeError, ValueError):
        raise InputError(f"Malformed layer list {value!r}: give {stages} positive integers such as {example}.") from None
    if len(layers) != stages or any(n < 1 for n in layers):
        raise InputError(f"Malformed layer list {value!r}: this network has {stages} stages of at least one block each.")
    if max(layers) > MAX_BLOCKS:
        deepest = max(max(fields["layers"]) for fields in _VARIANTS.values())
        raise InputError(f"--layers {','.join(map(str, layers))} asks for {max(layers)} blocks in one stage; "
                         f"resnet-inspect builds at most {MAX_BLOCKS} per stage (the deepest variant it knows has "
                         f"{deepest}), so that a typo cannot hang it.")
    return layers


def _validate(spec: ResNetSpec) -> None:
    if spec.block not in BLOCK_EXPANSION:
        raise InputError(f"Unknown block '{spec.block}': use basic or bottleneck.")
    if spec.norm not in NORMS:
        raise InputError(f"Unknown norm '{spec.norm}': use {' or '.join(NORMS)}.")
    if spec.output_stride not in OUTPUT_STRIDES:
        raise InputError(f"--output-stride must be 32, 16 or 8, not {spec.output_stride}.")
    for label, value in (("--groups", spec.groups), ("--width-per-group", spec.width_per_group),
                         ("--num-classes", spec.num_classes), ("--num-bins", spec.num_bins)):
        if value < 1:
            raise InputError(f"{label} must be a positive integer, not {value}.")
    narrowest = int(min(spec.stage_channels) * spec.width_per_group / 64) * spec.groups
    if spec.block == "bottleneck" and narrowest < 1:
        raise InputError(f"--width-per-group {spec.width_per_group} leaves the narrowest bottleneck "
                         f"({min(spec.stage_channels)} planes) with int({min(spec.stage_channels)}·"
                         f"{spec.width_per_group}/64)·{spec.groups} = 0 channels; use a larger width.")
    if spec.block == "basic" and (spec.groups != 1 or spec.width_per_group != 64):
        raise InputError("A basic block has no grouped 3x3: --groups and --width-per-group need --block bottleneck.")
    if spec.groups * spec.width_per_group > MAX_WIDTH:
        widest = max(f.get("groups", 1) * f.get("width_per_group", 64) for f in _VARIANTS.values())
        last = int(spec.stage_channels[-1] * spec.width_per_group / 64) * spec.groups  # torchvision's width rule
        raise InputError(f"--groups {spec.groups} × --width-per-group {spec.width_per_group} = "
                         f"{spec.groups * spec.width_per_group} channels per 3x3 is over resnet-inspect's limit of "
                         f"{MAX_WIDTH} (the widest variant it knows has {widest}); the last stage's 3x3 alone would "
                         f"hold {last} × {last // spec.groups} × 3 × 3 = {last * (last // spec.groups) * 9:,} "
                         "weights.")
    if spec.stem not in STEMS:
        raise InputError(f"Unknown stem '{spec.stem}': use {', '.join(STEMS)}.")
    if spec.shortcut not in ("A", "B"):
        raise InputError(f"Unknown shortcut '{spec.shortcut}': use A (parameter-free) or B (projection).")
    if spec.preact and (spec.block != "bottleneck" or spec.stem != "standard" or spec.layout != "timm_v2"
                        or spec.se or spec.avg_down or spec.fpn is not None or spec.norm != "bn"):
        raise InputError("The pre-activation net is built as timm's resnetv2_50 only: a bottleneck with the 7x7 "
                         "stem, no SE, avg-down, FPN or frozen norm.")
    if spec.shortcut == "A" and spec.preact:
        raise InputError("Option A shortcuts (subsample and zero-pad) are the CIFAR nets'; the pre-activation "
                         "resnetv2_50 is built as timm builds it, with projection shortcuts (B) only.")
    if spec.shortcut == "A" and spec.avg_down:
        raise InputError("Option A shortcuts have no projection, so --avg-down does not apply to them.")
    if spec.layout == "maskrcnn" and (spec.stem != "standard" or spec.se or spec.avg_down):
        raise InputError("The maskrcnn-benchmark presets keep their own stem and blocks: --stem, --se and "
                         "--avg-down apply to the torchvision and timm variants.")
    if len(spec.layers) != len(spec.stage_channels):
        raise InputError(f"This network has {len(spec.stage_channels)} stages, so --layers needs "
                         f"{len(spec.stage_channels)} numbers, not {len(spec.layers)}.")
    if spec.fpn is not None and len(spec.layers) != 4:
        raise InputError("--fpn needs a four-stage trunk (C2-C5); the CIFAR nets have three stages.")
    if spec.head == "hopenet" and spec.fpn is not None:
        raise InputError("--fpn does not apply to hopenet: its three heads need the pooled trunk, not a pyramid.")
    if spec.fpn is not None and spec.output_stride != 32:
        raise InputError("--fpn needs --output-stride 32: the pyramid's levels assume strides 4 to 32.")


def spec_replace(spec: ResNetSpec, **changes: Any) -> ResNetSpec:
    """A copy of ``spec`` with some fields changed (validated)."""
    new = dataclasses.replace(spec, **changes)
    _validate(new)
    return new
