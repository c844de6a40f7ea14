"""Rich tables for ``summary`` and ``list``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..analysis.records import LayerRecord, Projection, Report
from ..errors import InputError
from ..text import visible
from .measure import QuickTable, add_rows
from .numbers import Units, binary_bytes, count, exact, percent, si_text, with_unit  # noqa: F401 (si_text: explain, export)
from .quickrender import print_verbatim


# -- formatting helpers shared by summary, tree, explain and diff ---------------------------------

def shape_text(shape: tuple[int, ...] | list[int] | None) -> str:
    """``1×64×112×112``; an em dash when there is no shape."""
    return "×".join(map(str, shape)) if shape else "—"


def shapes_text(shapes: list[tuple[int, ...]] | list[list[int]]) -> str:
    """The first output shape, and how many more tensors a module returns."""
    if not shapes:
        return "—"
    more = f" (+{len(shapes) - 1} more)" if len(shapes) > 1 else ""
    return shape_text(shapes[0]) + more


count_text = exact  # an exact count with thousands separators (render/numbers.py)
bytes_text = binary_bytes  # bytes in binary units (KiB, MiB, GiB)


def number_text(value: float) -> str:
    """An integer-valued float without its ``.0`` (jumps become fractional after upsampling)."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def pair_text(pair: tuple[float, float] | list[float] | None) -> str:
    """A per-dimension pair (receptive field, jump): one number when both dimensions agree."""
    if pair is None:
        return "—"
    first, second = pair
    return number_text(first) if first == second else f"{number_text(first)}×{number_text(second)}"


def field_text(pair: tuple[float, float] | list[float] | None, global_field: bool = False) -> str:
    """A receptive field: ``global`` after attention, where every position sees the whole input."""
    return "global" if global_field else pair_text(pair)


def table_box(console: Console) -> box.Box | None:
    """Box lines on a terminal, none when piped."""
    return box.SIMPLE_HEAD if console.is_terminal else None


def stride_text(stride: float | tuple[float, float] | list[float] | None) -> str:
    """An output's stride: one number, or H×W when the two differ."""
    if stride is None:
        return "—"
    return pair_text(stride if isinstance(stride, (list, tuple)) else [stride, stride])


def is_plain(console: Console) -> bool:
    """Piped or redirected output: no box drawing and no wrapping of wide tables."""
    return not console.is_terminal


def print_table(console: Console, table: Table) -> None:
    """Print a table; when piped, at its natural width so that no row wraps."""
    if not is_plain(console):
        console.print(table)
        return
    natural = Measurement.get(console, console.options.update_width(100_000), table).maximum
    width = console.width
    console.width = max(width, natural)
    try:
        with console.capture() as captured:
            console.print(table, crop=False)
    finally:
        console.width = width
    # Rich pads every row to the table's width; a file or a pipe is better off without it.
    print_verbatim(console, "\n".join(line.rstrip() for line in captured.get().splitlines()))


def print_section(console: Console, title: str, body: RenderableType) -> None:
    """A titled panel on a terminal; a title line and the body when piped."""
    if is_plain(console):
        console.print(f"\n{title}")
        if isinstance(body, Table):
            print_table(console, body)
        else:
            console.print(body)
    else:
        console.print(Panel(body, title=f"[bold]{title}[/]", title_align="left", expand=False))


# -- summary ----------------------------------------------------------------------------------

@dataclass
class SummaryRow:
    """One displayed row: a record, plus the costs of the deeper records folded into it."""

    record: LayerRecord
    params: int
    trainable_params: int
    buffers: int
    macs: int
    other_ops: int
    output_bytes: int
    folded: int = 0  # how many deeper records were folded into this row
    label: str | None = None  # a row for a group of records (a block, an FPN level): its name ...
    kind: str | None = None  # ... its type (``Bottleneck``, ``FPN level``) ...
    checks: tuple[bool, ...] | None = None  # ... and the formula checks of its records

    def absorb(self, rec: LayerRecord) -> None:
        """Add a deeper record's costs to this row."""
        self.params += rec.params
        self.trainable_params += rec.trainable_params
        self.buffers += rec.buffers
        self.macs += rec.macs
        self.other_ops += rec.other_ops
        self.output_bytes += rec.output_bytes
        self.folded += 1


