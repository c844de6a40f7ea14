"""Text from the user's files and models, made safe to print: control characters shown, never sent.

Module names, checkpoint keys and snapshot layer names are the user's strings. A name such as
``conv1\\x1b[2J`` would clear the screen if printed raw; every renderer passes such names through
:func:`visible`, which writes control characters as Python escapes (``\\x1b``), the way ``repr``
shows them, and leaves every other character (accents, CJK, emoji) as it is.
"""
from __future__ import annotations

import re

# C0 controls, DEL, C1 controls, and the Unicode format characters that reorder or hide text
# (bidirectional overrides and isolates, zero-width joiners): the "Trojan Source" set.
_HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
_HIDDEN_KEEP_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: object) -> str:
    """``text`` with every control or invisible formatting character written as an escape.

    The result holds no newline, so a name stays on its line in a table or tree.
    """
    return _HIDDEN.sub(_escape, str(text))


def visible_lines(text: object) -> str:
    """As :func:`visible`, but newlines and tabs are kept: for whole messages that span lines."""
    return _HIDDEN_KEEP_LINES.sub(_escape, str(text))


def article(word: str) -> str:
    """``a`` or ``an`` for ``word``, by its first letter (``an int``, ``a tuple``, ``an OrderedDict``)."""
    return "an" if word[:1].lower() in "aeiou" and word[:1] else "a"


def clip(text: object, limit: int = 120) -> str:
    """``text`` for a message, cut in the middle when it runs to thousands of characters."""
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit // 2]}…{text[-(limit // 3):]} ({len(text):,} characters)"


def sentence(text: object) -> str:
    """``text`` ending in exactly one full stop: a message that already ends its sentence (an
    exception's own "... set it to True.") gets none added, so no message reads "True.."."""
    text = str(text).rstrip()
    return text if text.endswith((".", "!", "?", "…")) else f"{text}."
