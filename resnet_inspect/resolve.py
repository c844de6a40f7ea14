"""What MODEL names, turned into something to trace: a variant, a checkpoint's model, a factory's model.

This is library work, used alike by the CLI, shape snapshots, the pytest plugin and the API; nothing
here prints. The CLI reports a checkpoint's inference on stderr (``cli/common.describe_inference``).

- A variant name is validated with its builder options, once, and returned as its spec (the
  engine builds it, on the meta device).
- A checkpoint file (:data:`~resnet_inspect.checkpoint.CHECKPOINT_SUFFIXES`) is loaded with the
  restricted unpickler (``trust_pickle`` lifts it) and its ResNet inferred from names and shapes.
- ``package.module:factory`` imports the module (the current directory first on ``sys.path``) and
  calls the factory: the caller has decided that this code may run. A snapshot's factory is
  imported from the snapshot's own project (:func:`import_root`), wherever ``check`` runs.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import reading
from .checkpoint import CHECKPOINT_SUFFIXES, MAX_CHECKPOINT_BYTES, load_model
from .errors import InputError
from .inputs import parse_input_size
from .text import article, sentence
from .variants import _VARIANTS, ResNetSpec, get_spec, unknown_name_error

KINDS = ("variant", "checkpoint", "factory")
# The keywords of :func:`resnet_inspect.analysis.inspect.inspect` that are not builder options.
ENGINE_KEYWORDS = ("real", "counter", "pad_to", "label", "dtype", "mode", "input_data", "on_model")


@dataclass(frozen=True)
class Resolved:
    """A resolved MODEL, validated once: ``model`` is the variant's :class:`ResNetSpec` (the engine
    builds it, on the meta device) or an ``nn.Module``; ``kind`` is one of :data:`KINDS`."""

    target: str  # what the user gave
    kind: str
    model: Any
    inference: Any = None  # checkpoint.Inference for a recognised state_dict; None otherwise

    @property
    def spec(self) -> ResNetSpec | None:
        """The variant's spec, or the one a built model carries (a recognised checkpoint's)."""
        spec = self.model if isinstance(self.model, ResNetSpec) else getattr(self.model, "spec", None)
        return spec if isinstance(spec, ResNetSpec) else None

    @property
    def label(self) -> str | None:
        """The report's name: the variant's own (None), else what the user gave."""
        return None if self.kind == "variant" else self.target

    @property
    def default_input(self) -> tuple[int, int, int, int] | None:
        """A model recognised as a variant runs at that variant's own size (32x32 for a CIFAR net),
        as its name would; None leaves the engine's default."""
        spec = self.spec
        return None if self.kind == "variant" or spec is None else parse_input_size(spec.default_input)


def resolve(target: str, options: dict[str, Any], *, trust_pickle: bool = False,
            max_bytes: int = MAX_CHECKPOINT_BYTES) -> Resolved:
    """A variant name (its spec, validated with ``options`` here and nowhere else), the model a
    checkpoint file holds, or a module from ``pkg.mod:factory``. ``max_bytes`` bounds what a
    checkpoint may hold."""
    if target in _VARIANTS:
        return Resolved(target, "variant", get_spec(target, **options))
    path = Path(target)
    looks_like_a_file = path.suffix.lower() in CHECKPOINT_SUFFIXES or os.sep in target
    try:
        found = reading.kind(path)
    except OSError as exc:  # a name over 255 bytes, a folder without permission, a NUL byte...
        if looks_like_a_file:
            raise InputError(f"Cannot read the checkpoint file {reading.short(target)}: {reading.reason(exc)}.") \
                from None
        found = None
    if found == "a regular file":
        model, inference = load_model(path, trust_pickle=trust_pickle, options=options, max_bytes=max_bytes)
        return Resolved(target, "checkpoint", model, inference)
    if found is not None and looks_like_a_file:  # a directory, a FIFO, a device: never opened
        raise InputError(f"{reading.short(target)} is {found}, not a checkpoint file.")
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        raise InputError(f"No such checkpoint file: {reading.short(target)}.")
    if ":" in target:
        return Resolved(target, "factory", _load_factory(target, options))
    raise unknown_name_error(target)


def trace(resolved: Resolved, input_size: Any = None, **engine: Any) -> Any:
    """Trace what :func:`resolve` gave: a :class:`~resnet_inspect.analysis.records.Report`.

    ``engine`` holds :data:`ENGINE_KEYWORDS`; the builder options are already in the spec."""
    from .analysis.inspect import inspect

    if input_size is None:
        input_size = resolved.default_input
    if engine.get("label") is None:
        engine["label"] = resolved.label
    return inspect(resolved.model, input_size, **engine)


def inspect_target(target: Any, input_size: Any = None, *, trust_pickle: bool = False,
                   max_bytes: int = MAX_CHECKPOINT_BYTES, **keywords: Any) -> Any:
    """:func:`resnet_inspect.inspect`: a variant name, ``pkg.mod:factory`` or a checkpoint path is
    resolved once and traced; a module or a spec goes to the engine as it is."""
    if not isinstance(target, (str, Resolved)):
        from .analysis.inspect import inspect

        return inspect(target, input_size, **keywords)
    engine = {key: keywords.pop(key) for key in ENGINE_KEYWORDS if key in keywords}
    if isinstance(target, str):
        target = resolve(target, keywords, trust_pickle=trust_pickle, max_bytes=max_bytes)
    elif keywords:
        raise InputError(f"Builder options ({', '.join(sorted(keywords))}) were already applied when "
                         f"{target.target} was resolved.")
    return trace(target, input_size, **engine)


