"""The structure read from the data flow (analysis/blocks.py): stages, blocks, shortcut kinds,
SE gates and FPN roles do not depend on module names."""
from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

import resnet_inspect as ri
from resnet_inspect.analysis.blocks import Structure
from resnet_inspect.analysis.records import (
    Carrier, DepthCount, DownsampleStep, Projection, PyramidSummary, Report, StageDepth,
)

VARIANTS = ("resnet50", "resnet50d", "seresnet50", "resnetv2_50", "retinanet_r50_fpn")


class _Renamed(dict):  # type: ignore[type-arg]
    """A module's children under new names; the old names still reach them, so ``self.conv1``
    and ``"stem" in self._modules`` in the model's own forward keep working."""

    def __init__(self, children: dict[str, nn.Module | None], aliases: dict[str, str]) -> None:
        super().__init__(children)
        self.aliases = aliases

    def __contains__(self, key: object) -> bool:
        return super().__contains__(self.aliases.get(key, key) if isinstance(key, str) else key)

    def __getitem__(self, key: str) -> nn.Module | None:
        return super().__getitem__(self.aliases.get(key, key))


def rename_all(model: nn.Module) -> nn.Module:
    """Give every submodule a new name (``x0``, ``x1`` ... by position), in place."""
    for module in list(model.modules()):
        names = list(module._modules)
        aliases = {old: f"x{i}" for i, old in enumerate(names)}
        module._modules = _Renamed({aliases[k]: v for k, v in module._modules.items()}, aliases)
    return model


class _Holder(nn.Module):
    """A container that is never called, as torchvision's ``backbone`` holds ``body``."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body


class Detector(nn.Module):
    """``backbone.body.<model>``: a detector-like wrapper around a network."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.backbone = _Holder(body)

    def forward(self, x: torch.Tensor) -> Any:
        return self.backbone.body(x)


