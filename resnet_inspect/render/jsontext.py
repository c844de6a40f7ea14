"""``json.dumps(value, indent=2, ensure_ascii=False)``, byte for byte, without its slow path.

With ``indent`` set, the standard library gives up its C encoder for a chain of Python
generators, one per nesting level and per value: for a net of 800 blocks (8,800 records) that
took longer than the trace. Here one recursive function appends the pieces to a list and joins
them once; strings go through the same C escaping (``json.encoder.encode_basestring``) and floats
through the same ``float.__repr__`` as in ``json.dumps``.
"""
from __future__ import annotations

import json
import math
from json.encoder import encode_basestring
from typing import Any

_INDENT = "  "


def dumps(value: Any) -> str:
    """``json.dumps(value, indent=2, ensure_ascii=False)`` for a value of dicts, lists, tuples, strings,
    numbers, booleans and None; anything else goes through ``json.dumps`` itself (same text)."""
    try:
        parts: list[str] = []
        _encode(value, "\n", parts)
        return "".join(parts)
    except _Unusual:
        return json.dumps(value, indent=2, ensure_ascii=False)


class _Unusual(Exception):
    """A value (or a dict key) that only ``json.dumps`` knows how to write."""


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


def _scalar(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is int:
        return int.__repr__(value)
    if kind is float:
        return _float(value)
    raise _Unusual


def _key(key: Any) -> str:
    if type(key) is str:
        return encode_basestring(key)
    if key is None or type(key) in (bool, int, float):
        return encode_basestring(_scalar(key))  # json.dumps turns such keys into their JSON text
    raise _Unusual


def _encode(value: Any, newline: str, parts: list[str]) -> None:
    """Append ``value`` written at the indentation that ``newline`` ("\\n" and the indent) carries."""
    kind = type(value)
    if kind is dict:
        if not value:
            parts.append("{}")
            return
        inner = newline + _INDENT
        parts.append("{")
        first = True
        for key, item in value.items():
            parts.append(inner if first else "," + inner)
            first = False
            parts.append(_key(key))
            parts.append(": ")
            if type(item) in (dict, list, tuple):
                _encode(item, inner, parts)
            else:
                parts.append(_scalar(item))
        parts.append(newline)
        parts.append("}")
    elif kind is list or kind is tuple:
        if not value:
            parts.append("[]")
            return
        inner = newline + _INDENT
        parts.append("[")
        first = True
        for item in value:
            parts.append(inner if first else "," + inner)
            first = False
            if type(item) in (dict, list, tuple):
                _encode(item, inner, parts)
            else:
                parts.append(_scalar(item))
        parts.append(newline)
        parts.append("]")
    else:
        parts.append(_scalar(value))
