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

This module imports torch only when it traces a model; reading and validating a file is cheap.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from . import trust
from .checkpoint import CHECKPOINT_SUFFIXES
from .errors import InputError
from . import reading
from .fileio import atomic_write
from .resolve import Resolved, resolve
from .variants import _VARIANTS, FPNSpec, ResNetSpec, get_spec, unknown_name_error

FORMAT = "resnet-inspect shape snapshot"
SCHEMA_VERSION = 1
# How the file's "model" rebuilds: a variant name, package.module:factory, a checkpoint file (its path
# relative to the snapshot's folder), or a model object (only its test can rebuild it).
BUILT_FROM = ("variant", "factory", "checkpoint", "object")
DOCUMENT_KEYS = ("built_from", "format", "input_size", "layers", "model", "options", "outputs", "schema_version",
                 "totals")
# What each layer line holds, and which totals are kept. The layers' params and MACs sum to the
# totals (container records carry no cost of their own), which the tests check.
# Display labels (res2, "stride 8") are left out: they derive from the names and shapes kept here.
LAYER_FIELDS = ("call", "macs", "name", "output_shapes", "params", "type")
TOTAL_FIELDS = ("buffers", "macs", "params", "trainable_params")
# Fields a tolerance may apply to: counts. Shapes, types and names must match exactly.
TOLERANCE_FIELDS = ("buffers", "macs", "params", "trainable_params")
# Input used when none is given: the variant's own (224, or 32 for the CIFAR nets); a
# detection backbone gets a square multiple of 32, small enough to keep CI fast.
FPN_INPUT = 512
# A model of your own takes any input shape (an MLP's (8, 16), a Conv1d's (2, 4, 100)); at most this many dims.
MAX_INPUT_DIMS, MAX_INPUT_DIM = 8, 1_000_000  # as resnet_inspect.inputs bounds a size given on the command line

Key = tuple[str, int]
#: The largest snapshot file ``check`` reads (see docs/security.md, "What is bounded").
MAX_SNAPSHOT_BYTES = 64 * 2**20


class SnapshotError(InputError):
    """A snapshot file that cannot be used: where it is wrong (file, line, column, key) and how."""

    def __init__(self, file: str, reason: str, *, line: int | None = None, column: int | None = None,
                 key: str | None = None) -> None:
        self.file, self.reason, self.line, self.column, self.key = file, reason, line, column, key
        where = file
        if line is not None:
            where += f", line {line}" + (f", column {column}" if column is not None else "")
        if key is not None:
            where += f", at {key}"
        super().__init__(f"{where}: {reason}")


@dataclass
class Snapshot:
    """A model's shape table plus what rebuilds it. ``layers`` holds plain JSON-ready dicts."""

    model: str
    built_from: str  # one of BUILT_FROM
    options: dict[str, Any]
    input_size: tuple[int, ...]  # the input tensor's exact shape (N, C, H, W for a variant)
    layers: list[dict[str, Any]]
    outputs: dict[str, list[int]]
    totals: dict[str, int]
    # Where things sit in the file this snapshot was read from (1-based lines), for annotations.
    layer_lines: dict[Key, int] = field(default_factory=dict, compare=False, repr=False)
    key_lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def document(self) -> dict[str, Any]:
        """The JSON document, with the schema's identification."""
        return {
            "built_from": self.built_from,
            "format": FORMAT,
            "input_size": list(self.input_size),
            "layers": self.layers,
            "model": self.model,
            "options": self.options,
            "outputs": self.outputs,
            "schema_version": SCHEMA_VERSION,
            "totals": self.totals,
        }


def layer_key(layer: dict[str, Any]) -> Key:
    return layer["name"], layer["call"]


# -- taking a snapshot ---------------------------------------------------------------------------

def default_input(model: str | ResNetSpec) -> tuple[int, int, int, int]:
    """The input a snapshot of a variant (or a spec) uses when none is given (224 for anything else).

    A name is read from the variant table as it stands, without its builder options."""
    if isinstance(model, ResNetSpec):
        fpn, side = model.fpn, model.default_input
    elif model in _VARIANTS:
        fpn, side = _VARIANTS[model].get("fpn"), _VARIANTS[model].get("default_input", 224)
    else:
        return 1, 3, 224, 224
    return 1, 3, FPN_INPUT if fpn is not None else side, FPN_INPUT if fpn is not None else side


