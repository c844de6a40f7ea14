"""``report``: one self-contained HTML file per inspection (or a side-by-side pair with the diff).

Every figure in the page comes from the renderers the terminal uses: the layer table's cells are
:func:`~resnet_inspect.render.table.layer_table`'s, the sections are the summary's own tables, each
layer's text is what ``explain`` prints and the diagram is :mod:`~resnet_inspect.render.graph`'s
SVG. This module only re-lays them out as HTML with a Jinja2 template (``templates/``), the
stylesheet and the script inline: the page loads nothing, and its Content-Security-Policy
(``default-src 'none'``) forbids it to.

User strings (module names, class names) pass through :func:`~resnet_inspect.text.visible` and
Jinja2's autoescaping; the embedded JSON goes through ``tojson``, which escapes ``<``, ``>``,
``&`` and quotes, so no name can end a ``<script>`` element.
"""
from __future__ import annotations

import io
from collections import Counter
import re
import shutil
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..analysis.records import LayerRecord, Report
from ..text import visible
from .table import (bytes_text, count_text, depth_text, downsample_table, layer_table, model_title, outputs_table,
                    shape_text, shows_row, si_text, summary_rows, totals_table)

#: Columns whose cells sort by number (the row's own count), not by text.
NUMERIC = {"Params": "params", "MACs": "macs", "% MACs": "macs"}


@dataclass(frozen=True)
class Bar:
    """One bar of a chart: its label, its value and that value as the summary prints it."""

    label: str
    value: int
    text: str


def _plain_console() -> Console:
    """A console that renders like a pipe: no colour, no box drawing, no wrapping, no markup."""
    # soft_wrap: no line is wrapped, so rich skips measuring each word (cifar_resnet1202's 4,811
    # explain texts spent most of their time there).
    return Console(file=io.StringIO(), width=10_000, force_terminal=False, no_color=True, highlight=False,
                   markup=False, emoji=False, soft_wrap=True)


def _plain(cell: Any) -> str:
    return visible(cell.plain if isinstance(cell, Text) else str(cell))


def table_data(table: Table) -> dict[str, Any]:
    """A rich table's header and cells as plain strings (the same text the terminal shows)."""
    columns = [[_plain(cell) for cell in column.cells] for column in table.columns]
    return {"headers": [_plain(column.header) for column in table.columns],
            "rows": [list(row) for row in zip(*columns)] if columns else []}


def layer_rows(report: Report) -> dict[str, Any]:
    """The summary's layer table, each row with its record index and the counts it sorts by."""
    data = table_data(layer_table(report, _plain_console()))
    shown = [row for row in summary_rows(report) if shows_row(row)]
    keys = [{"index": row.record.index, "params": row.params, "macs": row.macs, "bytes": row.output_bytes}
            for row in shown]
    data["numeric"] = [NUMERIC.get(header) for header in data["headers"]]
    data["rows"] = [{"cells": cells, **key} for cells, key in zip(data["rows"], keys)]
    return data


def explain_texts(report: Report) -> dict[int, str]:
    """What ``explain`` prints for every record, keyed by record index."""
    from .explain import explain_record

    calls = Counter(rec.name for rec in report.layers)
    texts = {}
    for rec in report.layers:
        console = _plain_console()
        explain_record(report, rec, console, calls[rec.name])
        texts[rec.index] = "\n".join(line.rstrip() for line in console.file.getvalue().splitlines()).strip()
    return texts


def diagram_svg(report: Report) -> tuple[str | None, str]:
    """The depth-1 diagram as inline SVG (None without Graphviz's ``dot``) and why it is missing."""
    if shutil.which("dot") is None:
        return None, ("Graphviz's 'dot' program was not found, so the diagram is missing. Install Graphviz "
                      "(Debian/Ubuntu: apt-get install graphviz) and run the command again.")
    from .graph import build_graph, render

    svg = render(build_graph(report, depth=1), "svg").decode("utf-8")
    svg = svg[svg.index("<svg"):]  # the XML declaration and the DOCTYPE (with its DTD URL) go
    return re.sub(r"<!--.*?-->", "", svg, flags=re.DOTALL), ""


