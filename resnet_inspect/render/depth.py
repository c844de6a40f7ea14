"""``--depth``, parsed without importing a renderer (a JSON summary never loads rich's tables)."""
from __future__ import annotations

from typing import Union

from ..errors import InputError

Depth = Union[int, str, None]  # None: blocks as rows; "all": every module; N: fold below level N


def parse_depth(text: str | None) -> Depth:
    """``--depth``: all, blocks (the default) or a level of 1 or more."""
    if text is None or text.strip().lower() == "blocks":
        return None
    if text.strip().lower() == "all":
        return "all"
    if not text.strip().isdigit() or int(text) < 1:
        raise InputError(f"--depth must be 1 or more, all (every layer) or blocks (the default), not {text!r}.")
    return int(text)
