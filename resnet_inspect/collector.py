"""Python's cyclic garbage collector, paused around work that allocates many objects and frees them
by reference counting (no cycles): with torch imported, each full collection walks about a million
objects for nothing to collect."""
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


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
