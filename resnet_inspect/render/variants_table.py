"""The table of ``resnet-inspect list``: every variant, its structure and its closed-form figures.

Nothing here imports torch: the figures come from :mod:`resnet_inspect.closed_form`.
"""
from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from ..closed_form import Figures, figures
from ..plan import groups_and_width
from .fit import Fitted, Hanging, fits, without_column
from .table import print_table
from ..variants import ResNetSpec, get_spec, variants

def variant_rows() -> list[tuple[ResNetSpec, Figures]]:
    """Each named variant's default spec with its params and MACs at its own input size
    (``ResNetSpec.default_input``, the size every command uses when none is given), batch 1."""
    return [(spec, figures(spec, spec.default_input)) for spec in map(get_spec, variants())]


def gmacs_text(gmacs: float) -> str:
    """Two decimals, as torchvision's table; three below 1 G so that the CIFAR nets are not 0.04."""
    return f"{gmacs:.2f}" if gmacs >= 1 else f"{gmacs:.3f}"


def variants_table(console: Console) -> Table:
    """The variants with block, blocks per stage, groups × width, params, GMACs at their input, and source."""
    plain = not console.is_terminal
    table = Table(
        title=None if plain else "Variants",
        caption=("Params: every nn.Parameter (frozen norms hold buffers, not parameters). GMACs: multiply-"
                 "accumulates of convolutions and linear layers at the Input shown (3×Input×Input, each variant's "
                 "default in every command), batch 1, worked out in closed form: torchvision's 'GFLOPS' column; "
                 "FLOPs = 2 × MACs."),
        box=None if plain else box.SIMPLE_HEAD, header_style="bold", caption_justify="left",
        collapse_padding=True, pad_edge=False,
    )
    # Cells never wrap (a name or a count cut in two misleads); headers and the source may.
    table.add_column("Name", no_wrap=True, min_width=len("retinanet_r50_fpn"))
    table.add_column("Block", min_width=len("bottleneck"))
    table.add_column("Blocks per stage", min_width=len("3,4,23,3"))
    table.add_column("Groups × width", justify="right", min_width=len("1 × 128"))
    table.add_column("Params", justify="right", no_wrap=True, min_width=len("126,886,696"))
    table.add_column("GMACs", justify="right", min_width=len("22.75"))
    table.add_column("Input", justify="right", no_wrap=True)
    table.add_column("Source", overflow="fold")
    for spec, fig in variant_rows():
        table.add_row(spec.name, spec.block, ",".join(map(str, spec.layers)),
                      "{} × {}".format(*groups_and_width(spec)), f"{fig.params:,}",
                      gmacs_text(fig.gmacs), str(spec.default_input), spec.source)
    return table


def print_variants(console: Console) -> None:
    """Print the variants table: at its natural width when piped, so no row wraps; on a terminal,
    fitted to its width (render.fit) with the footnote wrapped below it. When the sources do not
    fit beside the figures, they follow the table as a list of their own, each with its variants."""
    table = variants_table(console)
    if not console.is_terminal:
        print_table(console, table)
        return
    footnote, table.caption = table.caption, None
    if fits(console, table, wrapped=False):
        console.print(table)
    else:
        narrower, sources = without_column(table, "Source")
        console.print(Fitted(narrower, wrap=()))  # headers wrap at words, cells never
        console.print(sources_text(table.columns[0]._cells, sources))
    console.print(Text(f"\n{footnote}", style="dim"))


def sources_text(names: list[Any], sources: list[Any]) -> Group:
    """``Source`` and, per source, the variants that come from it, in the table's order."""
    by_source: dict[str, list[str]] = {}
    for name, source in zip(names, sources):
        by_source.setdefault(str(source), []).append(str(name))
    lines = [Hanging(Text(f"  {source}: {', '.join(members)}"), indent=4) for source, members in by_source.items()]
    return Group(Text("\nSource", style="bold"), *lines)
