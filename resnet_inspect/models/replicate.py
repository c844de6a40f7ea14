"""Fresh copies of a block built on the meta device, for a stage's repeated identical blocks.

Constructing a module is mostly bookkeeping: ``nn.Module.__init__`` sets up a dozen hook
dictionaries, and every parameter and buffer goes through ``Module.__setattr__``. A BatchNorm2d
costs about 0.1 ms that way, and the 800-block net of the benchmarks (``--layers 50,200,500,50``,
6,400 modules) spent 0.55 s of CPU building, a third of its time above ``import torch``.

On the meta device a block has no values, so block 2 of a stage is block 1 again with new
tensors. A :class:`MetaTemplate` reads a block once (its modules, each one's attributes, and the
shape, strides, dtype and ``requires_grad`` of every parameter and buffer) and then makes copies
from what it read: a new instance of every module, a copy of each of its containers, and a new
meta tensor for every parameter and buffer. Nothing is shared with the original or between
copies, and a submodule the original holds twice is one module in the copy too (as a block's
one ``relu``, called thrice). Reading once and copying from flat tables costs about 40 us per
bottleneck, where walking the block's ``__dict__``s again for every copy cost 90 us.
Blocks on any other device are constructed, so their random initialisation is what it always was.
"""
from __future__ import annotations

from collections import OrderedDict
from itertools import chain
from typing import Any

import torch
from torch import nn

# Containers nn.Module keeps in its __dict__ (parameters, buffers, submodules, hook tables, the set of
# non-persistent buffers), copied one level deep. Anything else must be an immutable setting (ints,
# strings, a dtype, tuples of them) and is shared, as two constructions from the same arguments share
# it; a setting of any other type is refused.
_CONTAINERS = frozenset((dict, OrderedDict, set, list))
_PLAIN = frozenset((bool, int, float, str, type(None), torch.dtype, torch.device))
_REGISTRIES = ("_parameters", "_buffers", "_modules")
_META = torch.device("meta")
_SHARED = (torch.Tensor, nn.Module)

# What a copied tensor is made from: (name, None) for a registered None, else
# (name, (size, stride, dtype, requires_grad)), requires_grad being None for a plain tensor.
_TensorRow = tuple[str, Any]


def is_meta_module(module: nn.Module) -> bool:
    """Whether ``module`` (with its submodules) has tensors, every parameter and buffer on the meta device."""
    found = False
    for each in module.modules():
        for t in chain(each._parameters.values(), each._buffers.values()):
            if t is not None:
                if not t.is_meta:
                    return False
                found = True
    return found


def meta_copy(module: nn.Module) -> nn.Module:
    """An independent copy of a module tree whose tensors are all on the meta device.

    Raises ``ValueError`` for a tensor elsewhere (its values would be lost), for registered hooks
    (they are the caller's, and belong to one instance), for what a copy would change (a tensor
    registered twice, a tensor's own attributes, a buffer requiring grad), and for an attribute the
    copy cannot tell is safe to share (a tensor or a module outside the registries, a container
    holding one, a setting that is not plainly immutable).
    """
    return MetaTemplate(module).copy()


class MetaTemplate:
    """A module tree on meta, read once, to make any number of independent copies of it.

    The copies are of the module as it was when read. Raises ``ValueError`` as :func:`meta_copy`.
    """

    def __init__(self, module: nn.Module) -> None:
        self._nodes: list[_Node] = []
        self._tensors: set[int] = set()  # one tensor registered twice (tied) would be two in a copy
        self._read(module, {})

    def _read(self, module: nn.Module, order: dict[int, int]) -> int:
        """Read ``module`` and, depth first, its submodules; return its index in ``_nodes``."""
        index = order.get(id(module))
        if index is not None:
            return index
        index = order[id(module)] = len(self._nodes)
        node = _Node(type(module))
        self._nodes.append(node)
        for key, value in module.__dict__.items():
            kind = type(value)
            if key == "_modules":
                node.modules = kind, tuple((name, None if m is None else self._read(m, order))
                                           for name, m in value.items())
                value = None  # filled in by each copy, as the containers below
            elif key in _REGISTRIES:
                setattr(node, key[1:], (kind, tuple((name, self._tensor_row(t)) for name, t in value.items())))
                value = None
            elif kind in _CONTAINERS:
                if value:
                    _check_container(module, key, value)
                node.containers.append((key, value.copy()))
                value = None
            elif kind not in _PLAIN:
                _check_setting(module, key, value)
            node.settings[key] = value
        return index

    def _tensor_row(self, t: torch.Tensor | None) -> tuple[Any, ...] | None:
        if t is None:
            return None
        if id(t) in self._tensors:
            raise ValueError("meta_copy cannot copy a tensor registered twice (tied weights)")
        self._tensors.add(id(t))
        return _tensor_row(t)

    def copy(self) -> nn.Module:
        """A new copy: new modules, new containers, new meta tensors."""
        nodes = self._nodes
        made = [object.__new__(node.cls) for node in nodes]
        # Outside any TorchFunctionMode (torch.device("meta") is one): the copy calls torch only to
        # make empty meta tensors, and the mode would see every call.
        with torch._C.DisableTorchFunction():
            for node, module in zip(nodes, made):
                object.__setattr__(module, "__dict__", node.state(made))
        return made[0]


