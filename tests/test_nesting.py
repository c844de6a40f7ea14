"""``render/nesting.py``: the name index answers as a scan of every record does."""
from __future__ import annotations

import resnet_inspect
from resnet_inspect.render.nesting import NameIndex, name_index


def test_nested_and_named_match_a_scan() -> None:
    report = resnet_inspect.inspect("seresnet50")  # modules, function calls (``:add``) and repeated names
    index = NameIndex(report.layers)
    for rec in report.layers:
        if not rec.name:
            continue
        scan = [r.index for r in report.layers if r.name.startswith((rec.name + ".", rec.name + ":"))]
        assert index.nested(rec.name) == scan, rec.name
        assert index.named(rec.name) == [r.index for r in report.layers if r.name == rec.name]
    # ``layer1`` does not take in ``layer10`` or ``layer1_x``: only ``.`` and ``:`` continue a name.
    assert all(report.layers[i].name.startswith(("layer1.", "layer1:")) for i in index.nested("layer1"))


def test_the_index_is_built_once_per_record_list() -> None:
    report = resnet_inspect.inspect("resnet18")
    assert name_index(report.layers) is name_index(report.layers)
    other = resnet_inspect.inspect("resnet18")
    assert name_index(other.layers) is not name_index(report.layers)
