"""The command line, driven through typer's CliRunner: every command, format and error path.

Expected figures come from outside the code under test: torchvision's published table
(conftest), closed-form arithmetic worked here, a real CPU build of the model, or the library's
own ``inspect()`` when a format must be exactly the engine's output.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import resnet_inspect
from resnet_inspect.cli import app
from tests.conftest import flat, row, run_cli as run

runner = CliRunner()
BOX_DRAWING = set("─│┃━┏┓┗┛┡┩╭╮╯╰├└┌┐┘┼╇╈")


# -- help -----------------------------------------------------------------------------------------

def test_help_lists_every_command_and_each_has_an_example() -> None:
    result = run("--help")
    assert result.exit_code == 0
    commands = [c.name or c.callback.__name__ for c in app.registered_commands]
    assert len(commands) >= 8
    examples = result.stdout.split("Examples, one per command:", 1)[1].split("Options:", 1)[0]
    for command in commands:
        assert re.search(rf"^\s+{command}\s", result.stdout, re.M), f"{command} is not listed"
        assert re.search(rf"^\s+resnet-inspect {command}\b", examples, re.M), f"no example of {command}"
        sub = run(command, "--help")
        assert sub.exit_code == 0, sub.output
        assert f"Example: resnet-inspect {command}" in sub.stdout


def test_help_lists_the_commands_by_use_summary_first() -> None:
    """The order people reach for them (issue 16): look, compare, then guard in CI."""
    import typer.main

    group = typer.main.get_command(app)
    listed = group.list_commands(typer.Context(group))
    expected = ["summary", "tree", "explain", "graph", "report", "list", "diff", "snapshot", "check"]
    assert listed[:len(expected)] == expected
    help_text = run("--help").stdout.split("Commands:", 1)[1]
    shown = [line.split()[0] for line in help_text.splitlines() if line.startswith("  ") and line.split()]
    assert shown == listed


def test_version_is_the_installed_distributions_and_needs_no_torch() -> None:
    from importlib.metadata import version

    result = run("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"resnet-inspect {version('resnet-inspect')}"
    code = ("import sys\nsys.argv = ['resnet-inspect', '--version']\nfrom resnet_inspect.cli import app\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert child.stdout.split() == ["resnet-inspect", version("resnet-inspect"), "False"]


def test_help_and_usage_errors_are_plain_when_piped() -> None:
    """Piped (here: captured), typer's help and usage errors are click's plain text, no boxes."""
    for args in (["--help"], ["summary", "--help"], ["summary"]):
        result = run(*args)
        assert result.exit_code == (2 if args == ["summary"] else 0), result.output
        assert not BOX_DRAWING & set(result.output), result.output
    assert "Missing argument" in run("summary").output


# -- summary ----------------------------------------------------------------------------------------

def test_summary_table_is_plain_when_piped_and_shows_the_published_params(torchvision_table) -> None:
    result = run("summary", "resnet18", "--depth", "all", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    params, gmacs = torchvision_table["resnet18"]
    assert f"{params:,}" in out
    macs = int(row(out, "MACs", after="\nTotals").split()[1].replace(",", ""))
    assert round(macs / 1e9, 2) == gmacs
    assert not BOX_DRAWING & set(out), "piped output must not draw boxes"
    assert "\x1b[" not in out, "piped output must not carry escape codes"
    # Every conv of a basic block is listed with its formula check.
    for stage in range(1, 5):
        for conv in ("conv1", "conv2"):
            assert row(out, f"layer{stage}.0.{conv}").rstrip().endswith("✓")
    # The totals panel: depth formula, downsample table, outputs and the convention.
    assert "1 stem conv + 8 blocks × 2 convs + 1 fc = 18" in out
    assert "layer2.0.downsample.0" in row(out, "res3")
    assert "FLOPs = 2 × MACs" in out
    assert "Shape check: all" in out


def _sgr_colours(text: str) -> list[str]:
    """Foreground/background colour parameters of the escape codes in ``text``."""
    colours = []
    for params in re.findall(r"\x1b\[([0-9;]*)m", text):
        for p in params.split(";"):
            if p and (30 <= int(p) <= 48 or 90 <= int(p) <= 107):
                colours.append(p)
    return colours


def test_no_color_removes_colours_but_a_terminal_keeps_its_boxes() -> None:
    coloured = run("summary", "resnet18", "--input", "64", env={"FORCE_COLOR": "1", "NO_COLOR": None, "COLUMNS": "200"})
    plain = run("summary", "resnet18", "--input", "64", env={"FORCE_COLOR": "1", "NO_COLOR": "1", "COLUMNS": "200"})
    assert coloured.exit_code == plain.exit_code == 0
    assert _sgr_colours(coloured.stdout), "a forced terminal should be coloured"
    assert not _sgr_colours(plain.stdout), "NO_COLOR must remove every colour"
    assert BOX_DRAWING & set(plain.stdout), "on a terminal the panels keep their boxes"


def test_summary_depth_folds_costs_into_the_ancestor() -> None:
    result = run("summary", "resnet18", "--input", "64", "--depth", "1")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "layer1.0" not in out.split("Totals")[0]
    # layer1 at 16×16: two basic blocks, each two 3×3 convs 64 → 64 at 16×16 (closed form).
    layer1_macs = 2 * 2 * (64 * 16 * 16) * 64 * 3 * 3
    model = resnet_inspect.build("resnet18")
    layer1_params = sum(p.numel() for p in model.layer1.parameters())
    line = row(out, "layer1")
    assert f"{layer1_macs:,}" in line and f"{layer1_params:,}" in line
    # --depth 2 lists blocks; each block of layer1 holds half of the stage.
    two = run("summary", "resnet18", "--input", "64", "--depth", "2").stdout
    assert f"{layer1_macs // 2:,}" in row(two, "layer1.0")
    assert "layer1.0.conv1" not in two.split("Totals")[0]


def test_summary_json_is_exactly_the_engines_to_dict() -> None:
    result = run("summary", "resnet18", "--input", "96", "--format", "json")
    assert result.exit_code == 0, result.output
    expected = resnet_inspect.inspect("resnet18", 96).to_dict()
    assert json.loads(result.stdout) == json.loads(json.dumps(expected))


@pytest.mark.parametrize("model, depth", [("resnet18", None), ("resnet18", "2"), ("hopenet", None)])
def test_summary_csv_columns_sum_to_the_totals(model: str, depth: str | None) -> None:
    args = ["summary", model, "--format", "csv"] + (["--depth", depth] if depth else [])
    result = run(*args)
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    totals = resnet_inspect.inspect(model).totals
    for column, total in (("params", "params"), ("trainable_params", "trainable_params"), ("buffers", "buffers"),
                          ("macs", "macs"), ("other_ops", "other_ops"), ("output_bytes", "activation_bytes")):
        assert sum(int(r[column]) for r in rows) == totals[total], column
    if model == "hopenet":
        # fc_finetune is built but never called: Linear(2048 + 3, 3) has (2051)·3 + 3 params.
        uncalled = [r for r in rows if r["kind"] == "uncalled"]
        assert [(r["name"], int(r["params"])) for r in uncalled] == [("fc_finetune", 2051 * 3 + 3)]
    else:
        assert sum(int(r["params"]) for r in rows) == 11_689_512


def _markdown_rows(text: str) -> list[list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Layer |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


@pytest.mark.parametrize("model", ["resnet18", "hopenet"])
def test_summary_markdown_columns_sum_to_the_totals(model: str) -> None:
    result = run("summary", model, "--format", "markdown")
    assert result.exit_code == 0, result.output
    rows = _markdown_rows(result.stdout)
    totals = resnet_inspect.inspect(model).totals
    assert sum(int(r[3].replace(",", "")) for r in rows) == totals["params"]
    assert sum(int(r[4].replace(",", "")) for r in rows) == totals["macs"]
    assert "### Depth" in result.stdout and "### Downsampling" in result.stdout


def test_summary_output_file_is_written_and_never_silently_overwritten(tmp_path) -> None:
    target = tmp_path / "r18.json"
    result = run("summary", "resnet18", "--input", "64", "-o", str(target))
    assert result.exit_code == 0, result.output
    assert result.stdout == "", "with --output nothing goes to stdout"
    expected = json.loads(json.dumps(resnet_inspect.inspect("resnet18", 64).to_dict()))
    assert json.loads(target.read_text(encoding="utf-8")) == expected  # format from the extension
    again = run("summary", "resnet18", "--input", "32", "-o", str(target))
    assert again.exit_code == 2
    assert "--force" in flat(again.stderr)
    assert json.loads(target.read_text(encoding="utf-8")) == expected, "the refused write must leave the file alone"
    forced = run("summary", "resnet18", "--input", "32", "-o", str(target), "--force")
    assert forced.exit_code == 0, forced.output
    assert json.loads(target.read_text(encoding="utf-8"))["input_size"] == [1, 3, 32, 32]
    assert [p.name for p in tmp_path.iterdir()] == ["r18.json"], "no temporary file may be left behind"


def test_dash_as_output_means_stdout(tmp_path, monkeypatch) -> None:
    """``-o -`` writes to stdout, as most tools read it, and never a file named ``-``."""
    monkeypatch.chdir(tmp_path)
    summary = run("summary", "resnet18", "--input", "32", "-o", "-", "--format", "json")
    assert summary.exit_code == 0, summary.output
    assert json.loads(summary.stdout)["input_size"] == [1, 3, 32, 32]
    table = run("summary", "resnet18", "--input", "32", "--output", "-")
    assert table.exit_code == 0 and row(table.stdout, "conv1")
    snap = run("snapshot", "resnet18", "--input", "32", "-o", "-")
    assert snap.exit_code == 0, snap.output
    assert json.loads(snap.stdout)["model"] == "resnet18"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix, fmt", [(".csv", "csv"), (".md", "markdown"), (".txt", "table")])
def test_summary_output_format_follows_the_extension(tmp_path, suffix: str, fmt: str) -> None:
    target = tmp_path / f"out{suffix}"
    result = run("summary", "resnet18", "--input", "64", "-o", str(target))
    assert result.exit_code == 0, result.output
    text = target.read_text(encoding="utf-8")
    first = {"csv": "index,name,type", "markdown": "## resnet18", "table": "resnet18, input 1×3×64×64"}[fmt]
    assert text.startswith(first)


def test_summary_output_to_an_unwritable_place_exits_2(tmp_path) -> None:
    missing = run("summary", "resnet18", "-o", str(tmp_path / "no" / "such" / "dir" / "out.json"))
    assert missing.exit_code == 2 and "does not exist" in flat(missing.stderr)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    under_file = run("summary", "resnet18", "--input", "32", "-o", str(a_file / "out.json"))
    assert under_file.exit_code == 2 and "Cannot write" in flat(under_file.stderr)
    a_dir = run("summary", "resnet18", "-o", str(tmp_path))
    assert a_dir.exit_code == 2 and "is a directory" in flat(a_dir.stderr)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write into a read-only directory")
def test_summary_output_into_a_read_only_directory_exits_2(tmp_path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = run("summary", "resnet18", "-o", str(locked / "out.json"))
    finally:
        locked.chmod(0o700)
    assert result.exit_code == 2 and "not writable" in flat(result.stderr)


def test_summary_fvcore_counter_on_resnet18() -> None:
    result = run("summary", "resnet18", "--counter", "fvcore", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["counter"] == "fvcore"
    assert "fvcore" in data["convention"]
    assert sum(layer["macs"] for layer in data["layers"]) == data["totals"]["macs"]
    conv1 = next(layer for layer in data["layers"] if layer["name"] == "conv1")
    assert conv1["macs"] == (64 * 112 * 112) * 3 * 7 * 7  # fvcore agrees on a conv: one per multiply-add
    # fvcore adds batch-norm and pooling work to the conv + fc MACs of torchvision's table.
    assert data["totals"]["macs"] > resnet_inspect.inspect("resnet18").totals["macs"]
    assert "Counting" not in result.stderr, "no spinner when stderr is not a terminal"


def test_summary_torch_counter_gives_the_conv_and_linear_macs() -> None:
    result = run("summary", "resnet18", "--counter", "torch", "--input", "64", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    layers = {layer["name"]: layer for layer in data["layers"]}
    assert data["counter"] == "torch"
    assert layers["conv1"]["macs"] == (64 * 32 * 32) * 3 * 7 * 7  # torch counts 2 per multiply-add, halved
    assert layers["fc"]["macs"] == 1000 * 512
    assert layers["bn1"]["macs"] == 0 and sum(layer["macs"] for layer in data["layers"]) == data["totals"]["macs"]


def test_summary_batch_size_from_a_four_number_input() -> None:
    two = json.loads(run("summary", "resnet18", "--input", "2x3x64x64", "-f", "json").stdout)
    one = json.loads(run("summary", "resnet18", "--input", "3x64x64", "-f", "json").stdout)
    assert two["input_size"] == [2, 3, 64, 64] and one["input_size"] == [1, 3, 64, 64]
    conv1 = next(layer for layer in two["layers"] if layer["name"] == "conv1")
    assert conv1["output_shapes"] == [[2, 64, 32, 32]]
    assert two["totals"]["macs"] == 2 * one["totals"]["macs"] and two["totals"]["params"] == one["totals"]["params"]


def test_family_flags_on_the_command_line_build_timms_resnet50d() -> None:
    result = run("summary", "resnet50", "--stem", "deep", "--avg-down", "-f", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["totals"]["params"] == 25_576_264  # timm's model card for resnet50d


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


def test_list_names_where_each_variant_comes_from() -> None:
    result = run("list")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    expected = {"resnet50": "torchvision", "hopenet": "Ruiz et al. 2018", "resnet50_caffe": "MSRA Caffe",
                "retinanet_r50_fpn": "maskrcnn-benchmark", "cifar_resnet20": "He et al. 2015", "resnet50d": "Bag of Tricks",
                "resnetv2_50": "Identity Mappings", "seresnet50": "SENet"}
    for name, source in expected.items():
        assert source in re.search(r"\s(?:224|32|512) (.*)$", rows[name]).group(1), rows[name]


def test_summary_real_forward_gives_the_same_records() -> None:
    real = run("summary", "resnet18", "--input", "64", "--real", "-f", "json")
    meta = run("summary", "resnet18", "--input", "64", "-f", "json")
    assert real.exit_code == meta.exit_code == 0
    a, b = json.loads(real.stdout), json.loads(meta.stdout)
    assert (a["device"], b["device"]) == ("cpu", "meta")
    assert a["totals"] == b["totals"]
    assert [r["output_shapes"] for r in a["layers"]] == [r["output_shapes"] for r in b["layers"]]


def test_summary_fpn_lists_every_level_with_its_stride() -> None:
    result = run("summary", "retinanet_r50_fpn", "--input", "800x1333", "--pad-to", "32", "--depth", "2")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "padded from 1×3×800×1333" in flat(out)
    height, width = 800, 1344  # 1333 padded up to a multiple of 32
    for level in range(3, 8):
        cells = row(out, f"p{level}").split()
        h, w = height, width
        for _ in range(level):
            h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1  # each stride-2 window: ⌊(I − 1)/2⌋ + 1
        assert cells[1:3] == [f"1×256×{h}×{w}", str(2 ** level)]


@pytest.mark.parametrize("model", [["retinanet_r50_fpn"], ["maskrcnn_r50_fpn"], ["resnet50", "--fpn", "maskrcnn"]],
                         ids=lambda m: " ".join(m))
def test_every_command_traces_a_pyramid_at_one_default_input(model: list[str], tmp_path, monkeypatch) -> None:
    """One default per preset, from the spec, whatever the command (issue 16: summary, graph and list
    said 224 where snapshot said 512)."""
    from resnet_inspect.analysis import inspect as engine
    from resnet_inspect.render.variants_table import variant_rows

    spec = resnet_inspect.get_spec(model[0], **({"fpn": model[2]} if len(model) > 1 else {}))
    side = spec.default_input
    expected = [1, 3, side, side]
    traced = []
    real_inspect = engine.inspect

    def spy(*args, **kwargs):
        report = real_inspect(*args, **kwargs)
        traced.append(list(report.input_size))
        return report

    monkeypatch.setattr(engine, "inspect", spy)
    monkeypatch.chdir(tmp_path)
    summary = run("summary", *model, "-f", "json")
    assert summary.exit_code == 0, summary.output
    assert json.loads(summary.stdout)["input_size"] == expected
    diff = run("diff", *model[:1], *model[:1], "-f", "json", *(["--a-fpn", model[2], "--b-fpn", model[2]]
                                                                   if len(model) > 1 else []))
    assert diff.exit_code == 0, diff.output
    snap = run("snapshot", *model, "-o", "snap.json")
    assert snap.exit_code == 0, snap.output
    assert json.loads((tmp_path / "snap.json").read_text())["input_size"] == expected
    traced.clear()
    conv = next(r["name"] for r in json.loads(summary.stdout)["layers"] if r["type"] == "Conv2d")
    for command in (["tree", *model], ["explain", *model, conv], ["graph", *model, "g.dot"],
                    ["report", *model, "-o", "r.html"]):
        result = run(*command)
        assert result.exit_code == 0, (command, result.output)
    assert traced and all(size == expected for size in traced), traced
    listed = {row_spec.name: row_spec.default_input for row_spec, _ in variant_rows()}
    if len(model) == 1:  # list shows each preset at the input every other command uses
        assert listed[model[0]] == side == 512


def test_summary_builder_flags_reach_the_model() -> None:
    result = run("summary", "resnet50", "--stride-in-1x1", "--depth", "1")
    assert result.exit_code == 0, result.output
    assert "layer2.0.conv1 (1×1/2)" in row(result.stdout, "res3")


@pytest.mark.parametrize("command", [["summary"], ["tree"], ["explain", "{model}", "conv1"]])
def test_titles_name_the_build_options(command: list[str]) -> None:
    args = [a.replace("{model}", "resnet50") for a in command] if len(command) > 1 else [*command, "resnet50"]
    result = run(*args, "--stride-in-1x1", "--output-stride", "16")
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert "resnet50 (output_stride=16, stride_in_1x1=True)" in first, first


def test_summary_of_a_user_factory(tmp_path, monkeypatch) -> None:
    (tmp_path / "my_tiny_net.py").write_text(
        "from torch import nn\n\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))\n")
    monkeypatch.chdir(tmp_path)
    result = run("summary", "my_tiny_net:build", "--input", "32", "-f", "csv")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(result.stdout))}
    assert int(rows["0"]["macs"]) == (8 * 16 * 16) * 3 * 3 * 3
    assert int(rows["2"]["macs"]) == (4 * 16 * 16) * 8
    assert sum(int(r["params"]) for r in rows.values()) == (3 * 9 * 8 + 8) + (8 * 4 + 4)
    flags = run("summary", "my_tiny_net:build", "--stride-in-1x1")
    assert flags.exit_code == 2 and "apply to variant names" in flat(flags.stderr)


# -- tree -------------------------------------------------------------------------------------------

def test_tree_shows_subtree_params_and_collapses_with_depth(torchvision_table) -> None:
    result = run("tree", "resnet18")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("resnet18") and f"{torchvision_table['resnet18'][0]:,} params" in lines[0]
    model = resnet_inspect.build("resnet18")
    for name in ("layer1", "layer3.1", "layer4.0.downsample"):
        module = model.get_submodule(name)
        line = next(line for line in lines if line.split()[0] == name)
        assert f"{sum(p.numel() for p in module.parameters()):,} params" in line
    assert not BOX_DRAWING & set(result.stdout)
    collapsed = run("tree", "resnet18", "--depth", "1")
    assert collapsed.exit_code == 0
    assert "layer1.0" not in collapsed.stdout
    hidden = len(list(model.layer1.modules())) - 1
    assert f"(+{hidden} modules)" in next(line for line in collapsed.stdout.splitlines() if line.split()[0] == "layer1")


def test_tree_marks_modules_that_forward_never_calls() -> None:
    result = run("tree", "hopenet", "--depth", "1")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if line.split()[0] == "fc_finetune")
    assert "never called" in line and f"{2051 * 3 + 3:,} params" in line


# -- error paths ------------------------------------------------------------------------------------

MODEL_COMMANDS = [["summary"], ["tree"], ["explain", "{model}", "conv1"], ["diff", "{model}", "resnet18"]]


def _command(template: list[str], model: str) -> list[str]:
    if len(template) == 1:
        return [template[0], model]
    return [part.format(model=model) for part in template]


@pytest.mark.parametrize("template", MODEL_COMMANDS, ids=lambda t: t[0])
def test_unknown_model_exits_2_with_did_you_mean(template: list[str]) -> None:
    result = run(*_command(template, "resnt50"))
    assert result.exit_code == 2
    message = flat(result.stderr)
    assert "Did you mean" in message and "resnet50" in message
    assert "Traceback" not in result.output


@pytest.mark.parametrize("size", ["abc", "0", "1x2x3x4x5", "224x", "-3"])
@pytest.mark.parametrize("template", MODEL_COMMANDS, ids=lambda t: t[0])
def test_malformed_input_exits_2(template: list[str], size: str) -> None:
    result = run(*_command(template, "resnet18"), f"--input={size}")
    assert result.exit_code == 2, result.output
    assert "input size" in flat(result.stderr).lower()
    assert "Traceback" not in result.output


def test_an_input_too_small_names_the_layer() -> None:
    result = run("summary", "hopenet", "--input", "128")
    assert result.exit_code == 2
    message = flat(result.stderr)
    assert "avgpool" in message
    size = 128
    for _ in range(5):  # stem conv, max pool and three strided stages: ⌊(I − 1)/2⌋ + 1 each
        size = (size - 1) // 2 + 1
    assert size == 4 and f"{size}×{size}" in message and f"({size} − 7 + 2·0)/7" in message


@pytest.mark.parametrize("target, words", [("no_such_package_xyz:build", "Cannot import"),
                                           ("resnet_inspect.variants:no_such_factory", "no callable")])
def test_a_missing_factory_exits_2(target: str, words: str) -> None:
    result = run("summary", target)
    assert result.exit_code == 2
    assert words in flat(result.stderr)


@pytest.mark.parametrize("args, words", [
    (["summary", "resnet18", "--format", "yaml"], "Unknown format"),
    (["summary", "resnet18", "--depth", "0"], "--depth must be"),
    (["summary", "resnet18", "--counter", "nope"], "Unknown counter"),
    (["tree", "resnet18", "--depth", "0"], "--depth must be"),
    (["diff", "resnet18", "resnet18", "--format", "csv"], "Unknown format"),
    (["diff", "resnet50", "resnet50", "--b-norm", "gn"], "Unknown norm"),
    (["summary", "resnet18", "--fpn", "yolo"], "--fpn must be"),
    (["summary", "retinanet_r50_fpn", "--pad-to", "0"], "--pad-to must be a positive integer, not 0"),
    (["graph", "retinanet_r50_fpn", "--pad-to", "-32", "x.svg"], "--pad-to must be a positive integer"),
])
def test_bad_options_exit_2(args: list[str], words: str) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert words in flat(result.stderr)


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_a_reader_that_stops_early_is_not_an_error(fmt: str) -> None:
    """`resnet-inspect summary ... | head -1`: the closed pipe ends the command quietly with exit 0
    (exit 1 means "differences found"). ResNet-152's output is larger than a pipe's buffer, so
    the writer really meets the closed end."""
    proc = subprocess.Popen([sys.executable, "-m", "resnet_inspect", "summary", "resnet152", "--format", fmt],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline()
    proc.stdout.close()
    errors = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0, errors
    assert "Error" not in errors and "Traceback" not in errors



def test_nothing_is_downloaded(tmp_path, monkeypatch) -> None:
    """docs/security.md: no network request, for a variant, a checkpoint and a snapshot check alike."""
    import socket

    import torch

    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args)
        raise OSError("network access attempted")

    for name in ("connect", "connect_ex", "sendto"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.chdir(tmp_path)
    torch.save(resnet_inspect.build("cifar_resnet20").state_dict(), tmp_path / "c20.pth")
    for args in (["summary", "resnet18", "--depth", "1"], ["summary", "c20.pth", "--depth", "1"],
                 ["snapshot", "c20.pth", "-o", "c20.json"], ["check", "c20.json"]):
        result = run(*args)
        assert result.exit_code == 0, (args, result.output)
    assert attempts == []
