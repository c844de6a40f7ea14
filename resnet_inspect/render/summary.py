"""The ``summary`` view: blocks as rows by default, every section fitted to the terminal's width.

The first screen has one row per residual block, with the stem and head layers and each feature
pyramid level as rows of their own (the typed :class:`~resnet_inspect.analysis.blocks.Structure`
says which records form each). ``--depth all`` lists every module, ``--depth N`` folds modules
below level N into their ancestor. Every section fits ``console.width`` down to 80 columns: a table
that does not fit drops columns (and says which) or wraps names, never a number; the downsampling
table becomes one record per stage.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..analysis.blocks import Block, Structure
from ..analysis.records import LayerRecord, Report
from ..errors import InputError
from ..text import visible
from .depth import Depth, parse_depth  # noqa: F401 (parse_depth: its former home)
from .numbers import Units, count
from .table import (
    LAYER_COLUMNS, SummaryRow, depth_text, downsample_table, is_plain, layer_cells, layer_table, outputs_table,
    print_table, projection_note, shape_mismatches, shape_text, shapes_text, summary_rows, totals_table,
)
from .table import _header as header_line

FALLBACK_DEPTH = 2  # a model with no residual block the data flow can see is shown to this depth
# Columns left out, in this order, when the layer table is wider than the terminal.
DROP_ORDER = ("Type", "% MACs", "RF")
HEADERS = tuple(header for header, _ in LAYER_COLUMNS)
MIN_NAME_WIDTH = 10  # narrower, a folded name takes more lines than it is worth
CONVENTIONS_DOC = "docs/conventions.md"


# -- blocks as rows ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Group:
    """Leaf records shown as one row: its label and type, and the record whose output it shows."""

    label: str
    kind: str
    members: tuple[int, ...]
    output: int


def _block_label(layers: list[LayerRecord], block: Block) -> tuple[str, str]:
    """A block's module name and class; a block with no module of its own is named by what its
    records' names share, or by its add."""
    if block.container is not None:
        return layers[block.container].name, layers[block.container].type
    parts = [layers[i].name.replace(":", ".").split(".") for i in block.members]
    shared = os.path.commonprefix(parts)
    return (".".join(shared) if shared else layers[block.add].name), "residual block"


def groups(report: Report, structure: Structure) -> list[Group]:
    """The blocks, then the pyramid levels, each as a group of leaf records."""
    layers = report.layers
    found = []
    for block in structure.blocks:
        label, kind = _block_label(layers, block)
        found.append(Group(label, kind, block.members, max(block.after, default=block.add)))
    if structure.pyramid is not None:
        for level in structure.pyramid.levels:
            found.append(Group(level.name, "FPN level", level.records, level.output))
    return found


def block_rows(report: Report) -> list[SummaryRow] | None:
    """One row per block and per pyramid level; every other leaf (stem, head) is a row of its own.

    A group row sums its records' costs, shows its output record's shape and receptive field, and
    carries its leaves' formula checks, so every column still sums to the report's total. None when
    the data flow shows no residual block.
    """
    structure = report.structure
    if structure is None or not structure.blocks:
        return None
    owner: dict[int, Group] = {}
    for group in groups(report, structure):
        for index in group.members:
            owner.setdefault(index, group)
    rows: list[SummaryRow] = []
    made: dict[int, SummaryRow] = {}
    for rec in report.layers:
        if not rec.is_leaf and not _owns(rec):  # a container whose costs all sit on its children
            continue
        group = _group_of(report.layers, rec, owner)
        if group is None:  # a stem or head layer: its own row, not indented (no module rows above it)
            label = (rec.name or "(root)") + (f" (call {rec.call + 1})" if rec.call else "")
            rows.append(SummaryRow(rec, rec.params, rec.trainable_params, rec.buffers, rec.macs, rec.other_ops,
                                   rec.output_bytes, label=label))
            continue
        row = made.get(id(group))
        if row is None:
            checks = tuple(report.layers[i].shape_ok for i in group.members if report.layers[i].shape_ok is not None)
            row = SummaryRow(report.layers[group.output], 0, 0, 0, 0, 0, 0, folded=-1, label=group.label,
                             kind=group.kind, checks=checks)  # type: ignore[arg-type]
            made[id(group)] = row
            rows.append(row)
        row.absorb(rec)
    return rows


def _owns(rec: LayerRecord) -> bool:
    """Whether a record carries costs of its own (every leaf; a module with parameters and children,
    such as timm's BatchNormAct2d, too)."""
    return bool(rec.params or rec.buffers or rec.macs or rec.other_ops or rec.output_bytes)


def _group_of(layers: list[LayerRecord], rec: LayerRecord, owner: dict[int, Group]) -> Group | None:
    """The group a record's costs go to: its own, or for a module with children, its first
    descendant's that has one."""
    if rec.index in owner or rec.is_leaf:
        return owner.get(rec.index)
    index = rec.index + 1
    while index < len(layers) and layers[index].depth > rec.depth:
        if index in owner:
            return owner[index]
        index += 1
    return None


