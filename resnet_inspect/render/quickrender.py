"""Drawing a :class:`~resnet_inspect.render.measure.QuickTable` row by row without rich's per-cell
pipeline, with the same bytes rich would print.

rich renders every cell through a Padding, a Text wrap, ``render_lines`` and two rounds of
``split_and_crop_lines``: for ResNet-152 at ``--depth all`` (600 rows) that took ten times as long
as the JSON of the same report. Here a cell that rich would show on one line (a plain string or a
Text, printable, no wider than its column) is laid out directly: its text justified as
``Text.wrap`` justifies it, inside the column's padding, with the same styled pieces rich yields
(a span, a header's bold, a padding space in the header's style). Unstyled pieces are joined, since
they print alike: into one segment per cell on a terminal, where rich measures every segment again
to crop the line (and remembers the widths of the cells that repeat down a column), into one for
the whole table when nothing is styled. A row with any other cell (one that wraps, markup, a
renderable) goes through rich's own cell rendering, so what rich would draw is drawn either way.

Only tables with the features the summary uses take this path (:func:`supported`); any other is
left to rich.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Optional

from rich.cells import cell_len
from rich.padding import Padding
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

if TYPE_CHECKING:
    from rich.box import Box
    from rich.console import Console, ConsoleOptions
    from rich.table import Column, Table

_NULL = Style.null()
Piece = tuple[str, Optional[Style]]  # a run of text and its style (None: unstyled)
_CELL_END: Any = (None, None)  # between the pieces of two cells: unstyled text is not joined across it


def supported(table: Table) -> bool:
    """Whether ``table`` uses only what :func:`render` draws: no footer, row styles, lines between
    rows, section ends, vertical padding, expansion or fixed table width."""
    top, _, bottom, _ = table.padding
    return bool(table.columns) and not (
        table.show_footer or table.row_styles or table.show_lines or table.leading or table.expand
        or table.width is not None or top or bottom or not any(table.padding)
        or any(row.style is not None or row.end_section for row in table.rows))


class _Out:
    """Segments being built: unstyled text is gathered into one segment, styled text kept apart."""

    def __init__(self, styled: bool) -> None:
        self.styled = styled  # False: the console prints no styles, so every piece is plain text
        self.segments: list[Segment] = []
        self._plain: list[str] = []

    def add(self, text: str, style: Style | None = None) -> None:
        """One piece of text in its style."""
        if style and self.styled:
            self._flush()
            self.segments.append(Segment(text, style))
        else:
            self._plain.append(text)

    def pieces(self, pieces: list[Piece]) -> None:
        """Pieces of text in their styles, in order."""
        plain, segments, styled = self._plain, self.segments, self.styled
        for text, style in pieces:
            if text is None:  # the end of a cell: see row()
                if plain and styled:
                    segments.append(Segment("".join(plain)))
                    plain.clear()
                continue
            if style and styled:
                if plain:
                    segments.append(Segment("".join(plain)))
                    plain.clear()
                segments.append(Segment(text, style))
            else:
                plain.append(text)

    def segment(self, segment: Segment) -> None:
        """A segment rich made (a control code is kept as it is)."""
        if segment.control:
            self._flush()
            self.segments.append(segment)
        else:
            self.add(segment.text, segment.style)

    def _flush(self) -> None:
        if self._plain:
            self.segments.append(Segment("".join(self._plain)))
            self._plain.clear()

    def take(self) -> list[Segment]:
        """The segments so far (the builder is emptied)."""
        self._flush()
        done, self.segments = self.segments, []
        return done


def _paddings(table: Table) -> list[tuple[int, int]]:
    """Each column's (left, right) padding, as ``Table._get_cells`` works it out."""
    _, right, _, left = table.padding
    last = len(table.columns) - 1
    result = []
    for index in range(last + 1):
        pad_left, pad_right = left, right
        if table.collapse_padding and index:
            pad_left = max(0, pad_left - pad_right)
        if not table.pad_edge:
            pad_left = 0 if index == 0 else pad_left
            pad_right = 0 if index == last else pad_right
        result.append((pad_left, pad_right))
    return result


class _Styles:
    """Styles by name and their combinations, each worked out once per render."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._combined: dict[tuple[Any, ...], Style] = {}

    def combine(self, names: tuple[Any, ...]) -> Style:
        """``Style.combine`` of the named styles, an unknown name counting as no style (as Text.render does)."""
        found = self._combined.get(names)
        if found is None:
            get = self.console.get_style
            found = Style.combine([_NULL, *(get(name, default=_NULL) for name in names)])
            self._combined[names] = found
        return found


def _cell_key(cell: Any) -> tuple[str, Any, tuple[Any, ...]] | None:
    """A cell's plain text, base style and spans, when rich would render it as that text alone."""
    if type(cell) is str:
        if "[" in cell or ":" in cell or not cell.isprintable():
            return None  # markup or an emoji code: rich's markup parser decides what it shows
        return cell, "", ()
    if type(cell) is Text:
        if cell.justify or cell.overflow or cell.no_wrap is not None or cell.end != "\n":
            return None
        plain = cell.plain
        if not plain.isprintable():
            return None
        return plain, cell.style, tuple(cell._spans)
    return None