def _facts(report: Report) -> dict[str, Any]:
    """The structure with record indices made relative to the first stem record, and the levels'
    names left out (they are labels): equal for two traces of the same network."""
    s = report.structure
    assert isinstance(s, Structure)
    off = s.stem[0]

    def rel(i: int | None) -> int | None:
        return None if i is None else i - off

    def rels(items: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(i - off for i in items)

    stages = [(st.label, st.stride, [(b.fork - off, rels(b.main), b.shortcut.kind, rels(b.shortcut.records),
                                      b.shortcut.reads - off, b.shortcut.preactivated,
                                      b.gate and (rels(b.gate.records), b.gate.multiply - off), b.add - off,
                                      rels(b.after), b.stride) for b in st.blocks]) for st in s.stages]
    levels = [] if s.pyramid is None else [
        (lv.stride, rel(lv.output), rel(lv.lateral), rel(lv.merge), rel(lv.resize), rel(lv.source), lv.extra,
         rels(lv.records)) for lv in s.pyramid.levels]
    return {"stem": rels(s.stem), "stages": stages, "levels": levels, "head": rels(s.head),
            "types": [r.type for r in report.layers[off:]]}


@pytest.mark.parametrize("name", VARIANTS)
def test_renamed_network_has_the_same_structure(name: str) -> None:
    with torch.device("meta"):
        plain = ri.inspect(ri.build(name), 224, label=name)
        renamed = ri.inspect(Detector(rename_all(ri.build(name))), 224, label=name)
    old = {part for r in plain.layers for part in r.name.replace(":", ".").split(".") if part and not part.isdigit()}
    new_names = [r.name for r in renamed.layers if r.kind == "module" and r.name]
    assert new_names and all(n.startswith("backbone.body") for n in new_names)
    assert not {p for n in new_names for p in n.split(".")} & (old - {"backbone", "body"})
    assert _facts(renamed) == _facts(plain)
    # The views that draw on it agree too: stage labels, depth and the downsampling table.
    off = plain.structure.stem[0] - renamed.structure.stem[0]
    assert [r.stage for r in renamed.layers if r.is_leaf] == [r.stage for r in plain.layers if r.is_leaf]
    assert renamed.depth.counted == plain.depth.counted and off == -1
    assert [(d.stage, d.stride, [p.kind for p in d.projection]) for d in renamed.downsample] == \
        [(d.stage, d.stride, [p.kind for p in d.projection]) for d in plain.downsample]


def test_stages_blocks_and_shortcut_kinds_of_the_named_variants() -> None:
    def kinds(name: str) -> list[list[str]]:
        return [[b.shortcut.kind for b in st.blocks] for st in ri.inspect(name).structure.stages]

    first_identity = [["projection", "identity", "identity"], ["projection"] + ["identity"] * 3,
                      ["projection"] + ["identity"] * 5, ["projection", "identity", "identity"]]
    assert kinds("resnet50") == first_identity
    assert kinds("resnet50d") == [first_identity[0]] + [["pool+projection"] + k[1:] for k in first_identity[1:]]
    assert [st.stride for st in ri.inspect("resnet50").structure.stages] == [4, 8, 16, 32]
    assert [st.label for st in ri.inspect("resnet50").structure.stages] == ["res2", "res3", "res4", "res5"]
    assert kinds("resnet18")[0] == ["identity", "identity"]
    cifar = ri.inspect("cifar_resnet20").structure
    assert [[b.shortcut.kind for b in st.blocks][0] for st in cifar.stages] == ["identity", "option-a", "option-a"]
    assert [b.stride for b in cifar.stages[1].blocks] == [2, 1, 1]


def test_se_gate_and_preactivated_shortcut() -> None:
    se = ri.inspect("seresnet50")
    blocks = se.structure.blocks
    assert len(blocks) == 16 and all(b.gate is not None for b in blocks)
    gate = blocks[0].gate
    assert se.layers[gate.multiply].type == "F.mul" and sum(se.layers[i].weighted for i in gate.records) == 2
    assert ri.inspect("resnet50").structure.blocks[0].gate is None
    v2 = ri.inspect("resnetv2_50")
    pre = [b.shortcut.preactivated for b in v2.structure.blocks]
    assert pre == [b.shortcut.kind == "projection" for b in v2.structure.blocks] and sum(pre) == 4
    block = v2.structure.blocks[0]
    assert block.shortcut.reads in block.main and block.after == ()


def test_pyramid_roles() -> None:
    report = ri.inspect("retinanet_r50_fpn")
    pyramid = report.structure.pyramid
    assert pyramid is not None and report.structure.head == ()
    assert [(lv.name, lv.stride, lv.extra) for lv in pyramid.levels] == [
        ("p3", 8, False), ("p4", 16, False), ("p5", 32, False), ("p6", 64, True), ("p7", 128, True)]
    stages = {st.stride: st for st in report.structure.stages}
    for level in pyramid.levels[:3]:
        assert report.layers[level.lateral].op.kernel == (1, 1)
        assert level.source == stages[level.stride].blocks[-1].members[-1]  # the stage's output
    assert [lv.merge is not None for lv in pyramid.levels] == [True, True, False, False, False]
    assert all(report.layers[lv.resize].type == "F.interpolate" for lv in pyramid.levels[:2])
    assert report.fpn is not None and report.fpn.lateral == ("fpn.fpn_inner4", "fpn.fpn_inner3", "fpn.fpn_inner2")
    assert pyramid.levels[3].source == pyramid.levels[2].source  # P6 is made from the top of the trunk


class _Body(nn.Module):
    """torchvision's IntermediateLayerGetter in miniature: the trunk's own modules, no head."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            self.add_module(name, getattr(net, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def test_torchvision_style_nesting_gives_the_same_downsampling_table() -> None:
    with torch.device("meta"):
        bare = ri.inspect("resnet50")
        nested = ri.inspect(Detector(_Body(ri.build("resnet50"))), 224)
    assert nested.layer("backbone.body.layer1.0.conv2").stage == "res2"

    def strip(value: Any) -> Any:
        if isinstance(value, str):
            return value.removeprefix("backbone.body.")
        if isinstance(value, list):
            return [strip(v) for v in value]
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()}
        return value

    assert len(nested.downsample) == 5
    assert strip([step.to_dict() for step in nested.downsample]) == [step.to_dict() for step in bare.downsample]


class _Flat(nn.Module):
    """Residual adds in the root's own forward: no module holds a block."""

    def __init__(self, convs: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.convs = nn.ModuleList(nn.Conv2d(8, 8, 3, padding=1) for _ in range(2 * convs))
        self.per_block = convs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for start in range(0, len(self.convs), self.per_block):
            y = x
            for conv in self.convs[start:start + self.per_block]:
                y = conv(y)
            x = x + y
        return x


def test_blocks_without_a_module_of_their_own_and_one_layer_skips() -> None:
    two = ri.inspect(_Flat(2), (1, 3, 8, 8))
    blocks = two.structure.blocks
    assert [b.container for b in blocks] == [None, None] and [b.shortcut.kind for b in blocks] == ["identity"] * 2
    assert [[two.layers[i].name for i in b.main] for b in blocks] == [["convs.0", "convs.1"], ["convs.2", "convs.3"]]
    assert len(two.structure.stages) == 1 and two.structure.stem == (two.layer("stem").index,)
    # He et al. 2016, §3.1: a one-layer residual function is "similar to a linear layer": no block.
    one = ri.inspect(_Flat(1), (1, 3, 8, 8))
    assert one.structure.stages == () and one.structure.pyramid is None


class _Basic(nn.Module):
    """A user's own basic block: two 3x3 convs, a strided 1x1 projection when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.project = nn.Conv2d(c_in, c_out, 1, stride, bias=False) if stride != 1 or c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.project is None else self.project(x)
        return torch.relu(self.conv2(torch.relu(self.conv1(x))) + shortcut)


class _OneConvUnit(nn.Module):
    """A strided residual unit with one conv on each side: He et al. 2016 count no block here."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, 2, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x) + self.skip(x))


def _own_nets() -> dict[str, nn.Module]:
    head = (nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    return {
        # a strided conv and a max pool between the stages, outside every block
        "transition layers": nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), _Basic(16, 16), nn.Conv2d(16, 32, 3, 2, 1),
                                           _Basic(32, 32), nn.MaxPool2d(2), _Basic(32, 32), *head),
        # a strided one-conv residual unit between two blocks
        "one-conv unit": nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), _Basic(16, 16), _OneConvUnit(16, 32),
                                       _Basic(32, 32), *head),
        # strided blocks where a zoo net has none: the first block, and the middle of a run
        "strides in odd places": nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1), _Basic(16, 16, 2), _Basic(16, 16),
                                               _Basic(16, 16, 2), _Basic(16, 32), _Basic(32, 32, 2), *head),
    }


