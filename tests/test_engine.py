"""The inspection engine (resnet_inspect.analysis) against published tables, closed forms and real forwards."""
from __future__ import annotations

import json
import re
import resource
from dataclasses import asdict
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import resnet_inspect as ri
from resnet_inspect.analysis.records import OutputInfo
from resnet_inspect.analysis.trace import ForwardFailed, InputTooSmall
from tests.conftest import PAPER_TABLE1, PUBLISHED, TORCHVISION, state_checksum


@pytest.mark.parametrize("name", list(TORCHVISION))
def test_totals_match_torchvision(name: str, torchvision_table: dict) -> None:
    report = ri.inspect(name)
    params, gmacs = torchvision_table[name]
    assert report.totals["params"] == params
    assert round(report.totals["macs"] / 1e9, 2) == gmacs
    assert report.totals["flops"] == 2 * report.totals["macs"]


@pytest.mark.parametrize("name", list(PAPER_TABLE1))
def test_msra_stride_in_1x1_within_3_percent_of_paper_table_1(name: str, paper_table1: dict) -> None:
    macs = ri.inspect(name, stride_in_1x1=True).totals["macs"] / 1e9
    assert abs(macs - paper_table1[name]) / paper_table1[name] < 0.03


@pytest.mark.parametrize("name,size", [("resnet50", 224), ("retinanet_r50_fpn", (256, 320))])
def test_meta_and_real_traces_give_identical_records(name: str, size: object) -> None:
    meta = ri.inspect(name, size)
    real = ri.inspect(name, size, real=True)
    assert meta.device == "meta" and real.device == "cpu"
    assert [asdict(r) for r in meta.layers] == [asdict(r) for r in real.layers]
    assert meta.totals == real.totals and meta.outputs == real.outputs


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "retinanet_r50_fpn", "hopenet"])
def test_every_column_sums_to_its_total(name: str) -> None:
    report = ri.inspect(name, (1, 3, 256, 256))
    layers, totals = report.layers, report.totals
    for column in ("macs", "other_ops"):
        assert sum(getattr(r, column) for r in layers) == totals[column]
    for column in ("params", "trainable_params", "buffers"):
        assert sum(getattr(r, column) for r in layers) + sum(u[column] for u in report.uncalled) == totals[column]
    assert sum(r.output_bytes for r in layers) == totals["activation_bytes"]


def test_shapes_match_the_formula_everywhere() -> None:
    for name in ("resnet50", "resnet50_caffe", "retinanet_r50_fpn", "hopenet"):
        report = ri.inspect(name, 224 if "fpn" not in name else (512, 512))
        checked = [r for r in report.layers if r.shape_ok is not None]
        assert checked and all(r.shape_ok for r in checked), name
        assert {r.type for r in checked} >= {"Conv2d"}
    conv1 = ri.inspect("resnet50").layer("conv1")
    assert conv1.working[0] == "H: ⌊(224 − 7 + 2·3)/2⌋ + 1 = 112"


