"""analysis/records.py: ``Report.to_dict()`` builds each record's JSON form directly
(``LayerRecord.json_dict``), and it is the one the generic walk ``_jsonable`` made of every field:
the same keys in the same order, the same types (lists for tuples, ints for integral floats), NaN kept."""
from __future__ import annotations

import dataclasses
import gc
import math
from typing import Any

import pytest
import torch

import resnet_inspect
from resnet_inspect.analysis.opdesc import Chain, PadOp, ResizeOp, WindowOp
from resnet_inspect.analysis.records import LayerRecord, Report, _jsonable
from conftest import python_calls
from test_zoo import IMAGES, TinyDetector

# Basic and bottleneck blocks, option-A pads (cifar), ResNet-D's pooled shortcut, SE means,
# pre-activation, an FPN with its resizes, and a stopped trace.
NAMED = [("resnet18", 64), ("cifar_resnet20", 32), ("resnet50d", 64), ("seresnet50", 64), ("resnetv2_50", 64),
         ("retinanet_r50_fpn", 64)]


def typed(value: Any) -> Any:
    """``value`` with every type made part of it (1, 1.0 and True differ; a list is not a tuple); NaN equals NaN."""
    if isinstance(value, dict):
        return ("dict", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [typed(v) for v in value])
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, value)


def generic_to_dict(report: Report) -> dict[str, Any]:
    """``Report.to_dict()`` as it was built before: every field through ``_jsonable``."""
    data = dict(report.to_dict())
    data["layers"] = [rec.to_dict() for rec in report.layers]
    return _jsonable(data)


def odd_record() -> LayerRecord:
    """A record with the values a peer counter or a caller's arguments can leave: floats where ints are
    usual, NaN and infinity, tuples and torch.Size, a resize with a float scale inside a chain."""
    return LayerRecord(
        index=3, name="up", type="Upsample", input_shapes=[torch.Size([1, 8, 4, 4])], output_shapes=[(1, 8, 8, 8)],
        macs=12.0, other_ops=2.5, shared=["a.weight"], analytic_shape=(1, 8, 8, 8), shape_ok=True,
        working=["H: 4 × 2.0 = 8"], receptive_field=(3, 3), jump=(0.5, 1.0), start=(float("nan"), -math.inf),
        op=Chain((PadOp((0, 1)), ResizeOp("nearest", (2.0, 2.5), torch.Size([8, 8])))), input_from=["x"], read_from=[1])


@pytest.fixture(scope="module")
def reports() -> list[Report]:
    images = [torch.randn(3, h, w) for h, w in IMAGES]
    return [resnet_inspect.inspect(name, size) for name, size in NAMED] + [
        resnet_inspect.inspect(TinyDetector(), input_data=[images])]


def test_to_dict_is_the_generic_walk_of_every_field(reports: list[Report]) -> None:
    assert reports[-1].stopped is not None and reports[-2].fpn is not None  # the optional parts are there
    for report in reports:
        assert typed(report.to_dict()) == typed(generic_to_dict(report)), report.model


def test_a_record_with_odd_values_is_written_as_the_generic_walk_writes_it() -> None:
    record = odd_record()
    data = record.json_dict()
    assert typed(data) == typed(_jsonable(record.to_dict()))
    assert (data["macs"], data["other_ops"], data["jump"]) == (12, 2.5, [0.5, 1])
    assert data["op"] == {"pad": [0, 1], "mode": "nearest", "scale_factor": [2, 2.5], "size": [8, 8]}
    assert typed(WindowOp((3, 3), (1, 1), (1, 1), (1, 1)).to_dict()) == typed(_jsonable(
        WindowOp((3, 3), (1, 1), (1, 1), (1, 1)).to_dict()))


def test_the_json_form_is_a_copy(reports: list[Report]) -> None:
    report = reports[0]
    data = report.to_dict()
    data["layers"][1]["input_shapes"][0][0] = -1
    data["layers"][1]["input_from"].append("x")
    assert report.layers[1].input_shapes[0][0] == 1 and "x" not in report.layers[1].input_from


def test_to_dict_costs_a_few_calls_per_record() -> None:
    # The generic walk made a call per field and per number (about 75 per record of a bottleneck
    # net); each record now builds its dict in one call, plus its op's and its jump and start.
    small = resnet_inspect.inspect("resnet50", (1, 3, 64, 64), layers="1,1,1,1")
    large = resnet_inspect.inspect("resnet50", (1, 3, 64, 64), layers="3,3,3,3")
    per_record = (python_calls(large.to_dict) - python_calls(small.to_dict)) / (len(large.layers) - len(small.layers))
    assert per_record <= 6, per_record


def _collections(func: Any) -> list[int]:
    """The generations the cyclic collector walked while ``func()`` ran, at a threshold of 100 allocations."""
    collections: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    threshold = gc.get_threshold()
    gc.set_threshold(100)
    gc.collect()  # the count of allocations starts from 0
    gc.callbacks.append(seen)
    try:
        func()
    finally:
        gc.callbacks.remove(seen)
        gc.set_threshold(*threshold)
    return collections


def test_to_dict_runs_with_the_collector_paused(reports: list[Report]) -> None:
    # A thousand-odd dicts and lists for resnet18's records: ten collections, were the collector on.
    assert len(_collections(lambda: _jsonable([rec.to_dict() for rec in reports[0].layers]))) >= 5
    # At most the one the allocations made while paused call for, once the collector is back on.
    assert len(_collections(reports[0].to_dict)) <= 1
    assert gc.isenabled()


def test_a_list_of_strings_ints_bools_and_none_is_copied_and_any_other_walked() -> None:
    kept = ("layer1.0.conv1", 3, True, None)
    assert typed(_jsonable(kept)) == typed(list(kept))
    listed = ["a", 1]
    assert _jsonable(listed) == listed and _jsonable(listed) is not listed
    assert typed(_jsonable(["a", 2.0, (1.0, 0.5), {3: 4.0}])) == typed(["a", 2, [1, 0.5], {"3": 4}])


def test_a_record_has_no_dict_of_its_own_and_still_copies_and_pickles() -> None:
    # A record has more fields than a CPython instance dict shares keys for (30): each held a 1.5 kB dict
    # of its own, 13 MB for a net of 800 blocks, and every pass over the records read it. Slots instead.
    import copy
    import pickle

    record = dataclasses.replace(odd_record(), start=(0.5, -math.inf))  # NaN is not equal to its copy
    assert not hasattr(record, "__dict__")
    with pytest.raises(AttributeError):
        record.extra = 1  # type: ignore[attr-defined]
    for twin in (copy.copy(record), copy.deepcopy(record), pickle.loads(pickle.dumps(record)),
                 dataclasses.replace(record)):
        assert typed(twin.json_dict()) == typed(record.json_dict()) and twin == record
