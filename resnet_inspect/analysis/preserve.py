"""Leave the user's model exactly as it was, whatever a forward pass does to it.

A trace or a peer counter runs the model's own ``forward``. That code may update a buffer in
place (a call counter, batch-norm statistics), cache tensors in a plain attribute (torchvision's
detection ``AnchorGenerator`` keeps ``cell_anchors``, a list of tensors, on the device it last
ran on), add attributes, initialize a lazy module, or (fvcore's jit trace) leave hooks behind
when it fails. ``guarded`` makes all of that happen to stand-ins:

- every parameter and buffer of every module is swapped, in the module's own ``_parameters`` and
  ``_buffers``, for a stand-in: an empty meta tensor for the meta trace, a copy for a real
  forward, a fresh uninitialized one for a lazy module's (its first forward materializes that
  one, and the user's stays uninitialized). There is one stand-in per tensor, so tied weights
  stay tied. Each module is visited once however many names it has (``m.alias = m.conv``, a
  ModuleList that repeats an entry), and the originals are put back by object: the same tensor
  objects, with their device, dtype, bits and version counter, are there afterwards;
- tensors in plain attributes, and in lists, tuples and dicts of them, are swapped the same way;
- afterwards every module's class, attribute dictionary (attributes the forward added are
  removed) and the contents of its containers (hook dictionaries, ``_modules``, ...), and the
  global module hooks, are put back as they were, also when the forward raised.

``torch.func.functional_call(..., tie_weights=True)``, used before, loses a shared module's
weights: ``named_parameters()`` lists the tensor once, tie_weights adds its other name
(``alias.weight``), and the swap of that second name records the stand-in the first name had
just put into the same module as the "original". Restoring in the same order then writes the
real tensor back and overwrites it with the meta stand-in.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as _module_globals
from torch.nn.parameter import is_lazy

from ..errors import InputError

_GLOBAL_HOOKS = tuple(name for name in dir(_module_globals) if name.startswith("_global_")
                      and isinstance(getattr(_module_globals, name), dict))
_TENSOR_DICTS = ("_parameters", "_buffers")
_MAX_NESTING = 4  # how deep lists, tuples and dicts in plain attributes are searched for tensors
_CONTAINERS = (list, tuple, dict)  # searched for tensors (exactly these types, not an OrderedDict of hooks)


# The types of a tensor that cannot be lazy (UninitializedParameter and UninitializedBuffer are subclasses).
_EAGER = frozenset({torch.Tensor, nn.Parameter})


def refuse_uninferred(owned: dict[str, tuple[list[tuple[str, torch.Tensor]], list[torch.Tensor]]],
                      label: str) -> None:
    """Refuse a lazy module (nn.LazyLinear ...) that the forward did not call, so that its shapes
    could not be inferred. (One that was called inferred them on stand-ins, see ``guarded``.)"""
    for name, (params, buffers) in owned.items():
        if not params and not buffers:
            continue
        if all(map(_EAGER.__contains__, map(type, [t for _, t in params] + buffers))):
            continue  # the common case, told by exact type: no tensor of this module is lazy
        lazy = [n for n, t in params if is_lazy(t)] + (["buffers"] if any(is_lazy(b) for b in buffers) else [])
        if lazy:
            raise InputError(
                f"{label} has a lazy module that could not infer its shapes: {name or 'the root module'} "
                f"never ran in the forward pass, so its {', '.join(lazy)} are still uninitialized and cannot "
                "be counted. resnet-inspect does not initialize it on your model, since that would change the "
                "model (allocate the weights and turn the class into its non-lazy form). Run one forward pass "
                "that reaches it first, then inspect the model.")


def _stand_in(t: torch.Tensor, meta: bool, storages: dict[tuple[int, int], Any]) -> torch.Tensor:
    """An empty meta tensor like ``t``, or a copy with ``t``'s exact layout (called under ``torch.no_grad()``).

    The copy is made of its storage, once per storage, and viewed as ``t`` is: a stride-0
    expansion costs one element, not its full shape, and buffers that view one storage still do.
    """
    if is_lazy(t):  # a fresh uninitialized one: a lazy module's first forward materializes that instead
        return type(t)(requires_grad=t.requires_grad, device="meta" if meta else t.device, dtype=t.dtype)
    if meta or t.is_meta or t.layout != torch.strided or t.is_nested:
        # empty_strided, not empty_like: on meta the latter is a Python reference that imports sympy.
        copy = torch.empty_strided(t.size(), t.stride(), dtype=t.dtype, device="meta") if meta \
            else t.detach().clone()
    else:
        storage = t.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key not in storages:
            storages[key] = storage.clone()
        copy = torch.empty(0, dtype=t.dtype, device=t.device).set_(
            storages[key], t.storage_offset(), t.size(), t.stride())
    if type(t) is nn.Parameter or isinstance(t, nn.Parameter):  # the type first: Parameter's isinstance is Python
        return nn.Parameter(copy, requires_grad=t.requires_grad)
    return copy


def _has_tensor(value: Any, depth: int = 0) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if depth >= _MAX_NESTING:
        return False
    if type(value) in (list, tuple):
        return any(_has_tensor(v, depth + 1) for v in value)
    if type(value) is dict:
        return any(_has_tensor(v, depth + 1) for v in value.values())
    return False


def _substitute(value: Any, swap: Callable[[torch.Tensor], torch.Tensor], depth: int = 0) -> Any:
    """A new container of the same shape holding stand-ins instead of the tensors."""
    if isinstance(value, torch.Tensor):
        return swap(value)
    if depth >= _MAX_NESTING:
        return value
    if type(value) is list:
        return [_substitute(v, swap, depth + 1) for v in value]
    if type(value) is tuple:
        return tuple(_substitute(v, swap, depth + 1) for v in value)
    if type(value) is dict:
        return {k: _substitute(v, swap, depth + 1) for k, v in value.items()}
    return value


class _Saved:
    """One module's class, attribute dictionary and the contents of its mutable containers."""

    __slots__ = ("module", "cls", "attrs", "contents", "empty")

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.cls = type(module)
        self.attrs = dict(module.__dict__)
        # Most of a module's containers (its dozen hook dictionaries) are empty: those are only
        # emptied again, if the body filled them, without copying or comparing contents.
        self.contents: dict[str, Any] = {}
        self.empty: list[dict | list | set] = []
        for key, value in self.attrs.items():
            if isinstance(value, (dict, list, set)):
                if value:
                    self.contents[key] = _contents(value)
                else:
                    self.empty.append(value)

    def restore(self) -> None:
        module = self.module
        if type(module) is not self.cls:  # a lazy module turns itself into its non-lazy class
            module.__class__ = self.cls
        state = module.__dict__
        attrs = self.attrs
        if state.keys() != attrs.keys():
            for key in [k for k in state if k not in attrs]:
                del state[key]
        for key, value in attrs.items():
            if state.get(key, _MISSING) is not value:
                state[key] = value
        for key, saved in self.contents.items():
            _put_back(attrs[key], saved)
        for container in self.empty:
            if container:
                container.clear()


