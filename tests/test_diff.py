"""``resnet-inspect diff`` and its API (resnet_inspect.render.diff): which layers are paired, added,
removed or changed, and the totals' deltas against closed-form arithmetic and published tables."""
from __future__ import annotations

import json

import resnet_inspect
import resnet_inspect as ri
from tests.conftest import flat, row, run_cli as run


def test_diff_stride_placement_changes_conv1_and_conv2_of_each_first_block() -> None:
    result = run("diff", "resnet50", "resnet50", "--b-stride-in-1x1")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for stage in (2, 3, 4):
        conv1 = next(line for line in out.splitlines() if f" layer{stage}.0.conv1 " in line)
        conv2 = next(line for line in out.splitlines() if f" layer{stage}.0.conv2 " in line)
        assert conv1.split()[0] == conv2.split()[0] == "~"
        assert "stride: 1 → 2" in conv1 and "stride: 2 → 1" in conv2
    assert "layer1.0.conv1" not in out, "layer1 has no stride: nothing changes there"
    # conv1 of layer2-4 reads a 56², 28², 14² map: moving the stride divides its output by 4.
    saved = sum(size * size * width * cin * 3 // 4
                for size, width, cin in ((56, 128, 256), (28, 256, 512), (14, 512, 1024)))
    assert f"-{saved:,}" in row(out, "MACs", after="\nTotals")
    data = json.loads(run("diff", "resnet50", "resnet50", "--b-stride-in-1x1", "-f", "json").stdout)
    macs = next(t for t in data["totals"] if t["quantity"] == "MACs")
    assert macs["delta"] == -saved
    assert {(d["name"], d["status"]) for d in data["layers"]} >= {(f"layer{s}.0.conv{c}", "changed")
                                                                  for s in (2, 3, 4) for c in (1, 2)}


def test_diff_resnet50_and_resnext50(torchvision_table) -> None:
    result = run("diff", "resnet50", "resnext50_32x4d")
    assert result.exit_code == 0, result.output
    out = result.stdout
    params_a, params_b = torchvision_table["resnet50"][0], torchvision_table["resnext50_32x4d"][0]
    line = row(out, "Params", after="\nTotals")
    assert f"{params_a:,}" in line and f"{params_b:,}" in line and f"{params_b - params_a:+,}" in line
    conv2 = next(line for line in out.splitlines() if " layer1.0.conv2 " in line)
    assert "groups: 1 → 32" in conv2
    # ResNeXt's grouped 3×3: 128 channels in 32 groups, each output reads 4 channels.
    assert f"{(64 * 56 * 56) * 64 * 9:,} → {(128 * 56 * 56) * 4 * 9:,}" in conv2


def test_diff_resnet50_resnet50d_is_exactly_the_stem_and_the_shortcuts() -> None:
    result = run("diff", "resnet50", "resnet50d", "-f", "json")
    assert result.exit_code == 0, result.output
    layers = json.loads(result.stdout)["layers"]
    status = {(d["status"], d["name"]) for d in layers}
    # ResNet-C: the 7×7 conv1 becomes three 3×3 convs with BN and ReLU (timm's conv1.0 ... conv1.6).
    stem = {("removed", "conv1")} | {("added", f"conv1.{i}") for i in range(7)}
    # ResNet-D: each projection gains an average pool in front (an Identity where the stride is 1),
    # so its conv and BN move one index down (a renumbering alone is no change); the conv of
    # layer2..4 loses its stride to the pool.
    shortcuts = {("added", "layer1.0.downsample.0")}
    for stage in range(2, 5):
        prefix = f"layer{stage}.0.downsample"
        shortcuts |= {("added", f"{prefix}.0"), ("changed", f"{prefix}.0")}
    assert status == stem | shortcuts
    convs = {d["name"]: d["changes"] for d in layers if d["status"] == "changed" and d["a"]["type"] == "Conv2d"}
    assert "layer1.0.downsample.0" not in convs
    for stage, size in ((2, 28), (3, 14), (4, 7)):
        changes = convs[f"layer{stage}.0.downsample.0"]
        assert changes[0] == f"now layer{stage}.0.downsample.1" and "stride: 2 → 1" in changes
        assert any(c.startswith("input:") and c.endswith(f"×{size}×{size}") for c in changes)
    added = {d["name"]: d["b"]["type"] for d in layers if d["status"] == "added" and "downsample" in d["name"]}
    assert added == {"layer1.0.downsample.0": "Identity", **{f"layer{s}.0.downsample.0": "AvgPool2d" for s in (2, 3, 4)}}


def test_diff_exit_code_flag_and_per_side_flags() -> None:
    same = run("diff", "resnet18", "resnet18", "--exit-code")
    assert same.exit_code == 0 and "All" in same.stdout
    different = run("diff", "resnet18", "resnet18", "--b-input", "128", "--exit-code")
    assert different.exit_code == 1
    both = run("diff", "resnet50", "resnet50", "--a-norm", "frozen_bn", "-f", "json")
    assert both.exit_code == 0
    data = json.loads(both.stdout)
    frozen = next(t for t in data["totals"] if t["quantity"] == "Trainable params")
    bn_params = sum(m.weight.numel() + m.bias.numel() for m in resnet_inspect.build("resnet50").modules()
                    if type(m).__name__ == "BatchNorm2d")
    assert frozen["delta"] == bn_params, "frozen BN holds its scale and shift as buffers, not parameters"


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
