"""Shape tables for CI: write a snapshot, read it back, rebuild the model it names, compare.

A snapshot is a JSON file that says how to rebuild a model (``built_from``: a variant name, a
checkpoint file, or ``package.module:factory``; builder options; the input's exact shape) and what
the model looked like then: per layer its name, type, output shapes, params and MACs, plus the
outputs and the totals.

A snapshot is data. Rebuilding a variant or a checkpoint (loaded with the restricted unpickler)
runs no code from outside resnet-inspect and torch. A factory is imported and called only when
the caller allows it (:mod:`resnet_inspect.trust`: ``--allow-factory`` or the project's
pyproject.toml); ``built_from`` must agree with the ``"model"`` field, or the file is malformed.

The file is meant for git: keys sorted, one layer per line, no timestamps, no absolute paths, a
trailing newline. The same model always gives the same bytes, so an unchanged model never rewrites
its file. Writes go through :func:`resnet_inspect.fileio.atomic_write` (temp file + rename), so
readers, and a second writer, see either the old file or the new one, never a mix.

Layers are joined by ``(name, call)``: a module's qualified name, and which call of it (a shared
module, or a functional op such as ``layer1.0:relu`` run several times, has calls 0, 1, 2 ...).

The package has four parts: :mod:`.schema` (the file's schema, reading and validation),
:mod:`.take` (taking, rebuilding and writing), :mod:`.compare` (comparison and checking files) and
:mod:`.folders` (a folder given to ``check`` stands for the snapshot files in it), plus
:mod:`.parallel`, the worker processes of ``check --jobs`` (imported by the command line only).
Every public name is importable from here, as ``from resnet_inspect import snapshot as snapshots``.
It imports torch only when it traces a model; reading and validating a file is cheap.
"""
from __future__ import annotations

from .compare import (
    STATUS_CODES, Change, CheckResult, LayerChange, LayerOnlyIn, SnapshotDiff, Tolerance, check_file, compare,
    exit_code, parse_tolerance, parse_tolerances,
)
from .folders import snapshot_files
from .schema import (
    BUILT_FROM, DOCUMENT_KEYS, FORMAT, LAYER_FIELDS, MAX_INPUT_DIM, MAX_INPUT_DIMS, MAX_SNAPSHOT_BYTES,
    SCHEMA_VERSION, TOLERANCE_FIELDS, TOTAL_FIELDS, Key, Snapshot, SnapshotError, layer_key, load, loads,
)
from .take import checkpoint_reference, default_input, dumps, from_report, rebuild, take, write
from ..variants import FPN_INPUT  # the default input of a net with a feature pyramid, decided in one place

__all__ = [
    "BUILT_FROM", "DOCUMENT_KEYS", "FORMAT", "FPN_INPUT", "LAYER_FIELDS", "MAX_INPUT_DIM", "MAX_INPUT_DIMS",
    "MAX_SNAPSHOT_BYTES", "SCHEMA_VERSION", "STATUS_CODES", "TOLERANCE_FIELDS", "TOTAL_FIELDS", "Change",
    "CheckResult", "Key", "LayerChange", "LayerOnlyIn", "Snapshot", "SnapshotDiff", "SnapshotError", "Tolerance",
    "check_file", "checkpoint_reference", "compare", "default_input", "dumps", "exit_code", "from_report", "layer_key",
    "load", "loads", "parse_tolerance", "parse_tolerances", "rebuild", "snapshot_files", "take", "write",
]
