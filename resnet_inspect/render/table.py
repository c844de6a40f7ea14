"""Rich tables for ``summary`` and ``list``."""
from __future__ import annotations

from rich import box
from rich.console import Console
from rich.table import Table

from ..analysis.records import Report


def _shape(shape: tuple[int, ...] | list[int] | None) -> str:
    return "×".join(map(str, shape)) if shape else "—"


def _box(console: Console) -> box.Box | None:
    return box.SIMPLE_HEAD if console.is_terminal else None


def print_summary(report: Report, console: Console) -> None:
    """Plain per-layer table: name, type, output shape, params."""
    table = Table(title=f"{report.model} @ {_shape(report.input_size)}", box=_box(console))
    for column in ("Layer", "Type", "Output shape", "Params"):
        table.add_column(column, justify="right" if column == "Params" else "left")
    for rec in report.layers:
        if not rec.name:
            continue
        table.add_row("  " * (rec.depth - 1) + rec.name, rec.type,
                      _shape(rec.output_shapes[0] if rec.output_shapes else None), f"{rec.params:,}")
    console.print(table)
    t = report.totals
    console.print(f"Params: {t['params']:,} (trainable {t['trainable_params']:,})   "
                  f"MACs: {t['macs'] / 1e9:.3f} G   FLOPs: {t['flops'] / 1e9:.3f} G")


def print_variants(console: Console) -> None:
    from ..variants import _VARIANTS

    table = Table(title="Variants", box=_box(console))
    for column in ("Name", "Block", "Blocks per stage", "Groups × width", "Source"):
        table.add_column(column)
    for name, fields in _VARIANTS.items():
        table.add_row(name, fields["block"], ",".join(map(str, fields["layers"])),
                      f"{fields.get('groups', 1)} × {fields.get('width_per_group', 64)}", fields.get("source", "torchvision"))
    console.print(table)
