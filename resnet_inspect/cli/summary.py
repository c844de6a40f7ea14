"""``resnet-inspect summary MODEL``: the per-layer table and the totals, or JSON/CSV/Markdown."""
from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

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
DepthOpt = Annotated[Optional[str], typer.Option(
    "--depth", "-d", metavar="all|N", show_default=False,
    help="Rows of the table. Default: a row per residual block (and FPN level), with the stem and head layers; "
         "a model with no residual blocks is shown to depth 2. all: every module; N: modules nested deeper than N "
         "are folded into their ancestor (1 = top-level modules). JSON and CSV keep every layer whatever the depth.")]
UnitsOpt = Annotated[Optional[str], typer.Option(
    "--units", "-u", metavar="exact|auto|K|M|G", show_default=False,
    help="How counts are written: exact comma-grouped integers (the default), auto (K, M, G or T chosen per "
         "figure: 118.0M), or K, M or G for every figure. A short form always ends with its unit.")]
ConventionsOpt = Annotated[bool, typer.Option(
    "--conventions", help="Print the counting convention (MACs vs FLOPs, other ops, depth) in full, as "
                          "docs/conventions.md states it.")]
MemoryFlag = Annotated[Optional[bool], typer.Option(
    "--memory/--no-memory", show_default=False,
    help="The memory analysis: inference and SGD training-step peaks at the input's batch (see `memory`). "
         "On by default in the table; --memory adds it to json and csv too, with the bytes each layer "
         "saves for the backward.")]
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
    units: UnitsOpt = None,
    conventions: ConventionsOpt = False,
    counter: CounterOpt = "analytic",
    real: RealOpt = False,
    pad_to: common.PadTo = None,
    memory: MemoryFlag = None,
    *,
    options: dict[str, Any],
) -> None:
    """Shapes, params, MACs and receptive field per block (or per layer), with totals, depth and downsampling.

    Writes json (the engine's to_dict()), csv or markdown with --format or --output.

    Example: resnet-inspect summary resnet50 --depth all --units auto
    """
    from ..render.numbers import parse_units
    from ..render.depth import parse_depth

    output = common.output_path(output)
    fmt = output_format(format, output)
    view = View(parse_depth(depth), parse_units(units), conventions)
    if output is not None:
        from ..fileio import check_writable

        check_writable(output, force=force)  # fail before the work, not after it
    size = common.input_size(input)
    slow = f"Counting MACs with {counter}" if counter != "analytic" else "Running a real forward" if real else None
    built: list[Any] = []  # the module the trace ran on, which the memory analysis reuses
    with _working(slow):
        resolved = common.resolve(model, options)
        report = common.inspect_model(resolved, size, options, real=real, counter=counter, pad_to=pad_to,
                                      on_model=built.append)
    traced = _Traced(resolved, tuple(report.input_size), built[0] if built and not real else None)
    memory_report = _memory(traced) if memory else None
    if output is not None:
        from ..fileio import atomic_write

        written = atomic_write(output, _text(report, fmt, view, memory_report), force=force)
        common.console(stderr=True).print(f"Wrote the {fmt} summary of {report.model} to {written}.",
                                          markup=False, highlight=False)
    elif fmt == "table":
        from ..render.table import print_summary

        if memory is None:
            memory_report = _memory_by_default(traced)
        print_summary(report, common.console(), view.depth, units=view.units, conventions=view.conventions,
                      memory=memory_report)
    else:
        sys.stdout.write(_text(report, fmt, view, memory_report))


@dataclass(frozen=True)
class _Traced:
    """What the summary's trace resolved and, for a variant traced on meta, built: the memory
    analysis starts from it instead of resolving (a factory called, a checkpoint read) and building again."""

    resolved: Any
    size: tuple[int, ...]
    built: Any = None


def _memory_by_default(traced: _Traced) -> Any:
    """The table's two peak-memory rows, unasked for: for a model the memory analysis cannot follow
    (a trace that stops at a data-dependent operator, say) the row says why, and the summary's verdict
    stays its own. ``--memory`` asks for the analysis and then fails as any analysis does."""
    from ..errors import InputError

    try:
        return _memory(traced)
    except InputError as exc:
        return str(exc).split("\n")[0]
    except Exception as exc:  # noqa: BLE001 - an unasked-for extra never turns a summary into exit 3
        return (f"the memory analysis failed ({type(exc).__name__}); `resnet-inspect memory ... --train --debug` "
                "shows it")


def _memory(traced: _Traced) -> Any:
    from .memory import resolved_memory

    return resolved_memory(traced.resolved, traced.size, traced.built)


def _text(report: Any, fmt: str, view: View, memory_report: Any) -> str:
    """The summary as text, with the memory analysis when asked for (``--memory``)."""
    text = render_text(report, fmt, view)
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


@dataclass(frozen=True)
class View:
    """What the user asked to see: the rows (``--depth``), the number style and the conventions."""

    depth: int | str | None
    units: str = "exact"
    conventions: bool = False


def render_text(report: Any, fmt: str, view: View) -> str:
    """The summary as a string: json/csv/markdown, or the table as plain text (for a file).

    JSON and CSV keep every layer whatever the depth (they are for programs, which fold as they
    please); Markdown folds with ``--depth N`` and otherwise lists every layer too."""
    from ..render.export import render

    if fmt != "table":
        return render(report, fmt, view.depth if fmt == "markdown" and isinstance(view.depth, int) else None)
    from rich.console import Console

    from ..render.table import print_summary

    buffer = io.StringIO()
    print_summary(report, Console(file=buffer, width=120, force_terminal=False, no_color=True, highlight=False),
                  view.depth, units=view.units, conventions=view.conventions)  # type: ignore[arg-type]
    return buffer.getvalue()


@contextlib.contextmanager
def _working(message: str | None) -> Iterator[None]:
    """A spinner on stderr while slow work runs, only when stderr is a terminal."""
    if message is None:
        yield
        return
    status_console = common.console(stderr=True)
    if not status_console.is_terminal:
        yield
        return
    with status_console.status(f"{message}…"):
        yield
