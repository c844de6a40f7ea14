"""The report's JSON text (``--format json``): ``Report.to_dict()`` in :mod:`.jsontext`'s layout, each
record's line written straight from its fields.

A record's line is one ``%`` format of its fields' texts, with no dict built and no encoder pass: for a
net of 800 blocks (8,800 records) that is most of the JSON's cost. It parses to the record's
``json_dict()``, key for key and type for type. When every record holds the types its fields are
declared with (as the trace makes them), the lines are written a column at a time, with no Python call
per record (:func:`record_lines`); else one record at a time, and a record holding other types (a
float count from a peer counter, say) is written from ``json_dict()``.
"""
from __future__ import annotations

import json
import re
from dataclasses import fields
from collections.abc import Iterable
from itertools import chain
from json.encoder import encode_basestring as _string
from operator import attrgetter
from typing import Any

from ..analysis.opdesc import OpDesc
from ..analysis.records import TYPED_OPS, LayerRecord, Report, json_numbers, op_json
from .jsontext import Written, dumps

# A record's line: LayerRecord's fields, in its order, which is json_dict()'s.
_FIELDS = tuple(f.name for f in fields(LayerRecord))
_RECORD = "{" + ", ".join(f'"{name}": %s' for name in _FIELDS) + "}"
_LITERALS = {True: "true", False: "false", None: "null"}
_INT = {int}
_BOOL = {bool}
# Python's repr of a list of ints (or of floats, for jump and start) is its JSON text: these say it is one.
_INTS = re.compile(r"[0-9\[\], -]*")
_NUMBERS = re.compile(r"[0-9\[\]., e+-]*")


def report_json(report: Report) -> str:
    """``report.to_dict()`` as JSON text (a trailing newline included)."""
    return dumps(report.to_dict(records=lambda layers: Written(record_lines(layers))), end="\n")


def record_lines(records: list[LayerRecord]) -> list[str]:
    """Each record's line: a column at a time when every record holds its fields' declared types
    (what the trace makes), else one record at a time (:func:`_record`)."""
    memo: dict[Any, str] = {}
    lines = None
    if records:
        columns = dict(zip(_FIELDS, zip(*map(_ROW, records))))
        if _plain(columns):
            lines = _by_column(columns, memo)
    return lines if lines is not None else [_record(rec, memo) for rec in records]


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


# -- a column at a time ------------------------------------------------------------------------
# With 8,800 records, Python's work per field and record was most of the JSON's cost: here the fields
# of all records are read at once (one attrgetter per record, then zip), each field's distinct values
# are written once, and each line is one % format of a row, all looping in C.

_ROW = attrgetter(*_FIELDS)
_INTS_OF = ("index", "depth", "call", "params", "trainable_params", "buffers", "macs", "other_ops", "path_depth",
            "output_bytes")
_BOOLS_OF = ("is_leaf", "global_field", "weighted", "on_main_path", "inplace")
_STRING_LISTS = ("shared", "working", "input_from")
_NONE = type(None)
Columns = dict[str, tuple[Any, ...]]


def _types(values: Iterable[Any]) -> set[type]:
    return set(map(type, values))


def _all(columns: Columns, names: Iterable[str]) -> Iterable[Any]:
    """The values of several columns, one after the other."""
    return chain.from_iterable(map(columns.__getitem__, names))


