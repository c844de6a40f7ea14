"""``check --jobs`` (resnet_inspect.snapshot.parallel): files checked in forked worker processes.

The same results as one after another, in file order; a worker that dies costs its files a "bug"
result, never a hang; every worker is waited for; results cross the pipe whole. The snapshots are
CIFAR ResNet-20 at 32×32 (He et al. 2016, Sec. 4.2), about 10 ms a check. Nothing here measures
time: a sleep only makes one file finish last.
"""
from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from resnet_inspect import snapshot as snapshots
from resnet_inspect.cli import app
from resnet_inspect.snapshot import parallel

ROOT = Path(__file__).resolve().parents[1]
PARENT = os.getpid()
NO_FORK = "no safe fork here: check runs the files one after another"
SAFE_FORK = hasattr(os, "fork") and sys.platform != "darwin"
needs_fork = pytest.mark.skipif(not SAFE_FORK, reason=NO_FORK)


def run(*args: Any) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def cifar20() -> snapshots.Snapshot:
    return snapshots.take("cifar_resnet20")


@pytest.fixture
def make(cifar20: snapshots.Snapshot, tmp_path: Path) -> Any:
    """``make(name)`` writes a matching snapshot file; ``make(name, edit=True)`` one whose first
    conv's output shape was edited (a difference the check must find)."""
    def write(name: str, edit: bool = False) -> Path:
        path = tmp_path / name
        snapshots.write(cifar20, path)
        if edit:  # the file keeps one layer per line, so the diff knows the layer's line
            text = path.read_text()
            line = next(line for line in text.splitlines() if '"name": "conv1"' in line)
            path.write_text(text.replace(line, line.replace("[[1, 16, 32, 32]]", "[[1, 16, 33, 32]]")))
        return path
    return write


