"""The summary's table render against the JSON render of the same report (issue 19).

In one process, after the trace: the best of N wall times of ``print_summary`` into a 200-column
console, piped (no colour) and on a truecolor terminal, and of the JSON export of the same report.
The issue's target: the table at most about twice the JSON, growing linearly with the records.

Usage: python benchmarks/render.py [--runs 5]
"""
from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from typing import Any

CASES: tuple[tuple[str, str | None, dict[str, Any], tuple[Any, ...]], ...] = (
    ("resnet152", "800x1344", {}, ("all", None)),
    ("resnet50", None, {"layers": "50,200,500,50"}, ("all",)),  # the 800-block net
)


def best(run: Callable[[], object], runs: int) -> float:
    """The shortest of ``runs`` wall times of ``run``, in seconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def table_run(report: Any, depth: Any, terminal: bool) -> Callable[[], None]:
    """Printing the summary view at ``depth`` into a fresh 200-column console."""
    from rich.console import Console

    from resnet_inspect.render.table import print_summary

    def run() -> None:
        style: dict[str, Any] = ({"force_terminal": True, "color_system": "truecolor"} if terminal
                                 else {"force_terminal": False, "no_color": True})
        print_summary(report, Console(file=io.StringIO(), width=200, highlight=False, **style), depth)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from resnet_inspect.cli.common import input_size, inspect_model
    from resnet_inspect.render.export import render

    for model, size, options, depths in CASES:
        report = inspect_model(model, input_size(size), options)
        json_time = best(lambda: render(report, "json", None), args.runs)
        line = f"{model} {size or ''} {options or ''} ({len(report.layers)} records): json {json_time * 1000:.0f} ms"
        for depth in depths:
            for terminal in (False, True):
                took = best(table_run(report, depth, terminal), args.runs)
                line += (f" | --depth {depth or 'blocks'} {'terminal' if terminal else 'piped'} {took * 1000:.0f} ms"
                         f" ({took / json_time:.2f}x)")
        print(line, flush=True)


if __name__ == "__main__":
    main()
