"""Every view fits the terminal it is in, down to 80 columns, and never cuts a number (issue 16).

Each command runs in-process on an emulated terminal (rich's ``TTY_COMPATIBLE=1``; the CLI takes
its width from ``COLUMNS``, as rich does) at 80, 100 and 200 columns. What a narrower run shows is
compared with the 200-column run of the same command: the same numbers, whole; the same panel
titles and column headers; the same diff markers on the same layers. Odd widths (40, the
narrowest the CLI honours; 12, which it widens to 80; and 1000) must not change the exit code.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len

from conftest import run_cli

WIDTHS = (80, 100, 200)
ODD_WIDTHS = (40, 12, 1000)

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# A number as the views print it: digits with thousands commas, a decimal part, or a shape's ×.
_NUMBER = re.compile(r"\d(?:[\d,.×]*\d)?")
_CUT_NUMBER = re.compile(r"\d(?:…|\.\.\.)|(?:…|\.\.\.)\d")
_PANEL_TITLE = re.compile(r"╭─ (.+?) ─")
_RULE = re.compile(r"^[\s│]*─[─\s]*[│]?\s*$")
# A count and its unit, as the tree prints each node's subtree: ``11,689,512 params``, ``1.814 GMACs``.
_WITH_UNIT = re.compile(r"\d[\d,.]* (?:params|[kMGT]?MACs)\b")
# A diff row: its marker, then the layer (a table row, a stacked record or a check line).
_MARKED = re.compile(r"^[\s│]*([~+-]) +([A-Za-z_(][\w.()]*)")


def _snapshots(folder: Path) -> dict[str, str]:
    """A snapshot that matches (resnet18d at 64) and one that differs: the same file claiming to
    be resnet18 and lacking its fc, so that the rebuild changes (~), removes (-) and adds (+) layers."""
    good = folder / "resnet18d.json"
    result = run_cli("snapshot", "resnet18d", "--input", "64", "-o", str(good))
    assert result.exit_code == 0, result.output
    data = json.loads(good.read_text(encoding="utf-8"))
    data["model"] = "resnet18"
    data["layers"] = [layer for layer in data["layers"] if layer["name"] != "fc"]
    bad = folder / "claims_resnet18.json"
    bad.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return {"good": str(good), "bad": str(bad)}


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return _snapshots(tmp_path_factory.mktemp("widths"))


# command id -> (arguments, expected exit code); "{good}"/"{bad}" are the snapshot files.
VIEWS: dict[str, tuple[tuple[str, ...], int]] = {
    "summary": (("summary", "resnet50", "--input", "64"), 0),
    "tree": (("tree", "resnet18", "--input", "64"), 0),
    "explain": (("explain", "resnet50", "layer2.0.conv2", "--input", "64"), 0),
    "diff": (("diff", "resnet18", "resnet18d", "--input", "64"), 0),
    "diff-stride": (("diff", "resnet50", "resnet50", "--b-stride-in-1x1", "--input", "64", "--exit-code"), 1),
    "list": (("list",), 0),
    "memory": (("memory", "resnet18", "--input", "64", "--batch", "2", "--train", "--optimizer", "adamw"), 0),
    "check-pass": (("check", "{good}"), 0),
    "check-fail": (("check", "{bad}", "{good}"), 1),
}


def _params(widths: tuple[int, ...]) -> list[Any]:
    return [pytest.param(view, width, id=f"{view}-{width}")
            for view in VIEWS for width in widths]


@lru_cache(maxsize=None)
def _run(view: str, width: int, files: tuple[tuple[str, str], ...], charset: str) -> tuple[int, str, str]:
    """The view at ``width`` columns on a terminal: exit code, stdout and stderr, without styles."""
    from typer.testing import CliRunner

    from resnet_inspect.cli import app

    args = [arg.format(**dict(files)) for arg in VIEWS[view][0]]
    env = {"COLUMNS": str(width), "TTY_COMPATIBLE": "1", "NO_COLOR": "1", "FORCE_COLOR": None}
    result = CliRunner(charset=charset).invoke(app, args, env=env)
    return result.exit_code, _ANSI.sub("", result.stdout), _ANSI.sub("", result.stderr)


def run_view(view: str, width: int, snapshots: dict[str, str], charset: str = "utf-8") -> tuple[int, str, str]:
    return _run(view, width, tuple(sorted(snapshots.items())), charset)


def numbers(text: str) -> set[str]:
    """The number tokens printed (a set: `list` names a shared source once when it lists the
    sources below the table)."""
    return set(_NUMBER.findall(text))


def with_units(text: str) -> Counter[str]:
    """Each count printed with its unit on one line, and how often (every tree node has one)."""
    return Counter(_WITH_UNIT.findall(text))


def panel_titles(text: str) -> set[str]:
    return set(_PANEL_TITLE.findall(text))


def headers(text: str) -> set[str]:
    """The words of every table header: the line above each rule under a header."""
    lines = text.splitlines()
    return {word for index, line in enumerate(lines) if index and _RULE.match(line) and "─" in line
            for word in lines[index - 1].replace("│", " ").split()}


def marked_rows(text: str) -> set[tuple[str, str]]:
    return {(m.group(1), m.group(2)) for m in map(_MARKED.match, text.splitlines()) if m}


def too_wide(text: str, width: int) -> list[str]:
    return [line for line in text.splitlines() if cell_len(line) > width]


@pytest.mark.parametrize("view,width", _params(WIDTHS))
def test_view_fits_the_terminal(view: str, width: int, snapshots: dict[str, str]) -> None:
    code, out, err = run_view(view, width, snapshots)
    assert code == VIEWS[view][1], err
    assert "Traceback" not in out + err
    assert out.strip()
    assert not too_wide(out, width), f"lines wider than {width}:\n" + "\n".join(too_wide(out, width)[:5])
    assert not _CUT_NUMBER.findall(out), f"numbers cut at {width} columns: {_CUT_NUMBER.findall(out)[:5]}"


@pytest.mark.parametrize("view,width", _params(WIDTHS[:-1]))
def test_narrow_view_shows_what_the_wide_one_does(view: str, width: int, snapshots: dict[str, str]) -> None:
    """Every number of the 200-column view appears whole; the panels, headers and diff markers
    are the same; the tree keeps each count with its unit."""
    _, wide, _ = run_view(view, 200, snapshots)
    _, narrow, _ = run_view(view, width, snapshots)
    assert numbers(wide) - numbers(narrow) == set()
    assert panel_titles(narrow) == panel_titles(wide)
    assert headers(wide) - set(narrow.split()) == set()
    assert marked_rows(narrow) == marked_rows(wide)
    if view in ("diff", "check-fail"):  # these diffs change, add and remove layers: every marker is checked
        assert {marker for marker, _ in marked_rows(wide)} == {"~", "+", "-"}
    assert with_units(wide) - with_units(narrow) == Counter()


def test_diff_sections_are_all_there(snapshots: dict[str, str]) -> None:
    """The model diff's sections at every width: the layers, where each stage downsamples, the totals."""
    for width in WIDTHS:
        _, out, _ = run_view("diff-stride", width, snapshots)
        assert panel_titles(out) == {"Where each stage downsamples", "Totals"}
        assert "Also differs" in out and "layers differ" in out