def quick_cell(key: tuple[str, Any, tuple[Any, ...]], width: int, justify: str,
               styles: _Styles) -> list[Piece] | None:
    """A cell's one line, ``width`` cells wide, as rich's Text.wrap and Text.render piece it; None
    when the cell needs rich (it wraps, or it is justified otherwise). ``key`` is from :func:`_cell_key`."""
    plain, base, spans = key
    length = cell_len(plain)
    if length > width:
        return None
    if justify == "left":
        shift = 0
    elif justify in ("right", "center"):
        if plain != plain.rstrip():
            return None  # rich strips trailing blanks first; left to rich
        shift = width - length if justify == "right" else (width - length) // 2
    else:
        return None
    text = " " * shift + plain + " " * (width - length - shift)
    if not spans and not base:
        return [(text, None)]
    # Text.join turns the line's own style into the first span over the whole line; the others
    # follow, moved by the left padding. Each run between span edges takes the styles over it, in order.
    marks = [(0, len(text), base)] if base else []
    marks += [(span.start + shift, span.end + shift, span.style) for span in spans]
    edges = sorted({0, len(text), *(m for start, end, _ in marks for m in (start, end) if 0 < m < len(text))})
    pieces: list[Piece] = []
    for start, end in zip(edges, edges[1:]):
        names = tuple(style for first, last, style in marks if first <= start < last)
        pieces.append((text[start:end], styles.combine(names)))
    return pieces


def _rich_cell(console: Console, options: ConsoleOptions, cell: Any, padding: tuple[int, int], width: int,
               column: Column, style: Style) -> list[list[Segment]]:
    """A cell's lines through rich itself (as ``Table._render`` renders it)."""
    left, right = padding
    cell_options = options.update(width=width, justify=column.justify, no_wrap=column.no_wrap,
                                  overflow=column.overflow, height=None, highlight=column.highlight)
    return console.render_lines(Padding(cell, (0, right, 0, left)), cell_options, style=style)


class _Grid:
    """What every row of one render shares: widths, paddings, box pieces, styles."""

    def __init__(self, table: Table, console: Console, options: ConsoleOptions, widths: list[int]) -> None:
        self.table = table
        self.console = console
        self.options = options
        self.widths = widths
        self.paddings = _paddings(table)
        self.styles = _Styles(console)
        self.out = _Out(styled=console.color_system is not None or console.record)
        self.border = console.get_style(table.style or "") + console.get_style(table.border_style or "")
        get_style = console.get_style
        # Each cell's style, as Table._get_cells gives it: the header's, or its column's.
        self.header_styles = [get_style(table.header_style or "") + get_style(column.header_style)
                              for column in table.columns]
        self.cell_styles = [get_style(column.style or "") for column in table.columns]
        self._known: dict[tuple[int, Any], list[Piece] | None] = {}  # laid-out cells, by column and text
        box = table.box.substitute(options, safe=console.safe_box if table.safe_box is None else table.safe_box) \
            if table.box else None
        self.box: Box | None = box.get_plain_headed_box() if box and not table.show_header else box

    def edges(self, first: bool, last: bool) -> tuple[str, str, Segment] | None:
        """The left edge, right edge and divider of a row (head, foot or middle), as rich picks them."""
        box = self.box
        if box is None:
            return None
        if first:
            left, right, divider = box.head_left, box.head_right, box.head_vertical
        elif last:
            left, right, divider = box.foot_left, box.foot_right, box.foot_vertical
        else:
            left, right, divider = box.mid_left, box.mid_right, box.mid_vertical
        # A whitespace divider takes the row's background, which these rows do not have.
        return left, right, Segment(divider, self.border if divider.strip() else _NULL + self.border)

    def line(self, text: str) -> None:
        """A box line (the top, the rule under the header, the bottom)."""
        self.out.add(text, self.border)
        self.out.add("\n")

    def row(self, cells: Sequence[Any], styles: list[Style], header: bool, first: bool, last: bool) -> None:
        """One row of cells, each in its style (the header's bold, its column's, or none)."""
        edges = self.edges(first, last)
        show_edge = edges is not None and self.table.show_edge
        pieces: list[Piece] = [(edges[0], self.border)] if show_edge else []  # type: ignore[index]
        add, extend, known = pieces.append, pieces.extend, self._known
        for index, cell in enumerate(cells):
            if index:
                # Printed to a terminal, rich measures every segment of every line to crop it; cell by
                # cell the segments repeat down a column, and rich remembers the widths it measured.
                add(_CELL_END)
                if edges is not None:
                    add((edges[2].text, edges[2].style))
            key = _cell_key(cell)
            laid = None if key is None else known.get((index, key), False)
            if laid is False:  # not seen in this column yet
                laid = self._lay(index, key)  # type: ignore[arg-type]
                known[(index, key)] = laid
            if laid is None:
                self._rich_row(cells, styles, header, first, last)
                return
            style = styles[index]
            if style:
                extend((text, style + piece_style if piece_style else style) for text, piece_style in laid)
            else:
                extend(laid)
        add(_CELL_END)
        if show_edge:
            add((edges[1], self.border))  # type: ignore[index]
        add(("\n", None))
        self.out.pieces(pieces)

    def _lay(self, index: int, key: tuple[str, Any, tuple[Any, ...]]) -> list[Piece] | None:
        """A cell of column ``index`` with its padding, as unstyled pieces; None for rich's path."""
        left, right = self.paddings[index]
        laid = quick_cell(key, self.widths[index] - left - right, self.table.columns[index].justify, self.styles)
        if laid is None:
            return None
        return ([(" " * left, None)] if left else []) + laid + ([(" " * right, None)] if right else [])

    def _rich_row(self, cells: Sequence[Any], styles: list[Style], header: bool, first: bool, last: bool) -> None:
        """A row with a cell only rich can lay out: every cell through rich, aligned as rich aligns them."""
        table, console = self.table, self.console
        rendered = [_rich_cell(console, self.options, cell, padding, width, column, style) for cell, padding, width,
                    column, style in zip(cells, self.paddings, self.widths, table.columns, styles)]
        height = max(len(lines) for lines in rendered)
        shaped = []
        for lines, cell, width, column, style in zip(rendered, cells, self.widths, table.columns, styles):
            vertical = "bottom" if header else (getattr(cell, "vertical", None) or column.vertical)
            align = {"top": Segment.align_top, "middle": Segment.align_middle}.get(vertical, Segment.align_bottom)
            shaped.append(Segment.set_shape(align(lines, width, height, style), width, height))
        self._emit_lines(shaped, height, first, last)

    def _emit_lines(self, cells: list[list[list[Segment]]], height: int, first: bool, last: bool) -> None:
        """A row of cells rich rendered, ``height`` lines, between the box's edges and dividers."""
        out = self.out
        edges = self.edges(first, last)
        for line_no in range(height):
            if edges is not None and self.table.show_edge:
                out.add(edges[0], self.border)
            for index, cell in enumerate(cells):
                if index and edges is not None:
                    out.add(edges[2].text, edges[2].style)
                for segment in cell[line_no]:
                    out.segment(segment)
            if edges is not None and self.table.show_edge:
                out.add(edges[1], self.border)
            out.add("\n")


