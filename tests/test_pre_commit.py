"""The pre-commit hooks this repository ships (.pre-commit-hooks.yaml), run by the real pre-commit.

docs/ci.md's configuration is used as written, with its placeholder URL and rev replaced by a local
git copy of the manifest, so nothing is downloaded: the ``shape-snapshots`` hook is
``language: system`` and runs the ``resnet-inspect`` on PATH, here this checkout's code. Each
pre-commit run gets its own PRE_COMMIT_HOME and HOME, and no git setting from outside the test.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from resnet_inspect.checkpoint import CHECKPOINT_SUFFIXES
from resnet_inspect.cli import app

pytest.importorskip("pre_commit", reason="pre-commit is in the test extra: pip install -e '.[test]'")
yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[1]
MANIFEST = REPO / ".pre-commit-hooks.yaml"

MODEL = '''from collections import OrderedDict

from torch import nn


def build() -> nn.Module:
    return nn.Sequential(OrderedDict(stem=nn.Conv2d(3, 8, 3, stride=1, padding=1), act=nn.ReLU(),
                                     head=nn.Conv2d(8, 4, 1)))
'''
# "~ stem (Conv2d)  output: 1×8×32×32 → 1×8×16×16; MACs: ..." -> stem, (old, new)
DIFF_LINE = re.compile(r"^\s*~ (\S+) \((\w+)\)\s+output: (\S+) → (\S+?)(?:;|$)", re.M)


def hooks() -> dict[str, dict[str, Any]]:
    return {hook["id"]: hook for hook in yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))}


def documented_configs() -> list[dict[str, Any]]:
    """The .pre-commit-config.yaml blocks of docs/ci.md, in page order."""
    text = (REPO / "docs" / "ci.md").read_text(encoding="utf-8")
    blocks = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    return [block for block in blocks if "repos" in block]


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """O = ⌊(I + 2P − K)/S⌋ + 1, worked here independently of the engine."""
    return (size + 2 * padding - kernel) // stride + 1


# -- the manifest ---------------------------------------------------------------------------------

def test_the_manifest_is_valid() -> None:
    """pre-commit's own reader accepts the manifest and docs/ci.md's configurations."""
    proc = subprocess.run([sys.executable, "-m", "pre_commit", "validate-manifest", str(MANIFEST)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_hooks_agree_and_select_what_can_change_a_verdict() -> None:
    """Both hooks check the whole folder once (no file names) whenever model code, a snapshot, a
    checkpoint a snapshot can name, or pyproject.toml is staged; other files skip them."""
    found = hooks()
    assert set(found) == {"shape-snapshots", "shape-snapshots-venv"}
    system, venv = found["shape-snapshots"], found["shape-snapshots-venv"]
    assert (system["language"], venv["language"]) == ("system", "python")
    for key in ("entry", "args", "pass_filenames", "files"):
        assert system[key] == venv[key], key
    assert system["entry"] == "resnet-inspect check" and system["args"] == ["shapes/"]
    assert system["pass_filenames"] is False
    selects = re.compile(system["files"])
    relevant = ["mynets.py", "src/pkg/models/backbone.py", "shapes/net.json", "pyproject.toml", "sub/pyproject.toml",
                *(f"weights/model{suffix}" for suffix in CHECKPOINT_SUFFIXES), "weights/MODEL.PTH"]
    other = ["README.md", "docs/ci.md", "setup.cfg", "not_pyproject.toml", "Makefile", "shapes/notes.txt"]
    assert [path for path in relevant if not selects.search(path)] == []
    assert [path for path in other if selects.search(path)] == []


def test_the_local_hook_is_the_shipped_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/ci.md's ``repo: local`` hook is the shipped one, field for field; and the glob in ``entry``
    that it warns against does fail, because pre-commit passes it to ``check`` unexpanded."""
    (shared, local) = documented_configs()
    assert [hook["id"] for hook in shared["repos"][0]["hooks"]] == ["shape-snapshots"]
    (hook,) = local["repos"][0]["hooks"]
    assert local["repos"][0]["repo"] == "local"
    assert hook == {key: value for key, value in hooks()["shape-snapshots"].items() if key != "description"}
    (tmp_path / "shapes").mkdir()
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(app, ["snapshot", "cifar_resnet20", "-o", "shapes/net.json"]).exit_code == 0
    unexpanded = CliRunner().invoke(app, ["check", "shapes/*.json"])
    assert unexpanded.exit_code == 2 and "no such file" in unexpanded.output
    assert CliRunner().invoke(app, ["check", *hook["args"]]).exit_code == 0


