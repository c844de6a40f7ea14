"""The memory analysis as text: the peaks, where they are reached, and their breakdown."""
from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..analysis.memory import MemoryReport, Peak
from .table import bytes_text, print_section

_PARTS = {"weights": "weights and buffers", "gradients": "gradients", "optimizer_state": "optimizer state",
          "saved_activations": "saved for backward", "input": "input", "activations": "activations",
          "transient": "transient"}


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape)) if shape else "scratch"


def peak_line(peak: Peak) -> str:
    """One line: the total and where it is reached."""
    where = f"the forward at {peak.where}" if peak.phase == "forward" else f"the {peak.where}"
    return f"{bytes_text(peak.total_bytes)} ({peak.total_bytes:,} B), reached in {where}"


def peak_table(peak: Peak) -> Table:
    """The breakdown of a peak."""
    table = Table(show_header=True, box=None, pad_edge=False)
    table.add_column("part")
    table.add_column("bytes", justify="right")
    table.add_column("", justify="right")
    for key, value in peak.breakdown_bytes.items():
        table.add_row(_PARTS.get(key, key), f"{value:,}", bytes_text(value))
    table.add_row("total", f"{peak.total_bytes:,}", bytes_text(peak.total_bytes), style="bold")
    return table


def largest_text(peak: Peak) -> Text:
    """The largest tensors live at a peak, one line each."""
    lines = [f"  {bytes_text(t.bytes):>10}  {_shape(t.shape)} from {t.made_by} ({t.op}; {_PARTS.get(t.kind, t.kind)})"
             for t in peak.largest]
    return Text("Largest live tensors:\n" + "\n".join(lines), style="dim")


def _settings(report: MemoryReport) -> str:
    o = report.options
    parts = [f"batch {o.batch}", f"input {'×'.join(map(str, report.input_shape))}", o.dtype]
    if o.amp:
        parts.append(f"autocast {o.amp}")
    if o.frozen_bn:
        parts.append("frozen batch norm")
    if o.freeze:
        parts.append(f"frozen {', '.join(o.freeze)}")
    parts.append(f"{o.device} kernels")
    return ", ".join(parts)


def _peak_body(peak: Peak) -> Group:
    """A peak's panel: where it is reached (a line that wraps at words, never cut), then its parts.
    The panel's title stays short so that it fits an 80-column frame."""
    return Group(Text(peak_line(peak)), peak_table(peak))


def print_memory(report: MemoryReport, console: Console, fit: dict[str, Any] | None = None) -> None:
    """The full memory report of ``resnet-inspect memory``."""
    console.print(f"{report.model}: memory at {_settings(report)}", markup=False, highlight=False)
    console.print(f"Weights and buffers: {bytes_text(report.weights_bytes)} ({report.weights_bytes:,} B)",
                  markup=False, highlight=False)
    print_section(console, "Inference peak (no_grad)", _peak_body(report.inference))
    console.print(largest_text(report.inference))
    if report.training is not None:
        title = f"Training step peak ({report.options.optimizer}{', foreach' if report.options.uses_foreach else ''})"
        print_section(console, escape(title), _peak_body(report.training))
        console.print(largest_text(report.training))
    if fit is not None:
        what = "training step" if fit["train"] else "inference"
        line = (f"Largest batch for the {what} within {bytes_text(fit['budget_bytes'])}: {fit['batch']} "
                f"(peak {bytes_text(fit['peak_bytes'])})" if fit["batch"] else
                f"Not even batch 1 fits the {what} in {bytes_text(fit['budget_bytes'])} "
                f"(it needs {bytes_text(fit['peak_bytes'])})")
        console.print(f"\n{line}", markup=False, highlight=False)
    console.print(Text("Totals held, weights included: compare with torch.cuda.max_memory_allocated() "
                       "(docs/memory.md).", style="dim"))


def memory_section(console: Console, inference: Peak, training: Peak | None, batch: int) -> None:
    """The short Memory section of ``summary``."""
    lines = [f"Inference at batch {batch}: {peak_line(inference)}"]
    if training is not None:
        lines.append(f"Training step with SGD at batch {batch}: {peak_line(training)}")
    print_section(console, "Memory", Text("\n".join(lines)))


def saved_by_row(saved: dict[str, int], name: str) -> int:
    """Bytes saved for the backward by a layer and the modules inside it (a folded row's share)."""
    return sum(v for k, v in saved.items() if k == name or k.startswith(name + ".") or k.startswith(name + ":"))


def summary_memory_dict(report: MemoryReport) -> dict[str, Any]:
    """The Memory part of ``summary --memory --format json``: each peak in bytes, and per layer the
    bytes autograd saves for the backward."""
    assert report.training is not None
    return {"batch": report.options.batch, "weights_bytes": report.weights_bytes,
            "inference_peak_bytes": report.inference.total_bytes,
            "training_step_sgd_peak_bytes": report.training.total_bytes,
            "saved_for_backward_bytes": report.saved_for_backward_bytes}


def with_memory(text: str, fmt: str, report: MemoryReport) -> str:
    """A rendered summary (json, csv, markdown or plain table) with the memory analysis added:
    a ``memory`` key in JSON, a ``saved_for_backward_bytes`` column in CSV, lines otherwise."""
    import csv
    import io
    import json

    if fmt == "json":
        data = json.loads(text)
        data["memory"] = summary_memory_dict(report)
        from .jsontext import dumps

        return dumps(data) + "\n"  # as export.to_json lays it out
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        fields = [*(rows[0].keys() if rows else []), "saved_for_backward_bytes"]
        saved, seen = report.saved_for_backward_bytes, set()
        for row in rows:
            # A folded row carries its subtree; otherwise a layer's own, on its first call's row only,
            # so that the column sums to the total saved. The root module is named by its class there.
            name, folded = row["name"], row.get("folded") not in ("", "0", None)
            name = name or (row["type"] if str(row.get("depth")) == "0" else name)
            first = name not in seen and row.get("kind") != "uncalled"
            seen.add(name)
            row["saved_for_backward_bytes"] = (saved_by_row(saved, name) if folded else saved.get(name, 0)) \
                if first else 0
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()
    assert report.training is not None
    lines = ["", "Memory", f"Inference at batch {report.options.batch}: {peak_line(report.inference)}",
             f"Training step with SGD at batch {report.options.batch}: {peak_line(report.training)}"]
    return text.rstrip("\n") + "\n" + "\n".join(lines) + "\n"
