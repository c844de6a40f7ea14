"""What every model-taking command shares: builder flags, model resolution (a thin layer over
``resnet_inspect.resolve`` that reports a checkpoint's inference on stderr), errors, consoles."""
from __future__ import annotations

import errno
import functools
import inspect
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypeVar

import typer

from .. import process, reading
from ..errors import InputError
from ..inputs import parse_input_data, parse_input_size
from ..resolve import Resolved, no_terminal, trace
from ..resolve import resolve as _resolve
from ..text import sentence, visible
from ..variants import CIFAR_INPUT, FPN_INPUT, IMAGENET_INPUT

if TYPE_CHECKING:
    from rich.console import Console


@dataclass
class _State:
    debug: bool = False
    trust_pickle: bool = False  # --trust-pickle: load checkpoints with weights_only=False (runs their code)
    max_checkpoint_size: str | None = None  # --max-checkpoint-size, as given (parsed when a checkpoint is read)


STATE = _State()
F = TypeVar("F", bound=Callable[..., Any])

# Said in every --input help, from the one place the defaults are decided (variants.py).
DEFAULT_INPUTS = (f"{IMAGENET_INPUT}; {CIFAR_INPUT} for the CIFAR nets; {FPN_INPUT}x{FPN_INPUT} with a feature "
                  "pyramid")

# -- builder flags, declared once and used by every command that builds a model ----------------
ModelArg = Annotated[str, typer.Argument(help="A variant name (see `list`), package.module:factory, or a checkpoint "
                                              "file (.pth/.pt/.pkl/.bin/.ckpt/.safetensors).",
                                         show_default=False)]
InputOpt = Annotated[Optional[str], typer.Option("--input", "-i", show_default=False,
                     help=f"224, 800x1344, 3x224x224 or 2x3x224x224 (default: the variant's own, {DEFAULT_INPUTS}); "
                          "\"[3x800x1333, 3x600x800]\" is a list of images (a detector's input), \"{x: 1x3x64x64}\" keyword tensors.")]
PadTo = Annotated[Optional[int], typer.Option("--pad-to", help="Pad the input up to a multiple (maskrcnn-benchmark uses 32).",
                                              show_default=False)]

# The builder flags: keyword -> (type, option names, help). Every model-taking command gets all of
# them through ``with_build_flags``; ``diff`` also gets --a-/--b- prefixed copies.
BUILD_FLAGS: dict[str, tuple[type, str, str]] = {
    "stride_in_1x1": (bool, "--stride-in-1x1/--stride-in-3x3",
                      "Put a bottleneck's stride in its first 1x1 (MSRA/Caffe) or in the 3x3 (torchvision)."),
    "caffe_maxpool": (bool, "--caffe-maxpool/--no-caffe-maxpool",
                      "Max pool with padding 0 and ceil_mode=True, as in Caffe (the MSRA release)."),
    "norm": (str, "--norm", "bn or frozen_bn (FrozenBatchNorm2d, as in maskrcnn-benchmark)."),
    "output_stride": (int, "--output-stride", "32, 16 or 8: dilation replaces the last strides."),
    "num_classes": (int, "--num-classes", "Classifier outputs."),
    "num_bins": (int, "--num-bins", "Hopenet's bins per angle."),
    "groups": (int, "--groups", "Groups of the 3x3 conv (ResNeXt)."),
    "width_per_group": (int, "--width-per-group", "Channels per group (64 = ResNet)."),
    "fpn": (str, "--fpn", "Add a pyramid: maskrcnn (P2-P6) or retinanet (P3-P7)."),
    "block": (str, "--block", "basic or bottleneck (custom depths)."),
    "layers": (str, "--layers", "Blocks per stage, e.g. 3,4,6,3."),
    "stem": (str, "--stem", "standard, deep (ResNet-C), deep-wide (ResNet-S) or cifar."),
    "avg_down": (bool, "--avg-down/--no-avg-down", "ResNet-D shortcut: 2x2 average pool, then a stride-1 projection."),
    "shortcut": (str, "--shortcut", "A (parameter-free subsample and zero-pad, CIFAR) or B (projection)."),
    "se": (bool, "--se/--no-se", "Squeeze-and-excitation in every block (reduction 16)."),
}


def _flag(name: str, prefix: str = "") -> Any:
    """The typer annotation of one builder flag, optionally as ``--a-<flag>`` for one side of a diff."""
    kind, decls, help_text = BUILD_FLAGS[name]
    if prefix:
        decls = "/".join(f"--{prefix}-{d[2:]}" for d in decls.split("/"))
        help_text = f"{prefix.upper()} only: {help_text}"
    return Annotated[Optional[kind], typer.Option(decls, help=help_text, show_default=False,
                                                  rich_help_panel="Builder flags" if not prefix else
                                                  f"Builder flags for {prefix.upper()} only")]


