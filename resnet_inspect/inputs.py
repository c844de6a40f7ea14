"""Parsing of user-supplied sizes (no torch import: the CLI validates before building)."""
from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Any

from .errors import InputError

_HELP = "Give 224, 800x1344, 3x224x224 or 2x3x224x224 (positive integers)."
#: The largest dimension an input size or --pad-to may have.
MAX_DIM = 1_000_000
#: torch counts a tensor's bytes in a signed 64-bit integer, so an input of float64 numbers holds
#: at most (2^63 - 1) / 8 elements: the most an input may hold.
MAX_ELEMENTS = (2**63 - 1) // 8
# Longer digit strings are refused before int() reads them: Python 3.11 refuses over 4300 digits
# with a ValueError, and no dimension up to MAX_DIM needs more than 7.
_MAX_DIGITS = len(str(MAX_DIM))


def _index(value: Any) -> int:
    """A whole number from an int, a numpy integer or anything with ``__index__`` (never a bool)."""
    if isinstance(value, bool):
        raise TypeError("a bool is not a size")
    try:
        return operator.index(value)
    except TypeError:
        number = int(value)  # 224.0 is 224; 224.5 is refused below
        if number != value:
            raise ValueError(f"{value!r} is not a whole number") from None
        return number


def parse_input_size(value: Any) -> tuple[int, int, int, int]:
    """Normalise an input size to (N, C, H, W).

    ``224`` means 1x3x224x224; ``800x1344`` is HxW; ``3x224x224`` is CxHxW; four numbers are NCHW.
    """
    if isinstance(value, str):
        text = value.strip().lower().replace("×", "x").replace(",", "x").replace(" ", "")
        if not re.fullmatch(r"\d+(x\d+){0,3}", text):
            raise InputError(f"Malformed input size '{_clip(value)}'. {_HELP}")
        if any(len(p.lstrip("0")) > _MAX_DIGITS for p in text.split("x")):
            raise InputError(f"Input size '{_clip(value)}' is unreasonably large (a dimension over {MAX_DIM:,}).")
        dims = [int(p) for p in text.split("x")]
    elif isinstance(value, bool):
        raise InputError(f"Malformed input size {value!r}. {_HELP}")
    elif hasattr(value, "__index__"):  # an int, a numpy integer, a 0-d integer tensor
        dims = [_index(value)]
    else:
        try:
            dims = [_index(v) for v in value]
        except (TypeError, ValueError, OverflowError):
            raise InputError(f"Malformed input size {_shown(value)}. {_HELP}") from None
        value = tuple(dims)
    if not 1 <= len(dims) <= 4:
        raise InputError(f"Input size {value!r} has {len(dims)} dimensions; at most 4 (NCHW). {_HELP}")
    if any(d <= 0 for d in dims):
        raise InputError(f"Input size {value!r} has a dimension of zero or less. {_HELP}")
    if any(d > MAX_DIM for d in dims):
        raise InputError(f"Input size {_shown(value)} is unreasonably large (a dimension over {MAX_DIM:,}).")
    if len(dims) == 1:
        dims = [dims[0], dims[0]]
    if len(dims) == 2:
        dims = [3, *dims]
    if len(dims) == 3:
        dims = [1, *dims]
    check_elements(dims, value)
    return dims[0], dims[1], dims[2], dims[3]


def check_elements(dims: list[int], value: Any) -> None:
    """Refuse an input whose element count overflows torch's 64-bit count (every dimension may be
    legal alone: 1000000x1000000x1000000x1000000 holds 10^24 elements)."""
    count = math.prod(dims)
    if count > MAX_ELEMENTS:
        raise InputError(f"Input size {_shown(value)} holds {count:.3g} elements, more than a tensor can hold "
                         f"(torch counts its bytes in a signed 64-bit integer: at most {MAX_ELEMENTS:.3g} elements "
                         "of 8 bytes). Give a smaller --input.")


