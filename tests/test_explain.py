"""``resnet-inspect explain`` (resnet_inspect.render.explain): each derivation checked against the
window formula, MAC products and receptive-field steps worked out here in closed form."""
from __future__ import annotations

import math
import re

import pytest

from tests.conftest import flat, run_cli as run


def closed_form_rf(kernels_strides: list[tuple[int, int]]) -> tuple[int, int]:
    """Receptive field and jump of a chain of windows: r += (k − 1)·j, then j *= s."""
    r, j = 1, 1
    for k, s in kernels_strides:
        r += (k - 1) * j
        j *= s
    return r, j


def _rf_before_layer2(stride_in_1x1: bool) -> tuple[int, int]:
    """Field and jump entering layer2.0.conv2 of resnet50: stem, layer1's 3×3s, then layer2.0.conv1."""
    chain = [(7, 2), (3, 2)] + [(3, 1)] * 3 + [(1, 2 if stride_in_1x1 else 1)]
    return closed_form_rf(chain)


@pytest.mark.parametrize("stride_in_1x1", [False, True])
def test_explain_a_conv_of_layer2_0(stride_in_1x1: bool) -> None:
    flag = ["--stride-in-1x1"] if stride_in_1x1 else []
    result = run("explain", "resnet50", "layer2.0.conv2", *flag)
    assert result.exit_code == 0, result.output
    out = result.stdout
    size_in = 28 if stride_in_1x1 else 56
    stride = 1 if stride_in_1x1 else 2
    size_out = (size_in - 3 + 2 * 1) // stride + 1
    assert size_out == 28
    assert f"H: ⌊({size_in} − 3 + 2·1)/{stride}⌋ + 1 = {size_out}" in out
    assert f"K = 3, S = {stride}, P = 1, D = 1" in out
    macs = (1 * 128 * 28 * 28) * 128 * 3 * 3
    assert f"= (1×128×28×28 = {128 * 28 * 28:,}) × 128 × 3 × 3" in out and f"= {macs:,}" in out
    r_in, j_in = _rf_before_layer2(stride_in_1x1)
    assert f"r_out = r_in + (k_eff − 1)·j_in = {r_in} + (3 − 1)·{j_in} = {r_in + 2 * j_in}" in out
    assert f"j_out = j_in·S = {j_in}·{stride} = {j_in * stride}" in out
    carrier = "layer2.0.conv1 (1×1" if stride_in_1x1 else "layer2.0.conv2 (3×3"
    assert f"In layer2.0 the stride sits in {carrier}, stride 2)" in flat(out)
    verdict = "It does not downsample" if stride_in_1x1 else "It downsamples: stride 2 takes 56×56 to 28×28"
    assert verdict in flat(out)


def test_explain_the_strided_1x1_and_the_projection() -> None:
    conv1 = run("explain", "resnet50", "layer2.0.conv1", "--stride-in-1x1")
    assert conv1.exit_code == 0, conv1.output
    text = flat(conv1.stdout)
    assert f"= {(128 * 28 * 28) * 256:,}" in text
    # The alternative placement: conv1 at full resolution costs four times as much here.
    assert f"{(128 * 56 * 56) * 256:,} MACs instead of {(128 * 28 * 28) * 256:,}" in text
    projection = run("explain", "resnet50", "layer2.0.downsample.0")
    assert projection.exit_code == 0
    assert "projection shortcut of layer2.0" in flat(projection.stdout)
    assert "stride 2 ≠ 1 and channels change 256 → 512" in flat(projection.stdout)


def test_explain_a_pooling_layer() -> None:
    result = run("explain", "resnet50", "maxpool")
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert "H: ⌊(112 − 3 + 2·1)/2⌋ + 1 = 56" in out
    assert f"Other ops: {64 * 56 * 56 * 9:,} = {64 * 56 * 56:,} outputs × 3·3" in out
    r, j = closed_form_rf([(7, 2), (3, 2)])
    assert f"= 7 + (3 − 1)·2 = {r}" in out and f"j_out = j_in·S = 2·2 = {j}" in out
    assert "MACs = 0" in out
    caffe = flat(run("explain", "resnet50", "maxpool", "--caffe-maxpool", "--input", "225").stdout)
    conv1 = (225 + 2 * 3 - 7) // 2 + 1
    assert f"H: ⌈({conv1} − 3 + 2·0)/2⌉ + 1 = {math.ceil((conv1 - 3) / 2) + 1}" in caffe
    assert f"would give {(conv1 + 2 - 3) // 2 + 1}×{(conv1 + 2 - 3) // 2 + 1} here, a different size" in caffe


