"""Building on the meta device without the random initialisation that cannot happen there.

A module's constructor initialises its weights (``nn.Conv2d.reset_parameters`` calls
``init.kaiming_uniform_`` and ``init.uniform_``). On the meta device there are no values to set,
yet ``uniform_`` and ``normal_`` on a meta tensor run torch's Python decompositions
(``torch._decomp``): about 0.14 s for ResNet-152, more than its whole trace.
"""
from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torch.nn import init

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


_LOCK = threading.Lock()
_ACTIVE: dict[str, Any] = {"depth": 0, "originals": {}}  # builds inside the context; what they replaced


@contextmanager
def meta_init_skipped() -> Iterator[None]:
    """While this runs, ``torch.nn.init``'s random initialisers leave meta tensors alone.

    Tensors on any other device are initialised as before (the stand-ins delegate to the
    originals), so a model built meanwhile on the CPU, in another thread, is unchanged; its random
    stream too, since a meta tensor never draws from it.

    Builds in several threads share one patched period: the first to enter swaps the stand-ins
    in, the last to leave puts the originals back, so nesting or overlapping never leaves a
    stand-in behind.
    """
    with _LOCK:
        if _ACTIVE["depth"] == 0:
            _ACTIVE["originals"] = {name: getattr(init, name) for name in RANDOM_INITS if hasattr(init, name)}
            for name, original in _ACTIVE["originals"].items():
                setattr(init, name, _skipping_meta(original))
        _ACTIVE["depth"] += 1
    try:
        yield
    finally:
        with _LOCK:
            _ACTIVE["depth"] -= 1
            if _ACTIVE["depth"] == 0:
                for name, original in _ACTIVE["originals"].items():
                    setattr(init, name, original)
                _ACTIVE["originals"] = {}
