"""What keeps the quick commands quick: which heavy modules a command imports, and what a trace costs per
block in function calls (never how long anything takes).

The import checks run in a fresh interpreter, because this test process has long imported torch. The
child runs the CLI's entry point in-process and then reports which of the heavy packages ended
up in ``sys.modules``.
"""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import resnet_inspect

HEAVY = ("torch", "torch._dynamo", "sympy", "fvcore", "torchinfo", "rich.console")
TORCH_FAMILY = HEAVY[:-1]

_CHILD = """
import json, sys
argv = json.loads(sys.argv[1])
if argv is None:
    import resnet_inspect
else:
    sys.argv = ["resnet-inspect", *argv]
    from resnet_inspect.cli import main
    try:
        main(fast_exit=False)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
sys.stderr.write("\\nIMPORTED " + json.dumps(sorted(m for m in %r if m in sys.modules)) + "\\n")
""" % (HEAVY,)


def run_child(argv: list[str] | None, **env: str) -> tuple[list[str], str]:
    """The heavy modules imported by ``resnet-inspect ARGV`` (or by ``import resnet_inspect``), and its stdout."""
    result = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(argv)], capture_output=True, text=True,
                            env={**os.environ, **env}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    line = [ln for ln in result.stderr.splitlines() if ln.startswith("IMPORTED ")][-1]
    return json.loads(line[len("IMPORTED "):]), result.stdout


def heavy_imports(argv: list[str] | None, **env: str) -> list[str]:
    return run_child(argv, **env)[0]


def test_import_resnet_inspect_does_not_import_torch() -> None:
    assert heavy_imports(None) == []


@pytest.mark.parametrize("argv", [["--help"], ["list"], ["summary", "--help"]], ids=" ".join)
def test_help_and_list_do_not_import_torch(argv: list[str]) -> None:
    assert [m for m in heavy_imports(argv) if m in TORCH_FAMILY] == []


def test_a_json_summary_does_not_import_rich_console() -> None:
    # rich's console and tables are for what a person reads; JSON goes straight to stdout.
    assert "rich.console" not in heavy_imports(["summary", "resnet18", "--input", "32", "--format", "json"])
    # The positive control: the table does import it.
    assert "rich.console" in heavy_imports(["summary", "resnet18", "--input", "32"])


def test_shell_completion_does_not_import_torch() -> None:
    # What the shell runs on <TAB> (typer/click's completion protocol).
    imported, completions = run_child([], _RESNET_INSPECT_COMPLETE="complete_bash", COMP_WORDS="resnet-inspect su",
                                      COMP_CWORD="1")
    assert "summary" in completions.split()  # the completion did run
    assert [m for m in imported if m in TORCH_FAMILY] == []


def test_the_import_check_sees_torch_when_it_is_imported() -> None:
    # The positive control: a command that traces a model does import torch, so the checks above
    # would notice a module-level `import torch` creeping into the CLI.
    imported = heavy_imports(["summary", "resnet18", "--input", "32", "--format", "json"])
    assert "torch" in imported


def test_summary_imports_neither_fvcore_nor_dynamo() -> None:
    # fvcore only for --counter fvcore; torch._dynamo (about 1.4 s) never for the meta trace.
    imported = heavy_imports(["summary", "resnet50", "--input", "64", "--format", "json"])
    assert "fvcore" not in imported
    assert "torch._dynamo" not in imported


def test_counter_fvcore_does_import_fvcore() -> None:
    assert "fvcore" in heavy_imports(["summary", "resnet18", "--input", "32", "--format", "json", "--counter", "fvcore"])


def test_frozen_bn_trace_does_not_import_dynamo() -> None:
    imported = heavy_imports(["summary", "retinanet_r50_fpn", "--input", "64", "--format", "json"])
    assert "torch._dynamo" not in imported


# -- the trace's cost per block (issue 19): counted in function calls, never timed -------------------------

def _profiled(layers: str, watch: Callable[[Any, str, Any], None]) -> None:
    """One inspect() of a bottleneck ResNet with ``layers`` blocks per stage, under ``sys.setprofile(watch)``
    (after a first, unwatched one, which pays the lazy imports and first-call caches)."""
    import resnet_inspect

    resnet_inspect.inspect("resnet50", (1, 3, 64, 64), layers=layers)
    sys.setprofile(watch)
    try:
        resnet_inspect.inspect("resnet50", (1, 3, 64, 64), layers=layers)
    finally:
        sys.setprofile(None)


