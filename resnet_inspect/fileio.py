"""Atomic file writes: the old file survives intact until the new one is complete."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import InputError


def check_writable(path: str | os.PathLike[str], *, force: bool = True) -> Path:
    """Validate an output path before any work is done; raise InputError with the reason."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise InputError(f"Cannot write {target}: it is a directory.")
    if not parent.exists():
        raise InputError(f"Cannot write {target}: the directory {parent} does not exist.")
    if not parent.is_dir():
        raise InputError(f"Cannot write {target}: {parent} is not a directory.")
    if not os.access(parent, os.W_OK):
        raise InputError(f"Cannot write {target}: the directory {parent} is not writable.")
    if target.exists() and not force:
        raise InputError(f"{target} already exists; pass --force to overwrite it.")
    return target


def atomic_write(path: str | os.PathLike[str], data: str | bytes, *, force: bool = True) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it into place.

    A failure at any point (a full disk, an interrupt) leaves the previous file untouched and
    removes the temporary one.
    """
    target = check_writable(path, force=force)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
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
    return target


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
