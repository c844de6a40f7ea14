"""How the ``resnet-inspect`` process meets its environment: standard streams, signals, exit codes.

The exit code is the verdict (docs/user-guide.md, "Exit codes"): 0 all good, 1 a check found
differences, 2 bad input (or a report that could not be written), 3 a bug, and 128+N when signal N
stopped the run (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP), as shells report it. What the
process writes to goes through :func:`install`, so that the output can never change that verdict:

- a reader that goes away (``| head -1``) ends the printing, silently, and nothing else;
- a closed stdout (``>&-``) is as if the output went to /dev/null;
- a stdout that cannot be written (``> /dev/full``) is said in one paragraph on stderr, and a run
  that was otherwise good exits 2 (a check that found differences still exits 1, a bug still 3);
- a terminal that cannot encode a glyph gets an ASCII stand-in (``x`` for ×, ``->`` for →).

Nothing here imports more than the standard library: it runs before anything else is loaded.
"""
from __future__ import annotations

import codecs
import gc
import io
import os
import re
import select
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, TextIO

# Signals that end a run politely (files being written are removed, see fileio.atomic_write).
# SIGTERM is what `timeout`, `docker stop` and CI cancellation send; SIGHUP a closed terminal.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
GLYPH_ERRORS = "resnet-inspect-glyphs"  # the codec error handler that writes ASCII stand-ins

# What a glyph the output stream cannot encode is written as. A character not listed is written
# as its escape (\u2264), so nothing is lost. Rich draws its own boxes and tree guides in ASCII
# when the stream is not UTF-8; the box-drawing range below is a second line of defence.
GLYPHS = {
    "×": "x", "→": "->", "✓": "OK", "✗": "X", "≠": "!=", "—": "-", "–": "-", "−": "-", "·": ".",
    "…": "...", "⌊": "floor(", "⌋": ")", "⌈": "ceil(", "⌉": ")", "Δ": "d", "↻": "*", "§": "Sec. ",
    "\u00a0": " ",
}


