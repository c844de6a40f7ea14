"""resnet_inspect.render.jsontext: the JSON text of ``--format json``. It parses to what
``json.dumps(indent=2)`` wrote before (strings, floats, NaN, key order), in a layout of its own: the
two outer levels one item per line, each record (and anything deeper) on one line."""
from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import resnet_inspect
from resnet_inspect.render.export import to_json
from resnet_inspect.render.jsontext import dumps
from conftest import python_calls, run_cli
from test_zoo import IMAGES, TinyDetector

_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
_KEYS = st.text() | st.integers() | st.floats() | st.booleans() | st.none()
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                       | st.dictionaries(_KEYS, inner, max_size=4), max_leaves=30)


def typed(value: Any) -> Any:
    """A parsed JSON value with its types made part of it (1 and 1.0 differ) and NaN equal to NaN."""
    if isinstance(value, dict):
        return ("dict", [(k, typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, value)


def old_text(value: Any) -> str:
    """What ``--format json`` wrote before: ``json.dumps(indent=2)``, a number per line."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def reference(value: Any, level: int = 0, indent: str = "") -> str:
    """The layout as the module docstring states it, written with ``json.dumps`` piece by piece."""
    laid_out = level < 2 and bool(value) and (isinstance(value, dict) or isinstance(value, (list, tuple)) and any(
        isinstance(item, (str, dict, list, tuple)) for item in value))
    if not laid_out:
        return json.dumps(value, ensure_ascii=False)
    inner = indent + "  "
    if isinstance(value, dict):
        # A key as json.dumps writes it (numbers, booleans and None become strings).
        keys = [json.dumps({key: None}, ensure_ascii=False)[1:-len(": null}")] + ": " for key in value]
        items, brackets = list(value.values()), "{}"
    else:
        keys, items, brackets = [""] * len(value), list(value), "[]"
    lines = [inner + key + reference(item, level + 1, inner) for key, item in zip(keys, items)]
    return brackets[0] + "\n" + ",\n".join(lines) + "\n" + indent + brackets[1]


@given(_VALUES)
@settings(max_examples=300, deadline=None)
def test_dumps_parses_to_what_json_dumps_wrote_in_the_stated_layout(value: object) -> None:
    text = dumps(value)
    assert typed(json.loads(text)) == typed(json.loads(old_text(value)))
    assert text == reference(value)


def test_nan_infinity_and_odd_strings_are_written_as_json_dumps_writes_them() -> None:
    value = {"a": [{"x": math.nan, "y": -math.inf, "z": 1e300, "s": 'é"\n\u2028\x00'}], "b": math.inf, 1.5: None,
             True: [2.0, -0.0], None: "\ud800"}
    text = dumps(value)
    assert '"x": NaN, "y": -Infinity, "z": 1e+300' in text and '"b": Infinity' in text
    assert '"1.5": null' in text and '"true": [2.0, -0.0]' in text and '"null": "\ud800"' in text
    assert typed(json.loads(text)) == typed(json.loads(old_text(value)))


@pytest.mark.parametrize("value", [{"a": object()}, {"a": {"b": [object()]}}, {(1, 2): 3}, {"a": [{(1, 2): 3}]},
                                   [1, {"b": {"c": {frozenset(): 1}}}]], ids=str)
def test_an_object_json_cannot_write_still_raises_its_type_error(value: object) -> None:
    with pytest.raises(TypeError) as expected:
        old_text(value)
    with pytest.raises(TypeError) as raised:
        dumps(value)
    assert str(raised.value) == str(expected.value)


def test_a_circular_value_raises_as_json_dumps_does() -> None:
    loop: dict[str, Any] = {"a": {"b": []}}
    loop["a"]["b"].append(loop)
    with pytest.raises(ValueError, match="Circular reference detected"):
        dumps(loop)


@pytest.fixture(scope="module")
def reports() -> list[Any]:
    """An FPN, a warning (a 1×1 map) and a stopped trace: the optional parts of a report."""
    images = [torch.randn(3, h, w) for h, w in IMAGES]
    found = [resnet_inspect.inspect("retinanet_r50_fpn", (1, 3, 64, 64)), resnet_inspect.inspect("resnet18", 16),
             resnet_inspect.inspect(TinyDetector(), input_data=[images])]
    assert found[0].fpn is not None and found[1].warnings and found[2].stopped is not None
    return found


def test_the_json_format_parses_to_what_json_dumps_of_to_dict_wrote(reports: list[Any]) -> None:
    for report in reports:
        data = report.to_dict()
        assert typed(json.loads(to_json(report))) == typed(json.loads(old_text(data))), report.model
        assert to_json(report) == reference(data) + "\n"


def test_each_record_is_one_line(reports: list[Any]) -> None:
    report = reports[0]
    lines = to_json(report).splitlines()
    assert lines[:3] == ["{", f'  "model": "{report.model}",', '  "input_size": [1, 3, 64, 64],']
    start = lines.index('  "layers": [') + 1
    records = lines[start:start + len(report.layers)]
    assert [json.loads(line.rstrip(",")) for line in records] == report.to_dict()["layers"]
    assert lines[start + len(report.layers)] == "  ],"


def test_summary_memory_json_has_the_same_layout() -> None:
    result = run_cli("summary", "cifar_resnet20", "--memory", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["memory"]["training_step_sgd_peak_bytes"] > data["memory"]["inference_peak_bytes"] > 0
    assert result.stdout == reference(data) + "\n"


def test_writing_a_report_makes_no_python_call_per_record() -> None:
    # The indent=2 writer made a call per value (about 90 per bottleneck record); the records
    # now go through the C encoder in one pass, so the calls do not grow with the net.
    small = resnet_inspect.inspect("resnet50", (1, 3, 64, 64), layers="1,1,1,1").to_dict()
    large = resnet_inspect.inspect("resnet50", (1, 3, 64, 64), layers="3,3,3,3").to_dict()
    assert len(large["layers"]) == len(small["layers"]) + 88
    assert python_calls(lambda: dumps(large)) - python_calls(lambda: dumps(small)) <= 20


@pytest.mark.parametrize("lines", [[], ['{"a": 1}'], ['{"a": 1}', "[2, 3]", '"x"']], ids=["none", "one", "three"])
def test_written_items_go_in_as_they_are_at_the_top_and_one_level_down(lines: list[str]) -> None:
    items = [json.loads(line) for line in lines]
    from resnet_inspect.render.jsontext import Written

    top, inside = dumps(Written(lines)), dumps({"layers": Written(lines), "n": 1})
    assert json.loads(top) == items and json.loads(inside) == {"layers": items, "n": 1}
    assert top == ("[\n  " + ",\n  ".join(lines) + "\n]" if lines else "[]")
    assert inside.startswith('{\n  "layers": ' + ("[\n    " + ",\n    ".join(lines) + "\n  ]" if lines else "[]"))
