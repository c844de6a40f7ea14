"""Trace one forward pass with forward hooks and a TorchFunctionMode.

Module hooks give one record per module call (names, input and output shapes, params); a model
built here, which nobody else holds, has its modules' forwards wrapped instead (``Tracer.wrapped``). The
function mode sees every operator as it runs: the rule table (``ops.RULES``) counts it and
derives its analytic shape, and the operator's receptive field and weighted depth are carried
forward on the tensors it produces. Operators that a container calls directly (the residual
``out += identity``, maskrcnn-benchmark's functional ReLU and stem max pool, the FPN's
upsample-and-add) get records of their own, named ``parent:op``.

On the meta device no activation memory is allocated and no arithmetic runs, so the cost does
not depend on the input resolution.
"""
from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

from ..errors import InputError
from .opdesc import MeanOp, chain
from .ops import RULES, OpStats, adaptive_size, interpolate_size, op_name
from .records import LayerRecord

_INFO = "_resnet_inspect_info"
_META = torch.device("meta")
_META_SHAPES = {
    "batch_norm": lambda a: a["input"].shape,
    "adaptive_avg_pool2d": lambda a: (*a["input"].shape[:-2], *adaptive_size(a)),
    "linear": lambda a: (*a["input"].shape[:-1], a["weight"].shape[0]),  # features checked beforehand
    "interpolate": lambda a: (*a["input"].shape[:-2], *interpolate_size(a)),
    "mean": lambda a: _reduced_shape(a),
}


def _reduced_shape(a: dict[str, Any]) -> tuple[int, ...]:
    """Shape of ``x.mean(dim, keepdim)``."""
    x, dims = a["input"], a.get("dim")
    dims = range(x.dim()) if dims is None else [dims] if isinstance(dims, int) else dims
    reduced = {d % x.dim() for d in dims}
    if a.get("keepdim"):
        return tuple(1 if i in reduced else n for i, n in enumerate(x.shape))
    return tuple(n for i, n in enumerate(x.shape) if i not in reduced)


_ELEMENTWISE = frozenset({"add", "sub", "mul", "div"})
_ACTIVATIONS = frozenset({"relu", "relu6", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh", "hardswish",
                          "hardsigmoid"})
_WINDOWED = frozenset({"conv2d", "max_pool2d", "avg_pool2d"})
_META_SHORTCUTS = _ELEMENTWISE | _ACTIVATIONS | set(_META_SHAPES) | _WINDOWED


def _broadcast(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """NumPy broadcasting of shapes, as torch.broadcast_shapes does (which imports sympy)."""
    ndim = max(len(s) for s in shapes)
    result = []
    for dims in zip(*((1,) * (ndim - len(s)) + s for s in shapes)):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            raise RuntimeError(f"The shapes {', '.join(map(str, shapes))} cannot be broadcast together")
        result.append(sizes.pop() if sizes else 1)
    return tuple(result)


def _empty_batch_window(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], x: torch.Tensor) -> Any:
    """Run a conv or pool on CPU with an empty batch and uninitialised stand-ins for its weights.

    ATen then checks the shapes exactly as it would for real (a window that does not fit raises
    the same error), without any arithmetic, and independently of the formula in ``shapes.py``.
    The meta kernel would import sympy (about 0.4 s); the stand-ins cost a malloc each.
    """
    if x.dim() != 4:
        return func(*args, **kwargs)

    def stand_in(value: Any) -> Any:
        if value is x:
            return torch.empty((0, *x.shape[1:]), dtype=x.dtype)
        if isinstance(value, torch.Tensor):
            return torch.empty(value.shape, dtype=value.dtype)
        return value

    out = func(*[stand_in(a) for a in args], **{k: stand_in(v) for k, v in kwargs.items()})
    if isinstance(out, tuple):  # max_pool2d(return_indices=True)
        return tuple(torch.empty((x.shape[0], *o.shape[1:]), dtype=o.dtype, device=_META) for o in out)
    return torch.empty((x.shape[0], *out.shape[1:]), dtype=out.dtype, device=_META)


def _in_place(func: Any, bound: dict[str, Any]) -> bool:
    name = getattr(func, "__name__", "")
    return bool(bound.get("inplace")) or (name.endswith("_") and not name.startswith("__")) or name.startswith("__i")


