"""resnet_inspect.render.jsontext: the JSON text of ``--format json``, exactly as ``json.dumps`` writes it."""
from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

import resnet_inspect
from resnet_inspect.render.export import to_json
from resnet_inspect.render.jsontext import dumps

_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
_KEYS = st.text() | st.integers() | st.floats() | st.booleans() | st.none()
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                       | st.dictionaries(_KEYS, inner, max_size=4), max_leaves=30)


@given(_VALUES)
@settings(max_examples=300, deadline=None)
def test_dumps_writes_what_json_dumps_writes(value: object) -> None:
    assert dumps(value) == json.dumps(value, indent=2, ensure_ascii=False)


def test_an_object_json_cannot_write_still_raises_its_type_error() -> None:
    for value in ({"a": object()}, {(1, 2): 3}):
        try:
            json.dumps(value, indent=2, ensure_ascii=False)
        except TypeError as expected:
            message = str(expected)
        try:
            dumps(value)
        except TypeError as raised:
            assert str(raised) == message
        else:
            raise AssertionError("dumps wrote what json.dumps refuses")


def test_the_json_format_is_json_dumps_of_to_dict() -> None:
    report = resnet_inspect.inspect("retinanet_r50_fpn", (1, 3, 64, 64))
    assert to_json(report) == json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
