"""The ``resnet-inspect`` command line: one module per command, all thin.

Nothing here imports torch at import time, so ``--help`` and shell completion stay instant;
commands import the engine when they run.
"""
from __future__ import annotations

import os
import sys
from typing import Optional

import typer
import typer.core

from .. import process
from . import common


def _isatty(stream: object) -> bool:
    """A closed standard stream (``>&-``) is None in sys: not a terminal."""
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False


# typer draws help and usage errors with rich, in boxes. Piped (or captured by a test runner) they
# become click's plain text, like everything else this tool prints when it is not on a terminal.
if not (_isatty(sys.stdout) and _isatty(sys.stderr)):
    typer.core.HAS_RICH = False

#: The commands in the order people reach for them: look at a model, then compare, then guard it in CI.
#: A command not listed here follows, in the order it was registered.
COMMAND_ORDER = ("summary", "tree", "explain", "graph", "report", "list", "diff", "snapshot", "check")


class _ByUse(typer.core.TyperGroup):
    """The command group, listing its commands (in --help) by :data:`COMMAND_ORDER`."""

    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        names = super().list_commands(ctx)
        return sorted(names, key=lambda name: COMMAND_ORDER.index(name) if name in COMMAND_ORDER
                      else len(COMMAND_ORDER))


app = typer.Typer(
    name="resnet-inspect",
    cls=_ByUse,
    help="Build any ResNet (or ResNet+FPN) and see exactly what happens inside: shapes derived by "
         "formula and checked by a traced forward pass, params, MACs, receptive field, depth and "
         "downsampling.\n\n"
         # "\b" keeps click from re-flowing the lines below into one paragraph.
         "\b\nExamples, one per command:\n"
         "  resnet-inspect summary resnet50 --input 800x1344\n"
         "  resnet-inspect tree resnet50 --depth 2\n"
         "  resnet-inspect explain resnet50 layer2.0.conv2\n"
         "  resnet-inspect graph resnet50 --fpn retinanet out.svg\n"
         "  resnet-inspect report resnet50 -o report.html\n"
         "  resnet-inspect memory resnet50 --batch 8 --train --optimizer adamw\n"
         "  resnet-inspect list\n"
         "  resnet-inspect diff resnet50 resnet50 --b-stride-in-1x1\n"
         "  resnet-inspect snapshot resnet50 -o shapes/resnet50.json\n"
         "  resnet-inspect check shapes/*.json",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            installed = version("resnet-inspect")
        except PackageNotFoundError:  # run from a source tree that was never installed
            from .. import __version__ as installed
        typer.echo(f"resnet-inspect {installed}")
        raise typer.Exit()


@app.callback()
def _root(
    _version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                  help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-paragraph errors."),
    trust_pickle: bool = typer.Option(
        False, "--trust-pickle", help="Load checkpoints with torch.load(weights_only=False). This runs any code the "
        "file names: use it only for files you trust (see docs/security.md)."),
    max_checkpoint_size: Optional[str] = typer.Option(
        None, "--max-checkpoint-size", metavar="SIZE", show_default=False,
        help="The most data a checkpoint may hold, judged from its headers before it is read (default 4G; "
             "e.g. 8G, 512M). Guards against decompression bombs (see docs/security.md)."),
) -> None:
    common.STATE.debug = debug
    common.STATE.trust_pickle = trust_pickle
    common.STATE.max_checkpoint_size = max_checkpoint_size


from . import commands  # noqa: E402  (registers the commands on ``app``)

del commands


def main(fast_exit: bool = True) -> None:
    """Console-script entry point: run the command, then exit with its verdict.

    The exit code is settled by :mod:`resnet_inspect.process`: a closed pipe, a closed or full
    stdout, an odd encoding or a stop signal never turns into a traceback, and only a stop signal
    (128+N) or an unwritable report (2, for a run that was otherwise good) changes it.

    Tearing down an interpreter that has imported torch takes about 0.3 s on the benchmark
    machine (``python -c "import torch"`` against the same with ``os._exit(0)``): longer than
    tracing ResNet-152. Once a command has finished, its files are already written (atomically,
    and closed) and only its output remains to flush, so with ``fast_exit`` the process then ends
    at once with the command's exit code. Commands that never import torch exit normally.
    """
    restore = process.install()
    code = process.settle(_run())
    if fast_exit and "torch" in sys.modules:
        os._exit(code)
    restore()
    raise SystemExit(code)


def _run() -> int:
    """Run the app; its exit code (a stop signal counts as 130 until :func:`process.settle` says which)."""
    try:
        app()
    except SystemExit as exc:
        return _code(exc.code)
    except KeyboardInterrupt:  # a stop signal outside the command itself (parsing, or the exit)
        return 130
    except Exception as exc:  # an error outside any command's handle_errors: a bug, said in one paragraph
        common.show_traceback()
        common.report_bug(exc)
        return 3
    return 0


def _code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # sys.exit("message"): the message, and exit 1 as Python does
    return 1
