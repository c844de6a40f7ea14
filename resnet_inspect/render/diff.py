"""``diff``: two reports side by side, joined by qualified layer name.

Layers are the leaf records (modules without children, and function records such as a residual
add). A repeat call of a shared module joins with the same call on the other side, so the key is
``(name, call)``. Each layer is equal, changed (its shapes, params, MACs or window differ), added
(only in B) or removed (only in A).
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..analysis.records import LayerRecord, OutputInfo, Report
from ..analysis.structure import block_label, shortcut_leaves
from ..text import visible
from .fit import Fitted
from .table import count_text, is_plain, model_title, pair_text, print_section, print_table, shape_text, si_text, table_box

Key = tuple[str, int]
_OP_FIELDS = ("kernel", "stride", "padding", "dilation", "groups", "in_channels", "out_channels", "ceil_mode",
              "in_features", "out_features")


@dataclass
class LayerDiff:
    """One layer that differs between A and B, and how."""

    name: str
    call: int
    status: str  # changed | added | removed
    a: LayerRecord | None
    b: LayerRecord | None
    changes: list[str] = field(default_factory=list)


def _key(rec: LayerRecord) -> Key:
    return rec.name, rec.call


def _leaves(report: Report) -> list[LayerRecord]:
    return [rec for rec in report.layers if rec.is_leaf]


def _spatial(shapes: list[tuple[int, ...]]) -> str:
    return shape_text(shapes[0]) if shapes else "—"


def layer_changes(a: LayerRecord, b: LayerRecord) -> list[str]:
    """What differs between two records of the same layer, as ``what: A → B`` strings."""
    changes = []
    if a.type != b.type:
        changes.append(f"type: {a.type} → {b.type}")
    if a.input_shapes[:1] != b.input_shapes[:1]:
        changes.append(f"input: {_spatial(a.input_shapes)} → {_spatial(b.input_shapes)}")
    if a.output_shapes != b.output_shapes:
        changes.append(f"output: {_spatial(a.output_shapes)} → {_spatial(b.output_shapes)}")
    # The ops' fields as the JSON export names them, so a conv can be compared with a pool.
    op_a = a.op.to_dict() if a.op is not None else {}
    op_b = b.op.to_dict() if b.op is not None else {}
    for name in _OP_FIELDS:
        if op_a.get(name) != op_b.get(name):
            changes.append(f"{name}: {_value(op_a.get(name))} → {_value(op_b.get(name))}")
    frozen_a, frozen_b = a.params - a.trainable_params, b.params - b.trainable_params
    for label, va, vb in (("params", a.params, b.params), ("frozen params", frozen_a, frozen_b),
                          ("buffers", a.buffers, b.buffers), ("MACs", a.macs, b.macs)):
        if va != vb:
            changes.append(f"{label}: {count_text(va)} → {count_text(vb)}")
    return changes


def _value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, (list, tuple)):
        return pair_text(value) if len(value) == 2 else shape_text(value)
    return str(value)


def _renumbered(a: Report, b: Report) -> dict[int, Key]:
    """Keys for the layers of B's shortcut branches whose layers moved within the branch.

    ResNet-D's shortcut is ``downsample.0`` pool, ``.1`` conv, ``.2`` BN where ResNet's is ``.0``
    conv, ``.1`` BN: joined by name, every layer would pair with a different one. The blocks of
    the two reports' structures are joined by the block's qualified name, and within a pair of
    shortcuts the layers are paired by type, in order; B's unpaired layers get keys of their own.
    The result maps ``id(record)`` to the key it joins under.

    Pairing by type is pairing by role: a shortcut holds at most one layer of each kind (pool,
    projection conv, norm), so ResNet-D's conv and BN join ResNet's conv and BN, and its pool
    is an addition.
    """
    def shortcuts(report: Report) -> dict[str, list[LayerRecord]]:
        if report.structure is None:
            return {}
        return {block_label(report.layers, blk): [report.layers[i] for i in shortcut_leaves(report.layers, blk)]
                for blk in report.structure.blocks}

    in_a, in_b = shortcuts(a), shortcuts(b)
    keys: dict[int, Key] = {}
    for block, kids_b in in_b.items():
        kids_a = in_a.get(block)
        if not kids_a or not kids_b or [_key(r) for r in kids_a] == [_key(r) for r in kids_b]:
            continue
        for rec in kids_b:
            keys[id(rec)] = (f"{rec.name} (B)", rec.call)
        matcher = difflib.SequenceMatcher(a=[(r.type, r.call) for r in kids_a], b=[(r.type, r.call) for r in kids_b],
                                          autojunk=False)
        for match in matcher.get_matching_blocks():
            for k in range(match.size):
                keys[id(kids_b[match.b + k])] = _key(kids_a[match.a + k])
    return keys


def diff_layers(a: Report, b: Report) -> list[LayerDiff]:
    """The layers that differ, in execution order (B's additions where B runs them)."""
    left, right = _leaves(a), _leaves(b)
    renumbered = _renumbered(a, b)
    keys_a, keys_b = [_key(r) for r in left], [renumbered.get(id(r), _key(r)) for r in right]
    by_b = dict(zip(keys_b, right))
    only_b = set(keys_b) - set(keys_a)
    result: list[LayerDiff] = []
    matcher = difflib.SequenceMatcher(a=keys_a, b=keys_b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        for rec in left[i1:i2]:
            other = by_b.get(_key(rec))
            if other is None:
                result.append(LayerDiff(rec.name, rec.call, "removed", rec, None))
                continue
            changes = layer_changes(rec, other)
            if changes and other.name != rec.name:
                # A renumbering alone is no change (ResNet-D's shortcut BN is ResNet's, one index
                # on); it is named only next to a real difference, so the pairing can be read.
                changes.insert(0, f"now {other.name}")
            if changes:
                result.append(LayerDiff(rec.name, rec.call, "changed", rec, other, changes))
        result.extend(LayerDiff(rec.name, rec.call, "added", None, rec) for rec, key in zip(right[j1:j2], keys_b[j1:j2])
                      if key in only_b)
    return result


def _depth_counted(report: Report) -> int:
    return report.depth.counted


def totals_rows(a: Report, b: Report) -> list[tuple[str, Any, Any]]:
    """Quantities side by side: totals, counted depth, and each output's shape, stride and field."""
    ta, tb = a.totals, b.totals
    rows: list[tuple[str, Any, Any]] = [
        ("Params", ta["params"], tb["params"]),
        ("Trainable params", ta["trainable_params"], tb["trainable_params"]),
        ("Frozen params", ta["params"] - ta["trainable_params"], tb["params"] - tb["trainable_params"]),
        ("Buffers", ta["buffers"], tb["buffers"]),
        ("MACs", ta["macs"], tb["macs"]),
        ("FLOPs", ta["flops"], tb["flops"]),
        ("Other ops", ta["other_ops"], tb["other_ops"]),
        ("Activation bytes", ta["activation_bytes"], tb["activation_bytes"]),
        ("Depth (counted)", _depth_counted(a), _depth_counted(b)),
    ]
    for name in dict.fromkeys([*a.output_info, *b.output_info]):
        ia, ib = a.output_info.get(name), b.output_info.get(name)
        for key, label in (("shape", "shape"), ("stride", "stride"), ("receptive_field", "receptive field")):
            rows.append((f"{name} {label}", _output_value(ia, key), _output_value(ib, key)))
    return rows


def _output_value(info: OutputInfo | None, key: str) -> str:
    """One field of an output as the diff shows it (as in the JSON export: lists, not tuples)."""
    if info is None:
        return "—"
    return _value(info.to_dict().get(key))


def carrier_rows(a: Report, b: Report) -> list[tuple[str, str, str]]:
    """Per stage, which layers carry the stride in A and in B, where that differs."""
    def carriers(report: Report) -> dict[str, str]:
        """Stage -> its stride carriers, as text."""
        return {step.stage: ", ".join(f"{c.name} (/{c.stride})" for c in step.carriers) or "—"
                for step in report.downsample}

    ca, cb = carriers(a), carriers(b)
    return [(stage, ca.get(stage, "—"), cb.get(stage, "—")) for stage in dict.fromkeys([*ca, *cb])
            if ca.get(stage) != cb.get(stage)]


def label(report: Report) -> str:
    """A report's model, options and input, as one line."""
    return f"{model_title(report)} @ {shape_text(report.input_size)}"


def differs(a: Report, b: Report) -> bool:
    """Whether anything the diff shows differs."""
    return bool(diff_layers(a, b)) or any(va != vb for _, va, vb in totals_rows(a, b)) or bool(carrier_rows(a, b))


def to_json(a: Report, b: Report) -> str:
    """The diff as JSON: both labels, the differing layers and the totals with deltas."""
    layers = [{"name": d.name, "call": d.call, "status": d.status, "changes": d.changes,
               "a": _brief(d.a), "b": _brief(d.b)} for d in diff_layers(a, b)]
    totals = [{"quantity": q, "a": va, "b": vb, "delta": vb - va if _numeric(va, vb) else None}
              for q, va, vb in totals_rows(a, b)]
    data = {"a": label(a), "b": label(b), "differ": differs(a, b), "layers": layers, "totals": totals,
            "stride_carriers": [{"stage": s, "a": x, "b": y} for s, x, y in carrier_rows(a, b)]}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def _brief(rec: LayerRecord | None) -> dict[str, Any] | None:
    if rec is None:
        return None
    return {"type": rec.type, "input_shape": list(rec.input_shapes[0]) if rec.input_shapes else None,
            "output_shape": list(rec.output_shapes[0]) if rec.output_shapes else None,
            "params": rec.params, "macs": rec.macs, "op": rec.op.to_dict() if rec.op is not None else None}


def _numeric(*values: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def _both(va: Any, vb: Any, fmt: Any = str, split: bool = False) -> Text:
    """``A → B`` where they differ (``split``: the arrow ends the first line, B is on the next)."""
    if va == vb:
        return Text(fmt(va))
    after_arrow = "\n" if split else " "
    return Text(f"{fmt(va)} →{after_arrow}{fmt(vb)}", style="bold")


_MARKS = {"changed": "~", "added": "+", "removed": "-"}


def _layer_table(console: Console, layers: list[LayerDiff], title: str | None, split: bool) -> Table:
    """The differing layers, one row each; ``split`` puts each "A → B" on two lines (narrower)."""
    table = Table(box=table_box(console), header_style="bold", title=title)
    # Only "Also differs" wraps (at words); when the rest does not fit whole, the table changes
    # shape (render.fit) rather than cut a name or a number.
    for column in ("", "Layer", "Output shape", "Params", "MACs", "Also differs"):
        table.add_column(column, justify="right" if column in ("Params", "MACs") else "left",
                         no_wrap=column != "Also differs")
    for d in layers:
        ra, rb = d.a, d.b
        shape_a = _spatial(ra.output_shapes) if ra else "—"
        shape_b = _spatial(rb.output_shapes) if rb else "—"
        params = _both(ra.params if ra else "—", rb.params if rb else "—", _count_or_dash, split)
        macs = _both(ra.macs if ra else "—", rb.macs if rb else "—", _count_or_dash, split)
        other = "; ".join(c for c in d.changes if not c.startswith(("output:", "params:", "MACs:")))
        if d.status != "changed":
            other = f"only in {'B' if d.status == 'added' else 'A'} ({(ra or rb).type})"  # type: ignore[union-attr]
        table.add_row(_MARKS[d.status], visible(d.name) + (f" (call {d.call + 1})" if d.call else ""),
                      _both(shape_a, shape_b, split=split), params, macs, other)
    return table


def _delta(va: Any, vb: Any) -> tuple[str, str]:
    if not _numeric(va, vb) or va == vb:
        return ("" if va == vb else "≠"), ""
    delta = vb - va
    share = f"{100 * delta / va:+.1f}%" if va else ""
    return f"{delta:+,}", share


def print_diff(a: Report, b: Report, console: Console) -> bool:
    """Print the differing layers, the stride placement and the totals; return whether they differ."""
    console.print(Text("A: ", style="bold") + Text(visible(label(a))))
    console.print(Text("B: ", style="bold") + Text(visible(label(b))))
    layers = diff_layers(a, b)
    left, right = _leaves(a), _leaves(b)
    renumbered = _renumbered(a, b)
    compared = len({_key(r) for r in left} | {renumbered.get(id(r), _key(r)) for r in right})
    if layers:
        if is_plain(console):
            console.print(f"\n{len(layers)} of {compared} layers differ (~ changed, + only in B, - only in A):")
        title = None if is_plain(console) else f"{len(layers)} of {compared} layers differ"
        wide = _layer_table(console, layers, title, split=False)
        _print_fitted(console, wide, title_columns=2, narrower=[_layer_table(console, layers, title, split=True)])
    else:
        console.print(f"\nAll {compared} layers have the same shapes, params, MACs and windows.")
    carriers = carrier_rows(a, b)
    if carriers:
        table = Table(box=table_box(console), header_style="bold")
        for column in ("Stage", "Stride carried by (A)", "Stride carried by (B)"):
            table.add_column(column)
        for row in carriers:
            table.add_row(*row)
        print_section(console, "Where each stage downsamples", _fitted(console, table))
    table = Table(box=table_box(console), header_style="bold")
    for column in ("Quantity", "A", "B", "Δ (B − A)", "Δ %"):
        table.add_column(column, justify="left" if column == "Quantity" else "right", no_wrap=column != "Quantity")
    for quantity, va, vb in totals_rows(a, b):
        delta, share = _delta(va, vb)
        style = "bold" if va != vb else ""
        table.add_row(Text(quantity, style=style), _count_or_dash(va), _count_or_dash(vb), delta, share)
    print_section(console, "Totals", _fitted(console, table))
    if a.counter != b.counter:
        console.print(f"MACs: {si_text(a.totals['macs'], 'MACs')} from the {a.counter} counter (A), "
                      f"{si_text(b.totals['macs'], 'MACs')} from the {b.counter} counter (B).")
    return differs(a, b)


def _fitted(console: Console, table: Table, title_columns: int = 1) -> Table | Fitted:
    """On a terminal, a table that fits its width without cutting a cell; piped, the table itself
    (printed at its natural width, so that no row wraps)."""
    return table if is_plain(console) else Fitted(table, title_columns)


def _print_fitted(console: Console, table: Table, title_columns: int = 1, narrower: list[Table] | None = None) -> None:
    """Print ``table`` as :func:`_fitted` gives it, trying the ``narrower`` layouts before records."""
    if is_plain(console):
        print_table(console, table)
    else:
        console.print(Fitted(table, title_columns, narrower or []))


def _count_or_dash(value: Any) -> str:
    return count_text(value) if _numeric(value) else str(value)
