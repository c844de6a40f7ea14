"""``check --jobs``: check snapshot files in worker processes forked from the command.

A fork shares what the command has already imported (torch above all, ~0.9 s), so each worker
starts at once; only the checks run side by side. The files are dealt to the workers before they
start, longest first onto the least loaded one (LPT, Graham 1969), by an estimate that needs no
parse: a file's size, which grows with its layer count and so with what its trace costs.

Each worker checks its files with the caller's own function, one after another, and sends each
result back on a pipe of its own as soon as it has it. The caller gets the results in file order,
each as soon as every earlier one is in. A worker never returns into the caller's code: whatever
happens, it ends with ``os._exit`` (no atexit handlers, no flushing of the parent's buffers), and
it writes nothing to stdout. A worker that dies without sending a result (a signal, the kernel's
out-of-memory killer) costs its unfinished files a "bug" result that says how it ended; every
worker is waited for on every path, and killed first when the caller stops early.

Forking is safe only with no other thread running (a lock another thread holds stays held in the
child), so the command checks in its own process when a thread is running, where ``os.fork`` is
missing or unsafe (Windows, macOS), or when there is one job or one file.
"""
from __future__ import annotations

import heapq
import io
import os
import pickle
import selectors
import signal
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from .. import process
from ..errors import InputError
from ..text import sentence
from .compare import CheckResult
from .schema import SnapshotError

Item = str | SnapshotError  # a file to check, or a folder's error (see folders.snapshot_files)
Check = Callable[[Item], CheckResult]

# A frame on a worker's pipe: the file's index (or CRASHED) and the payload's length, then the payload.
_HEADER = struct.Struct("!qQ")
CRASHED = -1  # the payload is the text of the exception that ended the worker
# A file's fixed cost (reading, building) in the size estimate, as bytes of layers: on shapes/ a
# check took about 3 ms plus 0.6 ms per KB (cifar_resnet1202's 596 KB: 0.39 s).
PER_FILE = 4096
GRACE = 2.0  # seconds a worker has to finish an atomic write after SIGTERM before SIGKILL
# How often (seconds) the parent looks for a worker that ended while its pipe stays open: a process
# the user's code forked inside it holds the write end, and would otherwise keep the check waiting.
POLL = 0.2


# -- how many jobs -------------------------------------------------------------------------------

def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, as ``taskset`` or a container sets it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def parse_jobs(text: str) -> int:
    """``--jobs``: a positive whole number, or ``auto`` for one job per usable CPU."""
    value = text.strip()
    if value.lower() == "auto":
        return usable_cpus()
    if value.isdecimal() and int(value) > 0:
        return int(value)
    raise InputError(f"--jobs takes the number of files to check at once, a whole number of 1 or more, or auto "
                     f"(one per usable CPU, the default), not '{text}'. -j 1 checks them one after another in "
                     "this process.")


def forks(jobs: int, files: int) -> bool:
    """Whether to check in forked workers: more than one job and one file, ``os.fork`` exists, and
    no other thread runs (forking then can leave a lock held for ever in the child).

    Not on macOS, where system libraries may start threads of their own, so a forked child can
    crash; CPython's multiprocessing stopped forking there by default for this reason (3.8)."""
    return (jobs > 1 and files > 1 and hasattr(os, "fork") and sys.platform != "darwin"
            and threading.active_count() == 1)


def schedule(weights: Sequence[int], workers: int) -> list[list[int]]:
    """The files' indices per worker: longest first onto the least loaded worker, each worker's
    files then in file order (so the earlier files' results come first)."""
    plan: list[list[int]] = [[] for _ in range(max(1, workers))]
    loads = [(0, worker) for worker in range(len(plan))]
    for index in sorted(range(len(weights)), key=lambda i: (-weights[i], i)):
        load, worker = heapq.heappop(loads)
        plan[worker].append(index)
        heapq.heappush(loads, (load + weights[index], worker))
    return [sorted(indices) for indices in plan]


