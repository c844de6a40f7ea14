"""The models (resnet_inspect.models) and the variants built from them by name.

torchvision's zoo, maskrcnn-benchmark's FPN detectors, Hopenet, and the wider family (He et al.'s
CIFAR nets, Bag of Tricks ResNet-C/D/S, pre-activation, SE): parameter counts, state-dict keys and
printed structures against torchvision, timm and maskrcnn-benchmark, and the figures the engine
reports for each.
"""
from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

import resnet_inspect as ri
from resnet_inspect.models.blocks import Bottleneck
from resnet_inspect.models.norm import FrozenBatchNorm2d
from tests.conftest import TORCHVISION

ZOO = list(TORCHVISION)

# timm's model cards.
TIMM = {
    "resnet18d": 11_708_744,
    "resnet26d": 16_014_408,
    "resnet50c": 25_576_264,
    "resnet50d": 25_576_264,
    "resnet50s": 25_680_808,
    "resnet101d": 44_568_392,
    "resnetv2_50": 25_549_352,
    "seresnet50": 28_088_024,
}
# He et al. 2015, Table 6: params of the CIFAR-10 nets, as the paper rounds them (millions).
TABLE6 = {20: "0.27", 32: "0.46", 44: "0.66", 56: "0.85", 110: "1.7", 1202: "19.4"}
FAMILY = [*TIMM, *(f"cifar_resnet{d}" for d in TABLE6)]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ZOO)
def test_zoo_param_counts_equal_torchvision(name: str, torchvision_table: dict) -> None:
    assert n_params(ri.build(name)) == torchvision_table[name][0]


@pytest.mark.parametrize("name", ZOO)
def test_param_counts_hold_on_the_meta_device(name: str, torchvision_table: dict) -> None:
    with torch.device("meta"):
        model = ri.build(name)
    assert all(p.is_meta for p in model.parameters())
    assert n_params(model) == torchvision_table[name][0]


def test_variants_lists_every_seed_system_and_the_zoo() -> None:
    names = ri.variants()
    assert set(ZOO) <= set(names)
    assert {"hopenet", "retinanet_r50_fpn", "maskrcnn_r50_fpn", "resnet50_caffe"} <= set(names)


def _printed_structure(seed: str) -> list[str]:
    start = seed.index("Sequential(")
    lines = []
    for line in seed[start:].splitlines():
        lines.append(line.strip())
        if len(lines) > 1 and line.strip() == ")" and _balanced(lines):
            break
    return lines


def _balanced(lines: list[str]) -> bool:
    text = "\n".join(lines)
    return text.count("(") == text.count(")")


def test_retinanet_prints_exactly_the_structure_maskrcnn_benchmark_prints(maskrcnn_benchmark_print: str) -> None:
    expected = _printed_structure(maskrcnn_benchmark_print)
    assert expected[0] == "Sequential(" and len(expected) > 150  # the parse found the whole print-out
    printed = [line.strip() for line in str(ri.build("retinanet_r50_fpn")).splitlines()]
    assert printed == expected


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("size", [(224, 224), (97, 131)])
def test_zoo_forward_shapes(name: str, size: tuple[int, int]) -> None:
    model = ri.build(name, num_classes=10).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert out.shape == (1, 10)


def test_hopenet_three_heads_of_num_bins() -> None:
    model = ri.build("hopenet", num_bins=66).eval()
    names = [n for n, _ in model.named_children()]
    assert names == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool",
                     "fc_yaw", "fc_pitch", "fc_roll", "fc_finetune"]
    assert isinstance(model.avgpool, nn.AvgPool2d) and model.avgpool.kernel_size == 7
    assert (model.fc_finetune.in_features, model.fc_finetune.out_features) == (2048 + 3, 3)
    with torch.no_grad():
        yaw, pitch, roll = model(torch.randn(2, 3, 224, 224))
    assert yaw.shape == pitch.shape == roll.shape == (2, 66)


def _stride_of(level_shape: torch.Size, size: tuple[int, int]) -> float:
    return size[0] / level_shape[-2]


def test_retinanet_levels_p3_to_p7_at_detection_resolution() -> None:
    model = ri.build("retinanet_r50_fpn").eval()
    with torch.no_grad():
        levels = model(torch.randn(1, 3, 800, 1344))
    assert len(levels) == 5
    for k, level in zip(range(3, 8), levels):
        # Each level has stride 2**k: 800 / 2**k rounded up, as stride-2 convs with padding 1 do.
        assert level.shape == (1, 256, math.ceil(800 / 2**k), math.ceil(1344 / 2**k))
    assert model.output_names == ("p3", "p4", "p5", "p6", "p7")