def _plain(columns: Columns) -> bool:
    """Whether every record's fields hold exactly their declared types: ints, bools, strings, shapes
    as tuples of ints, lists of strings and of ints, strides as tuples of floats or ints. Then a
    field's text depends on its value alone, and :func:`_by_column` writes what :func:`_record` does."""
    shapes = list(chain.from_iterable(_all(columns, ("input_shapes", "output_shapes"))))
    optional = [v for v in _all(columns, ("analytic_shape", "receptive_field")) if v is not None]
    pairs = [v for v in _all(columns, ("jump", "start")) if v is not None]
    return (_types(_all(columns, _INTS_OF)) <= _INT
            and _types(_all(columns, _BOOLS_OF)) <= _BOOL
            and _types(columns["shape_ok"]) <= {bool, _NONE}
            and _types(_all(columns, ("name", "type", "kind", "stage"))) <= {str}
            and _types(columns["parent"]) <= {str, _NONE}
            and _types(_all(columns, _STRING_LISTS)) <= {list, tuple}
            and _types(chain.from_iterable(_all(columns, _STRING_LISTS))) <= {str}
            and _types(chain(shapes, optional, pairs)) <= {tuple}
            and _types(chain.from_iterable(chain(shapes, optional))) <= _INT
            and _types(chain.from_iterable(pairs)) <= {float, int}
            and _types(columns["read_from"]) <= {list}
            and _types(chain.from_iterable(columns["read_from"])) <= _INT)


def _by_column(columns: Columns, memo: dict[Any, str]) -> list[str] | None:
    """The lines of records that :func:`_plain` accepted, or None when a stride is NaN or infinite or an
    op cannot be written once for all (:func:`_record` writes such records)."""
    jumps, starts, ops = columns["jump"], columns["start"], columns["op"]
    pairs = {pair: _pair(pair) for pair in {*jumps, *starts}}
    op_texts = {key: _op_once(op, memo) for key, op in dict(zip(map(id, ops), ops)).items()}
    if None in pairs.values() or None in op_texts.values():
        return None
    shapes_in, shapes_out = list(map(tuple, columns["input_shapes"])), list(map(tuple, columns["output_shapes"]))
    # Each distinct value written once (equal values, equal texts), inline: a field such as the
    # receptive field has a value of its own at nearly every record.
    strings = {value: _string(value) for value in {*columns["type"], *columns["kind"], *columns["stage"]}}
    parents = {parent: "null" if parent is None else _string(parent) for parent in set(columns["parent"])}
    optional = {value: "null" if value is None else repr(list(value))
                for value in {*columns["analytic_shape"], *columns["receptive_field"]}}
    shape_lists = {value: _shapes(value) for value in {*shapes_in, *shapes_out}}
    literal = _LITERALS.__getitem__
    text = {
        "name": map(_string, columns["name"]), "type": map(strings.__getitem__, columns["type"]),
        "kind": map(strings.__getitem__, columns["kind"]), "parent": map(parents.__getitem__, columns["parent"]),
        "input_shapes": map(shape_lists.__getitem__, shapes_in),
        "output_shapes": map(shape_lists.__getitem__, shapes_out), "op": map(op_texts.__getitem__, map(id, ops)),
        "analytic_shape": map(optional.__getitem__, columns["analytic_shape"]),
        "receptive_field": map(optional.__getitem__, columns["receptive_field"]),
        "jump": map(pairs.__getitem__, jumps), "start": map(pairs.__getitem__, starts),
        "stage": map(strings.__getitem__, columns["stage"]), "read_from": map(repr, columns["read_from"]),
        **{name: map(literal, columns[name]) for name in (*_BOOLS_OF, "shape_ok")},
        **{name: ["[" + ", ".join(map(_string, v)) + "]" if v else "[]" for v in columns[name]]  # _strings, inline
           for name in _STRING_LISTS},
    }
    return list(map(_RECORD.__mod__, zip(*(text.get(name, columns[name]) for name in _FIELDS))))


def _shapes(value: tuple[tuple[int, ...], ...]) -> str:
    """A record's shapes as JSON: Python's repr of the lists of ints."""
    return repr(list(map(list, value)))


def _pair(value: tuple[float, ...] | None) -> str | None:
    """A stride or start as ``json_numbers`` makes it (None for NaN or infinity, which json writes otherwise)."""
    if value is None:
        return "null"
    text = repr(json_numbers(value))
    return text if _NUMBERS.fullmatch(text) else None


def _op_once(op: OpDesc | None, memo: dict[Any, str]) -> str | None:
    """:func:`_op`, or None for an op it cannot hash (a field holding a list)."""
    try:
        return _op(op, memo)
    except TypeError:
        return None


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
