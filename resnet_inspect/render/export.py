"""Machine-readable summaries: JSON (the report's ``to_dict()``), CSV and Markdown.

CSV and Markdown have one row per record (or per displayed row with ``depth``), plus one row per
module that ``forward()`` never called, so that every numeric column sums to the report's total.
"""
from __future__ import annotations

import csv
import io
from typing import Any

from ..analysis.records import Report
from ..text import visible

FORMATS = ("table", "json", "csv", "markdown")
# What an output file's extension says about its format (used when --format is not given).
EXTENSIONS = {".json": "json", ".csv": "csv", ".md": "markdown", ".markdown": "markdown", ".txt": "table"}

CSV_COLUMNS = (
    "index", "name", "type", "kind", "depth", "parent", "call", "stage", "input_shape", "output_shape",
    "params", "trainable_params", "buffers", "macs", "other_ops", "output_bytes", "mac_share",
    "receptive_field", "jump", "analytic_shape", "shape_ok", "folded",
)


def to_json(report: Report) -> str:
    """Exactly ``report.to_dict()``, serialised: one line per record (see :mod:`.jsontext` for the layout)."""
    from .jsonreport import report_json

    return report_json(report)


def _dims(shape: Any) -> str:
    return "x".join(map(str, shape)) if shape else ""


def csv_rows(report: Report, depth: int | None = None) -> list[dict[str, Any]]:
    """One dict per row, raw numbers only (shapes as ``1x64x56x56``)."""
    from .table import number_text, summary_rows

    total = report.totals["macs"]
    rows = []
    for row in summary_rows(report, depth):
        rec = row.record
        rows.append({
            "index": rec.index, "name": visible(rec.name), "type": visible(rec.type), "kind": rec.kind, "depth": rec.depth,
            "parent": visible(rec.parent) if rec.parent is not None else "", "call": rec.call, "stage": rec.stage,
            "input_shape": ";".join(_dims(s) for s in rec.input_shapes),
            "output_shape": ";".join(_dims(s) for s in rec.output_shapes),
            "params": row.params, "trainable_params": row.trainable_params, "buffers": row.buffers,
            "macs": row.macs, "other_ops": row.other_ops, "output_bytes": row.output_bytes,
            "mac_share": f"{row.macs / total:.6f}" if total else "0",
            "receptive_field": _dims(rec.receptive_field),
            "jump": "x".join(number_text(j) for j in rec.jump) if rec.jump else "",
            "analytic_shape": _dims(rec.analytic_shape), "shape_ok": "" if rec.shape_ok is None else rec.shape_ok,
            "folded": row.folded,
        })
    for entry in report.uncalled:
        # Built but never called: their parameters are in the totals, so they get a row too.
        rows.append({column: "" for column in CSV_COLUMNS} | {
            "name": visible(entry["name"]), "type": visible(entry["type"]), "kind": "uncalled", "params": entry["params"],
            "trainable_params": entry["trainable_params"], "buffers": entry["buffers"], "macs": 0,
            "other_ops": 0, "output_bytes": 0, "mac_share": "0", "folded": 0,
        })
    return rows


def to_csv(report: Report, depth: int | None = None) -> str:
    """CSV with a header row; every numeric column sums to ``report.totals``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(report, depth))
    return buffer.getvalue()


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(report: Report, depth: int | None = None) -> str:
    """A Markdown table (one row per record) and the totals, outputs, depth and downsampling."""
    from .table import (
        count_text, field_text, projection_note, shape_text, shapes_text, shows_row, si_text, stride_text, summary_rows,
    )

    t = report.totals
    title = f"{report.model} @ {shape_text(report.input_size)}"
    lines = [f"## {_md(title)}", ""]
    if report.options:
        lines += ["Options: " + ", ".join(f"`{k}={v}`" for k, v in report.options.items()), ""]
    lines += ["| Layer | Type | Output shape | Params | MACs | % MACs | RF | Check |",
              "|---|---|---|---:|---:|---:|---:|:-:|"]
    total = t["macs"] or 1
    for row in summary_rows(report, depth):
        if not shows_row(row):  # the root, when it owns nothing itself
            continue
        rec = row.record
        name = "&nbsp;" * 2 * max(rec.depth - 1, 0) + (f"`{visible(rec.name)}`" if rec.name else "(root)")
        if rec.call:
            name += f" (call {rec.call + 1})"
        if row.folded:
            name += f" +{row.folded}"
        check = "" if rec.shape_ok is None else "✓" if rec.shape_ok else f"✗ formula {shape_text(rec.analytic_shape)}"
        share = f"{100 * row.macs / total:.1f}%" if row.macs else ""
        lines.append(f"| {name} | {_md(rec.type)} | {shapes_text(rec.output_shapes)} | {count_text(row.params)} | "
                     f"{count_text(row.macs)} | {share} | {field_text(rec.receptive_field, rec.global_field)} | {check} |")
    for entry in report.uncalled:
        lines.append(f"| `{entry['name']}` (never called) | {_md(entry['type'])} | — | {count_text(entry['params'])} "
                     "| 0 |  | — |  |")
    lines += [
        "", "### Totals", "",
        f"- Params: {count_text(t['params'])} (trainable {count_text(t['trainable_params'])}, "
        f"frozen {count_text(t['params'] - t['trainable_params'])})",
        f"- Buffers: {count_text(t['buffers'])}",
        f"- MACs: {count_text(t['macs'])} ({si_text(t['macs'], 'MACs')}, counter: {report.counter})",
        f"- FLOPs: {count_text(t['flops'])} (2 × MACs)",
        f"- Other ops: {count_text(t['other_ops'])}",
        f"- Activations: {count_text(t['activation_bytes'])} bytes",
        "", f"Convention: {report.convention}", "", "### Outputs", "",
        "| Output | Shape | Stride | Receptive field | Weighted depth |", "|---|---|---:|---:|---:|",
    ]
    for name, info in report.output_info.items():
        lines.append(f"| {name} | {shape_text(info.shape)} | {stride_text(info.stride)} | "
                     f"{field_text(info.receptive_field, info.global_field)} | {info.depth if info.traced else '—'} |")
    lines += ["", "### Depth", "", f"{report.depth.formula}", ""]
    lines += [f"- {note}" for note in report.depth.notes]
    if report.downsample:
        lines += ["", "### Downsampling", "", "| Stage | Size | Stride | Carried by | Projection shortcut |",
                  "|---|---|---:|---|---|"]
        for step in report.downsample:
            carriers = ", ".join(f"`{c.name}`" for c in step.carriers) or "—"
            projection = "; ".join(f"`{p.name}`: {p.reason}{projection_note(p)}" for p in step.projection) or "—"
            lines.append(f"| {step.stage} | {shape_text(step.size_before)} → {shape_text(step.size_after)} "
                         f"| {step.stride} | {carriers} | {_md(projection)} |")
    bad = [rec for rec in report.layers if rec.shape_ok is False]
    if bad:
        lines += ["", "### Shape check: disagreements", ""]
        lines += [f"- `{rec.name}`: traced {shapes_text(rec.output_shapes)}, formula {shape_text(rec.analytic_shape)} "
                  f"({'; '.join(rec.working)})" for rec in bad]
    if report.warnings:
        lines += ["", "### Warnings", ""] + [f"- {w}" for w in report.warnings]
    return "\n".join(lines).rstrip() + "\n"


def render(report: Report, fmt: str, depth: int | None = None) -> str:
    """The report as text in ``json``, ``csv`` or ``markdown``."""
    if fmt == "json":
        return to_json(report)
    if fmt == "csv":
        return to_csv(report, depth)
    return to_markdown(report, depth)