def _annotation(console: Console, options: ConsoleOptions, text: Any, style: Any, justify: Any) -> Iterator[Segment]:
    """A title or caption, rendered by rich as ``Table.__rich_console__`` renders it."""
    shown = console.render_str(text, style=style, highlight=False) if isinstance(text, str) else text
    yield from console.render(shown, options=options.update(justify=justify))


def render(table: Table, console: Console, options: ConsoleOptions) -> Iterator[Segment]:
    """``table`` as rich's ``Table.__rich_console__`` draws it (the table must be :func:`supported`)."""
    extra = table._extra_width
    widths = table._calculate_column_widths(console, options.update_width(options.max_width - extra))
    render_options = options.update(width=sum(widths) + extra, highlight=table.highlight, height=None)
    if table.title:
        yield from _annotation(console, render_options, table.title,
                               Style.pick_first(table.title_style, "table.title"), table.title_justify)
    grid = _Grid(table, console, render_options, widths)
    box = grid.box
    if box and table.show_edge:
        grid.line(box.get_top(widths))
    rows = list(zip(*(column._cells for column in table.columns)))
    if table.show_header:
        rows.insert(0, tuple(column.header for column in table.columns))
    for index, cells in enumerate(rows):
        header = index == 0 and table.show_header
        grid.row(cells, grid.header_styles if header else grid.cell_styles, header, index == 0, index == len(rows) - 1)
        if header and box:
            grid.line(box.get_row(widths, "head", edge=table.show_edge))
    if box and table.show_edge:
        grid.line(box.get_bottom(widths))
    yield from grid.out.take()
    if table.caption:
        yield from _annotation(console, render_options, table.caption,
                               Style.pick_first(table.caption_style, "table.caption"), table.caption_justify)


class Verbatim:
    """Text rich has already laid out, printed as it is: ``console.out(text)`` would make it a Text
    and lay it out again, line by line (for a 600-row table, as long as drawing the table)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Segment]:
        yield Segment(self.text)
        yield Segment.line()


def print_verbatim(console: Console, text: str) -> None:
    """``console.out(text, highlight=False)`` for text that came out of this console (its control
    characters already escaped, no tabs): the same bytes, without laying the text out again. A
    console whose encoding is not UTF-8 still goes through ``out``, which swaps glyphs for ASCII."""
    if "\t" in text or not console.encoding.startswith("utf"):
        console.out(text, highlight=False)
        return
    console.print(Verbatim(text), crop=False)
