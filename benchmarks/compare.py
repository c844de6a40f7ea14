"""resnet-inspect side by side with torchinfo, fvcore and torch.utils.flop_counter.

Every command runs as a whole process (interpreter start, imports, model building, output), the
way a user runs it, several times with the commands interleaved so that the machine's drift hits
them all alike. For each command the medians of wall time and of peak RSS are reported, with
their ratios to ``python -c "import torch"`` measured in the same run, and each target of issue 6
is checked.

Peak RSS comes from ``os.wait4``, which returns the resource usage of exactly the child it reaps
(``getrusage(RUSAGE_CHILDREN)`` would only give the maximum over all children so far).

The peers need a model: torchvision is not installed, so each peer builds the same network with
``resnet_inspect.build(name)`` on the CPU, random initialisation included. resnet-inspect builds
it on the meta device. Building is part of everybody's cost.

Usage: python benchmarks/compare.py [--runs 3] [--timeout 60] [--output benchmarks/results.md]
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

# The peer scripts take: variant name, height, width. Each prints its report to stdout (/dev/null).
TORCHINFO = """
import sys
from torchinfo import summary
from resnet_inspect import build
name, h, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model = build(name).eval()
print(summary(model, input_size=(1, 3, h, w), device="cpu", verbose=0,
              col_names=("output_size", "num_params", "mult_adds")))
"""
FVCORE = """
import sys
import torch
from fvcore.nn import FlopCountAnalysis, flop_count_table
from resnet_inspect import build
name, h, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model = build(name).eval()
with torch.no_grad():
    analysis = FlopCountAnalysis(model, torch.zeros(1, 3, h, w))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    print(flop_count_table(analysis))
"""
FLOP_COUNTER = """
import sys
import torch
from torch.utils.flop_counter import FlopCounterMode
from resnet_inspect import build
name, h, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
model = build(name).eval()
counter = FlopCounterMode(display=False)
with torch.no_grad(), counter:
    model(torch.zeros(1, 3, h, w))