def test_maskrcnn_levels_p2_to_p6() -> None:
    model = ri.build("maskrcnn_r50_fpn").eval()
    with torch.no_grad():
        levels = model(torch.randn(1, 3, 256, 320))
    assert [tuple(level.shape[-2:]) for level in levels] == [(256 // 2**k, 320 // 2**k) for k in range(2, 7)]
    assert type(model.fpn.top_blocks).__name__ == "LastLevelMaxPool"


def test_resnet50_output_stride_8_keeps_28x28_and_dilates() -> None:
    model = ri.build("resnet50", output_stride=8, num_classes=5).eval()
    feats: dict[str, torch.Size] = {}

    def keep_shape(module: nn.Module, args: object, out: torch.Tensor) -> None:
        feats["c5"] = out.shape

    model.layer4.register_forward_hook(keep_shape)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 5)
    assert feats["c5"] == (1, 2048, 28, 28)
    assert model.layer3[1].conv2.dilation == (2, 2) and model.layer4[1].conv2.dilation == (4, 4)
    assert model.layer3[0].conv2.stride == (1, 1) and model.layer3[0].downsample[0].stride == (1, 1)


def test_fpn_on_zoo_backbone_follows_block_expansion_and_any_size() -> None:
    basic = ri.build("resnet18", fpn="retinanet").eval()
    assert [basic.fpn.fpn_inner2.in_channels, basic.fpn.fpn_inner3.in_channels, basic.fpn.fpn_inner4.in_channels] \
        == [128, 256, 512]
    bottleneck = ri.build("resnet50", fpn="maskrcnn").eval()
    assert bottleneck.fpn.fpn_inner1.in_channels == 256 and bottleneck.fpn.fpn_inner4.in_channels == 2048
    with torch.no_grad():  # 97x131 is no multiple of 32: the zoo FPN upsamples to the lateral's size
        levels = basic(torch.randn(1, 3, 97, 131))
    assert len(levels) == 5 and levels[0].shape[-2:] == (13, 17)


def test_stride_in_1x1_moves_the_stride_and_caffe_maxpool_rounds_up() -> None:
    msra = ri.build("resnet50", stride_in_1x1=True)
    assert msra.layer2[0].conv1.stride == (2, 2) and msra.layer2[0].conv2.stride == (1, 1)
    tv = ri.build("resnet50")
    assert tv.layer2[0].conv1.stride == (1, 1) and tv.layer2[0].conv2.stride == (2, 2)
    caffe = ri.build("resnet50", caffe_maxpool=True)
    assert (caffe.maxpool.padding, caffe.maxpool.ceil_mode) == (0, True)
    # 225 -> conv1 113 -> floor((113 + 2 - 3)/2) + 1 = 57 with padding 1, ceil((113 - 3)/2) + 1 = 56 without.
    x = torch.randn(1, 64, 113, 113)
    assert tv.maxpool(x).shape[-1] == 57 and caffe.maxpool(x).shape[-1] == 56


def test_frozen_batchnorm_holds_buffers_and_matches_eval_batchnorm() -> None:
    frozen = FrozenBatchNorm2d(8)
    assert list(frozen.parameters()) == [] and len(list(frozen.buffers())) == 4
    bn = nn.BatchNorm2d(8, eps=0.0).eval()
    for name in ("weight", "bias", "running_mean", "running_var"):
        values = torch.rand(8) + 0.5
        getattr(frozen, name).copy_(values)
        getattr(bn, name).data.copy_(values)
    x = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(frozen(x), bn(x))
    model = ri.build("resnet50", norm="frozen_bn")
    # Frozen norms drop the BN affine parameters from the count: 2 per channel of every norm.
    bn_affine = sum(m.weight.numel() * 2 for m in ri.build("resnet50").modules() if isinstance(m, nn.BatchNorm2d))
    assert n_params(model) == TORCHVISION["resnet50"][0] - bn_affine


def _torchvision_keys(layers: tuple[int, ...], convs: int) -> set[str]:
    """State-dict keys that torchvision's resnet.py produces, enumerated from its naming rules."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {"conv1.weight", "fc.weight", "fc.bias", *(f"bn1.{b}" for b in bn)}
    for stage, blocks in enumerate(layers, start=1):
        for block in range(blocks):
            prefix = f"layer{stage}.{block}"
            for i in range(1, convs + 1):
                keys.add(f"{prefix}.conv{i}.weight")
                keys.update(f"{prefix}.bn{i}.{b}" for b in bn)
            if block == 0 and (stage > 1 or convs == 3):
                keys.add(f"{prefix}.downsample.0.weight")
                keys.update(f"{prefix}.downsample.1.{b}" for b in bn)
    return keys


@pytest.mark.parametrize("name,layers,convs", [("resnet18", (2, 2, 2, 2), 2), ("resnet50", (3, 4, 6, 3), 3),
                                               ("resnext101_32x8d", (3, 4, 23, 3), 3)])
def test_state_dict_keys_follow_torchvision_naming(name: str, layers: tuple[int, ...], convs: int) -> None:
    model = ri.build(name)
    assert set(model.state_dict()) == _torchvision_keys(layers, convs)
    # A state_dict with torchvision's names loads back with strict=True.
    model.load_state_dict(ri.build(name).state_dict(), strict=True)


def test_seed_initialisation() -> None:
    torch.manual_seed(0)
    model = ri.build("resnet50")
    conv = model.layer4[0].conv2  # 3x3, 512 -> 512: n = 3*3*512
    std = math.sqrt(2.0 / (3 * 3 * 512))
    assert abs(conv.weight.std().item() - std) / std < 0.02
    assert abs(conv.weight.mean().item()) < 0.05 * std
    assert torch.all(model.bn1.weight == 1) and torch.all(model.bn1.bias == 0)


def test_custom_depth_from_block_and_layers() -> None:
    model = ri.build("resnet", block="basic", layers=(1, 1, 1, 1)).eval()
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [1, 1, 1, 1]
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    deeper = ri.build("resnet50", layers="2,2,2,2")
    assert len(deeper.layer3) == 2


@pytest.mark.parametrize("kwargs,message", [
    ({"norm": "gn"}, "Unknown norm"),
    ({"output_stride": 4}, "output-stride"),
    ({"fpn": "yolo"}, "--fpn"),
    ({"layers": "3,4,x"}, "Malformed layer list"),
    ({"layers": (3, 4, 6)}, "4 stages"),
    ({"groups": 0}, "positive"),
    ({"block": "basic", "groups": 32}, "basic block"),
    ({"colour": "red"}, "Unknown option"),
])
def test_bad_options_are_input_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ri.InputError, match=re.escape(message)):
        ri.get_spec("resnet50", **kwargs)


def test_unknown_name_suggests_close_names() -> None:
    with pytest.raises(ri.InputError, match="Did you mean resnet50"):
        ri.build("resnet05")


def test_fpn_is_refused_on_hopenet() -> None:
    with pytest.raises(ri.InputError, match="hopenet"):
        ri.build("hopenet", fpn="retinanet")


def test_frozen_batchnorm_drops_num_batches_tracked_on_load() -> None:
    """A checkpoint converted from a trainable BatchNorm2d carries ``num_batches_tracked``."""
    bn = nn.BatchNorm2d(4)
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(bn, name).data.copy_(torch.rand(4) + 0.5)
    state = bn.state_dict()
    assert "num_batches_tracked" in state
    frozen = FrozenBatchNorm2d(4)
    result = frozen.load_state_dict(state, strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert "num_batches_tracked" not in frozen.state_dict()
    torch.testing.assert_close(frozen.running_var, bn.running_var)
    # Nested too: the whole frozen trunk loads a BN trunk's state_dict (which has one per norm).
    frozen_trunk = ri.build("resnet18", norm="frozen_bn")
    bn_state = ri.build("resnet18").state_dict()
    assert any(k.endswith("num_batches_tracked") for k in bn_state)
    frozen_trunk.load_state_dict(bn_state, strict=True)


def test_maskrcnn_block_names_say_which_norm_they_hold(maskrcnn_benchmark_print: str) -> None:
    frozen = ri.build("retinanet_r50_fpn")
    # The default keeps maskrcnn-benchmark's class names.
    assert type(frozen.body.layer1[0]).__name__ in maskrcnn_benchmark_print and "BottleneckWithFixedBatchNorm(" in maskrcnn_benchmark_print
    assert type(frozen.body.stem).__name__ == "StemWithFixedBatchNorm" and "StemWithFixedBatchNorm(" in maskrcnn_benchmark_print
    trainable = ri.build("retinanet_r50_fpn", norm="bn")
    printed = str(trainable)
    assert "Fixed" not in printed and "Frozen" not in printed
    blocks = [m for m in trainable.body.modules() if isinstance(m, Bottleneck)]
    assert len(blocks) == 16 and {type(m).__name__ for m in blocks} == {"BottleneckWithBatchNorm"}
    assert all(type(m.bn1) is nn.BatchNorm2d for m in blocks)


@pytest.mark.parametrize("layer,kernel,out_channels,in_channels", [("conv1", 7, 64, 3), ("layer1.0.conv3", 1, 256, 64)])
def test_conv_init_is_kaiming_normal_fan_out(layer: str, kernel: int, out_channels: int, in_channels: int) -> None:
    """He et al. 2015's init in fan-out mode, as torchvision uses: std = sqrt(2 / (k·k·out_channels))."""
    torch.manual_seed(0)
    weight = ri.build("resnet50").get_submodule(layer).weight.detach()
    assert weight.shape == (out_channels, in_channels, kernel, kernel)
    fan_out, fan_in = kernel * kernel * out_channels, kernel * kernel * in_channels
    expected = math.sqrt(2.0 / fan_out)
    # ~10^4 samples: the sample std is within about 1% of the true one; fan-in would be far off.
    assert abs(weight.std().item() - expected) / expected < 0.05
    assert abs(math.sqrt(2.0 / fan_in) - expected) / expected > 0.5
    assert abs(weight.mean().item()) < 0.05 * expected


def test_hopenet_num_bins_sizes_the_heads_and_fc_finetune_is_never_called() -> None:
    model = ri.build("hopenet", num_bins=10).eval()
    for head in (model.fc_yaw, model.fc_pitch, model.fc_roll):
        assert (head.in_features, head.out_features) == (2048, 10)
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 224, 224))
    assert [tuple(o.shape) for o in outputs] == [(1, 10)] * 3
    report = ri.inspect("hopenet", num_bins=10)
    uncalled = {entry["name"]: entry for entry in report.uncalled}
    assert set(uncalled) == {"fc_finetune"}
    assert uncalled["fc_finetune"]["params"] == (2048 + 3) * 3 + 3
    # Its parameters are in the total all the same: three heads of 2048·10 + 10 plus the trunk.
    assert report.totals["params"] == n_params(model)
    assert report.layer("fc_yaw").output_shapes[0] == (1, 10)


