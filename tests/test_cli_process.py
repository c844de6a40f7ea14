"""The real command line in a child process: exit codes under closed pipes, closed or full stdout,
odd terminal widths and encodings, and stop signals during a run and during a write.

These need real file descriptors and signals, so each case runs ``python -m resnet_inspect`` in a
subprocess. The cases are cheap (``list``, usage errors, a malformed snapshot that is refused
before torch is imported, one ResNet-18 at 32x32) and run in parallel where they are independent.
Nothing here measures time; a delay only chooses the moment a signal arrives.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from resnet_inspect import snapshot as snapshots

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
for _name in ("COLUMNS", "LINES", "FORCE_COLOR", "PYTHONIOENCODING", "RESNET_INSPECT_TEST_HOLD_WRITE"):
    ENV.pop(_name, None)
CLI = [sys.executable, "-m", "resnet_inspect"]
WORKERS = 4


@dataclass
class Run:
    args: tuple[str, ...]
    code: int
    out: bytes
    err: bytes

    @property
    def text(self) -> str:
        return (self.out + self.err).decode("utf-8", "replace")


def run(*args: str, env: dict[str, str] | None = None, stdout: int | None = subprocess.PIPE,
        shell_redirect: str | None = None, cwd: Path | None = None) -> Run:
    """``resnet-inspect ARGS``; ``shell_redirect`` (e.g. ``>&-``) is applied by sh before exec."""
    command = [*CLI, *args]
    if shell_redirect is not None:
        command = ["sh", "-c", f'exec "$@" {shell_redirect}', "sh", *command]
    proc = subprocess.run(command, stdout=stdout, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                          env={**ENV, **(env or {})}, cwd=cwd, timeout=300)
    return Run(args, proc.returncode, proc.stdout or b"", proc.stderr)


def run_all(cases: Iterable[tuple[str, ...]], **kwargs: object) -> list[Run]:
    """Run independent cases in parallel (each is its own process)."""
    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(lambda args: run(*args, **kwargs), cases))  # type: ignore[arg-type]


def assert_clean(result: Run, code: int) -> None:
    assert result.code == code, (result.args, result.code, result.text[-1500:])
    assert b"Traceback" not in result.err, (result.args, result.text[-3000:])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A snapshot that matches, one whose total params differ by one, and a malformed one."""
    folder = tmp_path_factory.mktemp("snapshots")
    snap = snapshots.take("resnet18", (1, 3, 32, 32))
    match, differ, bad = folder / "match.json", folder / "differ.json", folder / "bad.json"
    snapshots.write(snap, match)
    snap.totals = {**snap.totals, "params": snap.totals["params"] + 1}
    snapshots.write(snap, differ)
    bad.write_text('{"model": "resnet18",')
    return {"match": str(match), "differ": str(differ), "bad": str(bad)}


def cheap_cases(files: dict[str, str]) -> list[tuple[tuple[str, ...], int]]:
    """Commands that never import torch, with the exit code each must have."""
    return [(("list",), 0), (("--help",), 0), (("--version",), 0), (("summary", "--bogus", "resnet18"), 2),
            (("summary", "no-such-model"), 2), (("check", files["bad"]), 2), (("check", files["bad"], "-f", "github"), 2)]


# -- An exit code never lies: closed pipes, closed and full stdout ---------------------------

def run_into_closed_pipe(*args: str) -> Run:
    """Run with stdout a pipe whose reader has already gone: every write fails with EPIPE."""
    read, write = os.pipe()
    os.close(read)
    try:
        return run(*args, stdout=write)
    finally:
        os.close(write)


def test_a_closed_pipe_keeps_every_commands_exit_code(files: dict[str, str]) -> None:
    cases = [*cheap_cases(files), (("check", files["differ"]), 1), (("check", files["differ"], "-f", "github"), 1),
             (("check", files["differ"], "-f", "json"), 1)]
    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(lambda case: run_into_closed_pipe(*case[0]), cases))
    for result, (_, code) in zip(results, cases):
        assert_clean(result, code)
        assert b"Broken pipe" not in result.err


@pytest.mark.parametrize("fmt", ["text", "github"])
def test_check_piped_into_head_keeps_its_verdict_under_pipefail(files: dict[str, str], fmt: str) -> None:
    script = f'set -o pipefail; "$@" check {files["differ"]} --format {fmt} | head -1 >/dev/null'
    proc = subprocess.run(["bash", "-c", script, "bash", *CLI], env=ENV, capture_output=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-1500:]
    assert b"Traceback" not in proc.stderr