def build_options(**flags: Any) -> dict[str, Any]:
    """The builder keywords the user actually gave (None means "the variant's default")."""
    unknown = set(flags) - set(BUILD_FLAGS)
    if unknown:
        raise TypeError(f"not builder flags: {sorted(unknown)}")
    if isinstance(flags.get("shortcut"), str):
        flags["shortcut"] = flags["shortcut"].upper()
    return {k: v for k, v in flags.items() if v is not None}


def with_build_flags(*prefixes: str) -> Callable[[F], F]:
    """Give a command every builder flag. The command declares ``options`` (and ``a_options``,
    ``b_options`` ... for each prefix) and receives the flags the user set as dicts."""

    def decorate(func: F) -> F:
        signature = inspect.signature(func, eval_str=True)
        wanted = ["options", *(f"{p}_options" for p in prefixes)]
        params = [p for p in signature.parameters.values() if p.name not in wanted]
        flags = [inspect.Parameter(f"{p}_{name}" if p else name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                   annotation=_flag(name, p))
                 for p in ("", *prefixes) for name in BUILD_FLAGS]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for p in ("", *prefixes):
                given = {name: kwargs.pop(f"{p}_{name}" if p else name, None) for name in BUILD_FLAGS}
                kwargs[f"{p}_options" if p else "options"] = build_options(**given)
            return func(*args, **kwargs)

        wrapper.__signature__ = signature.replace(parameters=[*params, *flags])  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def resolve(target: str, options: dict[str, Any]) -> Resolved:
    """:func:`resnet_inspect.resolve.resolve` with the global ``--trust-pickle`` and
    ``--max-checkpoint-size``; a checkpoint's inference is reported on stderr."""
    resolved = _resolve(target, options, trust_pickle=STATE.trust_pickle, max_bytes=checkpoint_limit())
    if resolved.kind == "checkpoint":
        report_inference(Path(target), resolved.model, resolved.inference)
    return resolved


def inspect_model(target: str | Resolved, size: tuple[int, ...] | None, options: dict[str, Any],
                  **engine: Any) -> Any:
    """Resolve MODEL (a variant name, ``pkg.mod:factory`` or a checkpoint file) and trace it; a
    :class:`Resolved` (resolved with ``options`` already) is traced as it is.

    ``engine`` goes to :func:`resnet_inspect.resolve.trace` (``real``, ``counter``, ``pad_to``). A
    model that is not a variant name is reported under the name the user gave for it."""
    resolved = target if isinstance(target, Resolved) else resolve(target, options)
    target = resolved.target
    try:
        return trace(resolved, size, **engine)
    except (MemoryError, RuntimeError, InputError) as exc:
        # A failed forward comes back as an InputError (ForwardFailed) that says where; its cause is the OOM.
        cause = exc.__cause__ if isinstance(exc, InputError) else exc
        if not engine.get("real") or cause is None or not _out_of_memory(cause):
            raise
        what = str(exc).strip() if isinstance(exc, InputError) else (
            f"Building or running {target} for real ran out of memory ({type(exc).__name__}: {_first_line(exc)}).")
        raise InputError(f"{what} Out of memory: drop --real, and the default trace runs on the meta device, which "
                         "allocates nothing and gives the same shapes, parameters and MACs; or give a smaller "
                         "--input.") from exc


def _out_of_memory(exc: BaseException) -> bool:
    """MemoryError, or the RuntimeError torch's CPU allocator raises when an allocation fails."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "not enough memory" in text or "can't allocate memory" in text \
        or "out of memory" in text


def _first_line(exc: BaseException) -> str:
    return next((line.strip() for line in str(exc).splitlines() if line.strip()), "no details")[:200]


def checkpoint_limit() -> int:
    """The most data a checkpoint may hold: ``--max-checkpoint-size``, or the library's default."""
    from ..checkpoint import MAX_CHECKPOINT_BYTES, parse_byte_size

    given = STATE.max_checkpoint_size
    return MAX_CHECKPOINT_BYTES if given is None else parse_byte_size(given)


def report_inference(path: Path, model: Any, inference: Any) -> None:
    """Say on stderr what a checkpoint was recognised as (or that a whole pickled module was loaded)."""
    err = console(stderr=True)
    if inference is None:
        err.print(f"Loaded a whole pickled {type(model).__name__} from {path} (--trust-pickle: the file's code was "
                  "allowed to run); inspecting it as it is.", markup=False, highlight=False)
    else:
        for line in describe_inference(inference):
            err.print(line, markup=False, highlight=False)


def describe_inference(inference: Any) -> list[str]:
    """What was read from a checkpoint and how sure the match is, as lines for stderr."""
    lines = [f"{inference.path}: {inference.command} ({inference.confidence})"]
    if inference.container:
        lines.append(f"  state_dict found under '{inference.container}'")
    if inference.prefix:
        lines.append(f"  key prefix stripped: '{inference.prefix}'")
    lines += [f"  note: {item}" for item in inference.notes]
    lines += [f"  read: {item}" for item in inference.evidence]
    lines += [f"  not in the weights: {item}" for item in inference.unseen]
    for label, keys in (("missing", inference.missing), ("unexpected", inference.unexpected)):
        if keys:
            shown = ", ".join(keys[:10]) + (f" and {len(keys) - 10} more" if len(keys) > 10 else "")
            lines.append(f"  {label} keys ({len(keys)}): {shown}")
    return lines


