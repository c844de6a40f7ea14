"""render.fit: a table, a row of facts or a line fits any width from 40 columns up (the narrowest
the CLI honours) without cutting a number, a no-wrap cell or a header."""
from __future__ import annotations

import io
import re

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from resnet_inspect.render.fit import Facts, Fitted, Hanging, column_widths, fits, without_column

WIDTHS = st.integers(min_value=40, max_value=220)
counts = st.integers(min_value=0, max_value=10**12).map(lambda n: f"{n:,}")  # up to 17 characters
words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz.()", min_size=1, max_size=12)
prose = st.lists(words, min_size=1, max_size=12).map(" ".join)
headers = st.lists(st.text(alphabet="ABCDEFGHIJKLMNOP", min_size=1, max_size=14), min_size=2, max_size=6,
                   unique=True)


def render(renderable: object, width: int) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=True, color_system=None, highlight=False)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


@st.composite
def tables(draw: st.DrawFn) -> tuple[Table, list[str], list[str]]:
    """A table whose first column names the row, then counts (no wrap) and prose (wraps)."""
    names = draw(headers)
    table = Table(title="T")
    kinds = ["name", *draw(st.lists(st.sampled_from(["count", "prose"]), min_size=len(names) - 1,
                                    max_size=len(names) - 1))]
    for header, kind in zip(names, kinds):
        table.add_column(header, justify="right" if kind == "count" else "left", no_wrap=kind != "prose")
    numbers: list[str] = []
    for _ in range(draw(st.integers(min_value=1, max_value=5))):
        row = [draw(words) if kind == "name" else draw(counts) if kind == "count" else draw(prose) for kind in kinds]
        numbers += [cell for cell, kind in zip(row, kinds) if kind == "count"]
        table.add_row(*row)
    return table, names, numbers


@settings(max_examples=60, deadline=None)
@given(tables(), WIDTHS)
def test_a_fitted_table_never_cuts_a_number_or_a_header(made: tuple[Table, list[str], list[str]], width: int) -> None:
    table, names, numbers = made
    out = render(Fitted(table), width)
    assert max(len(line.rstrip()) for line in out.splitlines()) <= width
    tokens = out.split()
    assert "…" not in out
    for number in numbers:
        assert number in tokens
    for header in names:  # the same headers, whatever the shape
        assert header in tokens


@settings(max_examples=30, deadline=None)
@given(tables(), st.integers(min_value=44, max_value=160))
def test_a_fitted_table_fits_inside_a_panel(made: tuple[Table, list[str], list[str]], width: int) -> None:
    table, _, numbers = made
    out = render(Panel(Fitted(table), title="Totals", expand=False), width)
    assert max(len(line) for line in out.splitlines()) <= width
    assert all(number in out for number in numbers)


def test_the_shape_changes_with_the_width() -> None:
    """Natural when it fits, wrapped text columns next, then one record per row."""
    table = Table()
    table.add_column("Name", no_wrap=True)
    table.add_column("MACs", justify="right", no_wrap=True)
    table.add_column("Also differs")
    also = "stride: 1 → 2; input: 1×128×56×56 → 1×128×28×28"
    table.add_row("layer2.0.conv1", "102,760,448 → 25,690,112", also)
    console = Console(file=io.StringIO(), width=200)
    natural = column_widths(console, console.options, table, 200)
    assert natural == [14, 24, len(also)]
    wrapped = column_widths(console, console.options, table, 60)
    assert wrapped is not None and wrapped[:2] == [14, 24] and len("1×128×56×56") <= wrapped[2] < len(also)
    assert column_widths(console, console.options, table, 45) is None
    stacked = render(Fitted(table), 45)
    assert [line.rstrip() for line in stacked.splitlines()[:3]] == ["Name", "layer2.0.conv1", "    MACs          102,760,448 → 25,690,112"]
    assert fits(Console(file=io.StringIO(), width=200), table, wrapped=False)
    assert not fits(Console(file=io.StringIO(), width=60), table, wrapped=False)


def test_a_narrower_layout_comes_before_records() -> None:
    wide, narrow = Table(box=None), Table(box=None)
    for table, cell in ((wide, "102,760,448 → 25,690,112"), (narrow, "102,760,448 →\n25,690,112")):
        table.add_column("Layer", no_wrap=True)
        table.add_column("MACs", no_wrap=True, justify="right")
        table.add_row("layer2.0.conv1", cell)
    out = render(Fitted(wide, narrower=[narrow]), 34)
    assert [line.split() for line in out.splitlines()][1:3] == [["layer2.0.conv1", "102,760,448", "→"],
                                                                 ["25,690,112"]]


def test_without_column_keeps_the_rest() -> None:
    table = Table()
    for header in ("Name", "Params", "Source"):
        table.add_column(header)
    table.add_row("resnet18", "11,689,512", "torchvision")
    narrower, cells = without_column(table, "Source")
    assert [c.header for c in narrower.columns] == ["Name", "Params"] and cells == ["torchvision"]
    assert [c.header for c in table.columns] == ["Name", "Params", "Source"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(counts, st.sampled_from(["params", "MACs", "GMACs"])), min_size=1, max_size=8), WIDTHS)
def test_facts_keep_each_number_with_its_unit(facts: list[tuple[str, str]], width: int) -> None:
    texts = [Text(f"{number} {unit}") for number, unit in facts]
    out = render(Facts(texts, indent=2), width)
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= width
    for number, unit in facts:
        assert any(re.search(rf"(^|\s){re.escape(number)} {unit}(\s|$)", line) for line in lines)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(words, counts), min_size=1, max_size=40), WIDTHS)
def test_a_hanging_line_wraps_at_words(tokens: list[str], width: int) -> None:
    out = render(Hanging(Text("  " + " ".join(tokens)), indent=4), width)
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= width
    assert out.split() == tokens
    assert all(line.startswith("      ") for line in lines[1:])
