"""``resnet-inspect graph [MODEL] OUT``: a Graphviz diagram of the blocks, shortcuts and pyramid."""
from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import InputError
from ..variants import FPN_KINDS
from . import app, common

DEFAULT_MODEL = "resnet50"
DEFAULT_FPN = "retinanet"  # maskrcnn-benchmark's RetinaNet pyramid, P3-P7
INSTALL_HINT = ("Install Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz; "
                "others: https://graphviz.org/download/)")

PathsArg = Annotated[Optional[list[str]], typer.Argument(
    metavar="[MODEL] OUT", show_default=False,
    help="The model (default resnet50: a variant name or package.module:factory), then the output file; "
         "its extension picks the format: .svg, .png, .pdf or .dot.")]
DepthOpt = Annotated[int, typer.Option("--depth", "-d", help="1 = one node per block, 2 = the convs inside "
                                       "each block, 3 = every layer (norms and activations too).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite OUT if it exists.")]


@app.command()
@common.handle_errors
@common.with_build_flags()
def graph(
    paths: PathsArg = None,
    input: common.InputOpt = None,
    depth: DepthOpt = 1,
    force: ForceOpt = False,
    pad_to: common.PadTo = None,
    *,
    options: dict[str, Any],
) -> None:
    """Diagram of the stem, the stages (one node per block, a projection marked on its block), the
    head and, with --fpn, the pyramid with each level's shape and stride.

    --fpn takes maskrcnn or retinanet; `--fpn OUT` alone means the retinanet pyramid (P3-P7).

    Example: resnet-inspect graph --fpn out.svg
    """
    model, out, fpn = split_paths(paths or [], options.get("fpn"))
    if fpn is not None:
        options["fpn"] = fpn
    fmt = output_format(out)
    if depth < 1:
        raise InputError(f"--depth must be 1 or more, not {depth}.")
    from ..fileio import atomic_write, check_writable

    check_writable(out, force=force)  # fail before the work, not after it
    size = common.input_size(input)
    with _working(f"Tracing {model}") as status:
        from ..render.graph import build_graph, counts, render

        report = common.inspect_model(model, size, options, pad_to=pad_to)
        diagram = build_graph(report, depth=depth)
        if fmt == "dot":
            data = render(diagram, fmt)
        else:
            status(f"Laying out {report.model} with Graphviz")
            data = _render_or_fall_back(diagram, fmt, out, force)
    written = atomic_write(out, data, force=force)
    parts = counts(report)
    pyramid = f", {parts['levels']} pyramid levels" if parts["levels"] else ""
    drawn = (f"{parts['blocks']} blocks, {parts['shortcuts']} non-identity shortcuts{pyramid}" if parts["blocks"]
             else f"no residual stages: {parts['layers']} layers")
    common.console(stderr=True).print(f"Wrote the {fmt} diagram of {report.model} ({drawn}) to {written}.",
                                      markup=False, highlight=False)


def split_paths(paths: list[str], fpn: str | None) -> tuple[str, Path, str | None]:
    """``[OUT]`` or ``[MODEL, OUT]``: the model (resnet50 when omitted), the output path and the
    pyramid kind. ``graph --fpn out.svg`` is the issue's own example: typer options cannot take
    an optional value, so --fpn took the file name; it means the default (retinanet) pyramid."""
    if fpn is not None and fpn not in FPN_KINDS and Path(fpn).suffix and len(paths) < 2:
        paths, fpn = [*paths, fpn], DEFAULT_FPN
    if len(paths) == 1 and names_a_model(paths[0]):
        raise InputError(f"OUT is missing: graph takes [MODEL] OUT, and '{paths[0]}' is read as the model (OUT's "
                         "extension names the format: .svg, .png, .pdf or .dot). Give the file to write after it, "
                         f"e.g. resnet-inspect graph {paths[0]} {Path(paths[0]).stem or 'out'}.svg.")
    if len(paths) == 1:
        return DEFAULT_MODEL, Path(paths[0]), fpn
    if len(paths) == 2:
        return paths[0], Path(paths[1]), fpn
    if not paths:
        raise InputError("graph needs an output file: resnet-inspect graph [MODEL] OUT, e.g. "
                         "resnet-inspect graph resnet50 resnet50.svg.")
    raise InputError(f"graph takes at most two arguments, [MODEL] OUT, but got {len(paths)}: "
                     f"{' '.join(paths)}.")


def names_a_model(argument: str) -> bool:
    """Whether a lone argument is a model rather than OUT: a variant name, ``package.module:factory``, a
    checkpoint file, or anything without an extension (OUT's extension names the format)."""
    from ..checkpoint.loading import CHECKPOINT_SUFFIXES
    from ..variants import variants

    suffix = Path(argument).suffix.lower()
    return argument in variants() or ":" in argument or not suffix or suffix in CHECKPOINT_SUFFIXES


def output_format(out: Path) -> str:
    """The diagram format named by OUT's extension."""
    from ..render.graph import format_for

    fmt = format_for(out)
    if fmt is None:
        shown = f"'{out.suffix}'" if out.suffix else "no extension"
        raise InputError(f"Cannot tell the diagram format of {out} from {shown}: end the file name with .svg, "
                         ".png, .pdf or .dot.")
    return fmt


def _render_or_fall_back(diagram: Any, fmt: str, out: Path, force: bool) -> bytes:
    """Render with Graphviz's ``dot``; without it, write the DOT source beside OUT and say how to
    install Graphviz."""
    import graphviz

    from ..render.graph import render

    if shutil.which("dot") is not None:
        try:
            return render(diagram, fmt)
        except graphviz.ExecutableNotFound:
            pass
    from ..fileio import atomic_write

    source = out.with_suffix(".dot")
    missing = f"Graphviz's 'dot' program was not found, so {out} could not be rendered."
    try:
        atomic_write(source, diagram.source, force=force)
    except InputError as exc:
        raise InputError(f"{missing} Writing its DOT source instead failed too: {exc} {INSTALL_HINT}.") from exc
    raise InputError(f"{missing} The diagram's DOT source is in {source}. {INSTALL_HINT}, then re-run this command "
                     f"or run: dot -T{fmt} {source} -o {out}")


@contextlib.contextmanager
def _working(message: str) -> Iterator[Any]:
    """A spinner on stderr while slow work runs, only when stderr is a terminal; yields a function
    that changes its message."""
    status_console = common.console(stderr=True)
    if not status_console.is_terminal:
        yield lambda text: None
        return
    with status_console.status(f"{message}…") as status:
        yield lambda text: status.update(f"{text}…")