# -- a real pre-commit in a real git repository ----------------------------------------------------

def git_env(tmp_path: Path) -> dict[str, str]:
    """No git, pre-commit or Python setting from outside; ``resnet-inspect`` on PATH is this checkout's."""
    shim = tmp_path / "bin" / "resnet-inspect"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m resnet_inspect "$@"\n')
    shim.chmod(0o755)
    (tmp_path / "home").mkdir()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("GIT_", "PRE_COMMIT", "PIP_")) and key not in ("SKIP", "PYTHONPATH")}
    return {**env, "HOME": str(tmp_path / "home"), "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com",
            "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"), "PYTHONPATH": str(REPO),
            "PATH": f"{shim.parent}{os.pathsep}{env.get('PATH', '')}", "COLUMNS": "200"}


def git(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)


def hook_repo(tmp_path: Path, env: dict[str, str]) -> tuple[Path, str]:
    """A git copy of this repository's hook manifest, and its commit (what ``rev`` names)."""
    copy = tmp_path / "hooks"
    copy.mkdir()
    shutil.copy(MANIFEST, copy / MANIFEST.name)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "hooks"]):
        assert git(copy, env, *args).returncode == 0
    return copy, git(copy, env, "rev-parse", "HEAD").stdout.strip()


def project(tmp_path: Path, env: dict[str, str]) -> Path:
    """A project with a model factory, its snapshot, an allow list and docs/ci.md's hook configuration."""
    repo, rev = hook_repo(tmp_path, env)
    (config,) = [block for block in documented_configs() if block["repos"][0]["repo"] != "local"]
    config["repos"][0].update(repo=str(repo), rev=rev)
    root = tmp_path / "project"
    root.mkdir()
    assert git(root, env, "init", "-q").returncode == 0
    (root / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config))
    (root / "mynets.py").write_text(MODEL)
    (root / "pyproject.toml").write_text('[tool.resnet-inspect]\nallow-factories = ["mynets"]\n')
    (root / "README.md").write_text("A project with a model.\n")
    (root / "shapes").mkdir()
    taken = subprocess.run(["resnet-inspect", "snapshot", "mynets:build", "-i", "32", "-o", "shapes/net.json"],
                           cwd=root, env=env, capture_output=True, text=True)
    assert taken.returncode == 0, taken.stderr
    return root


def commit(root: Path, env: dict[str, str], *paths: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """Stage ``paths`` and ``git commit``: the process (git runs hooks with their output on its
    stderr; here both streams are in ``stdout``), and HEAD afterwards."""
    assert git(root, env, "add", *paths).returncode == 0
    proc = subprocess.run(["git", "commit", "-m", "a change"], cwd=root, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    return proc, git(root, env, "rev-parse", "--verify", "-q", "HEAD").stdout.strip()


def test_a_model_change_refuses_the_commit(tmp_path: Path) -> None:
    """The main case: only the model file is staged, and the hook still checks the snapshot folder."""
    env = git_env(tmp_path)
    root = project(tmp_path, env)
    installed = subprocess.run([sys.executable, "-m", "pre_commit", "install"], cwd=root, env=env,
                               capture_output=True, text=True)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    first, head = commit(root, env, ".")
    assert first.returncode == 0 and head, first.stdout
    assert "Passed" in first.stdout  # the hook ran, on a model that matches its snapshot

    (root / "README.md").write_text("A project with a model, and its shapes.\n")
    unrelated, head = commit(root, env, "README.md")
    assert unrelated.returncode == 0, unrelated.stdout
    assert "Skipped" in unrelated.stdout  # no staged file could change the verdict

    (root / "mynets.py").write_text(MODEL.replace("stride=1", "stride=2"))
    refused, after = commit(root, env, "mynets.py")
    assert refused.returncode != 0, refused.stdout
    assert after == head  # no commit was made
    assert git(root, env, "diff", "--cached", "--name-only").stdout.split() == ["mynets.py"]  # still staged
    changed = {name: (old, new) for name, _type, old, new in DIFF_LINE.findall(refused.stdout)}
    side = conv_out(32, 3, 2, 1)
    assert changed == {"(root)": ("1×4×32×32", f"1×4×{side}×{side}"), "stem": ("1×8×32×32", f"1×8×{side}×{side}"),
                       "act": ("1×8×32×32", f"1×8×{side}×{side}"), "head": ("1×4×32×32", f"1×4×{side}×{side}")}
    assert "shapes/net.json" in refused.stdout
