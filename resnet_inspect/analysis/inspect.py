"""``inspect()``: build (or take) a model, trace it once, and assemble the report."""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn.parameter import is_lazy

from ..collector import collector_paused_in
from ..errors import InputError
from ..inputs import InputData, check_elements, parse_input_size, parse_pad_to, parse_tensor_shape
from ..models.meta import meta_init_skipped
from ..models.resnet import build_model
from ..periods import SharedPeriod
from ..text import sentence
from ..variants import ResNetSpec, get_spec
from . import counters
from .opdesc import WindowOp, find
from .preserve import guarded, refuse_uninferred
from .records import CONVENTION, LayerRecord, OutputInfo, Report, TraceStop
from .shapes import Window, pad_to_multiple, window_output
from .blocks import build_structure
from .structure import depth_breakdown, downsample_table, fpn_summary, label_stages, path_records
from .trace import (DataDependentStop, ForwardFailed, InputTooSmall, TraceBug, Tracer, _tensors, mark_input,
                    tensor_info)

COUNTERS = ("analytic", "fvcore", "torch")
# The training mode the forward runs in: eval (the default, as torchinfo's), train, or the modes the
# model's modules already have. Whichever it is, every module's own mode is put back afterwards.
MODES = ("eval", "train", "same")


# A trace allocates many small objects and frees them by reference counting; the collector's passes
# over a model of 800 blocks added about 40% to its time, for nothing to collect.
@collector_paused_in
def inspect(model_or_name: nn.Module | str | ResNetSpec, input_size: Any = None, *, input_data: Any = None,
            real: bool = False, counter: str = "analytic", pad_to: int | None = None, label: str | None = None,
            dtype: torch.dtype | None = None, mode: str = "eval",
            on_model: Callable[[nn.Module], None] | None = None, **options: Any) -> Report:
    """Trace a model or a named variant at ``input_size`` and return a :class:`Report`.

    By default the trace runs on the meta device: no memory is allocated and no arithmetic runs,
    so the cost does not grow with the input. ``real=True`` runs an actual CPU forward and gives
    identical records. ``counter`` picks who fills the MACs column: ``analytic`` (this package's
    rule table), ``fvcore`` (FlopCountAnalysis, a real forward) or ``torch``
    (torch.utils.flop_counter). ``label`` names the report (default: the variant name, or the
    model's class). For a model of your own, a tuple ``input_size`` is the input tensor's exact
    shape, and ``dtype`` its dtype (``torch.long`` for token ids, say; by default the model's own
    floating dtype). ``mode`` is the training mode the forward runs in (see :data:`MODES`). The
    model is left exactly as it was (see ``preserve.guarded``).

    ``input_data`` is what the forward takes, as torchinfo's ``input_data``: a tensor, a list or
    tuple of positional arguments (a detector's list of 3-D images is ``[[image, image]]``), or a
    dict of keyword arguments. Only the shapes and dtypes are used on meta; ``real=True`` runs
    copies of the given tensors. An ``InputData`` (the CLI's ``--input "[3x64x64, 3x48x80]"``)
    gives shapes only.

    On meta, an operator whose output size depends on the values (``nonzero`` in a detector's box
    decoding) stops the trace: every layer before it is reported, ``Report.stopped`` names the
    operator and the layer, and ``real=True`` runs the rest.

    ``on_model`` is called with the module the trace ran on, once the report is done: the model
    passed in, or the one built here from a variant, which the trace left as it was built (the
    summary's memory analysis runs on stand-ins of it instead of building the variant again).
    """
    plan = _plan(model_or_name, input_size, input_data=input_data, real=real, counter=counter, pad_to=pad_to,
                 label=label, dtype=dtype, mode=mode, options=options)
    model, spec, size, label = plan.model, plan.spec, plan.size, plan.label
    records, out, tracer = run_trace(model, size, real=real, label=label, dtype=plan.dtype, guard=plan.guard, mode=mode,
                                     data=plan.data)
    report = analyse(model, spec, records, out, tracer, label=label, size=size, padded_from=plan.padded_from,
                     counter=counter, device="cpu" if real else "meta")
    if counter != "analytic":
        counters.apply(report, counter, model, spec, size, plan.dtype)
    report.totals["flops"] = 2 * report.totals["macs"]
    report.convention = CONVENTION if counter == "analytic" else counters.CONVENTIONS[counter]
    if on_model is not None:
        on_model(model)
    return report


