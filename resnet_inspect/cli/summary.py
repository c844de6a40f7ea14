"""``resnet-inspect summary MODEL``: the per-layer table and the totals, or JSON/CSV/Markdown."""
from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from ..errors import InputError
from . import app, common

FormatOpt = Annotated[Optional[str], typer.Option(
    "--format", "-f", help="table, json (the engine's to_dict()), csv or markdown. Default: from --output's "
    "extension, else table.", show_default=False)]
CounterOpt = Annotated[str, typer.Option(
    "--counter", help="Who counts MACs: analytic (this package's rules), fvcore or torch (torch.utils.flop_counter); "
    "the latter two run a real forward.")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file (atomically) instead "
                                                   "of the terminal; - means stdout.", show_default=False)]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite --output if it exists.")]
DepthOpt = Annotated[Optional[int], typer.Option("--depth", "-d", help="Fold modules nested deeper than this into "
                                                 "their ancestor (1 = top-level modules). Not used by json.",
                                                 show_default=False)]
MemoryFlag = Annotated[bool, typer.Option("--memory", help="Add the memory analysis: inference and SGD training-step "
                                          "peaks, and per layer the bytes saved for the backward (see `memory`).")]
RealOpt = Annotated[bool, typer.Option("--real", help="Run a real CPU forward instead of the meta-device trace "
                                       "(same records, slower).")]


@app.command()
@common.handle_errors
@common.with_build_flags()
def summary(
    model: common.ModelArg,
    input: common.InputOpt = None,
    format: FormatOpt = None,
    output: OutputOpt = None,
    force: ForceOpt = False,
    depth: DepthOpt = None,
    counter: CounterOpt = "analytic",
    real: RealOpt = False,
    pad_to: common.PadTo = None,
    memory: MemoryFlag = False,
    *,
    options: dict[str, Any],
) -> None:
    """Per-layer shapes, params, MACs and receptive field, with totals, depth and downsampling.

    Writes json (the engine's to_dict()), csv or markdown with --format or --output.

    Example: resnet-inspect summary resnet50 --input 800x1344 --depth 2
    """
    output = common.output_path(output)
    fmt = output_format(format, output)
    if depth is not None and depth < 1:
        raise InputError(f"--depth must be 1 or more, not {depth}.")
    if output is not None:
        from ..fileio import check_writable

        check_writable(output, force=force)  # fail before the work, not after it
    size = common.input_size(input)
    slow = f"Counting MACs with {counter}" if counter != "analytic" else "Running a real forward" if real else None
    with _working(slow):
        report = common.inspect_model(model, size, options, real=real, counter=counter, pad_to=pad_to)
    memory_report = _memory(model, size, options) if memory else None
    if output is not None:
        from ..fileio import atomic_write

        written = atomic_write(output, _text(report, fmt, depth, memory_report), force=force)
        common.console(stderr=True).print(f"Wrote the {fmt} summary of {report.model} to {written}.",
                                          markup=False, highlight=False)
    elif fmt == "table":
        from ..render.table import print_summary

        print_summary(report, common.console(), depth)
        if memory_report is not None:
            from ..render.memory import memory_section

            memory_section(common.console(), memory_report.inference, memory_report.training, memory_report.options.batch)
    else:
        sys.stdout.write(_text(report, fmt, depth, memory_report))


def _memory(model: str, size: tuple[int, ...] | None, options: dict[str, Any]) -> Any:
    from .memory import summary_memory

    return summary_memory(model, size, options)


def _text(report: Any, fmt: str, depth: int | None, memory_report: Any) -> str:
    """The summary as text, with the memory analysis when asked for (``--memory``)."""
    text = render_text(report, fmt, depth)
    if memory_report is None:
        return text
    from ..render.memory import with_memory

    return with_memory(text, fmt, memory_report)


def output_format(fmt: str | None, output: Path | None) -> str:
    """The format asked for, or the one the output file's extension names, or table."""
    from ..render.export import EXTENSIONS, FORMATS

    if fmt is not None:
        if fmt not in FORMATS:
            raise InputError(f"Unknown format '{fmt}': use one of {', '.join(FORMATS)}.")
        return fmt
    if output is not None:
        return EXTENSIONS.get(output.suffix.lower(), "table")
    return "table"


def render_text(report: Any, fmt: str, depth: int | None) -> str:
    """The summary as a string: json/csv/markdown, or the table as plain text (for a file)."""
    from ..render.export import render

    if fmt != "table":
        return render(report, fmt, depth)
    from ..render.table import print_summary

    buffer = io.StringIO()
    print_summary(report, Console(file=buffer, width=120, force_terminal=False, no_color=True, highlight=False), depth)
    return buffer.getvalue()


@contextlib.contextmanager
def _working(message: str | None) -> Iterator[None]:
    """A spinner on stderr while slow work runs, only when stderr is a terminal."""
    status_console = common.console(stderr=True)
    if message is None or not status_console.is_terminal:
        yield
        return
    with status_console.status(f"{message}…"):
        yield
