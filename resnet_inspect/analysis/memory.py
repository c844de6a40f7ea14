"""How much memory inference and a training step take, predicted on the meta device.

The model runs on meta stand-ins of its tensors (``preserve.guarded``: the user's model is never
touched) under :class:`allocations.Allocations`, which logs every tensor the run allocates and
the moment it is released. What is run is what a training loop runs:

- inference: ``model.eval()``, a forward under ``torch.no_grad()``;
- a training step: ``model.train()``, ``out = model(x)``, ``loss = sum(t.sum() for t in out)``,
  ``loss.backward()``, ``del out, loss``, ``optimizer.step()``,
  ``optimizer.zero_grad(set_to_none=True)``. An optimizer with state (momentum, Adam) runs two
  steps, so the second one has the state of the first resident from its start, as every step
  after the first does.

The backward and the optimizer run for real, on meta tensors, through the same dispatcher, so
their order of allocation and release is autograd's and torch.optim's own. Autograd's
saved-tensor hooks say which allocations the backward keeps (per layer). Every peak is the total
held: weights and buffers (allocated before the step) plus the live allocations; it is the figure
to compare with ``torch.cuda.max_memory_allocated()`` after loading the model and running the
step (docs/memory.md).
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves, tree_map

from ..errors import InputError
from .allocations import Allocations, Ledger, tensors_in
from .preserve import guarded

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
DEVICES = ("cuda", "cpu")
_STATEFUL = frozenset({"momentum", "adam", "adamw"})
_LARGEST = 5  # live tensors listed at a peak


@dataclass(frozen=True)
class MemoryOptions:
    """What is run: batch size, parameter dtype, autocast, optimizer, frozen parts."""

    batch: int = 1
    dtype: str = "float32"
    amp: str | None = None  # bf16 | fp16: autocast with float32 master weights
    optimizer: str = "sgd"
    frozen_bn: bool = False  # batch norms in eval mode with their affine parameters frozen
    freeze: tuple[str, ...] = ()  # module-name prefixes whose parameters are frozen ("stem", "layer1")
    device: str = "cuda"  # whose kernels: cuda, or cpu (oneDNN's weight reorder per convolution)
    foreach: bool | None = None  # torch.optim's foreach kernels; None: torch's default for the device

    @property
    def uses_foreach(self) -> bool:
        """torch.optim picks foreach by default on CUDA and the for-loop on CPU."""
        return self.device == "cuda" if self.foreach is None else self.foreach

    def check(self) -> None:
        """Refuse options that cannot be run, in one sentence each."""
        if self.batch < 1:
            raise InputError(f"The batch size must be 1 or more, not {self.batch}.")
        if self.dtype not in DTYPES:
            raise InputError(f"Unknown dtype '{self.dtype}': use one of {', '.join(DTYPES)}.")
        if self.amp is not None and self.amp not in AMP_DTYPES:
            raise InputError(f"Unknown autocast dtype '{self.amp}': use one of {', '.join(AMP_DTYPES)}.")
        if self.amp is not None and self.dtype != "float32":
            raise InputError("--amp keeps float32 master weights: use it with --dtype float32.")
        if self.device not in DEVICES:
            raise InputError(f"Unknown device '{self.device}': use one of {', '.join(DEVICES)}.")
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"Unknown optimizer '{self.optimizer}': use one of {', '.join(OPTIMIZERS)}.")


@dataclass(frozen=True)
class LiveTensor:
    """One allocation live at a peak: who made it, its shape and size, and what it is."""

    made_by: str
    op: str
    shape: tuple[int, ...]
    bytes: int
    kind: str


@dataclass(frozen=True)
class Peak:
    """The highest total held during a run, where it was reached and what made it up."""

    total_bytes: int
    phase: str  # forward | backward | optimizer
    where: str  # the layer (or the backward of a layer, or the optimizer step) that allocated last
    breakdown_bytes: dict[str, int]
    largest: tuple[LiveTensor, ...] = ()


@dataclass(frozen=True)
class MemoryReport:
    """Inference and (optionally) training-step peaks of one model at one input size."""

    model: str
    input_shape: tuple[int, ...]
    options: MemoryOptions
    weights_bytes: int  # parameters and buffers, each storage once
    inference: Peak
    training: Peak | None = None
    saved_for_backward_bytes: dict[str, int] = field(default_factory=dict)  # layer -> bytes it saves

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data; every size is in bytes."""
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        data["options"]["freeze"] = list(self.options.freeze)
        return data