@pytest.mark.parametrize("name", list(_own_nets()))
def test_the_downsampling_table_of_a_users_model_has_every_place_the_map_shrinks(name: str) -> None:
    """Issue 16: a strided layer that no recognised block holds used to be left out of the table."""
    report = ri.inspect(_own_nets()[name], (1, 3, 64, 64))
    # From the trace alone: every leaf whose output map is smaller than its input (the head's global pool aside).
    shrinks = {rec.name for rec in report.layers
               if rec.is_leaf and rec.type != "AdaptiveAvgPool2d" and len(rec.input_shapes[0]) == 4
               and len(rec.output_shapes[0]) == 4 and rec.output_shapes[0][-2:] < rec.input_shapes[0][-2:]}
    steps = report.downsample
    listed = {c.name for step in steps for c in step.carriers} | {
        p.name for step in steps for p in step.projection if p.stride > 1}
    assert listed == shrinks
    # The steps chain from the input to the last feature map, and their strides multiply to its stride.
    assert steps[0].size_before == (64, 64)
    assert all(a.size_after == b.size_before for a, b in zip(steps, steps[1:])), steps
    last_map = max((r for r in report.layers if r.is_leaf and len(r.output_shapes[0]) == 4
                    and r.type != "AdaptiveAvgPool2d"), key=lambda r: r.index)
    assert steps[-1].size_after == last_map.output_shapes[0][-2:]
    assert math.prod(step.stride for step in steps) == 64 // last_map.output_shapes[0][-1]


def test_a_module_that_takes_an_input_it_does_not_use() -> None:
    # maskrcnn-benchmark's LastLevelMaxPool takes C5 and P5 and pools P5 only: P6 is made from P5.
    report = ri.inspect("maskrcnn_r50_fpn")
    pool = report.layer("fpn.top_blocks")
    assert len(pool.input_from) == 2 and pool.read_from == [report.layer("fpn.fpn_layer4").index]
    p6 = report.structure.pyramid.levels[-1]
    assert p6.extra and p6.output == pool.index and p6.records == (pool.index,)


def test_diff_pairs_renamed_shortcuts_by_role() -> None:
    """With no digit in any name, the diff still pairs ResNet-D's shortcut conv and BN with
    ResNet's (the blocks come from the structure), so only its pools are added."""
    from resnet_inspect.render.diff import diff_layers

    with torch.device("meta"):
        a = ri.inspect(Detector(rename_all(ri.build("resnet50"))), 224)
        b = ri.inspect(Detector(rename_all(ri.build("resnet50d"))), 224)
    shortcut_b = {i for blk in b.structure.blocks for i in blk.shortcut.records}
    diffs = [d for d in diff_layers(a, b) if (d.b is not None and d.b.index in shortcut_b)]
    assert sorted(d.b.type for d in diffs if d.status == "added") == ["AvgPool2d"] * 3
    changed = [d for d in diffs if d.status == "changed"]
    assert len(changed) == 3 and all(d.a.type == d.b.type == "Conv2d" and "stride: 2 → 1" in d.changes
                                     for d in changed)