@pytest.fixture
def forked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids of the workers forked during the test (counted in the parent)."""
    if not SAFE_FORK:
        pytest.skip(NO_FORK)
    assert threading.active_count() == 1, f"another thread runs: {threading.enumerate()}; the check would not fork"
    pids: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            pids.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)
    return pids


def in_worker() -> bool:
    return os.getpid() != PARENT


def patch_check(monkeypatch: pytest.MonkeyPatch, name: str, action: Any) -> None:
    """Run ``action()`` in the worker when it checks the file called ``name`` (never in the parent:
    a check that did not fork fails the test instead of killing pytest)."""
    real = snapshots.check_file

    def check_file(path: Any, **kwargs: Any) -> snapshots.CheckResult:
        if Path(path).name == name:
            if not in_worker():
                raise AssertionError("checked in the parent; the test expected a worker")
            action()
        return real(path, **kwargs)

    monkeypatch.setattr(snapshots, "check_file", check_file)


def statuses(result: Any) -> list[tuple[str, str]]:
    return [(Path(f["file"]).name, f["status"]) for f in json.loads(result.stdout)["files"]]


# -- the same results as one after another, in file order ------------------------------------------

def test_one_job_and_two_give_the_same_results(make: Any, tmp_path: Path, forked: list[int]) -> None:
    files = [make("a.json"), make("changed.json", edit=True), tmp_path / "missing.json", make("b.json")]
    (tmp_path / "bad.json").write_text('{"model": "resnet18",')
    files.insert(2, tmp_path / "bad.json")
    one = run("check", "-j", "1", "--format", "json", *files)
    assert forked == []  # -j 1 is the loop in this process
    two = run("check", "-j", "2", "--format", "json", *files)
    assert len(forked) == 2
    assert one.exit_code == two.exit_code == 2, (one.output, two.output)
    assert json.loads(one.stdout) == json.loads(two.stdout)
    assert statuses(two) == [("a.json", "match"), ("changed.json", "changed"), ("bad.json", "error"),
                             ("missing.json", "error"), ("b.json", "match")]
    changed = json.loads(two.stdout)["files"][1]
    assert changed["changed"][0]["changes"]["output_shapes"] == {"old": [[1, 16, 33, 32]], "new": [[1, 16, 32, 32]]}
    for fmt in ("github", "text"):  # the annotations and the report, line for line
        alone, side_by_side = (run("check", "-j", jobs, "--format", fmt, *files) for jobs in ("1", "2"))
        assert alone.exit_code == side_by_side.exit_code == 2
        assert alone.stdout == side_by_side.stdout and str(files[1]) in alone.stdout
    assert len(forked) == 6  # two workers for each -j 2 run


def test_update_in_workers_rewrites_the_changed_files(make: Any, forked: list[int]) -> None:
    files = [make("a.json"), make("changed.json", edit=True), make("b.json")]
    result = run("check", "-j", "3", "--update", "--format", "json", *files)
    assert len(forked) == 3
    assert result.exit_code == 0 and statuses(result) == [("a.json", "match"), ("changed.json", "updated"),
                                                          ("b.json", "match")]
    assert files[1].read_bytes() == files[0].read_bytes()


def test_text_lists_the_files_in_argument_order_when_the_first_finishes_last(
        make: Any, tmp_path: Path, forked: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    files = [make(f"{name}.json") for name in ("slow", "b", "c", "d")]
    log = tmp_path / "finished.log"
    real = snapshots.check_file

    def check_file(path: Any, **kwargs: Any) -> snapshots.CheckResult:
        if Path(path).name == "slow.json":
            time.sleep(0.5)
        result = real(path, **kwargs)
        with open(log, "a", encoding="utf-8") as handle:  # O_APPEND: one whole line per write
            handle.write(f"{Path(path).name}\n")
        return result

    monkeypatch.setattr(snapshots, "check_file", check_file)
    result = run("check", "-j", "2", *files)
    assert result.exit_code == 0, result.output
    assert len(forked) == 2
    finished = log.read_text().split()
    assert finished.index("slow.json") > finished.index("b.json")  # the first file really came in after another
    shown = [line.split()[1] for line in result.output.splitlines() if line.startswith("✓")]
    assert shown == [str(file) for file in files]


# -- a worker that dies ------------------------------------------------------------------------------

def _sigkill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _exit_quietly() -> None:
    os._exit(7)


class _Escapes(BaseException):
    """Not an Exception: it gets past the command's per-file handling, into the worker's own."""


def _raise_past_the_check() -> None:
    raise _Escapes("the worker's last words")


@pytest.mark.parametrize("action,how", [(_sigkill, "was killed by signal SIGKILL"),
                                        (_exit_quietly, "exited with status 7"),
                                        (_raise_past_the_check, "exited with status 1 after _Escapes: the worker's "
                                                                "last words")])
def test_a_worker_that_dies_gives_its_unfinished_files_a_bug_result(
        make: Any, forked: list[int], monkeypatch: pytest.MonkeyPatch, action: Any, how: str) -> None:
    files = [make(f"{name}.json") for name in ("a", "b", "dies", "c", "d", "e")]
    patch_check(monkeypatch, "dies.json", action)
    result = run("check", "-j", "2", "--format", "json", *files)
    assert result.exit_code == 3, result.output
    assert len(forked) == 2
    doc = json.loads(result.stdout)
    assert doc["exit_code"] == 3 and [Path(f["file"]).name for f in doc["files"]] == [f.name for f in files]
    by_name = {Path(f["file"]).name: f for f in doc["files"]}
    assert by_name["dies.json"]["status"] == "bug"
    assert f"the worker process checking this file {how}" in by_name["dies.json"]["error"]["message"]
    assert {f["status"] for f in doc["files"]} == {"match", "bug"}
    assert sum(f["status"] == "match" for f in doc["files"]) >= 3  # the other worker's files, at least
    for pid in forked:  # reaped
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_text_still_reports_the_other_files_when_a_worker_dies(
        make: Any, forked: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    files = [make("a.json"), make("dies.json"), make("b.json")]  # equal sizes: a and b on one worker
    patch_check(monkeypatch, "dies.json", _sigkill)
    result = run("check", "-j", "2", *files)
    assert result.exit_code == 3
    assert f"✓ {files[0]} matches" in result.output and f"✓ {files[2]} matches" in result.output
    assert f"✗ {files[1]}: internal error: the worker process checking this file was killed by signal SIGKILL" in \
        " ".join(result.output.split())


def test_a_process_the_users_code_forked_does_not_keep_the_check_waiting(
        make: Any, tmp_path: Path, forked: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """A factory may fork (a multiprocessing pool): the copy holds the worker's pipe open after
    the worker has died. The check learns of the death all the same, and does not wait for the copy."""
    release, gone = tmp_path / "release", tmp_path / "gone"
    real = snapshots.check_file

    def check_file(path: Any, **kwargs: Any) -> snapshots.CheckResult:
        if in_worker() and Path(path).name == "forks.json" and os.fork() == 0:  # the copy waits to be let go
            deadline = time.monotonic() + 60
            while not release.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            gone.touch()
            os._exit(0)
        if in_worker() and Path(path).name == "dies.json":
            os._exit(7)
        return real(path, **kwargs)

    monkeypatch.setattr(snapshots, "check_file", check_file)
    # Equal sizes: forks.json and dies.json (first and third) go to one worker, b.json to the other.
    result = run("check", "-j", "2", "--format", "json", make("forks.json"), make("b.json"), make("dies.json"))
    assert not gone.exists()  # the check did not wait for the copy
    release.touch()
    assert result.exit_code == 3 and statuses(result) == [("forks.json", "match"), ("b.json", "match"),
                                                          ("dies.json", "bug")]
    assert "exited with status 7" in json.loads(result.stdout)["files"][2]["error"]["message"]


# -- stopping early: every worker is killed and waited for -------------------------------------------

def _items(make: Any, count: int) -> list[str | snapshots.SnapshotError]:
    return [str(make(f"f{i}.json")) for i in range(count)]


def _check(item: Any) -> snapshots.CheckResult:
    if Path(item).name != "f0.json":
        time.sleep(60)  # until the parent kills it
    return snapshots.check_file(item)


@pytest.mark.parametrize("jobs", [1, 2])
def test_the_parent_prepares_its_printing_while_the_workers_check(jobs: int, make: Any, forked: list[int]) -> None:
    """``while_waiting`` runs in the parent once, after every worker has forked and before the first
    result is in; with one job nothing waits, and it is not called."""
    seen: list[tuple[int, int]] = []
    results = list(parallel.check_files(_items(make, 2), jobs, snapshots.check_file,
                                        while_waiting=lambda: seen.append((os.getpid(), len(forked)))))
    assert [r.status for r in results] == ["match", "match"]
    assert seen == ([(PARENT, 2)] if jobs == 2 else [])


def test_closing_the_results_early_kills_and_reaps_the_workers(make: Any, forked: list[int]) -> None:
    results = parallel.check_files(_items(make, 3), 3, _check)
    assert next(results).status == "match"
    assert len(forked) == 3
    results.close()
    for pid in forked:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_an_interrupt_in_the_parent_kills_and_reaps_the_workers(make: Any, forked: list[int]) -> None:
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)  # while the parent waits for the sleeping workers
        with pytest.raises(KeyboardInterrupt):
            list(parallel.check_files(_items(make, 2), 2, _check))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert len(forked) == 2
    for pid in forked:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


@needs_fork
def test_a_failed_fork_checks_those_files_here(make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    real_fork, calls = os.fork, []

    def fork() -> int:
        calls.append(1)
        if len(calls) == 2:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return real_fork()

    monkeypatch.setattr(os, "fork", fork)
    items = _items(make, 4)
    results = list(parallel.check_files(items, 2, snapshots.check_file))
    assert len(calls) == 2
    assert [(r.file, r.status) for r in results] == [(item, "match") for item in items]


# -- when to fork ------------------------------------------------------------------------------------

@pytest.fixture
def thread() -> Iterator[None]:
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join()


@needs_fork
def test_forks_only_with_several_jobs_and_files() -> None:
    assert threading.active_count() == 1
    assert parallel.forks(2, 2) and parallel.forks(8, 3)
    assert not parallel.forks(1, 29)  # -j 1
    assert not parallel.forks(2, 1)  # one file


def test_no_fork_while_another_thread_runs(thread: None, make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not parallel.forks(2, 3)
    calls: list[int] = []
    monkeypatch.setattr(os, "fork", lambda: calls.append(1) or 0)  # a fork here would run the worker in pytest
    result = run("check", "-j", "2", "--format", "json", make("a.json"), make("b.json"))
    assert result.exit_code == 0 and calls == []
    assert statuses(result) == [("a.json", "match"), ("b.json", "match")]


def test_no_fork_where_the_platform_has_none(make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as macos:
        macos.setattr(sys, "platform", "darwin")
        assert not parallel.forks(2, 3)
    monkeypatch.delattr(os, "fork")
    assert not parallel.forks(2, 3)
    result = run("check", "-j", "2", "--format", "json", make("a.json"), make("b.json"))
    assert result.exit_code == 0 and statuses(result) == [("a.json", "match"), ("b.json", "match")]


def test_auto_is_one_job_per_usable_cpu_and_never_more_than_the_files(
        make: Any, forked: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    assert parallel.parse_jobs("auto") == parallel.parse_jobs("AUTO") == 8
    result = run("check", make("a.json"), make("b.json"), make("c.json"))  # the default is auto
    assert result.exit_code == 0, result.output
    assert len(forked) == 3
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 5)
    assert parallel.usable_cpus() == 5


@pytest.mark.parametrize("jobs", ["0", "-1", "x", "1.5", "", "two"])
def test_a_bad_job_count_is_bad_input(jobs: str, make: Any) -> None:
    result = run("check", "-j", jobs, make("a.json"), make("b.json"))
    assert result.exit_code == 2, result.output
    said = " ".join(result.stderr.split())
    assert said.startswith("Error: --jobs takes") and f"not '{jobs}'" in said
    assert "Traceback" not in result.output and said.count("Error") == 1


def test_longest_first_onto_the_least_loaded_worker() -> None:
    plan = parallel.schedule([1, 10, 3, 3, 3, 2], 2)
    assert plan == [[0, 1], [2, 3, 4, 5]]  # 11 against 11, each worker's files in file order
    assert parallel.schedule([5, 5, 5], 4) == [[0], [1], [2], []]
    assert sorted(i for worker in parallel.schedule(list(range(20)), 3) for i in worker) == list(range(20))


def test_a_file_is_weighed_by_its_size(make: Any, tmp_path: Path) -> None:
    small = tmp_path / "small.json"
    small.write_text("{}")
    big = make("big.json")
    assert parallel.weight(str(big)) - parallel.weight(str(small)) == big.stat().st_size - 2
    assert parallel.weight(str(tmp_path / "missing.json")) == 0
    assert parallel.weight(snapshots.SnapshotError(str(tmp_path), "is a folder with no snapshot files")) == 0


# -- results cross the pipe whole --------------------------------------------------------------------

def _same_error(a: Any, b: Any) -> None:
    assert (a is None) == (b is None)
    if a is not None:
        assert type(a) is type(b)
        assert (str(a), a.args, a.file, a.reason, a.line, a.column, a.key) == \
               (str(b), b.args, b.file, b.reason, b.line, b.column, b.key)


def _same(a: snapshots.CheckResult, b: snapshots.CheckResult) -> None:
    assert (a.file, a.status, a.diff) == (b.file, b.status, b.diff)
    if a.diff is not None:
        for side in ("old", "new"):  # not part of a Snapshot's ==, but the annotations' lines
            assert getattr(a.diff, side).layer_lines == getattr(b.diff, side).layer_lines
            assert getattr(a.diff, side).key_lines == getattr(b.diff, side).key_lines
    _same_error(a.error, b.error)


def test_every_kind_of_result_round_trips(make: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "model": "resnet18",\n  "layers": [1,,]\n}\n')
    wrong = make("wrong.json")
    doc = json.loads(wrong.read_text())
    del doc["totals"]
    wrong.write_text(json.dumps(doc, indent=1))
    results = [
        snapshots.check_file(make("a.json")),
        snapshots.check_file(make("changed.json", edit=True)),
        snapshots.check_file(make("updated.json", edit=True), update=True),
        snapshots.check_file(bad),
        snapshots.check_file(wrong),
        parallel.bug("f.json", "RuntimeError: simulated."),
    ]
    assert [r.status for r in results] == ["match", "changed", "updated", "error", "error", "bug"]
    assert results[1].diff is not None and results[1].diff.changed[0].line and results[1].diff.old.layer_lines
    assert results[3].error is not None and results[3].error.line == 3 and results[3].error.column is not None
    assert results[4].error is not None and results[4].error.key is not None
    for result in results:
        _same(parallel.loads_result(parallel.dumps_result(result)), result)


def test_plain_pickle_would_lose_a_snapshot_error() -> None:
    """Why results are not pickled plainly: an exception pickles by its args (the message)."""
    error = snapshots.SnapshotError("f.json", "broken", line=2, column=5, key="layers")
    with pytest.raises(TypeError):
        pickle.loads(pickle.dumps(error))
    copy = parallel.loads_result(parallel.dumps_result(snapshots.CheckResult("f.json", "error", error=error)))
    _same_error(copy.error, error)


def test_an_unpicklable_result_is_that_files_bug(make: Any, forked: list[int],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    real = snapshots.check_file

    def check_file(path: Any, **kwargs: Any) -> snapshots.CheckResult:
        result = real(path, **kwargs)
        if Path(path).name == "odd.json":
            result.diff.tolerated = lambda: None  # type: ignore[union-attr, assignment]
        return result

    monkeypatch.setattr(snapshots, "check_file", check_file)
    result = run("check", "-j", "2", "--format", "json", make("odd.json"), make("b.json"))
    assert result.exit_code == 3 and statuses(result) == [("odd.json", "bug"), ("b.json", "match")]
    assert "could not be sent back from the worker" in json.loads(result.stdout)["files"][0]["error"]["message"]


# -- the real command line -----------------------------------------------------------------------------

@needs_fork
def test_piped_into_head_the_workers_keep_the_verdict(make: Any) -> None:
    files = [str(make("a.json")), str(make("changed.json", edit=True)), str(make("b.json"))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    script = 'set -o pipefail; "$@" | head -1'
    proc = subprocess.run(["bash", "-c", script, "bash", sys.executable, "-m", "resnet_inspect", "check", "-j", "2",
                           *files], env=env, capture_output=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-1500:]
    assert proc.stdout.decode().startswith(f"✓ {files[0]} matches")
    assert b"Traceback" not in proc.stderr and proc.stderr == b""


FACTORY = '''import os, time
import resnet_inspect


def make():
    folder = os.environ.get("RI_TEST_WORKERS")
    if folder:  # a worker says it is here, then waits to be stopped
        open(os.path.join(folder, str(os.getpid())), "w").close()
        time.sleep(120)
    return resnet_inspect.build("cifar_resnet20")
'''


@needs_fork
def test_a_stopped_check_leaves_no_worker_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM (a cancelled CI job) to the command while its workers run: exit 143, no worker left."""
    from tests.conftest import importable_module

    importable_module(tmp_path, "jobs_factory_mod", FACTORY, monkeypatch)
    assert run("snapshot", "jobs_factory_mod:make", "-i", "32", "-o", "f.json").exit_code == 0
    (tmp_path / "g.json").write_bytes((tmp_path / "f.json").read_bytes())
    markers = tmp_path / "workers"
    markers.mkdir()
    env = {**os.environ, "RI_TEST_WORKERS": str(markers),
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    command = [sys.executable, "-m", "resnet_inspect", "check", "-j", "2", "--allow-factory", "jobs_factory_mod",
               "f.json", "g.json"]
    with subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        try:
            while len(list(markers.iterdir())) < 2 and proc.poll() is None:
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 143, (out, err)
    assert b"Traceback" not in err
    workers = [int(marker.name) for marker in markers.iterdir()]
    assert len(workers) == 2 and proc.pid not in workers
    for pid in workers:  # ended and waited for: not even a zombie
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
