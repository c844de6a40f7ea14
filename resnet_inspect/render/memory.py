"""The memory analysis as text: the peaks, where they are reached, and their breakdown."""
from __future__ import annotations

from typing import Any

from rich.console import Console
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
    """The breakdown of a peak, then its largest live tensors."""
    table = Table(show_header=True, box=None, pad_edge=False)
    table.add_column("part")
    table.add_column("bytes", justify="right")
    table.add_column("", justify="right")
    for key, value in peak.breakdown_bytes.items():
        table.add_row(_PARTS.get(key, key), f"{value:,}", bytes_text(value))
    table.add_row("total", f"{peak.total_bytes:,}", bytes_text(peak.total_bytes), style="bold")
    for t in peak.largest:
        table.add_row(Text(f"  live: {t.made_by} {t.op} {_shape(t.shape)} ({_PARTS.get(t.kind, t.kind)})",
                           style="dim"), f"{t.bytes:,}", bytes_text(t.bytes))
    return table


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


def print_memory(report: MemoryReport, console: Console, fit: dict[str, Any] | None = None) -> None:
    """The full memory report of ``resnet-inspect memory``."""
    console.print(f"{report.model}: memory at {_settings(report)}", markup=False, highlight=False)
    console.print(f"Weights and buffers: {bytes_text(report.weights_bytes)} ({report.weights_bytes:,} B)",
                  markup=False, highlight=False)
    print_section(console, escape(f"Inference peak (no_grad): {peak_line(report.inference)}"), peak_table(report.inference))
    if report.training is not None:
        title = (f"Training step peak ({report.options.optimizer}"
                 f"{', foreach' if report.options.uses_foreach else ''}): {peak_line(report.training)}")
        print_section(console, escape(title), peak_table(report.training))
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