def test_maskrcnn_c5_at_97x131_by_the_conv_formula() -> None:
    """The trunk of maskrcnn_r50_fpn (stride in the 1x1, as maskrcnn-benchmark) at an odd size, against
    O = ⌊(I − K + 2P)/S⌋ + 1 worked layer by layer."""
    def out(size: int, k: int, s: int, p: int) -> int:
        return (size - k + 2 * p) // s + 1

    expected = []
    for size in (97, 131):
        size = out(size, 7, 2, 3)  # stem conv1 7x7/2: 97 -> 49, 131 -> 66
        size = out(size, 3, 2, 1)  # max pool 3x3/2: 25, 33
        for _ in range(3):  # layer2..4: the 1x1 conv1 carries stride 2
            size = out(size, 1, 2, 0)
        expected.append(size)
    assert expected == [4, 5]
    body = ri.build("maskrcnn_r50_fpn").body.eval()
    with torch.no_grad():
        c5 = body(torch.randn(1, 3, 97, 131))[-1]
    assert tuple(c5.shape) == (1, 2048, *expected)


# -- the wider family: CIFAR nets, Bag of Tricks (C/D/S), pre-activation, SE -----------------------

@pytest.mark.parametrize("name", list(TIMM))
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_params_equal_timm(name: str, device: str) -> None:
    with torch.device(device):
        model = ri.build(name)
    assert n_params(model) == TIMM[name]
    assert ri.inspect(name).totals["params"] == TIMM[name]


