"""Atomic file writes: the old file survives intact until the new one is complete.

The new file is first written to a temporary file beside the target, named
``.NAME.XXXXXXXX.resnet-inspect-PID.tmp`` (PID: the writing process). An error or a stop signal
(SIGINT, SIGTERM, SIGHUP) removes it. SIGKILL cannot be caught, so the next write into the same
folder removes the temporary files that a resnet-inspect process left there and that are stale:
their process is gone and they are older than the current run. Nothing else is ever removed.
"""
from __future__ import annotations

import os
import re
import signal
import stat
import sys
import tempfile
import time
from pathlib import Path

from . import reading
from .errors import InputError

TEMP_TAG = ".resnet-inspect-"  # in every temporary file's name, before the writer's PID
TEMP_NAME = re.compile(r"\..*\.[A-Za-z0-9_]{8}" + re.escape(TEMP_TAG) + r"(?P<pid>[0-9]{1,10})\.tmp", re.DOTALL)
STARTED = time.time()  # when this run began (near enough: the module is imported before any write)
# Tests only: hold every atomic write, its temporary file complete, until a signal ends the process,
# so that a test can interrupt a write at a known point (tests/test_cli_process.py).
HOLD_ENV = "RESNET_INSPECT_TEST_HOLD_WRITE"


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
        found = reading.kind(path)
    except OSError:
        return None  # a path the system cannot look up: the write itself will say why
    return None if found in (None, "a regular file") else found


def atomic_write(path: str | os.PathLike[str], data: str | bytes, *, force: bool = True) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it into place.

    A failure at any point (a full disk, an interrupt, SIGTERM or SIGHUP) leaves the previous file
    untouched and removes the temporary one; stale temporary files of killed runs are removed first
    (see the module's docstring). A symbolic link is kept: the file it points to is replaced (the
    temporary file goes beside that file, so the rename stays on one file system). Returns ``path``.
    """
    target = check_writable(path, force=force)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    remove_stale_temp_files(target.parent if str(target.parent) else Path("."))
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{_temp_stem(target)}.", suffix=f"{TEMP_TAG}{os.getpid()}.tmp",
                                   dir=target.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        _hold_for_tests(tmp)
        if target.exists():
            os.chmod(tmp, target.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:  # a full disk, a read-only or special file system...
        if tmp is not None:
            _remove(tmp)
        raise InputError(f"Could not write {target}: {exc.strerror or exc}.") from exc
    except BaseException:  # KeyboardInterrupt, or SIGTERM/SIGHUP (resnet_inspect.process raises for them)
        if tmp is not None:
            _remove(tmp)
        raise
    return Path(path)


def _temp_stem(target: Path) -> str:
    """The target's name, shortened (at a character) so that the temporary file's name stays within
    the file system's limit even when the target's own name is at it."""
    try:
        limit = os.pathconf(target.parent if str(target.parent) else ".", "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    room = limit - len(f"..XXXXXXXX{TEMP_TAG}{os.getpid()}.tmp".encode())
    name = target.name
    while len(os.fsencode(name)) > room:
        name = name[:-1]
    return name


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Remove the temporary files in ``folder`` that a resnet-inspect run left behind (it was
    killed, with SIGKILL or a power cut): named as :func:`atomic_write` names them, regular files of
    this user, older than this run, and whose process no longer exists. Returns what was removed."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = TEMP_NAME.fullmatch(entry.name)
        if match is None or not _is_stale(entry, int(match["pid"])):
            continue
        try:
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


def _is_stale(entry: os.DirEntry[str], pid: int) -> bool:
    try:
        info = entry.stat(follow_symlinks=False)
    except OSError:
        return False
    if not stat.S_ISREG(info.st_mode) or info.st_mtime >= STARTED:
        return False
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return False
    return not _alive(pid)


def _alive(pid: int) -> bool:
    """Whether a process with this PID exists (one we may not signal exists too)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def _hold_for_tests(tmp: str) -> None:
    """With RESNET_INSPECT_TEST_HOLD_WRITE set (tests only), say where the temporary file is and
    wait for a signal, as a slow disk would make the write wait."""
    if not os.environ.get(HOLD_ENV):
        return
    sys.stderr.write(f"resnet-inspect: holding {tmp}\n")
    sys.stderr.flush()
    while True:
        if hasattr(signal, "pause"):
            signal.pause()
        else:  # pragma: no cover (Windows)
            time.sleep(3600)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
