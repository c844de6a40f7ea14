"""How every view writes a number: exact integers by default, short forms that name their unit on request.

One style across views: a count is ``118,013,952`` (exact, comma-grouped) unless the user asks for
``--units``, which gives ``118.0M`` (``auto``: the largest of K, M, G, T that keeps the value at 1
or more) or fixes the prefix for every figure (``K``, ``M``, ``G``). A short form always ends with its
prefix, so it is never mistaken for an exact count. Bytes are always given in binary units as well.
"""
from __future__ import annotations

from typing import Literal

from ..errors import InputError

Units = Literal["exact", "auto", "K", "M", "G"]
UNITS: tuple[str, ...] = ("exact", "auto", "K", "M", "G")
_SCALES: dict[str, float] = {"T": 1e12, "G": 1e9, "M": 1e6, "K": 1e3}


def parse_units(text: str | None) -> Units:
    """``--units``: exact (the default), auto, K, M or G (any case; ``k`` is ``K``)."""
    if text is None:
        return "exact"
    for name in UNITS:
        if text.strip().lower() == name.lower():
            return name  # type: ignore[return-value]
    raise InputError(f"Unknown --units '{text}': use exact (comma-grouped integers, the default), auto "
                     "(K, M, G or T per figure), K, M or G.")


def exact(value: int) -> str:
    """An exact count with thousands separators: ``118,013,952``."""
    return f"{value:,}"


def _decimals(scaled: float) -> int:
    """Enough decimals for three significant figures: ``118.0``, ``25.56``, ``4.089``."""
    size = abs(scaled)
    return 1 if size >= 100 else 2 if size >= 10 else 3


def short(value: float, prefix: str | None = None, unit: str = "") -> str:
    """``value`` scaled to a prefix (``prefix`` None picks it) and followed by it: ``4.089G``.

    With a fixed ``prefix`` every figure uses it (``0.118G``), except one too small to show in it
    (under 0.0005 of it), which takes its own; without one, the prefix keeps the figure at 1 or more
    once rounded, and values under 1,000 are written whole. ``unit`` follows the prefix
    (``4.089 GMACs``, with a space before the number's unit).
    """
    if prefix is not None and value and abs(value) < 0.0005 * _SCALES[prefix.upper()]:
        prefix = None
    if prefix is None:
        prefix = next((p for p, scale in _SCALES.items() if round(abs(value) / scale, 3) >= 1), "")
    if not prefix:
        whole = f"{int(value):,}" if float(value).is_integer() else f"{value:g}"
        return f"{whole} {unit}".rstrip()
    scaled = value / _SCALES[prefix.upper()]
    label = "k" if prefix.upper() == "K" and unit else prefix.upper()
    text = f"{scaled:,.{_decimals(scaled) if scaled else 0}f}"
    return f"{text} {label}{unit}" if unit else f"{text}{label}"


def count(value: int, units: Units = "exact") -> str:
    """A count (params, MACs, bytes) in the chosen style: ``118,013,952``, ``118.0M`` or ``0.118G``."""
    if units == "exact":
        return exact(value)
    return short(value, None if units == "auto" else units)


def with_unit(value: int, unit: str) -> str:
    """A total in short form with its unit, for a note beside the exact figure: ``4.089 GMACs``."""
    return short(value, unit=unit)


def binary_bytes(value: int) -> str:
    """Bytes in binary units: ``85.6 MiB``."""
    for scale, prefix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if value >= scale:
            return f"{value / scale:.1f} {prefix}"
    return f"{value} B"


def percent(part: int, whole: int) -> str:
    """A share to one decimal (``2.9%``); empty when the part is nothing."""
    return f"{100 * part / whole:.1f}%" if part and whole else ""


def si_text(value: float, unit: str = "", digits: int = 3) -> str:
    """A count scaled to k, M, G or T with ``digits`` decimals: ``4.089 G`` (explain and diff use it)."""
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}f} {prefix}{unit}"
    return f"{value:g} {unit}".rstrip()
