"""resnet-inspect: build any ResNet (or ResNet+FPN) and show exactly what happens inside.

``build``, ``inspect`` and ``summary`` import torch on first use, so importing this package stays cheap.
"""
from __future__ import annotations

from typing import Any

from . import process as _process

_process.early_guard()  # only when this interpreter is the command line: quiet Ctrl-C from the first import on

from .errors import InputError  # noqa: E402
from .variants import FPNSpec, ResNetSpec, get_spec, variants  # noqa: E402

__all__ = ["build", "inspect", "summary", "variants", "get_spec", "ResNetSpec", "FPNSpec", "InputError"]
__version__ = "0.1.0"


def build(name: str | ResNetSpec, **options: Any) -> Any:
    """Build a named variant with builder options; returns a ``torch.nn.Module``."""
    from .api import build as _build

    return _build(name, **options)


def inspect(model_or_name: Any, input_size: Any = None, **options: Any) -> Any:
    """Trace a model, a variant name, ``package.module:factory`` or a checkpoint file and return a
    :class:`~resnet_inspect.analysis.records.Report`.

    ``input_size`` defaults to the variant's own (224; 32 for the CIFAR nets; 512 with a pyramid). The
    keywords are builder options, the engine's (``real``, ``counter``, ``pad_to``, ``label``, ``input_data``,
    ``dtype``) and, for a checkpoint, ``trust_pickle`` and ``max_bytes`` (see :mod:`resnet_inspect.resolve`).
    """
    from .resolve import inspect_target

    return inspect_target(model_or_name, input_size, **options)


def __getattr__(name: str) -> Any:
    """``summary`` (torchinfo's call, :mod:`resnet_inspect.summary_api`), imported on first use."""
    if name in ("summary", "ModelSummary"):
        from . import summary_api

        return getattr(summary_api, name)
    raise AttributeError(f"module 'resnet_inspect' has no attribute {name!r}")