def test_a_shape_mismatch_is_reported_not_hidden() -> None:
    class Cropping(nn.Module):
        """A conv whose forward crops its output, so the formula and the trace disagree."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x)

    model = Cropping()
    model.conv.register_forward_hook(lambda m, i, o: o[..., 1:, :])
    report = ri.inspect(model, (1, 3, 8, 8))
    rec = report.layer("conv")
    assert rec.analytic_shape == (1, 4, 8, 8) and rec.output_shapes[0] == (1, 4, 7, 8)
    assert rec.shape_ok is False


def test_per_layer_macs_equal_fvcore() -> None:
    from fvcore.nn import FlopCountAnalysis

    for name, size in (("resnet18", (1, 3, 224, 224)), ("retinanet_r50_fpn", (1, 3, 128, 128))):
        model = ri.build(name).eval()
        fca = FlopCountAnalysis(model, torch.zeros(size))
        fca.unsupported_ops_warnings(False)
        fca.uncalled_modules_warnings(False)
        by_module = fca.by_module()
        report = ri.inspect(name, size)
        weighted = [r for r in report.layers if r.weighted and r.kind == "module"]
        assert len(weighted) > 20
        for rec in weighted:  # fvcore counts one flop per fused multiply-add: our MACs
            assert rec.macs == by_module[rec.name], rec.name


def test_fvcore_total_is_macs_plus_norm_and_adaptive_pool() -> None:
    """The gap between fvcore and the headline is explained by the other-ops column."""
    report = ri.inspect("resnet18", counter="fvcore")
    analytic = ri.inspect("resnet18")
    extra = sum(r.other_ops for r in analytic.layers if r.type in ("BatchNorm2d", "AdaptiveAvgPool2d"))
    assert report.totals["macs"] == analytic.totals["macs"] + extra
    assert report.counter == "fvcore" and "fvcore" in report.convention


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_mac_total_equals_torchs_flop_counter_on_a_real_forward(name: str) -> None:
    model = ri.build(name).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as flops:
        model(torch.zeros(1, 3, 64, 64))
    assert ri.inspect(name, 64).totals["macs"] == flops.get_total_flops() // 2


def test_other_ops_and_activation_memory_of_resnet18_closed_form() -> None:
    report = ri.inspect("resnet18")
    stem, pooled = 64 * 112 * 112, 64 * 56 * 56  # elements after conv1 and after the max pool
    later = [128 * 28 * 28, 256 * 14 * 14, 512 * 7 * 7]  # elements per map in layer2..4
    # Per BasicBlock: two BNs (scale and shift, 2 per element), two ReLUs and the residual add
    # (1 each) = 7 per element; the first block of layer2..4 adds its projection's BN (2).
    other_ops = (2 * stem + stem + 9 * pooled  # bn1, relu, 3×3 max pool (9 compares per output)
                 + 2 * 7 * pooled + sum(2 * 7 * e + 2 * e for e in later)
                 + 512 * 7 * 7 + 1000)  # the global average pool reads every element; fc's bias adds
    assert report.totals["other_ops"] == other_ops
    # Activation memory: float32 outputs of every layer that makes a new tensor (the in-place
    # ReLUs and residual adds reuse theirs): conv1, bn1, maxpool; four per block (two convs, two
    # BNs) plus two per projection; the pooled 512 features and the 1000 logits.
    elements = 2 * stem + pooled + 2 * 4 * pooled + sum(2 * 4 * e + 2 * e for e in later) + 512 + 1000
    assert report.totals["activation_bytes"] == 4 * elements


def test_peer_totals_in_published_md_are_rebuilt_from_the_columns() -> None:
    """docs/conventions.md explains each peer's resnet50 total from resnet-inspect's columns; the
    rebuilt totals must round to the figures measured with the peers themselves."""
    if not PUBLISHED.exists():
        pytest.skip(f"{PUBLISHED} not found: the shared/ folder is not beside this checkout")
    published = {}
    for line in PUBLISHED.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"\d\.\d{3} G( MACs)?", cells[2]):
            published[cells[0].split()[0]] = float(cells[2].split()[0])
    report = ri.inspect("resnet50")
    macs = report.totals["macs"]
    by_type = {t: sum(r.other_ops for r in report.layers if r.type == t) for t in ("BatchNorm2d", "AdaptiveAvgPool2d")}
    rebuilt = {
        "torch.utils.flop_counter": macs,
        "fvcore": macs + by_type["BatchNorm2d"] + by_type["AdaptiveAvgPool2d"],
        # thop: BN at 2 per element, doubled for the affine; the adaptive pool's 7×7 adds plus a
        # divide per output; ReLU and max pool are zero-op modules.
        "thop": macs + 2 * by_type["BatchNorm2d"] + (7 * 7 + 1) * 2048,
    }
    for counter, total in rebuilt.items():
        assert round(total / 1e9, 3) == published[counter], counter


def test_torch_counter_agrees_with_analytic_macs() -> None:
    torch_report = ri.inspect("resnet18", counter="torch")
    assert torch_report.totals["macs"] == ri.inspect("resnet18").totals["macs"]
    assert sum(r.macs for r in torch_report.layers) == torch_report.totals["macs"]


def _hand_rf(convs: list[tuple[int, int]]) -> tuple[int, int]:
    """Receptive field and jump after a chain of (kernel, stride) windows: r += (k-1)*j; j *= s."""
    r, j = 1, 1
    for k, s in convs:
        r, j = r + (k - 1) * j, j * s
    return r, j


def test_receptive_field_of_resnet18_closed_form() -> None:
    # The longest path: 7x7/2 conv, 3x3/2 max pool, then two 3x3 convs per basic block; the first
    # conv of stages 2-4 has stride 2. The 1x1 projections are shorter and lose the max.
    chain = [(7, 2), (3, 2)]
    for stage, blocks in enumerate((2, 2, 2, 2)):
        for block in range(blocks):
            chain += [(3, 2 if stage and not block else 1), (3, 1)]
    rf, jump = _hand_rf(chain)
    assert (rf, jump) == (435, 32)
    report = ri.inspect("resnet18")
    c5 = report.layer("layer4")
    assert c5.receptive_field == (rf, rf) and c5.jump == (jump, jump)


@pytest.mark.parametrize("stride_in_1x1,expected", [(False, 427), (True, 483)])
def test_receptive_field_of_resnet50_closed_form(stride_in_1x1: bool, expected: int) -> None:
    chain = [(7, 2), (3, 2)]
    for stage, blocks in enumerate((3, 4, 6, 3)):
        for block in range(blocks):
            s = 2 if stage and not block else 1
            # 1x1 reduce, 3x3, 1x1 expand; the stride sits in the first 1x1 (MSRA) or in the 3x3.
            chain += [(1, s), (3, 1), (1, 1)] if stride_in_1x1 else [(1, 1), (3, s), (1, 1)]
    rf, jump = _hand_rf(chain)
    assert rf == expected  # the MSRA placement sees further: its 3x3s all run at the coarser stride
    report = ri.inspect("resnet50", stride_in_1x1=stride_in_1x1)
    assert report.layer("layer4").receptive_field == (rf, rf) and report.layer("layer4").jump == (jump, jump)


@pytest.mark.parametrize("name,layers,convs", [("resnet18", (2, 2, 2, 2), 2), ("resnet50", (3, 4, 6, 3), 3),
                                               ("resnet152", (3, 8, 36, 3), 3)])
def test_depth_breakdown_closed_form(name: str, layers: tuple[int, ...], convs: int) -> None:
    depth = ri.inspect(name).depth
    blocks = sum(layers)
    assert depth.counted == 1 + blocks * convs + 1 == depth.name_depth
    assert depth.formula == f"1 stem conv + {blocks} blocks × {convs} convs + 1 fc = {depth.counted}"
    # Projection shortcuts are listed but not counted: one per stage for bottlenecks, stages 2-4 for basic.
    assert len(depth.projections_not_counted) == (4 if convs == 3 else 3)
    assert depth.notes == ()


def test_depth_notes_for_hopenet_and_custom_layers() -> None:
    hopenet = ri.inspect("hopenet").depth
    assert hopenet.counted == 50 and any("3 parallel heads" in n for n in hopenet.notes)
    custom = ri.inspect("resnet50", layers="1,1,1,1").depth
    assert custom.counted == 1 + 4 * 3 + 1
    assert any("50" in n and str(custom.counted) in n for n in custom.notes)


def test_downsample_table_follows_the_stride_option() -> None:
    for stride_in_1x1, conv in ((False, "conv2"), (True, "conv1")):
        table = {step.stage: step for step in ri.inspect("resnet50", stride_in_1x1=stride_in_1x1).downsample}
        assert [c.name for c in table["stem"].carriers] == ["conv1", "maxpool"]
        assert table["res2"].carriers == () and table["res2"].size_before == table["res2"].size_after == (56, 56)
        assert "channels change 64 → 256" in table["res2"].projection[0].reason
        for stage, layer, before in (("res3", 2, 56), ("res4", 3, 28), ("res5", 4, 14)):
            assert [c.name for c in table[stage].carriers] == [f"layer{layer}.0.{conv}"]
            assert table[stage].size_before == (before, before) and table[stage].size_after == (before // 2,) * 2
            assert table[stage].projection[0].name == f"layer{layer}.0.downsample.0"
            assert "stride 2" in table[stage].projection[0].reason


def test_output_stride_8_reports_dilation_in_place_of_stride() -> None:
    table = {step.stage: step for step in ri.inspect("resnet50", output_stride=8).downsample}
    for stage, dilation in (("res4", 2), ("res5", 4)):
        assert table[stage].carriers == () and table[stage].dilation_replaces_stride
        assert max(d.dilation for d in table[stage].dilation) == dilation
        assert table[stage].size_after == (28, 28)


def test_shared_module_gets_a_record_per_call_and_tied_params_count_once() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encode = nn.Linear(6, 6)
            self.decode = nn.Linear(6, 6)
            self.decode.weight = self.encode.weight  # tied
            self.act = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.decode(self.act(self.encode(x))))

    report = ri.inspect(Tied(), (2, 6))
    assert [r.name for r in report.layers if r.name == "act"] == ["act", "act"]
    assert [r.call for r in report.layers if r.name == "act"] == [0, 1]
    # 36 shared weights + two biases of 6: counted once in the totals, unlike a per-module sum.
    assert report.totals["params"] == 36 + 6 + 6
    assert report.layer("decode").params == 6
    assert report.layer("decode").shared == ["weight (shared with encode.weight, counted there)"]
    assert report.layer("encode").shared == ["weight (shared with decode.weight, counted here)"]
    assert sum(r.params for r in report.layers) == report.totals["params"]


def test_buffers_are_told_apart_by_what_they_hold() -> None:
    """BatchNorm2d's running statistics, a frozen norm's constants (FrozenBatchNorm2d holds its scale and
    shift as buffers too) and any other buffer, each counted from the modules; the kinds sum to the total."""
    from resnet_inspect.models.norm import FrozenBatchNorm2d
    from tests.conftest import run_cli

    class Anchored(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.bn = nn.BatchNorm2d(4)  # 4 + 4 running statistics and a 1-element step counter
            self.frozen = FrozenBatchNorm2d(4)  # 4 × 4 constants
            self.untracked = nn.BatchNorm2d(4, track_running_stats=False)  # no buffers at all
            self.register_buffer("anchors", torch.zeros(5, 2))  # 10 others

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.untracked(self.frozen(self.bn(self.conv(x)))) + self.anchors.sum()

    report = ri.inspect(Anchored(), (1, 3, 8, 8))
    assert report.buffer_kinds == {"running_statistics": 9, "frozen_constants": 16, "other": 10}
    assert sum(report.buffer_kinds.values()) == report.totals["buffers"] == 35
    frozen = ri.inspect("retinanet_r50_fpn")
    assert frozen.buffer_kinds["frozen_constants"] == frozen.totals["buffers"] > 0
    assert frozen.buffer_kinds["running_statistics"] == 0
    plain = ri.inspect("resnet18")
    assert plain.buffer_kinds["running_statistics"] == plain.totals["buffers"] == 9_620
    summary = run_cli("summary", "retinanet_r50_fpn", "-f", "json")
    assert json.loads(summary.stdout)["buffer_kinds"] == frozen.buffer_kinds
    line = next(l for l in run_cli("summary", "retinanet_r50_fpn", env={"COLUMNS": "250"}).stdout.splitlines()
                if l.split()[:1] == ["Buffers"])
    assert "frozen-norm constants" in line and "running statistics" not in line


def test_uncalled_module_is_reported_with_its_params() -> None:
    report = ri.inspect("hopenet")
    assert report.uncalled == [{"name": "fc_finetune", "type": "Linear", "params": (2048 + 3) * 3 + 3,
                                "trainable_params": (2048 + 3) * 3 + 3, "buffers": 0}]
    assert set(report.outputs) == {"yaw", "pitch", "roll"}


def test_input_shapes_are_read_before_in_place_ops() -> None:
    class Unsqueeze(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.unsqueeze_(0)

    report = ri.inspect(nn.Sequential(nn.Identity(), Unsqueeze()), (3, 4, 5), real=True)
    rec = report.layer("1")
    assert rec.input_shapes == [(3, 4, 5)] and rec.output_shapes == [(1, 3, 4, 5)]


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_a_forward_error_that_ends_its_sentence_gets_no_second_full_stop() -> None:
    """The message joins the model's own error to what ran: "... to True. 1 layers ran", never "True.."."""
    class Strict(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise ValueError("set check_inputs to True.")

    with pytest.raises(ForwardFailed) as info:
        ri.inspect(nn.Sequential(nn.Conv2d(3, 4, 3), Strict()), (1, 3, 8, 8))
    assert "set check_inputs to True. 1 layers ran before it" in str(info.value)
    assert ".." not in str(info.value)


@pytest.mark.parametrize("real", [False, True])
def test_model_is_left_as_it_was_even_when_forward_raises(real: bool) -> None:
    class Boom(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom")

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), Boom())
    model.train()
    model[1].eval()  # a mixed state that model.train()/eval() alone would not restore
    before = state_checksum(model)
    with pytest.raises(ForwardFailed, match="boom") as info:
        ri.inspect(model, (1, 3, 8, 8), real=real)
    assert "at 2 (Boom)" in str(info.value) and "2 layers ran" in str(info.value)
    assert _hook_count(model) == 0
    assert [m.training for m in model] == [True, False, True] and model.training
    assert state_checksum(model) == before and all(not p.is_meta for p in model.parameters())


