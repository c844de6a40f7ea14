"""Building on the meta device without the random initialisation that cannot happen there.

A module's constructor initialises its weights (``nn.Conv2d.reset_parameters`` calls
``init.kaiming_uniform_`` and ``init.uniform_``). On the meta device there are no values to set,
yet ``uniform_`` and ``normal_`` on a meta tensor run torch's Python decompositions
(``torch._decomp``): about 0.14 s for ResNet-152, more than its whole trace.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from torch.nn import init

from ..periods import SharedPeriod

# The random initialisers of torch.nn.init (the constant ones have cheap meta kernels).
RANDOM_INITS = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
                "xavier_normal_", "orthogonal_", "sparse_")


def _skipping_meta(original: Callable[..., Any]) -> Callable[..., Any]:
    """``original``, except that a meta tensor is returned as it is."""

    @functools.wraps(original)
    def initialise(tensor: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(tensor, "is_meta", False):
            return tensor
        return original(tensor, *args, **kwargs)

    initialise.__wrapped_init__ = original  # type: ignore[attr-defined]
    return initialise


def _skip_meta_inits() -> Callable[[], None]:
    """Swap the stand-ins into torch.nn.init; return what puts the originals back."""
    originals = {name: getattr(init, name) for name in RANDOM_INITS if hasattr(init, name)}
    for name, original in originals.items():
        setattr(init, name, _skipping_meta(original))

    def restore() -> None:
        for name, original in originals.items():
            setattr(init, name, original)
    return restore


#: While this runs (``with meta_init_skipped():``), ``torch.nn.init``'s random initialisers leave
#: meta tensors alone. Tensors on any other device are initialised as before (the stand-ins
#: delegate to the originals), so a model built meanwhile on the CPU, in another thread, is
#: unchanged; its random stream too, since a meta tensor never draws from it. Builds in several
#: threads share one patched period (:class:`~resnet_inspect.periods.SharedPeriod`).
meta_init_skipped = SharedPeriod(_skip_meta_inits)
