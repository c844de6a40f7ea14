"""``resnet-inspect report``: the self-contained HTML page, read with html.parser and in a real browser.

The browser tests drive Debian's chromium through chromedriver and selenium (the Makefile's
``chromium`` target installs them); where either is missing they skip and say why. Expected
figures come from the report's records, the summary's table and ``explain`` itself.
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import resnet_inspect
from resnet_inspect.cli import app
from resnet_inspect.render.explain import explain_record
from resnet_inspect.render.graph import node_name
from resnet_inspect.render.report import _plain_console, render_html
from resnet_inspect.render.table import count_text, shows_row, summary_rows
from conftest import ROOT_SAVING_NET, importable_module

runner = CliRunner()

# Every named variant and preset: basic and bottleneck blocks, grouped convs, option-A shortcuts
# (CIFAR, up to cifar_resnet1202's 600 blocks), ResNet-D's pool + projection, pre-activation, SE
# gates, Caffe's placement, both pyramids and Hopenet's three heads.
VARIANTS = resnet_inspect.variants()
NASTY = 'x<script>alert("1")</script>\'&\x1b[2J\u202e'


class Page(HTMLParser):
    """Every element's tag and attributes, the text of each <script> and of each table row."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._in_script: dict[str, str | None] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = dict(attrs)
            self.scripts.append((self._in_script, ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = None

    def handle_data(self, data: str) -> None:
        if self._in_script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def data(self) -> list[dict[str, Any]]:
        """The JSON embedded for each model."""
        return [json.loads(text) for attrs, text in self.scripts if attrs.get("class") == "report-data"]

    def rows(self) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.elements if tag == "tr" and "data-index" in attrs]


@pytest.fixture(scope="module")
def resnet50() -> Any:
    return resnet_inspect.inspect("resnet50")


@pytest.fixture(scope="module")
def resnet50_html(resnet50: Any) -> str:
    from resnet_inspect.cli.memory import summary_memory

    return render_html(resnet50, memory=[summary_memory("resnet50", None, {})])


def shown_rows(report: Any) -> list[Any]:
    """The rows ``summary`` prints (the root only when it owns something)."""
    return [row for row in summary_rows(report) if shows_row(row)]


# -- the HTML, parsed ---------------------------------------------------------------------------

def test_the_page_loads_nothing_from_anywhere(resnet50_html: str) -> None:
    page = Page(resnet50_html)
    linked = [(tag, key, value) for tag, attrs in page.elements for key, value in attrs.items()
              if key in ("src", "href", "xlink:href", "action", "srcset", "data", "poster")]
    assert linked == []
    assert not [tag for tag, _ in page.elements if tag in ("link", "iframe", "img", "object", "embed", "base")]
    policy = [attrs["content"] for tag, attrs in page.elements
              if tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy"]
    assert len(policy) == 1 and policy[0].startswith("default-src 'none';"), policy
    assert "@import" not in resnet50_html and "url(" not in resnet50_html
    assert sum(1 for tag, _ in page.elements if tag == "svg") >= 1 + 6  # the diagram and six charts


def test_the_table_has_the_summarys_rows_and_numbers(resnet50: Any, resnet50_html: str) -> None:
    rows = Page(resnet50_html).rows()
    expected = shown_rows(resnet50)
    assert [int(r["data-index"]) for r in rows] == [row.record.index for row in expected]
    assert len(rows) == len(resnet50.layers) - 1  # resnet50's root owns nothing, so summary leaves it out
    assert sum(int(r["data-macs"]) for r in rows) == resnet50.totals["macs"]
    assert sum(int(r["data-params"]) for r in rows) == resnet50.totals["params"]
    conv = resnet50.layer("layer2.0.conv2")
    assert f"<td>{count_text(conv.macs)}</td>" in resnet50_html  # 115,605,504, as summary prints it


def test_every_layer_carries_what_explain_prints(resnet50: Any, resnet50_html: str) -> None:
    data = Page(resnet50_html).data()[0]
    assert set(data["explain"]) == {str(rec.index) for rec in resnet50.layers}
    rec = resnet50.layer("layer2.0")
    console = _plain_console()
    explain_record(resnet50, rec, console)
    assert data["explain"][str(rec.index)] == "\n".join(
        line.rstrip() for line in console.file.getvalue().splitlines()).strip()
    node = data["nodes"]["layer2.0"]
    assert node["record"] == rec.index
    under = {r.index for r in resnet50.layers if r.name == "layer2.0" or r.name.startswith(("layer2.0.", "layer2.0:"))}
    assert set(node["rows"]) == under


def test_the_sections_are_the_summarys(resnet50: Any, resnet50_html: str) -> None:
    from resnet_inspect.render.table import depth_text

    paragraphs = depth_text(resnet50).plain.split("\n")
    assert len(paragraphs) > 1
    for line in paragraphs:  # one paragraph per line of the summary's depth section
        assert f"<p>{html.escape(line, quote=True)}</p>" in resnet50_html, line
    carriers = [c["name"] for entry in resnet50.to_dict()["downsample"] for c in entry["carriers"]]
    assert carriers and all(name in resnet50_html for name in carriers)


def test_names_are_escaped_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "nasty_net.py").write_text(
        "from torch import nn\n\n"
        f"NAME = {NASTY!r}\n\n"
        "def build():\n"
        "    return nn.Sequential(nn.ModuleDict({NAME: nn.Conv2d(3, 4, 3)}))\n\n"
        "class _Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.inner = nn.ModuleDict({NAME: nn.Conv2d(3, 4, 3)})\n\n"
        "    def forward(self, x):\n"
        "        return self.inner[NAME](x)\n\n"
        "def net():\n"
        "    return _Net()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = runner.invoke(app, ["report", "nasty_net:net", "--input", "16", "-o", "page.html"])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "page.html").read_text(encoding="utf-8")
    page = Page(text)
    assert [attrs.get("class") for attrs, _ in page.scripts] == ["report-data", None]  # no injected script
    assert "\x1b" not in text and "\u202e" not in text
    data = page.data()[0]
    assert any("x<script>alert" in explained and "\\x1b" in explained for explained in data["explain"].values())
    assert "<script>alert" not in text


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_builds_a_report(name: str) -> None:
    report = resnet_inspect.inspect(name)
    text = render_html(report)
    page = Page(text)
    data = page.data()[0]
    # One row per record; the root's own record only when it owns something (as in ``summary``).
    root = [r for r in report.layers if not r.name]
    hidden = sum(1 for r in root if not (r.params or r.buffers or r.macs)) if root else 0
    assert len(page.rows()) == len(shown_rows(report)) == len(report.layers) - hidden
    # The diagram is embedded as SVG, one node per block, named as the records are.
    diagram = text[text.index('<div class="diagram">'):]
    diagram = diagram[:diagram.index("</svg>")]
    assert diagram.startswith('<div class="diagram"><svg')
    titles = set(re.findall(r"<title>([^<]*)</title>", diagram))
    blocks = [b for s in report.structure.stages for b in s.blocks]
    for block in blocks:  # every block is a node of the diagram, and covers its own rows
        label = report.layers[block.container if block.container is not None else block.add]
        assert any(entry["record"] == label.index for entry in data["nodes"].values()), label.name
        assert html.escape(node_name(label), quote=False) in titles, label.name
    charts = [attrs.get("aria-label") for tag, attrs in page.elements if tag == "svg" and attrs.get("role") == "img"]
    assert len(charts) == 6 and "MACs per block" in charts


def test_two_models_side_by_side_with_their_diff() -> None:
    a, b = resnet_inspect.inspect("resnet18"), resnet_inspect.inspect("resnet34")
    text = render_html(a, b)
    page = Page(text)
    articles = [attrs for tag, attrs in page.elements if tag == "article"]
    assert [x["data-slot"] for x in articles] == ["0", "1"]
    assert len(page.data()) == 2
    assert len(page.rows()) == len(shown_rows(a)) + len(shown_rows(b))
    assert 'id="diff"' in text and "Totals" in text


def test_without_graphviz_the_page_says_so(resnet50: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import resnet_inspect.render.report as report_module

    monkeypatch.setattr(report_module.shutil, "which", lambda name: None)
    text = render_html(resnet50)
    page = Page(text)
    assert "Graphviz's 'dot' program was not found" in html.unescape(text)
    assert not [attrs for tag, attrs in page.elements if tag == "svg" and attrs.get("role") != "img"]
    assert len(page.rows()) == len(shown_rows(resnet50))


# -- memory (issue 17) ----------------------------------------------------------------------------

MEMORY_INPUT = "2x3x64x64"  # batch 2: the report's batch is the memory analysis' batch


@pytest.fixture(scope="module")
def memory_page() -> tuple[Any, str]:
    """``report resnet18 --input 2x3x64x64`` through the command, and the engine's own memory analysis."""
    from resnet_inspect.analysis.memory import MemoryOptions, analyze_memory

    result = runner.invoke(app, ["report", "resnet18", "--input", MEMORY_INPUT, "-o", "-"])
    assert result.exit_code == 0, result.output
    expected = analyze_memory(resnet_inspect.build("resnet18"), (3, 64, 64), MemoryOptions(batch=2))
    return expected, result.stdout


def _bars(text: str, title: str) -> dict[str, int]:
    """A chart's bars (label -> value), read from the page."""
    start = text.index(f'data-title="{html.escape(title)}"')
    chart = text[start:text.index("</figure>", start)]
    return {html.unescape(label): int(value)
            for label, value in re.findall(r'data-label="([^"]*)" data-value="(\d+)"', chart)}


def test_saved_for_backward_bars_sum_to_the_total_and_match_the_layers(memory_page: tuple[Any, str]) -> None:
    expected, text = memory_page
    saved = expected.saved_for_backward_bytes
    records = resnet_inspect.inspect("resnet18", input_size=(2, 3, 64, 64)).layers
    stage_of = {rec.name: rec.stage for rec in records}
    per_stage: dict[str, int] = {}
    for name, value in saved.items():
        per_stage[stage_of[name]] = per_stage.get(stage_of[name], 0) + value
    stages = _bars(text, "Saved for backward per stage")
    section = [attrs for tag, attrs in Page(text).elements if tag == "section" and attrs.get("class") == "memory"]
    assert sum(stages.values()) == int(section[0]["data-saved-bytes"]) == sum(saved.values()) > 0
    assert stages == {stage: value for stage, value in per_stage.items() if value}
    assert list(stages) == ["stem", "res2", "res3", "res4", "res5", "head"]
    blocks = _bars(text, "Saved for backward per block")
    assert len(blocks) == 8
    for block, value in blocks.items():  # a block's layers, and what its own forward saves
        assert value == sum(v for k, v in saved.items() if k == block or k.startswith(block + ".")), block
    assert blocks["layer1.0"] > 0
    assert sum(blocks.values()) == sum(per_stage[s] for s in ("res2", "res3", "res4", "res5"))


def test_the_memory_section_shows_the_engines_peaks(memory_page: tuple[Any, str]) -> None:
    expected, text = memory_page
    page = Page(text)
    section = [attrs for tag, attrs in page.elements if tag == "section" and attrs.get("class") == "memory"]
    assert len(section) == 1 and section[0]["data-batch"] == "2"
    peaks = {attrs["data-peak"]: int(attrs["data-bytes"]) for tag, attrs in page.elements if "data-peak" in attrs}
    assert peaks == {"inference": expected.inference.total_bytes, "training": expected.training.total_bytes}
    memory = text[text.index('<section class="memory"'):]
    memory = memory[:memory.index("</section>")]
    for peak in (expected.inference, expected.training):  # every part of each breakdown, in bytes
        for value in peak.breakdown_bytes.values():
            assert f"<td>{value:,}</td>" in memory
    parts = re.findall(r"<tr><td>([^<]*)</td>", memory)
    assert {"weights and buffers", "gradients", "optimizer state", "saved for backward", "transient"} <= set(parts)


def test_the_layer_table_saved_column_is_the_csvs(memory_page: tuple[Any, str]) -> None:
    import csv
    import io

    _, text = memory_page
    result = runner.invoke(app, ["summary", "resnet18", "--input", MEMORY_INPUT, "--memory", "--format", "csv"])
    assert result.exit_code == 0, result.output
    from_csv = {int(row["index"]): int(row["saved_for_backward_bytes"])
                for row in csv.DictReader(io.StringIO(result.stdout)) if row["index"]}
    rows = Page(text).rows()
    shown = {int(r["data-index"]): int(r["data-saved"]) for r in rows}
    assert shown == {index: value for index, value in from_csv.items() if index in shown}
    assert sum(shown.values()) == sum(from_csv.values()) > 0
    assert "<th data-col=\"8\" data-numeric=\"saved\">Saved for backward</th>" in text


def test_saved_bars_count_what_the_root_module_saves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A functional op in the root's own forward saves under the root's class name: its bytes are in
    the stage bars (the root's group, "other"), which still sum to the total."""
    from resnet_inspect.analysis.memory import MemoryOptions, analyze_memory

    importable_module(tmp_path, "root_saving_net", ROOT_SAVING_NET, monkeypatch)
    result = runner.invoke(app, ["report", "root_saving_net:build", "--input", "8", "-o", "-"])
    assert result.exit_code == 0, result.output
    from root_saving_net import build

    saved = analyze_memory(build(), (3, 8, 8), MemoryOptions(batch=1)).saved_for_backward_bytes
    assert saved == {"conv": 3 * 8 * 8 * 4, "Net": 4 * 6 * 6 * 4}
    assert _bars(result.stdout, "Saved for backward per stage") == {"stride 1": saved["conv"], "other": saved["Net"]}


def test_report_without_memory_or_with_nothing_to_train(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    importable_module(tmp_path, "frozen_report_net", (
        "from torch import nn\n\n"
        "def build():\n"
        "    return nn.Sequential(nn.MaxPool2d(2), nn.ReLU())\n"), monkeypatch)
    frozen = runner.invoke(app, ["report", "frozen_report_net:build", "--input", "16", "-o", "-"])
    assert frozen.exit_code == 0, frozen.output
    memory = frozen.stdout[frozen.stdout.index('<section class="memory"'):]
    assert "No memory analysis: Nothing in the model" in html.unescape(memory[:memory.index("</section>")])
    plain = runner.invoke(app, ["report", "cifar_resnet20", "--no-memory", "-o", "-"])
    assert plain.exit_code == 0, plain.output
    page = Page(plain.stdout)
    assert 'class="memory"' not in plain.stdout and "Saved for backward" not in plain.stdout
    assert all("data-saved" not in r for r in page.rows())


# -- the command ----------------------------------------------------------------------------------

def test_report_of_a_factory_and_a_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    importable_module(tmp_path, "tiny_report_net", (
        "from torch import nn\n\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))\n"),
        monkeypatch)
    torch.save(resnet_inspect.build("cifar_resnet20").state_dict(), tmp_path / "c20.pth")
    factory = runner.invoke(app, ["report", "tiny_report_net:build", "--input", "32", "-o", "f.html"])
    assert factory.exit_code == 0, factory.output
    rows = Page((tmp_path / "f.html").read_text(encoding="utf-8")).rows()
    assert [int(r["data-macs"]) for r in rows][-3:] == [8 * 16 * 16 * 27, 0, 4 * 16 * 16 * 8]
    checkpoint = runner.invoke(app, ["report", "c20.pth", "-o", "-"])
    assert checkpoint.exit_code == 0, checkpoint.output
    page = Page(checkpoint.stdout)
    expected = resnet_inspect.inspect("cifar_resnet20")
    assert sum(int(r["data-params"]) for r in page.rows()) == expected.totals["params"]


@pytest.mark.parametrize("case", ["missing-dir", "directory", "exists"])
def test_an_output_that_cannot_be_written_is_bad_input(tmp_path: Path, case: str) -> None:
    target = {"missing-dir": tmp_path / "no" / "r.html", "directory": tmp_path, "exists": tmp_path / "r.html"}[case]
    if case == "exists":
        target.write_text("keep me")
    result = runner.invoke(app, ["report", "resnet18", "-o", str(target)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    if case == "exists":
        assert target.read_text() == "keep me"
        forced = runner.invoke(app, ["report", "resnet18", "-o", str(target), "--force"])
        assert forced.exit_code == 0 and Page(target.read_text(encoding="utf-8")).rows()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_report_a_b_takes_each_sides_flags(tmp_path: Path) -> None:
    out = tmp_path / "ab.html"
    result = runner.invoke(app, ["report", "resnet50", "resnet50", "--b-stride-in-1x1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = Page(out.read_text(encoding="utf-8"))
    a, b = (resnet_inspect.inspect("resnet50"), resnet_inspect.inspect("resnet50", stride_in_1x1=True))
    rows = page.rows()
    assert sum(int(r["data-macs"]) for r in rows[:len(rows) // 2]) == a.totals["macs"]
    assert sum(int(r["data-macs"]) for r in rows[len(rows) // 2:]) == b.totals["macs"] != a.totals["macs"]
    alone = runner.invoke(app, ["report", "resnet50", "--b-stride-in-1x1"])
    assert alone.exit_code == 2


def test_three_models_are_bad_input() -> None:
    result = runner.invoke(app, ["report", "resnet18", "resnet34", "resnet50"])
    assert result.exit_code == 2 and "one model, or two" in result.output


# -- in a real browser ----------------------------------------------------------------------------

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run")


def _browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[test]')"
    if _chromium() is None or shutil.which("chromedriver") is None:
        return ("Debian's chromium and chromium-driver are not installed (make chromium, or "
                "apt-get install chromium chromium-driver)")
    if shutil.which("dot") is None:
        return "Graphviz's dot is missing, so the report has no diagram to click (make graphviz)"
    return None


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = _browser_missing()
    if missing:
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="resnet-inspect-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument("--window-size=1400,1000")
    options.binary_location = _chromium()
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def opened(browser: Any, resnet50_html: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("report") / "resnet50.html"
    path.write_text(resnet50_html, encoding="utf-8")
    browser.get_log("performance")  # drop what the browser did before the page (its new-tab page)
    browser.get(path.as_uri())
    if os.environ.get("RESNET_INSPECT_REPORT_SCREENSHOT"):  # docs: save the screenshot the README shows
        browser.save_screenshot(os.environ["RESNET_INSPECT_REPORT_SCREENSHOT"])
    return browser


def test_no_console_errors(opened: Any) -> None:
    errors = [entry for entry in opened.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    titles = opened.execute_script("return Array.from(document.querySelectorAll('g.node > title'))"
                                   ".map(t => t.textContent)")
    clickable = json.loads(opened.execute_script("return document.querySelector('script.report-data').textContent"))
    assert len(titles) == 20 and set(titles) <= set(clickable["nodes"])  # stem 2, blocks 16, head 2


def test_the_browser_shows_every_row(opened: Any, resnet50: Any) -> None:
    rows = opened.execute_script("return document.querySelectorAll('table.layers tbody tr').length")
    assert rows == len(shown_rows(resnet50))


def test_sorting_by_macs_puts_the_largest_first(opened: Any, resnet50: Any) -> None:
    from selenium.webdriver.common.by import By

    header = opened.find_element(By.XPATH, "//table[@class='layers']//th[text()='MACs']")
    header.click()
    first = opened.execute_script("return document.querySelector('table.layers tbody tr')"
                                  ".getAttribute('data-index')")
    assert resnet50.layers[int(first)].macs == max(r.macs for r in resnet50.layers)
    header.click()  # again: smallest first
    first = opened.execute_script("return document.querySelector('table.layers tbody tr')"
                                  ".getAttribute('data-macs')")
    assert int(first) == 0
    opened.find_element(By.XPATH, "//table[@class='layers']//th[text()='Saved for backward']").click()
    saved = opened.execute_script("return Array.from(document.querySelectorAll('table.layers tbody tr'))"
                                  ".map(r => Number(r.getAttribute('data-saved')))")
    assert saved[0] == max(saved) > 0


def test_clicking_a_node_shows_its_explanation(opened: Any, resnet50: Any) -> None:
    from selenium.webdriver.common.by import By

    assert opened.execute_script("return document.querySelector('.explain-text').textContent") == ""
    node = opened.find_element(By.XPATH, "//*[local-name()='g'][contains(@class,'node')]"
                                         "[*[local-name()='title'][text()='layer2.0']]")
    opened.execute_script("arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))", node)
    shown = opened.execute_script("return document.querySelector('.explain-text').textContent")
    rec = resnet50.layer("layer2.0")
    console = _plain_console()
    explain_record(resnet50, rec, console)
    assert shown.splitlines()[0] == console.file.getvalue().splitlines()[0].rstrip()
    assert "layer2.0.conv2 (3×3, stride 2)" in shown
    lit = opened.execute_script("return Array.from(document.querySelectorAll('tr.highlight'))"
                                ".map(r => Number(r.getAttribute('data-index')))")
    assert sorted(lit) == sorted(r.index for r in resnet50.layers if r.name.startswith("layer2.0"))


def test_filtering_and_zooming(opened: Any) -> None:
    from selenium.webdriver.common.by import By

    box = opened.find_element(By.CSS_SELECTOR, "input.filter")
    box.clear()
    box.send_keys("downsample")
    visible = opened.execute_script("return Array.from(document.querySelectorAll('table.layers tbody tr'))"
                                    ".filter(r => !r.hidden).map(r => r.cells[0].textContent.trim())")
    assert visible and all("downsample" in name for name in visible)
    before = opened.execute_script("return document.querySelector('.diagram svg').getAttribute('viewBox')")
    opened.find_element(By.CSS_SELECTOR, "button[data-zoom='in']").click()
    after = opened.execute_script("return document.querySelector('.diagram svg').getAttribute('viewBox')")
    width = [float(before.split()[2]), float(after.split()[2])]
    assert width[1] == pytest.approx(0.8 * width[0])


def test_the_page_makes_no_network_request(opened: Any) -> None:
    resources = opened.execute_script("return performance.getEntriesByType('resource').length")
    assert resources == 0
    requested = []  # (loader, url): the loader ID ties a page's subresources to its navigation
    for entry in opened.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requested.append((message["params"].get("loaderId"), message["params"]["request"]["url"]))
    page = [loader for loader, url in requested if url.endswith("/resnet50.html")]
    assert page, requested  # the log does see the page's own request
    assert [url for loader, url in requested if loader in page] == [opened.current_url]
    # Nor anything else on the network while the page was open (chromium's own chrome:// pages aside).
    assert [url for _, url in requested if url.split(":")[0] in ("http", "https", "ws", "wss", "ftp")] == []


def test_report_memory_is_the_analysis_of_the_model_its_trace_built(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each model is resolved and built once (by its trace, on meta); the memory section analyses
    # stand-ins of that module, with the same figures as a model built on its own.
    from resnet_inspect.analysis.memory import MemoryOptions, analyze_memory
    from resnet_inspect.analysis import inspect as inspect_module
    from resnet_inspect.cli import report as report_command
    from resnet_inspect.models import resnet as resnet_module

    built: list[str] = []
    analyses: list[Any] = []
    real_build, real_memory = resnet_module.build_model, report_command._memory

    def counting_build(spec: Any) -> Any:
        built.append(spec.name)
        return real_build(spec)

    monkeypatch.setattr(inspect_module, "build_model", counting_build)
    monkeypatch.setattr(resnet_module, "build_model", counting_build)
    monkeypatch.setattr(report_command, "_memory", lambda *a: analyses.append(real_memory(*a)) or analyses[-1])
    result = runner.invoke(app, ["report", "cifar_resnet20", "cifar_resnet20", "--b-num-classes", "7", "--input", "2x3x32x32",
                                 "-o", "-"])
    assert result.exit_code == 0, result.output
    assert built == ["cifar_resnet20", "cifar_resnet20"]
    options = MemoryOptions(batch=2)
    assert analyses == [analyze_memory(resnet_inspect.build("cifar_resnet20"), (3, 32, 32), options,
                                       label="cifar_resnet20"),
                        analyze_memory(resnet_inspect.build("cifar_resnet20", num_classes=7), (3, 32, 32), options,
                                       label="cifar_resnet20")]
