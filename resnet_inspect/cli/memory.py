"""``resnet-inspect memory MODEL``: inference and training-step memory peaks, predicted on the meta device."""
from __future__ import annotations

import json
import sys
from typing import Annotated, Any, Optional

import typer

from ..errors import InputError
from . import app, common

BatchOpt = Annotated[Optional[int], typer.Option("--batch", "-b", show_default=False,
                                                 help="Batch size (default: --input's N, else 1).")]
TrainOpt = Annotated[bool, typer.Option("--train/--no-train", help="Also predict a training step (forward, backward, "
                                        "optimizer step).")]
OptimizerOpt = Annotated[str, typer.Option("--optimizer", help="sgd, momentum (SGD with momentum), adam or adamw.")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="Parameter and input dtype: float32, bfloat16 or float16.")]
AmpOpt = Annotated[Optional[str], typer.Option("--amp", show_default=False,
                                               help="bf16 or fp16: autocast with float32 master weights.")]
FrozenBnOpt = Annotated[bool, typer.Option("--frozen-bn", help="Batch norms in eval mode with frozen affine "
                                           "parameters (as detection training does): no gradients or state for them.")]
FreezeOpt = Annotated[Optional[list[str]], typer.Option("--freeze", metavar="MODULE", show_default=False,
                      help="Freeze the parameters of this module and its children (repeatable), e.g. --freeze stem "
                           "--freeze layer1 for maskrcnn-benchmark's FREEZE_CONV_BODY_AT: 2.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="Whose kernels: cuda, or cpu (adds oneDNN's convolution "
                                        "scratch buffers). No device is used either way.")]
ForeachOpt = Annotated[Optional[bool], typer.Option("--foreach/--for-loop", show_default=False,
                       help="torch.optim's foreach kernels or its for-loop (default: torch's, foreach on CUDA).")]
FitOpt = Annotated[Optional[str], typer.Option("--fit", metavar="BUDGET", show_default=False,
                   help="Find the largest batch whose peak fits this budget, e.g. 24GiB or 8G (binary units).")]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="table or json (every size in bytes).")]
FORMATS = ("table", "json")


@app.command()
@common.handle_errors
@common.with_build_flags()
def memory(
    model: common.ModelArg,
    input: common.InputOpt = None,
    batch: BatchOpt = None,
    train: TrainOpt = False,
    optimizer: OptimizerOpt = "sgd",
    dtype: DtypeOpt = "float32",
    amp: AmpOpt = None,
    frozen_bn: FrozenBnOpt = False,
    freeze: FreezeOpt = None,
    device: DeviceOpt = "cuda",
    foreach: ForeachOpt = None,
    fit: FitOpt = None,
    format: FormatOpt = "table",
    *,
    options: dict[str, Any],
) -> None:
    """Peak memory of inference and (with --train) a training step, weights included, with where the
    peak is reached and what it is made of. Nothing runs on a device: the model runs on the meta device.

    Example: resnet-inspect memory resnet50 --batch 8 --train --optimizer adamw
    """
    if format not in FORMATS:
        raise InputError(f"Unknown format '{format}': use one of {', '.join(FORMATS)}.")
    size = common.input_size(input)
    if batch is None:
        batch = size[0] if size is not None else 1
    budget = _budget(fit)
    from ..analysis.memory import MemoryOptions

    opts = MemoryOptions(batch=batch, dtype=dtype, amp=amp, optimizer=optimizer, frozen_bn=frozen_bn,
                         freeze=tuple(freeze or ()), device=device, foreach=foreach)
    opts.check()
    net, shape, label = _model(model, size, options)
    _check_freeze(net, opts.freeze)
    from ..analysis.memory import analyze_memory, fit_batch

    report = analyze_memory(net, shape, opts, train=train, label=label)
    found = None
    if budget is not None:
        best, peak = fit_batch(net, shape, budget, opts, train=train)
        found = {"budget_bytes": budget, "train": train, "batch": best, "peak_bytes": peak}
    if format == "json":
        data = report.to_dict()
        if found is not None:
            data["fit"] = found
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    from ..render.memory import print_memory

    print_memory(report, common.console(), found)


def _budget(text: str | None) -> int | None:
    if text is None:
        return None
    from ..checkpoint import parse_byte_size

    try:
        return parse_byte_size(text)
    except InputError as exc:
        raise InputError(f"--fit: {exc}") from None


def _model(target: str, size: tuple[int, ...] | None, options: dict[str, Any]) -> tuple[Any, tuple[int, ...], str]:
    """The module to analyse (a variant is built on the meta device), its input (C, H, W) and its name."""
    return _module(common.resolve(target, options), size)


def _module(resolved: Any, size: tuple[int, ...] | None, built: Any = None) -> tuple[Any, tuple[int, ...], str]:
    """:func:`_model` for a MODEL resolved already. ``built`` is the variant's module if a meta trace
    has built it already (``inspect(on_model=...)``): the analysis runs on stand-ins of it, as of
    any module, so it need not be built twice."""
    import torch

    from ..inputs import parse_input_size

    size = size or resolved.default_input
    net = resolved.model
    if resolved.kind == "variant":
        from ..analysis.inspect import check_fpn_alignment

        size = size or parse_input_size(net.default_input)
        check_fpn_alignment(net, tuple(size))  # the bad input summary refuses, refused alike (exit 2)
        if built is None:
            from ..models.meta import meta_init_skipped
            from ..models.resnet import build_model

            with torch.device("meta"), meta_init_skipped():
                built = build_model(net)
        net = built
    size = size or (1, 3, 224, 224)
    return net, tuple(size[1:]), resolved.target


def _check_freeze(net: Any, prefixes: tuple[str, ...]) -> None:
    names = {name for name, _ in net.named_modules()}
    unknown = [p for p in prefixes if p not in names]
    if unknown:
        raise InputError(f"--freeze {unknown[0]}: the model has no module of that name (the names are those of "
                         "`resnet-inspect tree`, e.g. layer1 or stem).")


def summary_memory(target: str, size: tuple[int, ...] | None, options: dict[str, Any]) -> Any:
    """``summary --memory``: inference and an SGD training step at the input's batch, with what each
    layer saves for the backward."""
    return resolved_memory(common.resolve(target, options), size)


def resolved_memory(resolved: Any, size: tuple[int, ...] | None, built: Any = None) -> Any:
    """:func:`summary_memory` of a MODEL resolved already (the summary's own), on the module its
    meta trace built if given (see :func:`_module`)."""
    from ..analysis.memory import MemoryOptions, analyze_memory

    net, shape, label = _module(resolved, size, built)
    return analyze_memory(net, shape, MemoryOptions(batch=size[0] if size else 1), label=label)
