"""``resnet-inspect list``: every variant with its block, stages, width and figures.

The params and GMACs are worked out in closed form (:mod:`resnet_inspect.closed_form`), so this
command never imports torch and answers at once.
"""
from __future__ import annotations

from . import app, common


@app.command("list")
@common.handle_errors
def list_variants() -> None:
    """The variants, their structure, params and GMACs at their default input, and where each comes from.

    Example: resnet-inspect list
    """
    from ..render.variants_table import print_variants

    print_variants(common.console())