def parse_pad_to(value: Any) -> int:
    """``--pad-to``: a whole number from 1 to :data:`MAX_DIM` (a larger multiple pads past any input size)."""
    try:
        number = _index(value)
    except (TypeError, ValueError, OverflowError):
        number = 0
    if not 1 <= number <= MAX_DIM:
        raise InputError(f"--pad-to must be a positive integer, not {_shown(value)} (at most {MAX_DIM:,}: a "
                         "larger multiple pads past any input size).")
    return number


def _shown(value: Any) -> str:
    """``repr(value)`` for a message, safe for integers of thousands of digits (whose repr
    raises ValueError in Python 3.11) and cut short when long."""
    try:
        return _clip(repr(value))
    except ValueError:
        return "(a value holding an integer of thousands of digits)"


def _clip(text: Any, limit: int = 60) -> str:
    """A user's value shown in a message, cut short when it runs to thousands of characters."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit // 2]}…{text[-10:]} ({len(text):,} characters)"


def parse_tensor_shape(value: Any) -> tuple[int, ...]:
    """A tuple or list given for a plain ``nn.Module`` is the input tensor's exact shape, as in
    torchinfo: ``(2, 16)`` for an MLP, ``(1, 3, 8, 32, 32)`` for a 3-D conv net."""
    try:
        dims = [_index(v) for v in value]
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"Malformed input shape {_shown(value)}: give a tuple of positive integers.") from None
    if not dims:
        raise InputError(f"Malformed input shape {value!r}: give a tuple of positive integers.")
    if any(d <= 0 for d in dims):
        raise InputError(f"Input shape {tuple(dims)} has a dimension of zero or less.")
    if len(dims) > 8 or any(d > MAX_DIM for d in dims):
        raise InputError(f"Input shape {_shown(tuple(dims))} is unreasonably large (over 8 dimensions or a "
                         f"dimension over {MAX_DIM:,}).")
    check_elements(dims, tuple(dims))
    return tuple(dims)


@dataclass(frozen=True)
class InputData:
    """Shapes of a forward that takes more than one tensor (``--input "[3x800x1333, 3x600x800]"``).

    ``images`` is one positional argument, a list of tensors, as a torchvision detector takes its
    images; ``named`` are keyword tensors (``--input "{x: 1x3x64x64, mask: 1x64x64}"``).
    """

    images: tuple[tuple[int, ...], ...] = ()
    named: tuple[tuple[str, tuple[int, ...]], ...] = ()


_DATA_HELP = ('Give a list of tensor shapes in brackets, "[3x800x1333, 3x600x800]" (a list of images, one '
              'argument), or keyword shapes in braces, "{x: 1x3x64x64, mask: 1x64x64}".')


def parse_input_data(text: str) -> InputData:
    """``[3x64x64, 3x48x80]`` or ``{x: 1x3x64x64, mask: 1x64x64}``: shapes for input_data."""
    body = text.strip()
    if len(body) < 2 or (body[0], body[-1]) not in (("[", "]"), ("{", "}")):
        raise InputError(f"Malformed input '{_clip(text)}'. {_DATA_HELP}")
    items = [item.strip() for item in body[1:-1].split(",") if item.strip()]
    if not items:
        raise InputError(f"Input '{_clip(text)}' lists no tensor. {_DATA_HELP}")
    if body[0] == "[":
        return InputData(images=tuple(_shape_text(item, text) for item in items))
    named = []
    for item in items:
        name, colon, shape = item.partition(":")
        if not colon or not name.strip().isidentifier():
            raise InputError(f"Malformed input '{_clip(text)}': '{_clip(item)}' is not name: shape. {_DATA_HELP}")
        named.append((name.strip(), _shape_text(shape, text)))
    if len({n for n, _ in named}) != len(named):
        raise InputError(f"Input '{_clip(text)}' names a tensor twice. {_DATA_HELP}")
    return InputData(named=tuple(named))


def _shape_text(item: str, text: str) -> tuple[int, ...]:
    parts = item.strip().lower().replace("×", "x").split("x")
    if not all(re.fullmatch(r"\d{1,7}", p) for p in parts):
        raise InputError(f"Malformed input '{_clip(text)}': '{_clip(item.strip())}' is not a shape such as 3x224x224. "
                         f"{_DATA_HELP}")
    return parse_tensor_shape([int(p) for p in parts])
