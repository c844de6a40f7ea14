"""The report's JSON text (``--format json``): ``Report.to_dict()`` in :mod:`.jsontext`'s layout, each
record's line written straight from its fields.

A record's line is one ``%`` format of its fields' texts, with no dict built and no encoder pass: for a
net of 800 blocks (8,800 records) that is most of the JSON's cost. It parses to the record's
``json_dict()``, key for key and type for type. A record holding anything but the types its fields
are declared with (a float count from a peer counter, say) is written from ``json_dict()`` instead.
"""
from __future__ import annotations

import json
import re
from json.encoder import encode_basestring as _string
from typing import Any

from ..analysis.opdesc import OpDesc
from ..analysis.records import TYPED_OPS, LayerRecord, Report, json_numbers, op_json
from .jsontext import Written, dumps

# LayerRecord.json_dict's keys, in its order.
_RECORD = (
    '{"index": %s, "name": %s, "type": %s, "kind": %s, "depth": %s, "parent": %s, "is_leaf": %s, "call": %s, '
    '"input_shapes": %s, "output_shapes": %s, "params": %s, "trainable_params": %s, "buffers": %s, "shared": %s, '
    '"macs": %s, "other_ops": %s, "op": %s, "analytic_shape": %s, "shape_ok": %s, "working": %s, '
    '"receptive_field": %s, "jump": %s, "start": %s, "global_field": %s, "stage": %s, "weighted": %s, '
    '"on_main_path": %s, "path_depth": %s, "inplace": %s, "output_bytes": %s, "input_from": %s, "read_from": %s}'
)
_LITERALS = {True: "true", False: "false", None: "null"}
_INT = {int}
_BOOL = {bool}
# Python's repr of a list of ints (or of floats, for jump and start) is its JSON text: these say it is one.
_INTS = re.compile(r"[0-9\[\], -]*")
_NUMBERS = re.compile(r"[0-9\[\]., e+-]*")


def report_json(report: Report) -> str:
    """``report.to_dict()`` as JSON text (a trailing newline included)."""
    memo: dict[Any, str] = {}
    return dumps(report.to_dict(records=lambda layers: Written([_record(rec, memo) for rec in layers])), end="\n")


def _record(rec: LayerRecord, memo: dict[Any, str]) -> str:
    """The record's one-line JSON text; ``memo`` holds the texts of the shapes and ops written so far."""
    try:
        text = _from_fields(rec, memo)
    except TypeError:  # a string field holding something else, an unhashable op
        text = None
    return text if text is not None else json.dumps(rec.json_dict(), ensure_ascii=False)


def _declared_types(rec: LayerRecord) -> bool:
    """Whether the count and flag fields hold plain ints and bools (what the trace puts there)."""
    return ({type(rec.index), type(rec.depth), type(rec.call), type(rec.params), type(rec.trainable_params),
             type(rec.buffers), type(rec.macs), type(rec.other_ops), type(rec.path_depth), type(rec.output_bytes)} == _INT
            and {type(rec.is_leaf), type(rec.global_field), type(rec.weighted), type(rec.on_main_path),
                 type(rec.inplace)} == _BOOL
            and (rec.shape_ok is None or type(rec.shape_ok) is bool))


def _from_fields(rec: LayerRecord, memo: dict[Any, str]) -> str | None:
    """The record's line from its fields, or None when one holds a value the format would write otherwise."""
    if not _declared_types(rec):
        return None
    ints = [_ints(tuple(rec.input_shapes), memo), _ints(tuple(rec.output_shapes), memo),
            "null" if rec.analytic_shape is None else _ints(rec.analytic_shape, memo),
            "null" if rec.receptive_field is None else _ints(rec.receptive_field, memo), _ints(tuple(rec.read_from), memo)]
    jump = "null" if rec.jump is None else repr(json_numbers(rec.jump))
    start = "null" if rec.start is None else repr(json_numbers(rec.start))
    if None in ints or not _NUMBERS.fullmatch((jump + start).replace("null", "")):
        return None  # NaN or infinity (json writes NaN, Infinity), a shape not of ints
    shapes_in, shapes_out, analytic, field, read_from = ints
    return _RECORD % (
        rec.index, _string(rec.name), _string(rec.type), _string(rec.kind), rec.depth,
        "null" if rec.parent is None else _string(rec.parent), _LITERALS[rec.is_leaf], rec.call,
        shapes_in, shapes_out, rec.params, rec.trainable_params, rec.buffers, _strings(rec.shared),
        rec.macs, rec.other_ops, _op(rec.op, memo), analytic, _LITERALS[rec.shape_ok], _strings(rec.working),
        field, jump, start, _LITERALS[rec.global_field], _string(rec.stage), _LITERALS[rec.weighted],
        _LITERALS[rec.on_main_path], rec.path_depth, _LITERALS[rec.inplace], rec.output_bytes,
        _strings(rec.input_from), read_from,
    )


def _ints(value: tuple[Any, ...], memo: dict[Any, str]) -> str | None:
    """A tuple of ints, or of tuples of ints (shapes), as JSON (None if it holds anything else).

    A net has few distinct shapes, so each is written once: Python's repr of a list of ints is its
    JSON text. (The trace makes every dimension an int; a bool equal to one would share its text.)
    """
    text = memo.get(value)
    if text is None:
        text = repr([list(item) if type(item) is tuple else item for item in value])
        if not _INTS.fullmatch(text):
            return None
        memo[value] = text
    return text


def _strings(values: list[str]) -> str:
    return "[" + ", ".join(map(_string, values)) + "]" if values else "[]"


def _op(op: OpDesc | None, memo: dict[Any, str]) -> str:
    """The op's JSON text. Ops typed all through are written once per distinct op (equal ops, equal
    text); a resize keeps the caller's values, so it is written each time."""
    if op is None:
        return "null"
    if type(op) not in TYPED_OPS:
        return json.dumps(op_json(op), ensure_ascii=False)
    text = memo.get(op)
    if text is None:
        text = memo[op] = json.dumps(op_json(op), ensure_ascii=False)
    return text