def test_inspecting_a_cpu_model_on_meta_leaves_its_weights() -> None:
    model = ri.build("resnet18")
    before = state_checksum(model)
    report = ri.inspect(model)
    assert report.device == "meta" and report.totals["params"] == TORCHVISION["resnet18"][0]
    assert state_checksum(model) == before and _hook_count(model) == 0


def test_too_small_input_names_the_layer_and_formula() -> None:
    with pytest.raises(InputTooSmall, match=r"avgpool \(AvgPool2d\).*⌊\(4 − 7 \+ 2·0\)/7⌋ \+ 1 = 0"):
        ri.inspect("hopenet", 128)
    with pytest.raises(InputTooSmall, match=r"maxpool \(MaxPool2d\).*⌈\(1 − 3 \+ 2·0\)/2⌉ \+ 1 = 0"):
        ri.inspect("resnet50", 1, caffe_maxpool=True)


def test_degenerate_output_is_a_warning_not_an_error() -> None:
    report = ri.inspect("resnet50", 1)
    assert report.outputs["output"] == (1, 1000) and report.warnings


def test_failing_forward_names_the_layer_and_what_ran() -> None:
    with pytest.raises(InputTooSmall) as info:
        ri.inspect("hopenet", 448)
    message = str(info.value)
    assert "fc_yaw (Linear)" in message and "8192" in message and "avgpool → 1×2048×2×2" in message


