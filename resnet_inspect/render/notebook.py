"""The summary as Python shows it: plain text for ``print``, a rich renderable, an HTML table for Jupyter.

The text is what ``resnet-inspect summary`` prints (:func:`~resnet_inspect.render.table.print_summary`),
captured from a console. The HTML is the same table's cells (:func:`~resnet_inspect.render.report.table_data`,
as the HTML report takes them) in a small template, ``templates/notebook.html.j2``: its styles are
scoped to one ``div`` and it loads nothing, so it suits a notebook's output cell and works offline.

The torchinfo-style column choice (``col_names``) is :func:`columns_table`: the same rows
(:func:`~resnet_inspect.render.table.summary_rows`) with the columns asked for.
"""
from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

from ..analysis.opdesc import WindowOp
from ..analysis.records import Report
from ..text import visible
from .table import (SummaryRow, count_text, model_title, pair_text, print_table, shape_text, shapes_text, shows_row,
                    summary_rows, table_box, totals_table)

Cell = Callable[[SummaryRow, Report], str]


def _kernel(row: SummaryRow, report: Report) -> str:
    op = row.record.op
    return "×".join(map(str, op.kernel)) if isinstance(op, WindowOp) else "—"


def _trainable(row: SummaryRow, report: Report) -> str:
    # torchinfo's words: all of the row's parameters train, none do, some do, or it has none.
    if not row.params:
        return "—"
    if row.trainable_params == row.params:
        return "True"
    return "False" if row.trainable_params == 0 else "Partial"


def _share(value: int, total: int) -> str:
    return f"{100 * value / total:.2f}%" if value and total else ""


def _count(value: int, row: SummaryRow) -> str:
    # A container whose children are listed below it owns nothing itself: a dash, as the summary shows.
    return "—" if value == 0 and not row.record.is_leaf and not row.folded else count_text(value)


#: torchinfo's ``col_names`` (and ``receptive_field``, this package's own) -> header, justification, cell.
COLUMNS: dict[str, tuple[str, str, Cell]] = {
    "input_size": ("Input shape", "left", lambda row, r: shapes_text(row.record.input_shapes)),
    "output_size": ("Output shape", "left", lambda row, r: shapes_text(row.record.output_shapes)),
    "num_params": ("Params", "right", lambda row, r: _count(row.params, row)),
    "params_percent": ("% Params", "right", lambda row, r: _share(row.params, r.totals["params"])),
    "kernel_size": ("Kernel", "right", _kernel),
    "mult_adds": ("MACs", "right", lambda row, r: _count(row.macs, row)),
    "trainable": ("Trainable", "right", _trainable),
    "receptive_field": ("RF", "right", lambda row, r: pair_text(row.record.receptive_field)),
}


def shown_rows(report: Report, depth: int | None) -> list[SummaryRow]:
    """The rows the layer table shows, in its order."""
    return [row for row in summary_rows(report, depth) if shows_row(row)]