def take(model: Any, input_size: Any = None, *, pad_to: int | None = None,
         relative_to: str | os.PathLike[str] | None = None, trust_pickle: bool = False,
         max_bytes: int | None = None, **options: Any) -> Snapshot:
    """Trace ``model`` and snapshot it.

    ``model`` is a variant name, a checkpoint file, ``package.module:factory``, a spec, an
    ``nn.Module``, or a :class:`~resnet_inspect.resolve.Resolved`. As in :func:`resnet_inspect.inspect`,
    a tuple ``input_size`` is the exact input shape for a module of your own (``(8, 16)`` for an
    MLP); a variant reads it as NCHW (``224``, ``(3, 224, 224)``). A checkpoint is recorded by its
    path relative to ``relative_to`` (the folder the snapshot file goes in; default: the current
    directory), and loaded as :func:`resnet_inspect.resolve.resolve` loads it (``trust_pickle``,
    ``max_bytes``). With a padded input (``pad_to``) the snapshot records the padded size.
    """
    from .analysis.inspect import inspect

    if isinstance(model, str):  # resolved (and a variant's options validated) here, once
        limits = {} if max_bytes is None else {"max_bytes": max_bytes}
        model = resolve(model, options, trust_pickle=trust_pickle, **limits)
    name, built_from, target = _target(model, options, relative_to)
    size = input_size if input_size is not None else _default_size(model, target, built_from)
    report = inspect(target, size, pad_to=pad_to)
    snap = from_report(report, model=name, built_from=built_from)
    if built_from == "factory":
        snap.options = {}  # a factory takes no builder options, whatever spec its model carries
    elif built_from == "checkpoint":  # what rebuilds it: the options the weights cannot show, as given
        snap.options = {key: _option_to_json(key, value) for key, value in options.items()}
    return snap


def _default_size(model: Any, target: Any, built_from: str) -> tuple[int, int, int, int]:
    """A variant's own input, and a checkpoint's (that of the variant it is recognised as); 224 for a
    model of your own, as ``summary`` uses."""
    if built_from == "variant":
        return default_input(model.target if isinstance(model, Resolved) else target)
    if isinstance(target, ResNetSpec):
        return default_input(target)
    spec = getattr(target, "spec", None)
    return default_input(spec) if built_from == "checkpoint" and isinstance(spec, ResNetSpec) else (1, 3, 224, 224)


def _target(model: Any, options: dict[str, Any], relative_to: Any) -> tuple[str, str, Any]:
    """(name written in the file, how it was built, what ``inspect`` takes: a spec or a module)."""
    if isinstance(model, Resolved):
        if model.kind == "checkpoint":
            return checkpoint_reference(model.target, relative_to), "checkpoint", model.model
        return model.target, model.kind, model.model  # a variant's options are in its spec already
    if isinstance(model, ResNetSpec):
        if options:
            raise InputError("Give builder options to get_spec(), not alongside a spec.")
        # A spec that its name and options rebuild is a variant; one edited by hand is an object.
        rebuilt = model.name in _VARIANTS and get_spec(model.name, **model.to_options()) == model
        return model.name, "variant" if rebuilt else "object", model
    if options:
        raise InputError(f"Builder options ({', '.join(sorted(options))}) apply to variant names, "
                         "not to a model you pass in.")
    return type(model).__name__, "object", model


def checkpoint_reference(path: str | os.PathLike[str], relative_to: Any = None) -> str:
    """A checkpoint's path as a snapshot records it: relative to the snapshot's folder, with ``/``."""
    base = os.path.abspath(relative_to if relative_to is not None else os.curdir)
    try:
        relative = os.path.relpath(os.path.abspath(path), base)
    except ValueError:  # Windows: another drive
        raise InputError(f"The checkpoint {path} and the snapshot's folder {base} are on different drives, so the "
                         "snapshot cannot name the checkpoint by a relative path.") from None
    return Path(relative).as_posix()


