"""Which files ``check`` reads: a snapshot file as named, a folder as the snapshot files in it.

A folder stands for every ``*.json`` file directly in it (not in its subfolders), in the order of
their names' code points, so the order is the same on every machine and in every locale. Hidden
files (a name starting with ``.``) are left out, as the shell's ``shapes/*.json`` leaves them out.
Every ``*.json`` file there is taken for a snapshot: a JSON file that is not one (a config file, a
pytest-plugin snapshot of a model object) fails as it would when named on its own (exit code 2),
rather than being skipped, so that a damaged snapshot can never pass unnoticed. A folder with no
``*.json`` file in it is an error of its own: a check of nothing must not pass.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

from .. import reading
from .schema import SnapshotError


def snapshot_files(paths: Sequence[str]) -> list[str | SnapshotError]:
    """The files to check for ``paths``, in order, each once; a folder that gives none is its error."""
    found: list[str | SnapshotError] = []
    seen: set[str] = set()
    for item in (item for path in paths for item in _expand(path)):
        if isinstance(item, str):
            if os.path.normpath(item) in seen:
                continue
            seen.add(os.path.normpath(item))
        found.append(item)
    return found


def _expand(path: str) -> list[str | SnapshotError]:
    """``path`` itself, unless it is a folder: then its ``*.json`` files, or the error that it has none."""
    try:
        is_folder = reading.kind(path) == "a directory"
    except OSError:
        is_folder = False  # reading the path as a file says what is wrong with it
    if not is_folder:
        return [path]
    try:
        names = sorted(entry.name for entry in os.scandir(path)
                       if entry.name.endswith(".json") and not entry.name.startswith("."))
    except OSError as exc:
        return [SnapshotError(path, f"is a folder that cannot be listed: {reading.reason(exc)}.")]
    if not names:
        return [SnapshotError(path, "is a folder with no snapshot files (*.json) in it. Write one with "
                                    "`resnet-inspect snapshot MODEL -o FILE`, or name the files to check.")]
    return [os.path.join(path, name) for name in names]