def test_explain_picks_a_repeat_call_as_the_summary_names_it() -> None:
    summary = run("summary", "resnet18", "--depth", "all")
    assert "layer1.0.relu (call 2)" in summary.stdout  # torchvision's block reuses its one ReLU
    first = run("explain", "resnet18", "layer1.0.relu")
    second = run("explain", "resnet18", "layer1.0.relu (call 2)")
    assert first.exit_code == second.exit_code == 0
    assert "this is call 1" in flat(first.stdout) and "this is call 2" in flat(second.stdout)
    # The first call follows bn1, the second the residual add: the receptive fields differ.
    rf = [re.search(r"sees a (\d+)×\1 patch", flat(r.stdout)).group(1) for r in (first, second)]
    assert rf[0] != rf[1]
    third = run("explain", "resnet18", "layer1.0.relu (call 3)")
    assert third.exit_code == 2 and "(call 1) to (call 2)" in flat(third.stderr)


def test_explain_the_squeeze_of_a_squeeze_excitation_block() -> None:
    result = run("explain", "seresnet50", "layer1.0.se:mean")
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert "input 1×256×56×56 → output 1×256×1×1" in out and "global average pool" in out
    assert "analytic 1×256×1×1 ✓" in out and "element-wise" not in out
    # Its input is layer1.0's output: field 7 (conv1) + 2·2 (max pool) + 2·4 (the 3×3) = 19 at
    # jump 4; one window over the whole 56×56 map adds 55 steps of 4.
    assert f"r_out = r_in + (k_eff − 1)·j_in = 19 + (56 − 1)·4 = {19 + 55 * 4}" in out
    assert "only gates its channel" in out


def test_explain_a_stride_1_option_a_shortcut_does_not_call_it_upsampling() -> None:
    result = run("explain", "resnet50", "--shortcut", "A", "layer1.0.downsample")
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert "upsampl" not in out and "subsample" not in out
    assert f"C: 64 + {(256 - 64) // 2} + {(256 - 64) // 2} = 256" in out and "only pads zero channels" in out


def test_explain_a_same_padded_pool_credits_the_padding_not_the_corollary() -> None:
    result = run("explain", "resnet50d", "--output-stride", "16", "layer4.0.downsample.0")
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    # A 2×2 window at stride 1 keeps 14×14 only because one pixel is padded on the right/bottom:
    # ⌈(14 + 1 − 2)/1⌉ + 1 = 14; P = (K − 1)/2 would be 0.5, so "same" padding does not apply.
    assert "H: 14 + 0 + 1 = 15" in out and "H: ⌈(15 − 2 + 2·0)/1⌉ + 1 = 14" in out
    assert "explicit padding before the window" in out and "corollary" not in out


def test_explain_knows_the_blocks_of_timms_pre_activation_naming() -> None:
    result = run("explain", "resnetv2_50", "stages.1.blocks.0.conv2")
    assert result.exit_code == 0, result.output
    assert "In stages.1.blocks.0 the stride sits in stages.1.blocks.0.conv2 (3×3, stride 2)" in flat(result.stdout)


def test_explain_unknown_layer_suggests_names() -> None:
    result = run("explain", "resnet50", "layer2.0.cnv2")
    assert result.exit_code == 2
    message = flat(result.stderr)
    assert "Did you mean" in message and "layer2.0.conv2" in message
    fpn = run("explain", "retinanet_r50_fpn", "layer2.0.conv2", "--input", "512")
    assert fpn.exit_code == 2 and "body.layer2.0.conv2" in flat(fpn.stderr)