def summary_rows(report: Report, depth: int | None = None) -> list[SummaryRow]:
    """One row per record; with ``depth``, records nested deeper are summed into their ancestor.

    Records come in call order with every module's record before its children's, so the most
    recent row at ``depth`` is the ancestor of any deeper record that follows it. Only leaves and
    function records carry costs, so every column still sums to the report's total.
    """
    if depth is not None and depth < 1:
        raise InputError(f"--depth must be 1 or more, not {depth}.")
    rows: list[SummaryRow] = []
    anchor: SummaryRow | None = None
    for rec in report.layers:
        if depth is not None and rec.depth > depth and anchor is not None:
            anchor.absorb(rec)
            continue
        row = SummaryRow(rec, rec.params, rec.trainable_params, rec.buffers, rec.macs, rec.other_ops,
                         rec.output_bytes)
        rows.append(row)
        if depth is not None and rec.depth == depth:
            anchor = row
    return rows


def _cost_cell(value: int, row: SummaryRow, text: str) -> str:
    # A container whose children are listed below it owns nothing itself: its costs sit on the
    # children's rows. A dash says so without breaking "the column sums to the total".
    if value == 0 and not row.record.is_leaf and not row.folded:
        return "—"
    return text


def _shape_cell(rec: LayerRecord, drop_batch: bool = False) -> Text:
    shapes = [s[1:] if drop_batch and len(s) > 1 else s for s in rec.output_shapes]
    text = Text(shapes_text(shapes))
    if rec.shape_ok is False:
        text.append(f" ≠ formula {shape_text(rec.analytic_shape)}", style="bold red")
    return text


def _check_cell(rec: LayerRecord, checks: tuple[bool, ...] | None = None) -> Text:
    ok = rec.shape_ok if checks is None else (all(checks) if checks else None)
    if ok is None:
        return Text("")
    return Text("✓", style="green") if ok else Text("✗", style="bold red")


def _row_name(row: SummaryRow) -> Text:
    rec = row.record
    if row.label is not None:  # a group row names its group, not the record whose output it shows
        return Text(visible(row.label))
    text = Text("  " * max(rec.depth - 1, 0) + (visible(rec.name) or "(root)"))
    if rec.call:
        text.append(f" (call {rec.call + 1})", style="dim")
    if row.folded:
        text.append(f" +{row.folded}", style="dim")
    return text


def shows_row(row: SummaryRow) -> bool:
    """The root record is shown only when it owns something (a parameter or a direct op)."""
    rec = row.record
    return bool(rec.name) or bool(row.params or row.buffers or row.macs or row.other_ops)


LAYER_COLUMNS = (("Layer", "left"), ("Type", "left"), ("Output shape", "left"), ("Params", "right"),
                 ("MACs", "right"), ("% MACs", "right"), ("RF", "right"), ("Check", "center"))


def layer_table(report: Report, console: Console, depth: int | None = None, *, rows: list[SummaryRow] | None = None,
                units: Units = "exact", hide: tuple[str, ...] = (), name_width: int | None = None,
                tight: bool = False, cells: list[tuple[RenderableType, ...]] | None = None) -> Table:
    """The per-layer table: name indented by nesting, type, output shape, params, MACs, share,
    receptive field and the formula check.

    ``rows`` replaces the rows of ``depth`` (the summary's blocks as rows); ``units`` is the number
    style (render/numbers.py); ``hide`` leaves out columns by header, for a narrow terminal, and
    ``name_width`` fixes the Layer column's width, a longer name folding onto a second line;
    ``tight`` puts one space between columns instead of two (and draws no box). ``cells`` are
    :func:`layer_cells` of the same rows, made once for several layouts of one table.
    """
    caption = None  # no title: the summary's header line above the table names the model and input
    if depth is not None and rows is None:
        caption = f"--depth {depth}: \"+N\" after a name means N deeper records are folded into its row."
    # Tight: no box either, whose column dividers would take a further space each.
    table = QuickTable(caption=caption, box=None if tight else table_box(console), header_style="bold",
                       show_edge=False, collapse_padding=tight, pad_edge=not tight)
    shown = [index for index, (header, _) in enumerate(LAYER_COLUMNS) if header not in hide]
    for index in shown:
        header, justify = LAYER_COLUMNS[index]
        wrap = name_width is not None and header == "Layer"
        table.add_column(header, justify=justify, no_wrap=not wrap,  # type: ignore[arg-type]
                         overflow="fold" if wrap else "ellipsis", width=name_width if wrap else None)
    every = layer_cells(report, depth, rows=rows, units=units) if cells is None else cells
    add_rows(table, [tuple(row[index] for index in shown) for row in every])
    return table


