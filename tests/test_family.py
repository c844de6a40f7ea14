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
    assert report.depth["counted"] == 6 * n + 2 == depth
    assert report.depth["formula"] == f"1 stem conv + {3 * n} blocks × 2 convs + 1 fc = {depth}"
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
    row = next(r for r in report.downsample if r["stage"] == "res3")["projection"][0]
    assert row["stride"] == 2 and "option A" in row["kind"]
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
    assert report.depth["stem"] == 3 and report.depth["counted"] == 3 + 16 * 3 + 1


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
    res3 = next(r for r in report.downsample if r["stage"] == "res3")
    projection = res3["projection"][0]
    assert projection["input_from"] == "stages.1.blocks.0.norm1.act" and "pre-activated" in projection["note"]
    assert [c["name"] for c in res3["carriers"]] == ["stages.1.blocks.0.conv2"]
    assert report.depth["counted"] == 50
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
    assert se.depth["counted"] == 50  # the gate is a side branch, not extra depth


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
