"""Tables and lines that fit the width they are given, down to 40 columns, without cutting a number.

rich fits a wide table by shrinking its columns and, as a last resort, cutting cells with "…":
``102,760,448 → 25,690,…``. The renderables here change shape instead:

- :class:`Fitted` shows a table as it is when it fits; else with its text columns wrapped at
  words (a column that does not wrap, a number's, keeps its full width); else as stacked records,
  one per row, each cell under its column's header. The headers are the same in every shape.
- :class:`Facts` lays out short facts (``11,689,512 params``) side by side and moves a fact that
  does not fit to the next line whole, so a number never parts from its unit.
- :class:`Hanging` wraps a line at words with its continuation lines indented.

Each decides at render time from ``options.max_width``, so they fit inside a panel or a tree too.
"""
from __future__ import annotations

import copy
from collections.abc import Collection, Iterable, Iterator, Sequence

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.padding import Padding
from rich.segment import Segment
from rich.table import Column, Table
from rich.text import Text

_UNBOUNDED = 100_000
RECORD_INDENT = 4  # a stacked record's fields sit this far in under its title line


def _cell_range(console: Console, options: ConsoleOptions, cell: RenderableType, no_wrap: bool) -> tuple[int, int]:
    """The narrowest a cell may be (its longest word, or all of it when it may not wrap) and its natural width."""
    measured = Measurement.get(console, options.update_width(_UNBOUNDED), cell)
    return (measured.maximum if no_wrap else measured.minimum), measured.maximum


def column_ranges(console: Console, options: ConsoleOptions, table: Table,
                  wrap: Collection[str] | None = None) -> list[tuple[int, int]]:
    """Per column, the (narrowest, natural) width of its header and cells, padding excluded.

    A column that does not wrap is as wide as its widest cell. In one that does, the header may
    wrap at words, and so may the cells, unless ``wrap`` is given and does not name the column's
    header: then each cell stays on one line."""
    ranges = []
    for column in table.columns:
        cells_wrap = not column.no_wrap and (wrap is None or str(column.header) in wrap)
        measured = [_cell_range(console, options, cell, not cells_wrap) for cell in column._cells]
        if table.show_header:
            measured.append(_cell_range(console, options, column.header, column.no_wrap))
        ranges.append((max((m for m, _ in measured), default=0), max((n for _, n in measured), default=0)))
    return ranges


