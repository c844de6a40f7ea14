"""Opening the files a user names: only regular files, never without bound.

A named pipe blocks the reader until someone writes to it, and ``/dev/zero`` or ``/dev/urandom``
never end: ``Path.read_bytes`` on either hangs or fills memory. Every file the tool reads (a
checkpoint, a snapshot) is checked here first: it must be a regular file, and no larger than its
kind allows. Errors the operating system gives for a path (a name over 255 bytes, no permission,
a loop of links) become one sentence, never a traceback.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .errors import InputError

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def kind(path: str | os.PathLike[str]) -> str | None:
    """``"a regular file"``, ``"a directory"``, ``"a named pipe (FIFO)"``... or None when nothing is there.

    Raises :class:`OSError` for a path the system cannot even look up (too long, no permission on
    a folder, a loop of links): :func:`reason` words it.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except NotADirectoryError:  # a path through a regular file: nothing is there
        return None
    except ValueError:  # a NUL byte, which no path can hold (from the API; a shell cannot pass one)
        raise OSError(errno.EINVAL, "a path cannot hold a NUL byte", str(path)) from None
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((label for test, label in _KINDS if test(mode)), "not a regular file")


class TooLarge(Exception):
    """A file larger than its kind allows; ``size`` is how much of it was seen."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


def reason(exc: OSError) -> str:
    """What an OSError on the user's path means, in a few words."""
    reasons = {errno.ENAMETOOLONG: "the name is longer than the file system allows (on Linux 255 bytes a name, "
                                   "4096 a path)",
               errno.ELOOP: "it is a symbolic link that never reaches a file (a loop)",
               errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
               errno.EISDIR: "it is a directory"}
    return reasons.get(exc.errno or 0) or exc.strerror or str(exc)


def require_regular(path: str | os.PathLike[str], what: str = "file") -> Path:
    """``path`` when it names a regular file; InputError saying what it is otherwise."""
    try:
        found = kind(path)
    except OSError as exc:
        raise InputError(f"Cannot read the {what} {short(path)}: {reason(exc)}.") from None
    if found is None:
        raise InputError(f"No such {what}: {short(path)}.")
    if found != "a regular file":
        raise InputError(f"Cannot read {short(path)}: it is {found}, not a {what}. resnet-inspect reads regular "
                         "files only (a pipe or a device could block or never end).")
    return Path(path)


def read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of a file of at most ``limit`` bytes. Raises :class:`TooLarge` beyond it (checked
    on the open file, and again by reading one byte more, should the file grow) and OSError."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise TooLarge(size)
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(len(data))
    return data


def short(path: str | os.PathLike[str], limit: int = 120) -> str:
    """A path for a message, cut in the middle when it runs to thousands of characters."""
    text = str(path)
    return text if len(text) <= limit else f"{text[:60]}…{text[-40:]} ({len(text):,} characters)"
