"""Shape snapshots as a CI check (resnet_inspect.snapshot): ``snapshot``, ``check``, the file format,
diffs, errors and atomic updates, and the reader fuzzed with any text, bytes or damaged document.

Expected figures come from outside the code under test: closed-form shape and MAC arithmetic
worked here, torchvision's published parameter counts (conftest), and the column sums of the file.
Every variant is traced in-process (meta device), once for the snapshot and once for the check.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import resnet_inspect
from resnet_inspect import snapshot as snapshots
from resnet_inspect.cli import app
from tests.conftest import FUZZ

REPO = Path(__file__).resolve().parents[1]
SHAPES = REPO / "shapes"
runner = CliRunner()


def run(*args: str) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def flat(text: str) -> str:
    return " ".join(text.split())


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """O = ⌊(I + 2P − K)/S⌋ + 1, worked here independently of the engine."""
    return (size + 2 * padding - kernel) // stride + 1


# -- dogfood: shapes/ holds a current snapshot of every variant ------------------------------------

def missing_snapshots(names: list[str], directory: Path) -> list[str]:
    return [name for name in names if not (directory / f"{name}.json").is_file()]


def test_every_variant_has_a_snapshot() -> None:
    missing = missing_snapshots(resnet_inspect.variants(), SHAPES)
    commands = "; ".join(f"resnet-inspect snapshot {name} -o shapes/{name}.json" for name in missing)
    assert not missing, f"Variants without a snapshot in shapes/: {', '.join(missing)}. Write them: {commands}"


def test_the_missing_snapshot_check_can_fail(tmp_path: Path) -> None:
    (tmp_path / "resnet18.json").write_text("{}")
    assert missing_snapshots(["resnet18", "resnet_new"], tmp_path) == ["resnet_new"]


@pytest.fixture(scope="session")
def every_variant() -> dict[str, snapshots.Snapshot]:
    """One in-process snapshot of every variant at its default input."""
    return {name: snapshots.take(name) for name in resnet_inspect.variants()}


def test_round_trip_every_variant(every_variant: dict[str, snapshots.Snapshot], tmp_path: Path) -> None:
    files = []
    for name, snap in every_variant.items():
        assert snapshots.write(snap, tmp_path / f"{name}.json")
        files.append(tmp_path / f"{name}.json")
    result = run("check", *files)
    assert result.exit_code == 0, result.output
    assert f"Checked {len(files)} snapshot files: {len(files)} match, 0 differ" in result.output
    for name in every_variant:
        assert f"✓ {tmp_path / name}.json matches {name} at" in result.output


def test_committed_snapshots_are_current(every_variant: dict[str, snapshots.Snapshot]) -> None:
    from resnet_inspect.render.snapshot_diff import plain_diff

    stale = {}
    for name, snap in every_variant.items():
        path = SHAPES / f"{name}.json"
        if path.is_file():
            diff = snapshots.compare(snapshots.load(path), snap)
            if not diff.ok:
                stale[name] = plain_diff(diff, limit=5)
            else:
                assert path.read_text(encoding="utf-8") == snapshots.dumps(snap), f"{path} is not in canonical form"
    assert not stale, ("Out-of-date snapshots (if intended, run `resnet-inspect check --update shapes/*.json`):\n"
                       + "\n".join(f"{name}: {text}" for name, text in stale.items()))


def test_columns_sum_to_the_totals(every_variant: dict[str, snapshots.Snapshot]) -> None:
    for name, snap in every_variant.items():
        assert sum(layer["macs"] for layer in snap.layers) == snap.totals["macs"], name
        gap = snap.totals["params"] - sum(layer["params"] for layer in snap.layers)
        if gap:  # modules the forward never calls (Hopenet's fc_finetune) hold the rest
            uncalled = resnet_inspect.inspect(name, snap.input_size).uncalled
            assert gap == sum(module["params"] for module in uncalled), name


def test_snapshot_figures_match_published_tables(every_variant: dict[str, snapshots.Snapshot],
                                                 torchvision_table: dict[str, tuple[int, float]]) -> None:
    for name, (params, gmacs) in torchvision_table.items():
        snap = every_variant[name]
        assert snap.input_size == (1, 3, 224, 224)
        assert snap.totals["params"] == params, name
        assert round(snap.totals["macs"] / 1e9, 2) == pytest.approx(gmacs, abs=0.011), name


# -- the file format -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def resnet18() -> snapshots.Snapshot:
    return snapshots.take("resnet18", 224)


@pytest.fixture
def r18_file(resnet18: snapshots.Snapshot, tmp_path: Path) -> Path:
    path = tmp_path / "resnet18.json"
    snapshots.write(resnet18, path)
    return path


def test_file_is_stable_and_readable(resnet18: snapshots.Snapshot, r18_file: Path, tmp_path: Path) -> None:
    text = r18_file.read_text(encoding="utf-8")
    assert text.endswith("}\n") and not text.endswith("\n\n")
    doc = json.loads(text)
    assert list(doc) == sorted(doc)
    assert doc["schema_version"] == snapshots.SCHEMA_VERSION and doc["model"] == "resnet18"
    assert doc["options"] == {} and doc["input_size"] == [1, 3, 224, 224]
    lines = text.splitlines()
    for layer in doc["layers"]:  # one layer per line, its keys sorted
        line = json.dumps(layer, sort_keys=True, separators=(", ", ": "))
        assert any(candidate.strip().rstrip(",") == line for candidate in lines)
        assert list(layer) == sorted(layer)
    assert len(lines) == len(doc["layers"]) + len(doc) + 3  # braces, "layers": [ and its ]
    assert str(tmp_path) not in text and os.getcwd() not in text
    assert not re.search(r"\d{4}-\d\d-\d\d", text)  # no timestamps
    again = snapshots.take("resnet18", 224)  # a second trace gives the same bytes
    assert snapshots.dumps(again) == text


def test_file_records_independent_figures(resnet18: snapshots.Snapshot) -> None:
    layers = {snapshots.layer_key(layer): layer for layer in resnet18.layers}
    h1 = conv_out(224, 7, 2, 3)
    h2 = conv_out(h1, 3, 2, 1)
    assert layers["conv1", 0]["output_shapes"] == [[1, 64, h1, h1]]
    assert layers["conv1", 0]["macs"] == 64 * 3 * 7 * 7 * h1 * h1
    assert layers["layer1.0.conv1", 0]["output_shapes"] == [[1, 64, h2, h2]]
    assert layers["layer1.0.conv1", 0]["macs"] == 64 * 64 * 3 * 3 * h2 * h2
    assert layers["fc", 0]["params"] == 512 * 1000 + 1000
    assert resnet18.outputs == {"output": [1, 1000]}


def test_snapshot_command_writes_options_and_input(tmp_path: Path) -> None:
    out = tmp_path / "r18_10.json"
    result = run("snapshot", "resnet18", "--num-classes", "10", "--input", "64x96", "-o", out)
    assert result.exit_code == 0, result.output
    assert f"to {out}" in flat(result.output)
    doc = json.loads(out.read_text())
    assert doc["options"] == {"num_classes": 10} and doc["input_size"] == [1, 3, 64, 96]
    fc = next(layer for layer in doc["layers"] if layer["name"] == "fc")
    assert fc["params"] == 512 * 10 + 10 and fc["output_shapes"] == [[1, 10]]
    h, w = conv_out(64, 7, 2, 3), conv_out(96, 7, 2, 3)
    conv1 = next(layer for layer in doc["layers"] if layer["name"] == "conv1")
    assert conv1["output_shapes"] == [[1, 64, h, w]]
    assert run("check", out).exit_code == 0
    refused = run("snapshot", "resnet18", "-o", out)
    assert refused.exit_code == 2 and "--force" in refused.output
    assert run("snapshot", "resnet18", "-o", out, "--force").exit_code == 0
    assert json.loads(out.read_text())["options"] == {}


def test_snapshot_command_to_stdout_and_defaults() -> None:
    result = run("snapshot", "cifar_resnet20")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["input_size"] == [1, 3, 32, 32] and doc["outputs"] == {"output": [1, 10]}
    assert snapshots.default_input("retinanet_r50_fpn") == (1, 3, 512, 512)
    assert snapshots.default_input("resnet50") == (1, 3, 224, 224)


def test_factory_target_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "snapshot_factory_mod.py").write_text(
        "import resnet_inspect\n\ndef make():\n    return resnet_inspect.build('resnet18', num_classes=7)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert run("snapshot", "snapshot_factory_mod:make", "-i", "64", "-o", "f.json").exit_code == 0
    doc = json.loads((tmp_path / "f.json").read_text())
    assert doc["built_from"] == "factory" and doc["model"] == "snapshot_factory_mod:make"
    assert doc["outputs"] == {"output": [1, 7]}
    assert run("check", "f.json").exit_code == 2  # a snapshot's factory runs only when allowed
    result = run("check", "f.json", "--allow-factory", "snapshot_factory_mod")
    assert result.exit_code == 0, result.output


# -- mutations give exit 1 and the right diff lines ------------------------------------------------

def edit_layer(path: Path, name: str, **changes: Any) -> int:
    """Change fields of one layer line in place; returns the line number (1-based)."""
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        stripped = line.strip().rstrip(",")
        if stripped.startswith("{") and stripped.endswith("}") and json.loads(stripped)["name"] == name:
            layer = {**json.loads(stripped), **changes}
            lines[number - 1] = line.replace(stripped, json.dumps(layer, sort_keys=True, separators=(", ", ": ")))
            path.write_text("\n".join(lines) + "\n")
            return number
    raise AssertionError(f"no layer {name} in {path}")


def edit_document(path: Path, **changes: Any) -> None:
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc, indent=1))


def test_edited_shape(r18_file: Path) -> None:
    h = conv_out(conv_out(224, 7, 2, 3), 3, 2, 1)
    line = edit_layer(r18_file, "layer1.0.conv1", output_shapes=[[1, 64, h + 1, h]])
    result = run("check", r18_file)
    assert result.exit_code == 1
    assert f"~ layer1.0.conv1 (Conv2d)  output: 1×64×{h + 1}×{h} → 1×64×{h}×{h}" in result.output
    assert "1 layer changed, 0 removed, 0 added" in result.output
    github = run("check", r18_file, "--format", "github")
    assert github.exit_code == 1
    assert f"::error file={r18_file},line={line},title=Shape snapshot differs::" in github.output
    assert f"layer1.0.conv1 (Conv2d)  output: 1×64×{h + 1}×{h} → 1×64×{h}×{h}" in github.output


def test_edited_mac_count(r18_file: Path) -> None:
    h = conv_out(conv_out(224, 7, 2, 3), 3, 2, 1)
    macs = 64 * 64 * 9 * h * h
    edit_layer(r18_file, "layer1.0.conv2", macs=macs + 1000)
    result = run("check", r18_file)
    assert result.exit_code == 1
    assert f"~ layer1.0.conv2 (Conv2d)  MACs: {macs + 1000:,} → {macs:,}" in result.output
    data = json.loads(run("check", r18_file, "--format", "json").stdout)
    assert data["exit_code"] == 1
    (changed,) = data["files"][0]["changed"]
    assert changed["name"] == "layer1.0.conv2" and changed["changes"] == {"macs": {"old": macs + 1000, "new": macs}}


def test_edited_total(r18_file: Path, resnet18: snapshots.Snapshot) -> None:
    doc = json.loads(r18_file.read_text())
    true_macs = sum(layer["macs"] for layer in doc["layers"])
    text = r18_file.read_text().replace(f'"macs": {true_macs}, "params"', f'"macs": {true_macs + 7}, "params"')
    r18_file.write_text(text)
    result = run("check", r18_file)
    assert result.exit_code == 1
    assert f"~ total MACs: {true_macs + 7:,} → {true_macs:,}" in result.output
    assert "0 layers changed, 0 removed, 0 added; totals differ" in result.output
    totals_line = next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith('  "totals"'))
    github = run("check", r18_file, "--format", "github").output
    assert f"::error file={r18_file},line={totals_line}," in github


def test_removed_and_extra_layers(r18_file: Path) -> None:
    lines = r18_file.read_text().splitlines()
    kept = [line for line in lines if '"name": "layer2.0.bn1"' not in line]
    assert len(kept) == len(lines) - 1
    extra = ('    {"call": 0, "macs": 5, "name": "layer9.conv", "output_shapes": [[1, 2]], "params": 3, '
             '"type": "Conv2d"},')
    where = next(i for i, line in enumerate(kept) if '"name": "fc"' in line)
    kept.insert(where, extra)
    r18_file.write_text("\n".join(kept) + "\n")
    result = run("check", r18_file)
    assert result.exit_code == 1
    # 128 channels after layer2's stride-2 conv: 56 → 28
    assert "+ layer2.0.bn1 (BatchNorm2d)  output 1×128×28×28, params 256, MACs 0" in result.output
    assert "- layer9.conv (Conv2d)  output 1×2, params 3, MACs 5" in result.output
    assert "0 layers changed, 1 removed, 1 added" in result.output


def test_changed_build_option(r18_file: Path) -> None:
    edit_document(r18_file, options={"num_classes": 10})
    result = run("check", r18_file)
    assert result.exit_code == 1
    assert "resnet18 (num_classes=10) at 1×3×224×224 differs" in result.output
    assert f"~ fc (Linear)  output: 1×1000 → 1×10; params: {513_000:,} → {512 * 10 + 10:,}" in result.output
    assert f"~ total params: 11,689,512 → {11_689_512 - 513_000 + 5_130:,}" in result.output
    edit_document(r18_file, options={"output_stride": 16})  # layer4 keeps 14×14 instead of 7×7
    result = run("check", r18_file)
    assert result.exit_code == 1
    assert "~ layer4.0.conv1 (Conv2d)  output: 1×512×7×7 → 1×512×14×14" in result.output


def test_tolerances(r18_file: Path) -> None:
    macs = 512 * 1000
    edit_layer(r18_file, "fc", macs=macs + macs // 1000)  # +0.1%
    assert run("check", r18_file).exit_code == 1
    ok = run("check", r18_file, "--tolerance", "macs=0.5%")
    assert ok.exit_code == 0 and "(1 value within tolerance)" in ok.output
    assert run("check", r18_file, "--tolerance", "macs=0.05%").exit_code == 1
    assert run("check", r18_file, "--tolerance", f"macs={macs // 1000}").exit_code == 0
    assert run("check", r18_file, "--tolerance", f"macs={macs // 1000 - 1}").exit_code == 1
    assert run("check", r18_file, "-t", "macs=1%", "-t", "params=10").exit_code == 0
    for bad, message in (("shape=1", "not 'shape'"), ("macs", "Malformed tolerance"), ("macs=x%", "Malformed")):
        result = run("check", r18_file, "--tolerance", bad)
        assert result.exit_code == 2 and message in flat(result.output) and "Traceback" not in result.output
    twice = run("check", r18_file, "-t", "macs=1%", "-t", "macs=2")
    assert twice.exit_code == 2 and "given twice" in flat(twice.output)


# -- malformed files give exit 2, a clear message and no traceback ---------------------------------

@pytest.mark.parametrize("mutation, expected", [
    ("truncate", "probably truncated"),
    ("schema", "schema version 99 is not one this resnet-inspect reads"),
    ("missing_layer_field", "at layers[3].macs: the required key 'macs' is missing in layers[3]"),
    ("missing_totals", "at totals: the required key 'totals' is missing"),
    ("not_json", "is not JSON: it starts with"),
    ("wrong_type", "at layers[3].params: params must be an integer, not string"),
    ("not_snapshot", "is JSON but not a resnet-inspect shape snapshot"),
    ("empty", "is empty"),
    ("unknown_model", "cannot rebuild resnet9000 from it: Unknown model 'resnet9000'"),
    ("object", "cannot rebuild the model"),
    ("huge_number", "digits (Python reads at most 4,300)"),
    ("extra_data", "more text follows the snapshot's closing '}'"),
    ("duplicate_key", "has the key 'model' twice in one object"),
    ("extra_total", "unknown key 'gflops' in totals"),
])
def test_malformed_file(r18_file: Path, mutation: str, expected: str) -> None:
    text = r18_file.read_text()
    lines = text.splitlines()
    layer3 = json.loads(lines[8].strip().rstrip(","))
    if mutation == "truncate":
        r18_file.write_text(text[: len(text) // 2])
    elif mutation == "schema":
        r18_file.write_text(text.replace('"schema_version": 1', '"schema_version": 99'))
    elif mutation == "missing_layer_field":
        r18_file.write_text(text.replace(lines[8], lines[8].replace(f'"macs": {layer3["macs"]}, ', "")))
    elif mutation == "missing_totals":
        doc = json.loads(text)
        del doc["totals"]
        r18_file.write_text(json.dumps(doc))
    elif mutation == "not_json":
        r18_file.write_text("name,shape\nconv1,1x64x112x112\n")
    elif mutation == "wrong_type":
        edit_layer(r18_file, layer3["name"], params="many")
    elif mutation == "not_snapshot":
        r18_file.write_text('{"layers": []}')
    elif mutation == "empty":
        r18_file.write_text("")
    elif mutation == "unknown_model":
        edit_document(r18_file, model="resnet9000")
    elif mutation == "object":
        edit_document(r18_file, built_from="object", model="MyNet")
    elif mutation == "huge_number":  # json.loads raises ValueError, not JSONDecodeError, for this
        r18_file.write_text(text.replace(f'"macs": {layer3["macs"]}', '"macs": 1' + "0" * 5000, 1))
    elif mutation == "extra_data":  # two snapshots pasted into one file
        r18_file.write_text(text + text)
    elif mutation == "duplicate_key":  # JSON readers keep the last value silently
        r18_file.write_text(text.replace('"model": ', '"model": "resnet50", "model": ', 1))
    elif mutation == "extra_total":
        r18_file.write_text(text.replace('"totals": {', '"totals": {"gflops": 2, ', 1))
    for fmt in ("text", "json", "github"):
        result = run("check", r18_file, "--format", fmt)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
    text_out = flat(run("check", r18_file).output)
    assert expected in text_out and str(r18_file) in text_out


def test_a_byte_order_mark_is_read_past(r18_file: Path) -> None:
    r18_file.write_bytes(b"\xef\xbb\xbf" + r18_file.read_bytes())  # as some Windows editors save UTF-8
    result = run("check", r18_file)
    assert result.exit_code == 0, result.output


def test_malformed_file_positions(r18_file: Path) -> None:
    text = r18_file.read_text()
    r18_file.write_text(text[:-40])
    error = json.loads(run("check", r18_file, "--format", "json").stdout)["files"][0]["error"]
    lines = text[:-40].splitlines()
    assert (error["line"], error["column"]) == (len(lines), len(lines[-1]) + 1)
    lines = text.splitlines()
    r18_file.write_text(text.replace(lines[8], lines[8].replace('"params"', '"parms"')))
    result = run("check", r18_file, "--format", "github")
    assert result.exit_code == 2
    prefix = f"::error file={r18_file},line=9,title=Unusable shape snapshot::"
    assert prefix + "at layers[3].params: the required key 'params' is missing in layers[3]." in result.output


def test_one_bad_file_does_not_hide_the_others(r18_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    result = run("check", bad, r18_file, tmp_path / "missing.json")
    assert result.exit_code == 2
    assert f"✓ {r18_file} matches" in result.output and "no such file" in result.output
    assert "1 match, 0 differ, 0 updated, 2 could not be checked" in result.output


def test_a_bug_on_one_file_is_that_files_outcome_and_the_batch_goes_on(
        r18_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file is checked and reported; --update names what it rewrote; the worst code wins."""
    changed, boom, bad = tmp_path / "changed.json", tmp_path / "boom.json", tmp_path / "bad.json"
    changed.write_bytes(r18_file.read_bytes())
    edit_layer(changed, "fc", macs=1)
    boom.write_bytes(r18_file.read_bytes())
    bad.write_text("{")
    real_check = snapshots.check_file

    def check_file(path: Any, **kwargs: Any) -> snapshots.CheckResult:
        if Path(path) == boom:
            raise RuntimeError("a bug in the engine")
        return real_check(path, **kwargs)

    monkeypatch.setattr(snapshots, "check_file", check_file)
    result = run("check", "--update", "--format", "json", changed, boom, bad, r18_file)
    assert result.exit_code == 3, result.output
    doc = json.loads(result.stdout)
    assert doc["exit_code"] == 3
    assert [(f["file"], f["status"]) for f in doc["files"]] == [
        (str(changed), "updated"), (str(boom), "bug"), (str(bad), "error"), (str(r18_file), "match")]
    assert "a bug in the engine" in doc["files"][1]["error"]["message"]
    assert changed.read_bytes() == r18_file.read_bytes()  # rewritten, and said so above

    text = run("check", "--update", boom, r18_file)
    assert text.exit_code == 3 and f"{r18_file} matches" in text.output and "This is a bug" in text.output


