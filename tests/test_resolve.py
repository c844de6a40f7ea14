"""Resolving a target (resnet_inspect.resolve): one place, below the CLI, that validates once."""
from __future__ import annotations

import ast
import importlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import resnet_inspect as ri
from resnet_inspect import resolve as resolving
from resnet_inspect import snapshot as snapshots
from resnet_inspect.cli import app

PACKAGE = Path(ri.__file__).parent
variants = importlib.import_module("resnet_inspect.variants")  # the module: the package exports a function of that name


def _imports(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, as an absolute dotted name (relative imports resolved)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def test_no_module_outside_the_cli_imports_from_it() -> None:
    outside = [path for path in PACKAGE.rglob("*.py") if "cli" not in path.relative_to(PACKAGE).parts
               and path.name != "__main__.py"]  # python -m resnet_inspect runs the CLI: its one job
    assert len(outside) > 20
    upward = {str(path.relative_to(PACKAGE)): name for path in outside for name in _imports(path)
              if name == "resnet_inspect.cli" or name.startswith("resnet_inspect.cli.")}
    assert upward == {}


def test_the_walk_resolves_relative_imports() -> None:
    """The check above can fail: ``from . import common`` in cli/summary.py and ``from ..errors import``
    are seen under their absolute names."""
    names = set(_imports(PACKAGE / "cli" / "summary.py"))
    assert {"resnet_inspect.cli.common", "resnet_inspect.errors"} <= names


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names get_spec validates, in order (every get_spec call ends in variants._validate)."""
    seen: list[str] = []
    original = variants._validate

    def counting(spec: variants.ResNetSpec) -> None:
        seen.append(spec.name)
        original(spec)

    monkeypatch.setattr(variants, "_validate", counting)
    return seen


def test_the_cli_validates_a_name_once(validations: list[str]) -> None:
    result = CliRunner().invoke(app, ["summary", "resnet18", "--input", "64", "-f", "json"])
    assert result.exit_code == 0, result.output
    assert validations == ["resnet18"]


def test_snapshot_validates_a_name_once(validations: list[str]) -> None:
    result = CliRunner().invoke(app, ["snapshot", "cifar_resnet20", "--stem", "cifar"])
    assert result.exit_code == 0, result.output
    assert validations == ["cifar_resnet20"]
    assert json.loads(result.stdout)["input_size"] == [1, 3, 32, 32]


def test_the_api_validates_a_name_once(validations: list[str]) -> None:
    report = ri.inspect("resnet18", 64, groups=1)
    assert validations == ["resnet18"] and report.model == "resnet18" and report.options == {"groups": 1}


def test_the_api_inspects_a_checkpoint_path(tmp_path: Path) -> None:
    model = ri.build("cifar_resnet20").eval()
    path = tmp_path / "cifar20.pth"
    torch.save(model.state_dict(), path)
    report = ri.inspect(str(path))
    assert report.model == str(path) and tuple(report.input_size) == (1, 3, 32, 32)  # the CIFAR net's own size
    assert report.totals["params"] == sum(p.numel() for p in model.parameters())
    assert ri.inspect(str(path), 64, real=True).input_size == (1, 3, 64, 64)


def test_the_api_bounds_a_checkpoint_by_max_bytes(tmp_path: Path) -> None:
    path = tmp_path / "r18.pth"
    torch.save(ri.build("cifar_resnet20").state_dict(), path)
    with pytest.raises(ri.InputError):
        ri.inspect(str(path), max_bytes=1000)


def test_a_resolved_variant_carries_its_validated_spec() -> None:
    resolved = resolving.resolve("resnet50", {"output_stride": 16})
    assert resolved.kind == "variant" and resolved.spec == ri.get_spec("resnet50", output_stride=16)
    assert resolved.label is None and resolved.default_input is None
    assert snapshots.take(resolved).options == {"output_stride": 16}


def test_a_snapshots_factory_is_imported_from_its_project_within_the_repository(tmp_path: Path) -> None:
    """import_root: the nearest folder holding the package (or src/ layout), never past the repository root."""
    from resnet_inspect.resolve import import_root

    repo = tmp_path / "outer" / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "shapes" / "deep").mkdir(parents=True)
    (tmp_path / "outer" / "mypkg").mkdir()  # outside the repository: never used
    assert import_root("mypkg.models", repo / "shapes" / "deep") is None
    (repo / "src" / "mypkg").mkdir(parents=True)
    assert import_root("mypkg.models", repo / "shapes" / "deep") == repo / "src"
    (repo / "shapes" / "mypkg.py").write_text("")
    assert import_root("mypkg.models", repo / "shapes" / "deep") == repo / "shapes"
