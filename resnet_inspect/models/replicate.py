"""Fresh copies of a block built on the meta device, for a stage's repeated identical blocks.

Constructing a module is mostly bookkeeping: ``nn.Module.__init__`` sets up a dozen hook
dictionaries, and every parameter and buffer goes through ``Module.__setattr__``. A BatchNorm2d
costs about 0.1 ms that way, and the 800-block net of the benchmarks (``--layers 50,200,500,50``,
6,400 modules) spent 0.55 s of CPU building, a third of its time above ``import torch``.

On the meta device a block has no values, so block 2 of a stage is block 1 again with new
tensors. :func:`meta_copy` makes that copy directly: a new instance of every module, a copy of
each of its containers, and a new meta tensor for every parameter and buffer, with the same
shape, dtype, strides and ``requires_grad``. Nothing is shared with the original, and a submodule
the original holds twice is one module in the copy too (as a block's one ``relu``, called thrice).
Blocks on any other device are constructed, so their random initialisation is what it always was.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

# Containers nn.Module keeps in its __dict__ (parameters, buffers, submodules, hook tables, the set of
# non-persistent buffers), copied one level deep. Anything else is an immutable setting
# (ints, tuples, strings, a dtype) and is shared, as two constructions from the same arguments share it.
_CONTAINERS = (dict, OrderedDict, set, list)


def is_meta_module(module: nn.Module) -> bool:
    """Whether every parameter and buffer of ``module`` (and its submodules) is on the meta device."""
    tensors = [*module.parameters(), *module.buffers()]
    return bool(tensors) and all(t.is_meta for t in tensors)


def meta_copy(module: nn.Module) -> nn.Module:
    """An independent copy of a module tree whose tensors are all on the meta device.

    Raises ``ValueError`` for a tensor elsewhere (its values would be lost), for registered hooks
    (they are the caller's, and belong to one instance), and for an attribute the copy cannot tell
    is safe to share (a tensor or a module outside the registries, or a container holding one).
    """
    # Outside any TorchFunctionMode (torch.device("meta") is one): the copy calls torch only to
    # make empty meta tensors, and the mode would see every call.
    with torch._C.DisableTorchFunction():
        return _copy(module, {})


def _new_tensor(t: torch.Tensor) -> torch.Tensor:
    if not t.is_meta:
        raise ValueError(f"meta_copy copies meta tensors only, not one on {t.device}")
    fresh = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=_META)
    if type(t) is nn.Parameter:
        return nn.Parameter(fresh, requires_grad=t.requires_grad)
    if type(t) is not torch.Tensor:
        raise ValueError(f"meta_copy copies plain tensors and Parameters, not {type(t).__name__}")
    return fresh


_META = torch.device("meta")
_SHARED = (torch.Tensor, nn.Module)


def _copy(module: nn.Module, memo: dict[int, nn.Module]) -> nn.Module:
    done = memo.get(id(module))
    if done is not None:
        return done
    copy = object.__new__(type(module))
    memo[id(module)] = copy
    state: dict[str, Any] = {}
    for key, value in module.__dict__.items():
        kind = type(value)
        if key == "_parameters" or key == "_buffers":
            value = kind((name, None if t is None else _new_tensor(t)) for name, t in value.items())
        elif key == "_modules":
            value = kind((name, None if m is None else _copy(m, memo)) for name, m in value.items())
        elif kind in _CONTAINERS:
            if value:
                _check_container(module, key, value)
            value = value.copy()
        elif isinstance(value, _SHARED):
            raise ValueError(f"meta_copy cannot copy {type(module).__name__}.{key}, an unregistered "
                             f"{kind.__name__}")
        state[key] = value
    object.__setattr__(copy, "__dict__", state)
    return copy


def _check_container(module: nn.Module, key: str, value: Any) -> None:
    """A non-empty container may be copied one level deep only if it holds plain settings."""
    if key.endswith("hooks"):
        raise ValueError(f"meta_copy does not copy hooks ({type(module).__name__}.{key})")
    items = value.values() if isinstance(value, dict) else value
    if any(isinstance(v, _SHARED) for v in items):
        raise ValueError(f"meta_copy cannot copy {type(module).__name__}.{key}: it holds tensors or modules")
