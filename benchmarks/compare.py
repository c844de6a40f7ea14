"""resnet-inspect side by side with torchinfo, fvcore, ptflops, thop, torchview and FlopCounterMode.

Every command, resnet-inspect's included, runs as a whole process (interpreter start, imports,
model building, output, exit), the way a user runs it. Each run of a command is paired with a run
of the floor just before it, ``python -c "import torch, os; os._exit(0)"``: the CLI ends with
``os._exit`` once its output is flushed (``resnet_inspect.cli.main``), so the floor skips the
interpreter's teardown too, and the two end the same way. A command's ratio to the floor is the
median of its paired ratios, so drift on a shared machine hits both halves of a pair alike.

For each command the median, min and max of wall time, CPU time (user + system) and peak RSS
are reported. Wall samples that fall into two separate clusters are flagged as bimodal instead of
being folded into one median. A command that runs past ``--timeout`` is reported as timed out,
with its timeout, never as a ratio.

Like with like: resnet-inspect's table (every module, at full depth) is set against the peers
that print a table (torchinfo, fvcore, ptflops, FlopCounterMode), each at full depth; its JSON
against the peers that print no table (thop's totals, torchview's graph).

CPU time and peak RSS come from ``os.wait4``, which returns the resource usage of exactly the
child it reaps (``getrusage(RUSAGE_CHILDREN)`` would only give the maximum over all children).

The real-forward peers need a model: torchvision is not installed, so each peer builds the same
network with ``resnet_inspect.build(name)`` on the CPU, random initialisation included; torchview
and FlopCounterMode build it on the meta device, as resnet-inspect does. Building is part of
everybody's cost.

Usage: python benchmarks/compare.py [--runs 5] [--timeout 120] [--output benchmarks/results.md]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLI = str(BIN / "resnet-inspect") if (BIN / "resnet-inspect").exists() else "resnet-inspect"
PY = sys.executable

# Our table is printed to /dev/null, where the summary fits its columns to $COLUMNS (80 if unset):
# wide enough here for every column, as the peers print every column of theirs.
TABLE_COLUMNS = 200

# The peer scripts take: variant name, height, width. Each prints its report to stdout (/dev/null).
_CPU_MODEL = """
import sys
import torch
from resnet_inspect import build
name, h, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model = build(name).eval()
"""
_META_MODEL = """
import sys
import torch
from resnet_inspect import build
name, h, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with torch.device("meta"):
    model = build(name).eval()
"""
TORCHINFO = _CPU_MODEL + """
from torchinfo import summary
print(summary(model, input_size=(1, 3, h, w), device="cpu", verbose=0, depth=100,
              col_names=("output_size", "num_params", "mult_adds")))
"""
FVCORE = _CPU_MODEL + """
from fvcore.nn import FlopCountAnalysis, flop_count_table
with torch.no_grad():
    analysis = FlopCountAnalysis(model, torch.zeros(1, 3, h, w))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    print(flop_count_table(analysis, max_depth=100))
"""
PTFLOPS = _CPU_MODEL + """
from ptflops import get_model_complexity_info
with torch.no_grad():
    macs, params = get_model_complexity_info(model, (3, h, w), print_per_layer_stat=True, as_strings=True,
                                             backend="pytorch", ost=sys.stdout)
print(macs, params)
"""
THOP = _CPU_MODEL + """
from thop import profile
with torch.no_grad():
    macs, params = profile(model, inputs=(torch.zeros(1, 3, h, w),), verbose=False)
print(int(macs), "MACs", int(params), "params")
"""
TORCHVIEW = _META_MODEL + """
from torchview import draw_graph
graph = draw_graph(model, input_size=(1, 3, h, w), device="meta", depth=100)
print(graph.visual_graph.source)
"""
FLOP_COUNTER = _META_MODEL + """
from torch.utils.flop_counter import FlopCounterMode
counter = FlopCounterMode(display=False, depth=100)
with torch.no_grad(), counter:
    model(torch.zeros(1, 3, h, w, device="meta"))
