"""The summary view (render/summary.py, render/table.py, render/numbers.py): blocks as rows by default,
one number style with ``--units``, the conventions behind ``--conventions``, and every section fitted
to 80, 100 and 200 columns. The table is parsed back into cells; the checks are on those cells."""
from __future__ import annotations

import csv
import io
import json
import re

import pytest
import torch
from rich.console import Console

import resnet_inspect
from resnet_inspect.errors import InputError
from resnet_inspect.render.table import print_summary
from tests.conftest import flat
from tests.conftest import run_cli as run

# The layer table's headers, the same at every width (render.table.LAYER_COLUMNS).
HEADERS = ["Layer", "Type", "Output shape", "Params", "MACs", "% MACs", "RF", "Check"]
RIGHT = {"Params", "MACs", "% MACs", "RF"}
NOTE_STARTS = ("Rows:", "No residual", "Not shown", "--depth")

USER_NET = '''from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU()))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(32, 10)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def build():
    return Net()
'''


@pytest.fixture
def user_net(tmp_path, monkeypatch) -> str:
    """A user's own model with no residual block: ``user_net:build``."""
    (tmp_path / "user_net.py").write_text(USER_NET, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "user_net:build"


def parse_table(out: str) -> tuple[list[str], list[dict[str, str]], list[str]]:
    """The layer table of plain ``summary`` output: its headers, its rows as header -> cell, and the
    lines printed right under it. Right-aligned cells end where their header ends; left-aligned
    ones start where theirs starts."""
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[:1] == ["Layer"])
    head = lines[at]
    headers = [h for h in sorted(HEADERS, key=lambda h: head.find(h)) if head.find(h) >= 0]
    start = {h: head.index(h) for h in headers}
    end = {h: start[h] + len(h) for h in headers}
    rows, after = [], []
    for index, line in enumerate(lines[at + 1:], at + 1):
        if not line.strip() or line.strip().startswith(NOTE_STARTS):
            after = lines[index:index + 4]
            break
        cells: dict[str, str] = {}
        for h in headers:
            if h in RIGHT:
                cells[h] = line[:end[h]].split()[-1] if len(line) >= end[h] and line[end[h] - 1] != " " else ""
        for k, h in enumerate(headers):
            if h in RIGHT:
                continue
            nxt = headers[k + 1] if k + 1 < len(headers) else None
            if nxt is None:
                stop = len(line)
            elif nxt in RIGHT:
                stop = end[nxt] - len(cells[nxt]) if cells[nxt] else end[nxt]
            else:
                stop = start[nxt]
            begin = end[headers[k - 1]] if h == "Check" else start[h]
            cells[h] = line[begin:stop].strip()
        rows.append(cells)
    return headers, rows, after


def integer(cell: str) -> int:
    """An exact count cell (``—`` for a container that owns nothing itself)."""
    assert re.fullmatch(r"\d{1,3}(,\d{3})*|—", cell), cell
    return 0 if cell == "—" else int(cell.replace(",", ""))


