"""Atomic writes' temporary files: their names, and which leftovers the next write removes.

The interrupted writes themselves (SIGTERM, SIGHUP, SIGINT, SIGKILL) are in test_cli_process.py,
which runs the real command line; these are the rules, checked in-process on files made here.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from resnet_inspect import fileio


def dead_pid() -> int:
    """A PID with no process: one above the system's maximum."""
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    except OSError:
        return 2**22 + 1


def leftover(folder: Path, name: str, *, age: float = 3600.0) -> Path:
    path = folder / name
    path.write_text("half a file\n")
    past = time.time() - age
    os.utime(path, (past, past))
    return path


def test_a_stale_temporary_file_is_removed_and_nothing_else(tmp_path: Path) -> None:
    stale = leftover(tmp_path, f".a.json.abcd_123.resnet-inspect-{dead_pid()}.tmp")
    kept = [
        leftover(tmp_path, f".b.json.abcd_123.resnet-inspect-{os.getpid()}.tmp"),  # its writer is alive
        leftover(tmp_path, f".c.json.abcd_123.resnet-inspect-{dead_pid()}.tmp", age=-60),  # newer than this run
        leftover(tmp_path, ".d.json.abcd_123.tmp"),  # an older resnet-inspect's name, or anyone's: not ours
        leftover(tmp_path, f"e.json.resnet-inspect-{dead_pid()}.tmp"),  # not hidden, no random part
        leftover(tmp_path, f".f.json.abcd_123.resnet-inspect-{dead_pid()}.tmp.bak"),
    ]
    link = tmp_path / f".g.json.abcd_123.resnet-inspect-{dead_pid()}.tmp"
    link.symlink_to(kept[0])
    assert fileio.remove_stale_temp_files(tmp_path) == [stale]
    assert not stale.exists() and all(p.exists() for p in kept) and link.is_symlink()


def test_the_next_write_removes_stale_temporary_files(tmp_path: Path) -> None:
    stale = leftover(tmp_path, f".old.json.abcd_123.resnet-inspect-{dead_pid()}.tmp")
    fileio.atomic_write(tmp_path / "new.json", "{}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.json"] and not stale.exists()


def test_the_temporary_name_says_who_made_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real = os.replace

    def replace(src: str, dst: str) -> None:
        seen.append(Path(src).name)
        real(src, dst)

    monkeypatch.setattr(fileio.os, "replace", replace)
    fileio.atomic_write(tmp_path / "shapes.json", "{}\n")
    assert len(seen) == 1 and fileio.TEMP_NAME.fullmatch(seen[0])
    assert seen[0].startswith(".shapes.json.") and seen[0].endswith(f".resnet-inspect-{os.getpid()}.tmp")


def test_a_name_at_the_length_limit_still_gets_a_temporary_file(tmp_path: Path) -> None:
    """A legal 255-byte name: the temporary file's name is shortened, not the target's."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    for name in ("a" * (limit - 5) + ".json", "é" * ((limit - 5) // 2) + ".json"):
        target = tmp_path / name
        assert len(os.fsencode(target.name)) <= limit
        fileio.atomic_write(target, "{}\n")
        assert target.read_text() == "{}\n"
    assert len(list(tmp_path.iterdir())) == 2


def test_temporary_name_is_cut_on_a_character_boundary() -> None:
    stem = fileio._temp_stem(Path("/tmp") / ("é" * 125 + ".json"))
    assert len(f".{stem}.XXXXXXXX{fileio.TEMP_TAG}{os.getpid()}.tmp".encode()) <= 255
    assert stem and set(stem) == {"é"}