def test_fpn_misalignment_is_predicted_and_pad_to_fixes_it() -> None:
    with pytest.raises(ri.InputError, match=r"At P3.*100×167.*100×168.*--pad-to 32"):
        ri.inspect("retinanet_r50_fpn", (800, 1333))
    report = ri.inspect("retinanet_r50_fpn", (800, 1333), pad_to=32)
    assert report.padded_from == (1, 3, 800, 1333) and report.input_size == (1, 3, 800, 1344)
    strides = {name: info.stride for name, info in report.output_info.items()}
    assert strides == {f"p{k}": 2**k for k in range(3, 8)}
    assert report.fpn is not None and report.fpn.lateral == ("fpn.fpn_inner4", "fpn.fpn_inner3", "fpn.fpn_inner2")
    assert report.fpn.top_down == ("fpn:interpolate", "fpn:add", "fpn:interpolate#1", "fpn:add#1")
    # The zoo FPN upsamples to the lateral's size, so the same odd size simply works.
    assert ri.inspect("resnet50", (800, 1333), fpn="retinanet").outputs["p3"] == (1, 256, 100, 167)


@pytest.mark.parametrize("size", [(200, 200), (224, 300), (48, 48), (16, 16)])
def test_fpn_misalignment_names_the_level_where_the_real_forward_fails(size: tuple[int, int]) -> None:
    model = ri.build("retinanet_r50_fpn").eval()
    called: list[str] = []
    for name, module in model.named_modules():
        if name.startswith("fpn.fpn_inner"):
            module.register_forward_hook(lambda m, i, o, name=name: called.append(name))
    with pytest.raises(RuntimeError, match=r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\)") as real:
        with torch.no_grad():
            model(torch.zeros(1, 3, *size))
    lateral_w, top_down_w = re.search(r"a \((\d+)\).*b \((\d+)\)", str(real.value)).groups()
    # The add that failed takes the lateral conv that ran last: fpn_inner{k} feeds P{k+1}.
    stage = int(called[-1][-1])
    for model_or_name in ("retinanet_r50_fpn", model):  # a name, and a built model that carries its spec
        with pytest.raises(ri.InputError) as predicted:
            ri.inspect(model_or_name, size)
        message = str(predicted.value)
        assert f"At P{stage + 1}, fpn_inner{stage} gives " in message
        assert f"×{lateral_w} but the upsampled P{stage + 2} path gives " in message
        assert f"×{top_down_w}, and the top-down add fails" in message