def column_widths(console: Console, options: ConsoleOptions, table: Table, width: int,
                  wrap: Collection[str] | None = None) -> list[int] | None:
    """Widths that fit ``table`` into ``width`` with every cell at least as wide as its longest
    word (a cell that may not wrap, see :func:`column_ranges`: all of it); None when no such widths exist.

    The space beyond the narrowest widths goes to the columns that wrap, in proportion to how much
    more each would take at its natural width.
    """
    ranges = column_ranges(console, options, table, wrap)
    natural = [n for _, n in ranges]
    overhead = Measurement.get(console, options.update_width(_UNBOUNDED), _with_widths(table, natural)).maximum \
        - sum(natural)
    room = width - overhead
    least = [m for m, _ in ranges]
    if sum(natural) <= room:
        return natural
    if sum(least) > room:
        return None
    spare = room - sum(least)
    wants = [n - m for m, n in ranges]
    widths = list(least)
    for index, want in enumerate(wants):
        share = min(want, spare * want // max(sum(wants), 1))
        widths[index] += share
    leftover = room - sum(widths)
    for index in sorted(range(len(widths)), key=lambda i: wants[i] - (widths[i] - least[i]), reverse=True):
        give = min(leftover, natural[index] - widths[index])
        widths[index] += give
        leftover -= give
    return widths


def _with_widths(table: Table, widths: Sequence[int]) -> Table:
    """A shallow copy of ``table`` whose columns have fixed widths (rich then never shrinks them)."""
    fixed = copy.copy(table)
    fixed.columns = []
    for column, width in zip(table.columns, widths):
        clone = copy.copy(column)
        clone.width = max(width, 1)
        fixed.columns.append(clone)
    return fixed


def without_column(table: Table, header: str) -> tuple[Table, list[RenderableType]]:
    """A shallow copy of ``table`` without the column headed ``header``, and that column's cells."""
    narrower = copy.copy(table)
    narrower.columns = [column for column in table.columns if column.header != header]
    cells = [cell for column in table.columns if column.header == header for cell in column._cells]
    return narrower, cells


def fits(console: Console, table: Table, *, wrapped: bool = True) -> bool:
    """Whether ``table`` fits the console without cutting a word or a no-wrap cell (``wrapped``
    False: without wrapping any cell at all)."""
    options = console.options
    if not wrapped:
        return Measurement.get(console, options.update_width(_UNBOUNDED), table).maximum <= options.max_width
    return column_widths(console, options, table, options.max_width) is not None


def _cell_text(cell: RenderableType) -> bool:
    """Whether a cell shows anything."""
    if isinstance(cell, Text):
        return bool(cell.plain.strip())
    if isinstance(cell, str):
        return bool(cell.strip())
    return True


def _header_text(header: RenderableType) -> Text:
    return header.copy() if isinstance(header, Text) else Text(str(header))


class Fitted:
    """A table shown as it is, with its text columns wrapped, or as stacked records, whichever fits.

    ``narrower`` are other layouts of the same table, tried in turn when the first does not fit
    (the diff's, with each "A → B" on two lines). ``wrap``, when given, names the columns whose
    cells may wrap; the others keep each cell on one line. ``title_columns`` is how many leading cells make
    a record's title line in the stacked shape (``~ layer2.0.conv1``); every other non-empty cell
    follows on a line of its own, labelled with its column's header.
    """

    def __init__(self, table: Table, title_columns: int = 1, narrower: Sequence[Table] = (),
                 wrap: Collection[str] | None = None) -> None:
        self.table = table
        self.title_columns = title_columns
        self.layouts = [table, *narrower]
        self.wrap = wrap  # the headers of the columns whose cells may wrap (None: every column that may)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        natural = Measurement.get(console, options, self.table)
        stacked = Measurement.get(console, options, self.stacked())
        return Measurement(min(natural.minimum, stacked.minimum), natural.maximum)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for layout in self.layouts:
            widths = column_widths(console, options, layout, options.max_width, self.wrap)
            if widths is not None:
                yield _with_widths(layout, widths)
                return
        yield self.stacked()

    def stacked(self) -> Group:
        """The table as records: a title line per row, then each remaining cell under its header."""
        table = self.table
        columns: list[Column] = table.columns
        parts: list[RenderableType] = []
        if table.title:
            parts.append(_header_text(table.title).copy())
        # The title cells' own headers head the records, so every header shows at every width.
        heads = [_header_text(column.header) for column in columns[:self.title_columns] if _cell_text(column.header)]
        if heads and table.show_header:
            head = Text(" ").join(heads)
            head.stylize("bold")
            parts.append(head)
        rows = zip(*(column._cells for column in columns)) if columns else iter(())
        for cells in rows:
            title = Text(" ").join(_as_text(c) for c in cells[:self.title_columns] if _cell_text(c))
            parts.append(title)
            fields = Table.grid(padding=(0, 2))
            fields.add_column(style="bold", no_wrap=True)
            fields.add_column(overflow="fold")  # wraps at words; only a word wider than the line folds
            for column, cell in zip(columns[self.title_columns:], cells[self.title_columns:]):
                if _cell_text(cell):
                    fields.add_row(_header_text(column.header), cell)
            if fields.row_count:
                parts.append(Padding(fields, (0, 0, 0, RECORD_INDENT)))
        if table.caption:
            parts.append(_header_text(table.caption))
        return Group(*parts)


def _as_text(cell: RenderableType) -> Text:
    if isinstance(cell, Text):
        return cell
    return Text(str(cell))


class Facts:
    """Short facts side by side, ``sep`` apart; a fact that does not fit the line starts the next
    one, indented by ``indent``. A fact wider than a whole line wraps at its words, indented."""

    def __init__(self, facts: Iterable[Text], indent: int = 2, sep: str = "  ") -> None:
        self.facts = [fact for fact in facts if fact.plain]
        self.indent = indent
        self.sep = sep

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        widest = max((fact.cell_len for fact in self.facts), default=0)
        joined = sum(fact.cell_len for fact in self.facts) + len(self.sep) * max(len(self.facts) - 1, 0)
        return Measurement(min(widest + self.indent, joined), joined)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in self.lines(options.max_width):
            yield from console.render(Hanging(line, self.indent), options)

    def lines(self, width: int) -> list[Text]:
        """The facts laid out in lines no wider than ``width`` (a single fact may need several)."""
        lines: list[Text] = []
        current: Text | None = None
        for fact in self.facts:
            if current is not None and current.cell_len + len(self.sep) + fact.cell_len <= width:
                current.append(self.sep)
                current.append_text(fact)
                continue
            if current is not None:
                lines.append(current)
            lead = Text(" " * self.indent) if lines or current is not None else Text()
            current = lead + fact
        if current is not None:
            lines.append(current)
        return lines


class Hanging:
    """One line of text wrapped at words to the width given, continuation lines indented."""

    def __init__(self, text: Text, indent: int = 4) -> None:
        self.text = text
        self.indent = indent

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        measured = Measurement.get(console, options, self.text)
        return Measurement(measured.minimum + self.indent, measured.maximum)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        text = self.text.copy()
        text.rstrip()
        if text.cell_len <= width:
            yield from _lines(console, options, [text])
            return
        lead = len(text.plain) - len(text.plain.lstrip(" "))  # the line's own indent, kept on every line
        indent = min(lead + self.indent, max(width // 3, 0))
        wrapped = text.wrap(console, max(width - indent, 1), overflow="fold")
        lines = [line if index == 0 else Text(" " * indent) + line for index, line in enumerate(wrapped)]
        yield from _lines(console, options, lines)


def _lines(console: Console, options: ConsoleOptions, lines: list[Text]) -> Iterator[Segment]:
    for line in lines:
        line.rstrip()
        yield from console.render(line, options.update(no_wrap=False, overflow="fold"))