@pytest.mark.parametrize("statuses,code", [((), 0), (("match", "updated"), 0), (("match", "changed"), 1),
                                          (("changed", "error", "match"), 2), (("error", "bug", "changed"), 3),
                                          (("bug",), 3)])
def test_a_batch_exits_with_its_worst_outcome(statuses: tuple[str, ...], code: int) -> None:
    assert snapshots.exit_code([snapshots.CheckResult(f"f{i}", s) for i, s in enumerate(statuses)]) == code


# -- a folder means the *.json snapshots directly in it --------------------------------------------

def statuses(result: Any) -> list[tuple[str, str]]:
    return [(entry["file"], entry["status"]) for entry in json.loads(result.stdout)["files"]]


def test_check_takes_a_folder(cifar20: snapshots.Snapshot, tmp_path: Path) -> None:
    """Every *.json directly in it, in code-point order ("B" before "a" in any locale), each file once;
    hidden files, subfolders and other suffixes are not read."""
    folder = tmp_path / "shapes"
    snapshot_file(cifar20, folder / "a.json")
    snapshot_file(cifar20, folder / "B.json")
    edit_layer(folder / "a.json", "fc", macs=1)
    for stray in (folder / ".draft.json", folder / "deeper" / "c.json", folder / "notes.txt"):
        stray.parent.mkdir(exist_ok=True)
        stray.write_text("{")  # would be exit code 2 if it were read
    result = run("check", folder, folder / "a.json", "--format", "json")
    assert result.exit_code == 1, result.output
    assert statuses(result) == [(f"{folder}/B.json", "match"), (f"{folder}/a.json", "changed")]
    assert run("check", f"{folder}/").exit_code == 1  # a trailing slash is the same folder
    updated = run("check", "--update", folder, "--format", "json")
    assert updated.exit_code == 0 and statuses(updated) == [(f"{folder}/B.json", "match"),
                                                            (f"{folder}/a.json", "updated")]
    assert run("check", folder).exit_code == 0


