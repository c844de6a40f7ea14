"""Which records are nested in a module, found by name in O(log n) instead of a scan of all records.

A module's nested records are its children (``layer2.0.conv1``) and the functions its forward calls
(``layer2.0:add``): every record whose name starts with the module's name and ``.`` or ``:``. The
names are sorted once per report, so a prefix is a range found by bisection (the HTML report asks
for every record of cifar_resnet1202's 4,811, which a scan per record made quadratic).
"""
from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from ..analysis.records import LayerRecord


class NameIndex:
    """The records of one report sorted by name, for prefix look-ups."""

    def __init__(self, records: Sequence[LayerRecord]) -> None:
        self.records = records
        pairs = sorted((r.name, r.index) for r in records)
        self._names = [name for name, _ in pairs]
        self._indices = [index for _, index in pairs]

    def named(self, name: str) -> list[int]:
        """Indices, in execution order, of the records (calls) named exactly ``name``."""
        low = bisect_left(self._names, name)
        high = bisect_left(self._names, name + "\0")
        return self._indices[low:high]

    def nested(self, name: str) -> list[int]:
        """Indices, in execution order, of the records named ``name.…`` or ``name:…``."""
        found: list[int] = []
        for sep in ".:":
            low = bisect_left(self._names, name + sep)
            high = bisect_left(self._names, name + chr(ord(sep) + 1))
            found += self._indices[low:high]
        return sorted(found)


_LATEST: list[NameIndex] = []


def name_index(records: Sequence[LayerRecord]) -> NameIndex:
    """The index of these records, built once and reused while the same list is asked about."""
    if not _LATEST or _LATEST[0].records is not records:
        _LATEST[:] = [NameIndex(records)]
    return _LATEST[0]
