"""Parsing the input size (resnet_inspect.inputs): any value gives NCHW or InputError (fuzzed with
hypothesis), and integer types other than int (numpy, torch, __index__) are sizes."""
from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import resnet_inspect as ri
from resnet_inspect.inputs import parse_input_size
from tests.conftest import FUZZ, anything, size_text, valid_or_input_error


@FUZZ
@given(st.one_of(st.text(max_size=30), size_text, anything))
def test_input_size_parser_returns_nchw_or_input_error(value: Any) -> None:
    size = valid_or_input_error(parse_input_size, value)
    if size is not None:
        assert len(size) == 4 and all(type(d) is int and 1 <= d <= 1_000_000 for d in size)


@pytest.mark.parametrize("value", [(224, float("inf")), [float("-inf")]])
def test_infinite_size_is_an_input_error(value: Any) -> None:
    with pytest.raises(ri.InputError):
        parse_input_size(value)


@FUZZ
@given(st.lists(st.integers(1, 4096), min_size=1, max_size=4), st.sampled_from(["x", "×", ","]))
def test_well_formed_sizes_normalise_to_nchw(dims: list[int], sep: str) -> None:
    # 224 -> 1x3x224x224; HxW -> batch 1, 3 channels; CxHxW -> batch 1; NCHW as given.
    expected = {1: [1, 3, dims[0], dims[0]], 2: [1, 3, *dims], 3: [1, *dims], 4: dims}[len(dims)]
    assert parse_input_size(sep.join(map(str, dims))) == tuple(expected)
    assert parse_input_size(dims) == tuple(expected)


# -- integer types other than int are sizes, through the Python API --------------------------------

class _Index:
    """An integer type of someone else's (numpy's np.int64 is one): it has __index__, it is not an int."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        return self.value


def _integer_types() -> list[Any]:
    kinds: list[Any] = [_Index, torch.tensor]
    try:
        import numpy as np
    except ImportError:  # numpy is optional: _Index stands for it
        return kinds
    return [*kinds, np.int64, np.int32, np.uint16]


@pytest.mark.parametrize("kind", _integer_types(), ids=lambda k: getattr(k, "__name__", str(k)))
def test_numpy_and_other_integer_types_are_sizes(kind: Any) -> None:
    assert ri.inspect("resnet18", kind(64)).input_size == (1, 3, 64, 64)
    assert ri.inspect("resnet18", (kind(64), kind(96))).input_size == (1, 3, 64, 96)
    assert ri.inspect(torch.nn.Linear(4, 2), (kind(2), kind(4))).input_size == (2, 4)
    assert ri.inspect("resnet18", 64, pad_to=kind(32)).input_size == (1, 3, 64, 64)


@pytest.mark.parametrize("value", [224.5, "224", None, True, 2**70, -(2**70), [1, 2, 3, 4, 5]])
def test_integer_like_sizes_still_refuse_what_is_not_a_size(value: Any) -> None:
    with pytest.raises(ri.InputError):
        ri.inspect("resnet18", (value, 224) if not isinstance(value, list) else value)