class _Plan(NamedTuple):
    """What ``inspect()`` traces: the model (built here from a variant, or the one given), its spec if
    it has one, the input shape (padded), and how the trace runs."""

    model: nn.Module
    spec: ResNetSpec | None
    size: tuple[int, ...]
    padded_from: tuple[int, ...] | None
    label: str
    dtype: torch.dtype
    guard: bool  # the model is the caller's: trace it on stand-ins (preserve.guarded)
    data: tuple[tuple[Any, ...], dict[str, Any]] | None


def _plan(model_or_name: nn.Module | str | ResNetSpec, input_size: Any, *, input_data: Any, real: bool, counter: str,
          pad_to: int | None, label: str | None, dtype: torch.dtype | None, mode: str,
          options: dict[str, Any]) -> _Plan:
    """Check ``inspect()``'s arguments, and build the variant it names."""
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise InputError(f"dtype must be a torch.dtype such as torch.float32, not {dtype!r}.")
    if counter not in COUNTERS:
        raise InputError(f"Unknown counter '{counter}': use one of {', '.join(COUNTERS)}.")
    if mode not in MODES:
        raise InputError(f"Unknown mode {mode!r}: use one of {', '.join(MODES)}.")
    if mode != "eval" and counter != "analytic":
        raise InputError(f"mode={mode!r} applies to the analytic counter; the {counter} counter runs in eval mode.")
    spec: ResNetSpec | None = None
    if isinstance(model_or_name, (str, ResNetSpec)):
        spec = model_or_name if isinstance(model_or_name, ResNetSpec) else get_spec(model_or_name, **options)
    if isinstance(input_size, InputData):
        input_data, input_size = _from_shapes(input_size), None
    if input_data is not None:
        if not isinstance(model_or_name, nn.Module):
            raise InputError("input_data is for a model you pass in; a variant takes an input size.")
        if counter != "analytic":
            raise InputError(f"--counter {counter} runs the model on one input tensor; with input_data (a list of "
                             "images or keyword tensors) use the analytic counter, the default.")
        input_data = _as_arguments(input_data)
        input_size = _first_shape(input_data)
    if input_size is None:  # the variant's own (ResNetSpec.default_input), as every command uses
        input_size = spec.default_input if spec is not None else 224
    ours = spec is not None or isinstance(getattr(model_or_name, "spec", None), ResNetSpec)
    if input_data is not None:
        size = input_size
        if pad_to is not None:
            raise InputError("pad_to pads one input tensor; it does not apply to input_data.")
    elif isinstance(input_size, (tuple, list, torch.Size)) and not ours:
        size = parse_tensor_shape(input_size)  # any module: the exact shape, as torchinfo takes it
    else:
        size = parse_input_size(input_size)
    padded_from = None
    if pad_to is not None:
        pad_to = parse_pad_to(pad_to)
        if len(size) < 3:
            raise InputError(f"pad_to pads the last two (spatial) dimensions; the input shape {size} has none.")
        padded = (*size[:-2], pad_to_multiple(size[-2], pad_to), pad_to_multiple(size[-1], pad_to))
        if padded != size:
            check_elements(list(padded), padded)
            padded_from, size = size, padded
    if spec is not None and input_data is None:
        check_fpn_alignment(spec, size)
        with torch.device("cpu" if real else "meta"), (nullcontext() if real else meta_init_skipped()):
            built_dtype = torch.get_default_dtype()
            model = build_model(spec)
        default_label = spec.name
    elif isinstance(model_or_name, nn.Module):
        if options:
            raise InputError(f"Builder options ({', '.join(sorted(options))}) apply to variant names, "
                             "not to a model you pass in.")
        model = model_or_name
        spec = getattr(model, "spec", None) if isinstance(getattr(model, "spec", None), ResNetSpec) else None
        if spec is not None and input_data is None:
            check_fpn_alignment(spec, size)
        default_label = type(model).__name__
    else:
        raise InputError(f"inspect() takes a variant name or a torch.nn.Module, not {type(model_or_name).__name__}.")

    if dtype is None:  # a model built here has the default dtype it was built with
        dtype = model_dtype(model) if model is model_or_name else built_dtype
    # A model built here from a variant is nobody else's: it needs no stand-ins.
    return _Plan(model, spec, size, padded_from, label or default_label, dtype, model is model_or_name, input_data)