@pytest.mark.parametrize("size", [8, 16, 64])
def test_fpn_level_strides_come_from_the_layers_not_the_map_sizes(size: int) -> None:
    # At 8×8 every level is 1×1, so a stride read off the map sizes would be wrong; the strides
    # are those of the trunk stage under each level (2^k for P_k) at any size.
    info = ri.inspect("resnet50", size, fpn="retinanet").output_info
    assert {name: level.stride for name, level in info.items()} == {f"p{k}": 2**k for k in range(3, 8)}
    at_224 = ri.inspect("resnet50", 224, fpn="retinanet").output_info
    assert {n: i.receptive_field for n, i in info.items()} == {n: i.receptive_field for n, i in at_224.items()}


def test_fpn_level_receptive_fields_grow_with_the_extra_convs() -> None:
    info = ri.inspect("retinanet_r50_fpn", (512, 512)).output_info
    c5 = 483  # the MSRA ResNet-50 trunk (stride in the 1x1), see the closed form above
    # P5 = 3x3 conv over the 1x1 lateral of C5 at jump 32 (+2·32); P6 = 3x3/2 over P5 (+2·32, jump
    # becomes 64); P7 = 3x3/2 over P6 (+2·64).
    assert info["p5"].receptive_field == (c5 + 2 * 32,) * 2
    assert info["p6"].receptive_field == (c5 + 2 * 32 + 2 * 32,) * 2
    assert info["p7"].receptive_field == (c5 + 2 * 32 + 2 * 32 + 2 * 64,) * 2