def summary(*args: str, columns: int = 100) -> str:
    result = run("summary", *args, env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.stdout


# -- blocks as rows ---------------------------------------------------------------------------------

def test_resnet50_defaults_to_a_row_per_block_with_the_stem_and_head() -> None:
    out = summary("resnet50")
    headers, rows, after = parse_table(out)
    assert headers == HEADERS
    blocks = [f"layer{s}.{b}" for s, n in zip(range(1, 5), (3, 4, 6, 3)) for b in range(n)]
    assert [r["Layer"] for r in rows] == ["conv1", "bn1", "relu", "maxpool", *blocks, "avgpool", "fc"]
    report = resnet_inspect.inspect("resnet50")
    assert sum(integer(r["Params"]) for r in rows) == report.totals["params"]
    assert sum(integer(r["MACs"]) for r in rows) == report.totals["macs"]
    with torch.device("meta"):  # parameter counts only: no memory, no initialisation
        model = resnet_inspect.build("resnet50")
    by_name = {r["Layer"]: r for r in rows}
    for name in ("layer1.0", "layer2.0", "layer4.2"):
        stage, block = name.replace("layer", "").split(".")
        module = getattr(model, f"layer{stage}")[int(block)]
        assert integer(by_name[name]["Params"]) == sum(p.numel() for p in module.parameters())
        assert by_name[name]["Type"] == "Bottleneck"
        # The block's output: its last ReLU's shape and receptive field.
        assert by_name[name]["Output shape"] == "×".join(map(str, report.layer(name).output_shapes[0]))
        assert by_name[name]["RF"] == str(report.layer(name).receptive_field[0])
        assert by_name[name]["Check"] == "✓"
    # layer2.0: conv1 1×1 256→128 at 56², conv2 3×3/2 128→128 at 28², conv3 1×1 128→512 and the
    # projection 1×1/2 256→512 at 28² (closed form).
    assert integer(by_name["layer2.0"]["MACs"]) == (256 * 128 * 56 * 56 + 9 * 128 * 128 * 28 * 28
                                                    + 128 * 512 * 28 * 28 + 256 * 512 * 28 * 28)
    assert any("--depth all" in line for line in after), after


@pytest.mark.parametrize("name", ["resnetv2_50", "seresnet50", "hopenet", "maskrcnn_r50_fpn", "cifar_resnet20"])
def test_block_rows_keep_every_sum(name: str) -> None:
    from resnet_inspect.render.summary import block_rows

    report = resnet_inspect.inspect(name)
    rows = block_rows(report)
    assert rows is not None and report.structure is not None
    uncalled = {key: sum(u[key] for u in report.uncalled) for key in ("params", "buffers")}
    assert sum(r.params for r in rows) + uncalled["params"] == report.totals["params"]
    assert sum(r.buffers for r in rows) + uncalled["buffers"] == report.totals["buffers"]
    assert sum(r.macs for r in rows) == report.totals["macs"]
    assert sum(r.other_ops for r in rows) == report.totals["other_ops"]
    assert sum(r.output_bytes for r in rows) == report.totals["activation_bytes"]
    levels = len(report.structure.pyramid.levels) if report.structure.pyramid else 0
    assert sum(r.label is not None and r.kind is not None for r in rows) == len(report.structure.blocks) + levels


def test_a_failed_check_inside_a_block_marks_its_row(monkeypatch) -> None:
    report = resnet_inspect.inspect("resnet18", 64)
    rec = report.layer("layer3.1.conv2")
    monkeypatch.setattr(rec, "shape_ok", False)
    monkeypatch.setattr(rec, "analytic_shape", (1, 256, 5, 5))
    buffer = io.StringIO()
    print_summary(report, Console(file=buffer, width=100, force_terminal=False))
    checks = {r["Layer"]: r["Check"] for r in parse_table(buffer.getvalue())[1]}
    assert checks["layer3.1"].startswith("✗") and checks["layer3.0"] == "✓" and checks["layer4.0"] == "✓"


def test_an_fpn_preset_has_its_levels_as_rows() -> None:
    out = summary("retinanet_r50_fpn", "--input", "512", columns=200)
    _, rows, _ = parse_table(out)
    names = [r["Layer"] for r in rows]
    assert {"p3", "p4", "p5", "p6", "p7"} <= set(names) and "body.layer4.2" in names
    assert len(rows) == 4 + 16 + 5
    report = resnet_inspect.inspect("retinanet_r50_fpn", 512)
    assert sum(integer(r["MACs"]) for r in rows) == report.totals["macs"]
    assert sum(integer(r["Params"]) for r in rows) == report.totals["params"]
    p3 = next(r for r in rows if r["Layer"] == "p3")
    assert p3["Output shape"] == "1×256×64×64" and p3["Type"] == "FPN level"


def test_a_model_without_blocks_falls_back_to_depth_2_and_says_so(user_net: str) -> None:
    out = summary(user_net, "--input", "64")
    _, rows, after = parse_table(out)
    names = [r["Layer"].split()[0] for r in rows]
    assert names == ["features", "features.0", "features.1", "features.2", "features.3", "pool", "classifier"]
    assert rows[4]["Layer"].endswith("+2")  # the inner Sequential's conv and ReLU folded in
    assert "No residual blocks" in flat(" ".join(after)) and "depth 2" in flat(" ".join(after))
    assert sum(integer(r["Params"]) for r in rows) == (3 * 9 * 16 + 16) + 32 + (16 * 9 * 32 + 32) + (32 * 10 + 10)


def test_depth_all_and_depth_n_give_the_module_views() -> None:
    every = [r["Layer"] for r in parse_table(summary("resnet18", "--input", "64", "--depth", "all"))[1]]
    assert "layer1.0.conv1" in every and "layer1" in every
    one = [r["Layer"].split()[0] for r in parse_table(summary("resnet18", "--input", "64", "--depth", "1"))[1]]
    assert one == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]
    for bad in ("0", "deep", "-1"):
        result = run("summary", "resnet18", "--depth", bad)
        assert result.exit_code == 2 and "--depth must be" in flat(result.stderr), bad


