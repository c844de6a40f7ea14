"""Which factories a snapshot file may run: ``--allow-factory`` patterns and the project's pyproject.toml.

A snapshot file is data. When its ``"model"`` names ``package.module:factory``, rebuilding it means
importing that module and calling the factory, which runs code; ``check`` does that only for a
factory that is allowed, by either of:

- ``--allow-factory PATTERN`` on the command line (repeatable);
- ``allow-factories = [PATTERN, ...]`` in the ``[tool.resnet-inspect]`` table of the project's
  pyproject.toml, the file Python tools keep their project settings in (PEP 518).

A PATTERN is an ``fnmatch`` pattern, matched case-sensitively (``*`` is any run of characters,
dots included; ``?`` is one character; ``[seq]`` one of a set). A pattern with a colon is matched
against the whole reference ``module:factory`` (``mypkg.models:build_*``); a pattern without one
against the module path alone (``mypkg.*`` allows every factory in every module below ``mypkg``,
but not in ``mypkg`` itself; ``mypkg`` allows the factories of that one module).

The project's pyproject.toml is found for each snapshot file as black finds its project root:
from the folder that holds the snapshot file upward, the first pyproject.toml with a
``[tool.resnet-inspect]`` table is used. The search stops at the repository root (a folder that
holds ``.git`` or ``.hg``), so settings outside the repository never apply to it. It does not
depend on the current directory, so ``check`` gives the same verdict wherever it is run from.
"""
from __future__ import annotations

import fnmatch
import functools
import inspect
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError

TABLE = "resnet-inspect"
KEY = "allow-factories"
REPOSITORY_MARKERS = (".git", ".hg")
_PATTERN = re.compile(r"[A-Za-z0-9_.*?\[\]!]+(:[A-Za-z0-9_*?\[\]!]+)?")


@dataclass(frozen=True)
class ProjectSettings:
    """The ``[tool.resnet-inspect]`` table of one pyproject.toml."""

    path: Path
    allow_factories: tuple[str, ...]


def is_factory_reference(text: str) -> bool:
    """``package.module:factory``: dotted Python names, one colon, the factory's name."""
    module, colon, attr = text.partition(":")
    return bool(colon) and attr.isidentifier() and all(part.isidentifier() for part in module.split("."))


def check_pattern(pattern: Any, source: str) -> str:
    """A valid pattern, or an InputError that names where it came from."""
    if not isinstance(pattern, str) or not _PATTERN.fullmatch(pattern):
        raise InputError(f"{source}: {pattern!r} is not a factory pattern. Give a module path or module:factory, "
                         "with * and ? as wildcards: e.g. mypkg.*, mypkg.models or mypkg.models:build_*.")
    return pattern


def matches(pattern: str, reference: str) -> bool:
    """Whether ``pattern`` allows the factory ``reference`` (``module:factory``)."""
    subject = reference if ":" in pattern else reference.partition(":")[0]
    return fnmatch.fnmatchcase(subject, pattern)


def find_project_settings(start: Path) -> ProjectSettings | None:
    """The settings of the project that holds folder ``start`` (see the module docstring), or None."""
    folder = Path(start).absolute()
    for candidate in (folder, *folder.parents):
        pyproject = candidate / "pyproject.toml"
        if os.path.isfile(pyproject):
            settings = read_settings(pyproject)
            if settings is not None:
                return settings
        if any(os.path.lexists(candidate / marker) for marker in REPOSITORY_MARKERS):
            return None
    return None


def read_settings(pyproject: Path) -> ProjectSettings | None:
    """The ``[tool.resnet-inspect]`` table of ``pyproject``; None when it has none."""
    tomllib = _toml_reader()
    try:
        with open(pyproject, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise InputError(f"{pyproject} cannot be read ({exc.strerror or exc}), so the factories this project "
                         "allows are unknown.") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{pyproject} is not valid TOML ({exc}), so the factories this project allows are "
                         "unknown.") from None
    table = document.get("tool", {}).get(TABLE) if isinstance(document.get("tool"), dict) else None
    if table is None:
        return None
    if not isinstance(table, dict):
        raise InputError(f"{pyproject}: tool.{TABLE} must be a table, as in [tool.{TABLE}].")
    unknown = sorted(set(table) - {KEY})
    if unknown:
        raise InputError(f"{pyproject}: unknown key {unknown[0]!r} in [tool.{TABLE}]; the one key it takes is "
                         f"{KEY} (a list of factory patterns).")
    patterns = table.get(KEY, [])
    if not isinstance(patterns, list):
        raise InputError(f"{pyproject}: {KEY} in [tool.{TABLE}] must be a list of factory patterns, e.g. "
                         f'{KEY} = ["mypkg.*"].')
    source = f"{pyproject}, [tool.{TABLE}] {KEY}"
    return ProjectSettings(pyproject, tuple(check_pattern(p, source) for p in patterns))


