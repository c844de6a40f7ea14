"""``resnet-inspect list``: every variant with its block, stages, width and figures."""
from __future__ import annotations

from . import app, common


@app.command("list")
@common.handle_errors
def list_variants() -> None:
    """The variants, their structure and where each comes from.

    Example: resnet-inspect list
    """
    from ..render.table import print_variants

    print_variants(common.console())
