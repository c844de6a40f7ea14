"""Comparing two snapshots (with tolerances on the counts) and checking snapshot files: the verdict
and exit code of ``resnet-inspect check``."""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from .schema import TOLERANCE_FIELDS, TOTAL_FIELDS, Key, Snapshot, SnapshotError, layer_key, load
from .take import rebuild, write

# -- comparing -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tolerance:
    """How far a count may move before it counts as a change: absolute, or a percentage of the old value."""

    field: str
    value: float
    relative: bool

    def allows(self, old: int, new: int) -> bool:
        limit = self.value * abs(old) / 100 if self.relative else self.value
        return abs(new - old) <= limit

    def __str__(self) -> str:
        return f"{self.field}={self.value:g}{'%' if self.relative else ''}"


def parse_tolerance(text: str) -> Tolerance:
    """``macs=0.5%`` (relative) or ``params=10`` (absolute)."""
    match = re.fullmatch(r"\s*([a-z_]+)\s*=\s*(\d+(?:\.\d+)?)\s*(%?)\s*", text)
    if match is None:
        raise InputError(f"Malformed tolerance '{text}': give FIELD=VALUE or FIELD=VALUE%, e.g. macs=0.5% or "
                         "params=10.")
    name, value, percent = match.groups()
    if name not in TOLERANCE_FIELDS:
        raise InputError(f"A tolerance applies to {', '.join(TOLERANCE_FIELDS)}, not '{name}'. Shapes, types and "
                         "layer names always match exactly.")
    return Tolerance(name, float(value), bool(percent))


def parse_tolerances(texts: list[str] | None) -> dict[str, Tolerance]:
    """Tolerances by field; a field given twice is an error."""
    result: dict[str, Tolerance] = {}
    for text in texts or []:
        tolerance = parse_tolerance(text)
        if tolerance.field in result:
            raise InputError(f"The tolerance for {tolerance.field} is given twice ({result[tolerance.field]} and "
                             f"{tolerance}).")
        result[tolerance.field] = tolerance
    return result


@dataclass
class Change:
    """One value that differs: ``old`` is the snapshot's, ``new`` the model's (None: absent)."""

    field: str
    old: Any
    new: Any


@dataclass
class LayerChange:
    """A layer in both, with the fields that differ."""

    old: dict[str, Any]
    new: dict[str, Any]
    changes: list[Change]
    line: int | None = None


@dataclass
class LayerOnlyIn:
    """A layer on one side only; ``line`` is its line in the file (or the nearest one for an added layer)."""

    layer: dict[str, Any]
    line: int | None = None


@dataclass
class SnapshotDiff:
    """What differs between a snapshot (old) and the model now (new), in layer order."""

    old: Snapshot
    new: Snapshot
    build: list[Change] = field(default_factory=list)
    added: list[LayerOnlyIn] = field(default_factory=list)
    removed: list[LayerOnlyIn] = field(default_factory=list)
    changed: list[LayerChange] = field(default_factory=list)
    outputs: list[Change] = field(default_factory=list)
    totals: list[Change] = field(default_factory=list)
    tolerated: int = 0  # values that differ by no more than their tolerance

    @property
    def ok(self) -> bool:
        return not (self.build or self.added or self.removed or self.changed or self.outputs or self.totals)


def _differs(name: str, old: Any, new: Any, tolerances: dict[str, Tolerance], diff: SnapshotDiff) -> bool:
    if old == new:
        return False
    tolerance = tolerances.get(name)
    if tolerance is not None and isinstance(old, int) and isinstance(new, int) and tolerance.allows(old, new):
        diff.tolerated += 1
        return False
    return True


def _anchor(old: Snapshot, matched: list[Key]) -> int | None:
    """The line an added layer is shown at: that of the last layer before it that both have (and
    whose line is known), else that of "layers".

    Looked up only for an added layer, so a check that finds none never reads the file's lines.
    """
    lines = old.layer_lines
    if lines:
        for key in reversed(matched):
            line = lines.get(key)
            if line is not None:
                return line
    return old.key_lines.get("layers")


