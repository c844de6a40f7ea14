"""Python's cyclic garbage collector, paused around work that allocates many objects and frees them
by reference counting (no cycles): with torch imported, each full collection walks about a million
objects for nothing to collect."""
from __future__ import annotations

import functools
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


@contextmanager
def collector_paused() -> Iterator[None]:
    """Run the block (or, as ``@collector_paused()``, the function) with the collector off, and switch it
    back on after if it was on."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def collector_paused_in(func: Callable[..., T]) -> Callable[..., T]:
    """``func``, run with the collector paused: as a decorator, the pause begins before the call
    allocates anything (a context manager's own objects could trigger a collection first)."""

    @functools.wraps(func)
    def paused(*args: Any, **kwargs: Any) -> T:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return func(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return paused