def test_make_run_fits_a_screen_and_says_how_to_see_every_layer() -> None:
    for columns, most in ((100, 61), (80, 67)):
        out = summary("resnet50", columns=columns)
        assert len(out.splitlines()) <= most, (columns, len(out.splitlines()))
        assert "--depth all" in out


def test_json_and_csv_keep_every_layer_whatever_the_depth() -> None:
    report = resnet_inspect.inspect("resnet18", 32)
    for depth in ([], ["--depth", "1"]):
        rows = list(csv.DictReader(io.StringIO(summary("resnet18", "--input", "32", "--format", "csv", *depth))))
        assert [r["name"] for r in rows] == [rec.name for rec in report.layers], depth
        assert all(r["folded"] == "0" for r in rows)
        data = json.loads(summary("resnet18", "--input", "32", "--format", "json", *depth))
        assert len(data["layers"]) == len(report.layers), depth


# -- conventions and numbers ------------------------------------------------------------------------

def test_the_convention_paragraph_is_behind_a_flag() -> None:
    report = resnet_inspect.inspect("resnet18", 32)
    default, full = summary("resnet18", "--input", "32"), summary("resnet18", "--input", "32", "--conventions")
    assert report.convention not in flat(default) and "docs/conventions.md" in default
    assert report.convention in flat(full)
    assert "Counted: convolutions and linear layers" in flat(full)


def test_number_forms() -> None:
    from resnet_inspect.render.numbers import count, parse_units, short

    assert count(118_013_952) == "118,013,952"
    assert count(118_013_952, "auto") == "118.0M"
    assert count(25_557_032, "auto") == "25.56M"
    assert count(4_089_184_256, "G") == "4.089G"
    assert count(9_408, "M") == "0.009M"
    assert count(512, "auto") == "512" and count(0, "G") == "0G"
    assert count(999_999, "auto") == "1.000M"  # rounding never gives 1,000.0K
    assert count(5, "G") == "5"  # too small for the fixed prefix: its own form, not 0.000G
    assert short(4_089_184_256, unit="MACs") == "4.089 GMACs"
    assert parse_units("k") == "K" and parse_units(None) == "exact" and parse_units("Auto") == "auto"
    with pytest.raises(InputError, match="Unknown --units"):
        parse_units("bytes")


