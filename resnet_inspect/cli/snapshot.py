"""``resnet-inspect snapshot MODEL -o FILE`` and ``resnet-inspect check FILE...``: shape tables as a CI check."""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from ..errors import InputError
from ..text import sentence
from . import app, common

if TYPE_CHECKING:
    from ..snapshot import SnapshotError

FORMATS = ("text", "json", "github")
SnapshotInputOpt = Annotated[Optional[str], typer.Option(
    "--input", "-i", help=f"224, 800x1344, 3x224x224 or 2x3x224x224. Default: the variant's own "
    f"({common.DEFAULT_INPUTS}).", show_default=False)]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the snapshot to this file "
                                                   "(atomically) instead of stdout; - means stdout.", show_default=False,
                                                   dir_okay=False)]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite --output if it exists.")]
FilesArg = Annotated[list[str], typer.Argument(
    metavar="FILE", show_default=False, help="Snapshot files written by `resnet-inspect snapshot`, or folders of "
    "them: a folder means every *.json file directly in it, in name order, each of which must be a snapshot.")]
UpdateOpt = Annotated[bool, typer.Option("--update", help="Rewrite the files whose model changed (and only those), "
                                         "and say which; then exit 0.")]
CheckFormatOpt = Annotated[str, typer.Option("--format", "-f", help="text, json, or github (GitHub Actions "
                                             "::error annotations on the snapshot's lines).")]
AllowFactoryOpt = Annotated[Optional[list[str]], typer.Option(
    "--allow-factory", metavar="PATTERN", help="Let snapshots whose model is a factory matching PATTERN import and "
    "run it: a module path (mypkg.*, mypkg.models) or module:factory (mypkg.models:build_*), * and ? as "
    "wildcards. Repeatable; adds to allow-factories in the project's pyproject.toml [tool.resnet-inspect]. "
    "Other factories are not run (exit 2). See docs/security.md.", show_default=False)]
JobsOpt = Annotated[str, typer.Option(
    "--jobs", "-j", metavar="N|auto", help="Check N files at once, in worker processes forked from this one "
    "(they share its import of torch); auto is one per usable CPU. -j 1 checks them one after another in this "
    "process. The output is in the order of the files either way.")]
ToleranceOpt = Annotated[Optional[list[str]], typer.Option(
    "--tolerance", "-t", help="Let a count move without failing: FIELD=VALUE (absolute) or FIELD=VALUE% "
    "(relative), for params, macs, trainable_params or buffers. Repeat for several fields.", show_default=False)]


@app.command()
@common.handle_errors
@common.with_build_flags()
def snapshot(
    model: common.ModelArg,
    input: SnapshotInputOpt = None,
    output: OutputOpt = None,
    force: ForceOpt = False,
    pad_to: common.PadTo = None,
    *,
    options: dict[str, Any],
) -> None:
    """Write MODEL's shape table (per-layer shapes, params, MACs; outputs; totals) for `check`.

    The file also holds the build options and input size, so it alone rebuilds the model. It is
    stable for git: sorted keys, one layer per line, no timestamps or absolute paths.

    Example: resnet-inspect snapshot resnet50 -o shapes/resnet50.json
    """
    from .. import snapshot as snapshots

    output = common.output_path(output)
    if output is not None:
        from ..fileio import check_writable

        check_writable(output, force=force)  # fail before the work, not after it
    size = common.input_size(input) if input is not None else None
    resolved = common.resolve(model, options)  # a checkpoint's inference is reported on stderr
    # A checkpoint is recorded relative to the snapshot's folder (the current one for stdout).
    snap = snapshots.take(resolved, size, pad_to=pad_to, relative_to=output.parent if output else None, **options)
    if output is None:
        sys.stdout.write(snapshots.dumps(snap))
        return
    snapshots.write(snap, output)
    size_text = "×".join(map(str, snap.input_size))
    common.console(stderr=True).print(f"Wrote the shape snapshot of {model} at {size_text} "
                                      f"({len(snap.layers)} layers) to {output}.", markup=False, highlight=False,
                                      soft_wrap=True)