@pytest.mark.parametrize("depth,paper", list(TABLE6.items()))
def test_cifar_params_round_to_table_6(depth: int, paper: str) -> None:
    with torch.device("meta"):
        params = n_params(ri.build(f"cifar_resnet{depth}"))
    decimals = len(paper.split(".")[1])
    assert f"{params / 1e6:.{decimals}f}" == paper


@pytest.mark.parametrize("depth", list(TABLE6))
def test_cifar_depth_is_6n_plus_2(depth: int) -> None:
    report = ri.inspect(f"cifar_resnet{depth}")
    n = (depth - 2) // 6
    assert report.input_size == (1, 3, 32, 32) and report.outputs["output"] == (1, 10)
    assert report.depth.counted == 6 * n + 2 == depth
    assert report.depth.formula == f"1 stem conv + {3 * n} blocks × 2 convs + 1 fc = {depth}"
    with torch.device("meta"):
        assert report.totals["params"] == n_params(ri.build(f"cifar_resnet{depth}"))


@pytest.mark.parametrize("name", FAMILY)
def test_shape_formula_check_passes_at_default_and_odd_sizes(name: str) -> None:
    cifar = name.startswith("cifar")
    for size in ((32, 32), (33, 35)) if cifar else ((224, 224), (97, 131)):
        report = ri.inspect(name, size)
        checked = [r for r in report.layers if r.shape_ok is not None]
        assert checked and all(r.shape_ok for r in checked), (name, size)


def test_resnet_d_average_pool_is_ceil_mode_without_padding_in_the_mean() -> None:
    model = ri.build("resnet50d")
    pool = model.layer2[0].downsample[0]
    assert isinstance(pool, nn.AvgPool2d) and pool.ceil_mode and not pool.count_include_pad
    assert isinstance(model.layer1[0].downsample[0], nn.Identity)  # stage 1 has no stride to pool
    # 25x33 -> ⌈(25 − 2)/2⌉ + 1 = 13 and ⌈(33 − 2)/2⌉ + 1 = 17: ceil_mode keeps the odd edge,
    # where the main path's 3x3/2 conv (padding 1) gives ⌊(25 − 1)/2⌋ + 1 = 13 and 17 too.
    rec = ri.inspect("resnet50d", (97, 131)).layer("layer2.0.downsample.0")
    assert rec.input_shapes[0][-2:] == (25, 33) and rec.analytic_shape[-2:] == (13, 17) and rec.shape_ok


