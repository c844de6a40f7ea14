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


@app.command()
@common.handle_errors
@common.with_build_flags()
def report(
    models: ModelsArg,
    input: common.InputOpt = None,
    output: OutputOpt = None,
    force: ForceOpt = False,
    pad_to: common.PadTo = None,
    *,
    options: dict[str, Any],
) -> None:
    """One HTML file that needs no network: the diagram (zoom, pan, click a node for its layer), the
    sortable layer table, charts per stage and block, downsampling, depth and outputs.

    Example: resnet-inspect report resnet50 -o report.html
    """
    if len(models) > 2:
        raise InputError(f"report takes one model, or two to compare, but got {len(models)}: {' '.join(models)}.")
    output = common.output_path(output)
    if output is not None:
        from ..fileio import check_writable

        check_writable(output, force=force)  # fail before the work, not after it
    size = common.input_size(input)
    from ..render.report import render_html

    reports = [common.inspect_model(name, size, options, pad_to=pad_to) for name in models]
    page = render_html(*reports)
    if output is None:
        sys.stdout.write(page)
        return
    from ..fileio import atomic_write

    written = atomic_write(output, page, force=force)
    common.console(stderr=True).print(f"Wrote the HTML report of {' and '.join(r.model for r in reports)} to "
                                      f"{written}.", markup=False, highlight=False)