def layer_cells(report: Report, depth: int | None = None, *, rows: list[SummaryRow] | None = None,
                units: Units = "exact") -> list[tuple[RenderableType, ...]]:
    """The layer table's cells, a tuple per shown row in the order of LAYER_COLUMNS."""
    total = report.totals["macs"]
    cells = []
    for row in summary_rows(report, depth) if rows is None else rows:
        if not shows_row(row):
            continue
        rec = row.record
        cells.append((
            _row_name(row), visible(row.kind or rec.type), _shape_cell(rec),
            _cost_cell(row.params, row, count(row.params, units)), _cost_cell(row.macs, row, count(row.macs, units)),
            percent(row.macs, total), field_text(rec.receptive_field, rec.global_field), _check_cell(rec, row.checks),
        ))
    return cells


def totals_table(report: Report, units: Units = "exact", conventions: bool = True, memory: Any = None) -> Table:
    """Params, buffers, MACs, FLOPs, other ops and activation memory, in the number style ``units``;
    with exact figures, MACs and FLOPs are also given in their short form. ``conventions`` adds how
    other ops and activations are counted to their notes. ``memory`` (an analysis.memory
    MemoryReport) adds its inference and training-step peaks; a string says why there are none."""
    t = report.totals
    table = QuickTable(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    table.add_column()
    frozen = t["params"] - t["trainable_params"]

    def also(value: int, unit: str) -> str:  # the short form beside an exact figure, not twice over
        return f"{with_unit(value, unit)} " if units == "exact" else ""

    table.add_row("Params", count(t["params"], units), f"trainable {count(t['trainable_params'], units)}, "
                  f"frozen {count(frozen, units)}")
    table.add_row("Buffers", count(t["buffers"], units), buffers_note(report, units))
    table.add_row("MACs", count(t["macs"], units), f"{also(t['macs'], 'MACs')}(counter: {report.counter})")
    table.add_row("FLOPs", count(t["flops"], units), f"{also(t['flops'], 'FLOPs')}= 2 × MACs")
    table.add_row("Other ops", count(t["other_ops"], units), "norm, activation, pooling, add, upsample, bias"
                  + (" (one per element op)" if conventions else ""))
    activations = f"bytes = {binary_bytes(t['activation_bytes'])}"
    table.add_row("Activations", count(t["activation_bytes"], units), activations + (
        ": all layer outputs added up, batch included (in-place ops add nothing; a sum, not the peak)"
        if conventions else ", all outputs summed (not the peak)"))
    if isinstance(memory, str):
        table.add_row("Peak memory", "—", f"not predicted: {memory}")
    elif memory is not None:
        for label, peak, what in (("Inference peak", memory.inference, "no_grad"),
                                  ("Training peak", memory.training, "SGD step")):
            if peak is not None:
                where = f"at {peak.where}" if peak.phase == "forward" else f"in {peak.where}"
                table.add_row(label, count(peak.total_bytes, units),
                              f"bytes = {binary_bytes(peak.total_bytes)} in all; {what}; {where}"
                              + (" (weights and buffers included; resnet-inspect memory)" if conventions else ""))
    return table


_BUFFER_LABELS = {
    "running_statistics": "norm running statistics, updated in training",
    "frozen_constants": "frozen-norm constants (scale, shift, mean, variance), never updated",
    "other": "other buffers",
}


def buffers_note(report: Report, units: Units = "exact") -> str:
    """What the buffers hold, from ``report.buffer_kinds``: one kind named, several counted."""
    kinds = [(kind, n) for kind, n in report.buffer_kinds.items() if n]
    if len(kinds) == 1:
        return f"non-parameter state: {_BUFFER_LABELS[kinds[0][0]]}"
    if kinds:
        return "non-parameter state: " + "; ".join(
            f"{count(n, units)} {_BUFFER_LABELS[kind]}" for kind, n in kinds)
    return "non-parameter state (state_dict tensors)"


def outputs_table(report: Report, console: Console) -> Table:
    """Every output (each FPN level) with its shape, stride, receptive field and weighted depth."""
    table = QuickTable(box=table_box(console), header_style="bold", show_edge=False)
    for column in ("Output", "Shape", "Stride", "Receptive field", "Weighted depth"):
        # Cells may wrap between words only: on a narrow terminal "Receptive field" takes two
        # lines, while a shape or a number, one word, stays whole.
        table.add_column(column, justify="left" if column in ("Output", "Shape") else "right", no_wrap=False)
    for name, info in report.output_info.items():
        table.add_row(name, shape_text(info.shape), stride_text(info.stride),
                      field_text(info.receptive_field, info.global_field), str(info.depth if info.traced else "—"))
    return table


def depth_text(report: Report, conventions: bool = True) -> Text:
    """The depth as the paper counts it, the formula, and what was left out and why (the rule
    itself, what counts as depth, only with ``conventions``)."""
    d = report.depth
    text = Text()
    text.append(d.formula, style="bold")
    if conventions:
            text.append("\nCounted: convolutions and linear layers on the longest path from input to output "
                    "(normalisation, activations and pooling carry no depth).")
    listed = {p.name for step in report.downsample for p in step.projection}
    if d.projections_not_counted and not conventions and set(d.projections_not_counted) <= listed:
        text.append(f"\nNot counted: {len(d.projections_not_counted)} projection shortcut(s) beside the main path "
                    "(under Downsampling).")
    elif d.projections_not_counted:
        names = ", ".join(d.projections_not_counted)
        text.append(f"\nNot counted: {len(d.projections_not_counted)} projection shortcut(s), which run beside "
                    f"the main path: {names}.")
    if d.other_not_counted:
        text.append(f"\nAlso off the longest path: {', '.join(d.other_not_counted)}.")
    for note in d.notes:
        text.append(f"\nNote: {note}")
    return text


def downsample_table(report: Report, console: Console) -> Table:
    """Per stage: size before and after, stride, which layer carries it, the projection and why."""
    table = QuickTable(box=table_box(console), header_style="bold")
    for column in ("Stage", "Size", "Stride", "Carried by", "Projection shortcut", "Dilation"):
        table.add_column(column, justify="right" if column == "Stride" else "left")
    for step in report.downsample:
        size = f"{shape_text(step.size_before)} → {shape_text(step.size_after)}"
        carriers = ", ".join(f"{c.name} ({c.kernel}×{c.kernel}/{c.stride})" for c in step.carriers) or "—"
        projection = "; ".join(f"{p.name} ({p.kind}): {p.reason}{projection_note(p)}" for p in step.projection)
        if not projection:
            projection = "— (identity shortcuts)" if step.stage.startswith("res") else "—"
        dilation = ", ".join(f"{d.name} d={d.dilation}" for d in step.dilation) or "—"
        if step.dilation_replaces_stride:
            dilation += " (replaces the stride)"
        table.add_row(step.stage, size, str(step.stride), carriers, projection, dilation)
    return table


def model_title(report: Report) -> str:
    """The model and the build options that made it: ``resnet50 (stride_in_1x1=True)``."""
    options = ", ".join(f"{k}={v}" for k, v in report.options.items())
    return visible(f"{report.model} ({options})" if options else report.model)


def _header(report: Report) -> str:
    device = "traced on the meta device" if report.device == "meta" else f"a real forward on {report.device}"
    text = f"{model_title(report)}, input {shape_text(report.input_size)}"
    if report.padded_from is not None:
        text += f" padded from {shape_text(report.padded_from)}"
    return text + f"; {device}, MACs by the {report.counter} counter."


def shape_mismatches(report: Report) -> list[LayerRecord]:
    """Records whose traced output disagrees with the formula: always shown, never folded away."""
    return [rec for rec in report.layers if rec.shape_ok is False]


def print_summary(report: Report, console: Console, depth: int | str | None = None, *, units: Units = "exact",
                  conventions: bool = False, memory: Any = None) -> None:
    """The summary view (render/summary.py): blocks as rows by default, ``depth`` "all" or N for
    modules; then the totals, outputs, depth, downsampling and the checks, fitted to the width."""
    from .summary import print_summary as print_view

    print_view(report, console, depth, units=units, conventions=conventions, memory=memory)


def projection_note(projection: Projection) -> str:
    """What the shortcut reads, where that is not the raw block input (pre-activation nets)."""
    return f"; {projection.note}" if projection.note else ""