@app.command()
@common.handle_errors
def check(
    files: FilesArg,
    update: UpdateOpt = False,
    format: CheckFormatOpt = "text",
    tolerance: ToleranceOpt = None,
    allow_factory: AllowFactoryOpt = None,
    jobs: JobsOpt = "auto",
) -> None:
    """Rebuild the model of each snapshot file and compare: exit 0 when all match, 1 with a diff when
    one differs, 2 when a file is malformed or cannot be rebuilt, 3 on a bug. Every file is checked;
    the worst outcome decides (3 over 2 over 1).

    A snapshot is data: a factory it names (package.module:factory) is imported and run only when
    --allow-factory or the project's pyproject.toml allows it. A checkpoint it names is loaded
    safely (the global --trust-pickle aside).

    A folder stands for the *.json files directly in it, in name order; each must be a snapshot.

    The files are checked side by side, one per CPU (--jobs), and reported in their order.

    Example: resnet-inspect check shapes/ --format github --tolerance macs=0.5%
    """
    from contextlib import closing

    from .. import snapshot as snapshots
    from .. import trust
    from ..snapshot import parallel

    if format not in FORMATS:
        raise InputError(f"Unknown format '{format}': use one of {', '.join(FORMATS)}.")
    workers = parallel.parse_jobs(jobs)
    tolerances = snapshots.parse_tolerances(tolerance)
    patterns = [trust.check_pattern(pattern, "--allow-factory") for pattern in allow_factory or []]
    results = []
    items = snapshots.snapshot_files(files)

    @functools.cache
    def printer() -> tuple[Any, Any]:
        """The text renderer, and rich's console for text: imported once, while the workers check (or, without
        workers, at the first result)."""
        from ..render import snapshot_diff

        return snapshot_diff, common.console() if format == "text" else None

    checked = parallel.check_files(items, workers, lambda file: _check_one(file, update, tolerances, patterns),
                                   debug=common.STATE.debug, while_waiting=printer)
    with closing(checked):  # an early end (Ctrl-C, an error) kills and reaps the workers
        for result in checked:  # each is checked and reported, whatever came before
            snapshot_diff, out = printer()
            results.append(result)
            if format == "github":
                for line in snapshot_diff.github_annotations(result):
                    print(line, flush=True)
            elif format == "text":
                snapshot_diff.print_result(result, out)
    code = snapshots.exit_code(results)
    snapshot_diff, out = printer()
    if format == "json":
        sys.stdout.write(snapshot_diff.results_json(results, code))
    elif format == "github":
        print(snapshot_diff.summary_line(results))
    else:
        snapshot_diff.print_summary(results, out)
    raise typer.Exit(code)


def _check_one(file: str | SnapshotError, update: bool, tolerances: dict[str, Any], allow_factories: list[str]) -> Any:
    """One file's outcome (``file`` is a SnapshotError for a folder with nothing to check). An error
    that escapes the snapshot module is this file's outcome too: bad input (exit 2) or, for anything
    else, a bug (exit 3), never the end of the batch."""
    from .. import snapshot as snapshots

    if isinstance(file, snapshots.SnapshotError):
        return snapshots.CheckResult(file.file, "error", error=file)
    try:
        return snapshots.check_file(file, update=update, tolerances=tolerances, allow_factories=allow_factories,
                                    trust_pickle=common.STATE.trust_pickle)
    except InputError as exc:
        return snapshots.CheckResult(file, "error", error=snapshots.SnapshotError(file, str(exc)))
    except Exception as exc:
        common.show_traceback()
        return snapshots.CheckResult(file, "bug", error=snapshots.SnapshotError(
            file, f"internal error: {type(exc).__name__}: {sentence(exc)} This is a bug in resnet-inspect; re-run "
            "with --debug for the traceback and report it."))
