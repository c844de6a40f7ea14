"""A rich Table that measures its plain-text cells from their lengths, once per width.

Rich measures a table by measuring every cell (markup parsing, a Text, a Padding, four
Measurement objects per cell), and the summary measures its layer table several times: to see
whether it fits the terminal, to pick which columns to leave out, and again to print it. For
ResNet-152 at full depth (600 rows) that cost far more than the JSON of the same report. A
plain string or a Text is measured here the way rich measures it (``Text.__rich_measure__``:
the widest word and the widest line, inside the cell's padding), from its length alone, and a
column's measurement is kept for the next call at the same width, and a column's distinct texts
for the next table made of the same cells (the layouts the summary tries). Any other cell goes
through rich as before. Cells are never changed in place once in a table: a console that swaps
glyphs for ASCII puts new cells in (cli/common.py), and those are measured anew.
"""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.measure import Measurement
from rich.padding import Padding
from rich.table import Column, Row, Table
from rich.text import Text

from . import quickrender

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult


def _plain(cell: Any) -> str | None:
    """The text a cell shows, when rich would measure it from that text alone; else None."""
    if type(cell) is Text:
        return cell.plain
    if type(cell) is str and "[" not in cell and ":" not in cell and cell.isprintable():
        return cell  # no markup, no emoji code, no control character: rendered as it is
    return None


@lru_cache(maxsize=65536)
def _text_measure(text: str) -> tuple[int, int]:
    """``Text.__rich_measure__`` of a Text whose plain text is ``text``: widest word, widest line."""
    lines = text.splitlines()
    widest_line = max(cell_len(line) for line in lines) if lines else 0
    words = text.split()
    return (max(cell_len(word) for word in words) if words else widest_line), widest_line


def _normalized(low: int, high: int, max_width: int) -> tuple[int, int]:
    """``Measurement(low, high).normalize().with_maximum(max_width)``, then (0, 0) for nothing to
    show, as ``Measurement.get`` finishes."""
    low = max(0, min(max(0, low), high))
    high = max(0, low, high)
    low, high = min(low, max_width), min(high, max_width)
    return (0, 0) if high < 1 else (low, high)


def _cell_measure(console: Console, options: ConsoleOptions, cell: Any) -> tuple[int, int]:
    """``Measurement.get(console, options, cell)`` for a padded table cell."""
    if type(cell) is not Padding or (text := _plain(cell.renderable)) is None:
        return tuple(Measurement.get(console, options, cell))  # type: ignore[return-value]
    return _text_cell_measure(text, cell.left + cell.right, options.max_width)


@lru_cache(maxsize=65536)
def _text_cell_measure(text: str, extra: int, max_width: int) -> tuple[int, int]:
    """The measure of a plain-text cell padded by ``extra`` columns in all, within ``max_width``."""
    if max_width - extra < 1:
        return _normalized(max_width, max_width, max_width)
    low, high = _normalized(*_text_measure(text), max_width)
    return _normalized(min(low + extra, max_width), min(high + extra, max_width), max_width)


# The distinct texts of a list of cells, by the cells' identities; the layouts the summary tries
# share their cell objects, so each column's texts are read once. An entry keeps its cells alive,
# so no other object can take one of their ids while it is kept.
_TEXTS: dict[tuple[int, ...], tuple[list[Any], frozenset[str] | None]] = {}
_TEXTS_KEPT = 64


def _distinct_texts(cells: list[Any]) -> frozenset[str] | None:
    """The set of the cells' plain texts; None when a cell is not plain text (see :func:`_plain`)."""
    key = tuple(map(id, cells))
    found = _TEXTS.get(key)
    if found is not None:
        return found[1]
    texts = [_plain(cell) for cell in cells]
    distinct = None if None in texts else frozenset(texts)  # type: ignore[arg-type]
    if len(_TEXTS) >= _TEXTS_KEPT:
        _TEXTS.clear()
    _TEXTS[key] = (cells, distinct)
    return distinct


def add_rows(table: Table, rows: list[tuple[Any, ...]]) -> None:
    """``table.add_row(*row)`` for each of ``rows``; rows of strings and Texts, a cell per column,
    are added in bulk (rich checks each cell is renderable, one call per cell)."""
    width = len(table.columns)
    if any(len(row) != width or not all(type(cell) in (str, Text) for cell in row) for row in rows):
        for row in rows:
            table.add_row(*row)
        return
    for column, cells in zip(table.columns, zip(*rows)):
        column._cells.extend(cells)
    table.rows.extend(Row() for _ in rows)


class QuickTable(Table):
    """A :class:`rich.table.Table` whose columns of plain text are measured quickly (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._measured: dict[tuple[Any, ...], Measurement] = {}

    def _measure_column(self, console: Console, options: ConsoleOptions, column: Column) -> Measurement:
        max_width = options.max_width
        if max_width < 1 or column.width is not None:
            return super()._measure_column(console, options, column)
        # A shallow copy (render/fit.py narrows or fixes a table that way) shares this dict: the
        # table and the column objects themselves are part of the key, and so are the cells, which
        # a console that is not UTF-8 swaps for ASCII ones in place (cli/common.py) after the fitting.
        key = (id(self), id(column), id(console), column._index, len(self.columns), max_width, column.min_width,
               column.max_width, self.row_count, self.show_header, self.show_footer, self.collapse_padding,
               self.pad_edge, self.padding, id(column.header), tuple(map(id, column._cells)))
        cached = self._measured.get(key)
        if cached is not None:
            return cached
        lows, highs = self._cell_ranges(console, options, column)
        padding_width = self._get_padding_width(column._index)
        measured = Measurement(max(lows) if lows else 1, max(highs) if highs else max_width).with_maximum(max_width)
        measured = measured.clamp(None if column.min_width is None else column.min_width + padding_width,
                                  None if column.max_width is None else column.max_width + padding_width)
        self._measured[key] = measured
        return measured

    def _cell_ranges(self, console: Console, options: ConsoleOptions, column: Column) -> tuple[list[int], list[int]]:
        """Every cell's (narrowest, widest) measure in ``column``, padding included; a plain text
        is measured once however many cells show it (its padding depends on the column alone)."""
        raw = [*([column.header] if self.show_header else []), *column._cells,
               *([column.footer] if self.show_footer else [])]
        texts = _distinct_texts(raw)
        if not any(self.padding) or texts is None:
            lows, highs = [], []
            for cell in self._get_cells(console, column._index, column):
                low, high = _cell_measure(console, options, cell.renderable)
                lows.append(low)
                highs.append(high)
            return lows, highs
        _, right, _, left = self.padding  # as Table._get_cells pads a cell of this column
        if self.collapse_padding and column._index:
            left = max(0, left - right)
        if not self.pad_edge:
            left = 0 if column._index == 0 else left
            right = 0 if column._index == len(self.columns) - 1 else right
        ranges = [_text_cell_measure(text, left + right, options.max_width) for text in texts]
        return [low for low, _ in ranges], [high for _, high in ranges]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if not quickrender.supported(self):
            yield from super().__rich_console__(console, options)
            return
        yield from quickrender.render(self, console, options)