@dataclass(frozen=True)
class View:
    """The rows the table shows, and the line that says what they are and how to see more."""

    rows: list[SummaryRow]
    note: str


def view(report: Report, depth: Depth) -> View:
    """The rows for ``depth`` and the line under the table."""
    if depth == "all":
        return View(summary_rows(report), "")
    if isinstance(depth, int):
        return View(summary_rows(report, depth), "")
    rows = block_rows(report)
    if rows is None:
        return View(summary_rows(report, FALLBACK_DEPTH),
                    f"No residual blocks found in the data flow, so rows are modules to depth {FALLBACK_DEPTH} "
                    "(\"+N\": N deeper records folded in). Every layer: --depth all.")
    structure = report.structure
    assert structure is not None  # block_rows found blocks in it
    levels = len(structure.pyramid.levels) if structure.pyramid is not None else 0
    what = "blocks and FPN levels" if levels else "blocks"
    return View(rows, f"Rows: {what} (sums of their layers). Every layer: --depth all, or --depth N.")


# -- fitting the terminal ---------------------------------------------------------------------------

def natural_width(console: Console, renderable: RenderableType) -> int:
    """The width ``renderable`` takes when nothing wraps."""
    return Measurement.get(console, console.options.update_width(100_000), renderable).maximum


def fitted_layer_table(report: Report, console: Console, rows: list[SummaryRow], depth: Depth,
                       units: Units) -> tuple[RenderableType, tuple[str, ...]]:
    """The layer table with the fewest columns left out that fits; then long names fold onto a
    second line; below that (under about 60 columns) one stacked record per row.

    The headers never change; numbers are never cut (their columns never wrap)."""
    fold = depth if isinstance(depth, int) else None
    hide: tuple[str, ...] = ()
    cells = layer_cells(report, fold, rows=rows, units=units)  # made once, shared by every layout tried
    tries = [((), False), *(((DROP_ORDER[:k]), True) for k in range(len(DROP_ORDER) + 1))]
    for hide, tight in tries:
        table = layer_table(report, console, fold, rows=rows, units=units, hide=hide, tight=tight, cells=cells)
        width = natural_width(console, table)
        if width <= console.width:
            return table, hide
    names = natural_width(console, layer_table(report, console, fold, rows=rows, units=units, cells=cells,
                                               hide=tuple(h for h in HEADERS if h != "Layer"), tight=True))
    room = names - (width - console.width)
    if room >= MIN_NAME_WIDTH:
        return layer_table(report, console, fold, rows=rows, units=units, hide=hide, name_width=room, tight=True,
                           cells=cells), hide
    return layer_records(report, console, fold, rows, units), ()


def layer_records(report: Report, console: Console, depth: int | None, rows: list[SummaryRow], units: Units) -> Text:
    """The layer table as stacked records, for a terminal too narrow for its columns: a legend of
    the headers, then per row its name, type and shape, and below them its figures, each after its
    header. Lines wrap between words, so every number stays whole."""
    table = layer_table(report, console, depth, rows=rows, units=units)
    text = Text(" ".join(HEADERS[:3]) + " / " + " ".join(HEADERS[3:]), style="dim")
    cells = list(zip(*(column.cells for column in table.columns)))
    for row in cells:
        first = Text("\n")
        first.append_text(Text.assemble(row[0], " ", row[1], " ", row[2]))  # type: ignore[arg-type]
        text.append_text(first)
        figures = Text("\n ")
        for header, cell in zip(HEADERS[3:], row[3:]):
            if str(cell):
                figures.append_text(Text.assemble(f" {header} ", cell))  # type: ignore[arg-type]
        text.append_text(figures)
    return text


def print_fitted(console: Console, renderable: RenderableType) -> None:
    """Print within ``console.width``: a table that fits as :func:`print_table` does, anything else
    wrapped at the width, with the trailing blanks rich pads rows with removed when piped. A table
    whose cells cannot wrap to the width keeps its natural width: wider than the terminal, never cut."""
    if isinstance(renderable, Table):
        measured = Measurement.get(console, console.options.update_width(100_000), renderable)
        cramped = measured.minimum >= console.width  # rich cuts a cell when the minimum only just fits
        if measured.maximum <= console.width or (cramped and is_plain(console)):
            print_table(console, renderable)
            return
        if cramped:  # rich.print's width= can only narrow, so the console is widened for the table
            width = console.width
            console.width = measured.maximum
            try:
                console.print(renderable, crop=False)
            finally:
                console.width = width
            return
    if not is_plain(console):
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    console.out("\n".join(line.rstrip() for line in captured.get().splitlines()), highlight=False)


def table_records(table: Table) -> Text:
    """A table as stacked records: per row its first cell, then every other cell after its header.
    Lines wrap between words, so a number stays whole however narrow the terminal."""
    text = Text()
    headers = [str(column.header) for column in table.columns]
    for row in zip(*(column.cells for column in table.columns)):
        if text:
            text.append("\n")
        text.append_text(Text.assemble(row[0]))  # type: ignore[arg-type]
        for header, cell in zip(headers[1:], row[1:]):
            text.append_text(Text.assemble(f"  {header} ", cell))  # type: ignore[arg-type]
    return text