# -- where an allocation happens ------------------------------------------------------------------
class _Where:
    """Names what runs now: the innermost module in the forward, the layer whose autograd node
    runs in the backward, or the step the caller set (optimizer step)."""

    def __init__(self, model: nn.Module) -> None:
        self.names = {m: n or type(m).__name__ for n, m in model.named_modules()}
        self.stack: list[str] = []
        self.nodes: dict[Any, str] = {}  # autograd node -> the layer whose forward made it
        self.step = "input"

    def __call__(self) -> str:
        node = torch._C._current_autograd_node()
        if node is not None:
            return f"backward of {self.nodes.get(node, node.name())}"
        return self.stack[-1] if self.stack else self.step

    @contextmanager
    def hooks(self, model: nn.Module) -> Iterator[None]:
        handles = []
        try:
            for module in self.names:
                handles.append(module.register_forward_pre_hook(self._pre))
                handles.append(module.register_forward_hook(self._post))
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _pre(self, module: nn.Module, args: Any) -> None:
        self.stack.append(self.names[module])

    def _post(self, module: nn.Module, args: Any, output: Any) -> None:
        name = self.stack.pop() if self.stack else self.names[module]
        # Label the autograd nodes this call made (inner modules labelled theirs already).
        todo = [t.grad_fn for t in tensors_in(output) if t.grad_fn is not None]
        while todo:
            node = todo.pop()
            if node is None or node in self.nodes or node.name() == "torch::autograd::AccumulateGrad":
                continue
            self.nodes[node] = name
            todo.extend(n for n, _ in node.next_functions)


# -- autocast, as it behaves on CUDA and CPU, for meta tensors -------------------------------------
_LOW_PRECISION = {"conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
                  "linear", "matmul", "mm", "bmm", "addmm", "baddbmm", "addbmm", "__matmul__", "prelu"}