@pytest.mark.parametrize("view,width", _params(ODD_WIDTHS))
def test_odd_widths_never_change_the_verdict(view: str, width: int, snapshots: dict[str, str]) -> None:
    """40 columns (the narrowest honoured), 12 (widened to 80) and 1000: the exit code is the one
    at 200 columns, no traceback; and the output fits wherever the width is honoured."""
    code, out, err = run_view(view, width, snapshots)
    assert code == VIEWS[view][1], err
    assert "Traceback" not in out + err and "Internal error" not in out + err
    shown = 80 if width < 40 else width
    assert not too_wide(out, shown)
    assert not _CUT_NUMBER.findall(out)
    _, wide, _ = run_view(view, 200, snapshots)
    assert numbers(wide) - numbers(out) == set()


def test_piped_output_is_unchanged_by_the_width() -> None:
    """Piped, tables keep their natural width so that no row wraps (a pipe has no width to fit):
    each variant's row is one line, the same whatever COLUMNS says."""
    from resnet_inspect.variants import variants

    def rows(columns: str) -> dict[str, str]:
        result = run_cli("list", env={"COLUMNS": columns, "TTY_COMPATIBLE": None, "FORCE_COLOR": None})
        assert result.exit_code == 0
        return {line.split()[0]: line for line in result.stdout.splitlines() if line.split()[:1] in ([v] for v in variants())}

    assert rows("80") == rows("300")
    assert set(rows("80")) == set(variants())


@pytest.mark.parametrize("view,width", _params((80,)))
def test_an_ascii_terminal_fits_too(view: str, width: int, snapshots: dict[str, str]) -> None:
    """On a terminal whose encoding lacks ×, → and the box lines, the ASCII stand-ins (x, ->) are
    put in before the layout, so the fitted views still fit, with every number whole."""
    code, out, err = run_view(view, width, snapshots, charset="ascii")
    assert code == VIEWS[view][1], err
    assert "Traceback" not in out + err and "Internal error" not in out + err
    assert not too_wide(out, width), "\n".join(too_wide(out, width)[:5])
    _, wide, _ = run_view(view, 200, snapshots)
    assert {n.replace("×", "x") for n in numbers(wide)} <= {n.replace("×", "x") for n in re.findall(r"\d(?:[\d,.x]*\d)?", out)}