def input_size(text: str | None) -> Any:
    """The parsed ``--input``, or None for the variant's own size; a bracketed list of shapes or a
    braced dict of them is :class:`~resnet_inspect.inputs.InputData` (a detector's images)."""
    if text is not None and text.strip()[:1] in ("[", "{"):
        return parse_input_data(text)
    return None if text is None else parse_input_size(text)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the final flush into a closed pipe cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def console(stderr: bool = False) -> Console:
    """A rich console that honours NO_COLOR, prints plain text when piped, and never prints at a
    width too small to show anything (see process.MIN_WIDTH)."""
    from .terminal import Console as _Console  # rich is imported when something is printed through it

    made = _Console(stderr=stderr, highlight=False, soft_wrap=False)
    if made.width < process.MIN_WIDTH:  # a squeezed terminal, or COLUMNS=0 (see process.usable_width)
        made.width = process.FALLBACK_WIDTH
    return made


def report_bug(exc: BaseException) -> None:
    """The one paragraph for an exception that is a bug in resnet-inspect (exit code 3)."""
    console(stderr=True).print(
        f"[bold red]Internal error:[/] {type(exc).__name__}: {_escape(sentence(exc))} This is a bug in resnet-inspect; "
        "re-run with --debug for the traceback and report it.", markup=True, highlight=False)


# Errors the operating system gives for a path the user named: the input is wrong, not the tool.
_PATH_ERRNOS = {errno.ENAMETOOLONG, errno.EACCES, errno.EPERM, errno.ELOOP, errno.EISDIR, errno.ENOTDIR,
                errno.EROFS, errno.ENXIO, errno.ENODEV}


def _bad_input(exc: BaseException) -> str | None:
    """The message for an error that is the input's doing though it is not an InputError, or None.

    A model nested deeper than Python's recursion limit fails wherever it is walked (torch's own
    ``named_modules`` recurses), so a RecursionError anywhere means the model is too deep. An
    OSError about a path the user gave (too long, no permission, a loop of links) is theirs too.
    """
    if isinstance(exc, RecursionError):
        return (f"The model is nested too deep: walking its modules exceeded Python's recursion limit "
                f"({sys.getrecursionlimit():,} frames; torch's own named_modules() recurses once per level). "
                "Flatten the nesting (an nn.Sequential of the blocks instead of each block holding the next).")
    if isinstance(exc, OSError) and exc.errno in _PATH_ERRNOS and exc.filename is not None:
        return f"Cannot use the file {reading.short(exc.filename)}: {reading.reason(exc)}."
    return None


def _exit_message(exc: SystemExit) -> str:
    """A sys.exit from the user's code, once the command is running (a forward, a hook, a pickle)."""
    code = visible(repr(exc.code))[:80]
    return (f"The model's code called sys.exit({code}) while resnet-inspect ran it, so there is no result. Remove "
            "the call from the model (its forward, a hook, or a property the trace reads).")


def show_traceback() -> None:
    """With --debug, the traceback of the exception being handled, on stderr. The exit code stays
    the verdict (2 bad input, 3 a bug): --debug adds detail, it never changes the outcome."""
    if STATE.debug:
        traceback.print_exc(file=sys.stderr)


def handle_errors(func: F) -> F:
    """Bad input becomes one paragraph on stderr and exit code 2 (a traceback before it with --debug).

    A closed pipe, a full disk behind stdout or an odd encoding never get here: the process's
    streams absorb them (resnet_inspect.process), so they cannot change the exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            # The user's code (a factory, a model's forward, a trusted pickle) runs inside: it gets
            # no terminal to stop at, and its sys.exit cannot end the command with a made-up verdict.
            with no_terminal():
                return func(*args, **kwargs)
        except SystemExit as exc:  # the CLI itself ends commands with typer.Exit: this is the user's code
            show_traceback()
            console(stderr=True).print(f"[bold red]Error:[/] {_escape(_exit_message(exc))}", markup=True,
                                       highlight=False)
            raise typer.Exit(2) from None
        except InputError as exc:
            show_traceback()
            # One paragraph: a newline or escape sequence inside a user's name is shown, not obeyed.
            console(stderr=True).print(f"[bold red]Error:[/] {_escape(visible(str(exc)))}", markup=True,
                                       highlight=False)
            raise typer.Exit(2) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            show_traceback()
            bad = _bad_input(exc)
            if bad is not None:
                console(stderr=True).print(f"[bold red]Error:[/] {_escape(bad)}", markup=True, highlight=False)
                raise typer.Exit(2) from None
            report_bug(exc)
            raise typer.Exit(3) from None

    return wrapper  # type: ignore[return-value]


def output_path(path: Path | None) -> Path | None:
    """``-o -`` means stdout, as it does for most tools: None, like no ``-o`` at all."""
    return None if path is not None and str(path) == "-" else path