def from_report(report: Any, *, model: str | None = None, built_from: str = "object") -> Snapshot:
    """The snapshot of an inspection report (``report.options`` are the builder options)."""
    layers = [{
        "call": rec.call,
        "macs": int(rec.macs),
        "name": rec.name,
        "output_shapes": [[int(d) for d in shape] for shape in rec.output_shapes],
        "params": int(rec.params),
        "type": rec.type,
    } for rec in report.layers]
    return Snapshot(
        model=model or report.model,
        built_from=built_from,
        options={key: _option_to_json(key, value) for key, value in report.options.items()},
        input_size=tuple(int(d) for d in report.input_size),  # type: ignore[arg-type]
        layers=layers,
        outputs={name: [int(d) for d in shape] for name, shape in report.outputs.items()},
        totals={key: int(report.totals[key]) for key in TOTAL_FIELDS},
    )


def _option_to_json(key: str, value: Any) -> Any:
    if isinstance(value, FPNSpec):
        return dataclasses.asdict(value)
    if isinstance(value, tuple):
        return list(value)
    if value is None or isinstance(value, (bool, int, float, str, list)):
        return value
    raise InputError(f"The builder option {key}={value!r} cannot be written to a snapshot file.")


def _option_from_json(key: str, value: Any) -> Any:
    if key == "fpn" and isinstance(value, dict):
        return FPNSpec(**value)
    return value


def rebuild(snapshot: Snapshot, file: str = "<snapshot>", *, allow_factories: Sequence[str] = (),
            trust_pickle: bool = False) -> Snapshot:
    """Build and trace the model a snapshot names, with its options, at its exact input shape.

    The file's folder anchors a checkpoint's relative path and the search for the project's
    pyproject.toml. A factory runs only when ``allow_factories`` or that pyproject.toml allows it
    (:mod:`resnet_inspect.trust`); a checkpoint is loaded with the restricted unpickler unless
    ``trust_pickle``.
    """
    folder = Path(file).parent
    if snapshot.built_from == "object":
        raise SnapshotError(file, f"it was written from a {snapshot.model} object (by the pytest plugin's "
                            "shape_snapshot fixture), so the file alone cannot rebuild the model; the test that "
                            "wrote it checks it.", line=snapshot.key_lines.get("built_from"), key="built_from")
    vet = _require_allowed(snapshot, file, folder, allow_factories) if snapshot.built_from == "factory" else None
    try:
        options = {key: _option_from_json(key, value) for key, value in snapshot.options.items()}
        return _rebuild(snapshot, folder, options, trust_pickle, vet)
    except SnapshotError:
        raise
    except (InputError, TypeError) as exc:
        raise SnapshotError(file, f"cannot rebuild {snapshot.model} from it: {exc}",
                            line=snapshot.key_lines.get("model")) from exc


def _require_allowed(snapshot: Snapshot, file: str, folder: Path, allow_factories: Sequence[str]
                     ) -> Callable[[Any], None]:
    """Refuse (exit 2) a factory that neither ``--allow-factory`` nor the project's pyproject.toml allows.

    Returns the check for the callable itself, run after its module is imported and before it is
    called: it must be defined in the package it is named from, or be allowed where it is defined
    (``from os import abort`` in an allowed module does not make ``abort`` a factory)."""
    line = snapshot.key_lines.get("model")
    try:
        settings = trust.find_project_settings(folder)
    except InputError as exc:
        raise SnapshotError(file, f"it names the factory {snapshot.model}, and the project settings that would "
                            f"allow it cannot be read: {exc}", line=line, key="model") from None
    if trust.allowed_by(snapshot.model, tuple(allow_factories), settings) is None:
        raise SnapshotError(file, trust.refusal(snapshot.model, settings, folder.absolute()), line=line, key="model")

    def vet(factory: Any) -> None:
        problem = trust.origin_problem(snapshot.model, factory, tuple(allow_factories), settings)
        if problem is not None:
            raise SnapshotError(file, problem, line=line, key="model")

    return vet


