"""Untrusted names on screen (resnet_inspect.text): names from the user's files and models are shown
escaped, never sent raw.

A module, a checkpoint key or a snapshot layer named ``conv1\\x1b[2J`` would clear the screen of
whoever prints it. Every view must show the escape (``\\x1b``) and hold no raw control character.
"""
from __future__ import annotations

import json
import os
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import resnet_inspect as ri
from resnet_inspect.cli import app
from resnet_inspect.text import article, visible, visible_lines

EVIL = "conv1\x1b[2J"  # ESC [ 2 J: "erase the whole screen"
SHOWN = "conv1\\x1b[2J"
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # any control character but newline and tab


@pytest.mark.parametrize("text,shown", [
    ("conv1\x1b[2J", "conv1\\x1b[2J"), ("a\nb", "a\\nb"), ("bell\x07", "bell\\x07"), ("del\x7f", "del\\x7f"),
    ("c1\x9b2J", "c1\\x9b2J"), ("rtl\u202eexe.pth", "rtl\\u202eexe.pth"), ("café 层 ✓", "café 层 ✓"),
])
def test_visible_escapes_control_and_invisible_characters_only(text: str, shown: str) -> None:
    assert visible(text) == shown
    assert not RAW.search(visible(text))


def test_visible_lines_keeps_line_breaks() -> None:
    assert visible_lines("a\x1b\nb\tc") == "a\\x1b\nb\tc"


@pytest.mark.parametrize("word,expected", [("int", "an"), ("list", "a"), ("OrderedDict", "an"), ("Tensor", "a")])
def test_article(word: str, expected: str) -> None:
    assert article(word) == expected


@pytest.fixture
def evil_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``name:make``, a model whose first conv is named ``conv1<ESC>[2J`` (an nn.ModuleDict key)."""
    name = f"ri_evil_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(f"""
        from torch import nn

        class Net(nn.Module):
            def __init__(self, width=4):
                super().__init__()
                self.body = nn.ModuleDict({{{EVIL!r}: nn.Conv2d(3, width, 3), "relu": nn.ReLU()}})

            def forward(self, x):
                return self.body["relu"](self.body[{EVIL!r}](x))

        def make():
            return Net()

        def wider():
            return Net(8)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield name
    sys.modules.pop(name, None)


def _output(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def _assert_shown_not_sent(output: str, json_text: bool = False) -> None:
    """No raw control character; the escape is visible (JSON writes it as \\u001b and keeps the name exact)."""
    assert "\x1b" not in output and not RAW.search(output), repr(output[:400])
    assert ("conv1\\u001b[2J" if json_text else SHOWN) in output, repr(output[:400])


VIEWS = {
    "summary": lambda m: ("summary", f"{m}:make"),
    "summary-csv": lambda m: ("summary", f"{m}:make", "--format", "csv"),
    "summary-markdown": lambda m: ("summary", f"{m}:make", "--format", "markdown"),
    "summary-json": lambda m: ("summary", f"{m}:make", "--format", "json"),
    "tree": lambda m: ("tree", f"{m}:make"),
    "explain": lambda m: ("explain", f"{m}:make", f"body.{EVIL}"),
    "explain-unknown-layer-error": lambda m: ("explain", f"{m}:make", "nowhere"),
    "error-message": lambda m: ("explain", f"{m}:make", f"nowhere.{EVIL}"),
    "diff": lambda m: ("diff", f"{m}:make", f"{m}:wider"),
}


@pytest.mark.parametrize("view", list(VIEWS))
def test_every_view_shows_escapes_in_module_names(view: str, evil_factory: str) -> None:
    code, out = _output(*VIEWS[view](evil_factory))
    assert code == (2 if "error" in view else 0), out
    _assert_shown_not_sent(out, json_text=view.endswith("json"))


@pytest.mark.parametrize("fmt", ["text", "github", "json"])
def test_check_output_shows_escapes_in_snapshot_layer_names(fmt: str, evil_factory: str, tmp_path: Path) -> None:
    snap = tmp_path / "evil.json"
    code, out = _output("snapshot", f"{evil_factory}:make", "-o", str(snap))
    assert code == 0, out
    doc = json.loads(snap.read_text())
    layer = next(entry for entry in doc["layers"] if entry["name"] == f"body.{EVIL}")
    layer["params"] += 1  # the snapshot now differs at the evil layer, so check names it
    snap.write_text(json.dumps(doc, indent=1))
    code, out = _output("check", str(snap), "--format", fmt, "--allow-factory", evil_factory)
    assert code == 1, out
    _assert_shown_not_sent(out, json_text=fmt == "json")
    if fmt == "json":  # the data keeps the exact name
        assert json.loads(out)["files"][0]["changed"][0]["name"] == f"body.{EVIL}"


def test_checkpoint_keys_are_shown_escaped_on_stderr(tmp_path: Path) -> None:
    with torch.device("meta"):
        model = ri.build("resnet18")
    state = {k: torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in model.state_dict().items()}
    state[EVIL + ".weight"] = torch.zeros(1)  # an unexpected key, listed among the inference lines
    path = tmp_path / "evil.pth"
    torch.save(state, path)
    code, out = _output("summary", str(path))
    assert code == 0, out
    _assert_shown_not_sent(out)
