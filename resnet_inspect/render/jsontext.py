"""The JSON text of ``--format json``: the report object and its members one per line, every record
on one line of its own, written by the json module's C encoder.

``json.dumps(value, indent=2)`` gives up the C encoder for a chain of Python generators, one per
nesting level and per value, and puts every number of every shape on a line of its own: for a net
of 800 blocks (8,800 records, 11 MB) that took longer than the trace. Here only the two outer
levels are laid out in Python; each value below them is one ``json.dumps(value, ensure_ascii=False)``
(the C encoder, ", " and ": " between items). The text parses to what ``json.dumps`` writes, strings,
floats, NaN and infinities included, keys in the same order.

The layout, for a report::

    {
      "model": "resnet50",
      "input_size": [1, 3, 224, 224],
      "layers": [
        {"index": 0, "name": "", "type": "ResNet", ...},
        {"index": 1, "name": "conv1", "type": "Conv2d", ...}
      ],
      "totals": {
        "params": 25557032,
        ...
      },
      ...
    }

An object or array at the top or directly in it is written one item per line (two spaces of indent
per level), unless it is empty or an array of numbers only (no string, array or object in it: a
shape), which take one line; anything deeper (a layer record, a downsampling step, an output's
details) is one line. An array given as :class:`Written` holds its items' texts already
(render/jsonreport.py writes the records' lines so).
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from itertools import repeat
from json.encoder import encode_basestring
from typing import Any

_INDENT = "  "
_LAID_OUT = 2  # levels written one item per line: the top value and the values directly in it
_NOT_NUMBERS = (str, dict, list, tuple)


def dumps(value: Any, end: str = "") -> str:
    """``value`` as JSON text in the layout above, then ``end``: ``json.loads`` of it equals ``json.loads`` of
    ``json.dumps(value, indent=2, ensure_ascii=False)``, and what ``json.dumps`` refuses raises the same error."""
    parts: list[str] = []
    try:
        _write(value, 0, "\n", _Compact(), parts)
    except _Unusual:
        return json.dumps(value, indent=2, ensure_ascii=False) + end  # raises its own error for such a key
    parts.append(end)
    return "".join(parts)


class Written(list):  # type: ignore[type-arg]
    """An array whose items are JSON texts already, each on one line: :func:`dumps` puts them in as they are."""


class _Unusual(Exception):
    """A dict key that only ``json.dumps`` knows how to write (or refuse)."""


class _Compact:
    """One-line JSON texts of many values at once: the C encoder called once per value, with no
    Python frame in between (``json.dumps(v, ensure_ascii=False)`` of each, shared circularity check)."""

    def __init__(self) -> None:
        self._encode = _c_encoder()

    def texts(self, values: Iterable[Any]) -> Iterable[str]:
        if self._encode is None:
            encoder = json.JSONEncoder(ensure_ascii=False)
            return map(encoder.encode, values)
        return map("".join, map(self._encode, values, repeat(0)))


def _c_encoder() -> Callable[[Any, int], list[str]] | None:
    """The json module's C encoder as ``json.dumps(ensure_ascii=False)`` sets it up, or None where the
    interpreter has none (or it takes other arguments): then :class:`_Compact` uses the public API."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        return make({}, json.JSONEncoder().default, encode_basestring, None, ": ", ", ", False, False, True)
    except TypeError:
        return None


def _laid_out(value: Any, level: int) -> bool:
    """Whether ``value`` is written one item per line (else on one line)."""
    if level >= _LAID_OUT or not value:
        return False
    if isinstance(value, dict):
        return True
    if isinstance(value, (list, tuple)):
        return any(isinstance(item, _NOT_NUMBERS) for item in value)
    return False


def _write(value: Any, level: int, newline: str, compact: _Compact, parts: list[str]) -> None:
    """Append ``value`` written at ``level``; ``newline`` is "\\n" and the indent its lines carry."""
    if isinstance(value, Written):
        inner = newline + _INDENT
        laid_out = level < _LAID_OUT and value
        # The items and separators as pieces, not joined here: the text is copied once, by dumps' join
        # (joining the megabytes of the records first copied them twice).
        pieces = [("," if laid_out else ", ") + (inner if laid_out else "")] * (2 * len(value) - 1) if value else []
        pieces[::2] = value
        parts.extend(("[", inner, *pieces, newline, "]") if laid_out else ("[", *pieces, "]"))
        return
    if not _laid_out(value, level):
        parts.extend(compact.texts((value,)))
        return
    inner = newline + _INDENT
    if isinstance(value, dict):
        keys = [_key(key) + ": " for key in value]
        items: Iterable[Any] = value.values()
        parts.append("{")
    else:
        keys = [""] * len(value)
        items = value
        parts.append("[")
    if level + 1 >= _LAID_OUT:  # every item on one line: all of them through the C encoder in one go
        texts = compact.texts(items)
        parts.append(inner + ("," + inner).join(map(str.__add__, keys, texts)))
    else:
        for i, (key, item) in enumerate(zip(keys, items)):
            parts.append((inner if i == 0 else "," + inner) + key)
            _write(item, level + 1, inner, compact, parts)
    parts.append(newline + ("}" if isinstance(value, dict) else "]"))


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


def _key(key: Any) -> str:
    """A dict key as ``json.dumps`` writes it: strings as they are, numbers, booleans and None as their JSON text."""
    if isinstance(key, str):
        return encode_basestring(key)
    if key is True:
        return '"true"'
    if key is False:
        return '"false"'
    if key is None:
        return '"null"'
    if isinstance(key, int):
        return encode_basestring(int.__repr__(key))
    if isinstance(key, float):
        return encode_basestring(_float(key))
    raise _Unusual
