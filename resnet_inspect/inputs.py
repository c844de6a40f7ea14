"""Parsing of user-supplied sizes (no torch import: the CLI validates before building)."""
from __future__ import annotations

import re
from typing import Any

from .errors import InputError

_HELP = "Give 224, 800x1344, 3x224x224 or 2x3x224x224 (positive integers)."


def parse_input_size(value: Any) -> tuple[int, int, int, int]:
    """Normalise an input size to (N, C, H, W).

    ``224`` means 1x3x224x224; ``800x1344`` is HxW; ``3x224x224`` is CxHxW; four numbers are NCHW.
    """
    if isinstance(value, str):
        text = value.strip().lower().replace("×", "x").replace(",", "x").replace(" ", "")
        if not re.fullmatch(r"\d+(x\d+){0,3}", text):
            raise InputError(f"Malformed input size '{value}'. {_HELP}")
        dims = [int(p) for p in text.split("x")]
    elif isinstance(value, bool):
        raise InputError(f"Malformed input size {value!r}. {_HELP}")
    elif isinstance(value, int):
        dims = [value]
    else:
        try:
            dims = [int(v) for v in value]
        except (TypeError, ValueError, OverflowError):
            raise InputError(f"Malformed input size {value!r}. {_HELP}") from None
        if any(isinstance(v, bool) or int(v) != v for v in value):
            raise InputError(f"Malformed input size {value!r}. {_HELP}")
    if not 1 <= len(dims) <= 4:
        raise InputError(f"Input size {value!r} has {len(dims)} dimensions; at most 4 (NCHW). {_HELP}")
    if any(d <= 0 for d in dims):
        raise InputError(f"Input size {value!r} has a dimension of zero or less. {_HELP}")
    if any(d > 1_000_000 for d in dims):
        raise InputError(f"Input size {value!r} is unreasonably large (a dimension over 1,000,000).")
    if len(dims) == 1:
        dims = [dims[0], dims[0]]
    if len(dims) == 2:
        dims = [3, *dims]
    if len(dims) == 3:
        dims = [1, *dims]
    return dims[0], dims[1], dims[2], dims[3]


def parse_tensor_shape(value: Any) -> tuple[int, ...]:
    """A tuple or list given for a plain ``nn.Module`` is the input tensor's exact shape, as in
    torchinfo: ``(2, 16)`` for an MLP, ``(1, 3, 8, 32, 32)`` for a 3-D conv net."""
    try:
        dims = [int(v) for v in value]
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"Malformed input shape {value!r}: give a tuple of positive integers.") from None
    if any(isinstance(v, bool) or int(v) != v for v in value) or not dims:
        raise InputError(f"Malformed input shape {value!r}: give a tuple of positive integers.")
    if any(d <= 0 for d in dims):
        raise InputError(f"Input shape {value!r} has a dimension of zero or less.")
    if len(dims) > 8 or any(d > 1_000_000 for d in dims):
        raise InputError(f"Input shape {value!r} is unreasonably large (over 8 dimensions or a dimension over "
                         "1,000,000).")
    return tuple(dims)
