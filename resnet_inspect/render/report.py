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
from typing import TYPE_CHECKING, Any, Union

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..analysis.records import LayerRecord, Report
from ..text import visible
from .table import (bytes_text, count_text, depth_text, downsample_table, layer_table, model_title, outputs_table,
                    shape_text, shows_row, si_text, summary_rows, totals_table)

if TYPE_CHECKING:
    from ..analysis.memory import MemoryReport

#: One model's memory analysis for the page: the analysis, why it is missing (one sentence), or None (not asked for).
Memory = Union["MemoryReport", str, None]

#: Columns whose cells sort by number (the row's own count), not by text.
NUMERIC = {"Params": "params", "MACs": "macs", "% MACs": "macs", "Saved for backward": "saved"}
SAVED = "Saved for backward"


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


def saved_per_record(records: list[LayerRecord], saved: dict[str, int]) -> dict[int, int]:
    """Record index -> the bytes its layer saves for the backward (``MemoryReport.saved_for_backward_bytes``).

    As ``summary --memory --format csv`` assigns them: a layer's bytes go to its first call's record
    (a layer called twice saves each tensor once, counted where it was first saved). The root module
    is named by its class in the memory analysis and by "" in the records."""
    found: dict[int, int] = {}
    seen: set[str] = set()
    for rec in records:
        key = rec.name if rec.name or rec.name in saved else rec.type
        if key in seen:
            continue
        seen.add(key)
        if saved.get(key):
            found[rec.index] = saved[key]
    return found


def layer_rows(report: Report, saved: dict[int, int] | None = None) -> dict[str, Any]:
    """The summary's layer table, each row with its record index and the counts it sorts by; with
    ``saved`` (per record, :func:`saved_per_record`) a "Saved for backward" column."""
    data = table_data(layer_table(report, _plain_console()))
    shown = [row for row in summary_rows(report) if shows_row(row)]
    keys = [{"index": row.record.index, "params": row.params, "macs": row.macs, "bytes": row.output_bytes}
            for row in shown]
    if saved is not None:
        data["headers"].append(SAVED)
        for key, cells in zip(keys, data["rows"]):
            key["saved"] = saved.get(key["index"], 0)
            cells.append(bytes_text(key["saved"]))
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


def _block_groups(report: Report, container: bool = False) -> list[tuple[str, list[LayerRecord]]]:
    """Records per residual block, labelled as everywhere else (``layer2.0``); with ``container``
    the block module's own record too (what its forward does outside its submodules)."""
    from ..analysis.structure import block_label

    if report.structure is None:
        return []
    records = report.layers
    return [(block_label(records, block),
             [records[i] for i in block.members] + ([records[block.container]]
                                                    if container and block.container is not None else []))
            for stage in report.structure.stages for block in stage.blocks]


_METRICS = (("params", "Parameters", count_text),
            ("macs", "MACs", lambda v: si_text(v, "MACs")),
            ("output_bytes", "Activation size (layer outputs, summed)", bytes_text))


def _chart(title: str, bars: list[Bar]) -> dict[str, Any]:
    return {"title": title, "bars": bars, "max": max(b.value for b in bars) or 1}


def charts(report: Report, saved: dict[int, int] | None = None) -> list[dict[str, Any]]:
    """Bar charts of params, MACs and activation bytes, per stage and per block; with ``saved``
    (per record, :func:`saved_per_record`) the bytes saved for the backward too."""
    found = []
    for scope, groups in (("stage", _groups(report)), ("block", _block_groups(report))):
        if not groups:
            continue
        for key, title, fmt in _METRICS:
            bars = [Bar(visible(label), value, fmt(value))
                    for label, recs in groups for value in [sum(getattr(r, key) for r in recs)]]
            found.append(_chart(f"{title} per {scope}", bars))
    if saved is not None:
        found.extend(saved_charts(report, saved))
    return found


def saved_charts(report: Report, saved: dict[int, int]) -> list[dict[str, Any]]:
    """Bytes saved for the backward per stage (every record is in one stage's group, so the bars
    sum to the total) and per residual block (its layers and the block module's own record)."""
    stages: dict[str, int] = {}
    for rec in report.layers:
        stage = rec.stage or "other"
        stages[stage] = stages.get(stage, 0) + saved.get(rec.index, 0)
    scopes = (("stage", [(label, value) for label, value in stages.items() if value]),
              ("block", [(label, sum(saved.get(r.index, 0) for r in recs))
                         for label, recs in _block_groups(report, container=True)]))
    return [_chart(f"{SAVED} per {scope}", [Bar(visible(label), value, bytes_text(value)) for label, value in values])
            for scope, values in scopes if values]


def memory_context(memory: Memory) -> dict[str, Any] | None:
    """The Memory section: each peak (bytes and where it is reached) and its breakdown, as
    ``memory`` and ``summary --memory`` print them."""
    if memory is None:
        return None
    if isinstance(memory, str):
        return {"missing": visible(memory)}
    from .memory import peak_line, peak_table

    peaks = [("inference", f"Inference at batch {memory.options.batch} (no_grad)", memory.inference)]
    if memory.training is not None:
        peaks.append(("training", f"Training step with SGD at batch {memory.options.batch}", memory.training))
    return {"missing": None, "batch": memory.options.batch,
            "saved_bytes": sum(memory.saved_for_backward_bytes.values()),
            "peaks": [{"key": key, "title": title, "bytes": peak.total_bytes, "line": visible(peak_line(peak)),
                       "breakdown": table_data(peak_table(peak))} for key, title, peak in peaks]}


def model_context(report: Report, slot: int, memory: Memory = None) -> dict[str, Any]:
    """Everything the template shows about one model (``memory``: its memory analysis, if any)."""
    svg, missing = diagram_svg(report)
    saved = (saved_per_record(report.layers, memory.saved_for_backward_bytes)
             if memory is not None and not isinstance(memory, str) else None)
    return {
        "slot": slot,
        "title": model_title(report),
        "input": shape_text(report.input_size),
        "counter": report.counter,
        "svg": svg,
        "svg_missing": missing,
        "table": layer_rows(report, saved),
        "charts": charts(report, saved),
        "memory": memory_context(memory),
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


def render_html(*reports: Report, memory: list[Memory] | None = None) -> str:
    """The HTML page for one report, or for two side by side with their diff; ``memory`` gives
    each report's memory analysis (or why it is missing)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("resnet_inspect", "render/templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    memory = memory if memory is not None else [None] * len(reports)
    models = [model_context(report, slot, mem) for slot, (report, mem) in enumerate(zip(reports, memory))]
    diff = diff_text(*reports) if len(reports) == 2 else None
    title = " vs ".join(m["title"] for m in models)
    return env.get_template("report.html.j2").render(title=title, models=models, diff=diff)