class _Autocast(TorchFunctionMode):
    """torch.autocast does not act on meta tensors, so its rule is applied here, above autograd
    as autocast itself sits: the operators of its lower-precision list get their float32 tensor
    arguments cast (the casts are recorded by autograd and allocate); casts of leaf tensors that
    require grad (the master weights) are cached until the forward ends, as autocast caches them."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype
        self.cache: dict[int, torch.Tensor] = {}

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") in _LOW_PRECISION:
            args, kwargs = tree_map(self._cast, (args, kwargs))
        return func(*args, **kwargs)

    def _cast(self, value: Any) -> Any:
        if not isinstance(value, torch.Tensor) or value.dtype != torch.float32:
            return value
        cacheable = value.is_leaf and value.requires_grad and torch.is_grad_enabled()
        if cacheable and id(value) in self.cache:
            return self.cache[id(value)]
        cast = value.to(self.dtype)
        if cacheable:
            self.cache[id(value)] = cast
        return cast


# -- the runs -------------------------------------------------------------------------------------
def weights_bytes(model: nn.Module, dtype: torch.dtype | None = None) -> int:
    """Bytes of parameters and buffers, each storage once; floating ones in ``dtype`` if given."""
    seen: set[int] = set()
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        if id(t) in seen:
            continue
        seen.add(id(t))
        size = (torch.finfo(dtype).bits // 8 if dtype is not None and t.is_floating_point() else t.element_size())
        total += t.numel() * size
    return total


def _prepare(model: nn.Module, opts: MemoryOptions, train: bool) -> None:
    """Set up the stand-ins (never the user's tensors): dtype, mode, frozen parameters."""
    if opts.dtype != "float32":
        model.to(DTYPES[opts.dtype])
    model.train(train)
    for name, module in model.named_modules():
        frozen_bn = opts.frozen_bn and isinstance(module, nn.modules.batchnorm._BatchNorm)
        if frozen_bn:
            module.eval()
        if frozen_bn or any(name == p or name.startswith(p + ".") for p in opts.freeze):
            for p in module.parameters(recurse=False):
                p.requires_grad_(False)


def _cpu_scratch(func: Any, args: tuple[Any, ...]) -> int:
    """oneDNN (CPU) reorders a convolution's weight into its blocked layout in a buffer of the
    weight's size, on every call, and frees it before returning; its backward computes the weight's
    gradient in a float32 buffer of the weight's shape (both seen in torch.profiler's memory events
    inside aten::mkldnn_convolution and aten::convolution_backward). CUDA kernels have neither."""
    if func is torch.ops.aten.convolution.default and len(args) > 1 and isinstance(args[1], torch.Tensor):
        return args[1].numel() * args[1].element_size()
    if func is torch.ops.aten.convolution_backward.default and len(args) > 2 and args[-1][1]:
        return args[2].numel() * 4
    return 0


def _loss(out: Any) -> torch.Tensor | None:
    parts = [t.sum() for t in tree_leaves(out) if isinstance(t, torch.Tensor) and t.requires_grad]
    return sum(parts[1:], parts[0]) if parts else None


class _PlainSGD:
    """SGD without momentum, as torch.optim.SGD runs it (``param.add_(grad, alpha=-lr)`` in its
    for-loop, ``torch._foreach_add_`` in its foreach form): in place, so its step allocates
    nothing. Used on the meta device only, where torch.optim's first use would import torch._dynamo
    (its methods carry dynamo's disable decorator), seconds for a step that allocates nothing."""

    def __init__(self, params: list[torch.Tensor], lr: float = 0.01) -> None:
        self.params, self.lr = params, lr
        self.state: dict[Any, dict[str, Any]] = {}

    def step(self) -> None:
        """Nothing to run: on meta tensors the in-place ``p.add_(p.grad, alpha=-lr)`` changes no
        value and allocates nothing, so the ledger would see no event (ResNet-152's 466 adds were an
        eighth of the training step's operators). :meth:`run_step` runs it, for the test that says so."""

    def run_step(self) -> None:
        """The step as torch.optim.SGD's for-loop runs it."""
        with torch.no_grad():
            for p in self.params:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-self.lr)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None


def _optimizer(model: nn.Module, opts: MemoryOptions, meta: bool = False) -> Any:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return None
    if opts.optimizer == "sgd" and meta:
        return _PlainSGD(params)
    if opts.optimizer in ("sgd", "momentum"):
        return torch.optim.SGD(params, lr=0.01, momentum=0.9 if opts.optimizer == "momentum" else 0.0,
                               foreach=opts.uses_foreach)
    cls = torch.optim.Adam if opts.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=1e-3, foreach=opts.uses_foreach)


@dataclass
class _Kinds:
    """Which allocations are gradients, optimizer state or saved for the backward."""

    saved: set[int] = field(default_factory=set)
    grads: set[int] = field(default_factory=set)
    state: set[int] = field(default_factory=set)
    inputs: set[int] = field(default_factory=set)
    saved_by: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def kind(self, serial: int, train: bool) -> str:
        if serial in self.grads:
            return "gradients"
        if serial in self.state:
            return "optimizer_state"
        if serial in self.saved:
            return "saved_activations"
        if serial in self.inputs:
            return "input"
        return "transient" if train else "activations"


