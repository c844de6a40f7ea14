"""analysis/ops.py and analysis/opdesc.py: each counting rule sets a typed op with the right
fields, the op's JSON form is the one the report has always written, and ``explain`` reads the
same facts from it (its MAC factors and its receptive-field window)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import resnet_inspect
from resnet_inspect.analysis.opdesc import (
    AdaptivePoolOp, AttentionOp, Chain, LinearOp, MatMulOp, MeanOp, PadOp, ResizeOp, WindowOp, find, main_op)
from resnet_inspect.analysis.records import LayerRecord, Report
from resnet_inspect.render import explain


def _only(model: nn.Module, size: tuple[int, ...], name: str = "") -> tuple[Report, LayerRecord]:
    """Trace one layer (wrapped, so it has a name) and return its record."""
    report = resnet_inspect.inspect(model, size)
    return report, report.layer(name)


class _Wrap(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class _Functional(nn.Module):
    """A leaf module calling one functional op: the op is the module's own record's."""

    def __init__(self, fn: object) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)  # type: ignore[operator]


# -- each rule sets its op type -----------------------------------------------------------------

WINDOWS = [
    (nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2), (1, 4, 9, 9),
     WindowOp((3, 3), (2, 2), (1, 1), (1, 1), ceil_mode=False, groups=2, in_channels=4, out_channels=8)),
    (nn.Conv1d(4, 6, 5, stride=2, padding=2, dilation=1), (1, 4, 20),
     WindowOp((5,), (2,), (2,), (1,), groups=1, in_channels=4, out_channels=6)),
    (nn.Conv3d(2, 4, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)), (1, 2, 3, 8, 8),
     WindowOp((1, 3, 3), (1, 2, 2), (0, 1, 1), (1, 1, 1), groups=1, in_channels=2, out_channels=4)),
    (nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2), (1, 4, 5, 5),
     WindowOp((3, 3), (2, 2), (1, 1), (1, 1), groups=2, in_channels=4, out_channels=6, output_padding=(1, 1),
              transposed=True)),
    (nn.MaxPool2d(3, 2, ceil_mode=True), (1, 3, 8, 8), WindowOp((3, 3), (2, 2), (0, 0), (1, 1), ceil_mode=True)),
    (nn.AvgPool2d(2), (1, 3, 8, 8), WindowOp((2, 2), (2, 2), (0, 0), (1, 1), ceil_mode=False)),
]


@pytest.mark.parametrize(("layer", "size", "expected"), WINDOWS, ids=lambda v: type(v).__name__)
def test_convs_and_pools_set_a_window_op(layer: nn.Module, size: tuple[int, ...], expected: WindowOp) -> None:
    _, rec = _only(_Wrap(layer), size, "layer")
    assert rec.op == expected
    assert expected.is_conv == isinstance(layer, nn.modules.conv._ConvNd)


def test_adaptive_pool_linear_and_matmul_ops() -> None:
    _, pool = _only(_Wrap(nn.AdaptiveAvgPool2d((2, None))), (1, 3, 7, 5), "layer")
    assert pool.op == AdaptivePoolOp((2, 5))  # None keeps the input's size
    _, linear = _only(_Wrap(nn.Linear(6, 4)), (2, 6), "layer")
    assert linear.op == LinearOp(in_features=6, out_features=4)
    _, product = _only(_Functional(lambda x: x @ x.transpose(-1, -2)), (1, 3, 5))
    assert product.op == MatMulOp(5)


def test_mean_interpolate_and_pad_ops() -> None:
    _, mean = _only(_Functional(lambda x: x.mean((2, 3), keepdim=True)), (1, 3, 4, 4))
    assert mean.op == MeanOp((2, 3), keepdim=True) and mean.op.is_global_spatial
    _, resize = _only(_Functional(lambda x: F.interpolate(x, scale_factor=2, mode="nearest")), (1, 3, 4, 4))
    assert resize.op == ResizeOp(mode="nearest", scale_factor=2, size=None)
    _, pad = _only(_Functional(lambda x: F.pad(x, (0, 0, 0, 0, 1, 2))), (1, 3, 4, 4))
    assert pad.op == PadOp((0, 0, 0, 0, 1, 2), "constant")
    assert pad.analytic_shape == (1, 6, 4, 4)


def test_option_a_shortcut_is_a_chain_of_its_subsample_and_its_pad() -> None:
    """He et al. 2015's option A: one leaf module pools (1×1, stride 2), then pads zero channels."""
    report = resnet_inspect.inspect("cifar_resnet20")
    strided = report.layer("layer2.0.downsample")
    assert strided.op == Chain((WindowOp((1, 1), (2, 2), (0, 0), (1, 1), ceil_mode=False), PadOp((0, 0, 0, 0, 8, 8))))
    assert main_op(strided.op) == find(strided.op, WindowOp)  # explain treats it as a window with a pad
    assert find(strided.op, PadOp) == PadOp((0, 0, 0, 0, 8, 8))


# -- the JSON form is the report's file format -------------------------------------------------