@pytest.mark.parametrize("stranger", ['{"name": "a config file"}', "object"])
def test_a_folders_json_that_is_not_a_checkable_snapshot_is_bad_input(cifar20: snapshots.Snapshot, tmp_path: Path,
                                                                      stranger: str) -> None:
    """Not skipped: a damaged snapshot must not pass unnoticed. The folder's other files are still checked."""
    snapshot_file(cifar20, tmp_path / "b.json")
    if stranger == "object":  # what the pytest plugin writes for a model object: only its test can check it
        snapshot_file(cifar20, tmp_path / "a.json", built_from="object", model="Net")
    else:
        (tmp_path / "a.json").write_text(stranger)
    result = run("check", tmp_path, "--format", "json")
    assert result.exit_code == 2, result.output
    assert statuses(result) == [(f"{tmp_path}/a.json", "error"), (f"{tmp_path}/b.json", "match")]


def test_a_folder_with_no_snapshots_is_bad_input(r18_file: Path, tmp_path: Path) -> None:
    """A check of nothing must not pass; the folder is named, and the other arguments are still checked."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "README.md").write_text("snapshots go here\n")
    result = run("check", empty, r18_file, "--format", "json")
    assert result.exit_code == 2, result.output
    assert statuses(result) == [(str(empty), "error"), (str(r18_file), "match")]
    assert "no snapshot files (*.json)" in json.loads(result.stdout)["files"][0]["error"]["message"]


# -- --update: rewrites only what changed, atomically ----------------------------------------------

def test_update_rewrites_only_changed_files(r18_file: Path, tmp_path: Path) -> None:
    canonical = r18_file.read_bytes()
    changed = tmp_path / "changed.json"
    changed.write_bytes(canonical)
    edit_layer(changed, "fc", macs=1)
    past = 1_000_000_000
    for path in (r18_file, changed):
        os.utime(path, ns=(past, past))
    result = run("check", "--update", r18_file, changed)
    assert result.exit_code == 0, result.output
    assert f"↻ Updated {changed}" in result.output and f"✓ {r18_file} matches" in result.output
    assert "1 match, 0 differ, 1 updated" in result.output
    assert r18_file.read_bytes() == canonical and r18_file.stat().st_mtime_ns == past
    assert changed.read_bytes() == canonical and changed.stat().st_mtime_ns != past
    assert run("check", changed).exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["changed.json", "resnet18.json"]


def test_interrupted_update_keeps_the_old_file(r18_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    edit_layer(r18_file, "fc", macs=1)
    before = r18_file.read_bytes()

    def fail_replace(src: str, dst: str) -> None:
        assert Path(src).read_bytes()  # the new text was written to the temporary file first
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail_replace)
    result = run("check", "--update", r18_file)
    assert result.exit_code == 2 and "could not be updated" in result.output and "No space left" in result.output
    assert r18_file.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["resnet18.json"]
    monkeypatch.undo()

    def interrupt(fd: int) -> None:  # halfway: the data is in the temporary file, not yet synced or renamed
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        snapshots.check_file(r18_file, update=True)
    assert r18_file.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["resnet18.json"]


def test_concurrent_updates_never_corrupt(resnet18: snapshots.Snapshot, tmp_path: Path) -> None:
    small = snapshots.take("resnet18", 64)
    canonical = {"a.json": snapshots.dumps(resnet18), "b.json": snapshots.dumps(small)}
    for name, text in canonical.items():
        (tmp_path / name).write_text(text)
        edit_layer(tmp_path / name, "layer3.1.conv2", macs=3)
    command = [str(Path(sys.executable).with_name("resnet-inspect")), "check", "--update", "a.json", "b.json"]
    if not Path(command[0]).exists():
        command[0:1] = [sys.executable, "-m", "resnet_inspect"]
    procs = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    for name, text in canonical.items():
        assert (tmp_path / name).read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]


# -- docs/ci.md: the GitHub Actions job, run as documented (the pre-commit hook: test_pre_commit.py) -

def documented_yaml(key: str) -> Any:
    """The YAML block of docs/ci.md that has ``key`` at its top level."""
    yaml = pytest.importorskip("yaml")
    text = (REPO / "docs" / "ci.md").read_text(encoding="utf-8")
    blocks = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    (found,) = [block for block in blocks if key in block]
    return found


def documented_check(command: str, *filenames: str) -> Any:
    """Run a documented ``resnet-inspect check ...`` command line, expanding globs as a shell does."""
    import glob
    import shlex

    args = shlex.split(command)
    assert args[:2] == ["resnet-inspect", "check"], command
    expanded = [match for arg in args[2:] for match in (sorted(glob.glob(arg)) or [arg])]
    return run("check", *expanded, *filenames)


@pytest.fixture
def shapes_dir(resnet18: snapshots.Snapshot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with shapes/resnet18.json (current) and shapes/changed.json (fc's MACs edited)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shapes").mkdir()
    snapshots.write(resnet18, tmp_path / "shapes" / "resnet18.json")
    snapshots.write(resnet18, tmp_path / "shapes" / "changed.json")
    return tmp_path / "shapes"


def test_ci_guide_github_job(shapes_dir: Path) -> None:
    job = documented_yaml("jobs")
    steps = [step for step in job["jobs"]["shapes"]["steps"] if "resnet-inspect check" in step.get("run", "")]
    (command,) = [step["run"].strip() for step in steps]
    line = edit_layer(shapes_dir / "changed.json", "fc", macs=1)
    result = documented_check(command)
    assert result.exit_code == 1
    assert f"::error file=shapes/changed.json,line={line},title=Shape snapshot differs::" in result.output
    assert "file=shapes/resnet18.json" not in result.output
    (shapes_dir / "changed.json").unlink()
    assert documented_check(command).exit_code == 0


# -- snapshots are data: a factory runs only when allowed --------------------------------------------

def marker_module(folder: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A module whose mere import leaves a marker file (the proof that code ran), with a ``make`` factory."""
    name = f"snapfac_{uuid.uuid4().hex[:10]}"
    marker = folder / f"{name}.ran"
    (folder / f"{name}.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\n\n"
        "def make():\n    import resnet_inspect\n    return resnet_inspect.build('cifar_resnet20')\n")
    monkeypatch.syspath_prepend(str(folder))
    return name, marker


