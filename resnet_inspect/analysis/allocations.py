"""Watch every tensor a run on the meta device allocates, and when it is released.

A ``TorchDispatchMode`` sits below autograd, so it sees the forward's operators, the backward's
(autograd runs them through the same dispatcher) and the optimizer's. Every output whose storage
is new is an allocation of ``storage.nbytes()`` bytes, as the caching allocator would be asked
for; a ``weakref.finalize`` on the storage records its release at the moment its last reference
dies (torch keeps one Python object per storage, so the finalizer runs when the storage itself
is freed, not when a temporary handle is). Views and in-place results share a storage that is
already counted, or one the caller owns (weights, the input), and allocate nothing.

The events are kept as a log, so the live set at the peak is replayed afterwards instead of
being copied at every new high.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


@dataclass
class Block:
    """One allocation: its size, the layer and phase that made it, and the op's output shape."""

    key: int
    nbytes: int
    where: str
    phase: str
    op: str
    shape: tuple[int, ...]


@dataclass
class Ledger:
    """The allocation log of one run: blocks, +/- events, the running total and its peak."""

    blocks: dict[int, Block] = field(default_factory=dict)  # serial -> block
    events: list[tuple[int, int]] = field(default_factory=list)  # (serial, +1 allocated | -1 released)
    current: int = 0
    peak: int = 0
    peak_event: int = -1  # index into events just after which the peak holds
    peak_where: str = ""
    peak_phase: str = ""

    def live_at_peak(self) -> list[Block]:
        """The blocks live when the peak was reached."""
        live: dict[int, Block] = {}
        for serial, sign in self.events[:self.peak_event + 1]:
            if sign > 0:
                live[serial] = self.blocks[serial]
            else:
                live.pop(serial, None)
        return list(live.values())


def _storage(t: torch.Tensor) -> Any:
    try:
        return t.untyped_storage()
    except (RuntimeError, NotImplementedError):  # a tensor subclass without storage
        return None


class Allocations(TorchDispatchMode):
    """Log the allocations and releases of every operator that runs under it.

    ``where`` is a callable naming the layer (or step) running now; ``phase`` is set by the
    caller (forward, backward, optimizer)."""

    def __init__(self, where: Callable[[], str], scratch: Callable[[Any, tuple[Any, ...]], int] | None = None) -> None:
        super().__init__()
        self.scratch = scratch  # op, args -> bytes of a buffer the kernel allocates and frees inside
        self.ledger = Ledger()
        self.where = where
        self.phase = "forward"
        self._serials: dict[int, int] = {}  # id of the live storage's C++ object -> serial
        self._next = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        outs = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        if outs:
            ins = {s._cdata for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)
                   and (s := _storage(t)) is not None}
            for t in outs:
                self._allocated(t, ins, func)
        if self.scratch is not None and (nbytes := self.scratch(func, args)):
            self._transient(nbytes, func)
        return out

    def _transient(self, nbytes: int, func: Any) -> None:
        """A buffer the kernel allocates and frees before it returns (after its outputs)."""
        serial = self._next
        self._next += 1
        ledger = self.ledger
        ledger.blocks[serial] = Block(serial, nbytes, self.where(), self.phase, f"{func.__name__} scratch", ())
        ledger.events.append((serial, 1))
        if ledger.current + nbytes > ledger.peak:
            ledger.peak, ledger.peak_event = ledger.current + nbytes, len(ledger.events) - 1
            ledger.peak_where, ledger.peak_phase = ledger.blocks[serial].where, self.phase
        ledger.events.append((serial, -1))

    def _allocated(self, t: torch.Tensor, ins: set[int], func: Any) -> None:
        storage = _storage(t)
        if storage is None or storage._cdata in ins or storage._cdata in self._serials:
            return
        nbytes = int(storage.nbytes())
        if nbytes == 0:
            return
        serial = self._next
        self._next += 1
        self._serials[storage._cdata] = serial
        ledger = self.ledger
        ledger.blocks[serial] = Block(serial, nbytes, self.where(), self.phase, str(func.__name__),
                                      tuple(int(d) for d in t.shape))
        ledger.events.append((serial, 1))
        ledger.current += nbytes
        if ledger.current > ledger.peak:
            ledger.peak, ledger.peak_event = ledger.current, len(ledger.events) - 1
            ledger.peak_where, ledger.peak_phase = ledger.blocks[serial].where, self.phase
        weakref.finalize(storage, self._released, storage._cdata, serial, nbytes)

    def _released(self, cdata: int, serial: int, nbytes: int) -> None:
        if self._serials.get(cdata) == serial:
            del self._serials[cdata]
        self.ledger.events.append((serial, -1))
        self.ledger.current -= nbytes

    def forget(self) -> None:
        """Stop attributing releases to this ledger (storages still alive when the run ends)."""
        self._serials.clear()
        self._released = lambda *a: None  # type: ignore[method-assign]


    def serial_of(self, t: torch.Tensor) -> int | None:
        """The allocation that holds ``t``'s data, if this run made it and it is still live."""
        s = _storage(t)
        return None if s is None else self._serials.get(s._cdata)
