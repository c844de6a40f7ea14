"""Which factories a snapshot may run (resnet_inspect.trust): the pattern rules and how the project's
pyproject.toml is found.

The command-line behaviour (exit codes, nothing imported) is tested in tests/test_snapshot.py; these
pin the rules docs/security.md and docs/ci.md state.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from resnet_inspect import InputError, trust


@pytest.mark.parametrize("pattern, reference, allowed", [
    ("mypkg.*", "mypkg.models:build", True),
    ("mypkg.*", "mypkg.models.deep:build", True),  # * crosses dots
    ("mypkg.*", "mypkg:build", False),  # the package itself is not below it
    ("mypkg", "mypkg:build", True),
    ("mypkg", "mypkg.models:build", False),  # a module path names one module
    ("mypkg.models", "mypkg.models:build", True),
    ("mypkg.models:build_*", "mypkg.models:build_small", True),
    ("mypkg.models:build_*", "mypkg.models:make", False),
    ("mypkg.models:build_?", "mypkg.models:build_s", True),
    ("MyPkg.*", "mypkg.models:build", False),  # case-sensitive, as imports are
    ("*", "os:abort", True),  # allows everything: the user's explicit choice
    ("mypkg.*", "os:abort", False),
    ("mypkg.*", "mypkg_evil.models:build", False),
])
def test_pattern_rules(pattern: str, reference: str, allowed: bool) -> None:
    assert trust.matches(trust.check_pattern(pattern, "test"), reference) is allowed


@pytest.mark.parametrize("text, ok", [
    ("mypkg.models:build", True), ("m:f", True), ("mypkg.models", False), ("my pkg:f", False),
    ("mypkg.:f", False), (":f", False), ("m:", False), ("m:f.g", False), ("m:f:g", False), ("../m:f", False),
])
def test_factory_reference_syntax(text: str, ok: bool) -> None:
    assert trust.is_factory_reference(text) is ok


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_nearest_table_wins_and_a_repository_root_ends_the_search(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / ".git").mkdir(parents=True)
    top = write(root / "pyproject.toml", '[tool.resnet-inspect]\nallow-factories = ["top.*"]\n')
    write(root / "a" / "pyproject.toml", '[project]\nname = "a"\n')  # no table: looked past
    inner = write(root / "b" / "pyproject.toml", '[tool.resnet-inspect]\nallow-factories = ["inner"]\n')
    (root / "a" / "shapes").mkdir()
    (root / "b" / "shapes").mkdir()
    assert trust.find_project_settings(root / "a" / "shapes") == trust.ProjectSettings(top, ("top.*",))
    assert trust.find_project_settings(root / "b" / "shapes") == trust.ProjectSettings(inner, ("inner",))

    write(tmp_path / "pyproject.toml", '[tool.resnet-inspect]\nallow-factories = ["*"]\n')
    bare = tmp_path / "bare"
    (bare / ".hg").mkdir(parents=True)  # a Mercurial root with no pyproject.toml: nothing outside applies
    assert trust.find_project_settings(bare) is None
    assert trust.find_project_settings(tmp_path / "loose").allow_factories == ("*",)  # no root between


def test_a_table_without_the_key_allows_nothing(tmp_path: Path) -> None:
    path = write(tmp_path / "pyproject.toml", "[tool.resnet-inspect]\n")
    settings = trust.read_settings(path)
    assert settings == trust.ProjectSettings(path, ())
    assert trust.allowed_by("mypkg.models:build", [], settings) is None
    assert trust.allowed_by("mypkg.models:build", ["mypkg.*"], settings) == "--allow-factory mypkg.*"


@pytest.mark.parametrize("text", ['tool = 1\n', '[tool]\nresnet-inspect = 3\n'])
def test_odd_tables(tmp_path: Path, text: str) -> None:
    path = write(tmp_path / "pyproject.toml", text)
    if text.startswith("tool"):
        assert trust.read_settings(path) is None
    else:
        with pytest.raises(InputError, match="must be a table"):
            trust.read_settings(path)


def _function() -> None:
    """A module-level function of this test module."""


class _Factory:
    def __call__(self) -> None:
        """A callable object."""

    def method(self) -> None:
        """A bound method."""


def test_where_a_callable_is_defined() -> None:
    import functools
    import os

    here = __name__
    assert trust.defined_at(_function) == (here, "_function")
    assert trust.defined_at(_Factory) == (here, "_Factory")
    assert trust.defined_at(_Factory()) == (here, "_Factory")
    assert trust.defined_at(_Factory().method) == (here, "method")
    assert trust.defined_at(functools.partial(functools.partial(_function))) == (here, "_function")
    assert trust.defined_at(os.abort) == (os.abort.__module__, "abort")  # posix (nt on Windows)
    assert trust.defined_at(print) == ("builtins", "print")


def test_an_allowed_module_does_not_lend_its_imports() -> None:
    import os
    import shutil

    assert trust.origin_problem("mypkg.models:abort", os.abort, ["mypkg.*"], None) is not None
    assert trust.origin_problem("mypkg.models:rmtree", shutil.rmtree, ["mypkg.*"], None) is not None
    assert trust.origin_problem("mypkg.models:rmtree", shutil.rmtree, ["mypkg.*", "shutil:rmtree"], None) is None
    # A function of the same package, re-exported (mypkg/__init__.py: from .models import build), is its own.
    own = type("F", (), {"__module__": "mypkg.models", "__call__": lambda self: None})()
    assert trust.origin_problem("mypkg:build", own, ["mypkg"], None) is None