print(counter.get_table(depth=100))
"""


@dataclass(frozen=True)
class Peer:
    """A peer: its name, what it prints (``table`` or ``json``-like totals), and its script."""

    tool: str
    label: str
    output: str
    script: str


PEERS = (
    Peer("torchinfo", "torchinfo summary(depth=100), CPU forward", "table", TORCHINFO),
    Peer("fvcore", "fvcore flop_count_table(max_depth=100), CPU forward", "table", FVCORE),
    Peer("ptflops", "ptflops per-layer stats, CPU forward", "table", PTFLOPS),
    Peer("flop_counter", "torch FlopCounterMode table(depth=100), meta", "table", FLOP_COUNTER),
    Peer("thop", "thop profile() totals, CPU forward", "json", THOP),
    Peer("torchview", "torchview draw_graph(depth=100), meta", "json", TORCHVIEW),
)
PEER_PACKAGES = {"torchinfo": "torchinfo", "fvcore": "fvcore", "ptflops": "ptflops", "thop": "thop",
                 "torchview": "torchview"}

# Where resnet-inspect's time goes, phase by phase, in one fresh process (the CLI's own code paths).
PHASES = """
import io, json, sys, time
name, h, w, layers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
options = {"layers": layers} if layers else {}
phases = []
from resnet_inspect import process  # standard library only
getattr(process, "pause_collector", lambda: None)()  # as the command line does, where it does
last = time.perf_counter()
def phase(label):
    global last
    now = time.perf_counter()
    phases.append((label, now - last))
    last = now
import torch
phase("import torch")
import resnet_inspect.cli
from resnet_inspect.cli import common
from resnet_inspect.cli.summary import View, render_text
import resnet_inspect.analysis.inspect
phase("CLI import (typer, the engine)")
size = (1, 3, h, w)
resolved = common.resolve(name, options)
built = []
report = common.inspect_model(resolved, size, options, real=False, counter="analytic", pad_to=None,
                              on_model=built.append)
phase("resolve, build on meta, trace, report")
text = render_text(report, "json", View(None, "exact", False))
phase("JSON render")
from resnet_inspect.cli.summary import _memory_by_default, _Traced
from resnet_inspect.render.table import print_summary
from rich.console import Console
phase("import the table's renderer (rich)")
memory = _memory_by_default(_Traced(resolved, tuple(report.input_size), built[0]))
phase("memory rows (inference and training peaks)")
def table(depth):
    print_summary(report, Console(file=io.StringIO(), width=%d, force_terminal=False, no_color=True, highlight=False),
                  depth, memory=memory)
