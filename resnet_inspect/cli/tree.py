"""``resnet-inspect tree MODEL``: the module hierarchy with output shapes and params."""
from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from ..errors import InputError
from . import app, common

DepthOpt = Annotated[Optional[int], typer.Option("--depth", "-d", help="Collapse modules nested deeper than this "
                                                 "(1 = stages and stem layers, 2 = blocks).", show_default=False)]


@app.command()
@common.handle_errors
@common.with_build_flags()
def tree(
    model: common.ModelArg,
    input: common.InputOpt = None,
    depth: DepthOpt = None,
    pad_to: common.PadTo = None,
    *,
    options: dict[str, Any],
) -> None:
    """The module hierarchy, each node with its output shape and its subtree's params and MACs.

    Example: resnet-inspect tree resnet50 --depth 2
    """
    if depth is not None and depth < 1:
        raise InputError(f"--depth must be 1 or more, not {depth}.")
    size = common.input_size(input)
    from ..render.tree import print_tree

    report = common.inspect_model(model, size, options, pad_to=pad_to)
    print_tree(report, common.console(), depth)
