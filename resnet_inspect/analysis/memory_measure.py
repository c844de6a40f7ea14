"""Measure what a real CPU run allocates, with torch.profiler's memory events (the ground truth
the predictions of :mod:`memory` are checked against: tests/test_memory.py, benchmarks/memory.py).

The profiler records one ``[memory]`` event per allocation (positive bytes) and release
(negative) from the CPU allocator. Their running sum in time order is what the run holds above
its start; the model's weights are allocated before the profile starts, so the process's peak is
the weights plus the highest running sum.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from .memory import DTYPES, MemoryOptions, _loss, _optimizer, _prepare, weights_bytes
from .preserve import guarded


def _peak_above_start(prof: Any) -> int:
    events = sorted((e.start_ns(), i, e.nbytes()) for i, e in enumerate(prof.profiler.kineto_results.events())
                    if e.name() == "[memory]")
    running = peak = 0
    for _, _, nbytes in events:
        running += nbytes
        peak = max(peak, running)
    return peak


def measured_peak(model: nn.Module, size: tuple[int, ...], opts: MemoryOptions, *, train: bool) -> int:
    """The CPU allocator's peak (weights included) of the run :func:`memory.peak_of` predicts.

    Runs on copies of the model's tensors (``preserve.guarded``); the model is left as it was."""
    torch.manual_seed(0)
    with guarded(model, meta=False):
        _prepare(model, opts, train)
        weights = weights_bytes(model)
        optimizer = _optimizer(model, opts) if train else None
        autocast = (torch.autocast("cpu", dtype=DTYPES["bfloat16" if opts.amp == "bf16" else "float16"])
                    if opts.amp else None)
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            x = torch.randn(size, dtype=DTYPES[opts.dtype])
            if not train:
                with torch.no_grad():
                    out = model(x)
                del out
            else:
                for _ in range(2 if opts.optimizer != "sgd" else 1):
                    if autocast is not None:
                        with autocast:
                            out = model(x)
                    else:
                        out = model(x)
                    loss = _loss(out)
                    loss.backward()
                    del out, loss
                    if optimizer is not None:
                        optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
            del x
    return weights + _peak_above_start(prof)
