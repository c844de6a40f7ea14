"""resnet_inspect.render.quickrender: the layer table drawn without rich's per-cell pipeline prints the
same bytes as rich's own Table did, piped, on a colour terminal and on a terminal that is not UTF-8."""
from __future__ import annotations

import copy
import io
import itertools
from collections.abc import Iterator

import pytest
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

import resnet_inspect
from resnet_inspect.cli.terminal import Console as _Console
from resnet_inspect.render import quickrender
from resnet_inspect.render import table as table_module
from resnet_inspect.render.summary import print_summary

MODES = ("plain", "colour", "ascii")
WIDTHS = (80, 100, 120, 200)
DEPTHS = (None, 1, 2, "all")


class _Odd(nn.Module):
    """Names rich would read as markup or an emoji code, wide characters, and a module called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.add_module("stem[bold]", nn.Conv2d(3, 8, 3, padding=1))
        self.add_module("层:smile:", nn.Conv2d(8, 8, 3, padding=1))
        self.shared = nn.ReLU()
        self.add_module("a_rather_long_module_name_that_has_to_fold_onto_a_second_line_at_80", nn.Conv2d(8, 8, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.shared(getattr(self, "stem[bold]")(x))
        x = self.shared(getattr(self, "层:smile:")(x))
        return getattr(self, "a_rather_long_module_name_that_has_to_fold_onto_a_second_line_at_80")(x) + x


def _reports() -> dict[str, object]:
    reports: dict[str, object] = {name: resnet_inspect.inspect(name) for name in (
        "resnet18", "retinanet_r50_fpn", "cifar_resnet20", "resnetv2_50", "seresnet50", "hopenet")}
    reports["odd"] = resnet_inspect.inspect(_Odd(), (1, 3, 16, 16))
    wrong = copy.deepcopy(reports["resnet18"])  # a formula that disagrees: a bold red span in its cell
    record = next(rec for rec in wrong.layers if rec.shape_ok)  # type: ignore[attr-defined]
    record.shape_ok, record.analytic_shape = False, (1, 1, 1, 1)
    reports["mismatch"] = wrong
    return reports


_REPORTS = _reports()


def _console(mode: str, width: int) -> Console:
    if mode == "ascii":  # a terminal whose encoding lacks the box lines and the ✓: ASCII boxes and glyphs
        stream = io.TextIOWrapper(io.BytesIO(), encoding="latin-1", errors="replace")
        return _Console(file=stream, width=width, force_terminal=True, color_system="256", highlight=False,
                        soft_wrap=False)
    terminal = mode == "colour"
    return _Console(file=io.StringIO(), width=width, force_terminal=terminal, no_color=not terminal, highlight=False,
                    soft_wrap=False, color_system="truecolor" if terminal else None)


def _printed(report: object, mode: str, width: int, depth: object) -> bytes:
    console = _console(mode, width)
    print_summary(report, console, depth)  # type: ignore[arg-type]
    stream = console.file
    if isinstance(stream, io.TextIOWrapper):
        stream.flush()
        return stream.buffer.getvalue()  # type: ignore[attr-defined]
    return stream.getvalue().encode()  # type: ignore[attr-defined]


def _cases() -> Iterator[tuple[str, str, int, object]]:
    """Every width, mode and depth for the odd net, and for resnet18's full table; for the rest every
    depth and mode, the widths in turn, except their full tables (long for rich to draw): one mode each."""
    widths, modes = itertools.cycle(WIDTHS), itertools.cycle(MODES)
    for name in _REPORTS:
        for depth in DEPTHS:
            full = name == "odd" or (name == "resnet18" and depth == "all")
            for mode in MODES if full or depth != "all" else (next(modes),):
                for width in WIDTHS if full else (next(widths),):
                    yield name, mode, width, depth


@pytest.mark.parametrize(("name", "mode", "width", "depth"), list(_cases()))
def test_the_quick_table_prints_what_rich_prints(monkeypatch: pytest.MonkeyPatch, name: str, mode: str, width: int,
                                                 depth: object) -> None:
    report = _REPORTS[name]
    quick = _printed(report, mode, width, depth)
    # What rich printed before: its own Table, and the piped table printed back with console.out.
    monkeypatch.setattr(table_module, "QuickTable", Table)
    monkeypatch.setattr(table_module, "print_verbatim", lambda console, text: console.out(text, highlight=False))
    assert quick == _printed(report, mode, width, depth)


@pytest.mark.parametrize("mode", ["plain", "colour"])
def test_one_line_cells_skip_rich_cell_rendering(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    # Every cell of resnet18's full table fits its column on one line, so no cell goes through
    # rich's render_lines (before: one call per cell and header, 8 per row).
    console = _console(mode, 200)
    table = table_module.layer_table(_REPORTS["resnet18"], console)
    calls = 0
    original = Console.render_lines

    def counted(self: Console, *args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Console, "render_lines", counted)
    table_module.print_table(console, table)
    assert table.row_count > 50
    assert calls == 0, calls
    assert console.file.getvalue().count("\n") >= table.row_count + 1  # type: ignore[attr-defined]


def test_a_cell_that_wraps_takes_rich_path_for_its_row_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # The long name folds onto two lines in a fixed-width Layer column: that row alone is laid out by rich.
    console = _console("colour", 80)
    table = table_module.layer_table(_REPORTS["odd"], console, name_width=20, tight=True)
    rows = []
    original = quickrender._Grid._rich_row

    def counted(self: quickrender._Grid, cells: tuple[object, ...], *args: object) -> None:
        rows.append(str(cells[0]))
        original(self, cells, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(quickrender._Grid, "_rich_row", counted)
    quick = _segments_text(console, table)
    assert rows == ["a_rather_long_module_name_that_has_to_fold_onto_a_second_line_at_80"]
    monkeypatch.setattr(quickrender, "supported", lambda table: False)
    assert quick == _segments_text(console, table)


def _segments_text(console: Console, table: Table) -> str:
    with console.capture() as captured:
        console.print(table)
    return captured.get()


def test_other_tables_are_left_to_rich() -> None:
    plain = Table()
    plain.add_column("a")
    assert quickrender.supported(plain)
    for change in ({"show_lines": True}, {"row_styles": ["dim"]}, {"expand": True}, {"show_footer": True},
                   {"padding": (1, 1)}, {"width": 40}):
        table = Table(**change)  # type: ignore[arg-type]
        table.add_column("a")
        assert not quickrender.supported(table), change


def test_the_layouts_tried_share_one_set_of_cells(monkeypatch: pytest.MonkeyPatch) -> None:
    # At 80 columns the summary tries several layouts of the full table (columns left out, then
    # names folded); each row's name cell is made once for all of them (before: once per layout).
    from resnet_inspect.render import summary

    report = _REPORTS["resnet18"]
    made = 0
    original = table_module._row_name

    def counted(row: object) -> object:
        nonlocal made
        made += 1
        return original(row)  # type: ignore[arg-type]

    monkeypatch.setattr(table_module, "_row_name", counted)
    console = _console("plain", 80)
    rows = summary.view(report, "all").rows  # type: ignore[arg-type]
    table, hidden = summary.fitted_layer_table(report, console, rows, "all", "exact")  # type: ignore[arg-type]
    assert hidden  # columns were left out: more than one layout was tried
    assert made == table.row_count == len([row for row in rows if table_module.shows_row(row)])