def section(console: Console, title: str, body: RenderableType) -> None:
    """A titled panel on a terminal, a title line and the body when piped; within the width. A table
    that cannot fit even with its cells wrapped becomes stacked records."""
    if isinstance(body, Table) and body.columns and \
            Measurement.get(console, console.options, body).minimum >= console.width - 4:
        body = table_records(body)
    if is_plain(console):
        console.print(f"\n{title}")
        print_fitted(console, body)
        return
    console.print(Panel(body, title=f"[bold]{title}[/]", title_align="left", expand=False))


def downsample_records(report: Report) -> Table:
    """The downsampling table as one record per stage, for a terminal too narrow for its columns:
    the stage, then its size, stride and carriers on one line and its projection shortcut below,
    with the table's headers as labels; every fact whole (a long line wraps inside its column)."""
    grid = Table.grid(padding=(0, 2, 0, 0))
    grid.add_column(no_wrap=True, style="bold")
    grid.add_column(overflow="fold")
    # The table's headers, as a legend: the same words at every width.
    grid.add_row("Stage", Text("Size, Stride, Carried by / Projection shortcut / Dilation (where used)", style="dim"))
    for step in report.downsample:
        carriers = ", ".join(f"{c.name} ({c.kernel}×{c.kernel}/{c.stride})" for c in step.carriers) or "—"
        grid.add_row(step.stage, f"Size {shape_text(step.size_before)} → {shape_text(step.size_after)}, "
                                 f"Stride {step.stride}, Carried by {carriers}")
        projection = "; ".join(f"{p.name} ({p.kind}): {p.reason}{projection_note(p)}" for p in step.projection)
        if projection or step.stage != "stem":
            grid.add_row("", f"Projection shortcut {projection or '— (identity shortcuts)'}")
        if step.dilation:
            dilation = ", ".join(f"{d.name} d={d.dilation}" for d in step.dilation)
            grid.add_row("", f"Dilation {dilation}" + (" (replaces the stride)" if step.dilation_replaces_stride else ""))
    return grid


def _downsampling(report: Report, console: Console) -> RenderableType:
    table = downsample_table(report, console)
    room = console.width - (0 if is_plain(console) else 4)  # a panel's border and padding
    return table if natural_width(console, table) <= room else downsample_records(report)


def _lines(items: Iterable[str]) -> Text:
    return Text("\n".join(items))


# -- the whole view ---------------------------------------------------------------------------------

def print_summary(report: Report, console: Console, depth: Depth = None, *, units: Units = "exact",
                  conventions: bool = False, memory: Any = None) -> None:
    """The layer table (blocks as rows unless ``depth`` says otherwise), then the totals, outputs,
    depth, downsampling and the checks; the counting convention in full with ``conventions``."""
    console.print(header_line(report), highlight=False)
    shown = view(report, depth)
    table, hidden = fitted_layer_table(report, console, shown.rows, depth, units)
    print_fitted(console, table)
    notes = [shown.note] if shown.note else []
    if hidden:
        notes.append(f"Not shown at {console.width} columns: {', '.join(hidden)} (a wider terminal, "
                     "or --format markdown, shows every column).")
    for note in notes:
        console.print(Text(note, style="dim"))
    section(console, "Totals", totals_table(report, units, conventions, memory))
    if conventions:
        console.print(Text(f"Convention: {report.convention}", style="dim"))
    else:
        console.print(Text(f"Counting conventions: --conventions, or {CONVENTIONS_DOC}.", style="dim"))
    section(console, "Outputs", outputs_table(report, console))
    section(console, "Depth", depth_text(report, conventions))
    if report.downsample:
        section(console, "Downsampling", _downsampling(report, console))
    _checks(report, console, units)


def _checks(report: Report, console: Console, units: Units) -> None:
    """Uncalled modules, shared parameters, the formula check and the warnings."""
    if report.uncalled:
        section(console, "Uncalled modules", _lines(
            f"{visible(u['name'])} ({visible(u['type'])}): {count(u['params'], units)} params, never called by forward()"
            for u in report.uncalled))
    shared = [f"{visible(rec.name)}.{entry}" for rec in report.layers for entry in rec.shared
              if entry.endswith("counted there)")]
    if shared:
        section(console, "Shared parameters (counted once)", _lines(shared))
    checked = [rec for rec in report.layers if rec.shape_ok is not None]
    bad = shape_mismatches(report)
    if bad:
        lines = Text()
        for rec in bad:
            lines.append(f"{visible(rec.name)}: traced {shapes_text(rec.output_shapes)}, "
                         f"formula {shape_text(rec.analytic_shape)}", style="bold red")
            for step in rec.working:
                lines.append(f"\n    {step}")
            lines.append("\n")
        section(console, f"Shape check: {len(bad)} of {len(checked)} layers DISAGREE", lines)
    else:
        console.print(f"\nShape check: all {len(checked)} formula shapes match the traced forward pass.")
    for warning in report.warnings:
        console.print(Text(f"Warning: {warning}", style="yellow"))
