"""Property tests: the window formula agrees with torch, or both reject the input."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import resnet_inspect as ri
from resnet_inspect.analysis.shapes import Window, window_output, window_working


@st.composite
def layers(draw: st.DrawFn) -> nn.Module:
    kind = draw(st.sampled_from(["conv", "maxpool", "avgpool"]))
    k = draw(st.integers(1, 7))
    s = draw(st.integers(1, 4))
    p = draw(st.integers(0, 4))
    if kind == "conv":
        d = draw(st.integers(1, 3))
        return nn.Conv2d(2, 3, k, stride=s, padding=p, dilation=d)
    ceil = draw(st.booleans())
    if kind == "maxpool":
        return nn.MaxPool2d(k, stride=s, padding=p, dilation=draw(st.integers(1, 3)), ceil_mode=ceil)
    return nn.AvgPool2d(k, stride=s, padding=p, ceil_mode=ceil)


def _torch_shape(layer: nn.Module, size: tuple[int, ...]) -> tuple[int, ...] | None:
    try:
        with torch.no_grad():
            return tuple(layer(torch.zeros(size)).shape)
    except RuntimeError:
        return None


@settings(max_examples=300, deadline=None)
@given(layer=layers(), h=st.integers(1, 40), w=st.integers(1, 40))
def test_analytic_shape_equals_torch_or_both_reject(layer: nn.Module, h: int, w: int) -> None:
    size = (1, 2, h, w)
    actual = _torch_shape(layer, size)
    try:
        report = ri.inspect(nn.Sequential(layer), size)
    except ri.InputError:
        assert actual is None, f"the engine rejected {layer} at {h}x{w}, torch gives {actual}"
        return
    rec = report.layer("0")
    assert actual is not None, f"torch rejects {layer} at {h}x{w}, the engine accepted {rec.analytic_shape}"
    assert rec.analytic_shape == actual and rec.shape_ok


@pytest.mark.parametrize("size,window,expected", [
    (224, Window(7, 2, 3), "⌊(224 − 7 + 2·3)/2⌋ + 1 = 112"),   # He et al. 2016's stem conv
    (112, Window(3, 2, 0, ceil_mode=True), "⌈(112 − 3 + 2·0)/2⌉ + 1 = 56"),  # Caffe's pool (MSRA release)
    (56, Window(3, 1, 2, dilation=2), "⌊(56 − (2·(3−1)+1) + 2·2)/1⌋ + 1 = 56"),
])
def test_working_is_the_formula_with_numbers(size: int, window: Window, expected: str) -> None:
    assert window_working(size, window) == expected
    assert window_output(size, window) == int(expected.rsplit("= ", 1)[1])


def test_seed_004_corollaries() -> None:
    # Dumoulin & Visin 2016: with stride 1, K=3/P=1 and K=1/P=0 keep the size.
    for size in range(1, 60):
        assert window_output(size, Window(3, 1, 1)) == size
        assert window_output(size, Window(1, 1, 0)) == size
