"""What every model-taking command shares: builder flags, model resolution, errors, consoles."""
from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import InputError
from ..inputs import parse_input_size
from ..variants import _VARIANTS, get_spec, parse_layers, unknown_name_error


@dataclass
class _State:
    debug: bool = False


STATE = _State()
F = TypeVar("F", bound=Callable[..., Any])

# -- builder flags, declared once and used by every command that builds a model ----------------
ModelArg = Annotated[str, typer.Argument(help="A variant name (see `list`) or package.module:factory.",
                                         show_default=False)]
InputOpt = Annotated[str, typer.Option("--input", "-i", help="224, 800x1344, 3x224x224 or 2x3x224x224.")]
StrideIn1x1 = Annotated[Optional[bool], typer.Option("--stride-in-1x1/--stride-in-3x3",
                        help="Put a bottleneck's stride in its first 1x1 (MSRA/Caffe) or in the 3x3 (torchvision).",
                        show_default=False)]
CaffeMaxpool = Annotated[Optional[bool], typer.Option("--caffe-maxpool/--no-caffe-maxpool",
                         help="Max pool with padding 0 and ceil_mode=True, as in Caffe (seed 002).", show_default=False)]
Norm = Annotated[Optional[str], typer.Option("--norm", help="bn or frozen_bn (FrozenBatchNorm2d, seed 003).",
                                             show_default=False)]
OutputStride = Annotated[Optional[int], typer.Option("--output-stride", help="32, 16 or 8: dilation replaces the last strides.",
                                                     show_default=False)]
NumClasses = Annotated[Optional[int], typer.Option("--num-classes", help="Classifier outputs.", show_default=False)]
NumBins = Annotated[Optional[int], typer.Option("--num-bins", help="Hopenet's bins per angle.", show_default=False)]
Groups = Annotated[Optional[int], typer.Option("--groups", help="Groups of the 3x3 conv (ResNeXt).", show_default=False)]
WidthPerGroup = Annotated[Optional[int], typer.Option("--width-per-group", help="Channels per group (64 = ResNet).",
                                                      show_default=False)]
Fpn = Annotated[Optional[str], typer.Option("--fpn", help="Add a pyramid: maskrcnn (P2-P6) or retinanet (P3-P7).",
                                            show_default=False)]
Block = Annotated[Optional[str], typer.Option("--block", help="basic or bottleneck (custom depths).", show_default=False)]
Layers = Annotated[Optional[str], typer.Option("--layers", help="Blocks per stage, e.g. 3,4,6,3.", show_default=False)]
PadTo = Annotated[Optional[int], typer.Option("--pad-to", help="Pad the input up to a multiple (maskrcnn-benchmark uses 32).",
                                              show_default=False)]


def build_options(*, stride_in_1x1: bool | None = None, caffe_maxpool: bool | None = None, norm: str | None = None,
                  output_stride: int | None = None, num_classes: int | None = None, num_bins: int | None = None,
                  groups: int | None = None, width_per_group: int | None = None, fpn: str | None = None,
                  block: str | None = None, layers: str | None = None) -> dict[str, Any]:
    """The builder keywords the user actually gave (None means "the variant's default")."""
    options = dict(stride_in_1x1=stride_in_1x1, caffe_maxpool=caffe_maxpool, norm=norm, output_stride=output_stride,
                   num_classes=num_classes, num_bins=num_bins, groups=groups, width_per_group=width_per_group,
                   fpn=fpn, block=block, layers=parse_layers(layers) if layers is not None else None)
    return {k: v for k, v in options.items() if v is not None}


def resolve_model(target: str, options: dict[str, Any]) -> Any:
    """A variant name (validated now, built later by the engine) or a module from ``pkg.mod:factory``."""
    if target in _VARIANTS:
        get_spec(target, **options)  # validate options before any heavy import
        return target
    if ":" in target:
        return _load_factory(target, options)
    raise unknown_name_error(target)


def _load_factory(target: str, options: dict[str, Any]) -> Any:
    module_name, _, attr = target.partition(":")
    if options:
        raise InputError(f"Builder flags ({', '.join(sorted(options))}) apply to variant names, not to {target}.")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(f"Cannot import '{module_name}' for {target}: {exc}.") from exc
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise InputError(f"'{module_name}' has no callable '{attr}', so {target} cannot build a model.")
    try:
        model = factory()
    except Exception as exc:  # the user's factory raised: report it as bad input, not a crash
        raise InputError(f"{target}() raised {type(exc).__name__}: {exc}.") from exc
    from torch import nn

    if not isinstance(model, nn.Module):
        raise InputError(f"{target}() returned a {type(model).__name__}, not a torch.nn.Module.")
    return model


def input_size(text: str) -> tuple[int, int, int, int]:
    return parse_input_size(text)


def console(stderr: bool = False) -> Console:
    """A rich console that honours NO_COLOR and prints plain text when piped."""
    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def handle_errors(func: F) -> F:
    """Bad input becomes one paragraph on stderr and exit code 2 (a traceback only with --debug)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            if STATE.debug:
                raise
            console(stderr=True).print(f"[bold red]Error:[/] {escape(str(exc))}", markup=True, highlight=False)
            raise typer.Exit(2) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if STATE.debug:
                raise
            console(stderr=True).print(
                f"[bold red]Internal error:[/] {type(exc).__name__}: {escape(str(exc))}. This is a bug in resnet-inspect; "
                "re-run with --debug for the traceback and report it.", markup=True, highlight=False)
            raise typer.Exit(3) from None

    return wrapper  # type: ignore[return-value]
