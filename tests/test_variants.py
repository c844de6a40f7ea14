"""The variant table's parsers (resnet_inspect.variants): layer lists and builder options of any type
give a typed spec or InputError, fuzzed with hypothesis."""
from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

import resnet_inspect as ri
from resnet_inspect.variants import MAX_BLOCKS, MAX_OUTPUTS, MAX_WIDTH, OPTION_NAMES, parse_layers
from tests.conftest import FUZZ, anything, scalars, size_text, valid_or_input_error


@FUZZ
@given(st.one_of(st.text(max_size=30), size_text, anything), st.integers(1, 6))
def test_layer_list_parser_returns_positive_counts_or_input_error(value: Any, stages: int) -> None:
    layers = valid_or_input_error(lambda v: parse_layers(v, stages), value)
    if layers is not None:
        assert len(layers) == stages and all(type(n) is int and 1 <= n <= MAX_BLOCKS for n in layers)
        if isinstance(value, (list, tuple)):  # nothing was coerced: 3.7 is not truncated, True is not 1
            assert all(type(v) is int for v in value), value


# Values of every type for every builder option: get_spec returns a spec whose fields have the
# types the builder needs, or refuses with InputError. "no" must never become a truthy switch.
option_values = st.one_of(scalars, st.lists(st.integers(-3, 1500), max_size=5),
                          st.sampled_from(["3,4,6,3", "2,2,2,2", "3,3,3", "A", "B", "deep", "bottleneck",
                                           "retinanet", "", "none", "frozen_bn"]))


@FUZZ
@given(st.sampled_from(["resnet18", "resnet50", "cifar_resnet20", "hopenet", "maskrcnn_r50_fpn", "resnetv2_50"]),
       st.dictionaries(st.sampled_from(OPTION_NAMES), option_values, max_size=3))
def test_builder_options_of_any_type_give_a_typed_spec_or_input_error(name: str, options: dict[str, Any]) -> None:
    spec = valid_or_input_error(lambda o: ri.get_spec(name, **o), options)
    if spec is None:
        return
    for field in ("stride_in_1x1", "caffe_maxpool", "avg_down", "se", "preact"):
        assert type(getattr(spec, field)) is bool, (field, options)
    for field in ("groups", "width_per_group", "output_stride", "num_classes", "num_bins"):
        assert type(getattr(spec, field)) is int and getattr(spec, field) >= 1, (field, options)
    assert all(type(n) is int and 1 <= n <= MAX_BLOCKS for n in spec.layers)
    assert spec.groups * spec.width_per_group <= MAX_WIDTH and spec.num_classes <= MAX_OUTPUTS


@FUZZ
@given(st.lists(st.integers(1, 500), min_size=4, max_size=4))
def test_well_formed_layer_lists_round_trip(layers: list[int]) -> None:
    assert parse_layers(",".join(map(str, layers))) == tuple(layers)