def compare(old: Snapshot, new: Snapshot, tolerances: dict[str, Tolerance] | None = None) -> SnapshotDiff:
    """Join the layers by ``(name, call)`` and list what was added, removed and changed."""
    tolerances = tolerances or {}
    diff = SnapshotDiff(old, new)
    for name in ("model", "built_from", "options", "input_size"):
        a, b = getattr(old, name), getattr(new, name)
        if a != b:
            diff.build.append(Change(name, a, b))
    if old.layers != new.layers:  # the same layers in the same order: none added, removed or changed
        _compare_layers(old, new, tolerances, diff)
    for name in sorted(set(old.outputs) | set(new.outputs)):
        a, b = old.outputs.get(name), new.outputs.get(name)
        if a != b:
            diff.outputs.append(Change(name, a, b))
    diff.totals = [Change(name, old.totals[name], new.totals[name]) for name in TOTAL_FIELDS
                   if _differs(name, old.totals[name], new.totals[name], tolerances, diff)]
    return diff


def _compare_layers(old: Snapshot, new: Snapshot, tolerances: dict[str, Tolerance], diff: SnapshotDiff) -> None:
    """The layers added, removed and changed, into ``diff``."""
    old_layers = {layer_key(layer): layer for layer in old.layers}
    new_keys = {layer_key(layer) for layer in new.layers}
    diff.removed = [LayerOnlyIn(layer, old.layer_lines.get(layer_key(layer)))
                    for layer in old.layers if layer_key(layer) not in new_keys]
    matched: list[Key] = []  # the layers of both, so far
    for layer in new.layers:
        key = layer_key(layer)
        before = old_layers.get(key)
        if before is None:
            diff.added.append(LayerOnlyIn(layer, _anchor(old, matched)))
            continue
        matched.append(key)
        if before == layer:  # no field differs
            continue
        changes = [Change(name, before[name], layer[name]) for name in ("type", "output_shapes", "params", "macs")
                   if _differs(name, before[name], layer[name], tolerances, diff)]
        if changes:
            diff.changed.append(LayerChange(before, layer, changes, old.layer_lines.get(key)))


# -- checking files ------------------------------------------------------------------------------

@dataclass
class CheckResult:
    """The outcome for one file: ``match``, ``changed``, ``updated``, ``error`` or ``bug``."""

    file: str
    status: str
    diff: SnapshotDiff | None = None
    error: SnapshotError | None = None


def check_file(path: str | os.PathLike[str], *, update: bool = False,
               tolerances: dict[str, Tolerance] | None = None, allow_factories: Sequence[str] = (),
               trust_pickle: bool = False) -> CheckResult:
    """Rebuild the model a snapshot file names and compare; with ``update``, rewrite it if it differs.

    A factory the file names runs only when allowed (see :func:`rebuild`); otherwise the file's
    result is an error that says how to allow it."""
    file = str(path)
    try:
        old = load(path)
        new = rebuild(old, file, allow_factories=allow_factories, trust_pickle=trust_pickle)
    except SnapshotError as exc:
        return CheckResult(file, "error", error=exc)
    diff = compare(old, new, tolerances)
    if diff.ok:
        return CheckResult(file, "match", diff)
    if not update:
        return CheckResult(file, "changed", diff)
    try:
        write(new, path)
    except InputError as exc:
        return CheckResult(file, "error", diff, SnapshotError(file, f"could not be updated: {exc}"))
    return CheckResult(file, "updated", diff)


# A file's exit code; a batch exits with the worst: a bug beats bad input beats a difference.
STATUS_CODES = {"match": 0, "updated": 0, "changed": 1, "error": 2, "bug": 3}


def exit_code(results: list[CheckResult]) -> int:
    """3 when checking a file hit a bug, 2 when a file could not be read or rebuilt, 1 when one
    differs (and was not updated), else 0."""
    return max((STATUS_CODES[r.status] for r in results), default=0)
