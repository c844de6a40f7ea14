"""``resnet-inspect diff A B``: two variants, or one variant under two option sets, side by side.

Builder flags without a prefix apply to both sides; ``--a-<flag>`` and ``--b-<flag>`` to one.
"""
from __future__ import annotations

import sys
from typing import Annotated, Any, Optional

import typer

from ..errors import InputError
from . import app, common


SideInput = {side: Annotated[Optional[str], typer.Option(f"--{side}-input", help=f"{side.upper()} only: the input size.",
                                                        show_default=False)] for side in ("a", "b")}
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="table or json.")]
ExitCodeOpt = Annotated[bool, typer.Option("--exit-code", help="Exit with 1 when A and B differ (for CI).")]


@app.command()
@common.handle_errors
@common.with_build_flags("a", "b")
def diff(
    a: Annotated[str, typer.Argument(help="Model A: a variant name or package.module:factory.", show_default=False)],
    b: Annotated[str, typer.Argument(help="Model B (may be the same name with other --b-* flags).",
                                     show_default=False)],
    input: common.InputOpt = None,
    format: FormatOpt = "table",
    exit_code: ExitCodeOpt = False,
    pad_to: common.PadTo = None,
    a_input: SideInput["a"] = None,
    b_input: SideInput["b"] = None,
    *,
    options: dict[str, Any],
    a_options: dict[str, Any],
    b_options: dict[str, Any],
) -> None:
    """Compare two variants or option sets: differing layers, stride placement and totals.

    Unprefixed flags apply to both sides, --a-<flag>/--b-<flag> to one. Exit 0 (1 with --exit-code if they differ).

    Example: resnet-inspect diff resnet50 resnet50 --b-stride-in-1x1
    """
    if format not in ("table", "json"):
        raise InputError(f"Unknown format '{format}': diff prints table or json.")
    sides = [(name, {**options, **own}, common.input_size(size_text if size_text is not None else input))
             for name, own, size_text in ((a, a_options, a_input), (b, b_options, b_input))]
    from ..render import diff as render

    reports = [common.inspect_model(name, size, merged, pad_to=pad_to) for name, merged, size in sides]
    if format == "json":
        sys.stdout.write(render.to_json(*reports))
        found = render.differs(*reports)
    else:
        found = render.print_diff(*reports, common.console())
    if exit_code and found:
        raise typer.Exit(1)