def test_a_closed_stdout_is_as_if_the_output_were_discarded(files: dict[str, str], tmp_path: Path) -> None:
    cases = [*cheap_cases(files), (("check", files["differ"]), 1)]
    results = run_all([args for args, _ in cases], shell_redirect=">&-")
    for result, (_, code) in zip(results, cases):
        assert_clean(result, code)
    # With descriptor 1 closed, the temporary file of an atomic write could have become stdout;
    # the file written must hold the snapshot and nothing else.
    target = tmp_path / "r18.json"
    result = run("snapshot", "resnet18", "-i", "32", "-o", str(target), shell_redirect=">&-")
    assert_clean(result, 0)
    assert snapshots.load(target).totals == snapshots.load(files["match"]).totals


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_stdout_is_exit_2_unless_the_verdict_says_more(files: dict[str, str]) -> None:
    cases = [(("list",), 2), (("--help",), 2), (("check", files["match"]), 2), (("check", files["differ"]), 1),
             (("check", files["bad"]), 2), (("summary", "no-such-model"), 2)]
    results = run_all([args for args, _ in cases], shell_redirect=">/dev/full")
    for result, (args, code) in zip(results, cases):
        assert_clean(result, code)
        if args[0] != "summary":  # the bad model's error is on stderr, which is fine
            assert b"could not write to stdout: No space left on device" in result.err, result.text


# -- Narrow terminals and non-UTF-8 streams -----------------------------------------------------

@pytest.mark.parametrize("columns", ["0", "1", "5", "20"])
def test_a_tiny_or_zero_width_still_prints_everything(files: dict[str, str], columns: str) -> None:
    env = {"COLUMNS": columns}
    cases = [(("list",), 0), (("summary", "no-such-model"), 2), (("check", files["bad"]), 2)]
    if columns in ("0", "5"):
        cases.append((("check", files["differ"]), 1))
    results = run_all([args for args, _ in cases], env=env)
    for result, (args, code) in zip(results, cases):
        assert_clean(result, code)
    listed, error, bad, *differ = results
    assert "resnet50" in listed.out.decode().split()  # a name whole on its line, not folded
    assert "no-such-model" in error.err.decode() and error.err.decode().startswith("Error: ")
    assert Path(files["bad"]).name in bad.out.decode()
    for result in differ:
        assert "11,689,513" in result.out.decode()  # the diff's figures are all there


def run_on_terminal(*args: str, env: dict[str, str], columns: int = 100) -> Run:
    """``resnet-inspect ARGS`` on a pseudo-terminal ``columns`` wide: typer then draws help and usage
    errors with rich, in boxes."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen([*CLI, *args], stdin=slave, stdout=slave, stderr=slave, env={**ENV, **env})
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return Run(args, proc.wait(timeout=300), b"".join(chunks), b"")


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
@pytest.mark.parametrize("env,columns", [({"COLUMNS": "0"}, 100), ({}, 12), ({"PYTHONIOENCODING": "ascii"}, 100)],
                         ids=["COLUMNS=0", "12-column-terminal", "ascii-terminal"])
def test_help_and_usage_errors_on_a_terminal(env: dict[str, str], columns: int) -> None:
    """On a terminal, typer draws help with rich, in its own console: the width and encoding rules hold there too."""
    cases = [(("--help",), 0), (("summary", "--bogus", "resnet18"), 2), (("summary", "no-such-model"), 2)]
    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(lambda case: run_on_terminal(*case[0], env=env, columns=columns), cases))
    for result, (_, code) in zip(results, cases):
        assert_clean(result, code)
        assert b"Traceback" not in result.out
        if "PYTHONIOENCODING" in env:
            result.out.decode("ascii")
    helped, usage, error = (re.sub(r"\x1b\[[0-9;]*m", "", r.out.decode("utf-8", "replace")) for r in results)
    assert "snapshot" in helped.split() and "Usage:" in helped
    assert "--bogus" in usage and "no-such-model" in error


ENCODINGS = [{"PYTHONIOENCODING": "ascii"}, {"PYTHONUTF8": "0", "LC_ALL": "C", "LANG": "C"},
             {"PYTHONIOENCODING": "latin-1"}]


@pytest.mark.parametrize("env", ENCODINGS, ids=["ascii", "C-locale", "latin-1"])
def test_a_non_utf8_stream_gets_ascii_glyphs_and_the_same_exit_codes(files: dict[str, str],
                                                                     env: dict[str, str]) -> None:
    cases = [*cheap_cases(files), (("check", files["differ"]), 1)]
    if env.get("PYTHONIOENCODING") == "ascii":
        cases += [(("summary", "resnet18", "-i", "32", "-d", "1"), 0), (("explain", "resnet18", "maxpool", "-i", "32"), 0),
                  (("diff", "resnet18", "resnet34", "-i", "32", "--exit-code"), 1)]
    results = run_all([args for args, _ in cases], env=env)
    encoding = "latin-1" if env.get("PYTHONIOENCODING") == "latin-1" else "ascii"
    for result, (args, code) in zip(results, cases):
        assert_clean(result, code)
        (result.out + result.err).decode(encoding)  # every byte is in the stream's encoding
    differ = next(r for r in results if r.args == ("check", files["differ"]))
    assert "11,689,513 -> 11,689,512" in differ.out.decode(encoding)
    if len(results) > len(cheap_cases(files)) + 1:
        summary = next(r for r in results if r.args[0] == "summary" and r.code == 0).out.decode()
        assert "1x3x32x32" in summary and " OK" in summary
        lines = next(r for r in results if r.args[0] == "diff").out.decode().splitlines()
        header = next(line for line in lines if "Also differs" in line)
        added = next(line for line in lines if "- -> 1x64x8x8" in line and "only in B" in line)
        # Stand-ins are chosen before rich lays out the table, so three "->" do not push the last
        # column three characters to the right.
        assert added.index("only in B") == header.index("Also differs")


# -- Stop signals ---------------------------------------------------------------------------------

def wait_until_guarded(proc: subprocess.Popen[bytes]) -> None:
    """Wait until resnet-inspect's own code runs in ``proc`` (it then catches SIGTERM), so that a
    signal lands in this program rather than in the interpreter's start-up, which Python owns."""
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        line = next((ln for ln in status.read_text().splitlines() if ln.startswith("SigCgt:")), "SigCgt: 0")
        if int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.001)


