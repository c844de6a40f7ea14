"""Taking a snapshot (trace a model, keep its shape table), rebuilding the model a snapshot names,
and writing the file atomically. torch is imported only when a model is traced."""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import trust
from ..errors import InputError
from ..fileio import atomic_write
from ..resolve import Resolved, _load_factory, import_root, resolve
from ..variants import _VARIANTS, IMAGENET_INPUT, ResNetSpec, get_spec, unknown_name_error
from .schema import TOTAL_FIELDS, Snapshot, SnapshotError, _option_from_json, _option_to_json

# -- taking a snapshot ---------------------------------------------------------------------------

def default_input(model: str | ResNetSpec) -> tuple[int, int, int, int]:
    """The input a snapshot of a variant (or a spec) uses when none is given: the spec's own
    (``ResNetSpec.default_input``, as every command uses), or 224 for anything else."""
    if isinstance(model, str):
        if model not in _VARIANTS:
            return 1, 3, IMAGENET_INPUT, IMAGENET_INPUT
        model = get_spec(model)
    return 1, 3, model.default_input, model.default_input


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
    from ..analysis.inspect import shape_table

    if isinstance(model, str):  # resolved (and a variant's options validated) here, once
        limits = {} if max_bytes is None else {"max_bytes": max_bytes}
        model = resolve(model, options, trust_pickle=trust_pickle, **limits)
    name, built_from, target = _target(model, options, relative_to)
    size = input_size if input_size is not None else _default_size(target, built_from)
    snap = from_report(shape_table(target, size, pad_to=pad_to), model=name, built_from=built_from)
    if built_from == "factory":
        snap.options = {}  # a factory takes no builder options, whatever spec its model carries
    elif built_from == "checkpoint":  # what rebuilds it: the options the weights cannot show, as given
        snap.options = {key: _option_to_json(key, value) for key, value in options.items()}
    return snap


def _default_size(target: Any, built_from: str) -> tuple[int, int, int, int]:
    """A variant's own input, and a checkpoint's (that of the variant it is recognised as); 224 for a
    model of your own, as ``summary`` uses."""
    if isinstance(target, ResNetSpec):  # a variant, with its builder options (resnet50 --fpn retinanet)
        return default_input(target)
    spec = getattr(target, "spec", None)
    if built_from == "checkpoint" and isinstance(spec, ResNetSpec):
        return default_input(spec)
    return 1, 3, IMAGENET_INPUT, IMAGENET_INPUT


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
    """The snapshot of an inspection report, or of a trace's ``ShapeTable`` (``report.options`` are the
    builder options)."""
    layers = [{
        "call": rec.call,
        "macs": int(rec.macs),
        "name": rec.name,
        "output_shapes": [list(map(int, shape)) for shape in rec.output_shapes],
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
        # Imported from the snapshot's project, so that check gives one verdict from any folder.
        root = import_root(snapshot.model.partition(":")[0], folder)
        resolved = Resolved(snapshot.model, "factory", _load_factory(snapshot.model, options, vet=vet, root=root))
        return take(resolved, snapshot.input_size)
    from ..checkpoint import load_model

    path = folder / snapshot.model
    if not os.path.isfile(path):  # os.path: a name too long for the OS is "no such file", not an OSError
        what = "a regular file" if os.path.lexists(path) else "there"
        raise InputError(f"{path} is not {what} (a snapshot names its checkpoint relative to its own folder). Put the "
                         "checkpoint there, or snapshot the variant it was recognised as instead (`resnet-inspect "
                         "summary CHECKPOINT` prints it).")
    model, inference = load_model(path, trust_pickle=trust_pickle, options=options)
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


