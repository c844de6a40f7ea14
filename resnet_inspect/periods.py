"""A process-wide change that overlapping users share (threads tracing or building at once)."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class SharedPeriod:
    """``start()`` makes a process-wide change and returns the function that undoes it. Used as a
    context (``with period():``), the first user to enter starts it and the last to leave undoes
    it, so contexts that overlap without nesting, as threads' do, never leave the change behind
    or undo it under another user."""

    def __init__(self, start: Callable[[], Callable[[], None]]) -> None:
        self._start = start
        self._lock = threading.Lock()
        self._users = 0
        self._undo: Callable[[], None] | None = None

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                self._undo = self._start()
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._undo is not None:
                    undo, self._undo = self._undo, None
                    undo()