def test_option_a_shortcut_subsamples_and_zero_pads() -> None:
    report = ri.inspect("cifar_resnet20", (33, 35))
    rec = report.layer("layer2.0.downsample")
    assert rec.params == 0 and rec.macs == 0
    # ⌊(33 − 1)/2⌋ + 1 = 17 rows, ⌊(35 − 1)/2⌋ + 1 = 18 columns, 16 + 8 + 8 = 32 channels.
    assert rec.analytic_shape == rec.output_shapes[0] == (1, 32, 17, 18) and rec.shape_ok
    assert rec.working[-1] == "C: 16 + 8 + 8 = 32"
    row = next(step for step in report.downsample if step.stage == "res3").projection[0]
    assert row.stride == 2 and row.kernel is None and "option A" in row.kind
    projected = ri.inspect("cifar_resnet20", shortcut="B")
    assert projected.totals["params"] == report.totals["params"] + (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    # Real data through option A: the padded channels are zero, the rest is x[:, :, ::2, ::2].
    block = ri.build("cifar_resnet20").layer2[0].downsample
    x = torch.randn(1, 16, 9, 9)
    y = block(x)
    torch.testing.assert_close(y[:, 8:24], x[:, :, ::2, ::2])
    assert torch.all(y[:, :8] == 0) and torch.all(y[:, 24:] == 0)


def test_resnet50d_deep_stem_closed_form() -> None:
    report = ri.inspect("resnet50d")
    # Three 3x3 convs: 3->32 with stride 2 (224 -> 112), then 32->32 and 32->64 at 112x112.
    macs = [112 * 112 * 32 * 3 * 9, 112 * 112 * 32 * 32 * 9, 112 * 112 * 64 * 32 * 9]
    assert [report.layer(f"conv1.{i}").macs for i in (0, 3, 6)] == macs
    # Receptive field: 3, then +2·2 and +2·2 at jump 2; the 3x3/2 max pool adds 2·2 and makes jump 4.
    assert report.layer("conv1.6").receptive_field == (3 + 4 + 4,) * 2 and report.layer("conv1.6").jump == (2, 2)
    assert report.layer("maxpool").receptive_field == (15, 15) and report.layer("maxpool").jump == (4, 4)
    assert report.depth.stem == 3 and report.depth.counted == 3 + 16 * 3 + 1


def test_cifar_resnet20_closed_form() -> None:
    report = ri.inspect("cifar_resnet20")
    stem = 32 * 32 * 16 * 3 * 9
    stage1 = 6 * 32 * 32 * 16 * 16 * 9
    stage2 = 16 * 16 * 32 * 16 * 9 + 5 * 16 * 16 * 32 * 32 * 9
    stage3 = 8 * 8 * 64 * 32 * 9 + 5 * 8 * 8 * 64 * 64 * 9
    assert report.totals["macs"] == stem + stage1 + stage2 + stage3 + 64 * 10
    # Receptive field along the main path: 19 3x3 convs, strides 2 at the first conv of stages 2 and 3.
    r, j = 1, 1
    for stage in range(3):
        for conv in range(7 if stage == 0 else 6):
            r += 2 * j
            if stage and conv == 0:
                j *= 2
    # The first conv of a stage still reads the finer grid: 7 convs at jump 1, then 1 + 5 at 2 and 4.
    assert report.layer("layer3").receptive_field == (r, r) and r == 1 + 2 * (7 * 1 + (1 + 5 * 2) + (2 + 5 * 4))


def test_preact_projection_reads_the_preactivated_input() -> None:
    report = ri.inspect("resnetv2_50")
    res3 = next(step for step in report.downsample if step.stage == "res3")
    projection = res3.projection[0]
    assert projection.input_from == "stages.1.blocks.0.norm1.act" and "pre-activated" in (projection.note or "")
    assert [c.name for c in res3.carriers] == ["stages.1.blocks.0.conv2"]
    assert report.depth.counted == 50
    names = set(ri.build("resnetv2_50").state_dict())
    assert {"stem.conv.weight", "stages.0.blocks.0.downsample.conv.weight", "stages.3.blocks.2.norm3.running_var",
            "norm.weight", "head.fc.weight", "head.fc.bias"} <= names


def test_se_convs_are_counted_and_their_pooling_is_shown() -> None:
    plain, se = ri.inspect("resnet50"), ri.inspect("seresnet50")
    extra = 0
    for channels, blocks, size in ((256, 3, 56), (512, 4, 28), (1024, 6, 14), (2048, 3, 7)):
        reduced = channels // 16  # timm rounds to a multiple of 8: these are already
        extra += blocks * 2 * channels * reduced  # fc1 and fc2 act on a 1x1 map
    assert se.totals["macs"] - plain.totals["macs"] == extra
    squeeze = se.layer("layer1.0.se:mean")
    assert squeeze.input_shapes[0] == (1, 256, 56, 56) and squeeze.output_shapes[0] == (1, 256, 1, 1)
    assert se.depth.counted == 50  # the gate is a side branch, not extra depth


def test_diff_resnet50_against_resnet50d_is_only_stem_and_shortcuts() -> None:
    a = {r.name: r for r in ri.inspect("resnet50").layers}
    b = {r.name: r for r in ri.inspect("resnet50d").layers}
    changed = {n for n in a.keys() & b.keys()
               if (a[n].output_shapes, a[n].params, a[n].macs) != (b[n].output_shapes, b[n].params, b[n].macs)}
    differing = (a.keys() ^ b.keys()) | changed
    assert differing and all(n == "conv1" or n.startswith("conv1.") or ".downsample" in n for n in differing)


def test_sources_name_the_paper_or_bag_of_tricks() -> None:
    for name in FAMILY:
        source = ri.get_spec(name).source
        assert ("paper" in source) if name.startswith("cifar") else ("timm naming" in source)
    assert "Bag of Tricks" in ri.get_spec("resnet50d").source


def test_flags_apply_to_any_net() -> None:
    assert n_params(ri.build("resnet50", stem="deep", avg_down=True)) == TIMM["resnet50d"]
    assert n_params(ri.build("resnet50", se=True)) == TIMM["seresnet50"]
    with pytest.raises(ri.InputError, match="Unknown stem"):
        ri.get_spec("resnet50", stem="huge")
    with pytest.raises(ri.InputError, match="3 stages"):
        ri.get_spec("cifar_resnet20", layers="3,3,3,3")


@pytest.mark.parametrize("name", ["seresnet50", "resnetv2_50"])
def test_a_1x1_conv_after_global_pooling_is_not_a_degenerate_input(name: str) -> None:
    """The SE gate's fc1/fc2 and timm's conv classifier run on a pooled 1×1 map by design; only a
    wider window or a stride on a 1×1 map means the input was too small (resnet18 at 1×1)."""
    assert ri.inspect(name).warnings == []
    assert "degenerate" in ri.inspect("resnet18", (1, 3, 1, 1)).warnings[0]


# External facts from timm (timm.create_model(name).state_dict(), recorded with timm in a separate
# environment; timm is not a test dependency). Each entry: a parameter name and its shape.
TIMM_KEYS = {
    "resnet50d": {
        "conv1.0.weight": (32, 3, 3, 3), "conv1.1.weight": (32,), "conv1.3.weight": (32, 32, 3, 3),
        "conv1.4.weight": (32,), "conv1.6.weight": (64, 32, 3, 3), "bn1.weight": (64,),
        "layer2.0.downsample.1.weight": (512, 256, 1, 1), "layer2.0.downsample.2.weight": (512,),
    },
    "seresnet50": {
        "layer1.0.se.fc1.weight": (16, 256, 1, 1), "layer1.0.se.fc1.bias": (16,),
        "layer1.0.se.fc2.weight": (256, 16, 1, 1), "layer1.0.se.fc2.bias": (256,),
    },
    "resnetv2_50": {
        "stem.conv.weight": (64, 3, 7, 7), "stages.0.blocks.0.downsample.conv.weight": (256, 64, 1, 1),
        "norm.weight": (2048,), "head.fc.weight": (1000, 2048, 1, 1),
    },
}
# len(timm.create_model(name).state_dict()), from timm.
TIMM_STATE_DICT_LENGTHS = {"resnet18d": 134, "resnet26d": 188, "resnet50c": 332, "resnet50d": 332, "resnet50s": 332,
                           "resnet101d": 638, "resnetv2_50": 300, "seresnet50": 384}
# sha256 of timm's full key set with shapes, computed from timm.create_model(name).state_dict() as
#   "\n".join(f"{key}:{'x'.join(map(str, shape))}" for key, shape in sorted((k, tuple(v.shape)) for k, v in sd.items()))
# (a 0-d tensor such as num_batches_tracked gives an empty shape string), encoded as UTF-8.
TIMM_STATE_DICT_SHA256 = {
    "resnet18d": "3cd9f69039278851d2cd3bc4429441d5c60589e6fd5b2e7555625350a0c3b64e",
    "resnet26d": "14caeb0c3f1d698d3860bb22bf698381cec40273c156ffc223198b5e8a4202e5",
    "resnet50c": "d055fe73757e01885ead71318740f9c08cd0340d6b0371f7012a7ff4630beec8",
    "resnet50d": "8d8ff28f43091dd9b1d4cf8143c162de66fee85214970583f04786dcadadae74",
    "resnet50s": "e3101046528e8f7260f4ef6aa0af3cbe2974c2f0322ab30467331ceb9f8c7726",
    "resnet101d": "73c9f8f776c0407add3d1ec40ee302dd1c3437dea7b158d3b723e0fbfd3c7793",
    "resnetv2_50": "c3e4f0e0a79474e2da4353917369a3877aaa2e70c9f3802ca69ae1610ccf58fb",
    "seresnet50": "852e239ff3bef667e566522f72727eb64ada6278a1cd71df8c5aca51aa16f828",
}


def _meta_state_dict(name: str) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return ri.build(name).state_dict()


@pytest.mark.parametrize("name", list(TIMM_KEYS))
def test_timm_parameter_names_and_shapes(name: str) -> None:
    shapes = {k: tuple(v.shape) for k, v in _meta_state_dict(name).items()}
    for key, shape in TIMM_KEYS[name].items():
        assert shapes.get(key) == shape, (name, key)


def test_resnet50d_shortcut_numbering_follows_timm() -> None:
    """timm's ResNet-D shortcut is pool (.0, no state), 1x1 conv (.1), BN (.2)."""
    model = ri.build("resnet50d")
    pool, conv, norm = model.layer2[0].downsample
    assert isinstance(pool, nn.AvgPool2d) and isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)
    assert not any(k.startswith("layer2.0.downsample.0.") for k in model.state_dict())