@collector_paused_in
def shape_table(model_or_name: nn.Module | str | ResNetSpec, input_size: Any = None, *, pad_to: int | None = None,
                **options: Any) -> ShapeTable:
    """The records, outputs and totals of ``inspect(model_or_name, input_size, pad_to=pad_to)``, without
    the analysis a report adds (shape checks, structure, stages, depth, warnings): what a shape snapshot
    keeps (``snapshot.take``). Each field is what the report would hold (tests/test_snapshot.py)."""
    plan = _plan(model_or_name, input_size, input_data=None, real=False, counter="analytic", pad_to=pad_to,
                 label=None, dtype=None, mode="eval", options=options)
    records, out, tracer = run_trace(plan.model, plan.size, real=False, label=plan.label, dtype=plan.dtype,
                                     guard=plan.guard)
    outputs = _outputs(plan.model, out)[0]
    modules = {name: module for module, name in tracer.names.items()}
    totals = _totals(records, tracer.owned, count_buffer_kinds(modules, tracer.owned))
    return ShapeTable(plan.label, plan.size, plan.spec.to_options() if plan.spec is not None else {}, records,
                      outputs, totals)


class ShapeTable(NamedTuple):
    """A trace's shape table (``shape_table``): the fields of a :class:`Report` a snapshot reads."""

    model: str
    input_size: tuple[int, ...]
    options: dict[str, Any]
    layers: list[LayerRecord]
    outputs: dict[str, tuple[int, ...]]
    totals: dict[str, int]


def analyse(model: nn.Module, spec: ResNetSpec | None, records: list[LayerRecord], out: Any, tracer: Tracer, *,
            label: str, size: tuple[int, ...], padded_from: tuple[int, ...] | None, counter: str,
            device: str) -> Report:
    """The report of one trace (``run_trace``'s records, output and tracer): shape checks, the
    structure and stages, depth, totals and warnings. Each step is linear in the records."""
    for rec in records:
        if rec.analytic_shape is not None and rec.output_shapes and rec.shape_ok is None:
            rec.shape_ok = tuple(rec.analytic_shape) == tuple(rec.output_shapes[0])

    outputs, output_info, main_path_end = _outputs(model, out)
    structure = build_structure(records, _output_producers(outputs, out))
    label_stages(records, structure)
    main_path = path_records(records, main_path_end)
    n_heads = sum(1 for v in output_info.values() if v.head)
    name_depth = spec.name_depth if spec is not None else None
    depth = depth_breakdown(records, structure, main_path, name_depth, label, n_heads)
    if spec is not None:
        depth = replace(depth, notes=depth.notes + _spec_notes(spec, depth.stem))
    modules = dict(model.named_modules())  # one walk of the model for both of these
    uncalled = _uncalled(modules, tracer, records)
    buffer_kinds = count_buffer_kinds(modules, tracer.owned)
    return Report(
        model=label, input_size=size, layers=records, totals=_totals(records, tracer.owned, buffer_kinds),
        outputs=outputs, output_info=output_info, depth=depth, downsample=downsample_table(records, structure),
        uncalled=uncalled,
        fpn=fpn_summary(records, structure, output_info), counter=counter, device=device,
        options=spec.to_options() if spec is not None else {}, padded_from=padded_from,
        warnings=_degenerate_warnings(records, size) + _uncounted_warnings(records, tracer) + _stop_warnings(tracer),
        structure=structure, buffer_kinds=buffer_kinds, stopped=tracer.stop,
    )