def _calls(layers: str) -> int:
    """Python and C function calls made by one inspect() (see :func:`_profiled`)."""
    count = 0

    def watch(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    _profiled(layers, watch)
    return count


def test_the_trace_costs_the_same_calls_for_every_added_block() -> None:
    # 12, 20 and 36 bottleneck blocks: each added block costs the same number of calls (linear, not
    # worse), and few of them: about 2,120 on torch 2.13, build and analysis included; 9,500 before
    # the GC pause, the operand walks, the hooks without torch-function dispatch and the meta init,
    # 5,650 before repeated blocks were copied instead of constructed on meta (models.replicate),
    # the counting rules were memoised and the analysis made linear, 3,530 before a stage's
    # template was read once for all its copies, and 3,350 before a model built here ran with its
    # forwards wrapped instead of hooked and the trace's one-tensor fast paths. Every size has a
    # copy in each stage (the third block), so the one read of each template is in all three counts.
    small, middle, large = (_calls(layers) for layers in ("3,3,3,3", "5,5,5,5", "9,9,9,9"))
    first, second = (middle - small) / 8, (large - middle) / 16
    assert abs(second - first) <= 0.02 * first, (first, second)
    assert second <= 2300, second


def test_the_meta_build_skips_the_decomposed_random_init() -> None:
    # uniform_ and normal_ on a meta tensor run torch's Python decompositions (torch/_decomp): the
    # build on meta has no values to initialise, so it must not call them.
    decomposed: list[str] = []

    def watch(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and f"{os.sep}_decomp{os.sep}" in frame.f_code.co_filename:
            decomposed.append(frame.f_code.co_name)

    _profiled("1,1,1,1", watch)
    assert decomposed == []


def test_the_trace_runs_with_the_garbage_collector_paused() -> None:
    import resnet_inspect

    resnet_inspect.inspect("resnet18", (1, 3, 32, 32))  # the lazy imports (torch among them) happen outside
    collections: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    gc.callbacks.append(seen)
    try:
        resnet_inspect.inspect("resnet50", (1, 3, 64, 64), layers="2,2,2,2")
    finally:
        gc.callbacks.remove(seen)
    assert collections == []
    assert gc.isenabled()  # resumed afterwards


def test_the_command_line_runs_without_the_cyclic_collector() -> None:
    # The console script's process (argv[0] is resnet-inspect) switches the collector off as the
    # package is imported; a library user's process keeps it.
    probe = "import gc, sys; sys.argv[0] = %r; import resnet_inspect; print(gc.isenabled())"

    def enabled(argv0: str) -> list[str]:
        result = subprocess.run([sys.executable, "-c", probe % argv0], capture_output=True, text=True, timeout=120)
        return result.stdout.split()

    assert (enabled("resnet-inspect"), enabled("script.py")) == (["False"], ["True"])


# -- the analysis after the trace (issue 19): linear in the records, counted in bytecodes, never timed --------

class _Block(nn.Module):
    """A basic block whose 1x1 projection shortcut widens the map by 2 channels: every block is a
    projection (He et al. 2016's option B), so each is a stage of its own."""

    def __init__(self, c_in: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_in + 2, 3, 1, 1, bias=False)
        self.conv2 = nn.Conv2d(c_in + 2, c_in + 2, 3, 1, 1, bias=False)
        self.project = nn.Conv2d(c_in, c_in + 2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(torch.relu(self.conv1(x))) + self.project(x))


class _Nested(nn.Module):
    """``blocks`` blocks, each later one inside the module of the one before: the nesting grows
    with the depth, so anything that reads every leaf under every call is quadratic here."""

    def __init__(self, blocks: int, c_in: int = 4) -> None:
        super().__init__()
        self.block = _Block(c_in)
        self.inner = _Nested(blocks - 1, c_in + 2) if blocks > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(x)
        return self.inner(x) if self.inner is not None else x


def _analysis_bytecodes(model: nn.Module, size: tuple[int, ...]) -> int:
    """Bytecode instructions of resnet-inspect's own code that ``analyse`` (everything inspect() does
    after the forward) runs for one trace of ``model``, after a first, uncounted run (which pays the
    first-call caches). torch's own functions are not counted: ``named_modules`` walks a nesting
    in steps that grow with its depth."""
    from resnet_inspect.analysis.inspect import analyse, run_trace

    package = os.path.dirname(resnet_inspect.__file__)
    records, out, tracer = run_trace(model, size, real=False)
    count = 0

    def trace(frame: Any, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "call":
            frame.f_trace_opcodes = frame.f_code.co_filename.startswith(package)
        elif event == "opcode":
            count += 1
        return trace

    def run() -> None:
        analyse(model, getattr(model, "spec", None), records, out, tracer, label="model", size=size,
                padded_from=None, counter="analytic", device="meta")

    run()
    before = sys.gettrace()  # a coverage tool's tracer, if any, gets its place back
    sys.settrace(trace)
    try:
        run()
    finally:
        sys.settrace(before)
    return count


def _per_added_block(costs: list[int], blocks: list[int]) -> tuple[float, float]:
    """The cost of each added block, from the smallest net to the middle one and from there to the largest."""
    return ((costs[1] - costs[0]) / (blocks[1] - blocks[0]), (costs[2] - costs[1]) / (blocks[2] - blocks[1]))


def test_the_analysis_costs_the_same_for_every_added_se_block() -> None:
    # 8, 16 and 32 SE bottleneck blocks (Hu et al. 2018): finding each block's gate once read every
    # gate of the net before it, block after block (0.9% more per added block from 16 to 32 blocks).
    costs = [_analysis_bytecodes(resnet_inspect.build("resnet50", layers=layers, se=True), (1, 3, 64, 64))
             for layers in ("2,2,2,2", "4,4,4,4", "8,8,8,8")]
    first, second = _per_added_block(costs, [8, 16, 32])
    assert abs(second - first) <= 0.002 * first, (first, second)


def test_the_analysis_costs_the_same_for_every_added_nested_block() -> None:
    # Blocks nested ever deeper, each a projection: the stage labels once read every leaf under every
    # call, and the depth count compared every projection with every other.
    blocks = [4, 8, 16]
    costs = [_analysis_bytecodes(_Nested(n), (1, 4, 8, 8)) for n in blocks]
    first, second = _per_added_block(costs, blocks)
    assert abs(second - first) <= 0.002 * first, (first, second)
