"""Issue 2: every ResNet in the seeds, built by name, with the seeds' structure and figures."""
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
