"""Rich tables for ``summary`` and ``list``."""
from __future__ import annotations

from dataclasses import dataclass

from rich import box
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..analysis.records import LayerRecord, Projection, Report
from ..errors import InputError
from ..text import visible


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


def count_text(value: int) -> str:
    """An exact count with thousands separators."""
    return f"{value:,}"


def si_text(value: float, unit: str = "", digits: int = 3) -> str:
    """A count scaled to k, M, G or T with ``digits`` decimals: ``4.089 G``."""
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}f} {prefix}{unit}"
    return f"{value:g} {unit}".rstrip()


def bytes_text(value: int) -> str:
    """Bytes in binary units (KiB, MiB, GiB)."""
    for scale, prefix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if value >= scale:
            return f"{value / scale:.1f} {prefix}"
    return f"{value} B"


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
    console.out("\n".join(line.rstrip() for line in captured.get().splitlines()), highlight=False)


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
            anchor.params += rec.params
            anchor.trainable_params += rec.trainable_params
            anchor.buffers += rec.buffers
            anchor.macs += rec.macs
            anchor.other_ops += rec.other_ops
            anchor.output_bytes += rec.output_bytes
            anchor.folded += 1
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


def _check_cell(rec: LayerRecord) -> Text:
    if rec.shape_ok is None:
        return Text("")
    return Text("✓", style="green") if rec.shape_ok else Text("✗", style="bold red")


def _row_name(row: SummaryRow) -> Text:
    rec = row.record
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