def node_map(report: Report) -> dict[str, dict[str, Any]]:
    """Diagram node ID -> the record it stands for and the table rows it covers (its own and
    every record nested under it), so a click in the diagram can find them."""
    from .graph import node_name

    nodes: dict[str, dict[str, Any]] = {}
    for rec in report.layers:
        node = node_name(rec)
        if node and node not in nodes:
            nodes[node] = {"record": rec.index, "rows": _covered(report.layers, rec)}
    return nodes


def _covered(records: list[LayerRecord], rec: LayerRecord) -> list[int]:
    # A container's children (``layer2.0.conv1``) and the ops its forward calls (``layer2.0:add``).
    from .nesting import name_index

    if not rec.name:
        return [rec.index]
    return sorted({rec.index, *name_index(records).nested(rec.name)})


def _groups(report: Report) -> list[tuple[str, list[LayerRecord]]]:
    """Records per stage (stem, res2.., head, fpn) in order of first appearance."""
    groups: dict[str, list[LayerRecord]] = {}
    for rec in report.layers:
        groups.setdefault(rec.stage or "other", []).append(rec)
    # A group that owns nothing (the root's own record, whose children carry the costs) has no bar.
    return [(label, recs) for label, recs in groups.items()
            if any(r.params or r.macs or r.output_bytes for r in recs)]


def _block_groups(report: Report) -> list[tuple[str, list[LayerRecord]]]:
    """Records per residual block, labelled as everywhere else (``layer2.0``)."""
    from ..analysis.structure import block_label

    if report.structure is None:
        return []
    records = report.layers
    return [(block_label(records, block), [records[i] for i in block.members])
            for stage in report.structure.stages for block in stage.blocks]


_METRICS = (("params", "Parameters", count_text),
            ("macs", "MACs", lambda v: si_text(v, "MACs")),
            ("output_bytes", "Activation size (layer outputs, summed)", bytes_text))


def charts(report: Report) -> list[dict[str, Any]]:
    """Bar charts of params, MACs and activation bytes, per stage and per block."""
    found = []
    for scope, groups in (("stage", _groups(report)), ("block", _block_groups(report))):
        if not groups:
            continue
        for key, title, fmt in _METRICS:
            bars = [Bar(visible(label), value, fmt(value))
                    for label, recs in groups for value in [sum(getattr(r, key) for r in recs)]]
            found.append({"title": f"{title} per {scope}", "bars": bars, "max": max(b.value for b in bars) or 1})
    return found


def model_context(report: Report, slot: int) -> dict[str, Any]:
    """Everything the template shows about one model."""
    svg, missing = diagram_svg(report)
    return {
        "slot": slot,
        "title": model_title(report),
        "input": shape_text(report.input_size),
        "counter": report.counter,
        "svg": svg,
        "svg_missing": missing,
        "table": layer_rows(report),
        "charts": charts(report),
        "totals": table_data(totals_table(report)),
        "outputs": table_data(outputs_table(report, _plain_console())),
        "downsample": table_data(downsample_table(report, _plain_console())) if report.downsample else None,
        "depth": [visible(line) for line in depth_text(report).plain.split("\n")],
        "warnings": [visible(w) for w in report.warnings],
        "data": {"explain": {str(k): v for k, v in explain_texts(report).items()}, "nodes": node_map(report)},
    }


def diff_text(a: Report, b: Report) -> str:
    """What ``diff A B`` prints, as plain text."""
    from .diff import print_diff

    console = _plain_console()
    print_diff(a, b, console)
    return "\n".join(line.rstrip() for line in console.file.getvalue().splitlines()).strip()


def render_html(*reports: Report) -> str:
    """The HTML page for one report, or for two side by side with their diff."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("resnet_inspect", "render/templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    models = [model_context(report, slot) for slot, report in enumerate(reports)]
    diff = diff_text(*reports) if len(reports) == 2 else None
    title = " vs ".join(m["title"] for m in models)
    return env.get_template("report.html.j2").render(title=title, models=models, diff=diff)