def test_huge_input_is_traced_without_allocating() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    small = ri.inspect("resnet152", 224)
    huge = ri.inspect("resnet152", (1, 3, 4096, 4096))
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert len(huge.layers) == len(small.layers)
    # A real forward at 4096x4096 would hold gigabytes of activations; the meta trace holds none.
    assert huge.totals["activation_bytes"] > 10 * 2**30 and grown_kib < 200 * 1024
    assert huge.totals["macs"] > 300 * small.totals["macs"]


def test_report_to_dict_has_the_stable_keys() -> None:
    data = ri.inspect("resnet18").to_dict()
    assert {"model", "input_size", "layers", "totals", "outputs", "depth", "downsample", "uncalled"} <= set(data)
    assert {"name", "type", "input_shapes", "output_shapes", "params", "trainable_params", "buffers", "macs",
            "other_ops", "analytic_shape", "shape_ok", "receptive_field", "jump", "stage"} <= set(data["layers"][0])
    assert {"params", "trainable_params", "buffers", "macs", "flops", "other_ops", "activation_bytes"} \
        <= set(data["totals"])
    import json

    json.dumps(data)


def test_options_apply_only_to_names() -> None:
    with pytest.raises(ri.InputError, match="apply to variant names"):
        ri.inspect(nn.Linear(2, 2), (1, 2), stride_in_1x1=True)


@pytest.mark.parametrize("real", [False, True])
def test_a_failing_operator_is_named_with_all_its_operands(real: bool) -> None:
    class Mismatch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.same = nn.Conv2d(3, 4, 3, padding=1)  # 8x8 -> 8x8
            self.valid = nn.Conv2d(3, 4, 3)  # 8x8 -> 6x6: the sum cannot broadcast

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.same(x) + self.valid(x)

    with pytest.raises(ForwardFailed, match=r"failed at :add \(F\.add\), which received 1×4×8×8, 1×4×6×6") as info:
        ri.inspect(Mismatch(), (1, 3, 8, 8), real=real)
    assert info.value.failing is not None and info.value.failing.name == ":add"


def test_residual_add_records_both_operands_and_their_producers() -> None:
    add = ri.inspect("resnet50").layer("layer1.0:add")
    assert add.input_shapes == [(1, 256, 56, 56), (1, 256, 56, 56)]
    assert add.input_from == ["layer1.0.bn3", "layer1.0.downsample.1"]


_LAYERS_WITHOUT_A_2D_WINDOW = [
    (nn.Conv1d(4, 6, 3, stride=2, padding=1), (2, 4, 17)),
    (nn.Conv1d(4, 8, 5, dilation=2, groups=4, bias=False), (1, 4, 30)),
    (nn.Conv3d(2, 4, (3, 2, 3), stride=(1, 2, 2), padding=1, dilation=(1, 1, 2)), (1, 2, 5, 6, 9)),
    (nn.ConvTranspose1d(4, 6, 4, stride=3, padding=1, output_padding=2), (1, 4, 7)),
    (nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2), (1, 4, 6, 8)),
    (nn.ConvTranspose3d(2, 3, 2, stride=2, bias=False), (1, 2, 3, 4, 5)),
]


@pytest.mark.parametrize(("layer", "shape"), _LAYERS_WITHOUT_A_2D_WINDOW)
def test_conv1d_conv3d_and_transposed_convs_are_counted_and_shape_checked(layer: nn.Module, shape: tuple) -> None:
    report = ri.inspect(nn.Sequential(layer), shape, real=True)
    rec = report.layer("0")
    with torch.no_grad(), FlopCounterMode(display=False) as flops:
        out = layer(torch.zeros(shape))
    assert rec.macs == flops.get_total_flops() // 2 > 0  # torch counts 2 FLOPs per multiply-add
    assert rec.analytic_shape == tuple(out.shape) and rec.shape_ok
    assert ri.inspect(nn.Sequential(layer), shape).layers[1].macs == rec.macs  # the meta trace agrees
    assert not report.warnings