print(counter.get_total_flops() // 2, "MACs")
"""

# Where resnet-inspect's time goes, phase by phase, in one fresh process (public API only). The
# first inspect() pays the lazy imports of the meta trace; the second, warm one does not.
PHASES = """
import importlib.util, json, sys, time
name, h, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
phases, heavy = [], ("sympy", "torch._dynamo", "torch._inductor", "fvcore", "pydantic")
last = time.perf_counter()
def phase(label):
    global last
    now = time.perf_counter()
    phases.append((label, now - last))
    last = now
import resnet_inspect.cli
phase("import the CLI (typer, rich)")
if importlib.util.find_spec("typer._adapters") is not None:
    import typer._adapters
    phase("import typer._adapters: typer >= 0.29 parses every option with pydantic")
import torch
phase("import torch")
import resnet_inspect.analysis.inspect
phase("import the engine")
before = {m for m in heavy if m in sys.modules}
report = resnet_inspect.inspect(name, (1, 3, h, w))
phase("first inspect(): build on meta, trace, report")
lazy = sorted(m for m in heavy if m in sys.modules and m not in before)
resnet_inspect.inspect(name, (1, 3, h, w))
phase("second inspect(), warm")
text = json.dumps(report.to_dict(), indent=2, ensure_ascii=False)
phase("to_dict() and json.dumps(indent=2)")
print(json.dumps({"phases": phases, "lazy": lazy}))
"""

# (variant, height, width): the cases of issue 6.
CASES = [("resnet50", 224, 224), ("resnet152", 800, 1344), ("retinanet_r50_fpn", 800, 1344), ("resnet50", 4096, 4096)]
TOOLS = ("resnet-inspect", "torchinfo", "fvcore", "flop_counter")
FLOOR = "import torch"


@dataclass
class Command:
    """One command line, and the samples of its runs."""

    key: str
    label: str
    argv: list[str]
    case: str = ""
    tool: str = ""
    walls: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)  # bytes
    failure: str | None = None  # "timed out ...", or why it failed
    timed_out: bool = False

    @property
    def wall(self) -> float | None:
        return statistics.median(self.walls) if self.walls else None

    @property
    def peak(self) -> int | None:
        return int(statistics.median(self.rss)) if self.rss else None


def case_label(name: str, height: int, width: int) -> str:
    return f"{name}@{height}" if height == width else f"{name}@{height}x{width}"


def build_commands(cases: list[tuple[str, int, int]], workdir: Path, peers: bool) -> list[Command]:
    commands = [Command(FLOOR, 'python -c "import torch"', [PY, "-c", "import torch"])]
    for name, height, width in cases:
        label = case_label(name, height, width)
        size = [name, str(height), str(width)]
        commands.append(Command(f"{label} resnet-inspect", f"resnet-inspect summary {name} --input {height}x{width} "
                                "--format json", [CLI, "summary", name, "--input", f"{height}x{width}", "--format",
                                                  "json"], label, "resnet-inspect"))
        if peers:
            commands += [
                Command(f"{label} torchinfo", "torchinfo summary()", [PY, "-c", TORCHINFO, *size], label, "torchinfo"),
                Command(f"{label} fvcore", "fvcore FlopCountAnalysis + flop_count_table", [PY, "-c", FVCORE, *size],
                        label, "fvcore"),
                Command(f"{label} flop_counter", "torch.utils.flop_counter, real forward",
                        [PY, "-c", FLOP_COUNTER, *size], label, "flop_counter"),
            ]
    commands += [
        Command("help", "resnet-inspect --help", [CLI, "--help"]),
        Command("list", "resnet-inspect list", [CLI, "list"]),
    ]
    if graph_available():
        commands.append(Command("graph", "resnet-inspect graph resnet152 out.svg",
                                [CLI, "graph", "resnet152", str(workdir / "out.svg"), "--force"]))
    return commands


def graph_available() -> bool:
    """The graph command is there (it is being written alongside this benchmark)."""
    try:
        probe = subprocess.run([CLI, "graph", "--help"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0 and "--force" in probe.stdout


@dataclass
class Outcome:
    """One run: wall seconds, peak RSS in bytes, and why it was stopped, if it was."""

    wall: float
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


def run_once(argv: list[str], timeout: float, memory_limit: int, cwd: Path) -> Outcome:
    """Run a command to completion, or stop it at the time or memory limit.

    A thread blocks in ``os.wait4`` so that the wall time ends the moment the child does; the main
    thread watches the limits and kills the child's whole process group when one is passed.
    """
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL, cwd=cwd,
                                start_new_session=True)
        reaped: dict[str, Any] = {}

        def reap() -> None:
            _, status, usage = os.wait4(proc.pid, 0)
            reaped.update(end=time.perf_counter(), status=status, usage=usage)

        reaper = threading.Thread(target=reap, daemon=True)
        reaper.start()
        stopped = None
        while reaper.is_alive():
            reaper.join(0.1)
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
        # ru_maxrss is in KiB on Linux, in bytes on macOS.
        peak = reaped["usage"].ru_maxrss * (1 if sys.platform == "darwin" else 1024)
        outcome = Outcome(reaped["end"] - start, peak, stopped)
        status = os.waitstatus_to_exitcode(reaped["status"])
        if stopped is None and status != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
            outcome.stopped = f"failed (exit {status}: {' / '.join(tail)})"
        return outcome


def measure(commands: list[Command], runs: int, timeout: float, memory_limit: int, workdir: Path) -> None:
    """Run every command ``runs`` times, interleaved; one that was stopped or failed is not run again."""
    for run in range(1, runs + 1):
        for cmd in commands:
            if cmd.failure:
                continue
            print(f"[run {run}/{runs}] {cmd.key:<40}", end=" ", flush=True)
            outcome = run_once(cmd.argv, timeout, memory_limit, workdir)
            if outcome.stopped:
                cmd.failure = outcome.stopped
                cmd.timed_out = outcome.stopped.startswith("timed out")
                if not cmd.walls:
                    cmd.rss.append(outcome.peak)
                print(f"{cmd.failure}, {outcome.peak / 2**20:.0f} MiB peak")
                continue
            cmd.walls.append(outcome.wall)
            cmd.rss.append(outcome.peak)
            print(f"{outcome.wall:7.2f} s {outcome.peak / 2**20:8.0f} MiB")


def profile_phases(cases: list[tuple[str, int, int]], cwd: Path) -> list[str]:
    """A table of where the time of one summary goes, per case (one run each: a profile, not a timing)."""
    lines = ["| case | phase | seconds |", "|---|---|---:|"]
    for name, height, width in cases:
        label = case_label(name, height, width)
        result = subprocess.run([PY, "-c", PHASES, name, str(height), str(width)], capture_output=True, text=True,
                                cwd=cwd, timeout=600)
        if result.returncode != 0:
            lines.append(f"| {label} | failed: {result.stderr.strip().splitlines()[-1:]} | |")
            continue
        data = json.loads(result.stdout.strip().splitlines()[-1])
        for phase, seconds in data["phases"]:
            lines.append(f"| {label} | {phase} | {seconds:.3f} |")
        lines.append(f"| {label} | imported lazily by the first trace | {', '.join(data['lazy']) or 'nothing heavy'} |")
    return lines


# -- report ------------------------------------------------------------------------------------

@dataclass
class Target:
    text: str
    measured: str
    ok: bool | None  # None: could not be measured


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _fmt_ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def targets(by_key: dict[str, Command], timeout: float) -> list[Target]:
    floor = by_key[FLOOR]
    result = []
    ours = by_key.get("resnet152@800x1344 resnet-inspect")
    if ours is not None and ours.wall is not None:
        wall_ratio = _ratio(ours.wall, floor.wall)
        result.append(Target("summary resnet152@800×1344: wall ≤ 1.3 × import torch",
                             f"{ours.wall:.2f} s / {floor.wall:.2f} s = {_fmt_ratio(wall_ratio)}",
                             wall_ratio is not None and wall_ratio <= 1.3))
        peer = by_key.get("resnet152@800x1344 torchinfo")
        if peer is not None:
            if peer.wall is not None:
                speedup = peer.wall / ours.wall
                result.append(Target("summary resnet152@800×1344: ≥ 3× faster than torchinfo",
                                     f"{peer.wall:.2f} s / {ours.wall:.2f} s = {speedup:.2f}×", speedup >= 3))
            elif peer.timed_out:
                result.append(Target("summary resnet152@800×1344: ≥ 3× faster than torchinfo",
                                     f"torchinfo {peer.failure}, ours {ours.wall:.2f} s", timeout / ours.wall >= 3))
        rss_ratio = _ratio(ours.peak, floor.peak)
        result.append(Target("summary resnet152@800×1344: peak RSS ≤ 1.3 × import torch",
                             f"{ours.peak / 2**20:.0f} MiB / {floor.peak / 2**20:.0f} MiB = {_fmt_ratio(rss_ratio)}",
                             rss_ratio is not None and rss_ratio <= 1.3))
    small, big = by_key.get("resnet50@224 resnet-inspect"), by_key.get("resnet50@4096 resnet-inspect")
    if small is not None and big is not None and small.wall and big.wall:
        ratio = big.wall / small.wall
        result.append(Target("summary resnet50@4096×4096 wall ≤ 1.1 × resnet50@224",
                             f"{big.wall:.2f} s / {small.wall:.2f} s = {ratio:.2f}×", ratio <= 1.1))
        rss = big.peak / small.peak
        result.append(Target("summary resnet50@4096×4096 peak RSS ≤ 1.1 × resnet50@224",
                             f"{big.peak / 2**20:.0f} MiB / {small.peak / 2**20:.0f} MiB = {rss:.2f}×", rss <= 1.1))
    for key, text in (("help", "resnet-inspect --help ≤ 0.35 s"), ("list", "resnet-inspect list ≤ 0.35 s")):
        cmd = by_key[key]
        result.append(Target(text, f"{cmd.wall:.2f} s" if cmd.wall is not None else cmd.failure or "—",
                             cmd.wall is not None and cmd.wall <= 0.35))
    graph = by_key.get("graph")
    if graph is None:
        result.append(Target("graph resnet152 out.svg ≤ 2 × import torch",
                             "not measured: the graph command is not in this checkout yet", None))
    else:
        ratio = _ratio(graph.wall, floor.wall)
        result.append(Target("graph resnet152 out.svg ≤ 2 × import torch",
                             f"{graph.wall:.2f} s / {floor.wall:.2f} s = {_fmt_ratio(ratio)}" if graph.wall
                             else graph.failure or "—", ratio is not None and ratio <= 2))
    return result


def _cell_wall(cmd: Command) -> str:
    return f"{cmd.wall:.2f}" if cmd.wall is not None else (cmd.failure or "—")


def _cell_rss(cmd: Command) -> str:
    if cmd.peak is None:
        return "—"
    return f"{cmd.peak / 2**20:.0f}" + (" when killed" if cmd.failure and not cmd.walls else "")


def tables(commands: list[Command], cases: list[tuple[str, int, int]], timeout: float) -> list[str]:
    by_key = {c.key: c for c in commands}
    floor = by_key[FLOOR]
    lines = ["| case | command | wall (s) | × floor | peak RSS (MiB) | × floor | resnet-inspect faster by |",
             "|---|---|---:|---:|---:|---:|---:|",
             f"| — | {floor.label} (the floor) | {_cell_wall(floor)} | 1.00× | {_cell_rss(floor)} | 1.00× | |"]
    for name, height, width in cases:
        label = case_label(name, height, width)
        ours = by_key.get(f"{label} resnet-inspect")
        for tool in TOOLS:
            cmd = by_key.get(f"{label} {tool}")
            if cmd is None:
                continue
            faster = ""
            if tool != "resnet-inspect" and ours is not None and ours.wall:
                if cmd.wall:
                    faster = f"{cmd.wall / ours.wall:.1f}×"
                elif cmd.timed_out:
                    faster = f"> {timeout / ours.wall:.0f}×"
            lines.append(f"| {label} | {cmd.label} | {_cell_wall(cmd)} | {_fmt_ratio(_ratio(cmd.wall, floor.wall))} | "
                         f"{_cell_rss(cmd)} | {_fmt_ratio(_ratio(cmd.peak, floor.peak))} | {faster} |")
    for key in ("help", "list", "graph"):
        cmd = by_key.get(key)
        if cmd is not None:
            lines.append(f"| — | {cmd.label} | {_cell_wall(cmd)} | {_fmt_ratio(_ratio(cmd.wall, floor.wall))} | "
                         f"{_cell_rss(cmd)} | {_fmt_ratio(_ratio(cmd.peak, floor.peak))} | |")
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


def report(commands: list[Command], cases: list[tuple[str, int, int]], runs: int, timeout: float,
           graph_note: str, loads: tuple[str, str], phases: list[str]) -> str:
    by_key = {c.key: c for c in commands}
    checks = targets(by_key, timeout)
    lines = [
        "# resnet-inspect side by side with its peers",
        "",
        "Written by `make bench` (`benchmarks/compare.py`); do not edit by hand.",
        "",
        f"- When: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; machine: {_cpu()}, "
        f"{os.cpu_count()} cores; Python {platform.python_version()}; torch {_version('torch')}, "
        f"torchinfo {_version('torchinfo')}, fvcore {_version('fvcore')}, typer {_version('typer')}. "
        f"Load average (1/5/15 min) {loads[0]} before and {loads[1]} after: other work on the machine slows "
        "every command alike, which the ratios absorb better than the seconds.",
        f"- Each command ran {runs} times as a whole process, the commands interleaved; the figures are medians. "
        "Ratios compare medians of the same run, so the machine's noise cancels out of them.",
        "- Wall time is from spawning the process to reaping it. Peak RSS is the child's own `ru_maxrss`, "
        "returned by `os.wait4` for that child alone.",
        "- resnet-inspect writes its JSON report (every layer's shapes, params, MACs, receptive field) to "
        "/dev/null; so do the peers with their tables.",
        "- torchvision is not installed, so the peers build the same network with `resnet_inspect.build(name)` "
        "on the CPU, random initialisation included, and run a real forward pass; resnet-inspect builds it on "
        "the meta device and traces it there. Building is part of everybody's cost.",
        f"- A command that runs longer than {timeout:g} s is killed and reported as timed out (its RSS is what it "
        "had reached by then).",
        f"- {graph_note}",
        "",
        "## Medians",
        "",
        *tables(commands, cases, timeout),
        "",
        "## Targets (issue 6)",
        "",
        "| target | measured | result |",
        "|---|---|---|",
        *[f"| {t.text} | {t.measured} | {'PASS' if t.ok else 'FAIL' if t.ok is False else 'NOT MEASURED'} |"
          for t in checks],
        "",
        "## Where the time goes",
        "",
        "One extra process per case, timing the phases of a summary with the public API (the profile "
        "behind the targets, not a timing of its own). The difference between the first and the warm "
        "`inspect()` is what the first meta-device trace pays once: lazy imports (listed) and first-call "
        "set-up of torch's Python meta kernels.",
        "",
        *phases,
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per command (default 3)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds before a command is killed (default 60)")
    parser.add_argument("--memory-limit", type=float, default=16, help="GiB of RSS before a command is killed "
                        "(default 16)")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results.md", help="the Markdown report")
    parser.add_argument("--cases", nargs="*", help="only these cases, e.g. resnet50@224 resnet152@800x1344")
    parser.add_argument("--no-peers", action="store_true", help="measure resnet-inspect and the floor only")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory table (benchmarks/memory.py)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    cases = [c for c in CASES if not args.cases or case_label(*c) in args.cases]
    if args.cases and len(cases) != len(args.cases):
        parser.error(f"unknown case in {args.cases}; known: {', '.join(case_label(*c) for c in CASES)}")
    if not args.no_peers:
        missing = [p for p in ("torchinfo", "fvcore") if _version(p) == "not installed"]
        if missing:
            parser.error(f"{', '.join(missing)} missing: install the bench extra (pip install -e '.[bench]', "
                         "or run `make bench`), or pass --no-peers")
    with tempfile.TemporaryDirectory(prefix="resnet-inspect-bench-") as tmp:
        workdir = Path(tmp)
        commands = build_commands(cases, workdir, peers=not args.no_peers)
        graph_note = ("`graph resnet152 out.svg` renders the block diagram with Graphviz's `dot`."
                      if any(c.key == "graph" for c in commands) else
                      "`graph resnet152 out.svg` was not measured: this checkout has no graph command (with "
                      "--force) yet.")
        load_before = _load()
        measure(commands, args.runs, args.timeout, int(args.memory_limit * 2**30), workdir)
        load_after = _load()
        print("Profiling the phases of one summary per case ...", flush=True)
        phases = profile_phases(cases, workdir)
    text = report(commands, cases, args.runs, args.timeout, graph_note, (load_before, load_after), phases)
    sys.path.insert(0, str(REPO))
    from resnet_inspect.fileio import atomic_write  # pure Python: no torch in this process

    atomic_write(args.output, text)
    print()
    print(text)
    if not args.no_memory:
        _memory_table(args.output)
    print(f"Wrote {args.output}")
    return 0


def _memory_table(output: Path) -> None:
    """Predicted memory against the CPU allocator and torchinfo (issue 17), as a section of ``output``:
    benchmarks/memory.py measures the cases (fresh rows each time) and renders them into it."""
    script = REPO / "benchmarks" / "memory.py"
    with tempfile.TemporaryDirectory(prefix="resnet-inspect-memory-") as tmp:
        rows = Path(tmp) / "rows.jsonl"
        subprocess.run([PY, str(script), "--rows", str(rows)], check=True)
        subprocess.run([PY, str(script), "--table", "--rows", str(rows), "--output", str(output)], check=True)


if __name__ == "__main__":
    sys.exit(main())