def test_op_json_form_is_unchanged() -> None:
    """The dicts ``Report.to_dict()`` wrote before the ops were typed, key order included."""
    conv = WINDOWS[0][2].to_dict()
    assert list(conv.items()) == [("kernel", [3, 3]), ("stride", [2, 2]), ("padding", [1, 1]), ("dilation", [1, 1]),
                                  ("ceil_mode", False), ("groups", 2), ("in_channels", 4), ("out_channels", 8)]
    assert list(WINDOWS[3][2].to_dict()) == ["kernel", "stride", "padding", "dilation", "output_padding", "groups",
                                             "in_channels", "out_channels", "transposed"]
    assert list(WINDOWS[1][2].to_dict()) == ["kernel", "stride", "padding", "dilation", "groups", "in_channels",
                                             "out_channels"]
    assert WINDOWS[4][2].to_dict() == {"kernel": [3, 3], "stride": [2, 2], "padding": [0, 0], "dilation": [1, 1],
                                       "ceil_mode": True}
    assert MeanOp((2, 3), True).to_dict() == {"reduce": [2, 3], "keepdim": True}
    assert AdaptivePoolOp((1, 1)).to_dict() == {"output_size": [1, 1]}
    assert ResizeOp("nearest", 2).to_dict() == {"mode": "nearest", "scale_factor": 2, "size": None}
    # A chain merges as the records always did: a later op's key wins, in the earlier one's place.
    chain = Chain((WindowOp((1, 1), (2, 2), (0, 0), (1, 1), ceil_mode=False), PadOp((0, 0, 0, 0, 8, 8))))
    assert list(chain.to_dict().items()) == [("kernel", [1, 1]), ("stride", [2, 2]), ("padding", [0, 0]),
                                             ("dilation", [1, 1]), ("ceil_mode", False),
                                             ("pad", [0, 0, 0, 0, 8, 8]), ("mode", "constant")]


def test_report_json_writes_the_op_dict() -> None:
    report = resnet_inspect.inspect("cifar_resnet20")
    layers = {layer["name"]: layer for layer in report.to_dict()["layers"]}
    assert layers["layer2.0.downsample"]["op"] == report.layer("layer2.0.downsample").op.to_dict()
    assert layers["conv1"]["op"]["out_channels"] == 16
    assert layers["bn1"]["op"] is None


# -- explain reads the same facts from the typed op --------------------------------------------

@pytest.mark.parametrize("index", [0, 1, 2, 3], ids=["conv2d", "conv1d", "conv3d", "conv_transpose2d"])
def test_explain_mac_factors_multiply_to_the_count(index: int) -> None:
    layer, size, _ = WINDOWS[index]
    _, rec = _only(_Wrap(layer), size, "layer")
    terms = explain.mac_terms(rec)
    assert terms is not None and terms.product == rec.macs
    groups = rec.op.groups
    per = (rec.op.out_channels if rec.op.transposed else rec.op.in_channels) // groups
    assert terms.factors[0][1] == per and tuple(v for _, v in terms.factors[1:]) == rec.op.kernel


def test_explain_mac_factors_of_a_linear_layer() -> None:
    _, rec = _only(_Wrap(nn.Linear(6, 4)), (2, 6), "layer")
    terms = explain.mac_terms(rec)
    assert terms is not None and terms.factors == (("in_features", 6),) and terms.product == rec.macs == 48


def test_explain_window_of_each_family_gives_the_traced_field() -> None:
    """r_out = r_in + (D·(K−1))·j_in with the (K, S, D) explain reads: from a pool's window, a
    global mean's whole map and an adaptive pool's input/output window."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(3, 2, ceil_mode=True),
                          nn.AdaptiveAvgPool2d(2), _Functional(lambda x: x.mean((2, 3))))
    report = resnet_inspect.inspect(model, (1, 3, 9, 9))
    conv = report.layer("0")
    for name in ("1", "2", "3"):
        rec = report.layer(name)
        before = report.layers[rec.index - 1]
        k, s, d = explain._window(rec, 0)
        assert rec.jump[0] == before.jump[0] * s
        assert rec.receptive_field[0] == before.receptive_field[0] + d * (k - 1) * before.jump[0], name
    assert explain._window(report.layer("3"), 0) == (2, 2, 1)  # the whole 2×2 map
    assert conv.receptive_field == (3, 3)


def test_explain_picks_its_shape_section_by_op_type() -> None:
    """The dispatch table covers every family that has shape arithmetic of its own."""
    assert set(explain._SHAPE_LINES) == {WindowOp, LinearOp, AdaptivePoolOp, PadOp, MeanOp, ResizeOp, AttentionOp}
    report = resnet_inspect.inspect("cifar_resnet20")
    lines = explain.shape_lines(report, report.layer("layer2.0.downsample"))
    # A window with a pad: the window's formula, and no "pooling works per channel" (it adds channels).
    assert any(line.startswith("K = 1, S = 2") for line in lines)
    assert not any("per channel" in line for line in lines)
    assert math.prod(report.layer("layer2.0.downsample").analytic_shape) == 1 * 32 * 16 * 16