@pytest.mark.parametrize("name", list(TIMM_STATE_DICT_LENGTHS))
def test_state_dict_length_and_key_set_equal_timm(name: str) -> None:
    import hashlib

    sd = _meta_state_dict(name)
    assert len(sd) == TIMM_STATE_DICT_LENGTHS[name]
    text = "\n".join(f"{key}:{'x'.join(map(str, shape))}" for key, shape in sorted((k, tuple(v.shape))
                                                                                   for k, v in sd.items()))
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == TIMM_STATE_DICT_SHA256[name]


def test_avg_pool_same_averages_zero_padded_2x2_windows() -> None:
    from resnet_inspect.models.blocks import AvgPool2dSame

    x = torch.randn(2, 3, 3, 4)
    # By hand: "same" padding for a 2x2 window at stride 1 adds one zero row below and one zero
    # column to the right; every output is the mean of four values, padded zeros included.
    padded = torch.zeros(2, 3, 4, 5)
    padded[..., :3, :4] = x
    expected = torch.empty_like(x)
    for i in range(3):
        for j in range(4):
            expected[..., i, j] = (padded[..., i, j] + padded[..., i + 1, j] + padded[..., i, j + 1]
                                   + padded[..., i + 1, j + 1]) / 4
    torch.testing.assert_close(AvgPool2dSame(2, 1)(x), expected)