def allowed_by(reference: str, patterns: tuple[str, ...] | list[str], settings: ProjectSettings | None) -> str | None:
    """What allows the factory ``reference`` (for messages), or None when nothing does."""
    for pattern in patterns:
        if matches(pattern, reference):
            return f"--allow-factory {pattern}"
    for pattern in settings.allow_factories if settings is not None else ():
        if matches(pattern, reference):
            return f"{pattern!r} in {settings.path}"  # type: ignore[union-attr]
    return None


def defined_at(factory: Any) -> tuple[str | None, str | None]:
    """(module, name) where a callable is defined: a function's or class's own, a ``functools.partial``'s
    function's, a bound method's function's, or else the class of a callable object."""
    while isinstance(factory, functools.partial):
        factory = factory.func
    factory = getattr(factory, "__func__", factory)  # a bound method
    target = factory if inspect.isroutine(factory) or inspect.isclass(factory) else type(factory)
    module, name = getattr(target, "__module__", None), getattr(target, "__name__", None)
    return (module if isinstance(module, str) and module else None), (name if isinstance(name, str) else None)


def origin_problem(reference: str, factory: Any, patterns: tuple[str, ...] | list[str],
                   settings: ProjectSettings | None) -> str | None:
    """Why an allowed reference still must not be called (None when it may be).

    A module-path pattern allows the factories *of* a package, not everything its modules import:
    the callable must be defined in the same top-level package as the module it is named from, or
    be allowed where it is defined (``module:factory`` with the defining module).
    """
    module, _, attr = reference.partition(":")
    origin, name = defined_at(factory)
    package = module.split(".")[0]
    if origin is not None and origin.split(".")[0] == package:
        return None
    defined = f"{origin}:{name or attr}"
    if origin is not None and trust_is_given(defined, patterns, settings):
        return None
    where = f"is {defined}, defined outside the {package} package" if origin else \
        "does not say which module defines it"
    return (f"it names the factory {reference}, which is allowed, but {attr} {where}: {module} only imports it, so "
            f"it is not one of that package's factories and is not called. If you trust it as a factory, allow it "
            f"where it is defined (--allow-factory '{defined}'), and name it so in the snapshot.")


def trust_is_given(reference: str, patterns: tuple[str, ...] | list[str], settings: ProjectSettings | None) -> bool:
    """Whether a pattern allows ``reference``."""
    return allowed_by(reference, patterns, settings) is not None


def refusal(reference: str, settings: ProjectSettings | None, start: Path) -> str:
    """Why a snapshot's factory is not run, and how to allow it (one paragraph)."""
    module, _, attr = reference.partition(":")
    if settings is None:
        where = (f"no --allow-factory pattern matches it, and no pyproject.toml with a [tool.{TABLE}] table was "
                 f"found in {start} or above it (up to the repository root)")
    else:
        listed = ", ".join(settings.allow_factories) or "nothing"
        where = f"no --allow-factory pattern matches it, nor does {KEY} in {settings.path} (which lists {listed})"
    broad = f"{module.split('.')[0]}.*" if "." in module else module
    return (f"it names the factory {reference}, and rebuilding it would import {module} and call {attr}(), which "
            f"runs that code; a snapshot's factory runs only when the project allows it, and {where}. If you trust "
            f"this code, pass --allow-factory '{reference}' (or '{broad}'), or add that pattern to {KEY} under "
            f"[tool.{TABLE}] in the project's pyproject.toml (docs/ci.md).")


def _toml_reader() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    try:
        import tomli  # the same parser, as a package before Python 3.11

        return tomli
    except ModuleNotFoundError:
        raise InputError("Reading pyproject.toml on Python 3.10 needs the tomli package (a dependency of "
                         "resnet-inspect there): pip install tomli.") from None