def columns_table(report: Report, console: Console, col_names: Iterable[str], depth: int | None) -> Table:
    """The layer table with torchinfo's columns: name and type, then ``col_names`` in that order."""
    table = Table(box=table_box(console), header_style="bold")
    table.add_column("Layer", no_wrap=True)
    table.add_column("Type", no_wrap=True)
    cells = [COLUMNS[name] for name in col_names]
    for header, justify, _ in cells:
        table.add_column(header, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for row in shown_rows(report, depth):
        rec = row.record
        name = "  " * max(rec.depth - 1, 0) + (visible(rec.name) or "(root)")
        if rec.call:
            name += f" (call {rec.call + 1})"
        if row.folded:
            name += f" +{row.folded}"
        table.add_row(name, visible(rec.type), *(cell(row, report) for _, _, cell in cells))
    return table


def print_columns(report: Report, console: Console, col_names: Iterable[str], depth: int | None) -> None:
    """A header line, the torchinfo-style layer table, the totals and the convention."""
    console.print(f"{model_title(report)}, input {shape_text(report.input_size)}; MACs from the "
                  f"{report.counter} counter.", highlight=False, markup=False)
    print_table(console, columns_table(report, console, col_names, depth))
    console.print()
    console.print(totals_table(report))
    console.print(Text(f"Convention: {report.convention}", style="dim"))


def print_summary(report: Report, console: Console, depth: int | None) -> None:
    """What ``resnet-inspect summary`` prints, from wherever the summary's renderer lives: its own
    module once the blocks-as-rows view (issue 16) has one, render/table.py before that."""
    try:
        from .summary import print_summary as printer  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        from .table import print_summary as printer
    printer(report, console, depth)


def every_layer(report: Report) -> int:
    """A depth that folds nothing: the deepest record's."""
    return max((rec.depth for rec in report.layers), default=1) or 1


@dataclass(frozen=True)
class View:
    """What to show of a report: the layers down to ``depth`` (None: the summary's default rows),
    and either the summary's own table (``col_names`` None) or torchinfo's columns."""

    depth: int | None = None
    col_names: tuple[str, ...] | None = None

    def print(self, report: Report, console: Console) -> None:
        """Print this view of the report to a console."""
        if self.col_names is None:
            print_summary(report, console, self.depth)
        else:
            print_columns(report, console, self.col_names, self.depth)


def plain_text(report: Report, view: View = View(), width: int | None = None) -> str:
    """The view as plain text (no colour, no box drawing), ``width`` columns (default: the terminal's)."""
    width = width or shutil.get_terminal_size((100, 24)).columns
    buffer = io.StringIO()
    view.print(report, Console(file=buffer, width=width, force_terminal=False, no_color=True, highlight=False,
                               emoji=False, color_system=None, force_jupyter=False))
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())


@dataclass(frozen=True)
class Renderable:
    """A report's view for ``rich.print``: rendered at the target console's width, in its colours."""

    report: Report
    view: View = View()

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        buffer = io.StringIO()
        # Laid out as on a terminal of the target's width (the table fits it, or takes its compact
        # form); coloured only when the target console is.
        inner = Console(file=buffer, width=options.max_width, force_terminal=True,
                        color_system=console.color_system, no_color=console.no_color, highlight=False,
                        emoji=False, force_jupyter=False)
        self.view.print(self.report, inner)
        yield Text.from_ansi(buffer.getvalue().rstrip("\n"))


# -- HTML (Jupyter's _repr_html_) -----------------------------------------------------------------

def _html_console() -> Console:
    return Console(file=io.StringIO(), width=10_000, force_terminal=False, no_color=True, highlight=False,
                   markup=False, emoji=False, force_jupyter=False)


def layer_table_data(report: Report, view: View) -> dict[str, Any]:
    """The view's layer table as strings, each row with its record index and its counts."""
    from .report import table_data
    from .table import layer_table

    console = _html_console()
    table = (layer_table(report, console, view.depth) if view.col_names is None
             else columns_table(report, console, view.col_names, view.depth))
    data = table_data(table)
    data["numeric"] = [column.justify == "right" for column in table.columns]
    keys = [{"index": row.record.index, "params": row.params, "macs": row.macs} for row in shown_rows(report, view.depth)]
    data["rows"] = [{"cells": cells, **key} for cells, key in zip(data["rows"], keys, strict=True)]
    return data


def html(report: Report, view: View = View()) -> str:
    """A self-contained HTML fragment: title, layer table, totals and the convention."""
    import jinja2

    from .report import table_data

    env = jinja2.Environment(loader=jinja2.PackageLoader("resnet_inspect", "render/templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    return env.get_template("notebook.html.j2").render(
        title=model_title(report), input=shape_text(report.input_size), counter=report.counter,
        table=layer_table_data(report, view), totals=table_data(totals_table(report)),
        convention=report.convention, warnings=[visible(w) for w in report.warnings],
        depth=view.depth)


def short_repr(report: Report) -> str:
    """One line: the model, its input and its totals."""
    t = report.totals
    return (f"<Report {model_title(report)} @ {shape_text(report.input_size)}: {len(report.layers)} records, "
            f"{count_text(t['params'])} params, {count_text(t['macs'])} MACs ({report.counter})>")

