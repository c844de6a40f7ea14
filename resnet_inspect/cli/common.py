"""What every model-taking command shares: builder flags, model resolution, errors, consoles."""
from __future__ import annotations

import contextlib
import errno
import functools
import importlib
import inspect
import io
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from .. import reading
from ..checkpoint import CHECKPOINT_SUFFIXES
from ..errors import InputError
from ..inputs import parse_input_size
from ..text import article, visible, visible_lines
from ..variants import _VARIANTS, ResNetSpec, get_spec, unknown_name_error


@dataclass
class _State:
    debug: bool = False
    trust_pickle: bool = False  # --trust-pickle: load checkpoints with weights_only=False (runs their code)
    max_checkpoint_size: str | None = None  # --max-checkpoint-size, as given (parsed when a checkpoint is read)


STATE = _State()
F = TypeVar("F", bound=Callable[..., Any])

# -- builder flags, declared once and used by every command that builds a model ----------------
ModelArg = Annotated[str, typer.Argument(help="A variant name (see `list`), package.module:factory, or a checkpoint "
                                              "file (.pth/.pt/.pkl/.bin/.ckpt/.safetensors).",
                                         show_default=False)]
InputOpt = Annotated[Optional[str], typer.Option("--input", "-i", show_default=False,
                     help="224, 800x1344, 3x224x224 or 2x3x224x224 (default: the variant's own, 224 or 32 for CIFAR).")]
PadTo = Annotated[Optional[int], typer.Option("--pad-to", help="Pad the input up to a multiple (maskrcnn-benchmark uses 32).",
                                              show_default=False)]