def weight(item: Item) -> int:
    """What checking ``item`` is expected to cost, in bytes of the file (0 for one that cannot be read)."""
    if isinstance(item, SnapshotError):
        return 0
    try:
        return os.path.getsize(item) + PER_FILE
    except OSError:
        return 0


# -- results on a pipe ---------------------------------------------------------------------------

def _rebuild_error(cls: type[SnapshotError], file: str, reason: str, line: int | None, column: int | None,
                   key: str | None) -> SnapshotError:
    return cls(file, reason, line=line, column=column, key=key)


class _Pickler(pickle.Pickler):
    """Pickles a SnapshotError by its fields: an exception pickles by its ``args`` (here the whole
    message), which SnapshotError's own ``__init__`` does not take back."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, SnapshotError):
            return _rebuild_error, (type(obj), obj.file, obj.reason, obj.line, obj.column, obj.key), dict(vars(obj))
        return NotImplemented


def dumps_result(result: CheckResult) -> bytes:
    """``result`` as bytes for the pipe (:func:`loads_result` reads them back)."""
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(result)
    return buffer.getvalue()


def loads_result(data: bytes) -> CheckResult:
    """The CheckResult that :func:`dumps_result` wrote; it comes from this command's own worker."""
    result = pickle.loads(data)
    if not isinstance(result, CheckResult):
        raise TypeError(f"a worker sent a {type(result).__name__}, not a CheckResult")
    return result


def _file(item: Item) -> str:
    return item.file if isinstance(item, SnapshotError) else str(item)


def bug(item: Item, what: str) -> CheckResult:
    """A "bug" result for ``item``, worded as the command words its other internal errors."""
    file = _file(item)
    return CheckResult(file, "bug", error=SnapshotError(file, f"internal error: {what} This is a bug in resnet-inspect; "
                                                        "re-run with -j 1 --debug for the traceback and report it."))


# -- the worker ----------------------------------------------------------------------------------

class _Pipe:
    """A worker's end of its pipe. ``torn`` is True while a frame is half written (a signal
    stopped the write): nothing more can be sent that the parent would read as a frame."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.torn = False

    def send(self, index: int, payload: bytes) -> None:
        view = memoryview(_HEADER.pack(index, len(payload)) + payload)
        self.torn = True
        while view:
            view = view[os.write(self.fd, view):]
        self.torn = False


def _payload(item: Item, result: CheckResult) -> bytes:
    try:
        return dumps_result(result)
    except Exception as exc:  # noqa: BLE001 - a result that cannot be pickled is that file's bug
        return dumps_result(bug(item, f"its result could not be sent back from the worker process: "
                                      f"{type(exc).__name__}: {sentence(exc)}"))


def _work(fd: int, indices: list[int], items: Sequence[Item], check: Check, debug: bool, mask: Any) -> NoReturn:
    """A worker's whole life: check ``indices``, send each result, end with ``os._exit``. ``mask``
    is the signal mask to restore (stop signals were blocked across the fork)."""
    code, pipe = 0, _Pipe(fd)
    try:
        _sigmask("SIG_SETMASK", mask)
        sys.stdout = sys.stderr  # stdout is the parent's, in file order; a stray print goes to stderr
        os.dup2(2, 1)
        for index in indices:
            pipe.send(index, _payload(items[index], check(items[index])))
    except BaseException as exc:  # noqa: BLE001 - nothing may return into the parent's code
        code = 128 + exc.signum if isinstance(getattr(exc, "signum", None), int) else 1
        try:
            if debug:
                traceback.print_exc(file=sys.stderr)
            if not pipe.torn:
                pipe.send(CRASHED, f"{type(exc).__name__}: {sentence(exc)}".encode("utf-8", "replace"))
        except BaseException:  # noqa: BLE001, S110 - the parent has gone, or a second signal: end anyway
            pass
    finally:
        try:
            sys.stderr.flush()
        finally:
            os._exit(code)


# -- the parent ----------------------------------------------------------------------------------

@dataclass
class _Worker:
    pid: int
    fd: int
    indices: list[int]
    sent: set[int] = field(default_factory=set)
    crash: str | None = None
    buffer: bytearray = field(default_factory=bytearray)
    reaped: bool = False
    status: int | None = None  # the wait status, once reaped (None: another waiter took it)

    def frames(self, chunk: bytes) -> Iterator[tuple[int, bytes]]:
        """The whole frames that ``chunk`` completes."""
        self.buffer += chunk
        while len(self.buffer) >= _HEADER.size:
            index, size = _HEADER.unpack_from(self.buffer)
            end = _HEADER.size + size
            if len(self.buffer) < end:
                return
            payload = bytes(self.buffer[_HEADER.size:end])
            del self.buffer[:end]
            yield index, payload


def _start(indices: list[int], items: Sequence[Item], check: Check, debug: bool, running: list[_Worker]) -> _Worker:
    """Fork a worker for ``indices``. Stop signals wait until the child is inside :func:`_work`:
    one that arrived in between would raise into the parent's code, in the child."""
    read, write = os.pipe()
    mask = _sigmask("SIG_BLOCK", process.STOP_SIGNALS)
    try:
        pid = os.fork()
    except BaseException:
        _sigmask("SIG_SETMASK", mask)
        os.close(read)
        os.close(write)
        raise
    if pid == 0:
        try:
            os.close(read)
            for other in running:  # the parent's ends of the earlier workers' pipes
                os.close(other.fd)
        finally:
            _work(write, indices, items, check, debug, mask)
    _sigmask("SIG_SETMASK", mask)
    os.close(write)
    os.set_blocking(read, False)
    return _Worker(pid, read, indices)