def _run(model: nn.Module, size: tuple[int, ...], opts: MemoryOptions, train: bool) -> tuple[Ledger, _Kinds, int]:
    """Run inference or a training step on meta stand-ins; the allocation ledger and the kinds."""
    with guarded(model, meta=True):
        return _run_on_stand_ins(model, size, opts, train)


def _run_on_stand_ins(model: nn.Module, size: tuple[int, ...], opts: MemoryOptions,
                      train: bool) -> tuple[Ledger, _Kinds, int]:
    """:func:`_run`, inside ``guarded``: the model's tensors are stand-ins already."""
    kinds = _Kinds()
    _prepare(model, opts, train)
    weights = weights_bytes(model)
    where = _Where(model)
    mode = Allocations(where, _cpu_scratch if opts.device == "cpu" else None)
    dtype = DTYPES[opts.dtype]
    with where.hooks(model), mode:
        x = torch.empty(size, dtype=dtype, device="meta")
        kinds.inputs.add(mode.serial_of(x))  # type: ignore[arg-type]
        if not train:
            with torch.no_grad():
                out = model(x)
            del out
        else:
            _train(model, x, opts, where, mode, kinds)
        del x
    mode.forget()
    return mode.ledger, kinds, weights


def _train(model: nn.Module, x: torch.Tensor, opts: MemoryOptions, where: _Where, mode: Allocations,
           kinds: _Kinds) -> None:
    optimizer = _optimizer(model, opts, meta=True)
    first = True

    def pack(t: torch.Tensor) -> torch.Tensor:
        serial = mode.serial_of(t)
        if serial is not None and serial not in kinds.saved:
            kinds.saved.add(serial)
            if first:
                kinds.saved_by[where()] += mode.ledger.blocks[serial].nbytes
        return t

    for step in range(2 if opts.optimizer in _STATEFUL else 1):
        first = step == 0
        mode.phase, where.step = "forward", "loss"
        autocast = _Autocast(AMP_DTYPES[opts.amp]) if opts.amp else nullcontext()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            with autocast:
                out = model(x)
            del autocast  # torch.autocast drops its cache of weight casts on exit
            loss = _loss(out)
        if loss is None:
            raise InputError("Nothing in the model's output requires grad: there is no training step to measure "
                             "(are all its parameters frozen?).")
        mode.phase = "backward"
        loss.backward()
        del out, loss
        if optimizer is None:
            continue
        for p in model.parameters():
            if p.grad is not None and (s := mode.serial_of(p.grad)) is not None:
                kinds.grads.add(s)
        mode.phase, where.step = "optimizer", "optimizer step"
        optimizer.step()
        for state in optimizer.state.values():
            kinds.state.update(s for t in state.values() if isinstance(t, torch.Tensor)
                               and (s := mode.serial_of(t)) is not None)
        optimizer.zero_grad(set_to_none=True)


def _peak(ledger: Ledger, kinds: _Kinds, weights: int, train: bool) -> Peak:
    live = ledger.live_at_peak()
    breakdown = {"weights": weights}
    for name in (("gradients", "optimizer_state", "saved_activations", "input", "transient") if train
                 else ("input", "activations")):
        breakdown[name] = 0
    for block in live:
        breakdown[kinds.kind(block.key, train)] += block.nbytes
    largest = tuple(LiveTensor(b.where, b.op, b.shape, b.nbytes, kinds.kind(b.key, train))
                    for b in sorted(live, key=lambda b: -b.nbytes)[:_LARGEST])
    return Peak(weights + ledger.peak, ledger.peak_phase or "forward", ledger.peak_where or "input", breakdown,
                largest)


def peak_of(model: nn.Module, size: tuple[int, ...], opts: MemoryOptions, *, train: bool) -> Peak:
    """The inference or training-step peak of one run."""
    ledger, kinds, weights = _run(model, size, opts, train)
    return _peak(ledger, kinds, weights, train)


