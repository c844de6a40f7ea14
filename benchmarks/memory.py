"""Predicted memory against the CPU allocator and torchinfo's estimate (issue 17).

For each case, four figures, all in bytes held at the peak with the weights included:

- predicted: ``resnet_inspect.analysis.memory`` on the meta device, for the CPU's kernels
  (``device="cpu"``: oneDNN's weight reorder and float32 weight-gradient buffer) and, as a second
  column, for CUDA's (no such buffers);
- measured: torch.profiler's ``[memory]`` events of a real CPU run, weights added
  (``resnet_inspect.analysis.memory_measure``);
- torchinfo: its "Estimated Total Size" (input + "forward/backward pass size" + params), the same
  figure for inference and training, since torchinfo gives only one;
- on a machine with CUDA, ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats``.

The training step is SGD without momentum, one step (``loss = out.sum()``, backward, step,
``zero_grad(set_to_none=True)``). Each case's row is appended to a JSON-lines file as it
finishes, so an interrupted run keeps what it measured; ``--table`` renders the rows.

Usage: python benchmarks/memory.py [--rows benchmarks/memory-rows.jsonl] [--cases resnet18@224x1 ...]
       python benchmarks/memory.py --table [--output benchmarks/results.md]
       python benchmarks/memory.py --repredict   (predictions again, measurements kept)
       python benchmarks/memory.py --cost   (what the analysis adds to summary, whole processes)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODELS = ("resnet18", "resnet50", "resnet101", "resnext50_32x4d", "wide_resnet50_2")
# (model, size, batch, frozen module prefixes): maskrcnn-benchmark freezes the stem and res2
# (FREEZE_CONV_BODY_AT: 2) of its detection backbones, which also use frozen batch norm.
CASES: list[tuple[str, int, int, tuple[str, ...]]] = [
    *[(m, 224, b, ()) for b in (1, 8) for m in MODELS],
    ("retinanet_r50_fpn", 512, 2, ("stem", "layer1")),
    *[(m, 224, 32, ()) for m in MODELS],
]
SECTION = "## Memory (issue 17)"
COST = REPO / "benchmarks" / "memory-cost.json"
# What the memory analysis costs inside `summary` (its Totals rows, on by default), as whole processes
# run in alternation: resnet50 without it, with it, and with it at 4096².
COST_COMMANDS = {
    "without": ["summary", "resnet50", "--no-memory"],
    "with": ["summary", "resnet50"],
    "with_4096": ["summary", "resnet50", "--input", "4096"],
}


def measure_cost(runs: int = 7) -> dict[str, Any]:
    """Median wall seconds of each of COST_COMMANDS, run ``runs`` times in alternation after a warm-up."""
    import os
    import statistics
    import subprocess

    exe = [sys.executable, "-m", "resnet_inspect"]
    walls: dict[str, list[float]] = {key: [] for key in COST_COMMANDS}
    env = {**os.environ, "COLUMNS": "100"}
    for run in range(runs + 1):
        for key, argv in COST_COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(exe + argv, check=True, stdout=subprocess.DEVNULL, env=env, cwd=REPO)
            if run:
                walls[key].append(time.perf_counter() - start)
    return {"runs": runs, "median_s": {k: statistics.median(v) for k, v in walls.items()},
            "min_s": {k: min(v) for k, v in walls.items()}, "max_s": {k: max(v) for k, v in walls.items()}}


def cost_lines(cost: dict[str, Any]) -> list[str]:
    """The two cost targets of issue 17 as rows of the targets table."""
    m = cost["median_s"]
    added, flat = m["with"] / m["without"] - 1, m["with_4096"] / m["with"]
    return [
        f"| the memory analysis adds ≤ 50% to summary resnet50 (medians of {cost['runs']} whole processes) | "
        f"{m['with']:.2f} s with, {m['without']:.2f} s without (--no-memory): +{100 * added:.0f}% | "
        f"{'PASS' if added <= 0.5 else 'FAIL'} |",
        f"| flat in resolution: summary resnet50 at 4096² ≤ 1.1× at 224, memory included | "
        f"{m['with_4096']:.2f} s / {m['with']:.2f} s = {flat:.2f}× | {'PASS' if flat <= 1.1 else 'FAIL'} |",
    ]


def label(model: str, size: int, batch: int) -> str:
    return f"{model}@{size}x{batch}"


def torchinfo_estimate(model: Any, shape: tuple[int, ...]) -> int:
    """torchinfo's Estimated Total Size, in bytes (input + forward/backward pass + params)."""
    from torchinfo import summary

    stats = summary(model, input_size=shape, device="cpu", verbose=0)
    return int(stats.total_input + stats.total_output_bytes + stats.total_param_bytes)