@pytest.fixture(scope="module")
def cifar20() -> snapshots.Snapshot:
    return snapshots.take("cifar_resnet20")


def snapshot_file(snap: snapshots.Snapshot, path: Path, **changes: Any) -> Path:
    """Write ``snap`` with some fields changed (a hand-edited or hostile file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshots.write(dataclasses.replace(snap, **changes), path)
    return path


def file_error(result: Any) -> dict[str, Any]:
    (entry,) = json.loads(result.stdout)["files"]
    assert entry["status"] == "error"
    return entry["error"]


@pytest.mark.parametrize("built_from", ["factory", "variant"])
def test_check_never_imports_a_factory_it_was_not_allowed_to(cifar20: snapshots.Snapshot, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch, built_from: str) -> None:
    name, marker = marker_module(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)
    path = snapshot_file(cifar20, tmp_path / "net.json", model=f"{name}:make", built_from=built_from)
    for extra in ([], ["--update"], ["--allow-factory", "other.*"], ["--allow-factory", f"{name}:other"]):
        result = run("check", path, "--format", "json", *extra)
        assert result.exit_code == 2, result.output
        assert file_error(result)["key"] == "model"
        assert not marker.exists(), extra
    assert path.read_bytes() == snapshots.dumps(dataclasses.replace(cifar20, model=f"{name}:make",
                                                                    built_from=built_from)).encode()


def test_an_allowed_factory_runs_and_matches(cifar20: snapshots.Snapshot, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    name, marker = marker_module(tmp_path, monkeypatch)
    path = snapshot_file(cifar20, tmp_path / "net.json", model=f"{name}:make", built_from="factory")
    refused = run("check", path)
    assert refused.exit_code == 2 and not marker.exists()
    text = flat(refused.output)
    assert f"names the factory {name}:make" in text and f"--allow-factory '{name}:make'" in text
    result = run("check", path, "--allow-factory", "nothing.*", "--allow-factory", f"{name}:ma?e", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files"][0]["status"] == "match" and marker.exists()
    assert snapshots.take(f"{name}:make").input_size == (1, 3, 224, 224)  # a factory's default, as in summary


def test_hostile_factories_in_a_batch_never_run(cifar20: snapshots.Snapshot, tmp_path: Path) -> None:
    """os:abort, code:interact and builtins:breakpoint, each written into a snapshot: the real CLI refuses
    every one (exit 2, the model key named) and still checks the good file in the same batch."""
    hostile = {"abort.json": ("os:abort", "factory"), "interact.json": ("code:interact", "factory"),
               "breakpoint.json": ("builtins:breakpoint", "factory"), "variant.json": ("os:abort", "variant")}
    for file, (model, built_from) in hostile.items():
        snapshot_file(cifar20, tmp_path / file, model=model, built_from=built_from)
    snapshot_file(cifar20, tmp_path / "good.json")
    proc = subprocess.run([sys.executable, "-m", "resnet_inspect", "check", "--format", "json", *hostile, "good.json"],
                          cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    files = {entry["file"]: entry for entry in json.loads(proc.stdout)["files"]}
    assert {file: files[file]["error"]["key"] for file in hostile} == {file: "model" for file in hostile}
    assert files["good.json"]["status"] == "match"


@pytest.mark.parametrize("built_from, model", [
    ("variant", "mymodels:build"),  # a factory dressed up as a variant
    ("variant", "weights/net.pth"),
    ("factory", "resnet18"),
    ("factory", "my models:build"),
    ("factory", "mymodels.build"),
    ("checkpoint", "resnet18"),
    ("checkpoint", "/abs/net.pth"),
    ("checkpoint", "C:/models/net.pth"),
])
def test_built_from_must_agree_with_the_model(r18_file: Path, built_from: str, model: str) -> None:
    edit_document(r18_file, built_from=built_from, model=model)
    result = run("check", r18_file, "--format", "json", "--allow-factory", "*")
    assert result.exit_code == 2, result.output
    error = file_error(result)
    assert error["key"] == "model" and f'built_from is "{built_from}"' in error["reason"]


def test_pyproject_allows_the_projects_factories(cifar20: snapshots.Snapshot, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The project's pyproject.toml is found from the snapshot's folder, wherever check runs from; a
    repository root (.git) ends the search, so an allow list outside the repository never applies."""
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    name, marker = marker_module(project, monkeypatch)
    (project / "pyproject.toml").write_text(f'[project]\nname = "p"\n\n[tool.resnet-inspect]\n'
                                            f'allow-factories = ["{name}"]\n')
    (project / "shapes").mkdir()
    (project / "shapes" / "pyproject.toml").write_text('[tool.black]\nline-length = 100\n')  # no table: looked past
    path = snapshot_file(cifar20, project / "shapes" / "net.json", model=f"{name}:make", built_from="factory")
    monkeypatch.chdir(tmp_path)
    result = run("check", path)
    assert result.exit_code == 0, result.output
    assert marker.exists()

    marker.unlink()
    outer = tmp_path / "outer"
    (outer / "repo" / ".git").mkdir(parents=True)
    (outer / "pyproject.toml").write_text('[tool.resnet-inspect]\nallow-factories = ["*"]\n')
    stranger = snapshot_file(cifar20, outer / "repo" / "net.json", model=f"{name}:make", built_from="factory")
    monkeypatch.chdir(outer)  # the current directory's pyproject.toml plays no part either
    refused = run("check", stranger, "--format", "json")
    assert refused.exit_code == 2 and file_error(refused)["key"] == "model" and not marker.exists()


