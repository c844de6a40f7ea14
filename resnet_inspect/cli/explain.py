"""``resnet-inspect explain MODEL LAYER``: one layer's arithmetic, with the numbers filled in."""
from __future__ import annotations

from typing import Annotated, Any

import typer

from . import app, common

LayerArg = Annotated[str, typer.Argument(help="A qualified layer name as `tree` prints it, e.g. layer2.0.conv2.",
                                         show_default=False)]


@app.command()
@common.handle_errors
@common.with_build_flags()
def explain(
    model: common.ModelArg,
    layer: LayerArg,
    input: common.InputOpt = None,
    pad_to: common.PadTo = None,
    *,
    options: dict[str, Any],
) -> None:
    """One layer's shape arithmetic, MACs formula, receptive field, and why it (doesn't) downsample.

    Example: resnet-inspect explain resnet50 layer2.0.conv2 --stride-in-1x1
    """
    size = common.input_size(input)
    from ..render.explain import print_explain

    report = common.inspect_model(model, size, options, pad_to=pad_to)
    print_explain(report, layer, common.console())