def _meta_shortcut(name: str, func: Any, bound: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The output of an operator on meta tensors, without running its meta kernel.

    Convs and pools get their shapes from ATen on an empty CPU batch (``_empty_batch_window``).
    For the other operators torch's meta kernels are Python decompositions that import
    torch._dynamo (about 1.4 s on first use), yet the output shape is fixed by definition:
    element-wise ops give the broadcast shape (an in-place op returns its own tensor),
    activations and batch_norm keep the input's, an adaptive pool has its output_size, a linear
    layer its out_features (once the rule has checked the in_features), interpolate its size or
    ⌊input × scale⌋. No formula check is lost: none of these has one, and the real trace, which
    runs torch's kernels, gives identical records (tests/test_engine.py)."""
    x = bound["input"]
    if name in _WINDOWED:
        return _empty_batch_window(func, args, kwargs, x)
    if name in _META_SHAPES:
        return torch.empty(_META_SHAPES[name](bound), dtype=x.dtype, device=_META)
    if name in _ACTIVATIONS:
        return x if _in_place(func, bound) else torch.empty(x.shape, dtype=x.dtype, device=_META)
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
    shape = _broadcast(*(tuple(t.shape) for t in tensors))
    if _in_place(func, bound):
        if tuple(shape) != tuple(x.shape):
            raise RuntimeError(f"output with shape {list(x.shape)} doesn't match the broadcast shape {list(shape)}")
        return x
    dtype = torch.result_type(*args[:2]) if len(args) >= 2 else x.dtype
    return torch.empty(shape, dtype=dtype, device=_META)


# Operators whose counting is memoised (see _Known): the ones a deep net repeats, whose rules
# read only the shapes, dtypes and settings of their arguments.
_MEMOISED = frozenset({"conv2d", "max_pool2d", "avg_pool2d", "batch_norm", "linear", "adaptive_avg_pool2d"})
_KNOWN_LIMIT = 4096


def _out_key(out: Any) -> tuple[Any, ...] | None:
    """What a rule reads of an operator's output: its shape (and dtype); None for anything but a tensor."""
    return (tuple(out.shape), out.dtype) if type(out) is torch.Tensor else None


class _Known:
    """A counting rule's results for one operator signature, kept for the next call with it.

    A rule is a pure function of its arguments' shapes, dtypes and settings (``ops.RULES``), and
    the shape ATen gives a window on an empty batch (``_empty_batch_window``) is a pure function
    of the same: ResNet-152's 155 convolutions have 23 signatures (tests/test_engine.py). So the
    second call of a signature takes the stats the first computed, and on meta its output shape. Every call still
    runs through the trace, gets its record and carries its receptive field; only the arithmetic
    of the rule is not redone. Stats are never changed once made (``Tracer._account`` reads them).
    """

    table: dict[tuple[Any, ...], _Known] = {}
    __slots__ = ("before", "after", "window")

    def __init__(self, before: OpStats) -> None:
        self.before = before
        self.after: dict[Any, OpStats] = {}
        self.window: tuple[tuple[int, ...], torch.dtype] | None = None  # a window's output (C, H, W) and dtype

    @classmethod
    def of(cls, name: str, bound: dict[str, Any]) -> _Known | None:
        """The entry for this call's signature (made on first sight); None where it cannot be keyed."""
        if name not in _MEMOISED:
            return None
        key = _signature(name, bound)
        if key is None:
            return None
        known = cls.table.get(key)
        if known is None:
            if len(cls.table) >= _KNOWN_LIMIT:
                cls.table.clear()
            known = cls.table[key] = cls(RULES[name].count(bound, None))
        return known

    def learn(self, out: Any, out_key: Any, after: OpStats, name: str) -> None:
        """Keep the stats of this output, and a window's output shape as ATen gave it."""
        if out_key is None:
            return
        self.after[out_key] = after
        if name in _WINDOWED and out.dim() == 4:
            self.window = (tuple(out.shape[1:]), out.dtype)


def _signature(name: str, bound: dict[str, Any]) -> tuple[Any, ...] | None:
    """The operator's name and everything its rule reads of the bound arguments: each tensor's shape,
    dtype and device type, each setting by type and value. None for an argument that cannot be keyed."""
    parts: list[Any] = [name]
    for key, value in bound.items():
        kind = type(value)
        if kind is torch.Tensor or kind is nn.Parameter:
            parts.append((key, value.shape, value.dtype, "meta" if value.is_meta else value.device.type))
        elif kind in _KEYED:
            parts.append((key, kind, value))
        elif kind is tuple or kind is list:
            if not all(map(_KEYED.__contains__, map(type, value))):
                return None
            parts.append((key, kind, tuple(value)))
        else:
            return None
    return tuple(parts)


_KEYED = frozenset({int, float, bool, str, type(None)})
_OP_NAMES: dict[Any, str] = {}  # op_name() of the functions the mode has seen


def _name_of(func: Any) -> str:
    """``op_name(func)``, kept for the next call of the same function (a net calls a handful, thousands of times)."""
    try:
        return _OP_NAMES[func]
    except KeyError:
        if len(_OP_NAMES) >= _KNOWN_LIMIT:
            _OP_NAMES.clear()
        name = _OP_NAMES[func] = op_name(func)
        return name
    except TypeError:  # a callable that cannot be a key
        return op_name(func)


class PathNode(NamedTuple):
    """A weighted layer on the longest path to a tensor (a linked list back to the input)."""

    record: int
    previous: PathNode | None


class TensorInfo(NamedTuple):
    """Receptive field (size, jump, start per dimension) and weighted depth of a tensor.

    Immutable; a named tuple rather than a frozen dataclass because the trace makes one per
    operator, and a frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``.
    """

    rf: tuple[float, float] = (1, 1)
    jump: tuple[float, float] = (1, 1)
    start: tuple[float, float] = (0.5, 0.5)
    depth: int = 0
    path: PathNode | None = None
    producer: int | None = None  # index of the record that produced the tensor
    global_field: bool = False  # attention ran on the way: every position sees the whole input


class InputTooSmall(InputError):
    """A window (conv or pool) no longer fits: some output dimension would be 0 or less."""

    def __init__(self, message: str, record: LayerRecord) -> None:
        super().__init__(message)
        self.record = record


# Operators whose output size depends on the values (torch raises on meta tensors): the meta trace
# stops at the first one (a detector's box decoding, torchvision's batched NMS).
_DATA_DEPENDENT = frozenset({"nonzero", "argwhere", "masked_select", "unique", "unique_consecutive",
                             "repeat_interleave", "bincount", "item", "tolist", "bool", "int", "float", "index",
                             "where", "getitem", "setitem", "masked_scatter", "histc", "multinomial"})


class DataDependentStop(Exception):
    """The meta trace reached an operator whose output size depends on values."""

    def __init__(self, op: str, record: LayerRecord | None, reason: str, reached: list[torch.Tensor]) -> None:
        super().__init__(f"{op} at {record.name if record else 'the root module'}: {reason}")
        self.op, self.record, self.reason = op, record, reason
        self.reached = reached  # the traced tensors the operator was given


def _is_data_dependent(name: str, exc: Exception, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether an operator failed on meta tensors because its output needs the values."""
    if not any(t.is_meta for t in _operands(args, kwargs)):
        return False
    text = str(exc)
    return name in _DATA_DEPENDENT and (
        isinstance(exc, NotImplementedError) or "meta" in text.lower() or "data-dependent" in text
        or "cannot be converted to Scalar" in text)


class TraceBug(RuntimeError):
    """A bug in resnet-inspect's own bookkeeping, never blamed on the user's model."""


class ForwardFailed(InputError):
    """The model's forward raised: the message names the layer that failed and what reached it."""

    def __init__(self, message: str, records: list[LayerRecord], failing: LayerRecord | None) -> None:
        super().__init__(message)
        self.records = records
        self.failing = failing


def _tensors(value: Any) -> list[torch.Tensor]:
    """The tensors in a (nested) argument structure, in order.

    Runs several times for every operator, so the common cases (a tensor; a tuple or dict of
    tensors and plain numbers) take one pass without a stack, and plain numbers, strings and
    None are passed over by their exact type before any isinstance check.
    """
    if isinstance(value, _TENSOR):
        return [value]
    found: list[torch.Tensor] = []
    _collect(value, found)
    return found


_TENSOR = torch.Tensor
_ATOMS = frozenset({int, float, bool, str, type(None), torch.dtype, torch.device, torch.Size})


def _operands(args: tuple[Any, ...], kwargs: dict[str, Any] | None) -> list[torch.Tensor]:
    """The tensors among an operator's (or a module's) arguments, positional first."""
    found: list[torch.Tensor] = []
    _collect(args, found)
    if kwargs:
        _collect(kwargs, found)
    return found


def _collect(value: Any, found: list[torch.Tensor]) -> None:
    """Append the tensors in ``value`` (a list, tuple or dict, nested to any depth) to ``found``."""
    kind = type(value)
    if kind is tuple or kind is list:
        items = value
    elif kind is dict:
        items = value.values()
    elif isinstance(value, (list, tuple)):
        items = value
    elif isinstance(value, dict):
        items = value.values()
    else:
        return
    for item in items:
        if type(item) in _ATOMS:
            continue
        if isinstance(item, _TENSOR):
            found.append(item)
        else:
            _collect(item, found)


def _info(t: torch.Tensor) -> TensorInfo | None:
    return t.__dict__.get(_INFO) if hasattr(t, "__dict__") else None


_JOINS = frozenset({"cat", "concat", "concatenate", "stack", "hstack", "vstack", "dstack", "column_stack"})


def _combine(pairs: list[tuple[torch.Tensor, TensorInfo]], join: bool = False) -> TensorInfo:
    """Several inputs (a residual add, an FPN sum, a concatenation): the widest field and the
    longest path win.

    Every operand of a concatenation (``join``) competes, whatever its size: a DenseNet layer's
    32 new channels are deeper than the block input they are joined to (Huang et al. 2017 count
    DenseNet-121's depth along them). Of an element-wise op only full-size operands compete. A
    broadcast operand, such as a squeeze-and-excitation gate of shape (N, C, 1, 1), rescales
    channels: it is a side branch that neither moves the window nor adds to the depth
    (SE-ResNet-50 is still 50 layers deep).
    """
    if len(pairs) == 1:
        return pairs[0][1]
    largest = max(t.numel() for t, _ in pairs)
    infos = [i for t, i in pairs if join or t.numel() == largest]
    widest = max(infos, key=lambda i: i.rf[0] * i.rf[1])
    deepest = max(infos, key=lambda i: i.depth)
    # The sum lives on the finest grid among its operands: an FPN level has its lateral's stride
    # even where the upsampled top-down path could not be measured (1×1 maps at a tiny input).
    jump = (min(i.jump[0] for i in infos), min(i.jump[1] for i in infos))
    return TensorInfo(widest.rf, jump, widest.start, deepest.depth, deepest.path, deepest.producer,
                      any(i.global_field for i in infos))


def _propagate(info: TensorInfo, stats: OpStats, record_index: int) -> TensorInfo:
    if stats.windows is None and stats.upsample is None and not stats.weighted:  # no window, no new layer
        return TensorInfo(info.rf, info.jump, info.start, info.depth, info.path, record_index,
                          info.global_field or stats.global_field)
    rf, jump, start = list(info.rf), list(info.jump), list(info.start)
    if stats.windows is not None:
        for dim, w in enumerate(stats.windows):
            k = w.effective_kernel
            rf[dim] = rf[dim] + (k - 1) * jump[dim]
            start[dim] = start[dim] + ((k - 1) / 2 - w.padding) * jump[dim]
            jump[dim] = jump[dim] * w.stride
    if stats.upsample is not None:
        jump = [j / s for j, s in zip(jump, stats.upsample)]
    depth, path = info.depth, info.path
    if stats.weighted:
        depth, path = depth + 1, PathNode(record_index, path)
    return TensorInfo((rf[0], rf[1]), (jump[0], jump[1]), (start[0], start[1]), depth, path, record_index,
                      info.global_field or stats.global_field)


_NOTHING: tuple[list[Any], list[Any]] = ([], [])


def _qualified(module: str, parameter: str) -> str:
    return f"{module}.{parameter}" if module else parameter


def _shapes(value: Any) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in _tensors(value)]  # a torch.Size holds ints


@dataclass(slots=True)
class _Frame:
    module: nn.Module
    record: LayerRecord
    leaf: bool
    op_counts: dict[str, int] | None  # a container's functional calls by operator (None for a leaf)
    # The tensors of the last operator with an analytic shape, and whether it was a reduction:
    # the shape check applies to the output that operator defines (see Tracer._check_target).
    shaped: tuple[list[torch.Tensor], bool] | None = None
    given: tuple[torch.Tensor, ...] = ()  # a leaf's input tensors as its call began


class Tracer(TorchFunctionMode):
    """Holds the hooks and the function mode for one forward pass."""

    def __init__(self, model: nn.Module, owned: dict[str, tuple[list[tuple[str, torch.Tensor]], list[torch.Tensor]]]):
        super().__init__()
        self.model = model
        self.names: dict[nn.Module, str] = {}
        for name, module in model.named_modules():
            self.names.setdefault(module, name)
        self.owned = owned  # module name -> (direct parameters, direct buffers) of the real model
        self.records: list[LayerRecord] = []
        self.stack: list[_Frame] = []
        self.calls: dict[str, int] = defaultdict(int)
        self.claimed: dict[int, str] = {}  # id(parameter) -> record name that counted it
        self.claimed_buffers: set[int] = set()
        self.first_claims: dict[int, tuple[LayerRecord, str]] = {}  # id(parameter) -> (record, its name there)
        self.running: LayerRecord | None = None
        self.counted: set[int] = set()  # records that an operator with a counting rule reached
        # Modules never called whose weights an operator used directly (nn.MultiheadAttention
        # passes out_proj.weight to F.multi_head_attention_forward): they ran, inside their parent.
        self.used_modules: set[str] = set()
        self.stop: Any = None  # a records.TraceStop when the meta trace ended at a data-dependent operator
        self._param_owner: dict[int, tuple[str, str]] | None = None

    # -- hooks ---------------------------------------------------------------------------------
    @contextmanager
    def hooks(self) -> Iterator[None]:
        """Register every hook in one place; remove them all, whatever the forward does.

        A hook's id only has to be a key that no table holds yet, so one fresh id per kind of hook
        serves every module: the tables get the entries that
        ``register_forward_pre_hook(..., with_kwargs=True)`` and ``register_forward_hook`` would
        add, without a handle object and two weak references per module (a third of the setup of
        a deep net's trace). A torch without those tables gets the public calls."""
        pre, post = RemovableHandle(OrderedDict()).id, RemovableHandle(OrderedDict()).id  # fresh ids, torch's counter
        pre_hook, post_hook = self._pre_hook, self._post_hook
        added: list[nn.Module] = []
        handles = []
        try:
            for module in self.names:
                if _has_hook_tables(module):
                    added.append(module)
                    module._forward_pre_hooks[pre] = pre_hook
                    module._forward_pre_hooks_with_kwargs[pre] = True
                    module._forward_hooks[post] = post_hook
                    module._forward_hooks_with_kwargs[post] = True
                else:
                    handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
                    handles.append(module.register_forward_hook(post_hook, with_kwargs=True))
            yield
        finally:
            for module in added:
                for table, key in ((module._forward_pre_hooks, pre), (module._forward_pre_hooks_with_kwargs, pre),
                                   (module._forward_hooks, post), (module._forward_hooks_with_kwargs, post)):
                    table.pop(key, None)
            for handle in handles:
                handle.remove()

    @contextmanager
    def wrapped(self) -> Iterator[None]:
        """``hooks()`` for a model built here, which nobody else holds and none of whose modules has a
        hook or a forward of its own: each module's ``forward`` is, for the trace, a function that
        calls the hooks around the class's forward. torch then takes its path for a module without
        hooks, which costs a fifth of the one with them (a tenth of an 800-block trace); the records
        are those of ``hooks()`` (tests/test_engine.py). Anything else gets ``hooks()``."""
        if not all(_plain_module(m) for m in self.names) or _module_globals_hooked():
            with self.hooks():
                yield
            return
        wrapped: list[dict[str, Any]] = []
        try:
            for module in self.names:
                state = module.__dict__
                state["forward"] = self._traced_forward(module, type(module).forward.__get__(module))
                wrapped.append(state)
            yield
        finally:
            for state in wrapped:
                del state["forward"]

    def _traced_forward(self, module: nn.Module, forward: Any) -> Any:
        pre, post = self._pre_hook, self._post_hook

        def traced(*args: Any, **kwargs: Any) -> Any:
            pre(module, args, kwargs)
            out = forward(*args, **kwargs)
            post(module, args, kwargs, out)
            return out

        return traced

    def _new_record(self, name: str, type_: str, kind: str, leaf: bool, inputs: list[torch.Tensor]) -> LayerRecord:
        """A record for a call whose input tensors are ``inputs``."""
        stack = self.stack
        records = self.records
        rec = LayerRecord(len(records), name, type_, kind, len(stack), stack[-1].record.name if stack else None, leaf,
                          0, [tuple(t.shape) for t in inputs])
        for t in inputs:
            info = t.__dict__.get(_INFO)
            if info is not None and info.producer is not None:
                rec.input_from.append(records[info.producer].name)
        records.append(rec)
        return rec

    # The hooks only read shapes, sizes and flags of the tensors they are given: that needs no
    # torch-function dispatch, which would call this mode's __torch_function__ for every
    # ``t.shape`` and ``p.numel()`` (three quarters of its calls).
    def _pre_hook(self, module: nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
        with torch._C.DisableTorchFunction():
            kind = type(module).__name__
            name = self.names.get(module, kind)
            leaf = not module._modules or next(module.children(), None) is None
            # Shapes are read here, before an in-place op (ReLU(inplace=True)) can touch the input;
            # tensors passed by keyword count as inputs too.
            if kwargs:
                inputs = _operands(args, kwargs)
            elif len(args) == 1 and isinstance(args[0], _TENSOR):  # the common call: one tensor
                inputs = [args[0]]
            else:
                inputs = _operands(args, None)
            rec = self._new_record(name, kind, "module", leaf, inputs)
            calls = self.calls
            rec.call = call = calls[name]
            calls[name] = call + 1
            if call == 0:
                self._claim(rec, name)
            self.stack.append(_Frame(module, rec, leaf, None if leaf else defaultdict(int), None,
                                     tuple(inputs) if leaf else ()))

    def _claim(self, rec: LayerRecord, name: str) -> None:
        """Count a module's own parameters at its first call; tied ones only where first seen."""
        params, buffers = self.owned.get(name, _NOTHING)
        claimed = self.claimed
        counted = trainable = 0
        for pname, p in params:
            key = id(p)
            owner = claimed.get(key)
            if owner is not None:
                # Both ends say so: the record that counted the tensor, and this one.
                first, first_pname = self.first_claims.get(key, (None, pname))
                full = _qualified(owner, first_pname)
                rec.shared.append(f"{pname} (shared with {full}, counted there)")
                if first is not None:
                    first.shared.append(f"{first_pname} (shared with {_qualified(name, pname)}, counted here)")
                continue
            claimed[key] = name
            self.first_claims[key] = (rec, pname)
            n = p.numel()
            counted += n
            if p.requires_grad:
                trainable += n
        rec.params += counted
        rec.trainable_params += trainable
        seen = self.claimed_buffers
        for b in buffers:
            key = id(b)
            if key not in seen:
                seen.add(key)
                rec.buffers += b.numel()

    def _claim_operands(self, rec: LayerRecord, operands: list[torch.Tensor]) -> None:
        """Count, at the operator's record, the weights of a module that is not called but whose
        parameters the operator takes (an attention's out_proj), and note that module as used."""
        if self._param_owner is None:
            self._param_owner = {id(p): (name, pname) for name, (params, _) in self.owned.items()
                                 for pname, p in params}
        for t in operands:
            owner = self._param_owner.get(id(t))
            if owner is None or id(t) in self.claimed:
                continue
            module, pname = owner
            self.claimed[id(t)] = rec.name
            self.first_claims[id(t)] = (rec, _qualified(module, pname))
            rec.params += t.numel()
            rec.trainable_params += t.numel() if t.requires_grad else 0
            if self.calls.get(module, 0) == 0:
                self.used_modules.add(module)

    def _post_hook(self, module: nn.Module, args: Any, kwargs: dict[str, Any], output: Any) -> None:
        with torch._C.DisableTorchFunction():  # see the note above _pre_hook
            stack = self.stack
            if not stack or stack[-1].module is not module:
                return
            frame = stack.pop()
            rec = frame.record
            outs = [output] if isinstance(output, _TENSOR) else _tensors(output)
            rec.output_shapes = [tuple(o.shape) for o in outs]
            leaf, given = frame.leaf, frame.given
            ins = list(given) if leaf else _operands(args, kwargs)
            if leaf and len(outs) > 1:
                new = [o for o in outs if not any(o is g for g in given)]
                if new and len(new) < len(outs):
                    # It returns some of its inputs unchanged beside new tensors: torchvision's
                    # LastLevelMaxPool appends P6 to the list of levels it was given. Its own output is
                    # the new one (P6, read from P5): its shape comes first, its field is the record's.
                    rec.output_shapes = _shapes(new) + [s for o, s in zip(outs, rec.output_shapes)
                                                        if not any(o is n for n in new)]
                    outs, ins = new, [i for i in ins if not any(i is n for n in new)]
            if len(outs) == 1 and len(ins) == 1:  # the common call: one tensor in, one out
                inplace = outs[0] is ins[0]
            else:
                inplace = bool(outs) and any(o is i for o in outs for i in ins)
            rec.inplace = inplace
            if leaf and not inplace:
                rec.output_bytes = sum([o.numel() * o.element_size() for o in outs])
                # A leaf made of shape plumbing only (Flatten, Dropout) still produced its output:
                # later layers should name it as their input, not the layer before it.
                index = rec.index
                for t in outs:
                    info = t.__dict__.get(_INFO)
                    if info is not None and info.producer != index and all([t is not i for i in ins]):
                        t.__dict__[_INFO] = info._replace(producer=index)
            if frame.shaped is not None:
                self._check_target(frame, outs)
            self._set_rf(rec, outs)

    @staticmethod
    def _check_target(frame: _Frame, outs: list[torch.Tensor]) -> None:
        """Apply a leaf's shape check to the output its shaped operator defines.

        torchvision's LastLevelMaxPool returns every level with its pooled one last: that one is
        checked. A reduction inside a normalisation (a filter response norm's mean of x² over H
        and W) defines no output of the layer: no check. Otherwise (a conv followed by an
        activation) the first output is checked, as before.
        """
        if frame.shaped is None or frame.record.analytic_shape is None:
            return
        produced, reduction = frame.shaped
        rec = frame.record
        if len(outs) == 1 and len(produced) == 1:
            target = outs[0] if outs[0] is produced[0] else None
        else:
            target = next((o for o in outs if any(o is p for p in produced)), None)
        if target is not None:
            rec.shape_ok = tuple(rec.analytic_shape) == tuple(map(int, target.shape))
        elif reduction:
            rec.analytic_shape, rec.working = None, []

    def _set_rf(self, rec: LayerRecord, outs: list[torch.Tensor]) -> None:
        if len(outs) == 1:
            info = outs[0].__dict__.get(_INFO)
        else:
            info = next((i for i in map(_info, outs) if i is not None), None)
        if info is not None:
            rec.receptive_field = (int(info.rf[0]), int(info.rf[1]))
            rec.jump = info.jump
            rec.start = info.start
            rec.path_depth = info.depth
            rec.global_field = info.global_field

    # -- operators -----------------------------------------------------------------------------
    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        operands = _operands(args, kwargs)
        infos = [(t, i) for t in operands if (i := t.__dict__.get(_INFO)) is not None]
        if not infos:
            return self._run(func, args, kwargs)
        name = _name_of(func)
        rule = RULES.get(name)
        if rule is None:  # shape plumbing (view, flatten, cat ...): carry the field forward, count nothing
            out = self._run(func, args, kwargs, name)
            combined = _combine(infos, join=name in _JOINS)
            for t in _tensors(out):
                t.__dict__[_INFO] = combined
            return out
        try:
            bound = rule.bind(args, kwargs)
            rec = self._owner(name, [t for t, _ in infos])
            self.counted.add(rec.index)
            self._claim_operands(rec, operands)
            known = _Known.of(name, bound)
            before = known.before if known is not None else rule.count(bound, None)
        except Exception as exc:
            raise TraceBug(f"resnet-inspect failed to count {name}: {exc!r}") from exc
        self._check_fits(rec, before)
        x = bound.get("input")
        self.running = rec  # if the operator raises, this is the layer that failed
        if known is not None and known.window is not None and x.is_meta:  # type: ignore[union-attr]
            out = torch.empty((x.shape[0], *known.window[0]), dtype=known.window[1], device=_META)  # type: ignore[union-attr]
        elif isinstance(x, torch.Tensor) and x.is_meta and name in _META_SHORTCUTS:
            out = _meta_shortcut(name, func, bound, args, kwargs)
        else:
            out = self._run(func, args, kwargs, name)
        self.running = None
        try:
            after = known.after.get(out_key := _out_key(out)) if known is not None else None
            if after is None:
                after = rule.count(bound, out)
                if known is not None:
                    known.learn(out, out_key, after, name)
            self._account(rec, after, infos, args, out)
        except Exception as exc:
            raise TraceBug(f"resnet-inspect failed to count {name}: {exc!r}") from exc
        return out

    def _run(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], name: str | None = None) -> Any:
        """Run the operator; on meta tensors, one whose output size needs the values stops the trace."""
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            name = name or op_name(func)
            if _is_data_dependent(name, exc, args, kwargs):
                layer = self.stack[-1].record if self.stack else None
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                reached = [t for t in _operands(args, kwargs) if _info(t) is not None]
                raise DataDependentStop(name, layer, reason, reached) from exc
            raise

    def _owner(self, name: str, activations: list[torch.Tensor]) -> LayerRecord:
        """The record an operator's cost goes to: its leaf module, or a new function record whose
        inputs are the operator's activation operands (not its weights)."""
        frame = self.stack[-1] if self.stack else None
        if frame is not None and frame.leaf:
            rec = frame.record
        else:
            parent = frame.record.name if frame else ""
            counts = frame.op_counts if frame is not None and frame.op_counts is not None else defaultdict(int)
            suffix = f"#{counts[name]}" if counts[name] else ""
            counts[name] += 1
            rec = self._new_record(f"{parent}:{name}{suffix}", f"F.{name}", "function", True, activations)
        return rec

    def _account(self, rec: LayerRecord, stats: OpStats, infos: list[tuple[torch.Tensor, TensorInfo]],
                 args: tuple[Any, ...], out: Any) -> None:
        rec.macs += stats.macs
        rec.other_ops += stats.other_ops
        if stats.weighted:
            rec.weighted = True
        outs = [out] if isinstance(out, _TENSOR) else _tensors(out)
        module = rec.kind == "module"
        if stats.op is not None:  # a leaf that runs several (option A: subsample, then pad) keeps them all
            rec.op = chain(rec.op, stats.op) if module else stats.op
        if stats.analytic_shape is not None:
            # A leaf that runs several shaped ops (option A: subsample, then pad) is checked
            # against the last one; the working of each is kept.
            rec.analytic_shape = tuple(map(int, stats.analytic_shape))
            rec.working = rec.working + stats.working if module else list(stats.working)
            stack = self.stack
            if module and stack and stack[-1].record is rec:
                stack[-1].shaped = (outs, isinstance(stats.op, MeanOp))
        index, read_from = rec.index, rec.read_from
        for _, info in infos:
            producer = info.producer
            if producer is not None and producer != index and producer not in read_from:
                read_from.append(producer)
        new = _propagate(infos[0][1] if len(infos) == 1 else _combine(infos), stats, index)
        for t in outs:
            t.__dict__[_INFO] = new
        if rec.kind == "function":
            rec.output_shapes = [tuple(o.shape) for o in outs]
            ins = _tensors(args)
            rec.inplace = any(o is i for o in outs for i in ins)
            if not rec.inplace:
                rec.output_bytes = sum(o.numel() * o.element_size() for o in outs)
            self._set_rf(rec, outs)

    def _check_fits(self, rec: LayerRecord, stats: OpStats) -> None:
        shape = stats.analytic_shape
        if stats.invalid is None and (shape is None or stats.windows is None or min(shape[-2:]) > 0):
            return
        where = f"{rec.name or 'the root module'} ({rec.type})"
        if stats.invalid is not None:
            raise InputTooSmall(f"{where} cannot take its input: {stats.invalid}.", rec)
        dims = [w for w, size in zip(stats.working, shape[-2:]) if size <= 0]
        reached = "×".join(map(str, rec.input_shapes[0])) if rec.input_shapes else "no tensor"
        raise InputTooSmall(f"The input is too small: at {where}, whose input is {reached}, the window no longer "
                            f"fits: {'; '.join(dims)}.", rec)


_TABLE_TYPES = (dict, OrderedDict)


def _has_hook_tables(module: nn.Module) -> bool:
    """Whether the module keeps its forward hooks in the dicts ``Tracer.hooks`` writes to directly, as
    every ``nn.Module`` of torch 2 does."""
    state = module.__dict__
    return (type(state.get("_forward_pre_hooks")) in _TABLE_TYPES
            and type(state.get("_forward_pre_hooks_with_kwargs")) in _TABLE_TYPES
            and type(state.get("_forward_hooks")) in _TABLE_TYPES
            and type(state.get("_forward_hooks_with_kwargs")) in _TABLE_TYPES)


def _plain_module(module: nn.Module) -> bool:
    """No forward of the instance's own and no hook of any kind: its calls take torch's fast path."""
    state = module.__dict__
    return "forward" not in state and not (
        state.get("_forward_pre_hooks") or state.get("_forward_hooks") or state.get("_backward_hooks")
        or state.get("_backward_pre_hooks"))


def _module_globals_hooked() -> bool:
    """A hook registered for every module (``register_module_forward_hook`` and the like)."""
    from torch.nn.modules import module as torch_module

    return bool(torch_module._global_forward_pre_hooks or torch_module._global_forward_hooks
                or torch_module._global_backward_pre_hooks or torch_module._global_backward_hooks)


def mark_input(t: torch.Tensor) -> None:
    t.__dict__[_INFO] = TensorInfo()


def tensor_info(t: torch.Tensor) -> TensorInfo | None:
    return _info(t)
