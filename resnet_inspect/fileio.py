"""Atomic file writes: the old file survives intact until the new one is complete."""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .errors import InputError


def check_writable(path: str | os.PathLike[str], *, force: bool = True) -> Path:
    """Validate an output path before any work is done; raise InputError with the reason.

    Returns the file that will really be written: the end of the chain when ``path`` is a
    symbolic link, so the link is kept and its target is replaced.
    """
    given = Path(path)
    target = _resolve(given)
    named = f"{given} (a link to {target})" if target != given else str(given)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise InputError(f"Cannot write {named}: it is a directory.")
    if not parent.exists():
        raise InputError(f"Cannot write {named}: the directory {parent} does not exist.")
    if not parent.is_dir():
        raise InputError(f"Cannot write {named}: {parent} is not a directory.")
    kind = _special_kind(target)
    if kind is not None:
        raise InputError(f"Cannot write {named}: it is {kind}, not a regular file. resnet-inspect writes a new file "
                         "and renames it into place, which would replace it; give the path of a regular file.")
    if not os.access(parent, os.W_OK):
        raise InputError(f"Cannot write {named}: the directory {parent} is not writable.")
    if target.exists() and not force:
        raise InputError(f"{given} already exists; pass --force to overwrite it.")
    return target


def _resolve(path: Path) -> Path:
    """Follow a symbolic link (a chain of them, or a dangling one) to the file it names."""
    if not path.is_symlink():
        return path
    real = Path(os.path.realpath(path))
    if real.is_symlink():  # realpath stops inside a loop of links
        raise InputError(f"Cannot write {path}: it is a symbolic link that never reaches a file (a loop).")
    return real


def _special_kind(path: Path) -> str | None:
    """What a non-regular existing file is (``a named pipe (FIFO)``...), or None."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None  # it does not exist (yet): nothing to replace
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))
    return next((label for test, label in kinds if test(mode)), "not a regular file")


def atomic_write(path: str | os.PathLike[str], data: str | bytes, *, force: bool = True) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it into place.

    A failure at any point (a full disk, an interrupt) leaves the previous file untouched and
    removes the temporary one. A symbolic link is kept: the file it points to is replaced (the
    temporary file goes beside that file, so the rename stays on one file system). Returns ``path``.
    """
    target = check_writable(path, force=force)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target, _TEMP_SUFFIX), suffix=_TEMP_SUFFIX, dir=target.parent)
    except OSError as exc:  # e.g. a read-only or special file system
        raise InputError(f"Could not write {target}: {exc.strerror or exc}.") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        if target.exists():
            os.chmod(tmp, target.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        _remove(tmp)
        raise InputError(f"Could not write {target}: {exc.strerror or exc}.") from exc
    except BaseException:
        _remove(tmp)
        raise
    return Path(path)


_TEMP_SUFFIX = ".tmp"
_RANDOM = 8  # characters tempfile.mkstemp puts between the prefix and the suffix


def _temp_prefix(target: Path, suffix: str) -> str:
    """``.NAME.``, the start of the temporary file's name, cut so the whole name fits the folder's
    limit (255 bytes on most file systems): a legal 255-byte output name must stay writable."""
    limit = _name_max(target.parent)
    room = limit - len(suffix.encode()) - _RANDOM - 2  # the two dots around the name
    name = target.name.encode("utf-8", "surrogateescape")
    if len(name) > room:
        name = name[:max(room, 1)].decode("utf-8", "ignore").encode("utf-8", "surrogateescape")
    return f".{name.decode('utf-8', 'surrogateescape')}."


def _name_max(folder: Path) -> int:
    """The longest file name, in bytes, the file system holding ``folder`` takes."""
    try:
        return int(os.pathconf(folder if str(folder) else ".", "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows) or no answer
        return 255


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
