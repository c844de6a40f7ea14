"""resnet_inspect.render.measure: the layer table measured from its cells' lengths, exactly as rich would."""
from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

import resnet_inspect
from resnet_inspect.render import table as table_module
from resnet_inspect.render.summary import print_summary

_REPORTS = {name: resnet_inspect.inspect(name, (1, 3, 64, 64)) for name in ("resnet18", "retinanet_r50_fpn")}


def _render(report: object, width: int, depth: object, terminal: bool) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, force_terminal=terminal, no_color=not terminal, highlight=False,
                      color_system="truecolor" if terminal else None)
    print_summary(report, console, depth, units="auto" if width < 80 else "exact")  # type: ignore[arg-type]
    return buffer.getvalue()


@pytest.mark.parametrize("name", sorted(_REPORTS))
@pytest.mark.parametrize("width", [40, 72, 100, 160])
@pytest.mark.parametrize("depth", [None, "all", 2])
@pytest.mark.parametrize("terminal", [False, True])
def test_the_summary_prints_what_a_plain_rich_table_prints(monkeypatch: pytest.MonkeyPatch, name: str, width: int,
                                                           depth: object, terminal: bool) -> None:
    report = _REPORTS[name]
    quick = _render(report, width, depth, terminal)
    monkeypatch.setattr(table_module, "QuickTable", Table)
    assert quick == _render(report, width, depth, terminal)


def test_text_cells_are_not_measured_by_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every cell of the layer table is a plain string or a Text: measuring the table (twice, as the
    # summary does to fit it, then to print it) measures none of them through Measurement.get, which
    # rich calls twice per cell on every measurement.
    console = Console(file=io.StringIO(), width=160, force_terminal=False, no_color=True)
    layers = table_module.layer_table(_REPORTS["resnet18"], console)
    calls = 0
    original = Measurement.get.__func__  # type: ignore[attr-defined]

    def counted(cls: type, console: Console, options: object, renderable: object) -> Measurement:
        nonlocal calls
        calls += 1
        return original(cls, console, options, renderable)

    monkeypatch.setattr(Measurement, "get", classmethod(counted))
    first = Measurement.get(console, console.options, layers)
    assert Measurement.get(console, console.options, layers) == first
    assert calls == 2, calls  # the two calls above, and nothing below them
    assert layers.row_count > 50
