"""What MODEL names, turned into something to trace: a variant, a checkpoint's model, a factory's model.

This is library work, used alike by the CLI, shape snapshots, the pytest plugin and the API; nothing
here prints. The CLI reports a checkpoint's inference on stderr (``cli/common.describe_inference``).

- A variant name is validated with its builder options and returned as the name (the engine
  builds it, on the meta device).
- A checkpoint file (:data:`~resnet_inspect.checkpoint.CHECKPOINT_SUFFIXES`) is loaded with the
  restricted unpickler (``trust_pickle`` lifts it) and its ResNet inferred from names and shapes.
- ``package.module:factory`` imports the module (the current directory first on ``sys.path``) and
  calls the factory: the caller has decided that this code may run.
"""
from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoint import CHECKPOINT_SUFFIXES
from .errors import InputError
from .variants import _VARIANTS, get_spec, unknown_name_error

KINDS = ("variant", "checkpoint", "factory")


@dataclass
class Resolved:
    """A resolved MODEL: ``model`` is a variant name (str) or an ``nn.Module``; ``kind`` is one of :data:`KINDS`."""

    target: str  # what the user gave
    kind: str
    model: Any
    inference: Any = None  # checkpoint.Inference for a recognised state_dict; None otherwise


def resolve(target: str, options: dict[str, Any], *, trust_pickle: bool = False) -> Resolved:
    """A variant name (validated now, built later by the engine), the model a checkpoint file holds,
    or a module from ``pkg.mod:factory``."""
    if target in _VARIANTS:
        get_spec(target, **options)  # validate options before any heavy import
        return Resolved(target, "variant", target)
    path = Path(target)
    if path.is_file():
        model, inference = load_checkpoint_model(path, options, trust_pickle=trust_pickle)
        return Resolved(target, "checkpoint", model, inference)
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        raise InputError(f"No such checkpoint file: {target}." if not path.is_dir() else f"{target} is a directory, "
                         "not a checkpoint file.")
    if ":" in target:
        return Resolved(target, "factory", _load_factory(target, options))
    raise unknown_name_error(target)


def load_checkpoint_model(path: Path, options: dict[str, Any], *, trust_pickle: bool = False) -> tuple[Any, Any]:
    """The model a checkpoint holds and its :class:`~resnet_inspect.checkpoint.Inference` (None for a whole
    pickled module, which only ``trust_pickle`` loads)."""
    from .checkpoint import load_model

    return load_model(path, trust_pickle=trust_pickle, options=options)


def _load_factory(target: str, options: dict[str, Any], *, vet: Callable[[Any], None] | None = None) -> Any:
    """Import ``package.module`` and call ``factory()``; ``vet`` may refuse the callable before it is called."""
    module_name, _, attr = target.partition(":")
    if not module_name.strip() or not attr.strip():
        raise InputError(f"'{target}' is not a factory: give package.module:function, e.g. mymodels:build.")
    if options:
        raise InputError(f"Builder flags ({', '.join(sorted(options))}) apply to variant names, not to {target}.")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    # Whatever the user's code does while it is imported or called (an exception of any kind, a
    # syntax error, sys.exit) is bad input, reported as such; never a crash or a silent exit.
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:
        raise InputError(f"Cannot import '{module_name}' for {target}: {type(exc).__name__}: {exc}.") from exc
    factory = getattr(module, attr, None)
    if factory is None or not callable(factory):
        raise InputError(f"'{module_name}' has no callable '{attr}', so {target} cannot build a model.")
    if vet is not None:
        vet(factory)
    try:
        model = factory()
    except (Exception, SystemExit) as exc:
        raise InputError(f"{target}() raised {type(exc).__name__}: {exc}.") from exc
    from torch import nn

    if not isinstance(model, nn.Module):
        raise InputError(f"{target}() returned a {type(model).__name__}, not a torch.nn.Module.")
    return model