def import_root(module_name: str, start: Path) -> Path | None:
    """The folder ``module_name`` imports from for a file in folder ``start`` (a snapshot's): from
    ``start`` upward, the first folder that holds its top-level package or module (``pkg/``,
    ``pkg.py``, or ``src/pkg`` in the src layout), as ``python -m`` run from the project root would
    find it. The search stops at the repository root (``.git`` or ``.hg``), where the trust rules'
    search for pyproject.toml stops too (:mod:`resnet_inspect.trust`); None when nothing is found."""
    from .trust import REPOSITORY_MARKERS

    top = module_name.split(".")[0]
    folder = Path(start).absolute()
    for candidate in (folder, *folder.parents):
        for base in (candidate, candidate / "src"):
            if os.path.isdir(base / top) or os.path.isfile(base / f"{top}.py"):
                return base
        if any(os.path.lexists(candidate / marker) for marker in REPOSITORY_MARKERS):
            return None
    return None


def _load_factory(target: str, options: dict[str, Any], *, vet: Callable[[Any], None] | None = None,
                  root: Path | None = None) -> Any:
    """Import ``package.module`` and call ``factory()``; ``vet`` may refuse the callable before it is called.
    ``root`` (a snapshot's project, :func:`import_root`) goes first on ``sys.path``, before the current
    directory."""
    module_name, _, attr = target.partition(":")
    if not module_name.strip() or not attr.strip():
        raise InputError(f"'{target}' is not a factory: give package.module:function, e.g. mymodels:build.")
    if options:
        raise InputError(f"Builder flags ({', '.join(sorted(options))}) apply to variant names, not to {target}.")
    for folder in (os.getcwd(), *([str(root)] if root is not None else [])):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    # Whatever the user's code does while it is imported or called (an exception of any kind, a
    # syntax error, sys.exit, a debugger or a prompt) is bad input, reported as such; never a crash,
    # a silent exit or a wait for a keystroke.
    module = _run_users_code(lambda: importlib.import_module(module_name),
                             f"Importing '{module_name}' for {target}", f"Cannot import '{module_name}' for {target}:")
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise InputError(f"'{module_name}' has no callable '{attr}', so {target} cannot build a model.")
    if vet is not None:
        vet(factory)
    model = _run_users_code(factory, f"{target}()", f"{target}() raised")
    from torch import nn

    if not isinstance(model, nn.Module):
        kind = type(model).__name__
        raise InputError(f"{target}() returned {article(kind)} {kind}, not a torch.nn.Module.")
    return model


class WantsTerminal(Exception):
    """The user's code asked for a terminal (a debugger, an interactive prompt, input()). Its message
    is a clause without a full stop: "called breakpoint(). ... remove the call"."""


class _NoInput(io.TextIOBase):
    """Standard input while the user's code runs: any read raises :class:`WantsTerminal`."""

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> str:
        raise WantsTerminal("read from standard input (input(), pdb.set_trace() or code.interact() left in the "
                            "code?). resnet-inspect runs your model's code unattended, with no terminal to answer; "
                            "remove the call")

    readline = read  # type: ignore[assignment]

    def isatty(self) -> bool:
        return False


def _breakpoint(*args: Any, **kwargs: Any) -> None:
    raise WantsTerminal("called breakpoint(). resnet-inspect runs your model's code unattended, with no terminal "
                        "for a debugger; remove the call (or set PYTHONBREAKPOINT=0 when you run it yourself)")


@contextlib.contextmanager
def no_terminal() -> Iterator[None]:
    """Run the user's code with breakpoint() and standard input refused, then put both back.

    A factory or a forward that stops in a debugger would otherwise wait for a keystroke that a CI
    job never sends. ``os._exit`` cannot be caught: code that calls it ends the process.
    """
    saved = sys.stdin, sys.breakpointhook
    sys.stdin, sys.breakpointhook = _NoInput(), _breakpoint
    try:
        yield
    finally:
        sys.stdin, sys.breakpointhook = saved


def _run_users_code(call: Callable[[], Any], doing: str, failed: str) -> Any:
    """Run the user's code (an import, a factory) without a terminal; whatever it raises is bad input.

    ``doing`` starts the message when the code wanted a debugger or a prompt, ``failed`` when it
    raised (an exception of any kind, a syntax error, ``sys.exit``)."""
    try:
        with no_terminal():
            return call()
    except WantsTerminal as exc:
        raise InputError(f"{doing} {exc}.") from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit, GeneratorExit...: whatever the user's code raises
        raise InputError(f"{failed} {sentence(_raised(exc))}") from exc


def _raised(exc: BaseException) -> str:
    """``ValueError: why``; ``sys.exit(5)`` for a SystemExit, which is not an error but a call."""
    if isinstance(exc, SystemExit):
        return f"SystemExit: {exc} (it called sys.exit({exc.code!r}))"
    return f"{type(exc).__name__}: {exc}"
