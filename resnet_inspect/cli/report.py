"""``resnet-inspect report MODEL [B] -o report.html``: one self-contained HTML page (two models: with their diff)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import InputError
from . import app, common

ModelsArg = Annotated[list[str], typer.Argument(
    metavar="MODEL [B]", show_default=False,
    help="A variant name, package.module:factory or a checkpoint file; a second model puts the two side by side "
         "with their diff.")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="The HTML file to write (atomically); "
                                                   "- or no -o means stdout.", show_default=False)]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite --output if it exists.")]
MemoryOpt = Annotated[bool, typer.Option(
    "--memory/--no-memory", help="The memory analysis (see `memory`): inference and SGD training-step peaks at the "
    "input's batch, and the bytes saved for the backward per layer, stage and block.")]


@app.command()
@common.handle_errors
@common.with_build_flags("a", "b")
def report(
    models: ModelsArg,
    input: common.InputOpt = None,
    output: OutputOpt = None,
    force: ForceOpt = False,
    pad_to: common.PadTo = None,
    memory: MemoryOpt = True,
    *,
    options: dict[str, Any],
    a_options: dict[str, Any],
    b_options: dict[str, Any],
) -> None:
    """One HTML file that needs no network: the diagram (zoom, pan, click a node for its layer), the
    sortable layer table, charts per stage and block, memory, downsampling, depth and outputs. With two
    models, both side by side and their diff; --a-<flag>/--b-<flag> apply to one side, as in diff.

    Example: resnet-inspect report resnet50 resnet50 --b-stride-in-1x1 -o report.html
    """
    if len(models) > 2:
        raise InputError(f"report takes one model, or two to compare, but got {len(models)}: {' '.join(models)}.")
    output = common.output_path(output)
    if output is not None:
        from ..fileio import check_writable

        check_writable(output, force=force)  # fail before the work, not after it
    size = common.input_size(input)
    from ..render.report import render_html

    own = (a_options, b_options) if len(models) == 2 else (a_options,)
    if len(models) == 1 and b_options:
        raise InputError("--b-<flag> options apply to a second model: give two, e.g. "
                         "resnet-inspect report resnet50 resnet50 --b-stride-in-1x1.")
    traced = [_trace(name, size, {**options, **side}, pad_to) for name, side in zip(models, own)]
    reports = [report for report, _, _ in traced]
    analyses = [_memory(resolved, size, built) for _, resolved, built in traced] if memory else None
    page = render_html(*reports, memory=analyses)
    if output is None:
        sys.stdout.write(page)
        return
    from ..fileio import atomic_write

    from ..render.table import model_title

    written = atomic_write(output, page, force=force)
    common.console(stderr=True).print(f"Wrote the HTML report of {' and '.join(map(model_title, reports))} to "
                                      f"{written}.", markup=False, highlight=False)


def _trace(target: str, size: tuple[int, ...] | None, options: dict[str, Any],
           pad_to: int | None) -> tuple[Any, Any, Any]:
    """The report of one model, with what its trace resolved and built (the memory analysis reuses both)."""
    resolved = common.resolve(target, options)
    built: list[Any] = []
    report = common.inspect_model(resolved, size, options, pad_to=pad_to, on_model=built.append)
    return report, resolved, built[0] if built else None


def _memory(resolved: Any, size: tuple[int, ...] | None, built: Any) -> Any:
    """The memory analysis ``summary --memory`` runs, or the sentence saying why there is none (a
    model with nothing to train still gets its report)."""
    from .memory import resolved_memory

    try:
        return resolved_memory(resolved, size, built)
    except InputError as exc:
        return f"No memory analysis: {exc}"
