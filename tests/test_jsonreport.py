"""render/jsonreport.py: each record's line of ``--format json``, written straight from its fields, is
``json.dumps(record.json_dict())`` byte for byte, and a record holding other types than its fields
declare is written from ``json_dict()`` itself."""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest
import torch

import resnet_inspect
from resnet_inspect.analysis.opdesc import ResizeOp, WindowOp
from resnet_inspect.analysis.records import LayerRecord, Report
from resnet_inspect.render.export import to_json
from resnet_inspect.render.jsonreport import _FIELDS, _ROW, _by_column, _from_fields, _plain, _record, record_lines
from conftest import python_calls
from test_records import NAMED, odd_record, reports  # noqa: F401 - the module-scoped fixture


def line(record: LayerRecord) -> str:
    return json.dumps(record.json_dict(), ensure_ascii=False)


def test_every_record_of_the_zoo_is_written_from_its_fields(reports: list[Report]) -> None:  # noqa: F811
    for report in reports:
        memo: dict[Any, str] = {}
        for rec in report.layers:
            assert _from_fields(rec, memo) == line(rec), (report.model, rec.name)


def _changed(**fields: Any) -> LayerRecord:
    plain = LayerRecord(index=1, name="conv", type="Conv2d", parent="", input_shapes=[(1, 3, 8, 8)],
                        output_shapes=[(1, 4, 8, 8)], analytic_shape=(1, 4, 8, 8), receptive_field=(3, 3),
                        jump=(1.0, 1.0), start=(0.5, 0.5), read_from=[0], input_from=["x"])
    return dataclasses.replace(plain, **fields)


ODD = {
    "float macs": dict(macs=12.0), "fractional other ops": dict(other_ops=2.5), "bool params": dict(params=True),
    "int flag": dict(is_leaf=1), "int shape check": dict(shape_ok=0), "no name": dict(name=None),
    "torch.Size shape": dict(input_shapes=[torch.Size([1, 3, 8, 8])]), "float dimension": dict(output_shapes=[(1, 4.0)]),
    "list shape": dict(analytic_shape=[1, 4, 8, 8]), "NaN start": dict(start=(math.nan, 0.5)),
    "infinite jump": dict(jump=(math.inf, 1.0)), "tuple names": dict(input_from=("x", "y")),
    "resize with floats": dict(op=ResizeOp("nearest", 2.0, None)), "unhashable resize": dict(op=ResizeOp("nearest", [2.0, 2.0])),
    "nested read_from": dict(read_from=[(1, 2)]), "odd strings": dict(name='é"\n\u2028\x00', working=["\ud800"]),
    "unhashable window": dict(op=WindowOp([3, 3], (1, 1), (1, 1), (1, 1))), "tuple read_from": dict(read_from=(0,)),
    "bool dimension": dict(receptive_field=(True, 1)), "int jump": dict(jump=(1, 2)), "NaN jump": dict(jump=(math.nan, 1.0)),
}


@pytest.mark.parametrize("fields", ODD.values(), ids=ODD.keys())
def test_a_record_with_odd_values_is_written_as_json_dumps_writes_its_json_dict(fields: dict[str, Any]) -> None:
    record = _changed(**fields)
    assert _record(record, {}) == line(record)


def test_every_report_of_the_zoo_is_written_a_column_at_a_time(reports: list[Report]) -> None:  # noqa: F811
    for report in reports:
        columns = dict(zip(_FIELDS, zip(*map(_ROW, report.layers))))
        assert _plain(columns), report.model
        assert _by_column(columns, {}) == [line(rec) for rec in report.layers], report.model


@pytest.mark.parametrize("fields", ODD.values(), ids=ODD.keys())
def test_records_among_which_one_is_odd_are_each_written_as_json_dumps_writes_it(fields: dict[str, Any]) -> None:
    # The odd record sends every record to _record (one at a time), or its odd value is one the column
    # path writes as json.dumps does (an int stride): either way each line is its json_dict's.
    records = [_changed(index=0), _changed(**fields), _changed(index=2, name="conv2", jump=(2.0, 2.0))]
    assert record_lines(records) == [line(rec) for rec in records]


def test_no_records_no_lines() -> None:
    assert record_lines([]) == []


def test_the_odd_record_of_test_records() -> None:
    assert _record(odd_record(), {}) == line(odd_record())


def test_writing_the_json_costs_no_python_call_per_record() -> None:
    # Report.to_dict() and the indent=2 writer made about 200 Python calls per bottleneck record
    # (one per field and number), a line per record written from its fields about 15. A column at a
    # time, Python calls are made per distinct value (a shape, an op), and blocks after a stage's
    # first add none: 0 calls a record.
    small = resnet_inspect.inspect("resnet50", (1, 3, 64, 64), layers="2,2,2,2")
    large = resnet_inspect.inspect("resnet50", (1, 3, 64, 64), layers="4,4,4,4")
    to_json(small)  # the imports it makes on first use are not the writing's
    added = len(large.layers) - len(small.layers)
    per_record = (python_calls(lambda: to_json(large)) - python_calls(lambda: to_json(small))) / added
    assert per_record <= 0.1, per_record