def cuda_peak(model: Any, shape: tuple[int, ...], train: bool) -> int | None:
    """torch.cuda.max_memory_allocated() of the same run on a CUDA device, or None without one."""
    import copy

    import torch

    if not torch.cuda.is_available():
        return None
    net = copy.deepcopy(model).cuda().train(train)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    x = torch.randn(shape, device="cuda")
    if train:
        optimizer = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.01)
        net(x).sum().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    else:
        with torch.no_grad():
            net(x)
    torch.cuda.synchronize()
    peak = int(torch.cuda.max_memory_allocated())
    del net, x
    torch.cuda.empty_cache()
    return peak


def _model(model_name: str, freeze: tuple[str, ...]) -> Any:
    import torch

    from resnet_inspect.api import build

    torch.manual_seed(0)
    model = build(model_name)
    for name, p in model.named_parameters():  # the benchmark's own model: freezing it is fine here
        if any(name.startswith(f + ".") for f in freeze):
            p.requires_grad_(False)
    return model


def predict(row: dict[str, Any], model: Any, shape: tuple[int, ...]) -> None:
    """The predicted columns of a row (CPU kernels and CUDA kernels), with the time they took."""
    from resnet_inspect.analysis.memory import MemoryOptions, peak_of

    for train in (False, True):
        kind = "training" if train else "inference"
        start = time.perf_counter()
        row[f"{kind}_predicted_cpu"] = peak_of(model, shape, MemoryOptions(shape[0], device="cpu"),
                                               train=train).total_bytes
        row[f"{kind}_predicted_seconds"] = round(time.perf_counter() - start, 2)
        row[f"{kind}_predicted_cuda"] = peak_of(model, shape, MemoryOptions(shape[0], device="cuda"),
                                                train=train).total_bytes


def run_case(model_name: str, size: int, batch: int, freeze: tuple[str, ...]) -> dict[str, Any]:
    from resnet_inspect.analysis.memory import MemoryOptions
    from resnet_inspect.analysis.memory_measure import measured_peak

    model = _model(model_name, freeze)
    shape = (batch, 3, size, size)
    row: dict[str, Any] = {"case": label(model_name, size, batch), "frozen": list(freeze)}
    row["torchinfo"] = torchinfo_estimate(model, shape)
    predict(row, model, shape)
    for train in (False, True):
        kind = "training" if train else "inference"
        row[f"{kind}_measured_cpu"] = measured_peak(model, shape, MemoryOptions(batch, device="cpu"), train=train)
        row[f"{kind}_measured_cuda"] = cuda_peak(model, shape, train)
    return row