def layer_table(report: Report, console: Console, depth: int | None = None, *, compact: bool = False) -> Table:
    """The per-layer table: name indented by nesting, type, output shape, params, MACs, share,
    receptive field and the formula check.

    ``compact`` (for a narrow terminal) drops the type column, which the name already implies,
    gives MACs in M or G, drops a batch dimension of 1 from the shapes and narrows the gaps.
    """
    title = None
    if not is_plain(console):  # piped, the header line above the table already says it
        title = f"{model_title(report)} @ {shape_text(report.input_size)}"
    caption = None
    if depth is not None:
        caption = f"--depth {depth}: \"+N\" after a name means N deeper records are folded into its row."
    table = Table(title=title, caption=caption, box=table_box(console), header_style="bold",
                  collapse_padding=compact, pad_edge=not compact)
    columns = [("Layer", "left"), ("Type", "left"), ("Output shape", "left"), ("Params", "right"),
               ("MACs", "right"), ("% MACs", "right"), ("RF", "right"), ("Check", "center")]
    if compact:
        columns = [("Layer", "left"), ("Output", "left"), ("Params", "right"), ("MACs", "right"), ("%", "right"),
                   ("RF", "right"), ("OK", "center")]
    for header, justify in columns:
        table.add_column(header, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    total = report.totals["macs"] or 1
    for row in summary_rows(report, depth):
        if not shows_row(row):
            continue
        rec = row.record
        share = f"{100 * row.macs / total:.1f}%" if row.macs else ""
        macs = si_text(row.macs, digits=1).replace(" ", "") if compact else count_text(row.macs)
        cells: list[RenderableType] = [
            _row_name(row), rec.type, _shape_cell(rec, drop_batch=compact and report.input_size[0] == 1),
            _cost_cell(row.params, row, count_text(row.params)),
            _cost_cell(row.macs, row, macs), share, field_text(rec.receptive_field, rec.global_field), _check_cell(rec),
        ]
        if compact:
            cells.pop(1)
        table.add_row(*cells)
    return table


def _fits(console: Console, table: Table) -> bool:
    return Measurement.get(console, console.options.update_width(100_000), table).maximum <= console.width


def totals_table(report: Report) -> Table:
    """Params, buffers, MACs, FLOPs, other ops and activation memory."""
    t = report.totals
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    table.add_column()
    frozen = t["params"] - t["trainable_params"]
    table.add_row("Params", count_text(t["params"]), f"trainable {count_text(t['trainable_params'])}, "
                  f"frozen {count_text(frozen)}")
    table.add_row("Buffers", count_text(t["buffers"]), buffers_note(report))
    table.add_row("MACs", count_text(t["macs"]), f"{si_text(t['macs'], 'MACs')} (counter: {report.counter})")
    table.add_row("FLOPs", count_text(t["flops"]), f"{si_text(t['flops'], 'FLOPs')} = 2 × MACs")
    table.add_row("Other ops", count_text(t["other_ops"]),
                  "norm, activation, pooling, add, upsample, bias (one per element op)")
    table.add_row("Activations", count_text(t["activation_bytes"]),
                  f"bytes = {bytes_text(t['activation_bytes'])}: all layer outputs added up, batch included "
                  "(in-place ops add nothing; a sum, not the peak)")
    return table


_BUFFER_LABELS = {
    "running_statistics": "norm running statistics, updated while training",
    "frozen_constants": "frozen-norm constants (scale, shift, mean, variance), never updated",
    "other": "other buffers",
}


def buffers_note(report: Report) -> str:
    """What the buffers hold, from ``report.buffer_kinds``: one kind named, several counted."""
    kinds = [(kind, n) for kind, n in report.buffer_kinds.items() if n]
    if len(kinds) == 1:
        return f"state_dict tensors that are not parameters: {_BUFFER_LABELS[kinds[0][0]]}"
    if kinds:
        return "state_dict tensors that are not parameters: " + "; ".join(
            f"{count_text(n)} {_BUFFER_LABELS[kind]}" for kind, n in kinds)
    return "state_dict tensors that are not parameters"


def outputs_table(report: Report, console: Console) -> Table:
    """Every output (each FPN level) with its shape, stride, receptive field and weighted depth."""
    table = Table(box=table_box(console), header_style="bold")
    for column in ("Output", "Shape", "Stride", "Receptive field", "Weighted depth"):
        table.add_column(column, justify="left" if column in ("Output", "Shape") else "right", no_wrap=True)
    for name, info in report.output_info.items():
        table.add_row(name, shape_text(info.shape), stride_text(info.stride),
                      field_text(info.receptive_field, info.global_field), str(info.depth if info.traced else "—"))
    return table


def depth_text(report: Report) -> Text:
    """The depth as the paper counts it, the formula, and what was left out and why."""
    d = report.depth
    text = Text()
    text.append(d.formula, style="bold")
    text.append("\nCounted: convolutions and linear layers on the longest path from input to output "
                "(normalisation, activations and pooling carry no depth).")
    if d.projections_not_counted:
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
    table = Table(box=table_box(console), header_style="bold")
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
    device = "a traced forward on the meta device" if report.device == "meta" else f"a real forward on {report.device}"
    text = f"{model_title(report)}, input {shape_text(report.input_size)}"
    if report.padded_from is not None:
        text += f" padded from {shape_text(report.padded_from)}"
    return text + f"; shapes from {device}, MACs from the {report.counter} counter."


def shape_mismatches(report: Report) -> list[LayerRecord]:
    """Records whose traced output disagrees with the formula: always shown, never folded away."""
    return [rec for rec in report.layers if rec.shape_ok is False]


def print_summary(report: Report, console: Console, depth: int | None = None) -> None:
    """The per-layer table, then the totals, outputs, depth, downsampling and the checks."""
    console.print(_header(report), highlight=False)
    table = layer_table(report, console, depth)
    if not is_plain(console) and not _fits(console, table):
        table = layer_table(report, console, depth, compact=True)
    print_table(console, table)
    print_section(console, "Totals", totals_table(report))
    console.print(Text(f"Convention: {report.convention}", style="dim"))
    print_section(console, "Outputs", outputs_table(report, console))
    print_section(console, "Depth", depth_text(report))
    if report.downsample:
        print_section(console, "Downsampling", downsample_table(report, console))
    if report.uncalled:
        lines = [f"{u['name']} ({u['type']}): {count_text(u['params'])} params, never called by forward()"
                 for u in report.uncalled]
        print_section(console, "Uncalled modules", Text("\n".join(lines)))
    shared = [f"{rec.name}.{entry}" for rec in report.layers for entry in rec.shared if entry.endswith("counted there)")]
    if shared:
        print_section(console, "Shared parameters (counted once)", Text("\n".join(shared)))
    checked = [rec for rec in report.layers if rec.shape_ok is not None]
    bad = shape_mismatches(report)
    if bad:
        lines = Text()
        for rec in bad:
            lines.append(f"{rec.name}: traced {shapes_text(rec.output_shapes)}, "
                         f"formula {shape_text(rec.analytic_shape)}", style="bold red")
            for step in rec.working:
                lines.append(f"\n    {step}")
            lines.append("\n")
        print_section(console, f"Shape check: {len(bad)} of {len(checked)} layers DISAGREE", lines)
    else:
        console.print(f"\nShape check: all {len(checked)} formula shapes match the traced forward pass.")
    for warning in report.warnings:
        console.print(Text(f"Warning: {warning}", style="yellow"))


def projection_note(projection: Projection) -> str:
    """What the shortcut reads, where that is not the raw block input (pre-activation nets)."""
    return f"; {projection.note}" if projection.note else ""