@pytest.mark.parametrize("output_stride,dilated", [(16, (4,)), (8, (3, 4))])
def test_resnet_d_dilated_shortcut_uses_a_same_padded_average(output_stride: int, dilated: tuple[int, ...]) -> None:
    """timm's downsample_avg: AvgPool2d(2, 2) where the stage strides, AvgPool2dSame(2, 1) where
    dilation has replaced the stride, Identity only where there is neither."""
    from resnet_inspect.models.blocks import AvgPool2dSame

    model = ri.build("resnet50d", output_stride=output_stride).eval()
    for stage in (1, 2, 3, 4):
        pool = getattr(model, f"layer{stage}")[0].downsample[0]
        if stage == 1:
            assert isinstance(pool, nn.Identity)
        elif stage in dilated:
            assert isinstance(pool, AvgPool2dSame) and pool.stride == 1 and pool.kernel_size == 2
            assert pool.ceil_mode and not pool.count_include_pad
        else:
            assert type(pool) is nn.AvgPool2d and pool.stride == 2
    assert n_params(model) == TIMM["resnet50d"]  # a pool has no parameters
    # The shortcut keeps the size (output == input at stride 1), so it adds onto the main path.
    report = ri.inspect("resnet50d", (97, 131), real=True, output_stride=output_stride)
    for stage in dilated:
        rec = report.layer(f"layer{stage}.0.downsample.0")
        assert rec.output_shapes[0] == rec.input_shapes[0] == rec.analytic_shape and rec.shape_ok
    # 97x131 at output stride 16 ends at ⌈97/16⌉ × ⌈131/16⌉ = 7 × 9; at 8, 13 × 17.
    c5 = report.layer("layer4").output_shapes[0]
    assert c5 == (1, 2048, -(-97 // output_stride), -(-131 // output_stride))


def test_meta_init_skipped_leaves_cpu_initialisation_and_torch_nn_init_as_they_were() -> None:
    from torch.nn import init

    from resnet_inspect.models.meta import RANDOM_INITS, meta_init_skipped

    before = {name: getattr(init, name) for name in RANDOM_INITS}
    torch.manual_seed(0)
    plain = torch.nn.Conv2d(3, 4, 3).weight.detach().clone()
    torch.manual_seed(0)
    with meta_init_skipped():
        with torch.device("meta"):
            on_meta = torch.nn.Conv2d(3, 4, 3)
        on_cpu = torch.nn.Conv2d(3, 4, 3).weight.detach().clone()  # the same random stream as without it
    assert on_meta.weight.is_meta
    assert torch.equal(on_cpu, plain)
    assert {name: getattr(init, name) for name in RANDOM_INITS} == before


def test_overlapping_meta_builds_put_torch_nn_init_back() -> None:
    """Two builds whose contexts overlap without nesting (as two threads' do): the second enters while
    the first is inside, the first leaves before the second. The originals come back all the same."""
    from torch.nn import init

    from resnet_inspect.models.meta import RANDOM_INITS, meta_init_skipped

    before = {name: getattr(init, name) for name in RANDOM_INITS}
    first, second = meta_init_skipped(), meta_init_skipped()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert init.kaiming_uniform_ is not before["kaiming_uniform_"]  # the second build still skips meta init
    second.__exit__(None, None, None)
    assert {name: getattr(init, name) for name in RANDOM_INITS} == before


# -- a stage's repeated blocks on meta are copies of its first (models.replicate) ---------------------

def _meta_build(name: str) -> nn.Module:
    from resnet_inspect.models.meta import meta_init_skipped
    from resnet_inspect.models.resnet import build_model

    with torch.device("meta"), meta_init_skipped():
        return build_model(ri.get_spec(name))


def _anatomy(model: nn.Module) -> list[tuple]:
    """Everything a module tree is made of, tensors by their metadata: names, classes, every plain
    attribute, containers, parameters and buffers (shape, strides, dtype, class, requires_grad)."""
    rows: list[tuple] = []
    for name, module in model.named_modules(remove_duplicate=False):
        for key, value in sorted(module.__dict__.items()):
            if key in ("_parameters", "_buffers"):
                value = [(k, None if t is None else (type(t), tuple(t.shape), t.stride(), t.dtype, t.device.type,
                                                     t.requires_grad)) for k, t in value.items()]
            elif key == "_modules":
                value = [(k, type(m)) for k, m in value.items()]
            elif isinstance(value, (dict, set, list)):
                value = (type(value), sorted(map(repr, value.items() if isinstance(value, dict) else value)))
            rows.append((name, type(module).__name__, key, repr(value)))
    return rows


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnext50_32x4d", "resnet50d", "seresnet50",
                                  "resnetv2_50", "cifar_resnet20", "retinanet_r50_fpn", "maskrcnn_r50_fpn",
                                  "hopenet", "resnet50_caffe"])