def analyze_memory(model: nn.Module, size: tuple[int, ...], opts: MemoryOptions = MemoryOptions(), *,
                   train: bool = True, label: str = "model") -> MemoryReport:
    """Inference peak and (with ``train``) the training-step peak at ``opts.batch``.

    ``size`` is the input without its batch dimension (C, H, W), or with it (the batch is then
    replaced by ``opts.batch``)."""
    opts.check()
    shape = (opts.batch, *size[-3:]) if len(size) >= 3 else (opts.batch, *size)
    with guarded(model, meta=True) as renew:
        inference = _peak(*_run_on_stand_ins(model, shape, opts, False), False)
        if not train:
            return MemoryReport(label, shape, opts, inference.breakdown_bytes["weights"], inference)
        renew()  # the training step starts from fresh stand-ins, as if guarded were entered again
        try:
            ledger, kinds, weights = _run_on_stand_ins(model, shape, opts, True)
        except InputError:
            raise
        except ValueError as exc:  # torch's own refusal in train mode: BatchNorm over one value per channel
            raise InputError(f"{label} cannot take a training step at input {'×'.join(map(str, shape))}: "
                             f"{str(exc).rstrip('.')}. A real training step fails there too; use a larger "
                             f"batch or input.") from exc
    training = _peak(ledger, kinds, weights, True)
    return MemoryReport(label, shape, opts, weights, inference, training, dict(kinds.saved_by))


def saved_for_backward(model: nn.Module, size: tuple[int, ...], opts: MemoryOptions = MemoryOptions()) -> dict[str, int]:
    """Bytes each layer saves for the backward (a forward with autograd on, no optimizer)."""
    opts.check()
    kinds = _Kinds()
    with guarded(model, meta=True):
        _prepare(model, opts, True)
        where = _Where(model)
        mode = Allocations(where)
        with where.hooks(model), mode:
            x = torch.empty(size, dtype=DTYPES[opts.dtype], device="meta")

            def pack(t: torch.Tensor) -> torch.Tensor:
                serial = mode.serial_of(t)
                if serial is not None and serial not in kinds.saved:
                    kinds.saved.add(serial)
                    kinds.saved_by[where()] += mode.ledger.blocks[serial].nbytes
                return t

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                out = model(x)
            del out, x
        mode.forget()
    return dict(kinds.saved_by)


def fit_batch(model: nn.Module, size: tuple[int, ...], budget: int, opts: MemoryOptions = MemoryOptions(), *,
              train: bool) -> tuple[int, int]:
    """The largest batch whose peak fits ``budget`` bytes, and the peak there.

    Memory is nearly affine in the batch: two runs (batch 1 and 2) give the line, and the batch
    it predicts is checked by a run, refined by secant steps, then moved one at a time until
    batch fits and batch + 1 does not. Returns (0, peak at batch 1) when even batch 1 does not fit."""
    def peak(batch: int) -> int:
        return peak_of(model, (batch, *size[-3:]), replace(opts, batch=batch), train=train).total_bytes

    opts.check()
    one = peak(1)
    if one > budget:
        return 0, one
    two = peak(2)
    slope = max(two - one, 1)
    batch = max(1, math.floor((budget - one) / slope) + 1)
    known = {1: one, 2: two}

    def at(b: int) -> int:
        if b not in known:
            known[b] = peak(b)
        return known[b]

    for _ in range(3):  # refine the line through batch 1 and the latest guess (secant steps)
        if at(batch) <= budget < at(batch + 1) or batch == 1:
            break
        slope = max((at(batch) - one) / (batch - 1), 1)
        guess = max(1, math.floor((budget - one) / slope) + 1)
        if guess == batch:
            break
        batch = guess
    while at(batch) > budget and batch > 1:
        batch -= 1
    while at(batch + 1) <= budget:
        batch += 1
    return batch, at(batch)