def repredict(rows_path: Path) -> None:
    """Recompute the predicted columns of measured rows with the code as it is now (cheap: no real
    run), so that a change to the predictor does not need the measurements again."""
    rows = [json.loads(line) for line in rows_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    cases = {label(m, s, b): (m, s, b, f) for m, s, b, f in CASES}
    for row in rows:
        model_name, size, batch, freeze = cases[row["case"]]
        predict(row, _model(model_name, freeze), (batch, 3, size, size))
    rows_path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def _err(predicted: int | None, measured: int | None) -> str:
    if predicted is None or not measured:
        return "—"
    return f"{100 * (predicted - measured) / measured:+.1f}%"


def _mib(value: int | None) -> str:
    return "—" if value is None else f"{value / 2**20:,.1f}"


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown section for results.md."""
    lines = [
        SECTION,
        "",
        "Written by `benchmarks/memory.py` (run by `make bench`). Every figure is the total held at the "
        "peak, weights included, in MiB; errors are relative to the CPU allocator's peak, read from "
        "torch.profiler's memory events of a real run (float32, CPU). `predicted` is resnet-inspect's "
        "prediction for the CPU's kernels; `for CUDA` is the same model run without the CPU's convolution "
        "scratch buffers (what `torch.cuda.max_memory_allocated()` should read; the CUDA column is "
        "measured only where torch sees a CUDA device). torchinfo gives one estimate (input + "
        "forward/backward pass + params) for both. Training: one SGD step, loss = output.sum().",
        "",
        "| case | run | measured (CPU) | predicted | error | for CUDA | CUDA measured | torchinfo | torchinfo error |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    worst = {"inference": 0.0, "training": 0.0}
    for row in rows:
        frozen = f" (frozen {', '.join(row['frozen'])})" if row.get("frozen") else ""
        for kind in ("inference", "training"):
            measured, predicted = row[f"{kind}_measured_cpu"], row[f"{kind}_predicted_cpu"]
            worst[kind] = max(worst[kind], abs(predicted - measured) / measured)
            lines.append(
                f"| {row['case']}{frozen} | {kind} | {_mib(measured)} | {_mib(predicted)} | "
                f"{_err(predicted, measured)} | {_mib(row[f'{kind}_predicted_cuda'])} | "
                f"{_mib(row.get(f'{kind}_measured_cuda'))} | {_mib(row['torchinfo'])} | "
                f"{_err(row['torchinfo'], measured)} |")
    lines += [
        "",
        "| target | measured | result |",
        "|---|---|---|",
        f"| training-step peak within 5% of the CPU allocator's, every case | worst {100 * worst['training']:.2f}% | "
        f"{'PASS' if worst['training'] <= 0.05 else 'FAIL'} |",
        f"| inference peak within 10%, every case | worst {100 * worst['inference']:.2f}% | "
        f"{'PASS' if worst['inference'] <= 0.10 else 'FAIL'} |",
        *(cost_lines(json.loads(COST.read_text(encoding="utf-8"))) if COST.exists() else []),
        "",
    ]
    return "\n".join(lines)


def merge_into(results: Path, section: str) -> str:
    """results.md with its memory section replaced (or appended)."""
    text = results.read_text(encoding="utf-8") if results.exists() else ""
    start = text.find(SECTION)
    if start >= 0:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + (text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=Path, default=REPO / "benchmarks" / "memory-rows.jsonl")
    parser.add_argument("--cases", nargs="*", help="only these cases, e.g. resnet18@224x1")
    parser.add_argument("--table", action="store_true", help="render the rows measured so far into --output")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results.md")
    parser.add_argument("--repredict", action="store_true", help="recompute the predictions of the rows measured")
    parser.add_argument("--cost", action="store_true", help=f"time what the analysis adds to summary into {COST.name}")
    args = parser.parse_args(argv)
    if args.cost:
        COST.write_text(json.dumps(measure_cost(), indent=2) + "\n", encoding="utf-8")
        print(COST.read_text(encoding="utf-8"))
        return 0
    if args.repredict:
        repredict(args.rows)
        return 0
    if args.table:
        rows = [json.loads(line) for line in args.rows.read_text(encoding="utf-8").splitlines() if line.strip()]
        from resnet_inspect.fileio import atomic_write

        section = table(rows)
        atomic_write(args.output, merge_into(args.output, section), force=True)
        print(section)
        return 0
    done = set()
    if args.rows.exists():
        done = {json.loads(line)["case"] for line in args.rows.read_text(encoding="utf-8").splitlines() if line}
    for model, size, batch, freeze in CASES:
        key = label(model, size, batch)
        if (args.cases and key not in args.cases) or key in done:
            continue
        start = time.perf_counter()
        row = run_case(model, size, batch, freeze)
        row["seconds"] = round(time.perf_counter() - start, 1)
        with args.rows.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
