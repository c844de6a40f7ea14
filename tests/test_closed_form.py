"""The closed-form figures behind `list` agree with the traced engine and with published tables."""
from __future__ import annotations

import re
from typing import Any

import pytest
from typer.testing import CliRunner

import resnet_inspect as ri
from resnet_inspect.cli import app
from resnet_inspect.closed_form import figures
from resnet_inspect.errors import InputError


def _engine(name: str, size: Any = None, **options: Any) -> tuple[int, int, int]:
    totals = ri.inspect(name, size, **options).totals
    return totals["params"], totals["buffers"], totals["macs"]


def _closed(name: str, size: Any = None, **options: Any) -> tuple[int, int, int]:
    fig = figures(name, size, **options)
    return fig.params, fig.buffers, fig.macs


@pytest.mark.parametrize("name", ri.variants())
def test_every_variant_matches_the_traced_engine(name: str) -> None:
    # The default input is the variant's own (224, or 32 for the CIFAR nets), as in `list`.
    assert _closed(name) == _engine(name)


# Builder options that move the stride, the dilation, the stem, the norm or the heads, on small
# nets and small or odd inputs so that every rounding rule of the window formula is exercised.
OPTION_CASES = [
    ("resnet50", "1x3x97x131", dict(stride_in_1x1=True)),
    ("resnet50", "2x3x64x96", dict(output_stride=16)),
    ("resnet50", 65, dict(output_stride=8)),
    ("resnext50_32x4d", 100, dict(output_stride=8, stride_in_1x1=True)),
    ("resnet18", "97x131", dict(fpn="maskrcnn")),
    ("resnext50_32x4d", "75x113", dict(fpn="retinanet")),
    ("retinanet_r50_fpn", "3x3x128x192", {}),
    ("maskrcnn_r50_fpn", "160x96", dict(norm="bn")),
    ("resnet18", "33x47", dict(caffe_maxpool=True)),
    ("resnet18", 64, dict(norm="frozen_bn", num_classes=7)),
    ("resnet", 77, dict(block="bottleneck", layers="1,2,1,1", groups=4, width_per_group=16)),
    ("resnet", 50, dict(block="basic", layers="2,1,1,3")),
    ("resnet18", 61, dict(se=True)),
    ("resnet18", 61, dict(avg_down=True)),
    ("resnet50", 99, dict(stem="deep-wide", avg_down=True)),
    ("resnet50", 70, dict(stem="deep", se=True, output_stride=16)),
    ("cifar_resnet20", 40, dict(shortcut="B")),
    ("cifar_resnet20", "2x3x33x31", {}),
    ("hopenet", 224, dict(num_bins=10)),
    ("resnetv2_50", 96, {}),
]


@pytest.mark.parametrize(("name", "size", "options"), OPTION_CASES,
                         ids=[f"{n}-{s}-{','.join(map(str, o.items()))}" for n, s, o in OPTION_CASES])
def test_options_match_the_traced_engine(name: str, size: Any, options: dict[str, Any]) -> None:
    assert _closed(name, size, **options) == _engine(name, size, **options)


def test_zoo_matches_torchvisions_published_table(torchvision_table: dict[str, tuple[int, float]]) -> None:
    for name, (params, gmacs) in torchvision_table.items():
        fig = figures(name, 224)
        assert fig.params == params, name
        assert round(fig.macs / 1e9, 2) == gmacs, name


def test_resnet18_by_hand() -> None:
    # Worked independently of the code: the conv weights of each stage, the BN scale/shift pairs,
    # the projections of stages 2-4, the fc; MACs as weights × output positions at 224.
    stem = 64 * 3 * 7 * 7
    convs = [(64, 64, 56)] * 4 + [(64, 128, 28)] + [(128, 128, 28)] * 3 + [(128, 256, 14)] + [(256, 256, 14)] * 3 \
        + [(256, 512, 7)] + [(512, 512, 7)] * 3
    projections = [(64, 128, 28), (128, 256, 14), (256, 512, 7)]
    conv_weights = stem + sum(o * i * 9 for i, o, _ in convs) + sum(o * i for i, o, _ in projections)
    norm_channels = 64 + sum(o for _, o, _ in convs) + sum(o for _, o, _ in projections)
    fc = 512 * 1000 + 1000
    macs = stem * 112 * 112 + sum(o * i * 9 * s * s for i, o, s in convs) + sum(o * i * s * s for i, o, s in projections) \
        + 512 * 1000
    fig = figures("resnet18", 224)
    assert fig.params == conv_weights + 2 * norm_channels + fc
    assert fig.macs == macs
    assert fig.buffers == 2 * norm_channels + 20  # running mean and var, and one counter per BN


def test_batch_multiplies_macs_only() -> None:
    one, four = figures("resnet18", "1x3x64x64"), figures("resnet18", "4x3x64x64")
    assert (four.params, four.buffers, four.macs) == (one.params, one.buffers, 4 * one.macs)


@pytest.mark.parametrize(("name", "size"), [
    ("resnet50_caffe", 1),  # Caffe's unpadded 3x3 max pool has no room on a 1×1 map
    ("hopenet", 32),  # layer4 is 1×1, too small for AvgPool2d(7)
    ("hopenet", 448),  # AvgPool2d(7) leaves 2×2: 8192 features for 2048-feature heads
    ("retinanet_r50_fpn", "800x1333"),  # scale_factor=2 upsampling needs a multiple of 32
    ("resnet50", "1x1x224x224"),  # one channel for an RGB stem
])
def test_closed_form_refuses_what_the_engine_refuses(name: str, size: Any) -> None:
    with pytest.raises(InputError):
        _engine(name, size)
    with pytest.raises(InputError):
        figures(name, size)


def test_tiny_inputs_that_still_fit_agree() -> None:
    # 16 and 3 pixels: every window still fits, the maps are 1×1 from some stage on.
    assert _closed("resnet50", 16) == _engine("resnet50", 16)
    assert _closed("resnet18", 3) == _engine("resnet18", 3)


def test_list_prints_the_published_figures(torchvision_table: dict[str, tuple[int, float]]) -> None:
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    for name in ri.variants():
        assert name in rows, name
    for name, (params, gmacs) in torchvision_table.items():
        cells = rows[name].split()
        assert f"{params:,}" in cells, rows[name]
        assert f"{gmacs:.2f}" in cells, rows[name]
    # The CIFAR nets are listed at their own 32×32 input; He et al. 2015 (Table 6) give 0.27M params
    # for the 20-layer one.
    cifar = figures("cifar_resnet20")
    assert round(cifar.params / 1e6, 2) == 0.27
    assert re.search(rf"\b{cifar.params:,}\s+{cifar.gmacs:.3f}\s+32\b", rows["cifar_resnet20"])