def _totals(records: list[LayerRecord], owned: dict[str, tuple[list[tuple[str, torch.Tensor]], list[torch.Tensor]]],
            buffer_kinds: dict[str, int]) -> dict[str, int]:
    """The report's totals (without flops, which the counter's MACs give). ``buffer_kinds`` has
    counted each buffer once already (:func:`count_buffer_kinds`): their sum is the buffers'."""
    # Each tensor once, as model.parameters() gives them, but of what the trace saw (a lazy
    # module's weights exist only there).
    params = {id(p): p for named, _ in owned.values() for _, p in named}.values()
    sizes = [p.numel() for p in params]
    return {
        "params": sum(sizes),
        "trainable_params": sum(n for n, p in zip(sizes, params) if p.requires_grad),
        "buffers": sum(buffer_kinds.values()),
        "macs": sum(r.macs for r in records),
        "other_ops": sum(r.other_ops for r in records),
        "activation_bytes": sum(r.output_bytes for r in records),
    }


def _spec_notes(spec: ResNetSpec, stem_convs: int) -> tuple[str, ...]:
    """Depth notes that only the variant's spec can give: a custom layer list, a deep stem."""
    notes = []
    if "layers" in spec.to_options():
        notes.append(f"Custom layer list {list(spec.layers)}: the depth is counted, not read from the name.")
    if spec.stem in ("deep", "deep-wide") and stem_convs > 1:
        notes.append(f"The deep stem (Bag of Tricks ResNet-C/D/S) replaces the 7×7 conv with "
                     f"{stem_convs} 3×3 convs; timm keeps the name of the net it modifies.")
    return tuple(notes)


def run_trace(model: nn.Module, size: tuple[int, ...], *, real: bool, label: str = "model",
              dtype: torch.dtype = torch.float32, guard: bool = True,
              mode: str = "eval",
              data: tuple[tuple[Any, ...], dict[str, Any]] | None = None) -> tuple[list[LayerRecord], Any, Tracer]:
    """One forward pass under the tracer. The model comes back exactly as it was.

    The forward runs on stand-ins of the model's tensors (``preserve.guarded``): empty meta
    tensors by default, copies for ``real=True``. ``guard=False`` skips that for a model that
    ``inspect`` built itself and nobody else holds. ``data`` is the forward's (args, kwargs) when
    it takes more than one tensor. On meta, a data-dependent operator ends the trace early: the
    records up to it come back, the output is None and ``tracer.stop`` says where.
    """
    args, kwargs = ((_input(model, size, real, dtype),), {}) if data is None else _feed(model, data, real)
    for t in _tensors((args, kwargs)):
        mark_input(t)
    tracer = Tracer(model, {})
    out = None
    try:
        training = None if mode == "same" else mode == "train"
        with guarded(model, meta=not real) if guard else _flags_kept(tracer.names, training), \
                tracer.hooks() if guard else tracer.wrapped(), torch.no_grad():
            # Counted from what the forward sees: the stand-ins, which a lazy module can materialize.
            tracer.owned = _owned(tracer.names)
            if guard and training is not None:
                model.train(training)
            with _compiled_code_runs_eagerly(), tracer:
                try:
                    out = model(*args, **kwargs)
                except DataDependentStop as stop:
                    # What reached the operator stands for the outputs: its stride, field and depth.
                    tracer.stop, out = _trace_stop(stop), tuple(stop.reached)
        refuse_uninferred(tracer.owned, label)
    except InputTooSmall as exc:
        message = f"{label} at input {'×'.join(map(str, size))}: {exc} {_ran(tracer)}"
        raise InputTooSmall(message, exc.record) from exc
    except (InputError, TraceBug):
        raise
    except Exception as exc:  # the model's own forward failed: say where, and what did run
        raise _forward_failed(label, size, tracer, exc) from exc
    return tracer.records, out, tracer


# What a buffer holds, told from the module that owns it (no class names read):
# - running statistics: the mean, variance and step counter a norm updates while it trains
#   (BatchNorm2d, InstanceNorm with track_running_stats);
# - frozen constants: every buffer of a norm that keeps running_mean and running_var but tracks
#   nothing, such as maskrcnn-benchmark's FrozenBatchNorm2d, whose scale, shift, mean and variance
#   are all fixed buffers;
# - other: anything else a model registers (anchors, position tables, masks).
BUFFER_KINDS = ("running_statistics", "frozen_constants", "other")
_RUNNING = ("running_mean", "running_var", "num_batches_tracked")