@pytest.mark.parametrize("units, pattern", [("auto", r"(\d{1,3}|\d+\.\d+[KMG])"), ("M", r"\d+\.\d+M|0M")])
def test_units_give_short_forms_that_name_their_unit(units: str, pattern: str) -> None:
    from resnet_inspect.render.numbers import count

    out = summary("resnet50", "--units", units)
    _, rows, _ = parse_table(out)
    report = resnet_inspect.inspect("resnet50")
    scale = {"K": 1e3, "M": 1e6, "G": 1e9}
    total = 0.0
    for r in rows:
        assert re.fullmatch(pattern, r["MACs"]), r["MACs"]
        value = r["MACs"]
        total += float(value[:-1]) * scale[value[-1]] if value[-1] in scale else float(value)
    assert abs(total - report.totals["macs"]) / report.totals["macs"] < 1e-3
    macs = next(line for line in out.splitlines() if line.startswith("MACs"))
    assert macs.split()[1] == count(report.totals["macs"], units)  # type: ignore[arg-type]
    if units == "auto":  # the sections follow the same style: Hopenet's uncalled Linear(2048 + 3, 3)
        assert "fc_finetune (Linear): 6.156K params" in summary("hopenet", "--units", units)
    bad = run("summary", "resnet18", "--units", "furlongs")
    assert bad.exit_code == 2 and "Unknown --units" in flat(bad.stderr)


# -- every width ------------------------------------------------------------------------------------

@pytest.mark.parametrize("columns", [80, 100, 200])
@pytest.mark.parametrize("target", ["resnet50", "retinanet_r50_fpn", "user"])
def test_the_whole_summary_fits_the_terminal(target: str, columns: int, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue("user_net") if target == "user" else target
    out = summary(model, "--input", "128", columns=columns)
    assert max(len(line) for line in out.splitlines()) <= columns
    assert "…" not in out
    headers, rows, after = parse_table(out)
    hidden = re.search(r"Not shown at \d+ columns: ([^(]+) \(", flat(" ".join(after)))
    left_out = [h.strip() for h in hidden.group(1).split(",")] if hidden else []
    assert headers == [h for h in HEADERS if h not in left_out]  # the same headers, in order, at every width
    if columns == 200 or (columns == 100 and target == "resnet50"):
        assert not left_out
    for r in rows:
        integer(r["Params"])
        integer(r["MACs"])
    sections = ["Totals", "Outputs", "Depth", "Shape check"] + (["Downsampling"] if target != "user" else [])
    starts = {line.split(":")[0].strip() for line in out.splitlines()}
    assert set(sections) <= starts, starts
    assert "docs/conventions.md" in out  # the conventions footnote
    report = resnet_inspect.inspect(model, 128)
    text = flat(out)
    for step in report.downsample:  # every fact of the panel, whole
        for carrier in step.carriers:
            assert f"{carrier.name} ({carrier.kernel}×{carrier.kernel}/{carrier.stride})" in text
        for projection in step.projection:
            assert f"{projection.name} ({projection.kind}): {projection.reason}" in text


def test_a_terminal_of_80_columns_gets_panels_that_fit() -> None:
    report = resnet_inspect.inspect("retinanet_r50_fpn", 512)
    buffer = io.StringIO()
    print_summary(report, Console(file=buffer, width=80, force_terminal=True, no_color=True))
    text = re.sub(r"\x1b\[[0-9;]*m", "", buffer.getvalue())
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "…" not in text
    assert "stride 2 ≠ 1 and channels change 1024 → 2048" in flat(re.sub(r"[│╭╮╰╯─]", " ", text))


@pytest.mark.parametrize("columns", [40, 60])
def test_below_80_columns_nothing_is_cut(columns: int) -> None:
    out = summary("retinanet_r50_fpn", "--input", "128", columns=columns)
    assert "…" not in out
    # At 60 long names fold onto a second line; at 40 the tables become stacked records.
    assert max(len(line) for line in out.splitlines()) <= columns
    report = resnet_inspect.inspect("retinanet_r50_fpn", 128)
    text = flat(out)
    for name, info in report.output_info.items():
        assert re.search(rf"{name} (Shape )?{'×'.join(map(str, info.shape))}", text), name
    records = flat(out.split("\nTotals")[0])
    macs = [int(m.replace(",", "")) for m in re.findall(r"(?<!%) MACs (\d[\d,]*)", records)] if columns == 40 else None
    if macs is not None:  # every layer record's MACs, whole
        assert sum(macs) == report.totals["macs"]