class Interrupted(KeyboardInterrupt):
    """A stop signal (SIGINT, SIGTERM, SIGHUP) arrived. A KeyboardInterrupt, so Ctrl-C handling applies."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _State:
    received: int | None = None  # the first stop signal, which decides the exit code
    stdout: _GuardedRaw | None = None
    stderr: _GuardedRaw | None = None


STATE = _State()


# -- deciding whether this process is the command line ---------------------------------------

def launched_as_cli() -> bool:
    """True when this interpreter was started as ``resnet-inspect`` or ``python -m resnet_inspect``."""
    if sys.argv and re.fullmatch(r"resnet-inspect(\.exe|-script\.pyw?)?", os.path.basename(sys.argv[0])):
        return True
    argv = list(getattr(sys, "orig_argv", []))
    return "-mresnet_inspect" in argv or any(a == "-m" and b == "resnet_inspect" for a, b in zip(argv, argv[1:]))


def early_guard() -> None:
    """Run first thing when the package is imported by the command line (a no-op for a library user).

    Until :func:`install` runs, a stop signal ends the process at once with 128+N: nothing has
    been written yet, and the imports that take the first ~0.15 s must not end in a traceback.
    Closed standard descriptors are reopened on /dev/null (see :func:`reopen_closed_fds`).

    Python's cyclic garbage collector is switched off for the run (see :func:`pause_collector`).
    """
    if not launched_as_cli():
        return
    pause_collector()
    reopen_closed_fds()
    _set_handlers(_exit_at_once)


def pause_collector() -> None:
    """Switch off Python's cyclic garbage collector for the rest of this (command-line) process.

    Once torch is imported, each full collection walks its million-odd objects: on the benchmark
    machine the collections during a `summary` took 0.2-0.4 s, more than the trace. A command
    runs for seconds and ends (``os._exit``, see ``cli.main``); what it allocates is freed by
    reference counting, so the collector has next to nothing to find in that time.
    """
    gc.disable()


def _exit_at_once(signum: int, frame: FrameType | None) -> None:
    os._exit(128 + signum)


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    if STATE.received is None:
        STATE.received = signum
    raise Interrupted(signum)


def _note_signal(signum: int, frame: FrameType | None) -> None:
    """After the command has finished: a late signal still decides the exit code, but stops nothing."""
    if STATE.received is None:
        STATE.received = signum


def _set_handlers(handler: Callable[[int, FrameType | None], Any]) -> dict[int, Any]:
    """Install ``handler`` for every stop signal; returns the previous handlers."""
    previous: dict[int, Any] = {}
    for signum in STOP_SIGNALS:
        try:
            previous[signum] = signal.signal(signum, handler)
        except (ValueError, OSError):  # not the main thread, or a signal this platform lacks
            pass
    return previous


# -- standard streams --------------------------------------------------------------------------

def reopen_closed_fds() -> None:
    """Point a closed stdin, stdout or stderr (``>&-``) at /dev/null.

    Otherwise the next file this process opens (the temporary file of an atomic write, say) would
    get descriptor 1, and a print would land in the user's file. Python set the matching
    ``sys.std*`` to None, so it gets a stream on the reopened descriptor.
    """
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        try:
            os.fstat(fd)
            continue
        except OSError:
            pass
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        if getattr(sys, name) is None:
            setattr(sys, name, open(fd, mode, closefd=False, encoding="utf-8"))


class _GuardedRaw(io.RawIOBase):
    """A standard descriptor whose write failures are recorded, never raised.

    After the first failure the descriptor is pointed at /dev/null, so later writes (and the
    interpreter's own flush at exit) have nowhere left to fail.
    """

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self.failure: OSError | None = None

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        try:
            return os.isatty(self._fd)
        except OSError:
            return False

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self.failure is not None:
            return len(view)
        while True:
            try:
                return os.write(self._fd, view)
            except BlockingIOError:  # a non-blocking pipe that is full: wait until it drains
                select.select([], [self._fd], [])
            except OSError as exc:  # EPIPE (the reader left), ENOSPC (/dev/full), EIO...
                self.failure = exc
                _discard(self._fd)
                return len(view)


def _discard(fd: int) -> None:
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def _glyph(char: str) -> str:
    if char in GLYPHS:
        return GLYPHS[char]
    point = ord(char)
    if 0x2500 <= point <= 0x257F:  # box drawing
        return "-" if char in "─━┄┅┈┉╌╍═" else "|" if char in "│┃┆┇┊┋╎╏║" else "+"
    if 0x2800 <= point <= 0x28FF:  # braille: the frames of a spinner
        return "."
    return char.encode("ascii", "backslashreplace").decode("ascii")


def fallback(text: str, encoding: str) -> str:
    """``text`` with each character ``encoding`` lacks replaced by its ASCII stand-in."""
    try:
        text.encode(encoding)
        return text
    except UnicodeEncodeError:
        return text.encode(encoding, GLYPH_ERRORS).decode(encoding)
    except LookupError:
        return text


def _glyph_errors(exc: UnicodeError) -> tuple[str, int]:
    """The codec error handler: ASCII stand-ins for what the stream's encoding lacks."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    return "".join(_glyph(char) for char in exc.object[exc.start:exc.end]), exc.end


codecs.register_error(GLYPH_ERRORS, _glyph_errors)


def _guard(stream: TextIO | None, fd: int, *, line_buffering: bool) -> tuple[TextIO, _GuardedRaw]:
    """A text stream on ``fd`` with the encoding of ``stream``, whose failures are recorded."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    if stream is not None:
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    raw = _GuardedRaw(fd)
    text = io.TextIOWrapper(io.BufferedWriter(raw), encoding=encoding, errors=GLYPH_ERRORS,
                            line_buffering=line_buffering or raw.isatty())
    return text, raw  # type: ignore[return-value]


MIN_WIDTH = 40  # below this, a table has no room for its cells: rich prints nothing or a column of letters
FALLBACK_WIDTH = 80


def usable_width() -> None:
    """Set ``COLUMNS`` to 80 when it, or the terminal, is narrower than MIN_WIDTH (``COLUMNS=0``
    among them), for every console the process makes, typer's help included. The terminal wraps
    the longer lines; that beats printing nothing."""
    text = os.environ.get("COLUMNS", "").strip()
    if text:
        if not text.isdigit() or int(text) >= MIN_WIDTH:
            return  # rich ignores a COLUMNS that is not a number
    else:
        try:
            if os.get_terminal_size(1).columns >= MIN_WIDTH:
                return
        except OSError:
            return  # not a terminal: rich prints at 80 columns anyway
    os.environ["COLUMNS"] = str(FALLBACK_WIDTH)


def install() -> Callable[[], None]:
    """Guard stdout and stderr and make stop signals raise :class:`Interrupted`.

    Returns a function that puts the previous streams and handlers back (for callers that go on
    living after the command, such as a test that runs ``main`` in its own interpreter).
    """
    reopen_closed_fds()
    usable_width()
    saved = (sys.stdout, sys.stderr)
    sys.stdout, STATE.stdout = _guard(sys.stdout, 1, line_buffering=False)
    sys.stderr, STATE.stderr = _guard(sys.stderr, 2, line_buffering=True)
    STATE.received = None
    previous = _set_handlers(_raise_interrupted)

    def restore() -> None:
        flush()
        sys.stdout, sys.stderr = saved
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    return restore


def flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a stream that is not ours, closed or failing: nothing to deliver
            pass


def settle(code: int) -> int:
    """The exit code, once the output is flushed: a stop signal or an unwritable stdout may change it.

    A broken pipe never does: the reader had what it wanted. Any other failure to write stdout
    means the report is lost, which a run that was otherwise good must not hide: exit 2.
    """
    _set_handlers(_note_signal)
    flush()
    if STATE.received is not None:
        return 128 + STATE.received
    failure = STATE.stdout.failure if STATE.stdout is not None else None
    if failure is None or isinstance(failure, BrokenPipeError):
        return code
    try:
        sys.stderr.write(f"Error: could not write to stdout: {failure.strerror or failure}. The output is lost; "
                         "the exit code still gives the verdict.\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    return code or 2