def _rebuild(snapshot: Snapshot, folder: Path, options: dict[str, Any], trust_pickle: bool,
             vet: Callable[[Any], None] | None) -> Snapshot:
    """Rebuild by what ``built_from`` says, never by guessing from the model string."""
    if snapshot.built_from == "variant":
        if snapshot.model not in _VARIANTS:
            raise unknown_name_error(snapshot.model)
        return take(snapshot.model, snapshot.input_size, **options)
    if snapshot.built_from == "factory":
        from .resolve import _load_factory

        resolved = Resolved(snapshot.model, "factory", _load_factory(snapshot.model, options, vet=vet))
        return take(resolved, snapshot.input_size)
    from .resolve import load_checkpoint_model

    path = folder / snapshot.model
    if not os.path.isfile(path):  # os.path: a name too long for the OS is "no such file", not an OSError
        what = "a regular file" if os.path.lexists(path) else "there"
        raise InputError(f"{path} is not {what} (a snapshot names its checkpoint relative to its own folder). Put the "
                         "checkpoint there, or snapshot the variant it was recognised as instead (`resnet-inspect "
                         "summary CHECKPOINT` prints it).")
    model, inference = load_checkpoint_model(path, options, trust_pickle=trust_pickle)
    snap = take(Resolved(str(path), "checkpoint", model, inference), snapshot.input_size, **options)
    snap.model = snapshot.model
    return snap


# -- writing -------------------------------------------------------------------------------------

def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(", ", ": "))