SCRIPT = Path(sys.executable).with_name("resnet-inspect")  # the console script, where installed


def interrupt(args: list[str], signum: int, delay: float, command: list[str] = CLI) -> tuple[int, bytes]:
    proc = subprocess.Popen([*command, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=ENV)
    wait_until_guarded(proc)
    time.sleep(delay)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads SigCgt from /proc")
def test_ctrl_c_at_any_moment_exits_130_without_a_traceback() -> None:
    """From the first import (0 s), through torch's import, to the trace; 130 as shells report
    SIGINT. In the last instants of interpreter shutdown Python itself restores the default
    action, and the process then ends by SIGINT, which shells also report as 130."""
    cases = [(signal.SIGINT, d, CLI) for d in (0.0, 0.02, 0.1, 0.3)]
    cases += [(signal.SIGTERM, 0.1, CLI), (signal.SIGHUP, 0.02, CLI)]
    if SCRIPT.exists():
        cases.append((signal.SIGINT, 0.0, [str(SCRIPT)]))
    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(lambda c: interrupt(["summary", "resnet18", "-i", "32"], *c), cases))
    for (signum, delay, _), (code, err) in zip(cases, results):
        assert code in (128 + signum, -signum), (signum, delay, code, err[-2000:])
        assert b"Traceback" not in err and b"Aborted" not in err, (signum, delay, err[-2000:])


def hold_a_write(target: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """Start ``snapshot -o target`` with the write held once its temporary file is complete."""
    proc = subprocess.Popen([*CLI, "snapshot", "resnet18", "-i", "32", "-o", str(target), "--force"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env={**ENV, "RESNET_INSPECT_TEST_HOLD_WRITE": "1"})
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()
    assert line.startswith("resnet-inspect: holding "), line
    temp = Path(line[len("resnet-inspect: holding "):].strip())
    assert temp.exists() and temp.parent == target.parent
    return proc, temp


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=["TERM", "HUP", "INT"])
def test_a_stop_signal_during_a_write_removes_the_temporary_file(tmp_path: Path, signum: int) -> None:
    target = tmp_path / "shapes.json"
    target.write_text("the user's old file\n")
    proc, temp = hold_a_write(target)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signum, err[-2000:]
    assert b"Traceback" not in err
    assert target.read_text() == "the user's old file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shapes.json"]


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path: Path) -> None:
    target = tmp_path / "shapes.json"
    target.write_text("the user's old file\n")
    proc, temp = hold_a_write(target)
    proc.kill()
    proc.communicate(timeout=300)
    assert temp.exists() and target.read_text() == "the user's old file\n"  # SIGKILL: nothing could clean up
    # Beside it: a temporary file of a writer that is still running (this test), and files that
    # only look alike; none of them may be touched.
    alive = tmp_path / f".other.json.abcdefgh.resnet-inspect-{os.getpid()}.tmp"
    lookalikes = [tmp_path / ".shapes.json.abcdefgh.tmp", tmp_path / "notes.resnet-inspect-1.tmp.txt"]
    for path in (alive, *lookalikes):
        path.write_text("keep me\n")
    os.utime(alive, (time.time() - 3600, time.time() - 3600))
    result = run("snapshot", "resnet18", "-i", "32", "-o", str(tmp_path / "other.json"))
    assert_clean(result, 0)
    assert not temp.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["shapes.json", "other.json", alive.name, *(p.name for p in lookalikes)])
    assert json.loads((tmp_path / "other.json").read_text())["model"] == "resnet18"
