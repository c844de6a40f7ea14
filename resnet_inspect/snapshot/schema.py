"""The snapshot file: its schema, the JSON it is written as, and reading it back with validation.

:func:`loads` checks every key and type and says where a file is wrong (file, line, column, key) in
a :class:`SnapshotError`. Reading and validating a file imports no torch.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import operator
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from .. import reading, trust
from ..checkpoint import CHECKPOINT_SUFFIXES
from ..errors import InputError
from ..variants import FPNSpec

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
    # Where things sit in the file this snapshot was read from (1-based lines), for annotations;
    # found in the text when first asked (a check that finds no difference never asks).
    layer_lines: Mapping[Key, int] = field(default_factory=dict, compare=False, repr=False)
    key_lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

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
    key_lines = LineIndex(functools.partial(_key_lines, text))
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
    layers: list[dict[str, Any]] = list(check.field(doc, "layers", list, "layers"))
    if not _layers_pass(layers):  # then one by one, to say which layer is wrong and how
        _check_layers(check, layers, _layer_lines(text, len(layers)))
    return Snapshot(model=model, built_from=built_from, options=options, input_size=tuple(input_size),
                    layers=layers, outputs={k: list(v) for k, v in outputs.items()},
                    totals={k: totals[k] for k in TOTAL_FIELDS},
                    layer_lines=LineIndex(functools.partial(_layer_line_index, text, layers)),
                    key_lines=key_lines)


def _layer_line_index(text: str, layers: list[dict[str, Any]]) -> dict[Key, int]:
    """Each layer's line, by its key (none when the file does not keep one layer per line)."""
    return dict(zip(map(layer_key, layers), _layer_lines(text, len(layers)) or ()))


class LineIndex(Mapping[Any, int]):
    """Line numbers found in a snapshot's text the first time one is asked for."""

    def __init__(self, find: Callable[[], dict[Any, int]]) -> None:
        self._find: Callable[[], dict[Any, int]] | None = find
        self._lines: dict[Any, int] = {}

    def _found(self) -> dict[Any, int]:
        if self._find is not None:
            self._lines, self._find = self._find(), None
        return self._lines

    def __getitem__(self, key: Any) -> int:
        return self._found()[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._found())

    def __len__(self) -> int:
        return len(self._found())


def _check_layers(check: _Checker, layers: list[Any], lines: list[int] | None) -> None:
    """Validate each layer in turn; the first one wrong raises :class:`SnapshotError`."""
    seen: dict[Key, int] = {}
    for i, layer in enumerate(layers):
        check.layer(layer, f"layers[{i}]", lines[i] if lines else None)
        key = layer_key(layer)
        if key in seen:
            raise check.error(f"layer {key[0] or '(root)'} call {key[1]} appears twice (first as "
                              f"layers[{seen[key]}]).", f"layers[{i}]", lines[i] if lines else None)
        seen[key] = i


_layer_fields = operator.itemgetter(*LAYER_FIELDS)


def _layers_pass(layers: list[Any]) -> bool:
    """Whether :func:`_check_layers` would accept every layer, tested a column at a time.

    A decoded JSON value's type is exactly one of dict, list, str, int, float, bool and None, so
    ``type(v) is int`` is the checker's "an integer, not a boolean". A file that fails here is
    checked again layer by layer, which finds the first error and says where it is.
    """
    if not set(map(type, layers)) <= {dict} or not set(map(len, layers)) <= {len(LAYER_FIELDS)}:
        return False
    if not layers:
        return True
    try:  # every field present, and (with the lengths above) no other
        rows = list(map(_layer_fields, layers))
    except KeyError:
        return False
    call, macs, name, output_shapes, params, kind = zip(*rows)
    counts = call + macs + params
    if set(map(type, counts)) != {int} or min(counts) < 0 or set(map(type, name + kind)) != {str}:
        return False
    if set(map(type, output_shapes)) != {list}:
        return False
    shapes = list(chain.from_iterable(output_shapes))
    if not set(map(type, shapes)) <= {list}:
        return False
    dims = list(chain.from_iterable(shapes))
    if not set(map(type, dims)) <= {int} or min(dims, default=0) < 0:
        return False
    return len(set(zip(name, call))) == len(layers)  # no (name, call) twice


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