def buffer_kind(module: nn.Module, name: str) -> str:
    """One of :data:`BUFFER_KINDS` for ``module``'s buffer ``name``."""
    if getattr(module, "track_running_stats", False) is True and name in _RUNNING:
        return "running_statistics"
    buffers = module._buffers
    if buffers.get("running_mean") is not None and buffers.get("running_var") is not None:
        return "frozen_constants"
    return "other"


def count_buffer_kinds(modules: dict[str, nn.Module],
                       owned: dict[str, tuple[list[Any], list[torch.Tensor]]]) -> dict[str, int]:
    """Elements of each kind of buffer, each tensor once, as the totals count them. ``modules`` is the
    model's ``named_modules()``; ``owned`` holds what the trace saw (a lazy module's buffers exist only
    there), in the order of each module's ``_buffers``."""
    counts = dict.fromkeys(BUFFER_KINDS, 0)
    seen: set[int] = set()
    for module_name, (_, buffers) in owned.items():
        if not buffers:
            continue
        module = modules.get(module_name)
        kinds = [] if module is None else [buffer_kind(module, n) for n, b in module._buffers.items() if b is not None]
        kinds += ["other"] * (len(buffers) - len(kinds))  # any the module no longer names
        for tensor, kind in zip(buffers, kinds):
            key = id(tensor)
            if key not in seen:
                seen.add(key)
                counts[kind] += tensor.numel()
    return counts


def _force_eager() -> Callable[[], None]:
    stance = torch.compiler.set_stance("force_eager")
    return lambda: stance.__exit__(None, None, None)  # back to the stance before the first trace


#: The compile stance is process-wide, so traces in several threads share one ``force_eager``
#: period (:class:`~resnet_inspect.periods.SharedPeriod`).
_force_eager_period = SharedPeriod(_force_eager)


@contextmanager
def _compiled_code_runs_eagerly() -> Iterator[None]:
    """Run any ``torch.compile``d function the model calls as plain Python during the trace.

    Dynamo would otherwise trace into resnet-inspect's own hooks and function mode (and fail on
    them); run eagerly, a compiled helper's operators reach the tracer like any others, as
    torchinfo and FlopCounterMode see them. (``torch.compiler.disable`` does not reach a compiled
    function called inside: it re-enables itself.) Without torch._dynamo imported nothing can be
    compiled, and importing it costs about a second.
    """
    if "torch._dynamo" not in sys.modules:
        yield
        return
    with _force_eager_period():
        yield


def _trace_stop(stop: DataDependentStop) -> TraceStop:
    rec = stop.record
    return TraceStop(stop.op, rec.name if rec is not None else "", rec.type if rec is not None else "", stop.reason)


def _stop_warnings(tracer: Tracer) -> list[str]:
    stop = tracer.stop
    if stop is None:
        return []
    done = sum(1 for r in tracer.records if r.is_leaf and r.output_shapes)
    where = f"{stop.layer} ({stop.layer_type})" if stop.layer else f"the root module ({stop.layer_type})"
    return [f"The meta trace stopped at {stop.op} in {where}: its output size depends on the values, which the "
            f"meta device does not have. The {done} layers that ran before it are reported as usual; the outputs "
            f"shown are the tensors that reached {stop.op}, not the model's. Run with --real (inspect(..., real=True)) to trace the rest on a small real input."]


