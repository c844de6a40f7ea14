"""The stage plan (resnet_inspect.plan): the one stage loop and shortcut rule that models/ and closed_form.py share."""
from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from resnet_inspect import get_spec
from resnet_inspect.models.resnet import build_model
from resnet_inspect.plan import BlockPlan, groups_and_width, needs_projection, stage_plan


def _blocks(name: str, **options: Any) -> dict[str, BlockPlan]:
    return {block.name: block for stage in stage_plan(get_spec(name, **options)) for block in stage.blocks}


def test_the_rule_is_torchvisions_make_layer_rule() -> None:
    assert needs_projection(2, 256, 512) and needs_projection(1, 64, 256)
    assert not needs_projection(1, 256, 256)


def test_resnet50_projects_in_each_stages_first_block_only() -> None:
    blocks = _blocks("resnet50")
    assert len(blocks) == 3 + 4 + 6 + 3  # He et al. 2016, Table 1
    first = {name: block for name, block in blocks.items() if name.endswith(".0")}
    assert {(b.in_channels, b.out_channels, b.stride, b.shortcut) for b in first.values()} == {
        (64, 256, 1, "projection"), (256, 512, 2, "projection"), (512, 1024, 2, "projection"),
        (1024, 2048, 2, "projection")}
    assert all(b.shortcut == "identity" and b.stride == 1 for n, b in blocks.items() if n not in first)


def test_resnet18s_first_block_keeps_the_identity() -> None:
    assert _blocks("resnet18")["layer1.0"].shortcut == "identity"  # 64 -> 64 at stride 1


def test_option_a_and_resnet_d_pooling() -> None:
    cifar = _blocks("cifar_resnet20")
    assert [n for n, b in cifar.items() if b.shortcut == "A"] == ["layer2.0", "layer3.0"]
    d = _blocks("resnet50d", output_stride=16)
    assert (d["layer2.0"].shortcut, d["layer2.0"].pool) == ("avg_down", "avg")
    assert (d["layer4.0"].stride, d["layer4.0"].dilation, d["layer4.0"].pool) == (1, 2, "avg_same")
    assert d["layer1.0"].pool is None  # 64 -> 256 at stride 1, undilated: the projection alone


def test_dilation_replaces_the_stride_and_the_first_block_keeps_the_previous_one() -> None:
    blocks = _blocks("resnet50", output_stride=8)
    assert [(blocks[n].stride, blocks[n].first_dilation, blocks[n].dilation) for n in ("layer3.0", "layer3.1",
                                                                                       "layer4.0", "layer4.2")] \
        == [(1, 1, 2), (1, 2, 2), (1, 2, 4), (1, 4, 4)]


def _stage_modules(model: nn.Module) -> list[nn.Sequential]:
    trunk = model.body if hasattr(model, "body") else model
    if hasattr(trunk, "stages"):
        return [stage.blocks for stage in trunk.stages]
    return [getattr(trunk, f"layer{i + 1}") for i in range(len(trunk.spec.layers))]


def _stride_of(block: nn.Module) -> int:
    """The largest conv stride in a block (a ResNet-D shortcut's pool aside, its main path carries it too)."""
    return max(m.stride[0] for m in block.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("name, options", [
    ("resnet18", {}), ("resnet50", {}), ("resnet50", {"output_stride": 8}), ("resnet50d", {}),
    ("cifar_resnet20", {}), ("resnetv2_50", {}), ("seresnet50", {}), ("retinanet_r50_fpn", {}),
])
def test_the_built_model_follows_the_plan(name: str, options: dict[str, Any]) -> None:
    spec = get_spec(name, **options)
    with torch.device("meta"):
        model = build_model(spec)
    stages = _stage_modules(model)
    plan = stage_plan(spec)
    assert [len(stage) for stage in stages] == [len(stage.blocks) for stage in plan]
    for stage, stage_plan_ in zip(stages, plan):
        for module, block in zip(stage, stage_plan_.blocks):
            assert (module.downsample is None) == (block.shortcut == "identity"), block.name
            assert _stride_of(module) == block.stride, block.name
            convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
            assert convs[0].in_channels == block.in_channels, block.name
            assert max(m.out_channels for m in convs) == block.out_channels, block.name


@pytest.mark.parametrize("name", ["cifar_resnet20", "cifar_resnet110", "resnet18", "resnet50", "resnext50_32x4d",
                                  "resnext101_64x4d", "wide_resnet50_2", "resnetv2_50", "retinanet_r50_fpn"])
def test_groups_and_width_are_those_of_the_built_first_stages_3x3(name: str) -> None:
    """`list`'s "Groups × width": the built model's first-stage 3x3 conv, not the spec's width_per_group
    (the CIFAR nets are 16 wide, not 64)."""
    from tests.conftest import row, run_cli

    spec = get_spec(name)
    with torch.device("meta"):
        model = build_model(spec)
    first_block = _stage_modules(model)[0][0]
    conv = next(m for m in first_block.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))
    groups, width = groups_and_width(spec)
    assert (groups, width) == (conv.groups, conv.out_channels // conv.groups)
    if spec.stem == "cifar":  # He et al. 2015, §4.2: the 3x3 stem conv makes the first stage's 16 maps
        assert width == model.conv1.out_channels == 16
    listed = run_cli("list", env={"COLUMNS": "250"})
    assert f"{groups} × {width}" in row(listed.stdout, name)