def test_matmul_and_run_time_norms_are_counted() -> None:
    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.norm = nn.LayerNorm(8)
            self.group = nn.GroupNorm(2, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.norm(self.group(x))
            return torch.bmm(x.flatten(0, 1), x.flatten(0, 1).transpose(1, 2)) @ torch.ones(6, 3)

    model = Attention()
    report = ri.inspect(model, (2, 4, 6, 8), real=True)
    with torch.no_grad(), FlopCounterMode(display=False) as flops:
        model(torch.zeros(2, 4, 6, 8))
    # bmm: 8 products of 6×8 by 8×6 (8 MACs each of 8·6·6 outputs); matmul: (8, 6, 6) @ (6, 3), 6 each.
    assert report.totals["macs"] == 8 * 6 * 6 * 8 + 8 * 6 * 3 * 6 == flops.get_total_flops() // 2
    # fvcore's estimate for a norm with statistics computed at run time: 5 ops per element with affine.
    assert report.layer("norm").other_ops == report.layer("group").other_ops == 5 * 2 * 4 * 6 * 8
    assert not report.warnings


def test_a_weighted_leaf_without_a_counting_rule_is_flagged() -> None:
    class Bilinear(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(4, 4))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.einsum("ni,ij,nj->n", x, self.weight, x)

    report = ri.inspect(nn.Sequential(nn.Linear(4, 4), Bilinear()), (3, 4))
    assert report.layer("0").macs == 3 * 4 * 4
    assert len(report.warnings) == 1 and report.warnings[0].startswith("1 (Bilinear) has weights")


def test_a_plain_module_takes_its_exact_input_shape_dtype_and_keyword_inputs() -> None:
    mlp = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
    report = ri.inspect(mlp, (5, 16))
    assert report.input_size == (5, 16) and report.outputs["output"] == (5, 2)
    assert report.totals["macs"] == 5 * (16 * 8 + 8 * 2)
    tokens = ri.inspect(nn.Sequential(nn.Embedding(100, 12), nn.Linear(12, 3)), (2, 7), dtype=torch.long, real=True)
    assert tokens.layer("0").output_shapes == [(2, 7, 12)] and tokens.outputs["output"] == (2, 7, 3)
    # Built variants keep the size shorthand: (224, 224) is H×W for resnet18, not a 2-D tensor.
    assert ri.inspect(ri.build("resnet18"), (64, 96)).input_size == (1, 3, 64, 96)

    class Keyword(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Bilinear(3, 5, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(input1=x, input2=x.new_ones(x.shape[0], 5))

    rec = ri.inspect(Keyword(), (4, 3)).layer("inner")
    assert rec.input_shapes == [(4, 3), (4, 5)] and rec.output_shapes == [(4, 2)]


class _TwoStrides(nn.Module):
    """A stride of 2 along H only, and an output that does not come from the image."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=(2, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"map": self.conv(x), "const": torch.zeros(2, 3, device=x.device)}


def test_output_info_is_typed_per_output() -> None:
    head = ri.inspect("resnet18").output_info["output"]  # after the global pool: one position, 224 apart
    assert head == OutputInfo((1, 1000), stride=224, receptive_field=head.receptive_field, depth=18, head=True)
    assert head.traced and head.receptive_field[0] == head.receptive_field[1] > 224
    info = ri.inspect(_TwoStrides(), (1, 3, 16, 16)).output_info
    assert info["map"] == OutputInfo((1, 4, 7, 14), stride=(2, 1), receptive_field=(3, 3), depth=1, head=False)
    assert info["const"] == OutputInfo((2, 3)) and not info["const"].traced


def test_output_info_json_form_is_unchanged() -> None:
    """The dicts ``Report.to_dict()`` has always written: lists, one stride number where H and W
    agree, and only the shape for an output that does not come from the image."""
    report = ri.inspect(_TwoStrides(), (1, 3, 16, 16))
    assert report.to_dict()["output_info"] == {
        "map": {"shape": [1, 4, 7, 14], "stride": [2, 1], "receptive_field": [3, 3], "depth": 1, "head": False},
        "const": {"shape": [2, 3]}}
    fpn = ri.inspect("retinanet_r50_fpn", (256, 256)).to_dict()
    assert fpn["output_info"]["p6"]["stride"] == 64 and fpn["fpn"]["levels"] == fpn["output_info"]


# -- memoised counting (trace._Known) -----------------------------------------------------------------

def _dicts(report: ri.Report) -> list[dict]:
    return [asdict(r) for r in report.layers]


@pytest.mark.parametrize("name,size", [("resnet50", 224), ("resnet18d", 160), ("cifar_resnet20", 32),
                                       ("retinanet_r50_fpn", (256, 320)), ("hopenet", 224)])
def test_memoised_counting_gives_the_records_of_counting_every_call(name: str, size: object,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from resnet_inspect.analysis import trace

    trace._Known.table.clear()
    memoised = ri.inspect(name, size)
    again = ri.inspect(name, size)  # every signature already known
    monkeypatch.setattr(trace, "_MEMOISED", frozenset())
    counted = ri.inspect(name, size)
    assert _dicts(memoised) == _dicts(again) == _dicts(counted)
    assert memoised.totals == counted.totals


def test_a_repeated_operator_signature_is_counted_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from resnet_inspect.analysis import ops, trace

    calls: list[int] = []
    rule = ops.RULES["conv2d"]

    def counting(bound: dict, out: object) -> ops.OpStats:
        calls.append(1)
        return rule.count(bound, out)

    monkeypatch.setitem(ops.RULES, "conv2d", ops.Rule(rule.params, rule.defaults, counting))
    monkeypatch.setattr(trace, "RULES", ops.RULES)
    trace._Known.table.clear()
    report = ri.inspect("resnet50", layers="3,8,36,3")
    convs = [r for r in report.layers if r.type == "Conv2d"]
    signatures = {(r.input_shapes[0], r.op.kernel, r.op.stride, r.op.out_channels, r.op.groups) for r in convs}
    # Once before and once after for each distinct signature, instead of twice per call.
    assert len(convs) == 155 and len(signatures) == 23 and len(calls) == 2 * len(signatures)
    # A window too large for its input fails with the formula, the second time as the first
    # (Hopenet's 7×7 average pool at 64×64).
    for _ in range(2):
        with pytest.raises(InputTooSmall, match="no longer fits"):
            ri.inspect("hopenet", 64)


# -- a model built here is traced through its forwards (Tracer.wrapped) --------------------------------

@pytest.mark.parametrize("name,size", [("resnet50", 224), ("resnet18d", 160), ("cifar_resnet20", 32),
                                       ("retinanet_r50_fpn", (256, 320)), ("hopenet", 224), ("resnetv2_50", 224),
                                       ("seresnet50", 224), ("maskrcnn_r50_fpn", (256, 320))])
def test_wrapped_forwards_give_the_records_of_hooks(name: str, size: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """A variant built here runs with its modules' forwards wrapped, not hooked: the records must be
    the ones the hooks give, and the built model must come back without a trace of either."""
    from resnet_inspect.analysis import trace

    used: list[str] = []
    real_wrapped, real_hooks = trace.Tracer.wrapped, trace.Tracer.hooks
    built: list[nn.Module] = []

    def wrapped(self: trace.Tracer) -> Any:
        used.append("wrapped")
        return real_wrapped(self)

    monkeypatch.setattr(trace.Tracer, "wrapped", wrapped)
    through_forwards = ri.inspect(name, size, on_model=built.append)
    assert used == ["wrapped"]
    model = built[0]
    assert all("forward" not in m.__dict__ and not m._forward_hooks and not m._forward_pre_hooks
               for m in model.modules())
    monkeypatch.setattr(trace.Tracer, "wrapped", real_hooks)
    through_hooks = ri.inspect(name, size)
    assert _dicts(through_forwards) == _dicts(through_hooks)
    assert through_forwards.totals == through_hooks.totals


def test_a_module_with_a_hook_or_a_forward_of_its_own_is_traced_by_hooks() -> None:
    """The wrapping is for plain modules only: a hook, an instance forward or a hook on every module
    sends the trace through hooks(), which leaves them as they were."""
    from torch.nn.modules import module as torch_module

    from resnet_inspect.analysis import trace

    plain, hooked, own = nn.Linear(2, 2), nn.Linear(2, 2), nn.Linear(2, 2)
    hooked.register_forward_hook(lambda *a: None)
    own.forward = lambda x: x  # type: ignore[method-assign]
    assert [trace._plain_module(m) for m in (plain, hooked, own)] == [True, False, False]
    assert not trace._module_globals_hooked()
    handle = torch_module.register_module_forward_hook(lambda *a: None)
    try:
        assert trace._module_globals_hooked()
    finally:
        handle.remove()