def _sigmask(how: str, signals: Any) -> Any:
    """``signal.pthread_sigmask`` (``how`` names SIG_BLOCK or SIG_SETMASK), where the platform has
    it; returns the previous mask."""
    if not hasattr(signal, "pthread_sigmask"):
        return set()
    return signal.pthread_sigmask(getattr(signal, how), signals)


def ended(status: int) -> str:
    """How a worker ended, from its wait status: ``was killed by signal SIGKILL``."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            return f"was killed by signal {signal.Signals(number).name}"
        except ValueError:
            return f"was killed by signal {number}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def _lost(worker: _Worker, item: Item) -> CheckResult:
    how = ended(worker.status) if worker.status is not None else "ended"
    if worker.crash is not None:
        how += f" after {worker.crash.rstrip('.')}"
    return bug(item, f"the worker process checking this file {how}, before it sent the result.")


def _take(worker: _Worker, index: int, payload: bytes, items: Sequence[Item], results: dict[int, CheckResult]) -> None:
    """One frame from ``worker``: a result, or the text of what ended it."""
    if index == CRASHED:
        worker.crash = payload.decode("utf-8", "replace")
        return
    if index not in worker.indices or index in worker.sent:
        return  # not this worker's file: nothing a correct worker sends
    worker.sent.add(index)
    try:
        results[index] = loads_result(payload)
    except Exception as exc:  # noqa: BLE001 - that file's bug, not the end of the batch
        results[index] = bug(items[index], f"its result could not be read back from the worker process: "
                                           f"{type(exc).__name__}: {sentence(exc)}")


def _reap(worker: _Worker, block: bool = True) -> bool:
    """Wait for ``worker`` (at once unless ``block``); True once it has been reaped."""
    if not worker.reaped:
        try:
            pid, status = os.waitpid(worker.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:  # reaped by someone else (a SIGCHLD handler of the caller's)
            pid, status = worker.pid, None
        if pid == 0:
            return False
        worker.reaped, worker.status = True, status
    return True


def _finish(worker: _Worker, items: Sequence[Item], results: dict[int, CheckResult]) -> None:
    """``worker`` closed its pipe: reap it, and give each file it did not send a "bug" result."""
    os.close(worker.fd)
    worker.fd = -1
    _reap(worker)
    for index in worker.indices:
        if index not in worker.sent:
            results[index] = _lost(worker, items[index])


def _stop(workers: list[_Worker]) -> None:
    """End and reap every worker still running: SIGTERM (an atomic write then removes its temporary
    file), SIGKILL after GRACE seconds."""
    live = [worker for worker in workers if not worker.reaped]
    try:
        for worker in live:
            _kill(worker, signal.SIGTERM)
        deadline = time.monotonic() + GRACE
        while any(not _reap(worker, block=False) for worker in live) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        for worker in live:
            if not worker.reaped:
                _kill(worker, signal.SIGKILL)
                _reap(worker)
        for worker in workers:
            if worker.fd >= 0:
                os.close(worker.fd)
                worker.fd = -1


def _kill(worker: _Worker, signum: int) -> None:
    try:
        os.kill(worker.pid, signum)
    except ProcessLookupError:
        pass


def _flush() -> None:
    """Nothing buffered may be written twice: once by the parent, once by a worker."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