def dumps(snapshot: Snapshot) -> str:
    """The file's text: sorted keys, one layer per line, a trailing newline."""
    items = sorted(snapshot.document().items())
    lines = ["{"]
    for i, (key, value) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        if key == "layers":
            lines.append('  "layers": [')
            lines.extend(f"    {_compact(layer)}{',' if j < len(value) - 1 else ''}" for j, layer in enumerate(value))
            lines.append(f"  ]{comma}")
        else:
            lines.append(f"  {json.dumps(key)}: {_compact(value)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write(snapshot: Snapshot, path: str | os.PathLike[str]) -> bool:
    """Write ``snapshot`` to ``path`` atomically unless the file already holds these exact bytes.

    Returns True when the file was written. An unchanged file is not touched (same bytes, same mtime).
    """
    target = Path(path)
    text = dumps(snapshot)
    try:
        if target.read_bytes() == text.encode("utf-8"):
            return False
    except OSError:
        pass  # missing or unreadable: atomic_write says what is wrong if it cannot write either
    atomic_write(target, text, force=True)
    return True


# -- reading -------------------------------------------------------------------------------------

def load(path: str | os.PathLike[str]) -> Snapshot:
    """Read and validate a snapshot file; :class:`SnapshotError` says what is wrong and where."""
    file = str(path)
    try:
        found = reading.kind(path)
    except OSError as exc:
        raise SnapshotError(file, f"cannot be read: {reading.reason(exc)}.") from None
    if found is None:
        raise SnapshotError(file, "no such file. Write it with `resnet-inspect snapshot MODEL -o FILE`.")
    if found == "a directory":
        raise SnapshotError(file, "is a directory, not a snapshot file.")
    if found != "a regular file":
        raise SnapshotError(file, f"is {found}, not a snapshot file (only regular files are read: a pipe or a "
                                  "device could block or never end).")
    try:
        raw = reading.read_bounded(path, MAX_SNAPSHOT_BYTES)
    except reading.TooLarge as exc:
        raise SnapshotError(file, f"is {exc.size:,} bytes or more, over the {MAX_SNAPSHOT_BYTES:,} a snapshot may "
                                  "have (the deepest model the builder makes, 1,000 bottleneck blocks a stage, "
                                  "takes about 6 MB), so it is not one.") from None
    except OSError as exc:
        raise SnapshotError(file, f"cannot be read: {reading.reason(exc)}.") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SnapshotError(file, f"is not a JSON text file (byte {exc.start} is not UTF-8).") from None
    return loads(text, file)


def loads(text: str, file: str = "<snapshot>") -> Snapshot:
    """Parse and validate a snapshot's text (``file`` names it in error messages)."""
    if not text.strip():
        raise SnapshotError(file, "is empty, not a shape snapshot.")
    try:
        # A byte-order mark, as some Windows editors write, is allowed.
        doc = json.loads(text.lstrip("\ufeff"), object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise SnapshotError(file, f"has the key {exc.key!r} twice in one object; JSON readers would silently keep "
                            "one of them, so the file is refused (was it merged by hand?).") from None
    except json.JSONDecodeError as exc:
        raise SnapshotError(file, _json_problem(text, exc), line=exc.lineno, column=exc.colno) from None
    except RecursionError:
        raise SnapshotError(file, "is not a shape snapshot: its JSON is nested too deeply.") from None
    except ValueError as exc:  # Python's guard against integers of more than 4300 digits
        digits = re.search(r"has (\d+) digits", str(exc))
        what = f"a number of {int(digits.group(1)):,} digits" if digits else "a number too long to read"
        raise SnapshotError(file, f"is not a shape snapshot: it holds {what} (Python reads at most 4,300), and no "
                            "count in a snapshot comes near that.") from None
    if not isinstance(doc, dict):
        raise SnapshotError(file, f"holds a JSON {_json_type(doc)}, not a shape snapshot object.")
    key_lines = _key_lines(text)
    check = _Checker(file, key_lines)
    if "format" not in doc and "schema_version" not in doc:
        raise SnapshotError(file, 'is JSON but not a resnet-inspect shape snapshot: it has no "format" or '
                            '"schema_version" key.')
    fmt = check.field(doc, "format", str, "format")
    if fmt != FORMAT:
        raise check.error(f'its "format" is {fmt!r}, not {FORMAT!r}: this is not a resnet-inspect shape snapshot.',
                          "format")
    version = check.field(doc, "schema_version", int, "schema_version")
    if version != SCHEMA_VERSION:
        newer = " It was written by a newer resnet-inspect; upgrade to read it." if version > SCHEMA_VERSION else ""
        raise check.error(f"schema version {version} is not one this resnet-inspect reads (it reads version "
                          f"{SCHEMA_VERSION}).{newer}", "schema_version")
    unknown = sorted(set(doc) - set(DOCUMENT_KEYS))
    if unknown:
        raise check.error(f"unknown key {unknown[0]!r} for schema version {SCHEMA_VERSION}.", unknown[0])
    built_from = check.field(doc, "built_from", str, "built_from")
    if built_from not in BUILT_FROM:
        raise check.error(f"built_from must be one of {', '.join(BUILT_FROM)}, not {built_from!r}.", "built_from")
    model = check.field(doc, "model", str, "model")
    if not model:
        raise check.error("the model name is empty.", "model")
    disagreement = _model_disagrees(built_from, model)
    if disagreement:
        raise check.error(disagreement, "model")
    options = check.field(doc, "options", dict, "options")
    input_size = check.shape(check.field(doc, "input_size", list, "input_size"), "input_size")
    if built_from == "variant" and (len(input_size) != 4 or any(d < 1 for d in input_size)):
        raise check.error(f"input_size must be four positive integers (N, C, H, W), not {input_size}.", "input_size")
    if not 1 <= len(input_size) <= MAX_INPUT_DIMS or any(not 1 <= d <= MAX_INPUT_DIM for d in input_size):
        raise check.error(f"input_size must be 1 to {MAX_INPUT_DIMS} positive integers of at most {MAX_INPUT_DIM:,} "
                          f"(the input's exact shape), not {_short(input_size)}.", "input_size")
    outputs = check.field(doc, "outputs", dict, "outputs")
    for name, shape in outputs.items():
        check.shape(shape, f"outputs.{name}")
    totals = check.field(doc, "totals", dict, "totals")
    extra = sorted(set(totals) - set(TOTAL_FIELDS))
    if extra:
        raise check.error(f"unknown key {extra[0]!r} in totals (schema version {SCHEMA_VERSION} keeps "
                          f"{', '.join(TOTAL_FIELDS)}).", "totals")
    for key in TOTAL_FIELDS:
        check.count(check.field(totals, key, int, f"totals.{key}"), f"totals.{key}")
    layer_docs = check.field(doc, "layers", list, "layers")
    lines = _layer_lines(text, len(layer_docs))
    layers: list[dict[str, Any]] = []
    seen: dict[Key, int] = {}
    for i, layer in enumerate(layer_docs):
        layers.append(check.layer(layer, f"layers[{i}]", lines[i] if lines else None))
        key = layer_key(layer)
        if key in seen:
            raise check.error(f"layer {key[0] or '(root)'} call {key[1]} appears twice (first as "
                              f"layers[{seen[key]}]).", f"layers[{i}]", lines[i] if lines else None)
        seen[key] = i
    return Snapshot(model=model, built_from=built_from, options=options, input_size=tuple(input_size),
                    layers=layers, outputs={k: list(v) for k, v in outputs.items()},
                    totals={k: totals[k] for k in TOTAL_FIELDS},
                    layer_lines={layer_key(layer): line for layer, line in zip(layers, lines or [])},
                    key_lines=key_lines)


def _model_disagrees(built_from: str, model: str) -> str | None:
    """Why ``model`` cannot be what ``built_from`` says it is (None when they agree)."""
    shown = json.dumps(model)
    is_file = model.lower().endswith(CHECKPOINT_SUFFIXES) or "/" in model or "\\" in model
    if built_from == "variant" and ":" in model:
        return (f'built_from is "variant", but the model {shown} names a factory (package.module:factory); a '
                'variant snapshot names a variant, such as "resnet50", and never imports code.')
    if built_from == "variant" and is_file:
        return (f'built_from is "variant", but the model {shown} names a file; a snapshot of a checkpoint has '
                'built_from "checkpoint".')
    if built_from == "factory" and not trust.is_factory_reference(model):
        return (f'built_from is "factory", but the model {shown} is not package.module:factory (dotted Python '
                "names, a colon, then the factory's name).")
    if built_from == "checkpoint":
        absolute = PurePosixPath(model).is_absolute() or bool(PureWindowsPath(model).drive) or model.startswith("\\")
        if absolute or not model.lower().endswith(CHECKPOINT_SUFFIXES):
            return (f'built_from is "checkpoint", but the model {shown} is not the path of a checkpoint file '
                    f"({', '.join(CHECKPOINT_SUFFIXES)}) relative to the snapshot's folder.")
    return None


class _Checker:
    """Validation with key paths (``layers[3].macs``) and, where known, line numbers."""

    _TYPES = {str: "a string", int: "an integer", list: "a list", dict: "an object"}

    def __init__(self, file: str, key_lines: dict[str, int]) -> None:
        self.file, self.key_lines = file, key_lines

    def error(self, reason: str, key: str, line: int | None = None) -> SnapshotError:
        if line is None:
            line = self.key_lines.get(re.split(r"[.\[]", key)[0])
        return SnapshotError(self.file, reason, line=line, key=key)

    def field(self, doc: dict[str, Any], name: str, kind: type, key: str, line: int | None = None) -> Any:
        if name not in doc:
            parent = key.rsplit(".", 1)[0] if "." in key else None
            inside = f" in {parent}" if parent else ""
            raise self.error(f"the required key {name!r} is missing{inside}.", key, line)
        value = doc[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(f"{name} must be {self._TYPES[kind]}, not {_json_type(value)} {_short(value)}.", key, line)
        return value

    def count(self, value: int, key: str, line: int | None = None) -> int:
        if value < 0:
            raise self.error(f"{key.rsplit('.', 1)[-1]} must not be negative ({value}).", key, line)
        return value

    def shape(self, value: Any, key: str, line: int | None = None) -> list[int]:
        if not isinstance(value, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in value):
            raise self.error(f"a shape must be a list of non-negative integers, not {_short(value)}.", key, line)
        return value

    def layer(self, layer: Any, key: str, line: int | None) -> dict[str, Any]:
        if not isinstance(layer, dict):
            raise self.error(f"a layer must be an object, not {_json_type(layer)} {_short(layer)}.", key, line)
        kinds = {"call": int, "macs": int, "name": str, "output_shapes": list, "params": int, "type": str}
        for name in LAYER_FIELDS:
            self.field(layer, name, kinds[name], f"{key}.{name}", line)
        unknown = sorted(set(layer) - set(LAYER_FIELDS))
        if unknown:
            raise self.error(f"unknown layer key {unknown[0]!r}.", f"{key}.{unknown[0]}", line)
        for name in ("call", "macs", "params"):
            self.count(layer[name], f"{key}.{name}", line)
        for j, shape in enumerate(layer["output_shapes"]):
            self.shape(shape, f"{key}.output_shapes[{j}]", line)
        return layer


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads`` hook: an object that names a key twice is an error, not "the last one wins"."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def _json_problem(text: str, exc: json.JSONDecodeError) -> str:
    """What a JSON syntax error most likely means for a snapshot file."""
    body = text.strip()
    if exc.pos == len(text) - len(text.lstrip()) and not body.startswith(("{", "[")):
        return f"is not JSON: it starts with {body[:20]!r}, where a shape snapshot starts with '{{'."
    detail = re.sub(r"( starting)? at$", "", exc.msg)  # "Unterminated string starting at": line and column follow
    if exc.msg == "Extra data":
        extra = text.lstrip("\ufeff")[exc.pos:].strip()[:20]
        return f"is not valid JSON: more text follows the snapshot's closing '}}' ({extra!r}); two snapshots " \
               "pasted together, or a stray edit?"
    if not body.endswith("}"):
        return f"is not valid JSON ({detail}): the file ends early, so it was probably truncated."
    return f"is not valid JSON ({detail})."


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}.get(type(value), type(value).__name__)


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _key_lines(text: str) -> dict[str, int]:
    """Line of each top-level key, as the writer lays them out (two-space indent)."""
    lines: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        match = re.match(r'^ {0,2}"([a-z_]+)"\s*:', line)
        if match and match.group(1) not in lines:
            lines[match.group(1)] = number
    return lines


def _layer_lines(text: str, count: int) -> list[int] | None:
    """Line of each layer when the file keeps one layer object per line (as the writer does)."""
    start = None
    found: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if start is None:
            if re.match(r'^"layers"\s*:\s*\[$', stripped):
                start = number
            continue
        if stripped.startswith("]"):
            break
        if stripped.startswith("{"):
            found.append(number)
    return found if start is not None and len(found) == count else None


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


def compare(old: Snapshot, new: Snapshot, tolerances: dict[str, Tolerance] | None = None) -> SnapshotDiff:
    """Join the layers by ``(name, call)`` and list what was added, removed and changed."""
    tolerances = tolerances or {}
    diff = SnapshotDiff(old, new)
    for name in ("model", "built_from", "options", "input_size"):
        a, b = getattr(old, name), getattr(new, name)
        if a != b:
            diff.build.append(Change(name, a, b))
    old_layers = {layer_key(layer): layer for layer in old.layers}
    new_keys = {layer_key(layer) for layer in new.layers}
    diff.removed = [LayerOnlyIn(layer, old.layer_lines.get(layer_key(layer)))
                    for layer in old.layers if layer_key(layer) not in new_keys]
    anchor = old.key_lines.get("layers")
    for layer in new.layers:
        key = layer_key(layer)
        before = old_layers.get(key)
        if before is None:
            diff.added.append(LayerOnlyIn(layer, anchor))
            continue
        anchor = old.layer_lines.get(key, anchor)
        changes = [Change(name, before[name], layer[name]) for name in ("type", "output_shapes", "params", "macs")
                   if _differs(name, before[name], layer[name], tolerances, diff)]
        if changes:
            diff.changed.append(LayerChange(before, layer, changes, old.layer_lines.get(key)))
    for name in sorted(set(old.outputs) | set(new.outputs)):
        a, b = old.outputs.get(name), new.outputs.get(name)
        if a != b:
            diff.outputs.append(Change(name, a, b))
    diff.totals = [Change(name, old.totals[name], new.totals[name]) for name in TOTAL_FIELDS
                   if _differs(name, old.totals[name], new.totals[name], tolerances, diff)]
    return diff


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