_MISSING = object()


def _contents(container: dict | list | set) -> Any:
    if isinstance(container, dict):
        return list(container.items())
    return list(container)


def _put_back(container: dict | list | set, saved: Any) -> None:
    """Restore a container's contents in place (its identity is what other code holds on to)."""
    if isinstance(container, dict):
        if len(container) == len(saved) and all(container.get(k, _MISSING) is v for k, v in saved):
            if list(container) == [k for k, _ in saved]:
                return
        container.clear()
        container.update(saved)
    elif isinstance(container, list):
        if len(container) != len(saved) or any(a is not b for a, b in zip(container, saved)):
            container[:] = saved
    elif set(map(id, container)) != set(map(id, saved)):
        container.clear()
        container.update(saved)


@contextmanager
def guarded(model: nn.Module, *, meta: bool) -> Iterator[Callable[[], None]]:
    """Run the body on stand-ins of the model's tensors; put back everything the body changed.

    ``meta=True`` gives parameters and buffers empty meta stand-ins (the meta trace allocates
    nothing); ``meta=False`` gives them copies (a real forward may update them in place).

    What it yields renews the stand-ins: everything is put back, then fresh stand-ins go in, as
    leaving and entering ``guarded`` again would do, without taking the snapshot a second time
    (the memory analysis runs inference, then a training step, each on stand-ins of its own).
    """
    modules = list(model.modules())  # each module once, however many names it has
    saved = [_Saved(m) for m in modules]
    hooks = {name: list(getattr(_module_globals, name).items()) for name in _GLOBAL_HOOKS}
    stand_ins: dict[int, torch.Tensor] = {}  # id(original) -> its stand-in, so ties stay ties
    storages: dict[tuple[int, int], Any] = {}  # copied storages, shared by the views of each

    def swap(t: torch.Tensor, for_state: bool = False) -> torch.Tensor:
        found = stand_ins.get(id(t))
        if found is None:
            found = stand_ins[id(t)] = _stand_in(t, meta and for_state, storages)
        return found

    def install() -> None:
        stand_ins.clear()
        storages.clear()
        with torch.no_grad():  # once for every stand-in (a grad-mode switch each cost a fifth of the guard)
            for entry in saved:  # parameters and buffers first: an attribute may refer to them (LSTM's _flat_weights)
                for key in _TENSOR_DICTS:
                    tensors = entry.module.__dict__.get(key)
                    if isinstance(tensors, dict):
                        for name, t in list(tensors.items()):
                            if isinstance(t, torch.Tensor):
                                tensors[name] = swap(t, True)
            for entry in saved:
                for key, value in entry.attrs.items():
                    if (type(value) in _CONTAINERS or isinstance(value, torch.Tensor)) and key not in _TENSOR_DICTS \
                            and _has_tensor(value):
                        entry.module.__dict__[key] = _substitute(value, swap)

    def restore() -> None:
        for entry in saved:
            entry.restore()
        for name, items in hooks.items():
            _put_back(getattr(_module_globals, name), items)

    def renew() -> None:
        restore()
        install()

    try:
        install()
        yield renew
    finally:
        restore()
