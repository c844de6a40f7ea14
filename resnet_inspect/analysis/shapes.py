"""Output size of a sliding window: O = floor((I + 2P - D*(K-1) - 1)/S) + 1.

With D = 1 this is O = (I - K + 2P)/S + 1, rounded down (the standard convolution arithmetic,
Dumoulin & Visin 2016). ``ceil_mode`` rounds up
instead, except that the last window must start inside the input or its left padding
(PyTorch's rule, which Caffe's max pool shares).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """Hyper-parameters of one spatial dimension of a conv or pooling window."""

    kernel: int
    stride: int
    padding: int
    dilation: int = 1
    ceil_mode: bool = False

    @property
    def effective_kernel(self) -> int:
        return self.dilation * (self.kernel - 1) + 1


def window_output(size: int, w: Window) -> int:
    """Output length along one dimension; 0 or less means the window does not fit."""
    span = size + 2 * w.padding - w.effective_kernel
    if not w.ceil_mode:
        return span // w.stride + 1  # floor division, also for negative spans
    out = -(-span // w.stride) + 1
    if out > 0 and (out - 1) * w.stride >= size + w.padding:
        out -= 1
    return out


def window_working(size: int, w: Window) -> str:
    """The arithmetic of :func:`window_output` with the numbers filled in, for display."""
    out = window_output(size, w)
    open_, close = ("⌈", "⌉") if w.ceil_mode else ("⌊", "⌋")
    kernel = str(w.kernel) if w.dilation == 1 else f"({w.dilation}·({w.kernel}−1)+1)"
    text = f"{open_}({size} − {kernel} + 2·{w.padding})/{w.stride}{close} + 1 = {out}"
    unclipped = -(-(size + 2 * w.padding - w.effective_kernel) // w.stride) + 1
    if w.ceil_mode and out != unclipped:
        text += " (the last window would start in the right padding, so one fewer)"
    return text


def pad_to_multiple(size: int, multiple: int) -> int:
    """Round a size up to a multiple, as maskrcnn-benchmark's SIZE_DIVISIBILITY padding does."""
    return -(-size // multiple) * multiple