def test_explain_finds_a_layers_block_in_the_structure() -> None:
    from resnet_inspect.render.explain import block_of

    report = ri.inspect("resnet", layers=(1, 1, 1, 1))  # stages of one block each
    block = report.structure.stages[1].blocks[0]
    assert block_of(report, report.layer("layer2.0")) is block
    assert block_of(report, report.layer("layer2.0.downsample")) is block
    assert block_of(report, report.layer("layer2.0.conv1")) is block
    assert block_of(report, report.layer("layer2")) is None  # the stage around the block is not in it
    assert block_of(report, report.layer("fc")) is None


# -- the typed records built from the structure (analysis/structure.py, records.py) ---------------

def test_resnet50_depth_and_downsampling_are_typed_records() -> None:
    report = ri.inspect("resnet50")
    depth = report.depth
    assert isinstance(depth, DepthCount)
    assert (depth.counted, depth.name_depth, depth.stem, depth.blocks, depth.head, depth.fpn, depth.other) == \
        (50, 50, 1, 16, 1, 0, 0)
    assert depth.convs_per_block == ((3, 16),) and depth.notes == () and depth.other_not_counted == ()
    assert depth.per_stage == (StageDepth("res2", 3, 9), StageDepth("res3", 4, 12), StageDepth("res4", 6, 18),
                               StageDepth("res5", 3, 9))
    assert len(depth.path) == 50 and depth.path[0] == "conv1" and depth.path[-1] == "fc"
    assert depth.projections_not_counted == tuple(f"layer{k}.0.downsample.0" for k in range(1, 5))
    assert [step.stage for step in report.downsample] == ["stem", "res2", "res3", "res4", "res5"]
    stem, res3 = report.downsample[0], report.downsample[2]
    assert stem.carriers == (Carrier("conv1", "Conv2d", 7, 2, "stem"), Carrier("maxpool", "MaxPool2d", 3, 2, "stem"))
    assert (stem.stride, stem.size_before, stem.size_after, stem.projection) == (4, (224, 224), (56, 56), ())
    assert res3 == DownsampleStep(
        stage="res3", size_before=(56, 56), size_after=(28, 28), stride=2,
        carriers=(Carrier("layer2.0.conv2", "Conv2d", 3, 2, "layer2.0"),),
        projection=(Projection("layer2.0.downsample.0", "layer2.0.downsample", 1, 2, "projection Conv2d 1×1/2",
                               "stride 2 ≠ 1 and channels change 256 → 512", "layer1.2.relu"),),
        dilation=(), dilation_replaces_stride=False)
    assert report.fpn is None


def test_resnet50_to_dict_gives_the_json_the_report_has_always_written() -> None:
    data = ri.inspect("resnet50").to_dict()
    assert {k: v for k, v in data["depth"].items() if k != "path"} == {
        "counted": 50, "name_depth": 50, "formula": "1 stem conv + 16 blocks × 3 convs + 1 fc = 50", "stem": 1,
        "blocks": 16, "convs_per_block": {"3": 16}, "head": 1, "fpn": 0, "other": 0,
        "per_stage": {"res2": {"blocks": 3, "layers": 9}, "res3": {"blocks": 4, "layers": 12},
                      "res4": {"blocks": 6, "layers": 18}, "res5": {"blocks": 3, "layers": 9}},
        "projections_not_counted": ["layer1.0.downsample.0", "layer2.0.downsample.0", "layer3.0.downsample.0",
                                    "layer4.0.downsample.0"],
        "other_not_counted": [], "notes": []}
    assert list(data["depth"]) == ["counted", "name_depth", "formula", "stem", "blocks", "convs_per_block", "head",
                                   "fpn", "other", "per_stage", "path", "projections_not_counted",
                                   "other_not_counted", "notes"]
    assert data["downsample"][2] == {
        "stage": "res3", "size_before": [56, 56], "size_after": [28, 28], "stride": 2,
        "carriers": [{"name": "layer2.0.conv2", "type": "Conv2d", "kernel": 3, "stride": 2, "block": "layer2.0"}],
        "projection": [{"name": "layer2.0.downsample.0", "shortcut": "layer2.0.downsample", "kernel": 1, "stride": 2,
                        "kind": "projection Conv2d 1×1/2", "reason": "stride 2 ≠ 1 and channels change 256 → 512",
                        "input_from": "layer1.2.relu"}],
        "dilation": [], "dilation_replaces_stride": False}
    assert data["fpn"] is None
    # A preactivated shortcut (ResNetV2) is the only one whose JSON has a "note".
    preactivated = ri.inspect("resnetv2_50").to_dict()["downsample"][1]["projection"][0]
    assert list(preactivated)[-1] == "note" and preactivated["note"].startswith("takes the pre-activated input")
    assert "note" not in data["downsample"][2]["projection"][0]


