"""Public builders (torch is imported here, not in ``resnet_inspect/__init__``)."""
from __future__ import annotations

from typing import Any

from torch import nn

from .models.resnet import build_model
from .variants import ResNetSpec, get_spec


def build(name: str | ResNetSpec, **options: Any) -> nn.Module:
    """Build a named variant (see :func:`variants`) with builder options, or a spec."""
    spec = name if isinstance(name, ResNetSpec) else get_spec(name, **options)
    return build_model(spec)