class _Node:
    """One module of a template: its class, its attributes, and what its registries hold."""

    __slots__ = ("cls", "settings", "containers", "parameters", "buffers", "modules")

    def __init__(self, cls: type[nn.Module]) -> None:
        self.cls = cls
        self.settings: dict[str, Any] = {}  # the module's __dict__, in its order, as read
        self.containers: list[tuple[str, Any]] = []  # those to copy one level deep, by key
        self.parameters: tuple[type, tuple[_TensorRow, ...]] | None = None
        self.buffers: tuple[type, tuple[_TensorRow, ...]] | None = None
        self.modules: tuple[type, tuple[tuple[str, int | None], ...]] | None = None

    def state(self, made: list[nn.Module]) -> dict[str, Any]:
        """The __dict__ of a new copy of this module, whose submodules are ``made[index]``."""
        state = self.settings.copy()
        for key, value in self.containers:
            state[key] = value.copy()
        if self.parameters is not None:
            state["_parameters"] = _new_tensors(*self.parameters)
        if self.buffers is not None:
            state["_buffers"] = _new_tensors(*self.buffers)
        if self.modules is not None:
            kind, rows = self.modules
            state["_modules"] = kind((name, None if index is None else made[index]) for name, index in rows)
        return state


def _tensor_row(t: torch.Tensor) -> tuple[Any, ...]:
    """What a new copy of ``t`` is made from (see ``_TensorRow``)."""
    if not t.is_meta:
        raise ValueError(f"meta_copy copies meta tensors only, not one on {t.device}")
    if type(t) is nn.Parameter:
        grad = t.requires_grad
    elif type(t) is torch.Tensor and not t.requires_grad:
        grad = None
    else:
        raise ValueError(f"meta_copy copies plain tensors and Parameters, not {type(t).__name__}"
                         + (" requiring grad" if type(t) is torch.Tensor else ""))
    if t.__dict__:
        raise ValueError(f"meta_copy cannot copy the tensor attributes {sorted(t.__dict__)}")
    return tuple(t.shape), t.stride(), t.dtype, grad


_empty = torch.empty_strided
_subclass = torch.Tensor._make_subclass  # what nn.Parameter(tensor, requires_grad) calls for a plain tensor


def _new_tensors(kind: type, rows: tuple[_TensorRow, ...]) -> Any:
    out = kind()
    for name, row in rows:
        if row is None:
            out[name] = None
            continue
        size, stride, dtype, grad = row
        fresh = _empty(size, stride, dtype=dtype, device=_META)
        out[name] = fresh if grad is None else _subclass(nn.Parameter, fresh, grad)
    return out


def _check_setting(module: nn.Module, key: str, value: Any) -> None:
    """A setting is shared by the copies, so it must be immutable: plain values, or tuples of them."""
    if isinstance(value, _SHARED):
        raise ValueError(f"meta_copy cannot copy {type(module).__name__}.{key}, an unregistered "
                         f"{type(value).__name__}")
    if not _immutable(value):
        raise ValueError(f"meta_copy cannot tell that {type(module).__name__}.{key} (a {type(value).__name__}) "
                         "is safe to share")


def _immutable(value: Any) -> bool:
    kind = type(value)
    return kind in _PLAIN or (kind in (tuple, frozenset) and all(map(_immutable, value)))


def _check_container(module: nn.Module, key: str, value: Any) -> None:
    """A non-empty container may be copied one level deep only if it holds plain settings."""
    if key.endswith("hooks"):
        raise ValueError(f"meta_copy does not copy hooks ({type(module).__name__}.{key})")
    items = value.values() if isinstance(value, dict) else value
    if any(isinstance(v, _SHARED) for v in items):
        raise ValueError(f"meta_copy cannot copy {type(module).__name__}.{key}: it holds tensors or modules")
