"""How a report shows itself in Python (render/notebook.py): ``print``, ``rich.print``, the REPL's
one line and Jupyter's HTML table, the last checked by executing docs/examples/quickstart.ipynb."""
from __future__ import annotations

import json
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import resnet_inspect as ri
from resnet_inspect.analysis.records import Report
from resnet_inspect.render.notebook import View, html, plain_text
from resnet_inspect.render.table import count_text, print_summary, shows_row, summary_rows

from tests.conftest import REPO, row

NOTEBOOK = REPO / "docs" / "examples" / "quickstart.ipynb"


class Tables(HTMLParser):
    """Every ``<table>`` of an HTML fragment: its class and its rows (the ``tr`` attributes and cell texts)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[tuple[dict[str, Any], list[str]]]] = {}
        self.tags: list[str] = []
        self.current: list[tuple[dict[str, Any], list[str]]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "table":
            self.current = self.tables.setdefault(dict(attrs).get("class") or "", [])
        elif tag == "tr":
            self.current.append((dict(attrs), []))
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None:
            self.current[-1][1].append("".join(self.cell))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def tables(fragment: str) -> dict[str, list[tuple[dict[str, Any], list[str]]]]:
    parser = Tables()
    parser.feed(fragment)
    return parser.tables


def assert_html_matches_the_engine(fragment: str, report: Report, depth: int | None = None) -> None:
    """The layer rows are the summary's rows, each Params and MACs cell the engine's count, and the
    totals table's Params and MACs the report's totals."""
    found = tables(fragment)
    header, *rows = found["ri-layers"]
    headers = header[1]
    expected = [r for r in summary_rows(report, depth) if shows_row(r)]
    assert [int(attrs["data-index"]) for attrs, _ in rows] == [r.record.index for r in expected]
    for (attrs, cells), want in zip(rows, expected):
        assert (int(attrs["data-params"]), int(attrs["data-macs"])) == (want.params, want.macs)
        shown = dict(zip(headers, cells))
        for column, value in (("Params", want.params), ("MACs", want.macs)):
            assert shown[column] in (count_text(value), "—" if value == 0 else None), (column, cells)
    totals = {cells[0]: cells[1] for _, cells in found["ri-totals"]}
    assert totals["Params"] == count_text(report.totals["params"])
    assert totals["MACs"] == count_text(report.totals["macs"])


@pytest.fixture(scope="module")
def report() -> Report:
    return ri.inspect("resnet18")


def test_repr_is_one_short_line_with_the_totals(report: Report) -> None:
    text = repr(report)
    assert "\n" not in text and len(text) < 200
    assert count_text(report.totals["params"]) in text and count_text(report.totals["macs"]) in text


def test_str_is_the_summary_table(report: Report) -> None:
    text = str(report)
    assert text == plain_text(report)
    for name in ("conv1", "fc"):  # the stem and the head have rows of their own in every view
        assert count_text(report.layer(name).params) in row(text, name)
        assert count_text(report.layer(name).macs) in row(text, name)
    assert row(text, "Params", after="Totals").split()[1] == count_text(report.totals["params"])


def test_rich_print_fits_the_console_and_matches_print_summary(report: Report) -> None:
    console = Console(width=80, record=True, force_terminal=True, color_system=None)
    console.print(report)
    shown = console.export_text()
    assert max(len(line) for line in shown.splitlines()) <= 80
    direct = Console(width=80, record=True, force_terminal=True, color_system=None)
    print_summary(report, direct)
    assert shown.rstrip() == direct.export_text().rstrip()


def test_html_is_the_engines_table_and_loads_nothing(report: Report) -> None:
    fragment = report._repr_html_()
    assert_html_matches_the_engine(fragment, report)
    lowered = fragment.lower()
    for reference in ("<script", "src=", "href=", "url(", "@import", "http"):
        assert reference not in lowered


def test_html_of_a_view_folds_to_its_depth(report: Report) -> None:
    assert_html_matches_the_engine(html(report, View(depth=1)), report, depth=1)


def test_html_escapes_the_users_names() -> None:
    from torch import nn

    model = nn.Sequential()
    model.add_module("<b>x</b>", nn.Linear(2, 2))
    fragment = ri.inspect(model, (1, 2))._repr_html_()
    assert "<b>x</b>" not in fragment and "&lt;b&gt;x&lt;/b&gt;" in fragment


def kernel_spec(tmp_path: Path) -> str:
    """A kernelspec, in a folder of its own, that starts this interpreter with this checkout first on the path."""
    name = "resnet-inspect-test"
    folder = tmp_path / "kernels" / name
    folder.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "resnet-inspect tests", "language": "python",
            "env": {"PYTHONPATH": str(REPO)}}
    (folder / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    return name


def test_the_quickstart_notebook_runs_and_shows_the_engines_tables(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name=kernel_spec(tmp_path), resources={"metadata": {"path": str(tmp_path)}}).execute()

    outputs = [(cell.source, out) for cell in notebook.cells for out in cell.get("outputs", [])]
    assert not [out for _, out in outputs if out.output_type == "error"]
    shown = [(source, out["data"]) for source, out in outputs if out.output_type == "execute_result"]
    htmls = [(source, data["text/html"]) for source, data in shown if "text/html" in data]
    assert [source.splitlines()[-1] for source, _ in htmls] == ["report", "stats"]
    report = ri.inspect("resnet18")
    assert_html_matches_the_engine(htmls[0][1], report)
    assert_html_matches_the_engine(htmls[1][1], report, depth=1)
    plain = {source.splitlines()[-1]: data["text/plain"] for source, data in shown}
    assert plain["report.totals[\"params\"], report.totals[\"macs\"]"] == \
        repr((report.totals["params"], report.totals["macs"]))
    assert plain["stats.total_params, stats.trainable_params, stats.total_mult_adds"] == \
        repr((report.totals["params"], report.totals["trainable_params"], report.totals["macs"]))
    # Nothing but the returned objects is shown: no stray rich output, no printed table.
    assert [out.output_type for _, out in outputs] == ["execute_result"] * 4
