"""``resnet-inspect graph``: the diagrams are parsed back (SVG with xml.etree, DOT with a small
statement parser) and compared with figures worked out here from the variant's spec: blocks per
stage, torchvision's rule for projection shortcuts, and strides and sizes by closed form.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

import resnet_inspect
from resnet_inspect.text import visible
from resnet_inspect.cli import app
from resnet_inspect.variants import get_spec

runner = CliRunner()
SVG = "{http://www.w3.org/2000/svg}"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")


def run(*args: str):
    return runner.invoke(app, ["graph", *args])


def flat(text: str) -> str:
    """Rich wraps messages at the console width: compare with whitespace collapsed."""
    return " ".join(text.split())


@dataclass
class Diagram:
    """Nodes (name -> classes, text) and edges (tail, head, classes, id, text) of a parsed diagram."""

    nodes: dict[str, tuple[set[str], str]] = field(default_factory=dict)
    edges: list[tuple[str, str, set[str], str, str]] = field(default_factory=list)

    def named(self, cls: str) -> set[str]:
        return {name for name, (classes, _) in self.nodes.items() if cls in classes}

    def edges_of(self, cls: str) -> list[tuple[str, str, set[str], str, str]]:
        return [e for e in self.edges if cls in e[2]]


def parse_svg(path: Path) -> Diagram:
    """Graphviz writes each node and edge as a <g> whose class starts with node/edge, whose
    <title> is the node's name (or ``tail->head``) and whose <text> elements hold the label."""
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    diagram = Diagram()
    for g in root.iter(f"{SVG}g"):
        classes = set((g.get("class") or "").split())
        title = g.findtext(f"{SVG}title")
        text = " ".join(t.text or "" for t in g.iter(f"{SVG}text"))
        if "node" in classes:
            diagram.nodes[title] = (classes - {"node"}, text)
        elif "edge" in classes:
            tail, head = title.split("->")
            diagram.edges.append((tail, head, classes - {"edge"}, g.get("id") or "", text))
    return diagram


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|->|[\[\]={};,]|[^\s\[\]={};,"<>]+|<')


def _tokens(line: str) -> list[str]:
    """DOT tokens of one statement; an HTML label ``<...>`` (nested angle brackets) is one token."""
    out, i = [], 0
    while i < len(line):
        if line[i].isspace():
            i += 1
            continue
        if line[i] == "<":
            depth, j = 0, i
            while True:
                depth += {"<": 1, ">": -1}.get(line[j], 0)
                j += 1
                if depth == 0:
                    break
            out.append(line[i:j])
            i = j
            continue
        match = _TOKEN.match(line, i)
        assert match, f"cannot tokenise {line[i:]!r}"
        out.append(match.group(0))
        i = match.end()
    return out


def _unquote(token: str) -> str:
    return token[1:-1].replace('\\"', '"') if token.startswith('"') else token


_SKIP = ("digraph", "subgraph", "}", "{", "node", "edge", "graph")


def parse_dot(text: str) -> Diagram:
    """Node and edge statements (one per line, as the graphviz package writes them)."""
    diagram = Diagram()
    for line in text.splitlines():
        tokens = _tokens(line)
        if not tokens or tokens[0] in _SKIP or tokens[1:2] == ["="]:
            continue  # headers, defaults and graph attributes (rank=same, label=...)
        attrs: dict[str, str] = {}
        if "[" in tokens:
            body = tokens[tokens.index("[") + 1:tokens.index("]")]
            for k in range(0, len(body), 3):
                attrs[body[k]] = _unquote(body[k + 2])
            tokens = tokens[:tokens.index("[")]
        classes = set(attrs.get("class", "").split())
        label = attrs.get("label", "") + " " + attrs.get("xlabel", "")
        label = re.sub(r"<[^<>]*>", " ", label)  # HTML markup -> the text it shows
        if len(tokens) == 3 and tokens[1] == "->":
            diagram.edges.append((_unquote(tokens[0]), _unquote(tokens[2]), classes, attrs.get("id", ""), label))
        elif len(tokens) == 1 and attrs:
            diagram.nodes[_unquote(tokens[0])] = (classes, label)
    return diagram


def draw(tmp_path: Path, *args: str, suffix: str = "svg") -> Diagram:
    """Run ``graph`` and parse what it wrote."""
    out = tmp_path / f"diagram.{suffix}"
    result = run(*args, str(out))
    assert result.exit_code == 0, result.output
    return parse_svg(out) if suffix == "svg" else parse_dot(out.read_text(encoding="utf-8"))


# -- what a ResNet must contain, worked out from its spec ------------------------------------------

def expected_blocks(name: str) -> list[str]:
    """``layer{i}.{j}`` for every block of every stage: the spec's blocks per stage."""
    spec = get_spec(name)
    return [f"layer{i + 1}.{j}" for i, n in enumerate(spec.layers) for j in range(n)]


def expected_projections(name: str) -> dict[str, int]:
    """torchvision's rule: block 0 of a stage gets a projection when its stride is not 1 or its
    channels change (``inplanes != planes * expansion``); stage 1 has stride 1, the others 2."""
    spec = get_spec(name)
    expansion = 4 if spec.block == "bottleneck" else 1
    projections, inplanes = {}, 64
    for i in range(len(spec.layers)):
        planes, stride = 64 * 2 ** i, 1 if i == 0 else 2
        if stride != 1 or inplanes != planes * expansion:
            projections[f"layer{i + 1}"] = stride
        inplanes = planes * expansion
    return projections


def stage_shape(name: str, stage: int, size: int = 224) -> str:
    """The output shape of stage ``stage`` (0-based) as the diagram writes it: C×H×W, where the
    stem divides by 4 and each later stage by 2 more (224 is a multiple of 32)."""
    spec = get_spec(name)
    channels = 64 * 2 ** stage * (4 if spec.block == "bottleneck" else 1)
    side = size // 2 ** (stage + 2)
    return f"{channels}×{side}×{side}"


# -- block level -------------------------------------------------------------------------------

@needs_dot
@pytest.mark.parametrize("suffix", ["svg", "dot"])
@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_one_node_per_block_plus_stem_and_head(tmp_path: Path, name: str, suffix: str) -> None:
    diagram = draw(tmp_path, name, suffix=suffix)
    blocks = expected_blocks(name)
    assert sorted(diagram.named("block")) == sorted(blocks)
    # The stem is the paper's 7×7 conv and 3×3 max pool; the head its average pool and fc.
    assert diagram.named("stem") == {"conv1", "maxpool"}
    assert diagram.named("head") == {"avgpool", "fc"}
    assert len(diagram.nodes) == len(blocks) + 2 + 2
    # Each block is labelled with its output channels, and each stage's last block hands on
    # the stage's output shape.
    spec = get_spec(name)
    for stage, n in enumerate(spec.layers):
        last = f"layer{stage + 1}.{n - 1}"
        channels = stage_shape(name, stage).split("×")[0]
        assert f"{channels} ch" in diagram.nodes[last][1]
        leaving = [e for e in diagram.edges if e[0] == last and not e[2]]
        assert leaving and all(stage_shape(name, stage) in e[4] for e in leaving), leaving


@needs_dot
@pytest.mark.parametrize("suffix", ["svg", "dot"])
@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_each_projection_is_marked_on_its_block_with_its_stride(tmp_path: Path, name: str, suffix: str) -> None:
    diagram = draw(tmp_path, name, suffix=suffix)
    expected = expected_projections(name)
    # The shortcut belongs to its block: marked on the block node, never an edge from the block
    # before (which read as a second connection between stages).
    assert diagram.edges_of("projection") == []
    assert diagram.named("projection") == {f"{stage}.0" for stage in expected}
    for stage, stride in expected.items():
        assert f"stride {stride}" in diagram.nodes[f"{stage}.0"][1]


@needs_dot
def test_hopenet_has_three_heads_fed_by_the_pool(tmp_path: Path) -> None:
    diagram = draw(tmp_path, "hopenet")
    heads = {"fc_yaw", "fc_pitch", "fc_roll"}
    assert diagram.named("head") == {"avgpool"} | heads
    assert {e[1] for e in diagram.edges if e[0] == "avgpool"} == heads


@needs_dot
def test_depth_two_draws_the_convs_inside_blocks(tmp_path: Path) -> None:
    diagram = draw(tmp_path, "resnet18", "--depth", "2")
    spec = get_spec("resnet18")
    blocks = sum(spec.layers)
    projections = len(expected_projections("resnet18"))
    # A basic block has two 3×3 convs; each projection adds a 1×1 conv; each block one add.
    assert len(diagram.named("layer")) == 2 * blocks + projections
    assert len(diagram.named("add")) == blocks
    assert len(diagram.edges_of("projection")) == projections
    assert len(diagram.edges_of("identity")) == blocks - projections
    assert "layer2.0.conv1" in diagram.named("layer")


def test_depth_two_wraps_a_deep_net_into_columns_of_blocks(tmp_path: Path, monkeypatch) -> None:
    # Every block drawn, none folded into a run, so that res4's 36 blocks must wrap into columns.
    monkeypatch.setattr("resnet_inspect.render.graph.MAX_DRAWN_BLOCKS", 48)
    out = tmp_path / "r152.dot"
    assert run("resnet152", "--depth", "2", str(out)).exit_code == 0
    text = out.read_text(encoding="utf-8")
    # Each column is a top-level cluster ``cluster_res4_k`` holding consecutive blocks; a long
    # stage is split into columns that differ by one block at most.
    layers = get_spec("resnet152").layers
    found: dict[str, list[list[int]]] = {}
    column = None
    for line in text.splitlines():
        if m := re.match(r"\s*subgraph (cluster_res\d)_(\d+) \{", line):
            column = []
            found.setdefault(m.group(1), []).append(column)
        elif column is not None and (m := re.match(r'\s*subgraph "?cluster_layer\d\.(\d+)"? \{', line)):
            column.append(int(m.group(1)))
    assert [sum(len(c) for c in found[f"cluster_res{k + 2}"]) for k in range(4)] == list(layers)
    res4 = found["cluster_res4"]
    assert len(res4) > 1 and max(map(len, res4)) - min(map(len, res4)) <= 1
    assert [b for c in res4 for b in c] == list(range(layers[2]))
    diagram = parse_dot(text)
    assert len(diagram.named("add")) == sum(layers)


def test_depth_two_draws_squeeze_excitation_beside_the_main_path(tmp_path: Path) -> None:
    diagram = draw(tmp_path, "seresnet50", "--depth", "2", suffix="dot")
    edges = {(tail, head) for tail, head, *_ in diagram.edges}
    block = "layer1.0"
    # conv3 feeds both the gate (×) and the SE branch; the branch ends in the gate, the gate feeds the add.
    assert {(f"{block}.conv3", f"{block}.se.fc1"), (f"{block}.se.fc1", f"{block}.se.fc2"),
            (f"{block}.se.fc2", f"{block}.se/mul"), (f"{block}.conv3", f"{block}.se/mul"),
            (f"{block}.se/mul", f"{block}/add")} <= edges
    assert (f"{block}.se.fc2", f"{block}/add") not in edges
    assert len(diagram.named("gate")) == sum(get_spec("seresnet50").layers)
    assert len(diagram.edges_of("se")) == 2 * sum(get_spec("seresnet50").layers)


# -- the pyramid -------------------------------------------------------------------------------

def _halve(size: int) -> int:
    """A stride-2 window with padding (k − 1)/2: ⌊(I − 1)/2⌋ + 1 = ⌈I/2⌉."""
    return (size - 1) // 2 + 1


@needs_dot
@pytest.mark.parametrize("kind, first, last", [("retinanet", 3, 7), ("maskrcnn", 2, 6)])
def test_fpn_levels_with_their_strides(tmp_path: Path, kind: str, first: int, last: int) -> None:
    diagram = draw(tmp_path, "--fpn", kind)  # MODEL defaults to resnet50
    levels = {f"p{k}" for k in range(first, last + 1)}
    assert diagram.named("level") == levels
    report = resnet_inspect.inspect("resnet50", fpn=kind)
    side = report.input_size[-1]  # the default input of a net with a pyramid, as graph used
    sides = {}
    for k in range(1, last + 1):
        side = _halve(side)
        sides[k] = side
    for k in range(first, last + 1):
        level = f"p{k}"
        stride = report.output_info[level].stride
        assert stride == 2 ** k
        text = diagram.nodes[level][1]
        assert f"stride {2 ** k}" in text
        assert f"256×{sides[k]}×{sides[k]}" in text
        assert any(e[1] == level for e in diagram.edges), f"nothing feeds {level}"
    # One lateral 1×1 per trunk level, joined top-down by one upsample and one add fewer.
    trunk_levels = min(last, 5) - first + 1
    assert len(diagram.named("lateral")) == trunk_levels
    assert len(diagram.named("output")) == trunk_levels
    assert len(diagram.named("add")) == trunk_levels - 1
    upsamples = diagram.edges_of("upsample")
    assert len(upsamples) == trunk_levels - 1 and all("upsample ×2" in e[4] for e in upsamples)


# -- formats and errors ------------------------------------------------------------------------

@needs_dot
@pytest.mark.parametrize("suffix, magic", [("png", b"\x89PNG\r\n\x1a\n"), ("pdf", b"%PDF-")])
def test_binary_formats_have_their_magic_bytes(tmp_path: Path, suffix: str, magic: bytes) -> None:
    out = tmp_path / f"r18.{suffix}"
    result = run("resnet18", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(magic)


def test_unknown_extension_is_bad_input(tmp_path: Path) -> None:
    out = tmp_path / "r18.jpg"
    result = run("resnet18", str(out))
    assert result.exit_code == 2
    assert ".svg, .png, .pdf or .dot" in flat(result.output)
    assert not out.exists()


@pytest.mark.parametrize("model", ["resnet50", "mypkg.models:build", "model.pth"])
def test_a_model_without_out_says_out_is_missing(tmp_path: Path, model: str, monkeypatch) -> None:
    """`graph resnet50` names the missing argument instead of guessing a format for a file called resnet50."""
    monkeypatch.chdir(tmp_path)
    result = run(model)
    assert result.exit_code == 2
    assert flat(result.output).startswith("Error: OUT is missing") and f"graph {model} " in flat(result.output)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_is_reported_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "missing" / "r18.svg"
    result = run("resnet18", str(out))
    assert result.exit_code == 2
    assert "does not exist" in flat(result.output)
    assert "Traceback" not in result.output


def test_fpn_without_a_kind_draws_the_retinanet_pyramid(tmp_path: Path) -> None:
    """The issue's own example, `resnet-inspect graph --fpn out.svg`."""
    out = tmp_path / "fpn.dot"
    result = run("--fpn", str(out))
    assert result.exit_code == 0, result.output
    dot = out.read_text(encoding="utf-8")
    levels = resnet_inspect.inspect("resnet50", fpn="retinanet").outputs
    assert list(levels) == [f"p{k}" for k in range(3, 8)]
    assert all(f"P{k}" in dot for k in range(3, 8)) and "P2" not in dot


def test_existing_output_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "r18.dot"
    out.write_text("old", encoding="utf-8")
    assert run("resnet18", str(out)).exit_code == 2
    assert out.read_text(encoding="utf-8") == "old"
    assert run("resnet18", str(out), "--force").exit_code == 0
    assert out.read_text(encoding="utf-8").startswith("digraph")


def _assert_fell_back(result, out: Path) -> None:
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)  # typer.Exit(2), not a crash
    text = flat(result.output)
    assert "Traceback" not in result.output
    assert "'dot' program was not found" in text
    for hint in ("apt-get install graphviz", "brew install graphviz", "https://graphviz.org/download/"):
        assert hint in text
    assert not out.exists()
    source = out.with_suffix(".dot")
    diagram = parse_dot(source.read_text(encoding="utf-8"))
    assert sorted(diagram.named("block")) == sorted(expected_blocks("resnet18"))


def test_without_dot_the_source_is_written_and_install_explained(tmp_path: Path, monkeypatch) -> None:
    import resnet_inspect.cli.graph as graph_cli

    monkeypatch.setattr(graph_cli.shutil, "which", lambda name: None)
    out = tmp_path / "r18.png"
    _assert_fell_back(run("resnet18", str(out)), out)


def test_dot_vanishing_from_path_falls_back_too(tmp_path: Path, monkeypatch) -> None:
    """``which`` still finds dot, but running it fails: graphviz raises ExecutableNotFound."""
    import resnet_inspect.cli.graph as graph_cli

    monkeypatch.setattr(graph_cli.shutil, "which", lambda name: "/usr/bin/dot")
    monkeypatch.setenv("PATH", str(tmp_path))
    out = tmp_path / "r18.svg"
    _assert_fell_back(run("resnet18", str(out)), out)


def test_cli_import_loads_neither_torch_nor_graphviz() -> None:
    code = "import sys, resnet_inspect.cli; print(sorted(m for m in ('torch', 'graphviz') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_svg_parser_reads_a_hand_written_graph(tmp_path: Path) -> None:
    """The helpers above are checked on a two-node graph whose answer is known."""
    source = ('digraph {\na [label=<<B>x</B>> class=block]\n"b.c" [label=y class=head]\n'
              'a -> "b.c" [label=z class=projection id=e]\n}')
    diagram = parse_dot(source)
    assert diagram.named("block") == {"a"} and diagram.named("head") == {"b.c"}
    assert diagram.edges == [("a", "b.c", {"projection"}, "e", "z ")]
    if shutil.which("dot"):
        svg = tmp_path / "t.svg"
        svg.write_bytes(subprocess.run(["dot", "-Tsvg"], input=source.encode(), capture_output=True,
                                       check=True).stdout)
        parsed = parse_svg(svg)
        assert parsed.named("block") == {"a"} and parsed.edges[0][:4] == ("a", "b.c", {"projection"}, "e")
        assert len(parsed.nodes) == 2


_SKIP_FACTORY = '''
from torch import nn


class Skip(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.branch = nn.Conv2d(8, 8, 1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8 * 16 * 16, 4)

    def forward(self, x):
        y = self.conv(x)
        return self.fc(self.flatten(y + self.branch(y)))


def make():
    return Skip()
'''


def test_a_model_without_residual_stages_is_drawn_layer_by_layer(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "skipnet.py").write_text(_SKIP_FACTORY, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    diagram = draw(tmp_path, "skipnet:make", "--input", "16", suffix="dot")
    # One node per layer call, the residual add included (a function record, drawn as /add), and the input.
    assert set(diagram.nodes) == {"input", "conv", "branch", "/add", "flatten", "fc"}
    edges = {(tail, head): label.strip() for tail, head, _, _, label in diagram.edges}
    assert set(edges) == {("input", "conv"), ("conv", "branch"), ("conv", "/add"), ("branch", "/add"),
                          ("/add", "flatten"), ("flatten", "fc")}
    assert edges[("flatten", "fc")] == str(8 * 16 * 16) and edges[("input", "conv")] == "3×16×16"


def test_graph_refuses_an_unknown_model_and_a_too_small_input(tmp_path: Path) -> None:
    out = tmp_path / "x.svg"
    result = run("resnet05", str(out))
    assert result.exit_code == 2 and "did you mean" in flat(result.output).lower() and "resnet50" in result.output
    result = run("hopenet", "--input", "128", str(out))
    assert result.exit_code == 2 and "avgpool (AvgPool2d)" in flat(result.output)
    assert "Traceback" not in result.output and not out.exists()


def test_the_diagram_title_names_the_build_options(tmp_path: Path) -> None:
    out = tmp_path / "r50.dot"
    assert run("resnet50", "--stride-in-1x1", str(out)).exit_code == 0
    assert "<B>resnet50 (stride_in_1x1=True)</B>" in out.read_text(encoding="utf-8")


# -- issue 13: any module name is drawn ----------------------------------------------------------

_ODD_NAMES = ['a"b', "c\\d", "e\nf", "<g>{h}|", "ü\x07\x1b[2J", "tail\\", "[x];y", "layer1:2"]


@pytest.fixture
def odd_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``name:make``: a chain of convs whose names hold quotes, backslashes, a newline, HTML and DOT
    syntax and control characters, all legal as nn.ModuleDict keys."""
    name = f"ri_odd_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(
        "from torch import nn\n"
        f"NAMES = {_ODD_NAMES!r}\n"
        "class Net(nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.body = nn.ModuleDict({n: nn.Conv2d(3, 3, 1) for n in NAMES})\n"
        "    def forward(self, x):\n"
        "        for layer in self.body.values():\n"
        "            x = layer(x)\n"
        "        return x\n"
        "def make():\n"
        "    return Net()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


@needs_dot
def test_module_names_dot_cannot_take_raw_are_escaped(odd_names: str, tmp_path: Path) -> None:
    dot_file, svg_file = tmp_path / "odd.dot", tmp_path / "odd.svg"
    for out in (dot_file, svg_file):
        result = run(f"{odd_names}:make", str(out))
        assert result.exit_code == 0, result.output
    source = dot_file.read_text(encoding="utf-8")
    assert "\x1b" not in source and "\x07" not in source
    checked = subprocess.run(["dot", "-Tsvg"], input=source.encode("utf-8"), capture_output=True)
    assert checked.returncode == 0 and not checked.stderr, checked.stderr
    diagram = parse_svg(svg_file)
    # One node per conv plus the input, each labelled with its name, control characters shown escaped.
    assert len(diagram.nodes) == len(_ODD_NAMES) + 1
    labels = " | ".join(text for _, text in diagram.nodes.values())
    for name in _ODD_NAMES:
        assert f"body.{visible(name)}" in labels, (name, labels)


# -- the layout, as Graphviz computed it -------------------------------------------------------
#
# ``dot -Tjson`` gives every node's box (``pos`` ± ``width``/``height``, in inches × 72), every
# cluster's ``bb``, the text operations that draw edge labels, xlabels and cluster labels
# (``_ldraw_``, ``_hldraw_``, ``_tldraw_``: an ``F`` op sets the font size, a ``T`` op writes a line
# at a baseline point with an alignment and a width) and each edge's spline (``_draw_``).
# Every named variant and preset is laid out at depths 1 and 2, in parallel ``dot`` processes
# (cifar_resnet1202 at depth 2 too: its runs of identical blocks are folded, see below).

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in points, y up
LAYOUT_DEPTHS = [(name, depth) for name in resnet_inspect.variants() for depth in (1, 2)]


@dataclass
class Layout:
    """What ``dot -Tjson`` placed: node boxes, cluster boxes, label boxes and edge splines."""

    nodes: dict[str, Box]
    node_class: dict[str, str]
    clusters: dict[str, Box]
    labels: list[tuple[str, Box]]  # (owner, box of one line of text)
    edges: list[tuple[str, str, str, list[tuple[float, float]]]]  # tail, head, class, points
    members: dict[str, set[str]] = field(default_factory=dict)  # cluster -> every node inside it
    size: tuple[float, float] = (0.0, 0.0)  # the drawing's width and height in points
    fonts: list[float] = field(default_factory=list)  # every font size a text operation sets


def _text_boxes(ops: list[dict]) -> list[Box]:
    """The box of each line a ``T`` op writes: its width from Graphviz, its height the font size
    (the baseline sits a fifth of the size above the box's foot)."""
    boxes, size = [], 14.0
    for op in ops:
        if op["op"] == "F":
            size = float(op["size"])
        elif op["op"] == "T" and op["text"].strip():
            x, y = op["pt"]
            w = float(op["width"])
            x0 = {"l": x, "c": x - w / 2, "r": x - w}[op["align"]]
            boxes.append((x0, y - 0.2 * size, x0 + w, y + 0.8 * size))
    return boxes


def _font_sizes(item: dict) -> list[float]:
    return [float(op["size"]) for key, ops in item.items() if key.startswith("_") and key.endswith("draw_")
            for op in ops if op["op"] == "F"]


def parse_layout(data: dict) -> Layout:
    objects = data.get("objects", [])
    name_of = {o["_gvid"]: o["name"] for o in objects if "nodes" not in o and "edges" not in o or "pos" in o}
    nodes, classes, clusters, labels, members = {}, {}, {}, [], {}
    x0, y0, x1, y1 = map(float, data["bb"].split(","))
    fonts = _font_sizes(data) + [f for item in objects + data.get("edges", []) for f in _font_sizes(item)]
    layout_size = (x1 - x0, y1 - y0)
    for o in objects:
        if "bb" in o and o["name"].startswith("cluster"):
            x0, y0, x1, y1 = map(float, o["bb"].split(","))
            clusters[o["name"]] = (x0, y0, x1, y1)
            members[o["name"]] = {name_of[k] for k in o.get("nodes", [])}
            labels += [(o["name"], b) for b in _text_boxes(o.get("_ldraw_", []))]
        elif "pos" in o:
            x, y = map(float, o["pos"].split(","))
            w, h = float(o["width"]) * 36, float(o["height"]) * 36
            nodes[o["name"]] = (x - w, y - h, x + w, y + h)
            classes[o["name"]] = o.get("class", "")
    edges = []
    for k, e in enumerate(data.get("edges", [])):
        tail, head = name_of[e["tail"]], name_of[e["head"]]
        owner = f"edge{k}:{tail}->{head}"
        for key in ("_ldraw_", "_hldraw_", "_tldraw_"):
            labels += [(owner, b) for b in _text_boxes(e.get(key, []))]
        points = [tuple(p) for op in e.get("_draw_", []) if op["op"] in "bB" for p in op["points"]]
        edges.append((tail, head, e.get("class", ""), points))
    return Layout(nodes, classes, clusters, labels, edges, members, layout_size, fonts)


def _overlap(a: Box, b: Box, slack: float = 0.5) -> bool:
    return a[0] < b[2] - slack and b[0] < a[2] - slack and a[1] < b[3] - slack and b[1] < a[3] - slack


def _collisions(boxes: list[tuple[str, Box]]) -> list[tuple[str, str]]:
    """Pairs of boxes of different owners that intersect (a sweep along x)."""
    found, active = [], []
    for owner, box in sorted(boxes, key=lambda ob: ob[1][0]):
        active = [(o, b) for o, b in active if b[2] > box[0]]
        found += [(o, owner) for o, b in active if o != owner and _overlap(b, box)]
        active.append((owner, box))
    return found


def _lay_out(name: str, depth: int) -> tuple[resnet_inspect.Report, Layout]:
    from resnet_inspect.render.graph import build_graph

    report = resnet_inspect.inspect(name)
    source = build_graph(report, depth=depth).source
    done = subprocess.run(["dot", "-Tjson"], input=source.encode("utf-8"), capture_output=True, check=True)
    import json

    return report, parse_layout(json.loads(done.stdout))


@pytest.fixture(scope="module")
def layouts() -> dict[tuple[str, int], Future[tuple[resnet_inspect.Report, Layout]]]:
    """Every (variant, depth) laid out once; ``dot`` runs in threads, so the processes overlap."""
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot program is not installed")
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {key: pool.submit(_lay_out, *key) for key in LAYOUT_DEPTHS}
        return {key: f for key, f in futures.items()}  # each test takes its own result (or error)


def _block_ids(report: resnet_inspect.Report) -> list[list[str]]:
    """Each stage's block names as the diagram names its nodes and clusters."""
    from resnet_inspect.render.graph import _dot_id, node_name, anatomy

    return [[node_name(b.record) if b.record.kind == "module" else _dot_id(b.record.name) for b in s.blocks]
            for s in anatomy(report).stages]


@pytest.mark.parametrize("name, depth", LAYOUT_DEPTHS)
def test_no_label_overlaps_another_label_or_a_node(layouts, name: str, depth: int) -> None:
    _, layout = layouts[name, depth].result()
    boxes = [(n, b) for n, b in layout.nodes.items()] + layout.labels
    collisions = _collisions(boxes)
    assert not collisions, f"{len(collisions)} overlapping boxes, e.g. {collisions[:3]}"


@pytest.mark.parametrize("name, depth", LAYOUT_DEPTHS)
def test_blocks_read_in_index_order(layouts, name: str, depth: int) -> None:
    """Depth 1: rows of blocks read left to right, each row under the one before (like text).
    Depth 2: columns of block clusters read top to bottom, each column right of the one before."""
    report, layout = layouts[name, depth].result()
    trunk = [b for stage in _block_ids(report) for b in stage]
    assert trunk
    if depth == 1:
        boxes = [layout.nodes[b] for b in trunk]
        for a, b in zip(boxes, boxes[1:]):
            same_row = abs((a[1] + a[3]) - (b[1] + b[3])) < 2
            assert (same_row and b[0] >= a[2]) or (not same_row and b[3] <= a[1]), (a, b)
    else:
        # A block folded into a run (cifar_resnet1202) is read where its run's node stands.
        runs = {}
        for node, classes in layout.node_class.items():
            if "run" in classes.split():
                first, last = node.split("..")
                runs.update((b, node) for b in trunk[trunk.index(first):trunk.index(last) + 1])
        drawn = list(dict.fromkeys(runs.get(b, f"cluster_{b}") for b in trunk))
        boxes = [layout.clusters[d] if d.startswith("cluster_") else layout.nodes[d] for d in drawn]
        for a, b in zip(boxes, boxes[1:]):
            same_column = b[0] < a[2] and a[0] < b[2]
            assert (same_column and b[3] <= a[1]) or (not same_column and b[0] >= a[2]), (a, b)


@pytest.mark.parametrize("name, depth", LAYOUT_DEPTHS)
def test_projection_shortcuts_stay_inside_their_block(layouts, name: str, depth: int) -> None:
    """Depth 2: every edge of a shortcut branch (from the block's input to its add) lies inside
    the block's cluster. Depth 1: a block with a projection is marked on the block itself, and no
    shortcut is drawn as an edge between blocks."""
    from resnet_inspect.render.graph import node_name, anatomy

    report, layout = layouts[name, depth].result()
    blocks = [b for s in anatomy(report).stages for b in s.blocks]
    projected = [b for b in blocks if b.shortcut]
    if depth == 1:
        assert not [e for e in layout.edges if "projection" in e[2]]
        marked = {n for n, c in layout.node_class.items() if "projection" in c.split()}
        assert marked == {node_name(b.record) for b in projected}
        return
    checked = 0
    for block in projected:
        x0, y0, x1, y1 = layout.clusters[f"cluster_{node_name(block.record).replace('@', '%40')}"]
        branch = {node_name(r) for r in block.leaves if block.in_shortcut(r)}
        for tail, head, _, points in layout.edges:
            if tail in branch or head in branch:
                checked += 1
                assert all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in points), (block.record.name, tail, head)
    assert checked >= 2 * len(projected)


def _curve(points: list[tuple[float, float]], steps: int = 8) -> list[tuple[float, float]]:
    """Points along a Graphviz spline: cubic Bézier pieces sharing their ends (3n + 1 control points)."""
    out = []
    for k in range(0, len(points) - 3, 3):
        p0, p1, p2, p3 = points[k:k + 4]
        for i in range(steps + 1):
            t = i / steps
            a, b, c, d = (1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t * t * (1 - t), t ** 3
            out.append((a * p0[0] + b * p1[0] + c * p2[0] + d * p3[0], a * p0[1] + b * p1[1] + c * p2[1] + d * p3[1]))
    return out


@pytest.mark.parametrize("name, depth", LAYOUT_DEPTHS)
def test_no_edge_crosses_a_cluster_it_does_not_belong_to(layouts, name: str, depth: int) -> None:
    """An edge runs only through the clusters that hold its tail or its head: the edge from the
    foot of one column to the head of the next does not cut through a third column or a block."""
    _, layout = layouts[name, depth].result()
    crossings = []
    for tail, head, _, points in layout.edges:
        own = {c for c, inside in layout.members.items() if tail in inside or head in inside}
        for cluster, (x0, y0, x1, y1) in layout.clusters.items():
            if cluster in own:
                continue
            if any(x0 + 1 < x < x1 - 1 and y0 + 1 < y < y1 - 1 for x, y in _curve(points)):
                crossings.append((tail, head, cluster))
    assert not crossings, f"{len(crossings)} edges cross a cluster, e.g. {crossings[:3]}"


#: A4 less 10 mm margins on each side, in points (a printer's or viewer's "fit to page").
A4_PRINTABLE = ((210 - 20) / 25.4 * 72, (297 - 20) / 25.4 * 72)
#: The smallest text, in points, resnet152 at depth 2 prints at when fitted to that page.
MIN_PRINTED_POINTS = 5.5


def printed_scale(size: tuple[float, float], page: tuple[float, float] = A4_PRINTABLE) -> float:
    """The scale a drawing of ``size`` points prints at when fitted to the page, portrait or
    landscape, whichever is larger."""
    (w, h), (pw, ph) = size, page
    return max(min(pw / w, ph / h), min(ph / w, pw / h))


def test_printed_scale_is_worked_out_from_the_page() -> None:
    assert printed_scale(A4_PRINTABLE) == 1
    assert printed_scale((A4_PRINTABLE[1] * 2, A4_PRINTABLE[0] * 2)) == 0.5  # landscape, twice the size


def test_resnet152_at_depth_two_prints_legibly_on_a4(layouts) -> None:
    _, layout = layouts["resnet152", 2].result()
    smallest = min(layout.fonts)
    assert smallest >= 8
    assert smallest * printed_scale(layout.size) >= MIN_PRINTED_POINTS, (layout.size, smallest)


def test_fold_spans_keeps_the_first_and_last_of_a_long_run() -> None:
    from resnet_inspect.render.graph import fold_spans

    assert fold_spans(list("abbbbbc")) == [(0, 1), (1, 2), (2, 5), (5, 6), (6, 7)]
    assert fold_spans(list("abbbc")) == [(k, k + 1) for k in range(5)]  # three alike: all drawn
    assert fold_spans(list("aaaa")) == [(0, 1), (1, 3), (3, 4)]
    assert fold_spans([]) == []


def _leaf_facts(report: resnet_inspect.Report, block) -> list[tuple]:
    """A block's leaves as the report has them, names relative to the block."""
    prefix = len(block.record.name)
    return [(r.name[prefix:], r.type, r.output_shapes, r.params, r.macs) for r in block.leaves]


def test_deep_cifar_stages_fold_their_identical_blocks_at_depth_two() -> None:
    """cifar_resnet1202 (He et al. 2016, section 4.2: 200 blocks per stage): each stage is its first
    blocks, one node for the identical run and the last block; every block folded into a run has
    the same ops, shapes, parameters and MACs as the block it is said to repeat."""
    from resnet_inspect.render.graph import anatomy, build_graph

    report = resnet_inspect.inspect("cifar_resnet1202")
    diagram = parse_dot(build_graph(report, depth=2).source)
    runs = sorted(diagram.named("run"))
    stages = anatomy(report).stages
    assert len(runs) == len(stages) == 3
    by_name = {b.record.name: b for s in stages for b in s.blocks}
    folded = 0
    for run in runs:
        first, last = run.split("..")
        stage = next(s for s in stages if any(b.record.name == first for b in s.blocks))
        names = [b.record.name for b in stage.blocks]
        members = names[names.index(first):names.index(last) + 1]
        like = re.search(r"identical to (\S+)", diagram.nodes[run][1]).group(1)
        assert names.index(like) == names.index(first) - 1 and last == names[-2]
        assert f"{len(members)} blocks" in diagram.nodes[run][1]
        assert all(_leaf_facts(report, by_name[m]) == _leaf_facts(report, by_name[like]) for m in members)
        folded += len(members)
    # Every other block is drawn in full, as a cluster of its convs.
    drawn = {n.rsplit("/", 1)[0] for n in diagram.named("add")}
    assert len(drawn) + folded == sum(get_spec("cifar_resnet1202").layers)