def _as_arguments(data: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """torchinfo's input_data as the forward's (args, kwargs): a tensor, a list of arguments, a dict."""
    if isinstance(data, torch.Tensor):
        arguments: tuple[tuple[Any, ...], dict[str, Any]] = ((data,), {})
    elif isinstance(data, (list, tuple)):
        arguments = (tuple(data), {})
    elif isinstance(data, dict) and all(isinstance(k, str) for k in data):
        arguments = ((), dict(data))
    else:
        raise InputError(f"input_data must be a tensor, a list of the forward's arguments or a dict of its keyword "
                         f"arguments, not {type(data).__name__}.")
    if not _tensors(arguments):
        raise InputError("input_data holds no tensor.")
    return arguments


def _first_shape(data: tuple[tuple[Any, ...], dict[str, Any]]) -> tuple[int, ...]:
    """The report's input size for input_data: its first tensor's shape."""
    return tuple(int(d) for d in _tensors(data)[0].shape)


def _from_shapes(shapes: InputData) -> Any:
    """The CLI's shapes as torchinfo's input_data of meta tensors: a list of images (one argument),
    or keyword tensors."""
    def empty(shape: tuple[int, ...]) -> torch.Tensor:
        return torch.empty(shape, device="meta")
    if shapes.images:
        return [[empty(s) for s in shapes.images]]
    return {name: empty(s) for name, s in shapes.named}


def _feed(model: nn.Module, data: tuple[tuple[Any, ...], dict[str, Any]],
          real: bool) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Fresh tensors in place of the given ones: zeros on meta; for real, copies (a tensor given as
    a shape only gets a seeded random one), so the caller's tensors are never touched."""
    tensors = [*model.parameters(), *model.buffers()]
    device = tensors[0].device if real and tensors else torch.device("cpu")
    generator = torch.Generator().manual_seed(0)

    def fresh(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            if not real:
                return torch.zeros(value.shape, dtype=value.dtype, device="meta")
            if not value.is_meta:
                return value.detach().clone().to(device)
            if value.dtype.is_floating_point:
                return torch.randn(value.shape, generator=generator, dtype=value.dtype).to(device)
            return torch.zeros(value.shape, dtype=value.dtype, device=device)
        if isinstance(value, (list, tuple)):
            return type(value)(fresh(v) for v in value) if not hasattr(value, "_fields") else type(value)(
                *(fresh(v) for v in value))
        if isinstance(value, dict):
            return {k: fresh(v) for k, v in value.items()}
        return value

    args, kwargs = data
    return tuple(fresh(a) for a in args), {k: fresh(v) for k, v in kwargs.items()}


def _owned(names: dict[nn.Module, str]) -> dict[str, tuple[list[tuple[str, torch.Tensor]], list[torch.Tensor]]]:
    """Module name -> (its own named parameters, its own buffers), for the modules of ``Tracer.names``
    (each module once, as ``named_modules()`` gives them)."""
    return {name: ([(pn, p) for pn, p in m._parameters.items() if p is not None],
                   [b for b in m._buffers.values() if b is not None])
            if m._parameters or m._buffers else ([], [])
            for m, name in names.items()}


@contextmanager
def _flags_kept(modules: dict[nn.Module, str], training: bool | None) -> Iterator[None]:
    """Set the training flag of every module of a model built here (``training``; None keeps them), and put
    each back afterwards: all such a model needs. Its classes (models/) do not override ``train()``, so
    the flag is written as ``Module.train`` writes it, without a ``Module.__setattr__`` call per module."""
    modes = [(m.__dict__, m.training) for m in modules]
    try:
        if training is not None:
            for state, _ in modes:
                state["training"] = training
        yield
    finally:
        for state, mode in modes:
            state["training"] = mode


def _input(model: nn.Module, size: tuple[int, ...], real: bool, dtype: torch.dtype) -> torch.Tensor:
    """The traced input: zeros on the meta device, or a seeded random tensor where the model lives."""
    if not real:
        return torch.zeros(size, dtype=dtype, device="meta")
    tensors = [*model.parameters(), *model.buffers()]
    if tensors and all(t.is_meta for t in tensors):
        raise InputError("real=True needs a model with real weights; this one lives on the meta device.")
    device = tensors[0].device if tensors else torch.device("cpu")
    if dtype.is_floating_point or dtype.is_complex:
        return torch.randn(size, generator=torch.Generator().manual_seed(0), dtype=dtype).to(device)
    return torch.zeros(size, dtype=dtype, device=device)  # token ids and masks: zeros suit any vocabulary


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype of a model's parameters (float32 when they mix dtypes or it has none):
    a half-, bfloat16- or double-precision model is fed an input of its own precision."""
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point() and not is_lazy(p)}
    return dtypes.pop() if len(dtypes) == 1 else torch.float32


def _forward_failed(label: str, size: tuple[int, ...], tracer: Tracer, exc: Exception) -> ForwardFailed:
    failing = tracer.running or (tracer.stack[-1].record if tracer.stack else None)
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    where = "before any layer ran"
    if failing is not None:
        reached = ", ".join("×".join(map(str, s)) for s in failing.input_shapes) or "no tensor"
        where = f"at {failing.name or 'the root module'} ({failing.type}), which received {reached}"
    message = (f"The forward pass of {label} at input {'×'.join(map(str, size))} failed {where}: {sentence(reason)} "
               f"{_ran(tracer)}")
    return ForwardFailed(message, tracer.records, failing)


def _ran(tracer: Tracer) -> str:
    """Which layers ran before a failure, ending with the last few and their output shapes."""
    done = [r for r in tracer.records if r.output_shapes and r.is_leaf]
    last = "; ".join(f"{r.name} → {'×'.join(map(str, r.output_shapes[0]))}" for r in done[-3:])
    return f"{len(done)} layers ran before it" + (f", the last ones: {last}." if last else ".")


def _outputs(model: nn.Module, out: Any) -> tuple[dict[str, tuple[int, ...]], dict[str, OutputInfo], Any]:
    tensors = list(_tensors(out))
    names = list(out.keys()) if isinstance(out, dict) else getattr(model, "output_names", None)
    if not names or len(names) != len(tensors):
        names = ["output"] if len(tensors) == 1 else [f"output{i}" for i in range(len(tensors))]
    outputs, info = {}, {}
    deepest, best = None, -1
    for name, t in zip(names, tensors):
        outputs[name] = tuple(int(d) for d in t.shape)
        ti = tensor_info(t)
        entry = OutputInfo(outputs[name])
        if ti is not None:
            jump = tuple(int(j) if float(j).is_integer() else j for j in ti.jump)
            stride = jump[0] if jump[0] == jump[1] else (jump[0], jump[1])
            # After attention a token sequence has no grid: an output stride means something only
            # for a feature map (N, C, H, W).
            entry = OutputInfo(outputs[name], stride=None if ti.global_field and t.dim() != 4 else stride,
                               receptive_field=(int(ti.rf[0]), int(ti.rf[1])), depth=ti.depth, head=t.dim() == 2,
                               global_field=ti.global_field)
            if ti.depth > best:
                deepest, best = ti.path, ti.depth
        info[name] = entry
    return outputs, info, deepest


def _output_producers(outputs: dict[str, tuple[int, ...]], out: Any) -> list[tuple[str, int | None]]:
    """Each output's name with the index of the record that produced it (None if untraced)."""
    producers = []
    for name, t in zip(outputs, _tensors(out)):
        info = tensor_info(t)
        producers.append((name, info.producer if info is not None else None))
    return producers


def _uncalled(modules: dict[str, nn.Module], tracer: Tracer, records: list[LayerRecord]) -> list[dict[str, Any]]:
    """The modules (of ``named_modules()``) that the forward never called, each with the weights no
    call counted."""
    called = {r.name for r in records if r.kind == "module"}
    result = []
    for name, module in modules.items():
        if name in called or name in tracer.used_modules:
            continue
        params, buffers = tracer.owned.get(name, ([], []))
        fresh = [p for _, p in params if id(p) not in tracer.claimed]
        for p in fresh:
            tracer.claimed[id(p)] = name
        fresh_buffers = [b for b in buffers if id(b) not in tracer.claimed_buffers]
        tracer.claimed_buffers.update(id(b) for b in fresh_buffers)
        result.append({"name": name, "type": type(module).__name__,
                       "params": sum(p.numel() for p in fresh),
                       "trainable_params": sum(p.numel() for p in fresh if p.requires_grad),
                       "buffers": sum(b.numel() for b in fresh_buffers)})
    return result


def _uncounted_warnings(records: list[LayerRecord], tracer: Tracer) -> list[str]:
    """Leaves with weights whose operators have no counting rule: say so rather than show 0 MACs."""
    counted = tracer.counted  # nearly every record: asked first
    return [f"{rec.name} ({rec.type}) has weights, but none of the operators it ran has a counting rule in "
            "resnet-inspect, so its MACs and other ops are shown as 0. Cross-check it with --counter fvcore or "
            "--counter torch."
            for rec in records
            if rec.index not in counted and rec.kind == "module" and rec.is_leaf and rec.call == 0
            and (rec.params or rec.buffers or rec.shared)]


def _degenerate_warnings(records: list[LayerRecord], size: tuple[int, ...]) -> list[str]:
    if len(size) != 4:
        return []
    for rec in records:
        # The cheap tests first: most records are not leaves with a 1×1 feature map.
        if not (rec.is_leaf and rec.output_shapes and rec.input_shapes and len(rec.output_shapes[0]) == 4
                and rec.output_shapes[0][-1] == 1 and rec.output_shapes[0][-2] == 1):
            continue
        window = find(rec.op, WindowOp)
        if window is not None and len(window.stride) == 2:
            (h, w), (ih, iw) = rec.output_shapes[0][-2:], rec.input_shapes[0][-2:]
            # Only a window wider than one pixel, or a stride, is wasted on a 1×1 map: a 1×1 conv
            # after a global pool (a squeeze-excitation gate, timm's conv classifier) is by design.
            spans = max(window.kernel) > 1 or max(window.stride) > 1
            if spans and h == 1 and w == 1 and ih == 1 and iw == 1:
                return [f"From {rec.name} on the feature maps are 1×1: the input {size[2]}×{size[3]} is smaller than "
                        "the network's downsampling needs, so later layers see a single position. The outputs are "
                        "valid but degenerate."]
    return []


def stage_sizes(spec: ResNetSpec, height: int, width: int) -> dict[int, tuple[int, int]]:
    """Spatial size after each trunk stage (1-4), derived by formula before any tensor exists."""
    conv = Window(7, 2, 3)
    pool = Window(3, 2, 0, 1, True) if spec.caffe_maxpool else Window(3, 2, 1)
    hw = [window_output(window_output(d, conv), pool) for d in (height, width)]
    sizes = {}
    for stage, dilation in enumerate(spec.stage_dilations, start=1):
        if stage > 1 and dilation == 1:
            # The stride-2 conv is a 3x3 with padding 1 or a 1x1 without: both give ⌊(I−1)/2⌋ + 1.
            hw = [window_output(d, Window(1, 2, 0)) for d in hw]
        sizes[stage] = (hw[0], hw[1])
    return sizes


def check_fpn_alignment(spec: ResNetSpec, size: tuple[int, ...]) -> None:
    """Predict the top-down add failure of a ``scale_factor=2`` FPN before tracing."""
    if spec.fpn is None or spec.fpn.upsample != "scale":
        return
    sizes = stage_sizes(spec, size[2], size[3])
    stages = [s for s in sizes if s >= spec.fpn.first_stage]
    # The top-down pass runs from the coarsest level down, so the first add to fail is the
    # highest mismatch. A 1-pixel side broadcasts (torch's add), and the sum has the larger size.
    path = sizes[stages[-1]]
    for lower, upper in zip(reversed(stages[:-1]), reversed(stages[1:])):
        lateral = sizes[lower]
        top_down = (2 * path[0], 2 * path[1])
        if any(a != b and 1 not in (a, b) for a, b in zip(lateral, top_down)):
            fmt = "×".join
            raise InputError(
                f"{spec.name} cannot take a {size[2]}×{size[3]} input: its FPN upsamples by scale_factor=2, as "
                f"maskrcnn-benchmark does, so each level must be exactly twice the one above. At P{lower + 1}, "
                f"fpn_inner{lower} gives {fmt(map(str, lateral))} but the upsampled P{upper + 1} path gives "
                f"{fmt(map(str, top_down))}, and the top-down add fails. maskrcnn-benchmark pads every image to a "
                f"multiple of 32 (SIZE_DIVISIBILITY) first: pass --pad-to 32 (pad_to=32) to do the same, or put "
                "--fpn on a zoo backbone, whose FPN upsamples to the lateral's size.")
        path = (max(lateral[0], top_down[0]), max(lateral[1], top_down[1]))