def test_check_of_a_factory_snapshot_works_from_a_subfolder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`check` imports a snapshot's factory from the snapshot's project (the folder, from the snapshot's
    upward, that holds the package), so it passes from a subfolder and still fails when the model changed."""
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    package = f"subnets_{uuid.uuid4().hex[:10]}"
    (project / package).mkdir()
    (project / package / "__init__.py").write_text("")
    models = project / package / "models.py"
    source = ("from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), "
              "nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2))\n")
    models.write_text(source)
    (project / "pyproject.toml").write_text(f'[tool.resnet-inspect]\nallow-factories = ["{package}.*"]\n')
    (project / "shapes").mkdir()
    monkeypatch.setattr(sys, "path", list(sys.path))  # whatever the runs put on it is undone after the test
    monkeypatch.chdir(project)
    taken = run("snapshot", f"{package}.models:build", "--input", "16", "-o", "shapes/net.json")
    assert taken.exit_code == 0, taken.output
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(project), os.getcwd())])
    for name in [m for m in sys.modules if m == package or m.startswith(f"{package}.")]:
        monkeypatch.delitem(sys.modules, name)  # as a fresh `resnet-inspect check` process would start
    monkeypatch.chdir(project / "shapes")
    result = run("check", "net.json", "--format", "json")
    assert result.exit_code == 0, result.output
    assert [f["status"] for f in json.loads(result.stdout)["files"]] == ["match"]

    models.write_text(source.replace("nn.Conv2d(8, 8, 3, stride=2)", "nn.Conv2d(8, 16, 3, stride=2)"))
    for name in [m for m in sys.modules if m == package or m.startswith(f"{package}.")]:
        monkeypatch.delitem(sys.modules, name)
    changed = run("check", "net.json", "--format", "json")
    assert changed.exit_code == 1, changed.output
    assert [f["status"] for f in json.loads(changed.stdout)["files"]] == ["changed"]


@pytest.mark.parametrize("pyproject, expected", [
    ('[tool.resnet-inspect\nallow-factories = ["a.*"]\n', "is not valid TOML"),
    ('[tool.resnet-inspect]\nallow-factories = "a.*"\n', "must be a list of factory patterns"),
    ('[tool.resnet-inspect]\nallow_factories = ["a.*"]\n', "unknown key 'allow_factories'"),
    ('[tool.resnet-inspect]\nallow-factories = ["a/b"]\n', "'a/b' is not a factory pattern"),
])
def test_a_broken_allow_list_is_bad_input(cifar20: snapshots.Snapshot, tmp_path: Path, pyproject: str,
                                          expected: str) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / "pyproject.toml").write_text(pyproject)
    path = snapshot_file(cifar20, tmp_path / "net.json", model="mymodels:build", built_from="factory")
    result = run("check", path, "--format", "json")
    assert result.exit_code == 2
    error = file_error(result)
    assert error["key"] == "model" and expected in error["reason"] and "pyproject.toml" in error["reason"]
    variant = snapshot_file(cifar20, tmp_path / "variant.json")  # read only for a factory: variants are unaffected
    assert run("check", variant).exit_code == 0


def test_a_malformed_allow_factory_pattern_is_bad_input(r18_file: Path) -> None:
    for pattern in ("", "my pkg", "pkg/models", "a:b:c"):
        result = run("check", r18_file, "--allow-factory", pattern)
        assert result.exit_code == 2 and "is not a factory pattern" in flat(result.output), pattern


# -- a checkpoint as the snapshot's model ---------------------------------------------------------------

@pytest.fixture(scope="module")
def cifar20_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    path = tmp_path_factory.mktemp("ckpt") / "c20.pth"
    torch.save(resnet_inspect.build("cifar_resnet20").state_dict(), path)
    return path


def test_snapshot_of_a_checkpoint(cifar20: snapshots.Snapshot, cifar20_checkpoint: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    weights = tmp_path / "weights" / "c20.pth"
    weights.parent.mkdir()
    weights.write_bytes(cifar20_checkpoint.read_bytes())
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shapes").mkdir()
    result = run("snapshot", "weights/c20.pth", "-o", "shapes/c20.json")
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "shapes" / "c20.json").read_text())
    # The path is relative to the snapshot's folder; the checkpoint is recognised as cifar_resnet20, at its 32×32.
    assert (doc["built_from"], doc["model"], doc["options"]) == ("checkpoint", "../weights/c20.pth", {})
    assert doc["input_size"] == [1, 3, 32, 32]
    assert (doc["layers"], doc["outputs"], doc["totals"]) == (cifar20.layers, cifar20.outputs, cifar20.totals)
    stdout = run("snapshot", "weights/c20.pth")  # to stdout: relative to the current folder
    assert json.loads(stdout.stdout)["model"] == "weights/c20.pth"

    monkeypatch.chdir(tmp_path / "weights")  # check finds it from the snapshot's folder, wherever it runs
    assert run("check", tmp_path / "shapes" / "c20.json").exit_code == 0
    import torch

    torch.save(resnet_inspect.build("cifar_resnet32").state_dict(), weights)  # retrained deeper: a difference
    changed = run("check", tmp_path / "shapes" / "c20.json", "--format", "json")
    assert changed.exit_code == 1 and json.loads(changed.stdout)["files"][0]["totals"]["params"]["new"] > \
        cifar20.totals["params"]
    weights.unlink()
    missing = run("check", tmp_path / "shapes" / "c20.json", "--format", "json")
    assert missing.exit_code == 2 and "is not there" in file_error(missing)["reason"]


def test_a_pickled_model_snapshot_needs_trust_pickle_to_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from torch import nn

    torch.save(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), tmp_path / "whole.pt")
    monkeypatch.chdir(tmp_path)
    refused = run("snapshot", "whole.pt", "-i", "16", "-o", "whole.json")
    assert refused.exit_code == 2 and "--trust-pickle" in flat(refused.output)
    written = run("--trust-pickle", "snapshot", "whole.pt", "-i", "16", "-o", "whole.json")
    assert written.exit_code == 0, written.output
    doc = json.loads((tmp_path / "whole.json").read_text())
    assert (doc["built_from"], doc["model"], doc["outputs"]) == ("checkpoint", "whole.pt", {"output": [1, 4, 14, 14]})
    untrusted = run("check", "whole.json", "--format", "json")
    assert untrusted.exit_code == 2 and "--trust-pickle" in file_error(untrusted)["reason"]
    assert run("--trust-pickle", "check", "whole.json").exit_code == 0


# -- the exact input shape of a module of your own --------------------------------------------------------

def test_a_modules_input_shape_is_kept_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torch import nn

    mlp = snapshots.take(nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)), (8, 16))
    assert mlp.input_size == (8, 16) and mlp.outputs == {"output": [8, 4]}
    assert next(layer for layer in mlp.layers if layer["name"] == "0")["macs"] == 8 * 16 * 32
    conv1d = snapshots.take(nn.Sequential(nn.Conv1d(4, 6, 5)), (2, 4, 100))
    assert conv1d.input_size == (2, 4, 100) and conv1d.outputs == {"output": [2, 6, 100 - 5 + 1]}
    assert snapshots.take("resnet18", (3, 64, 64)).input_size == (1, 3, 64, 64)  # a variant reads it as (C, H, W)

    # A factory's snapshot records the exact shape, and check rebuilds at that shape.
    module = f"snapconv_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{module}.py").write_text("from torch import nn\n\ndef make():\n    return nn.Conv1d(4, 6, 5)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    snap = snapshots.take(f"{module}:make", (2, 4, 100))
    assert (snap.built_from, snap.input_size, snap.outputs) == ("factory", (2, 4, 100), {"output": [2, 6, 96]})
    snapshots.write(snap, tmp_path / "conv1d.json")
    assert json.loads((tmp_path / "conv1d.json").read_text())["input_size"] == [2, 4, 100]
    result = run("check", tmp_path / "conv1d.json", "--allow-factory", module)
    assert result.exit_code == 0, result.output
    edit_document(tmp_path / "conv1d.json", input_size=[2, 4, 50])
    moved = run("check", tmp_path / "conv1d.json", "--allow-factory", module, "--format", "json")
    assert moved.exit_code == 1
    assert json.loads(moved.stdout)["files"][0]["outputs"] == {"output": {"old": [2, 6, 96], "new": [2, 6, 46]}}


@pytest.mark.parametrize("built_from, model, size", [
    ("variant", "resnet18", [3, 224, 224]),
    ("factory", "mymodels:build", [1] * 9),
    ("factory", "mymodels:build", [2, 0, 100]),
    ("variant", "resnet18", [1, 3, 2_000_000, 8]),
])
def test_input_size_is_validated_by_kind(r18_file: Path, built_from: str, model: str, size: list[int]) -> None:
    edit_document(r18_file, built_from=built_from, model=model, input_size=size)
    result = run("check", r18_file, "--format", "json")
    assert result.exit_code == 2 and file_error(result)["key"] == "input_size"


def test_ci_guide_allow_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/ci.md's pyproject.toml table and its --allow-factory command line, run as documented."""
    text = (REPO / "docs" / "ci.md").read_text(encoding="utf-8")
    (table,) = re.findall(r"```toml\n(.*?)```", text, re.S)
    (command,) = [line for block in re.findall(r"```sh\n(.*?)```", text, re.S) for line in block.splitlines()
                  if "--allow-factory" in line]
    for folder in (".git", "mypackage", "shapes"):
        (tmp_path / folder).mkdir()
    (tmp_path / "mypackage" / "__init__.py").write_text("")
    (tmp_path / "mypackage" / "models.py").write_text(
        "import resnet_inspect\n\ndef backbone():\n    return resnet_inspect.build('cifar_resnet20')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert run("snapshot", "mypackage.models:backbone", "-i", "32", "-o", "shapes/backbone.json").exit_code == 0
        assert run("check", "shapes/backbone.json").exit_code == 2  # nothing allows it yet
        assert documented_check(command).exit_code == 0
        (tmp_path / "pyproject.toml").write_text(table)
        assert run("check", "shapes/backbone.json").exit_code == 0
    finally:
        for name in ("mypackage.models", "mypackage"):
            sys.modules.pop(name, None)


@pytest.mark.parametrize("kind", ["fifo", "long", "directory"])
def test_a_checkpoint_snapshot_naming_no_usable_file(cifar20: snapshots.Snapshot, tmp_path: Path, kind: str) -> None:
    name = {"fifo": "pipe.pth", "long": "x" * 5000 + ".pth", "directory": "folder.pth"}[kind]
    if kind == "fifo":
        os.mkfifo(tmp_path / name)
    elif kind == "directory":
        (tmp_path / name).mkdir()
    path = snapshot_file(cifar20, tmp_path / "net.json", model=name, built_from="checkpoint")
    result = run("check", path, "--format", "json")
    assert result.exit_code == 2, result.output
    assert file_error(result)["reason"].startswith(f"cannot rebuild {name} from it")


def test_an_allowed_module_does_not_lend_its_imports(cifar20: snapshots.Snapshot, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """``from elsewhere import f`` in an allowed module does not make ``allowed:f`` a factory: it is never called."""
    helper = f"snaphelp_{uuid.uuid4().hex[:10]}"
    allowed = f"snapallowed_{uuid.uuid4().hex[:10]}"
    marker = tmp_path / "called.marker"
    (tmp_path / f"{helper}.py").write_text(
        f"import pathlib\n\ndef make():\n    pathlib.Path({str(marker)!r}).write_text('called')\n"
        "    import resnet_inspect\n    return resnet_inspect.build('cifar_resnet20')\n")
    (tmp_path / f"{allowed}.py").write_text(f"from {helper} import make as build\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = snapshot_file(cifar20, tmp_path / "net.json", model=f"{allowed}:build", built_from="factory")
    refused = run("check", path, "--allow-factory", allowed, "--format", "json")
    assert refused.exit_code == 2 and file_error(refused)["key"] == "model" and not marker.exists()
    assert f"--allow-factory '{helper}:make'" in file_error(refused)["reason"]
    both = run("check", path, "--allow-factory", allowed, "--allow-factory", f"{helper}:make")
    assert both.exit_code == 0, both.output
    assert marker.exists()


# -- any text, bytes or damaged document is read or refused with InputError (fuzzed) --------------------

@pytest.fixture(scope="module")
def snapshot_document() -> dict[str, Any]:
    return json.loads(snapshots.dumps(snapshots.take("resnet18", 32)))


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
                                     st.text(max_size=8)),
                           lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                   st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                           max_leaves=12)


def _mutate(document: Any, path: list[int], value: Any) -> Any:
    """Replace the node that ``path`` (indices into sorted keys or list positions) leads to."""
    if not path or not isinstance(document, (dict, list)) or not document:
        return value
    if isinstance(document, dict):
        keys = sorted(document)
        key = keys[path[0] % len(keys)]
        return {**document, key: _mutate(document[key], path[1:], value)}
    index = path[0] % len(document)
    return [*document[:index], _mutate(document[index], path[1:], value), *document[index + 1:]]


def _load_or_input_error(text: str) -> None:
    try:
        snap = snapshots.loads(text, "fuzz.json")
    except resnet_inspect.InputError:
        return
    assert isinstance(snap, snapshots.Snapshot) and len(snap.input_size) == 4


@FUZZ
@given(st.one_of(st.text(max_size=200), st.text(alphabet='{}[]":,0123456789 \n-.eEtrufalsn', max_size=200)))
def test_snapshot_text_is_parsed_or_refused(text: str) -> None:
    _load_or_input_error(text)


@FUZZ
@given(path=st.lists(st.integers(0, 1000), min_size=1, max_size=4), value=json_values)
def test_damaged_snapshot_documents_are_refused_with_input_error(snapshot_document: dict[str, Any],
                                                                 path: list[int], value: Any) -> None:
    _load_or_input_error(json.dumps(_mutate(snapshot_document, path, value)))


@FUZZ
@given(st.binary(max_size=300))
def test_snapshot_bytes_are_read_or_refused(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("snap") / "fuzz.json"
    path.write_bytes(data)
    try:
        snapshots.load(path)
    except resnet_inspect.InputError:
        pass


# -- the shape table a snapshot is taken from -----------------------------------------------------

class _SharedAndUncalled(nn.Module):
    """A module of one's own with a weight used twice, a buffer, a module never called and two outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.spare = nn.Linear(4, 4)
        self.register_buffer("scale", torch.ones(8, 1, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.norm(self.conv(x)) * self.scale
        return y, self.conv(torch.relu(y[:, :3]))


@pytest.mark.parametrize(("target", "size", "options"), [
    ("cifar_resnet20", None, {}),
    ("resnet18", 97, {"pad_to": 32}),
    ("maskrcnn_r50_fpn", (1, 3, 128, 160), {}),
    ("resnet50", 64, {"fpn": "retinanet"}),
    (_SharedAndUncalled(), (1, 3, 10, 12), {}),
])
def test_a_shape_table_holds_what_the_report_holds(target: Any, size: Any, options: dict[str, Any]) -> None:
    """``shape_table`` skips the report's analysis: every field a snapshot reads must still be the report's."""
    from resnet_inspect.analysis.inspect import inspect, shape_table

    report, table = inspect(target, size, **options), shape_table(target, size, **options)
    assert (table.model, table.input_size, table.options) == (report.model, report.input_size, report.options)
    assert table.outputs == report.outputs
    assert {k: table.totals[k] for k in snapshots.TOTAL_FIELDS} == {k: report.totals[k] for k in snapshots.TOTAL_FIELDS}
    assert snapshots.from_report(table) == snapshots.from_report(report)
    assert [(r.name, r.call, r.output_shapes, r.params, r.macs) for r in table.layers] == \
        [(r.name, r.call, r.output_shapes, r.params, r.macs) for r in report.layers]


# -- reading is cheap (issue 19): layers checked a column at a time, line numbers found when asked ------

def _one_by_one_accepts(layers: list[Any]) -> bool:
    from resnet_inspect.snapshot import schema

    try:
        schema._check_layers(schema._Checker("f.json", {}), layers, None)
    except snapshots.SnapshotError:
        return False
    return True


def _bad_layer(layer: dict[str, Any], defect: str) -> Any:
    field, _, value = defect.partition("=")
    if defect == "not an object":
        return [layer]
    if defect == "missing macs":
        return {k: v for k, v in layer.items() if k != "macs"}
    if defect == "unknown key":
        return {**layer, "flops": 1}
    if defect == "renamed key":  # six keys still, one of them unknown
        return {("parms" if k == "params" else k): v for k, v in layer.items()}
    return {**layer, field: json.loads(value)}


@pytest.mark.parametrize("defect", [
    "not an object", "missing macs", "unknown key", "renamed key", "params=true", "params=1.0", "macs=-1",
    'call="0"', "call=null", "name=7", 'type=["Conv2d"]', "output_shapes={}", "output_shapes=[7]",
    "output_shapes=[[1, true]]", "output_shapes=[[1, -2]]", "output_shapes=[[1, 2.0]]", 'output_shapes=[["1"]]',
    "name=\"layer1.0.conv1\"",  # the (name, call) of the layer after it: a layer twice
])
def test_the_column_check_refuses_every_bad_layer(snapshot_document: dict[str, Any], defect: str) -> None:
    from resnet_inspect.snapshot.schema import _layers_pass

    layers = list(snapshot_document["layers"])
    assert layers[7]["name"] == "layer1.0.conv1"  # the layer the duplicate names
    assert _layers_pass(layers) and _one_by_one_accepts(layers)  # the untouched file passes both
    layers[6] = _bad_layer(layers[6], defect)
    assert not _layers_pass(layers)
    assert not _one_by_one_accepts(layers)


@FUZZ
@given(path=st.lists(st.integers(0, 1000), min_size=1, max_size=4), value=json_values)
def test_the_column_check_agrees_with_the_one_by_one_check(snapshot_document: dict[str, Any], path: list[int],
                                                           value: Any) -> None:
    from resnet_inspect.snapshot.schema import _layers_pass

    layers = _mutate(snapshot_document["layers"], path, value)
    if isinstance(layers, list):
        assert _layers_pass(layers) == _one_by_one_accepts(layers)


def test_a_valid_file_is_checked_by_columns_and_its_lines_found_only_when_asked(
        r18_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from resnet_inspect.snapshot import schema

    def refuse(*args: Any) -> None:
        raise AssertionError("read line by line")

    for name in ("_check_layers", "_key_lines", "_layer_lines"):
        monkeypatch.setattr(schema, name, refuse)
    assert snapshots.check_file(r18_file).status == "match"  # a match asks for no line
    monkeypatch.undo()
    lines = r18_file.read_text().splitlines()
    fresh = snapshots.load(r18_file)
    assert dict(fresh.key_lines)["totals"] == next(
        i for i, line in enumerate(lines, 1) if line.startswith('  "totals"'))
    assert fresh.layer_lines[("layer1.0.conv1", 0)] == next(
        i for i, line in enumerate(lines, 1) if '"name": "layer1.0.conv1"' in line)
    fresh = snapshots.load(r18_file)  # the lines not yet found travel with a pickled snapshot
    again = pickle.loads(pickle.dumps(fresh))
    assert (dict(again.key_lines), dict(again.layer_lines)) == (dict(fresh.key_lines), dict(fresh.layer_lines))


def test_added_and_removed_layers_keep_their_lines(r18_file: Path) -> None:
    # An added layer is shown at the line of the last layer before it that the file has; a removed one
    # at its own line. The lines are found only now, when a difference needs them.
    lines = r18_file.read_text().splitlines()
    dropped = next(i for i, line in enumerate(lines) if '"name": "layer2.0.bn1"' in line)
    extra = ('    {"call": 0, "macs": 5, "name": "layer9.conv", "output_shapes": [[1, 2]], "params": 3, '
             '"type": "Conv2d"},')
    kept = [*lines[:dropped], extra, *lines[dropped + 1:]]
    r18_file.write_text("\n".join(kept) + "\n")
    diff = snapshots.check_file(r18_file).diff
    assert [(a.layer["name"], a.line) for a in diff.added] == [("layer2.0.bn1", dropped)]  # layer2.0.conv1's line
    assert [(r.layer["name"], r.line) for r in diff.removed] == [("layer9.conv", dropped + 1)]


def test_compare_joins_layers_by_name_and_call_whatever_their_order(resnet18: snapshots.Snapshot) -> None:
    # The same layers in another order are no difference; one changed field of one layer is exactly one
    # change, within tolerance or not.
    shuffled = dataclasses.replace(resnet18, layers=resnet18.layers[::-1])
    diff = snapshots.compare(resnet18, shuffled, snapshots.parse_tolerances(["macs=1%"]))
    assert diff.ok and diff.tolerated == 0
    layers = [dict(layer) for layer in resnet18.layers]
    fc = next(i for i, layer in enumerate(layers) if layer["name"] == "fc")
    layers[fc]["macs"] += 1
    edited = dataclasses.replace(resnet18, layers=layers)
    diff = snapshots.compare(resnet18, edited)
    assert [(c.new["name"], [x.field for x in c.changes]) for c in diff.changed] == [("fc", ["macs"])]
    assert not diff.added and not diff.removed
    tolerated = snapshots.compare(resnet18, edited, snapshots.parse_tolerances(["macs=1%"]))
    assert tolerated.ok and tolerated.tolerated == 1
