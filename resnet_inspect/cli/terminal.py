"""The console every command prints through: rich's, with three guarantees of this tool.

Imported when something is printed (``common.console``), so that ``summary --format json``
never imports rich's console machinery.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import rich.console

from .. import process
from ..text import visible_lines
from .common import _silence_stdout


class Console(rich.console.Console):
    """Control characters shown as escapes, ASCII where the stream lacks a glyph, quiet on a closed pipe."""

    def render_str(self, text: str, **kwargs: Any) -> Any:
        """Every string printed shows control characters as escapes (a module named
        ``conv1\\x1b[2J`` must not clear the screen); newlines and tabs are kept."""
        return super().render_str(visible_lines(text), **kwargs)

    def render(self, renderable: Any, options: Any = None) -> Iterator[Any]:
        """The last line of defence: no segment of text reaches the terminal with a raw control
        character, whichever renderable made it (rich's own control segments, such as cursor moves,
        pass). Renderers escape names before layout (:func:`resnet_inspect.text.visible`), so this
        only matters for a name that slipped past them."""
        from rich.segment import Segment

        for segment in super().render(renderable, options):
            if segment.control or visible_lines(segment.text) == segment.text:
                yield segment
            else:
                yield Segment(visible_lines(segment.text), segment.style, segment.control)

    def print(self, *objects: Any, **kwargs: Any) -> None:
        """On a stream that is not UTF-8, glyphs it lacks become ASCII before rich lays out the
        table, so the columns stay aligned (the stream itself would catch any that remain)."""
        if not self.encoding.startswith("utf"):
            objects = tuple(_ascii(item, self.encoding) for item in objects)
        super().print(*objects, **kwargs)

    def on_broken_pipe(self) -> None:
        """The reader went away (``| head``): stop printing, and let the command finish with its own
        exit code. rich's default exits 1, which this tool keeps for a check that found differences."""
        self.quiet = True
        _silence_stdout()


def _ascii(item: Any, encoding: str) -> Any:
    """A string, Text, Table, Tree or Panel with the glyphs ``encoding`` lacks swapped for ASCII
    (resnet_inspect.process.GLYPHS); containers are changed in place, styles keep their spans."""
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Span, Text
    from rich.tree import Tree

    if isinstance(item, str):
        return process.fallback(item, encoding)
    if isinstance(item, Text):
        ends = [0]
        for char in item.plain:
            ends.append(ends[-1] + len(process.fallback(char, encoding)))
        if ends[-1] == len(item.plain) and process.fallback(item.plain, encoding) == item.plain:
            return item
        new = item.copy()
        new.plain = process.fallback(item.plain, encoding)
        new.spans = [Span(ends[span.start], ends[min(span.end, len(item.plain))], span.style) for span in item.spans]
        return new
    if isinstance(item, Table):
        item.title, item.caption = _ascii(item.title, encoding), _ascii(item.caption, encoding)
        for column in item.columns:
            column.header, column.footer = _ascii(column.header, encoding), _ascii(column.footer, encoding)
            column._cells[:] = [_ascii(cell, encoding) for cell in column._cells]
    elif isinstance(item, Tree):
        item.label = _ascii(item.label, encoding)
        for child in item.children:
            _ascii(child, encoding)
    elif isinstance(item, Panel):
        item.renderable, item.title = _ascii(item.renderable, encoding), _ascii(item.title, encoding)
    else:
        _ascii_fitted(item, encoding)
    return item


def _ascii_fitted(item: Any, encoding: str) -> None:
    """The fitting renderables of render.fit (and a Group of them), changed in place as _ascii does."""
    from rich.console import Group

    from ..render.fit import Facts, Fitted, Hanging

    if isinstance(item, Fitted):
        item.layouts = [_ascii(layout, encoding) for layout in item.layouts]
        item.table = item.layouts[0]
    elif isinstance(item, Facts):
        item.facts = [_ascii(fact, encoding) for fact in item.facts]
    elif isinstance(item, Hanging):
        item.text = _ascii(item.text, encoding)
    elif isinstance(item, Group):
        item.renderables[:] = [_ascii(part, encoding) for part in item.renderables]
