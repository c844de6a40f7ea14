"""Issue 8: the wider ResNet family (CIFAR nets, Bag of Tricks, pre-activation, SE)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import resnet_inspect as ri

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
NEW = [*TIMM, *(f"cifar_resnet{d}" for d in TABLE6)]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


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


@pytest.mark.parametrize("name", NEW)
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
    for name in NEW:
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


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_downsample_table_shows_the_projection_reads_the_preactivated_input(fmt: str) -> None:
    """What users read, not only the report: each of resnetv2_50's four projections is marked as
    reading norm1's output, and a post-activation net carries no such mark."""
    from typer.testing import CliRunner

    from resnet_inspect.cli import app

    note = "takes the pre-activated input"
    runner = CliRunner(env={"COLUMNS": "400"})  # no wrapping inside the phrase, whatever the terminal
    preact = runner.invoke(app, ["summary", "resnetv2_50", "--format", fmt])
    plain = runner.invoke(app, ["summary", "resnet50", "--format", fmt])
    assert preact.exit_code == plain.exit_code == 0
    downsampling = preact.output.split("Downsampling", 1)[1]
    assert " ".join(downsampling.split()).count(note) == 4
    assert note not in plain.output


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


def test_diff_api_pairs_the_renumbered_resnet_d_shortcut_by_role() -> None:
    """ResNet's shortcut is conv (.0), BN (.1); ResNet-D's is pool (.0), conv (.1), BN (.2). The
    diff pairs conv with conv and BN with BN, so it shows the stem, one added pool per shortcut,
    the conv's stride moving to that pool, and nothing for the BN (a renumbering alone)."""
    from resnet_inspect.render.diff import diff_layers

    diffs = diff_layers(ri.inspect("resnet50"), ri.inspect("resnet50d"))
    by_status: dict[str, list] = {}
    for d in diffs:
        by_status.setdefault(d.status, []).append(d)
    assert [d.name for d in by_status["removed"]] == ["conv1"]
    added = {d.name: d.b.type for d in by_status["added"]}
    assert added == {**{f"conv1.{i}": t for i, t in enumerate(["Conv2d", "BatchNorm2d", "ReLU"] * 2 + ["Conv2d"])},
                     "layer1.0.downsample.0": "Identity",
                     **{f"layer{k}.0.downsample.0": "AvgPool2d" for k in (2, 3, 4)}}
    changed = {d.name: d for d in by_status["changed"]}
    assert set(changed) == {f"layer{k}.0.downsample.0" for k in (2, 3, 4)}
    for k, d in ((k, changed[f"layer{k}.0.downsample.0"]) for k in (2, 3, 4)):
        assert d.a.type == d.b.type == "Conv2d" and d.b.name == f"layer{k}.0.downsample.1"
        assert "stride: 2 → 1" in d.changes
        assert (d.a.params, d.a.macs, d.a.output_shapes) == (d.b.params, d.b.macs, d.b.output_shapes)
    # The BNs (.1 in A, .2 in B) and layer1's stride-1 conv are the same layers, renumbered.
    assert not any(d.name.endswith("downsample.1") for d in diffs)
    assert set(by_status) == {"removed", "added", "changed"}