def test_cifar_option_a_depth_and_shortcut_are_typed() -> None:
    report = ri.inspect("cifar_resnet20", shortcut="A")
    assert (report.depth.counted, report.depth.convs_per_block, report.depth.projections_not_counted) == (20, ((2, 9),), ())
    res3 = next(step for step in report.downsample if step.stage == "res3")
    assert res3.carriers == (Carrier("layer2.0.conv1", "Conv2d", 3, 2, "layer2.0"),)
    option_a = res3.projection[0]
    assert option_a == Projection("layer2.0.downsample", "layer2.0.downsample", None, 2,
                                  "parameter-free: subsample and zero-pad the new channels (option A)",
                                  "stride 2 ≠ 1 and channels change 16 → 32", "layer1.2.relu")
    assert res3.to_dict()["projection"] == [{
        "name": "layer2.0.downsample", "shortcut": "layer2.0.downsample", "kernel": None, "stride": 2,
        "kind": "parameter-free: subsample and zero-pad the new channels (option A)",
        "reason": "stride 2 ≠ 1 and channels change 16 → 32", "input_from": "layer1.2.relu"}]


def test_retinanet_pyramid_summary_is_typed_and_keeps_its_json() -> None:
    report = ri.inspect("retinanet_r50_fpn", 224)
    fpn = report.fpn
    assert isinstance(fpn, PyramidSummary)
    assert fpn.output == ("fpn.fpn_layer4", "fpn.fpn_layer3", "fpn.fpn_layer2")
    assert fpn.extra == ("fpn.top_blocks", "fpn.top_blocks.p6", "fpn.top_blocks:relu", "fpn.top_blocks.p7")
    assert [(lv.name, lv.info.stride) for lv in fpn.levels] == [(f"p{k}", 2**k) for k in range(3, 8)]
    assert fpn.levels[0].info is report.output_info["p3"]
    assert (report.depth.counted, report.depth.head, report.depth.fpn, len(report.depth.notes)) == (49, 0, 4, 2)
    data = report.to_dict()["fpn"]
    assert list(data) == ["lateral", "output", "top_down", "extra", "levels"]
    assert data["top_down"] == ["fpn:interpolate", "fpn:add", "fpn:interpolate#1", "fpn:add#1"]
    assert data["levels"]["p6"] == {"shape": [1, 256, 4, 4], "stride": 64, "receptive_field": [611, 611],
                                    "depth": 52, "head": False}


def test_records_are_frozen() -> None:
    report = ri.inspect("cifar_resnet20")
    with pytest.raises(AttributeError):
        report.depth.counted = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        report.downsample[2].carriers[0].stride = 1  # type: ignore[misc]


@pytest.mark.parametrize("name,extra", [("retinanet_r50_fpn", ("fpn.top_blocks.p6", "fpn.top_blocks.p7")),
                                        ("maskrcnn_r50_fpn", ("fpn.top_blocks",))])
def test_explain_finds_extra_levels_in_the_pyramid_not_in_the_summary(name: str, extra: tuple[str, ...]) -> None:
    from resnet_inspect.render.explain import downsample_lines

    report = ri.inspect(name)
    report.fpn = None  # the facts come from report.structure's levels, not from the summary's names
    says_extra = {r.name for r in report.layers
                  if any("extra pyramid level" in line for line in downsample_lines(report, r))}
    assert says_extra == set(extra)


@pytest.mark.parametrize("name", ["resnet50d", "seresnet50", "cifar_resnet20", "resnetv2_50", "retinanet_r50_fpn"])
def test_one_walk_finds_the_fork_and_both_branches(name: str) -> None:
    """Flow.branches is fork() and between() each operand and the fork, at every add and multiply."""
    from resnet_inspect.analysis.blocks import Flow

    records = ri.inspect(name, 64).layers
    flow = Flow(records)
    pairs = [flow.producers[r.index] for r in records if r.type in ("F.add", "F.mul")]
    pairs = [p for p in pairs if len(p) == 2] + [(p[0], p[0]) for p in pairs]  # and an operand with itself
    assert len(pairs) > 10
    for a, b in pairs:
        fork = flow.fork(a, b)
        expected = None if fork is None else (fork, flow.between(a, fork), flow.between(b, fork))
        assert flow.branches(a, b) == expected, (a, b)
    assert flow.branches(pairs[0][1], pairs[0][0])[1:] == flow.branches(*pairs[0])[:0:-1]  # either order
