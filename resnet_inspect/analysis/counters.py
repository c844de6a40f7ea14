"""Peer counters for the MACs column: fvcore's FlopCountAnalysis and torch.utils.flop_counter.

Both run their own forward pass. Their per-module figures replace each record's ``macs`` with
what that module does itself (its total minus its children's), so the column still sums to the
counter's total. fvcore is imported only here, only when asked for.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..models.resnet import build_model
from ..variants import ResNetSpec
from .preserve import guarded
from .records import Report

CONVENTIONS = {
    "fvcore": ("MACs as fvcore's FlopCountAnalysis counts them: one 'flop' per fused multiply-add in "
               "convolutions and linear layers, plus its own rules for batch norm and adaptive pooling; "
               "element-wise ops such as ReLU and the residual add are skipped. FLOPs = 2 x MACs."),
    "torch": ("MACs from torch.utils.flop_counter: its FLOPs (2 per multiply-add, convolutions and matrix "
              "multiplies only) divided by 2. FLOPs = 2 x MACs."),
}


def _own(totals: dict[str, int], model: nn.Module) -> dict[str, int]:
    """Per-module figures from hierarchical totals: each module's total minus its children's."""
    own = {}
    for name, module in model.named_modules():
        children = [f"{name}.{c}" if name else c for c, _ in module.named_children()]
        own[name] = totals.get(name, 0) - sum(totals.get(c, 0) for c in children)
    return own


def _real_model(model: nn.Module, spec: ResNetSpec | None) -> nn.Module:
    tensors = [*model.parameters(), *model.buffers()]
    if tensors and all(t.is_meta for t in tensors):
        if spec is None:
            raise InputError("The fvcore and torch counters need a model with real weights, not one on the meta device.")
        return build_model(spec)
    return model


def fvcore_by_module(model: nn.Module, size: tuple[int, ...], dtype: torch.dtype = torch.float32) -> dict[str, int]:
    """fvcore's per-module totals, from its jit trace of a real forward (on copies of the weights)."""
    from fvcore.nn import FlopCountAnalysis

    try:
        with guarded(model, meta=False), torch.no_grad():
            model.eval()
            analysis = FlopCountAnalysis(model, _zeros(model, size, dtype))
            analysis.unsupported_ops_warnings(False)
            analysis.uncalled_modules_warnings(False)
            analysis.tracer_warnings("none")
            return dict(analysis.by_module())
    except InputError:
        raise
    except Exception as exc:  # fvcore's jit trace takes tensors and tuples of them, and one path per module
        raise InputError(f"fvcore cannot count {type(model).__name__}: its jit trace of the model failed "
                         f"({_reason(exc)}). Use the default analytic counter or --counter torch.") from exc


def torch_by_module(model: nn.Module, size: tuple[int, ...], dtype: torch.dtype = torch.float32) -> dict[str, int]:
    """torch.utils.flop_counter's per-module totals, from a real forward (on copies of the weights)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    try:
        with guarded(model, meta=False), torch.no_grad():
            model.eval()
            with counter:
                model(_zeros(model, size, dtype))
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"torch.utils.flop_counter cannot count {type(model).__name__}: its forward pass failed "
                         f"({_reason(exc)}). Use the default analytic counter.") from exc
    root = type(model).__name__
    totals: dict[str, int] = defaultdict(int)
    for key, per_op in counter.get_flop_counts().items():
        if key == "Global":
            continue
        name = "" if key == root else key[len(root) + 1:] if key.startswith(root + ".") else key
        totals[name] = sum(per_op.values()) // 2  # FLOPs -> MACs
    return totals


def _zeros(model: nn.Module, size: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """The counted input: zeros of the traced dtype, on the model's device."""
    tensors = [*model.parameters(), *model.buffers()]
    return torch.zeros(size, dtype=dtype, device=tensors[0].device if tensors else "cpu")


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())  # one paragraph: jit errors span several lines
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def apply(report: Report, counter: str, model: nn.Module, spec: ResNetSpec | None, size: tuple[int, ...],
          dtype: torch.dtype = torch.float32) -> None:
    """Refill the MACs column (per record and total) from a peer counter."""
    real = _real_model(model, spec)
    count = fvcore_by_module if counter == "fvcore" else torch_by_module
    totals = count(real, size, dtype)
    own = _own(totals, real)
    for rec in report.layers:
        rec.macs = own.get(rec.name, 0) if rec.kind == "module" and rec.call == 0 else 0
    report.totals["macs"] = sum(rec.macs for rec in report.layers)
    report.counter = counter