def test_meta_copies_of_repeated_blocks_equal_constructed_ones(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from resnet_inspect.models import resnet

    copied = _meta_build(name)
    monkeypatch.setattr(resnet, "is_meta_module", lambda module: False)  # every block constructed
    constructed = _meta_build(name)
    assert _anatomy(copied) == _anatomy(constructed)
    # Nothing is shared between blocks: one tensor per parameter and buffer, one module per name
    # (a block's one ReLU, used three times, stays one module inside its block).
    tensors = [*copied.parameters(), *copied.buffers()]
    assert len({id(t) for t in tensors}) == len(tensors) == len([*constructed.parameters(), *constructed.buffers()])
    assert len(list(copied.modules())) == len(list(constructed.modules()))


def test_repeated_blocks_are_copied_not_constructed(monkeypatch: pytest.MonkeyPatch) -> None:
    # 3+4+6+3 bottlenecks in 4 stages: one construction for each stage's first block (with its
    # shortcut) and one for its second (the template of the rest); the others are copies.
    built: list[int] = []
    original = Bottleneck.__init__

    def counting(self: Bottleneck, *args: object, **kwargs: object) -> None:
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(Bottleneck, "__init__", counting)
    model = _meta_build("resnet50")
    assert len(built) == 8
    assert sum(isinstance(m, Bottleneck) for m in model.modules()) == 16


def test_meta_copies_are_independent_of_their_template() -> None:
    from resnet_inspect.models.replicate import meta_copy

    model = _meta_build("resnet50")
    first, second = model.layer1[1], model.layer1[2]
    calls: list[str] = []
    handle = second.register_forward_hook(lambda *a: calls.append("second"))
    assert not first._forward_hooks and first._modules is not second._modules
    assert first.conv1.weight is not second.conv1.weight and first.relu is not second.relu
    second.conv1.weight.requires_grad_(False)
    assert first.conv1.weight.requires_grad
    with pytest.raises(ValueError, match="hooks"):
        meta_copy(second)
    handle.remove()
    with pytest.raises(ValueError, match="meta tensors only"):
        meta_copy(nn.Conv2d(2, 2, 1))


def test_a_cpu_build_constructs_every_block(monkeypatch: pytest.MonkeyPatch) -> None:
    # On the CPU each block draws its own random initialisation, as it always did.
    from resnet_inspect.models import resnet

    monkeypatch.setattr(resnet, "MetaTemplate", lambda module: pytest.fail("a CPU block was copied"))
    model = resnet.build_model(ri.get_spec("resnet18"))
    assert not torch.equal(model.layer1[0].conv1.weight, model.layer1[1].conv1.weight)


def test_a_block_the_copy_refuses_is_constructed(monkeypatch: pytest.MonkeyPatch) -> None:
    # A block holding something meta_copy cannot vouch for (a hook, a tensor outside the registries)
    # is built the old way: the same model, one refused copy per stage at most.
    from resnet_inspect.models import resnet

    refusals: list[int] = []

    def refuse(module: nn.Module) -> nn.Module:
        refusals.extend([1] if isinstance(module, Bottleneck) else [])  # norms are refused too, and constructed
        raise ValueError("meta_copy does not copy hooks")

    expected = _anatomy(_meta_build("resnet50"))
    monkeypatch.setattr(resnet, "MetaTemplate", refuse)
    assert _anatomy(_meta_build("resnet50")) == expected
    assert len(refusals) == 4


def _meta_bottleneck() -> Bottleneck:
    from resnet_inspect.models.meta import meta_init_skipped

    with torch.device("meta"), meta_init_skipped():
        return Bottleneck(256, 64)


def test_a_meta_template_copies_the_block_as_it_was_read() -> None:
    # The stage reads its template once and copies from what it read: every copy equals the block
    # constructed from the same arguments, shares nothing with another copy, and a change made to
    # the block after the read reaches no copy.
    from resnet_inspect.models.replicate import MetaTemplate

    block = _meta_bottleneck()
    template = MetaTemplate(block)
    block.conv1.weight.requires_grad_(False)
    block.bn1.eps = 0.5
    block.bn1._non_persistent_buffers_set.add("running_mean")
    first, second = template.copy(), template.copy()
    assert _anatomy(first) == _anatomy(second) == _anatomy(_meta_bottleneck())
    assert not {id(t) for t in first.parameters()} & {id(t) for t in second.parameters()}
    assert first.bn1._non_persistent_buffers_set is not second.bn1._non_persistent_buffers_set
    assert first.conv1.weight.requires_grad and first.bn1.eps == 1e-5


def test_a_meta_template_keeps_a_shared_submodule_shared() -> None:
    # The ReLU a torchvision block calls thrice is one module; held under two names, it stays one.
    from resnet_inspect.models.replicate import MetaTemplate

    block = _meta_bottleneck()
    block.add_module("act", block.relu)
    copy = MetaTemplate(block).copy()
    assert copy.act is copy.relu and copy.relu is not block.relu
    assert [name for name, _ in copy.named_modules()] == [name for name, _ in block.named_modules()]


@pytest.mark.parametrize("spoil", ["tied", "tensor attribute", "buffer requiring grad", "mutable setting",
                                   "tensor in a tuple"])
def test_a_meta_template_refuses_what_a_copy_would_change(spoil: str) -> None:
    # Each of these would come out different in a copy (two tensors for one tied weight, a lost
    # attribute, a buffer no longer requiring grad) or shared between copies (a mutable setting, a
    # tensor inside a tuple): the template refuses, and the stage constructs.
    from collections import defaultdict

    from resnet_inspect.models.replicate import MetaTemplate

    block = _meta_bottleneck()
    if spoil == "tied":
        block.conv3.weight = block.conv1.weight
    elif spoil == "tensor attribute":
        block.bn1.weight.note = "from a checkpoint"
    elif spoil == "buffer requiring grad":
        block.bn1.running_mean.requires_grad_(True)
    elif spoil == "mutable setting":
        block.bn1.seen = defaultdict(int)
    else:
        block.conv2.extra = (1, torch.empty(2, device="meta"))
    with pytest.raises(ValueError, match="meta_copy"):
        MetaTemplate(block)


def test_norms_of_a_width_already_made_are_copies_on_meta(monkeypatch: pytest.MonkeyPatch) -> None:
    # ResNet-50's 53 batch norms have 6 widths: 6 constructions on meta, 47 copies (equal to
    # constructed ones: test_meta_copies_of_repeated_blocks_equal_constructed_ones). On the CPU
    # every norm is constructed.
    from resnet_inspect.models import resnet

    widths: list[int] = []
    original = nn.BatchNorm2d.__init__

    def counting(self: nn.BatchNorm2d, num_features: int, *args: object, **kwargs: object) -> None:
        widths.append(num_features)
        original(self, num_features, *args, **kwargs)

    monkeypatch.setattr(nn.BatchNorm2d, "__init__", counting)
    model = _meta_build("resnet50")
    assert sorted(widths) == [64, 128, 256, 512, 1024, 2048]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 53
    widths.clear()
    resnet.build_model(ri.get_spec("resnet18"))
    assert len(widths) == 20