# The builder flags: keyword -> (type, option names, help). Every model-taking command gets all of
# them through ``with_build_flags``; ``diff`` also gets --a-/--b- prefixed copies.
BUILD_FLAGS: dict[str, tuple[type, str, str]] = {
    "stride_in_1x1": (bool, "--stride-in-1x1/--stride-in-3x3",
                      "Put a bottleneck's stride in its first 1x1 (MSRA/Caffe) or in the 3x3 (torchvision)."),
    "caffe_maxpool": (bool, "--caffe-maxpool/--no-caffe-maxpool",
                      "Max pool with padding 0 and ceil_mode=True, as in Caffe (seed 002)."),
    "norm": (str, "--norm", "bn or frozen_bn (FrozenBatchNorm2d, seed 003)."),
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


def resolve_model(target: str, options: dict[str, Any]) -> Any:
    """A variant name (validated now, built later by the engine), a module from ``pkg.mod:factory``,
    or the model a checkpoint file holds (printing on stderr what was inferred from it)."""
    if target in _VARIANTS:
        get_spec(target, **options)  # validate options before any heavy import
        return target
    path = Path(target)
    looks_like_a_file = path.suffix.lower() in CHECKPOINT_SUFFIXES or os.sep in target
    try:
        found = reading.kind(path)
    except OSError as exc:  # a name over 255 bytes, a folder without permission...
        if looks_like_a_file:
            raise InputError(f"Cannot read the checkpoint file {reading.short(target)}: {reading.reason(exc)}.") \
                from None
        found = None
    if found == "a regular file":
        model, _ = resolve_checkpoint(path, options)
        return model
    if found is not None and looks_like_a_file:
        raise InputError(f"{reading.short(target)} is {found}, not a checkpoint file.")
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        raise InputError(f"No such checkpoint file: {reading.short(target)}.")
    if ":" in target:
        return _load_factory(target, options)
    raise unknown_name_error(target)


def inspect_model(target: str, size: tuple[int, ...] | None, options: dict[str, Any], **engine: Any) -> Any:
    """Resolve MODEL (a variant name, ``pkg.mod:factory`` or a checkpoint file) and trace it.

    ``engine`` goes to :func:`resnet_inspect.inspect` (``real``, ``counter``, ``pad_to``). A model
    that is not a variant name is reported under the name the user gave for it."""
    resolved = resolve_model(target, options)
    from ..analysis.inspect import inspect

    try:
        if isinstance(resolved, str):
            return inspect(resolved, size, **engine, **options)
        spec = getattr(resolved, "spec", None)
        if size is None and isinstance(spec, ResNetSpec):
            # A checkpoint recognised as a CIFAR net runs at its own 32x32, as the variant name would.
            size = parse_input_size(spec.default_input)
        return inspect(resolved, size, label=target, **engine)
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


def resolve_checkpoint(path: Path, options: dict[str, Any]) -> tuple[Any, Any]:
    """Load a checkpoint safely (``--trust-pickle`` aside), infer its variant and report the inference on stderr."""
    from ..checkpoint import MAX_CHECKPOINT_BYTES, load_model, parse_byte_size

    limit = MAX_CHECKPOINT_BYTES if STATE.max_checkpoint_size is None else parse_byte_size(STATE.max_checkpoint_size)
    model, inference = load_model(path, trust_pickle=STATE.trust_pickle, options=options, max_bytes=limit)
    err = console(stderr=True)
    if inference is None:
        err.print(f"Loaded a whole pickled {type(model).__name__} from {path} (--trust-pickle: the file's code was "
                  "allowed to run); inspecting it as it is.", markup=False, highlight=False)
    else:
        for line in describe_inference(inference):
            err.print(line, markup=False, highlight=False)
    return model, inference


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


def _load_factory(target: str, options: dict[str, Any]) -> Any:
    module_name, _, attr = target.partition(":")
    if not module_name.strip() or not attr.strip():
        raise InputError(f"'{target}' is not a factory: give package.module:function, e.g. mymodels:build.")
    if options:
        raise InputError(f"Builder flags ({', '.join(sorted(options))}) apply to variant names, not to {target}.")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    # Whatever the user's code does while it is imported or called (an exception of any kind, a
    # syntax error, sys.exit) is bad input, reported as such; never a crash or a silent exit.
    try:
        with _no_terminal():
            module = importlib.import_module(module_name)
    except WantsTerminal as exc:
        raise InputError(f"Importing '{module_name}' for {target} {exc}.") from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit, GeneratorExit...: whatever the user's code raises
        raise InputError(f"Cannot import '{module_name}' for {target}: {_raised(exc)}.") from exc
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise InputError(f"'{module_name}' has no callable '{attr}', so {target} cannot build a model.")
    try:
        with _no_terminal():
            model = factory()
    except WantsTerminal as exc:
        raise InputError(f"{target}() {exc}.") from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit, GeneratorExit...: whatever the user's code raises
        raise InputError(f"{target}() raised {_raised(exc)}.") from exc
    from torch import nn

    if not isinstance(model, nn.Module):
        kind = type(model).__name__
        raise InputError(f"{target}() returned {article(kind)} {kind}, not a torch.nn.Module.")
    return model


class WantsTerminal(Exception):
    """The user's code asked for a terminal (a debugger, an interactive prompt, input()). Its message
    is a clause without a full stop: "called breakpoint(). ... remove the call"."""


class _NoInput(io.TextIOBase):
    """Standard input while the user's code runs: any read raises :class:`WantsTerminal`."""

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> str:
        raise WantsTerminal("read from standard input (input(), pdb.set_trace() or code.interact() left in the "
                            "code?). resnet-inspect runs your model's code unattended, with no terminal to answer; "
                            "remove the call")

    readline = read  # type: ignore[assignment]

    def isatty(self) -> bool:
        return False


def _breakpoint(*args: Any, **kwargs: Any) -> None:
    raise WantsTerminal("called breakpoint(). resnet-inspect runs your model's code unattended, with no terminal "
                        "for a debugger; remove the call (or set PYTHONBREAKPOINT=0 when you run it yourself)")


@contextlib.contextmanager
def _no_terminal() -> Iterator[None]:
    """Run the user's code with breakpoint() and standard input refused, then put both back.

    A factory that stops in a debugger would otherwise wait for a keystroke that a CI job never
    sends. ``os._exit`` cannot be caught: a factory that calls it ends the process.
    """
    saved = sys.stdin, sys.breakpointhook
    sys.stdin, sys.breakpointhook = _NoInput(), _breakpoint
    try:
        yield
    finally:
        sys.stdin, sys.breakpointhook = saved


def _raised(exc: BaseException) -> str:
    """``ValueError: why``; ``sys.exit(5)`` for a SystemExit, which is not an error but a call."""
    if isinstance(exc, SystemExit):
        return f"SystemExit: {exc} (it called sys.exit({exc.code!r}))"
    return f"{type(exc).__name__}: {exc}"


def input_size(text: str | None) -> tuple[int, int, int, int] | None:
    """The parsed ``--input``, or None for the variant's own size."""
    return None if text is None else parse_input_size(text)


class _Console(Console):
    def render_str(self, text: str, **kwargs: Any) -> Any:
        """Every string printed shows control characters as escapes (a module named
        ``conv1\\x1b[2J`` must not clear the screen); newlines and tabs are kept."""
        return super().render_str(visible_lines(text), **kwargs)

    def render(self, renderable: Any, options: Any = None) -> Iterator[Any]:
        """The last line of defence: no segment of text reaches the terminal with a raw control
        character, whichever renderable made it (rich's own control segments, such as cursor moves,
        pass). Renderers escape names before layout (:func:`resnet_inspect.text.visible`), so this
        only matters for a name that slipped past them."""
        from rich.segment import Segment

        for segment in super().render(renderable, options):
            if segment.control or visible_lines(segment.text) == segment.text:
                yield segment
            else:
                yield Segment(visible_lines(segment.text), segment.style, segment.control)

    def on_broken_pipe(self) -> None:
        """The reader went away (``| head``): it has what it wanted, so end quietly with exit 0.
        rich's default exits 1, which this tool keeps for a check that found differences."""
        self.quiet = True
        _silence_stdout()
        raise typer.Exit(0)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the final flush into a closed pipe cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def console(stderr: bool = False) -> Console:
    """A rich console that honours NO_COLOR and prints plain text when piped."""
    return _Console(stderr=stderr, highlight=False, soft_wrap=False)


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


def handle_errors(func: F) -> F:
    """Bad input becomes one paragraph on stderr and exit code 2 (a traceback only with --debug)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            # The user's code (a factory, a model's forward, a trusted pickle) runs inside: it gets
            # no terminal to stop at, and its sys.exit cannot end the command with a made-up verdict.
            with _no_terminal():
                return func(*args, **kwargs)
        except SystemExit as exc:  # the CLI itself ends commands with typer.Exit: this is the user's code
            if STATE.debug:
                raise
            console(stderr=True).print(f"[bold red]Error:[/] {escape(_exit_message(exc))}", markup=True,
                                       highlight=False)
            raise typer.Exit(2) from None
        except InputError as exc:
            if STATE.debug:
                raise
            # One paragraph: a newline or escape sequence inside a user's name is shown, not obeyed.
            console(stderr=True).print(f"[bold red]Error:[/] {escape(visible(str(exc)))}", markup=True,
                                       highlight=False)
            raise typer.Exit(2) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:  # plain writes (json, csv) into a pipe whose reader has gone
            _silence_stdout()
            raise typer.Exit(0) from None
        except Exception as exc:
            if STATE.debug:
                raise
            bad = _bad_input(exc)
            if bad is not None:
                console(stderr=True).print(f"[bold red]Error:[/] {escape(bad)}", markup=True, highlight=False)
                raise typer.Exit(2) from None
            console(stderr=True).print(
                f"[bold red]Internal error:[/] {type(exc).__name__}: {escape(str(exc))}. This is a bug in resnet-inspect; "
                "re-run with --debug for the traceback and report it.", markup=True, highlight=False)
            raise typer.Exit(3) from None

    return wrapper  # type: ignore[return-value]
