"""The documentation's promises point at tests that exist.

docs/security.md backs every statement with a test: ``tests/test_x.py::name`` (a later ``::name``
in the same cell is in the same file), a bare ``test_name`` in a section that says which file it
is in, and ``T[case]`` for a case of ``tests/test_bad_input.py::test_bad_input_table``. A test that
is renamed or removed would leave the page promising what nothing checks.
"""
from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SECURITY = REPO / "docs" / "security.md"
_QUALIFIED = re.compile(r"(tests/test_\w+\.py)?::(test_\w+)")
_BARE = re.compile(r"`(test_\w+)")
_TABLE_CASE = re.compile(r"T\[([^\].]+[^\]]*)\]")  # not the "T[...]" that explains the notation


def _test_functions() -> dict[str, set[str]]:
    """Every test module's file name -> the names of the test functions it defines."""
    found = {}
    for path in (REPO / "tests").glob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        found[f"tests/{path.name}"] = {node.name for node in ast.walk(tree)
                                       if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return found


def _bad_input_case_ids() -> set[str]:
    spec = importlib.util.spec_from_file_location("_bad_input_cases", REPO / "tests" / "test_bad_input.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {name for name, _make, _message in module.CASES}


def _references(text: str) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """(file, test) pairs, bare test names, and bad-input table case ids named on the page."""
    qualified, bare, cases = [], [], []
    for line in text.splitlines():
        current = None
        for match in _QUALIFIED.finditer(line):
            current = match.group(1) or current
            if current is None:
                raise AssertionError(f"'::{match.group(2)}' has no file before it on its line: {line}")
            qualified.append((current, match.group(2)))
        named = {test for _, test in qualified}
        bare += [name for name in _BARE.findall(line) if name not in named]
        cases += _TABLE_CASE.findall(line)
    return qualified, bare, cases


def test_every_test_security_md_names_exists() -> None:
    qualified, bare, cases = _references(SECURITY.read_text(encoding="utf-8"))
    functions = _test_functions()
    everywhere = set().union(*functions.values())
    assert len(qualified) > 40 and cases, "the page's references were not found: has its format changed?"
    missing = [f"{file}::{test}" for file, test in qualified if test not in functions.get(file, set())]
    missing += [test for test in bare if test not in everywhere]
    missing += [f"T[{case}]" for case in set(cases) - _bad_input_case_ids()]
    assert not missing, f"docs/security.md names tests that do not exist: {missing}"


@pytest.mark.parametrize("line,expected", [
    ("`tests/test_a.py::test_x`, `::test_y`", [("tests/test_a.py", "test_x"), ("tests/test_a.py", "test_y")]),
    ("`test_z` and T[case-1]", []),
])
def test_references_are_read_as_the_page_writes_them(line: str, expected: list[tuple[str, str]]) -> None:
    qualified, bare, cases = _references(line)
    assert qualified == expected
    if not expected:
        assert (bare, cases) == (["test_z"], ["case-1"])