def _share_imports() -> None:
    """Import what a check imports (torch, the engine) once, here, for every worker to share. An
    import that fails here fails again in each check, as that file's outcome, as without workers."""
    try:
        from ..analysis import inspect  # noqa: F401
    except Exception:  # noqa: BLE001, S110
        pass


def check_files(items: Sequence[Item], jobs: int, check: Check, *, debug: bool = False,
                while_waiting: Callable[[], object] | None = None) -> Iterator[CheckResult]:
    """``check(item)`` for every item, in item order, in up to ``jobs`` forked workers when
    :func:`forks` allows it (else one after another, here). Close the iterator (or let an
    exception end it) and the workers are killed and waited for. ``while_waiting`` runs here once
    the workers have started (the command imports what prints their results meanwhile)."""
    if forks(jobs, len(items)):
        _share_imports()
    if not forks(jobs, len(items)):  # an import may have started a thread
        for item in items:
            yield check(item)
        return
    yield from _in_workers(items, min(jobs, len(items)), check, debug, while_waiting)


def _in_workers(items: Sequence[Item], jobs: int, check: Check, debug: bool,
                while_waiting: Callable[[], object] | None = None) -> Iterator[CheckResult]:
    workers: list[_Worker] = []
    results: dict[int, CheckResult] = {}
    try:
        _flush()
        unforked: list[int] = []
        for indices in schedule([weight(item) for item in items], jobs):
            try:
                workers.append(_start(indices, items, check, debug, workers))
            except OSError:  # no process to be had (EAGAIN, ENOMEM): this one checks those files itself
                unforked.extend(indices)
        if while_waiting is not None:
            while_waiting()
        for index in sorted(unforked):
            results[index] = check(items[index])
        yield from _gather(workers, items, results)
    finally:
        _stop(workers)


def _read(worker: _Worker, items: Sequence[Item], results: dict[int, CheckResult]) -> bool:
    """Take what ``worker``'s pipe holds now; False at its end (every writer has closed it)."""
    while True:
        try:
            chunk = os.read(worker.fd, 1 << 20)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        for index, payload in worker.frames(chunk):
            _take(worker, index, payload, items, results)


def _gather(workers: list[_Worker], items: Sequence[Item], results: dict[int, CheckResult]) -> Iterator[CheckResult]:
    """Read every worker's pipe; yield the results in item order, each as soon as it can be. A
    worker is done at the end of its pipe, or once it has ended and its pipe is drained."""
    with selectors.DefaultSelector() as selector:
        for worker in workers:
            selector.register(worker.fd, selectors.EVENT_READ, worker)
        for position in range(len(items)):
            while position not in results:
                if not selector.get_map():
                    raise RuntimeError(f"no worker is left to check {_file(items[position])}")
                ready = {key.data.fd for key, _ in selector.select(POLL)}
                for key in list(selector.get_map().values()):
                    worker = key.data
                    ended = _reap(worker, block=False)
                    at_end = (worker.fd in ready or ended) and not _read(worker, items, results)
                    if at_end or ended:
                        selector.unregister(worker.fd)
                        _finish(worker, items, results)
            yield results.pop(position)
