"""Renderers checked against the records they show: folding keeps the sums, the explained MACs
product is the layer's count, the backward receptive-field derivation lands on a real tensor."""
from __future__ import annotations

import io
import math

import pytest
from rich.console import Console

import resnet_inspect
from resnet_inspect.analysis.opdesc import WindowOp
from resnet_inspect.render import diff as render_diff
from resnet_inspect.render.explain import (
    _producer, downsample_lines, mac_lines, mac_terms, receptive_field_lines, shape_lines,
)
from resnet_inspect.render.table import print_summary, summary_rows
from resnet_inspect.render.tree import module_tree


@pytest.fixture(scope="module")
def reports():
    return {
        "resnet50": resnet_inspect.inspect("resnet50"),
        "resnet50_1x1": resnet_inspect.inspect("resnet50", stride_in_1x1=True),
        "resnext50_32x4d": resnet_inspect.inspect("resnext50_32x4d"),
        "retinanet_r50_fpn": resnet_inspect.inspect("retinanet_r50_fpn", 512),
        "hopenet": resnet_inspect.inspect("hopenet"),
        "os8": resnet_inspect.inspect("resnet50", output_stride=8),
    }


@pytest.mark.parametrize("name", ["resnet50", "resnext50_32x4d", "retinanet_r50_fpn", "hopenet"])
def test_mac_terms_multiply_to_each_weighted_layers_count(reports, name: str) -> None:
    report = reports[name]
    weighted = [rec for rec in report.layers if rec.weighted and rec.is_leaf]
    assert weighted
    for rec in weighted:
        terms = mac_terms(rec)
        assert terms is not None, rec.name
        assert terms.out_elements == math.prod(rec.output_shapes[0])
        assert terms.product == rec.macs, rec.name


def test_grouped_conv_terms_read_channels_per_group(reports) -> None:
    rec = reports["resnext50_32x4d"].layer("layer1.0.conv2")
    terms = mac_terms(rec)
    assert dict(terms.factors)["C_in/groups = 128/32"] == 4


@pytest.mark.parametrize("name", ["resnet50", "resnet50_1x1", "os8", "retinanet_r50_fpn"])
def test_backward_field_derivation_finds_the_input_tensor(reports, name: str) -> None:
    """r_in = r_out − (k_eff − 1)·j_in with j_in = j_out / S must be the field of an earlier
    record whose output has the conv's input shape."""
    report = reports[name]
    for rec in report.layers:
        if not (rec.is_leaf and rec.weighted and isinstance(rec.op, WindowOp)):
            continue
        k, s, d = rec.op.kernel[0], rec.op.stride[0], rec.op.dilation[0]
        j_in = rec.jump[0] / s
        r_in = rec.receptive_field[0] - (d * (k - 1)) * j_in
        if r_in == 1 and j_in == 1:
            continue  # the image itself
        assert _producer(report, rec, r_in, j_in) is not None, rec.name


@pytest.mark.parametrize("name", ["resnet50", "retinanet_r50_fpn", "hopenet", "os8"])
def test_every_record_can_be_explained(reports, name: str) -> None:
    report = reports[name]
    for rec in report.layers:
        for section in (shape_lines, mac_lines, receptive_field_lines, downsample_lines):
            lines = section(report, rec)
            assert all(isinstance(line, str) and line for line in lines), (rec.name, section.__name__)


def test_1d_3d_and_transposed_convs_are_explained_with_their_own_factors() -> None:
    from torch import nn

    layers = [(nn.Conv1d(4, 6, 3, stride=2, groups=2), (1, 4, 17)),
              (nn.Conv3d(2, 4, 3, padding=1), (1, 2, 5, 6, 7)),
              (nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2), (1, 4, 6, 8))]
    for layer, shape in layers:
        report = resnet_inspect.inspect(nn.Sequential(layer), shape)
        rec = report.layer("0")
        assert mac_terms(rec).product == rec.macs > 0
        assert any("✓ the traced forward agrees" in line for line in shape_lines(report, rec))
        for section in (mac_lines, receptive_field_lines, downsample_lines):
            assert all(isinstance(line, str) and line for line in section(report, rec))
    # The transposed conv (last) upsamples: 6×8 → 12×16, and the grid gets twice as fine.
    assert rec.jump == (0.5, 0.5)
    assert downsample_lines(report, rec)[0] == "It upsamples: a transposed conv with stride 2 takes 6×8 to 12×16."


@pytest.mark.parametrize("depth", [None, 1, 2, 3])
def test_folded_rows_keep_every_sum(reports, depth: int | None) -> None:
    report = reports["retinanet_r50_fpn"]
    rows = summary_rows(report, depth)
    assert sum(r.params for r in rows) == report.totals["params"]
    assert sum(r.macs for r in rows) == report.totals["macs"]
    assert sum(r.output_bytes for r in rows) == report.totals["activation_bytes"]
    if depth is not None:
        assert max(r.record.depth for r in rows) <= depth


def test_module_tree_aggregates_match_the_model(reports) -> None:
    report = reports["hopenet"]
    root = module_tree(report)
    assert root.params == report.totals["params"]
    assert root.macs == report.totals["macs"]
    model = resnet_inspect.build("hopenet")
    layer3 = next(node for node in root.children if node.name == "layer3")
    assert layer3.params == sum(p.numel() for p in model.layer3.parameters())


def test_a_shape_mismatch_is_shown_even_when_folded(reports) -> None:
    report = reports["resnet50"]
    rec = report.layer("layer3.2.conv2")
    original = rec.shape_ok, rec.analytic_shape
    rec.shape_ok, rec.analytic_shape = False, (1, 256, 15, 15)
    try:
        buffer = io.StringIO()
        print_summary(report, Console(file=buffer, width=120, force_terminal=False), depth=1)
    finally:
        rec.shape_ok, rec.analytic_shape = original
    text = buffer.getvalue()
    assert "Shape check: 1 of" in text and "DISAGREE" in text
    assert "layer3.2.conv2: traced 1×256×14×14, formula 1×256×15×15" in text


def test_diff_of_identical_reports_is_empty(reports) -> None:
    a = reports["resnet50"]
    assert render_diff.diff_layers(a, a) == []
    assert not render_diff.differs(a, a)
    changed = render_diff.diff_layers(a, reports["resnet50_1x1"])
    assert {d.name for d in changed if d.status == "changed"} >= {"layer2.0.conv1", "layer2.0.conv2"}
    assert all(d.status == "changed" for d in changed), "same layout: nothing added or removed"