table("all")
phase("table render, every layer (--depth all)")
table(None)
phase("table render, blocks as rows (the default)")
print(json.dumps({"phases": phases}))
""" % TABLE_COLUMNS

# The cases of the phase profile: (variant, height, width, --layers, label).
PHASE_CASES = [("resnet152", 800, 1344, "", "resnet152@800x1344"),
               ("resnet50", 224, 224, "50,200,500,50", "800 blocks@224")]

# (variant, height, width, extra summary options, label).
CASES = [
    ("resnet50", 224, 224, (), "resnet50@224"),
    ("resnet152", 800, 1344, (), "resnet152@800x1344"),
    ("retinanet_r50_fpn", 800, 1344, (), "retinanet_r50_fpn@800x1344"),
    ("resnet50", 4096, 4096, (), "resnet50@4096"),
    ("resnet50", 224, 224, ("--layers", "50,200,500,50"), "800 blocks@224"),
]
PEER_CASES = ("resnet50@224", "resnet152@800x1344", "retinanet_r50_fpn@800x1344", "resnet50@4096")
FLOOR_LABEL = 'python -c "import torch, os; os._exit(0)"'
FLOOR_ARGV = [PY, "-c", "import torch, os; os._exit(0)"]


@dataclass
class Command:
    """One command line, and the samples of its runs (each paired with a floor run)."""

    key: str
    label: str
    argv: list[str]
    case: str = ""
    tool: str = ""
    output: str = ""  # "table" or "json": which of our outputs a peer is set against
    env: dict[str, str] = field(default_factory=dict)  # set for this command
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)  # bytes
    ratios: list[float] = field(default_factory=list)  # wall / the paired floor's wall
    failure: str | None = None  # "timed out ...", or why it failed
    timed_out: bool = False

    @property
    def wall(self) -> float | None:
        return statistics.median(self.walls) if self.walls else None

    @property
    def ratio(self) -> float | None:
        return statistics.median(self.ratios) if self.ratios else None

    @property
    def peak(self) -> int | None:
        return int(statistics.median(self.rss)) if self.rss else None


def ours(key: str, label: str, args: list[str], case: str = "", output: str = "", **env: str) -> Command:
    return Command(key, f"resnet-inspect {label}", [CLI, *args], case, "resnet-inspect", output, env)


def build_commands(cases: list[tuple[str, int, int, tuple[str, ...], str]], workdir: Path, peers: bool,
                   peer_cases: tuple[str, ...]) -> list[Command]:
    commands = []
    for name, height, width, extra, label in cases:
        base = ["summary", name, *extra, "--input", f"{height}x{width}"]
        shown = " ".join(base)
        commands.append(ours(f"{label} json", f"{shown} --format json", [*base, "--format", "json"], label, "json"))
        commands.append(ours(f"{label} table", f"{shown} --depth all (table, COLUMNS={TABLE_COLUMNS})",
                             [*base, "--depth", "all"], label, "table", COLUMNS=str(TABLE_COLUMNS)))
        if peers and label in peer_cases:
            size = [name, str(height), str(width)]
            commands += [Command(f"{label} {p.tool}", p.label, [PY, "-c", p.script, *size], label, p.tool, p.output)
                         for p in PEERS]
    snapshots = sorted(str(p) for p in (REPO / "shapes").glob("*.json"))
    if snapshots:
        workers = min(len(snapshots), len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else os.cpu_count() or 1)
        commands.append(ours("check", f"check shapes/*.json ({len(snapshots)} snapshots; --jobs auto: {workers} "
                             "worker processes)", ["check", *snapshots]))
    commands += [ours("help", "--help", ["--help"]), ours("list", "list", ["list"])]
    if graph_available():
        commands.append(ours("graph", "graph resnet152 out.svg", ["graph", "resnet152", str(workdir / "out.svg"),
                                                                   "--force"]))
    return commands


def graph_available() -> bool:
    """The graph command is there, and Graphviz's ``dot`` with it."""
    try:
        probe = subprocess.run([CLI, "graph", "--help"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0 and "--force" in probe.stdout


@dataclass
class Outcome:
    """One run: wall and CPU seconds, peak RSS in bytes, and why it was stopped, if it was."""

    wall: float
    cpu: float
    peak: int
    stopped: str | None = None


def _rss_now(pid: int) -> int:
    """Current resident set of a process in bytes (0 where /proc is not available)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def run_once(argv: list[str], timeout: float, memory_limit: int, cwd: Path,
             env: dict[str, str] | None = None) -> Outcome:
    """Run a command to completion, or stop it at the time or memory limit.

    A thread blocks in ``os.wait4`` so that the wall time ends the moment the child does; the main
    thread watches the limits and kills the child's whole process group when one is passed.
    """
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL, cwd=cwd,
                                start_new_session=True, env={**os.environ, **env} if env else None)
        reaped: dict[str, Any] = {}

        def reap() -> None:
            _, status, usage = os.wait4(proc.pid, 0)
            reaped.update(end=time.perf_counter(), status=status, usage=usage)

        reaper = threading.Thread(target=reap, daemon=True)
        reaper.start()
        stopped = None
        while reaper.is_alive():
            reaper.join(0.05)
            if not reaper.is_alive():
                break
            if time.perf_counter() - start > timeout:
                stopped = f"timed out (> {timeout:g} s)"
            elif _rss_now(proc.pid) > memory_limit:
                stopped = f"stopped at the {memory_limit / 2**30:g} GiB memory limit"
            if stopped:
                os.killpg(proc.pid, signal.SIGKILL)
                reaper.join()
        proc.returncode = -1  # reaped by os.wait4 above: Popen must not wait for it again
        usage = reaped["usage"]
        # ru_maxrss is in KiB on Linux, in bytes on macOS.
        peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
        outcome = Outcome(reaped["end"] - start, usage.ru_utime + usage.ru_stime, peak, stopped)
        status = os.waitstatus_to_exitcode(reaped["status"])
        if stopped is None and status not in (0, 1):  # check exits 1 when a snapshot differs: still a run
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
            outcome.stopped = f"failed (exit {status}: {' / '.join(tail)})"
        return outcome


@dataclass
class Floor:
    """The floor's samples, from the runs paired with every command."""

    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)


def measure(commands: list[Command], floor: Floor, runs: int, timeout: float, memory_limit: int,
            workdir: Path) -> None:
    """Run every command ``runs`` times, each run right after a run of the floor, the commands interleaved.

    One run of each command is made first as a warm-up (page cache, bytecode), and not counted. A
    command that was stopped or failed is not run again.
    """
    for run in range(0, runs + 1):
        for cmd in commands:
            if cmd.failure:
                continue
            base = run_once(FLOOR_ARGV, timeout, memory_limit, workdir)
            outcome = run_once(cmd.argv, timeout, memory_limit, workdir, cmd.env)
            tag = "warm-up" if run == 0 else f"run {run}/{runs}"
            print(f"[{tag}] {cmd.key:<34} floor {base.wall:5.2f} s  {outcome.wall:7.2f} s "
                  f"{outcome.peak / 2**20:6.0f} MiB", end="", flush=True)
            if outcome.stopped:
                cmd.failure = outcome.stopped
                cmd.timed_out = outcome.stopped.startswith("timed out")
                cmd.rss.append(outcome.peak)
                print(f"  {cmd.failure}")
                continue
            print()
            if run == 0 or base.stopped:
                continue
            floor.walls.append(base.wall)
            floor.cpus.append(base.cpu)
            floor.rss.append(base.peak)
            cmd.walls.append(outcome.wall)
            cmd.cpus.append(outcome.cpu)
            cmd.rss.append(outcome.peak)
            cmd.ratios.append(outcome.wall / base.wall)


def bimodal(samples: list[float]) -> bool:
    """Two clusters: the widest gap between sorted samples exceeds a quarter of the median, with at
    least two samples on either side of it."""
    if len(samples) < 4:
        return False
    ordered = sorted(samples)
    gaps = [(b - a, i) for i, (a, b) in enumerate(zip(ordered, ordered[1:]), 1)]
    gap, split = max(gaps)
    return gap > 0.25 * statistics.median(ordered) and 2 <= split <= len(ordered) - 2


def profile_phases(cases: list[tuple[str, int, int, str, str]], cwd: Path, runs: int = 3) -> list[str]:
    """Where the time of one summary goes, per case: the median of ``runs`` fresh processes per phase."""
    lines = ["| case | phase | seconds (median of %d) |" % runs, "|---|---|---:|"]
    for name, height, width, layers, label in cases:
        samples: dict[str, list[float]] = {}
        for _ in range(runs):
            result = subprocess.run([PY, "-c", PHASES, name, str(height), str(width), layers], capture_output=True,
                                    text=True, cwd=cwd, timeout=600)
            if result.returncode != 0:
                lines.append(f"| {label} | failed: {result.stderr.strip().splitlines()[-1:]} | |")
                break
            for phase, seconds in json.loads(result.stdout.strip().splitlines()[-1])["phases"]:
                samples.setdefault(phase, []).append(seconds)
        lines += [f"| {label} | {phase} | {statistics.median(values):.3f} |" for phase, values in samples.items()]
    return lines


# -- report ------------------------------------------------------------------------------------

@dataclass
class Target:
    text: str
    measured: str
    ok: bool | None  # None: could not be measured


def _spread(values: list[float], fmt: str, unit: str = "") -> str:
    """Median (min–max) of some samples."""
    if not values:
        return "—"
    mid, low, high = (format(v, fmt) + unit for v in (statistics.median(values), min(values), max(values)))
    return f"{mid} ({low}–{high})"


def _ratio_target(by_key: dict[str, Command], key: str, text: str, limit: float) -> Target | None:
    cmd = by_key.get(key)
    if cmd is None:
        return None
    if cmd.ratio is None:
        return Target(text, cmd.failure or "—", False)
    return Target(text, f"{cmd.ratio:.2f}× (pairs {min(cmd.ratios):.2f}–{max(cmd.ratios):.2f}×)", cmd.ratio <= limit)


def targets(by_key: dict[str, Command], floor: Floor) -> list[Target]:
    """The targets of issue 19 (ratios to the floor that also skips teardown) and those kept from issue 6."""
    result = [t for t in (
        _ratio_target(by_key, "resnet152@800x1344 json", "summary resnet152@800×1344 --format json ≤ 1.15× floor", 1.15),
        _ratio_target(by_key, "resnet152@800x1344 table", "summary resnet152@800×1344, full table ≤ 1.25× floor", 1.25),
        _ratio_target(by_key, "800 blocks@224 json", "summary of the 800-block net (--layers 50,200,500,50) ≤ 1.6× "
                      "floor", 1.6),
        _ratio_target(by_key, "check", "check of all shapes/ snapshots ≤ 1.5× floor", 1.5),
        _ratio_target(by_key, "graph", "graph resnet152 out.svg ≤ 2× floor", 2.0),
    ) if t is not None]
    ours_json = by_key.get("resnet152@800x1344 json")
    if ours_json is not None and ours_json.peak and floor.rss:
        rss = ours_json.peak / statistics.median(floor.rss)
        result.append(Target("summary resnet152@800×1344: peak RSS ≤ 1.3× floor",
                             f"{ours_json.peak / 2**20:.0f} MiB / {statistics.median(floor.rss) / 2**20:.0f} MiB = "
                             f"{rss:.2f}×", rss <= 1.3))
    small, big = by_key.get("resnet50@224 json"), by_key.get("resnet50@4096 json")
    if small is not None and big is not None and small.ratio and big.ratio:
        ratio = big.ratio / small.ratio
        result.append(Target("summary resnet50@4096×4096 ≤ 1.1× resnet50@224 (wall, floor-normalised)",
                             f"{big.ratio:.2f}× / {small.ratio:.2f}× = {ratio:.2f}×", ratio <= 1.1))
    for key in ("help", "list"):
        cmd = by_key.get(key)
        if cmd is not None:
            result.append(Target(f"resnet-inspect {'--help' if key == 'help' else key} ≤ 0.35 s",
                                 f"{cmd.wall:.2f} s" if cmd.wall is not None else cmd.failure or "—",
                                 cmd.wall is not None and cmd.wall <= 0.35))
    return result


def _versus(cmd: Command, by_key: dict[str, Command]) -> str:
    """A peer's wall against resnet-inspect's like-for-like output in the same case, with its spread."""
    if cmd.tool == "resnet-inspect":
        return ""
    ours_cmd = by_key.get(f"{cmd.case} {cmd.output}")
    if ours_cmd is None or not ours_cmd.ratios:
        return "—"
    if cmd.timed_out:
        return "timed out"
    if not cmd.ratios:
        return "—"
    mid = cmd.ratio / ours_cmd.ratio
    low, high = min(cmd.ratios) / max(ours_cmd.ratios), max(cmd.ratios) / min(ours_cmd.ratios)
    return f"{mid:.1f}× ({low:.1f}–{high:.1f}×) vs our {cmd.output}"


def _row(cmd: Command, by_key: dict[str, Command]) -> str:
    if cmd.timed_out:
        wall = f"timed out at {cmd.failure.split('> ')[-1].rstrip(')')}"
        ratio = "— (timed out)"
    elif cmd.failure and not cmd.walls:
        wall, ratio = cmd.failure, "—"
    else:
        wall, ratio = _spread(cmd.walls, ".2f"), _spread(cmd.ratios, ".2f", "×")
    note = "bimodal" if bimodal(cmd.walls) else ""
    rss = _spread([r / 2**20 for r in cmd.rss], ".0f") + (" when killed" if cmd.failure and not cmd.walls else "")
    return (f"| {cmd.case or '—'} | {cmd.label} | {wall} | {ratio} | {_spread(cmd.cpus, '.2f')} | {rss} | "
            f"{_versus(cmd, by_key)} | {note} |")


def tables(commands: list[Command], floor: Floor) -> list[str]:
    by_key = {c.key: c for c in commands}
    lines = ["| case | command | wall s: median (min–max) | × floor, paired | CPU s | peak RSS MiB | "
             "peer's time vs resnet-inspect | note |",
             "|---|---|---:|---:|---:|---:|---:|---|",
             f"| — | {FLOOR_LABEL} (the floor, {len(floor.walls)} runs) | {_spread(floor.walls, '.2f')} | 1.00× | "
             f"{_spread(floor.cpus, '.2f')} | {_spread([r / 2**20 for r in floor.rss], '.0f')} | | "
             f"{'bimodal' if bimodal(floor.walls) else ''} |"]
    lines += [_row(cmd, by_key) for cmd in commands]
    return lines


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> str:
    try:
        return "/".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def report(commands: list[Command], floor: Floor, runs: int, timeout: float, loads: tuple[str, str],
           phases: list[str], scope: str) -> str:
    by_key = {c.key: c for c in commands}
    checks = targets(by_key, floor)
    versions = ", ".join(f"{p} {_version(p)}" for p in ("torch", "typer", "rich", *PEER_PACKAGES.values()))
    lines = [
        "# resnet-inspect side by side with its peers",
        "",
        "Written by `make bench` (`benchmarks/compare.py`); do not edit by hand.",
        "",
        f"- When: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; machine: {_cpu()}, "
        f"{os.cpu_count()} cores; Python {platform.python_version()}; {versions}. Load average (1/5/15 min) "
        f"{loads[0]} before and {loads[1]} after.",
        f"- Scope: {scope}.",
        f"- Each command ran {runs} times (after one uncounted warm-up) as a whole process, each run right after a "
        f"run of the floor, `{FLOOR_LABEL}`: resnet-inspect ends with `os._exit` once its output is flushed, so "
        "the floor skips the interpreter's teardown too. '× floor' is the median (min–max) of the paired ratios.",
        "- resnet_inspect is byte-compiled first (`python -m compileall`), as pip does when it installs a wheel "
        "and as torch and the peers were: the editable install under `PYTHONDONTWRITEBYTECODE=1` would otherwise "
        "recompile it in every run.",
        "- resnet-inspect's command line switches Python's cyclic garbage collector off as it starts "
        "(`resnet_inspect.process.pause_collector`); the floor and the peers keep Python's default.",
        "- Wall time is from spawning the process to reaping it; CPU time is user + system; peak RSS is the "
        "child's own `ru_maxrss`, all from `os.wait4` for that child alone (`check` forks a worker per usable "
        "CPU and waits for them: its CPU time includes theirs, and its peak RSS is its largest process's). 'bimodal' marks wall times that fall "
        "in two clusters (widest gap > ¼ of the median, ≥ 2 runs on either side): read its min and max, not its "
        "median.",
        "- Like with like: peers that print a table are set against resnet-inspect's table, at full depth on both "
        "sides; thop (totals) and torchview (a graph) against its JSON. The spread of that ratio is peer min / our "
        "max to peer max / our min. Everything is written to /dev/null.",
        "- torchvision is not installed: the CPU peers build the same network with `resnet_inspect.build(name)`, "
        "random initialisation included, and run a real forward; torchview and FlopCounterMode build it inside "
        "`torch.device('meta')` and run on meta, as resnet-inspect does. Building is part of everybody's cost.",
        f"- A command that runs longer than {timeout:g} s is killed and reported as timed out, with that timeout "
        "(its RSS is what it had reached by then), and no ratio.",
        "",
        "## Runs",
        "",
        *tables(commands, floor),
        "",
        "## Targets (issue 19, and those kept from issue 6)",
        "",
        "| target | measured | result |",
        "|---|---|---|",
        *[f"| {t.text} | {t.measured} | {'PASS' if t.ok else 'FAIL' if t.ok is False else 'NOT MEASURED'} |"
          for t in checks],
        "",
        "## Where the time goes",
        "",
        "The phases of one `summary`, timed in fresh processes along the CLI's own code paths (a profile, not a "
        "target).",
        "",
        *phases,
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="counted runs per command (default 5, at least 5 for "
                        "the published table)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds before a command is killed (default 120)")
    parser.add_argument("--memory-limit", type=float, default=16, help="GiB of RSS before a command is killed "
                        "(default 16)")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results.md", help="the Markdown report")
    parser.add_argument("--cases", nargs="*", help="only these cases, e.g. resnet50@224 resnet152@800x1344")
    parser.add_argument("--peer-cases", nargs="*", default=list(PEER_CASES), help="the cases the peers run on")
    parser.add_argument("--no-peers", action="store_true", help="measure resnet-inspect and the floor only")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory table (benchmarks/memory.py)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    cases = [c for c in CASES if not args.cases or c[4] in args.cases]
    if args.cases and len(cases) != len(args.cases):
        parser.error(f"unknown case in {args.cases}; known: {', '.join(c[4] for c in CASES)}")
    if not args.no_peers:
        missing = [p for p in PEER_PACKAGES.values() if _version(p) == "not installed"]
        if missing:
            parser.error(f"{', '.join(missing)} missing: install the bench extra (pip install -e '.[bench]', "
                         "or run `make bench`), or pass --no-peers")
    peer_cases = () if args.no_peers else tuple(args.peer_cases)
    scope = (f"cases {', '.join(c[4] for c in cases)}; peers on "
             f"{', '.join(p for p in peer_cases if any(c[4] == p for c in cases)) or 'none'}")
    compile_bytecode()
    with tempfile.TemporaryDirectory(prefix="resnet-inspect-bench-") as tmp:
        workdir = Path(tmp)
        commands = build_commands(cases, workdir, peers=not args.no_peers, peer_cases=peer_cases)
        floor = Floor()
        load_before = _load()
        measure(commands, floor, args.runs, args.timeout, int(args.memory_limit * 2**30), workdir)
        load_after = _load()
        print("Profiling the phases of one summary ...", flush=True)
        phases = profile_phases(PHASE_CASES, workdir)
    text = report(commands, floor, args.runs, args.timeout, (load_before, load_after), phases, scope)
    sys.path.insert(0, str(REPO))
    from resnet_inspect.fileio import atomic_write  # pure Python: no torch in this process

    atomic_write(args.output, text)
    print()
    print(text)
    if not args.no_memory:
        _memory_table(args.output)
    print(f"Wrote {args.output}")
    return 0


def compile_bytecode() -> None:
    """Byte-compile resnet_inspect as ``pip install`` does for an installed package.

    The package is installed editable (``pip install -e``), and an environment with
    ``PYTHONDONTWRITEBYTECODE=1`` (this machine's, and many CI images') never writes its .pyc
    files: every run would then compile our 15,000 lines before doing anything, which no user of
    the wheel pays. torch and the peers were byte-compiled when pip installed them.
    """
    subprocess.run([PY, "-m", "compileall", "-q", str(REPO / "resnet_inspect")], check=True, stdout=subprocess.DEVNULL)


def _memory_table(output: Path) -> None:
    """Predicted memory against the CPU allocator and torchinfo (issue 17), as a section of ``output``:
    benchmarks/memory.py measures the cases (fresh rows each time) and renders them into it."""
    script = REPO / "benchmarks" / "memory.py"
    with tempfile.TemporaryDirectory(prefix="resnet-inspect-memory-") as tmp:
        rows = Path(tmp) / "rows.jsonl"
        subprocess.run([PY, str(script), "--rows", str(rows)], check=True)
        subprocess.run([PY, str(script), "--cost"], check=True)
        subprocess.run([PY, str(script), "--table", "--rows", str(rows), "--output", str(output)], check=True)


if __name__ == "__main__":
    sys.exit(main())
