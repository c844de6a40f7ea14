"""Watch every tensor a run on the meta device allocates, and when it is released.

A ``TorchDispatchMode`` sits below autograd, so it sees the forward's operators, the backward's
(autograd runs them through the same dispatcher) and the optimizer's. Every output whose storage
is new is an allocation of ``storage.nbytes()`` bytes, as the caching allocator would be asked
for; the callback of a weak reference to the storage records its release at the moment its last
reference dies (torch keeps one Python object per storage, so the callback runs when the storage
itself is freed, not when a temporary handle is). Views and in-place results share a storage that is
already counted, or one the caller owns (weights, the input), and allocate nothing.

The events are kept as a log, so the live set at the peak is replayed afterwards instead of
being copied at every new high.
"""
from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


@dataclass(slots=True)
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


# Arguments that hold no tensor, skipped without asking torch's pytree (an operator's ints, floats,
# dtypes, devices, layouts and memory formats).
_NO_TENSORS = frozenset({type(None), bool, int, float, complex, str, torch.dtype, torch.device, torch.layout,
                         torch.memory_format})


def tensors_in(value: Any, found: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """The tensors in an operator's arguments or results, in the order of ``tree_leaves``: a tensor,
    lists, tuples and dicts of them walked here, anything else (a named tuple, a registered pytree
    node) handed to ``tree_leaves``. This runs for every operator, ~3,700 times for ResNet-152's
    inference and training step, where pytree's generic walk was a third of the cost."""
    if found is None:
        found = []
    kind = type(value)
    if kind in _NO_TENSORS:
        return found
    if isinstance(value, torch.Tensor):
        found.append(value)
    elif kind is list or kind is tuple:
        for item in value:
            if type(item) not in _NO_TENSORS:
                tensors_in(item, found)
    elif kind is dict:
        for item in value.values():
            tensors_in(item, found)
    else:
        found.extend(t for t in tree_leaves(value) if isinstance(t, torch.Tensor))
    return found


def _storage(t: torch.Tensor) -> Any:
    try:
        return t.untyped_storage()
    except (RuntimeError, NotImplementedError):  # a tensor subclass without storage
        return None


def _empty_like(t: torch.Tensor) -> torch.Tensor:
    """``torch.empty_like`` on meta, without its Python reference (which imports sympy)."""
    return torch.empty_strided(t.size(), t.stride(), dtype=t.dtype, device="meta")


def _batch_norm(x: torch.Tensor, weight: Any, bias: Any, running_mean: Any, running_var: Any, training: bool,
                *rest: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``native_batch_norm`` on meta tensors, as the CPU kernel allocates: the output like the input,
    and the saved mean and inverse std per channel (empty in eval mode), in float32 for a reduced
    precision input. torch's meta kernel for it is a Python decomposition that imports torch._dynamo
    and sympy (seconds, once), and that gives (C,) statistics in eval mode where CPU and CUDA give none."""
    stat_dtype = torch.float32 if x.dtype in (torch.bfloat16, torch.float16) else x.dtype
    size = x.shape[1] if training else 0
    stats = [torch.empty((size,), dtype=stat_dtype, device="meta") for _ in range(2)]
    return _empty_like(x), stats[0], stats[1]


def _mean(x: torch.Tensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> torch.Tensor:
    """``mean.dim`` on meta tensors (its meta kernel is a Python reference that imports torch._dynamo)."""
    dims = range(x.dim()) if dim is None or dim == [] else [dim] if isinstance(dim, int) else dim
    reduced = {d % x.dim() for d in dims}
    shape = [1 if i in reduced else n for i, n in enumerate(x.shape)] if keepdim else \
        [n for i, n in enumerate(x.shape) if i not in reduced]
    return torch.empty(shape, dtype=dtype or x.dtype, device="meta")


def _addmm(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *rest: Any, **kwargs: Any) -> torch.Tensor:
    """``addmm`` on meta tensors (a Python decomposition too): an (n, m) result."""
    return torch.empty((a.shape[0], b.shape[1]), dtype=a.dtype, device="meta")


def _broadcast(a: torch.Tensor, b: Any) -> tuple[int, ...]:
    shape = tuple(a.shape)
    if isinstance(b, torch.Tensor):
        ndim = max(len(shape), b.dim())
        pairs = zip((1,) * (ndim - len(shape)) + shape, (1,) * (ndim - b.dim()) + tuple(b.shape))
        shape = tuple(y if x == 1 else x for x, y in pairs)
    return shape


def _elementwise(a: torch.Tensor, b: Any, *rest: Any, **kwargs: Any) -> torch.Tensor:
    """``add``, ``sub``, ``mul`` out of place (Python references on meta): the broadcast shape and
    the promoted dtype."""
    return torch.empty(_broadcast(a, b), dtype=torch.result_type(a, b), device="meta")


def _div(a: torch.Tensor, b: Any, **kwargs: Any) -> torch.Tensor:
    """``div`` on meta tensors (a Python reference): the broadcast shape, true division's dtype."""
    shape = _broadcast(a, b)
    dtype = torch.result_type(a, b)
    if not dtype.is_floating_point and not dtype.is_complex and kwargs.get("rounding_mode") is None:
        dtype = torch.get_default_dtype()
    return torch.empty(shape, dtype=dtype, device="meta")


def _like_first(grad: torch.Tensor, *rest: Any, **kwargs: Any) -> torch.Tensor:
    """An operator whose one output is shaped like its first argument (relu, threshold_backward)."""
    return _empty_like(grad)


def _batch_norm_backward(grad: torch.Tensor, x: torch.Tensor, weight: Any, *rest: Any) -> tuple[Any, Any, Any]:
    """``native_batch_norm_backward`` (a Python decomposition): the input's gradient like the
    input, the weight's and bias's like the weight, each only where ``output_mask`` asks."""
    mask = rest[-1]
    like = weight if isinstance(weight, torch.Tensor) else torch.empty((x.shape[1],), dtype=x.dtype, device="meta")
    return (_empty_like(x) if mask[0] else None, _empty_like(like) if mask[1] else None,
            _empty_like(like) if mask[2] else None)


def _convolution(x: torch.Tensor, w: torch.Tensor, bias: Any, stride: Any, padding: Any, dilation: Any,
                 transposed: bool, output_padding: Any, groups: int) -> torch.Tensor:
    """``convolution`` on meta tensors by its size formula (torch's meta kernel imports sympy):
    ⌊(in + 2p − d(k − 1) − 1) / s⌋ + 1, or (in − 1)s − 2p + d(k − 1) + output_padding + 1 transposed."""
    sizes = []
    for i, n in enumerate(x.shape[2:]):
        k, s_, p, d = w.shape[2 + i], stride[i], padding[i], dilation[i]
        sizes.append((n - 1) * s_ - 2 * p + d * (k - 1) + output_padding[i] + 1 if transposed
                     else (n + 2 * p - d * (k - 1) - 1) // s_ + 1)
    channels = w.shape[1] * groups if transposed else w.shape[0]
    if min(sizes, default=1) <= 0:  # let torch's own kernel raise its own error
        return torch.ops.aten.convolution.default(x, w, bias, stride, padding, dilation, transposed,
                                                  output_padding, groups)
    return torch.empty((x.shape[0], channels, *sizes), dtype=x.dtype, device="meta")


def _convolution_backward(grad: torch.Tensor, x: torch.Tensor, w: torch.Tensor, bias_sizes: Any,
                          *rest: Any) -> tuple[Any, Any, Any]:
    """``convolution_backward``: gradients like the input, the weight and the bias, as asked."""
    mask = rest[-1]
    return (_empty_like(x) if mask[0] else None, _empty_like(w) if mask[1] else None,
            torch.empty(tuple(bias_sizes or (w.shape[0],)), dtype=grad.dtype, device="meta") if mask[2] else None)


def _pair(value: Any, default: Any) -> list[int]:
    value = default if value is None or (isinstance(value, (list, tuple)) and not value) else value
    return [int(value)] * 2 if isinstance(value, int) else [int(v) for v in value] * (2 if len(value) == 1 else 1)


def _max_pool2d(x: torch.Tensor, kernel: Any, stride: Any = (), padding: Any = 0, dilation: Any = 1,
                ceil_mode: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``max_pool2d_with_indices`` by its size formula (torch's meta kernel imports sympy): the output
    and its int64 indices, ⌊ or ⌈(in + 2p − d(k − 1) − 1) / s⌉ + 1, a last window that would start in
    the right padding dropped."""
    k, s_, p, d = _pair(kernel, 1), _pair(stride, kernel), _pair(padding, 0), _pair(dilation, 1)
    sizes = []
    for i, n in enumerate(x.shape[-2:]):
        span = n + 2 * p[i] - d[i] * (k[i] - 1) - 1
        out = (-(-span // s_[i]) if ceil_mode else span // s_[i]) + 1
        if ceil_mode and (out - 1) * s_[i] >= n + p[i]:
            out -= 1
        sizes.append(out)
    if min(sizes) <= 0:  # torch's own kernel raises its own error
        return torch.ops.aten.max_pool2d_with_indices.default(x, kernel, stride, padding, dilation, ceil_mode)
    shape = (*x.shape[:-2], *sizes)
    return (torch.empty(shape, dtype=x.dtype, device="meta"), torch.empty(shape, dtype=torch.int64, device="meta"))


def _like_second(grad: torch.Tensor, x: torch.Tensor, *rest: Any, **kwargs: Any) -> torch.Tensor:
    """An operator whose output is shaped like its second argument (a pool's input gradient)."""
    return _empty_like(x)


def _in_place(a: torch.Tensor, b: Any, *rest: Any, **kwargs: Any) -> torch.Tensor:
    """An in-place binary operator (the residual ``out += identity``): its own tensor, after the
    broadcast check torch's meta kernel makes (through a Python reference that imports sympy)."""
    if _broadcast(a, b) != tuple(a.shape):
        raise RuntimeError(f"output with shape {list(a.shape)} doesn't match the broadcast shape "
                           f"{list(_broadcast(a, b))}")
    return a


def _fresh_like(x: torch.Tensor, *rest: Any, dtype: Any = None, **kwargs: Any) -> torch.Tensor:
    """``ones_like``, ``zeros_like``, ``empty_like`` (Python references on meta): a new tensor of
    ``x``'s shape, in ``dtype`` if given, on ``device`` if given."""
    device = kwargs.get("device") or x.device
    if device != x.device and torch.device(device).type != "meta":
        return torch.empty(x.shape, dtype=dtype or x.dtype, device=device)
    return torch.empty(x.shape, dtype=dtype or x.dtype, device="meta")


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``mm`` (its meta kernel's checks import sympy): an (n, m) result."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        return torch.ops.aten.mm.default(a, b)  # torch's own error
    return torch.empty((a.shape[0], b.shape[1]), dtype=a.dtype, device="meta")


_SHORTCUTS: dict[Any, Callable[..., Any]] = {
    torch.ops.aten.mm.default: _mm, torch.ops.aten.sum.dim_IntList: _mean,
    **{getattr(torch.ops.aten, name).default: _fresh_like for name in ("ones_like", "zeros_like", "empty_like")},
    torch.ops.aten.add_.Tensor: _in_place,
    torch.ops.aten.max_pool2d_with_indices.default: _max_pool2d,
    torch.ops.aten.max_pool2d_with_indices_backward.default: _like_second,
    torch.ops.aten.convolution.default: _convolution,
    torch.ops.aten.convolution_backward.default: _convolution_backward,
    torch.ops.aten.relu.default: _like_first,
    **{getattr(torch.ops.aten, name).Tensor: _elementwise for name in ("add", "sub", "mul")},torch.ops.aten.native_batch_norm_backward.default: _batch_norm_backward,torch.ops.aten.threshold_backward.default: _like_first,torch.ops.aten.div.Scalar: _div, torch.ops.aten.div.Tensor: _div,torch.ops.aten.native_batch_norm.default: _batch_norm,
                                             torch.ops.aten.mean.dim: _mean, torch.ops.aten.addmm.default: _addmm}


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
        # serial -> a weak reference to the storage, whose callback records the release
        self._watched: dict[int, weakref.ref[Any]] = {}
        self._next = 0

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        """Never compiled: torch would otherwise wrap ``__torch_dispatch__`` in its dynamo-disable
        decorator, which imports torch._dynamo (and sympy) on first use, seconds of a cold run."""
        return False

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        shortcut = _SHORTCUTS.get(func)
        out = shortcut(*args, **kwargs) if shortcut is not None and args[0].is_meta else func(*args, **kwargs)
        ins: set[int] | None = None  # the inputs' storages, looked up once an output may be new
        for t in tensors_in(out):
            storage = _storage(t)
            if storage is None or storage._cdata in self._serials:  # no storage, or one counted already
                continue
            if ins is None:
                ins = {s._cdata for a in tensors_in(kwargs, tensors_in(args)) if (s := _storage(a)) is not None}
            if storage._cdata not in ins:  # not a view or in-place result of an input (weights, the input)
                self._allocated(t, storage, func)
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

    def _allocated(self, t: torch.Tensor, storage: Any, func: Any) -> None:
        """``t``'s storage is new: log its allocation, and watch for its release."""
        nbytes = int(storage.nbytes())
        if nbytes == 0:
            return
        serial = self._next
        self._next += 1
        self._serials[storage._cdata] = serial
        ledger = self.ledger
        ledger.blocks[serial] = Block(serial, nbytes, self.where(), self.phase, str(func.__name__),
                                      tuple(map(int, t.shape)))
        ledger.events.append((serial, 1))
        ledger.current += nbytes
        if ledger.current > ledger.peak:
            ledger.peak, ledger.peak_event = ledger.current, len(ledger.events) - 1
            ledger.peak_where, ledger.peak_phase = ledger.blocks[serial].where, self.phase
        # A weak reference's callback runs when the storage is freed, as weakref.finalize's does
        # (which is such a callback, with a registry around it that costs 4x more).
        self._watched[serial] = weakref.ref(storage, functools.partial(self._released, storage._cdata, serial, nbytes))

    def _released(self, cdata: int, serial: int, nbytes: int, ref: Any = None) -> None:
        self._watched.pop(serial, None)
        if self._serials.get(cdata) == serial:
            del self._serials[cdata]
        self.ledger.events.append((serial, -1))
        self.ledger.current -= nbytes

    def forget(self) -> None:
        """Stop attributing releases to this ledger (storages still alive when the run ends)."""
        self._serials.clear()
        self._watched.clear()  # a weak reference that is gone calls nothing

    def serial_of(self, t: torch.Tensor) -> int | None:
        """The allocation that holds ``t``'s data, if this run made it and it is still live."""
        s = _storage(t)
        return None if s is None else self._serials.get(s._cdata)
