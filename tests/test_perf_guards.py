"""What keeps the quick commands quick: which heavy modules a command imports (never how long it takes).

Each check runs in a fresh interpreter, because this test process has long imported torch. The
child runs the CLI's entry point in-process and then reports which of the heavy packages ended
up in ``sys.modules``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "torch._dynamo", "sympy", "fvcore", "torchinfo")

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
    assert heavy_imports(argv) == []


def test_shell_completion_does_not_import_torch() -> None:
    # What the shell runs on <TAB> (typer/click's completion protocol).
    imported, completions = run_child([], _RESNET_INSPECT_COMPLETE="complete_bash", COMP_WORDS="resnet-inspect su",
                                      COMP_CWORD="1")
    assert "summary" in completions.split()  # the completion did run
    assert imported == []


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
