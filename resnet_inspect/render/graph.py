"""Graphviz diagrams of a :class:`~resnet_inspect.analysis.records.Report`.

The diagram is drawn from the engine's records, never from a second walk of the model:

- the stem, one cluster per stage (``res2``..``res5``, labelled with the stride of its output),
  one node per residual block, and the head; each edge carries the output shape of its tail;
- each shortcut inside its block: at depth 1 a block with a projection has a dashed orange border
  naming the shortcut's ops and stride; at depth 2 and more the shortcut is the branch from a fork
  point at the block's input to its add (identity, projection with its stride, pool + projection,
  or option-A padding), all inside the block's cluster;
- with an FPN, the lateral 1x1 convs, the top-down upsample-and-add, the 3x3 output convs, the extra
  levels (P6/P7 or the max pool) and one node per pyramid level with its shape and stride.

``depth`` sets how far into a block the diagram goes: 1 draws one node per block, 2 the convs
(and the residual add) inside each block, 3 or more every leaf (norms and activations too).
At depth 1 the stages are stacked and their blocks read left to right in rows; at depth 2 and
more the blocks read top to bottom in columns, the columns left to right (the stem first, the
pyramid last), sized for a printed page: one line per node, the output shape inside it, and the
edge from the foot of one column to the head of the next climbing the gap between them. A stage
longer than :data:`MAX_DRAWN_BLOCKS` folds each run of identical blocks into one node.

Stages, blocks, shortcut branches, SE gates and pyramid levels come from the report's structure
(``analysis/blocks.py``, read from the data flow), and every edge of the pyramid and the head
from the producers the trace recorded (``LayerRecord.read_from``, ``input_from``).
Node names are the modules' qualified names (``layer2.0``, ``fpn.fpn_inner4``) and the level
names of the report's outputs (``p3``), so a diagram joins with every other view of the report.
"""
from __future__ import annotations

import html
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import graphviz

from ..analysis.blocks import Block as StructBlock
from ..analysis.blocks import Stage as StructStage
from ..analysis.blocks import is_resize as _is_resize
from ..analysis.blocks import producers
from ..analysis.opdesc import WindowOp, find
from ..analysis.records import LayerRecord, Report
from ..analysis.structure import leaves_under, shortcut_leaves
from ..text import visible
from .table import model_title

Shape = tuple[int, ...]

#: Output formats, keyed by the output file's extension.
FORMATS: dict[str, str] = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot", ".gv": "dot"}

#: Blocks per row inside a stage cluster, at every depth (at --depth 2 each block is a cluster of a
#: few convs, drawn side by side): long stages (resnet152's res4 has 36 blocks) wrap into rows, so
#: the diagram stays roughly as wide as it is tall.
BLOCKS_PER_ROW = 6

#: At depth 2 and more the blocks stand in columns (each block a cluster of its convs, stacked top to
#: bottom) and a long stage continues in the next column, like a newspaper's text. The column height
#: is chosen so the page comes out about as tall as A4 (height / width = √2); a block drawn with
#: ``n`` ranks (fork, convs, add) is about ``RANK_PER_COLUMN_WIDTH * n`` column widths tall.
PAGE_RATIO = math.sqrt(2)
RANK_PER_COLUMN_WIDTH = 0.27

#: At depth 2 and more, a stage of more blocks than this (resnet101's res4 has 23, resnet152's 36,
#: cifar_resnet1202's 200 per stage) has each run of identical blocks drawn as its first block, one
#: node that stands for the run's middle, and its last block, as He et al.'s Table 1 writes "× 36".
#: With resnet152's res4 folded, its depth-2 page prints at 5.8 pt on A4 instead of 4.2 pt.
MAX_DRAWN_BLOCKS = 12

_FONT = "Helvetica,Arial,sans-serif"
_FILL = {"stem": "#e8eef7", "res2": "#dbeafe", "res3": "#dcfce7", "res4": "#fef3c7", "res5": "#fde2e4",
         "head": "#ede9fe", "fpn": "#e0f2f1", "level": "#ccfbf1"}
_SHORTCUT_COLOUR = "#c2410c"
_DETAIL = '<FONT POINT-SIZE="9" COLOR="#374151">{}</FONT>'
_NOTE = '<FONT POINT-SIZE="8" COLOR="#6b7280">{}</FONT>'
_SMALL = '<FONT POINT-SIZE="8" COLOR="#374151">{}</FONT>'


def format_for(path: str | Path) -> str | None:
    """The diagram format an output file's extension names, or None for an unknown extension."""
    return FORMATS.get(Path(path).suffix.lower())


def render(graph: graphviz.Digraph, fmt: str) -> bytes:
    """The diagram as bytes: DOT source for ``dot``, otherwise the output of Graphviz's ``dot``.

    Raises :class:`graphviz.ExecutableNotFound` when the ``dot`` program is missing.
    """
    if fmt == "dot":
        return graph.source.encode("utf-8")
    return graph.pipe(format=fmt)


# -- what the diagram shows, read from the records ---------------------------------------------

@dataclass
class Block:
    """A residual block as drawn: its record (the module that holds it, or its add), its leaf
    records, and the indices of its shortcut branch and of its SE gate (from the structure)."""

    record: LayerRecord
    leaves: list[LayerRecord]
    shortcut: frozenset[int] = frozenset()
    gate: frozenset[int] = frozenset()

    def in_shortcut(self, rec: LayerRecord) -> bool:
        return rec.index in self.shortcut


@dataclass
class Stage:
    """A trunk stage (``res3``) with its container record, blocks and cumulative output stride."""

    label: str
    record: LayerRecord
    blocks: list[Block]
    stride: int | float


@dataclass(frozen=True)
class Run:
    """Consecutive blocks identical to the block before them (same ops, kernels, strides, output
    shapes and parameter counts, and the same shortcut), drawn as one node."""

    blocks: tuple[Block, ...]
    like: Block  # the block drawn in full just before the run, which each of them repeats


def signature(block: Block) -> tuple:
    """What makes two blocks identical: each leaf's name inside the block, type, window (kernel,
    stride, dilation, groups), output shape and parameter count, and which leaves are the
    shortcut and the gate."""
    prefix = block.record.name
    return tuple((_short(r.name, prefix), r.type, _window(r), _out(r), r.params, block.in_shortcut(r),
                  r.index in block.gate) for r in block.leaves)


def fold_spans(signatures: list) -> list[tuple[int, int]]:
    """Spans ``[start, stop)`` of a stage's blocks as drawn: one block each, except that a run of
    more than three equal signatures keeps its first and last block and folds the middle into one
    span (``[a, a, a, a, a]`` -> ``(0, 1), (1, 4), (4, 5)``)."""
    spans, start = [], 0
    while start < len(signatures):
        stop = start + 1
        while stop < len(signatures) and signatures[stop] == signatures[start]:
            stop += 1
        if stop - start > 3:
            spans += [(start, start + 1), (start + 1, stop - 1), (stop - 1, stop)]
        else:
            spans += [(k, k + 1) for k in range(start, stop)]
        start = stop
    return spans


def drawn_blocks(stage: Stage, depth: int) -> list[Block | Run]:
    """A stage's blocks as drawn at ``depth``: all of them, or for a stage longer than
    :data:`MAX_DRAWN_BLOCKS` at depth 2+, its runs of identical blocks folded."""
    if depth <= 1 or len(stage.blocks) <= MAX_DRAWN_BLOCKS:
        return list(stage.blocks)
    spans = fold_spans([signature(b) for b in stage.blocks])
    return [stage.blocks[a] if b == a + 1 else Run(tuple(stage.blocks[a:b]), stage.blocks[a - 1])
            for a, b in spans]


@dataclass
class Anatomy:
    """The parts of a report the diagram draws, each in execution order."""

    stem: list[LayerRecord]
    stages: list[Stage]
    head: list[LayerRecord]
    fpn: list[LayerRecord]


def anatomy(report: Report) -> Anatomy:
    """Split a report's records into stem, stages with their blocks, head and FPN, as the
    report's structure (read from the data flow) has them."""
    records = report.layers
    leaves = [r for r in records if r.name and r.is_leaf]
    strides = _stage_strides(report)
    stages = []
    for stage in report.structure.stages if report.structure is not None else ():
        blocks = [_drawn_block(records, b) for b in stage.blocks]
        container = _stage_record(records, stage)
        stages.append(Stage(stage.label, container, blocks, strides.get(stage.label, 1)))
    return Anatomy(
        stem=[r for r in leaves if r.stage == "stem"],
        stages=stages,
        head=[r for r in leaves if r.stage == "head"],
        fpn=[r for r in leaves if r.stage == "fpn"],
    )


def _drawn_block(records: list[LayerRecord], block: StructBlock) -> Block:
    """A structure block with its records: a pass-through inside the shortcut's module (ResNet-D's
    stride-1 nn.Identity) is drawn with the shortcut."""
    shortcut = shortcut_leaves(records, block)
    gate = {*block.gate.records, block.gate.multiply} if block.gate else set()
    return Block(records[block.container if block.container is not None else block.add],
                 [records[i] for i in block.members], frozenset(shortcut), frozenset(gate))


def _stage_record(records: list[LayerRecord], stage: StructStage) -> LayerRecord:
    """The outermost module call that holds this stage's blocks and nothing else (``layer2``),
    or the last block's record when no module does."""
    members = {i for b in stage.blocks for i in b.members}
    last = stage.blocks[-1]
    best = records[last.container if last.container is not None else last.add]
    start = stage.blocks[0].container
    if start is None:
        return best
    best = records[start]
    for i in range(start - 1, -1, -1):
        rec = records[i]
        if rec.depth >= best.depth:
            continue
        if rec.kind != "module" or not set(leaves_under(records, rec)) <= members:
            break
        best = rec
    return best if set(leaves_under(records, best)) >= members else records[
        last.container if last.container is not None else last.add]


def _under(name: str, prefix: str) -> bool:
    return name.startswith(prefix + ".") or name.startswith(prefix + ":")


def _stage_strides(report: Report) -> dict[str, int | float]:
    """Stride of each stage's output relative to the input: the product of the stage strides."""
    total: int | float = 1
    out = {}
    for step in report.downsample:
        total *= step.stride
        out[step.stage] = total
    return out


# -- text ----------------------------------------------------------------------------------------

#: Long class-name endings said once in the legend instead of on every node: maskrcnn-benchmark's
#: ``BottleneckWithFixedBatchNorm`` is drawn as "Bottleneck (FrozenBN)".
_TYPE_SUFFIXES = {"WithFixedBatchNorm": "FrozenBN", "WithFrozenBatchNorm": "FrozenBN"}
_TYPE_NOTES = {"WithFixedBatchNorm": "frozen BN, maskrcnn-benchmark", "WithFrozenBatchNorm": "frozen BN"}


def _type_suffix(name: str) -> str:
    return next((s for s in _TYPE_SUFFIXES if name.endswith(s) and name != s), "")


def _short_type(name: str) -> str:
    """A class name as drawn: ``BottleneckWithFixedBatchNorm`` -> ``Bottleneck (FrozenBN)``."""
    suffix = _type_suffix(name)
    return f"{name[:-len(suffix)]} ({_TYPE_SUFFIXES[suffix]})" if suffix else name


def _dims(shape: Iterable[int] | None) -> str:
    """A shape without its batch dimension: ``256×56×56``, or ``1000`` for a vector."""
    if not shape:
        return "?"
    dims = list(shape)[1:] or list(shape)
    return "×".join(str(d) for d in dims)


def _out(rec: LayerRecord) -> Shape | None:
    return tuple(rec.output_shapes[0]) if rec.output_shapes else None


def _channels(rec: LayerRecord) -> int | None:
    shape = _out(rec)
    return shape[1] if shape and len(shape) >= 2 else None


def _window(rec: LayerRecord) -> str:
    """``3×3 /2`` with dilation and groups when they are not 1."""
    op = find(rec.op, WindowOp)
    if op is None:
        return ""
    text = "×".join(str(k) for k in op.kernel)
    stride = max(op.stride)
    if stride != 1:
        text += f" /{stride}"
    dilation = max(op.dilation)
    if dilation != 1:
        text += f" dil {dilation}"
    if op.groups is not None and op.groups != 1:
        text += f" g{op.groups}"
    return text


def _html(*lines: str) -> str:
    """An HTML-like Graphviz label: the first line bold, the others already formatted."""
    return "<" + "<BR/>".join([f"<B>{_html_text(lines[0])}</B>", *lines[1:]]) + ">"


def _detail(text: str) -> str:
    return _DETAIL.format(_html_text(text))


def _note(text: str) -> str:
    return _NOTE.format(_html_text(text))


# A module's name is the user's string: quotes, backslashes, newlines, ``<``, ``{`` and control
# characters are all legal in nn.ModuleDict keys. Each kind of DOT text gets its own escaping.

def _html_text(text: str) -> str:
    """Text inside an HTML-like label: control characters shown as escapes (XML refuses them), then
    ``<``, ``>``, ``&`` and quotes as entities."""
    return html.escape(visible(text))


def _esc(text: str) -> str:
    """A plain (escString) label, tooltip or attribute: shown escapes, and each backslash doubled,
    since Graphviz reads ``\\n`` or ``\\N`` inside one as a line break or the node's name."""
    return graphviz.nohtml(visible(text).replace("\\", "\\\\"))


_ID_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-/@")


def _dot_id(text: str) -> str:
    """A node or cluster ID: the name itself when it is plain (``layer1.0.conv1``), any other
    character written as ``%XX`` (its UTF-8 bytes), so no ID needs quoting rules or looks like HTML."""
    return "".join(c if c in _ID_SAFE else "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
                   for c in text)


def _short(name: str, parent: str) -> str:
    return name[len(parent) + 1:] if parent and _under(name, parent) else name


def _tooltip(rec: LayerRecord) -> str:
    parts = [f"{rec.name} ({rec.type})", f"output {_dims(_out(rec))}"]
    if rec.params:
        parts.append(f"{rec.params:,} params")
    if rec.macs:
        parts.append(f"{rec.macs:,} MACs")
    if rec.receptive_field:
        parts.append(f"receptive field {rec.receptive_field[0]}×{rec.receptive_field[1]}")
    return " · ".join(parts)


def node_name(rec: LayerRecord) -> str:
    # ':' separates a node from a port in DOT edges, so function records (``layer1.0:add``) use '/'.
    name = _dot_id(rec.name.replace(":", "/"))
    return name if rec.call == 0 else f"{name}@{rec.call}"


# -- the diagram ---------------------------------------------------------------------------------

class _Diagram:
    """Builds the Digraph: remembers each node's output shape so edges can be labelled with it."""

    def __init__(self, report: Report, depth: int) -> None:
        self.report = report
        self.depth = depth
        self.parts = anatomy(report)
        self.producers = producers(report.layers)
        self.node_of: dict[int, str] = {}  # record index -> the node that stands for its output
        self.shapes: dict[str, Shape | None] = {}
        self.row_start: str | None = None  # first node of the latest row of the depth-1 grid
        self.column_tops: list[str] = []  # depth 2+: the fork point at the head of each column
        self.stage_output: dict[str, Stage] = {}  # the node that hands on a stage's output -> the stage
        self._laterals: frozenset[int] = frozenset()  # the pyramid's lateral convs (record indices)
        self.drawn = {id(s): drawn_blocks(s, depth) for s in self.parts.stages}
        self.per_column = blocks_per_column([len(self.drawn[id(s)]) for s in self.parts.stages], self._block_ranks())
        self.graph = graphviz.Digraph(name=_esc(report.model))
        self.graph.attr(rankdir="TB", fontname=_FONT, fontsize="12", labelloc="t", labeljust="l",
                        nodesep="0.22" if depth <= 1 else "0.06", ranksep="0.32" if depth <= 1 else "0.1",
                        newrank="true", label=self._title())
        # Depth 2+ is sized for a printed page: nodes as small as their one line of text (Graphviz's
        # default minimum is 0.75 × 0.5 in), text no smaller than the edges' 8 pt.
        compact = {} if depth <= 1 else {"width": "0.1", "height": "0.1"}
        self.graph.attr("node", shape="box", style="rounded,filled", fontname=_FONT,
                        fontsize="10" if depth <= 1 else "8", margin="0.08,0.04" if depth <= 1 else "0.04,0.015",
                        penwidth="0.8", color="#6b7280", **compact)
        self.graph.attr("edge", fontname=_FONT, fontsize="8", color="#4b5563", fontcolor="#374151",
                        arrowsize="0.6", penwidth="0.8")

    def _block_ranks(self) -> int:
        """Ranks the tallest block takes at this depth: its fork, its main path (the weighted
        layers at depth 2, every leaf at 3+) and its add."""
        def main_path(block: Block) -> int:
            path = [r for r in block.leaves if not block.in_shortcut(r) and r.index not in block.gate]
            return len(path) if self.depth >= 3 else sum(1 for r in path if r.weighted) + 1
        return 1 + max((main_path(b) for s in self.parts.stages for b in s.blocks), default=1)

    def _title(self) -> str:
        report = self.report
        t = report.totals
        lines = [f"<B>{_html_text(model_title(report))}</B>  input {_dims(report.input_size)}"
                 f" (batch {report.input_size[0]}) · {t['params'] / 1e6:.2f} M params"
                 f" · {t['macs'] / 1e9:.2f} GMACs",
                 _detail(f"depth: {report.depth.formula}")]
        if self.parts.stages:
            lines.append(_detail(self._legend()))
        shortened = sorted({r.type for r in report.layers if r.type != _short_type(r.type)})
        if shortened:
            lines.append(_detail("; ".join(f"{_short_type(t)}: {t} ({_TYPE_NOTES[_type_suffix(t)]})"
                                           for t in shortened)))
        return "<" + "<BR ALIGN=\"LEFT\"/>".join(lines) + "<BR ALIGN=\"LEFT\"/>>"

    def _legend(self) -> str:
        """What the marks mean, said once instead of on every node."""
        if self.depth <= 1:
            return "dashed orange border: the block's shortcut is a projection (its ops and stride inside)"
        gates = any(b.gate for s in self.parts.stages for b in s.blocks)
        return ("in a block: name, kernel /stride · output C×H×W (a Conv2d unless a type is named); "
                "dashed orange: projection shortcut; dotted: identity"
                + ("; ×: squeeze-excitation gate (dotted: the channel weights)" if gates else ""))

    # nodes and edges ------------------------------------------------------------------------

    def node(self, where: graphviz.Digraph, node_id: str, label: str, cls: str, fill: str,
             out: Shape | None, tooltip: str, **attrs: str) -> str:
        """Declare a node in ``where`` (a cluster or the graph) and remember its output shape."""
        where.node(node_id, label, fillcolor=fill, tooltip=_esc(tooltip), **{"class": cls}, **attrs)
        self.shapes[node_id] = out
        return node_id

    def edge(self, tail: str | None, head: str, *, label: bool = True, external: bool | None = None,
             **attrs: str) -> None:
        """An edge labelled with the tail's output shape (as an ``xlabel`` that does not move
        the layout when ``external``, always at depth 2+: a ``label`` makes Graphviz double every
        rank of the graph, which made the columns of a deep net twice as tall; the pyramid keeps
        its labels, where xlabels found no free place)."""
        if tail is None:
            return
        if external is None:
            external = self.depth >= 2
        text = _dims(self.shapes.get(tail)) if label else ""
        self.graph.edge(tail, head, **{"xlabel" if external else "label": text, **attrs})

    # parts ------------------------------------------------------------------------------------

    def build(self) -> graphviz.Digraph:
        if not self.parts.stages and not self.parts.fpn:
            return self.layers()
        last = self.stem()
        for stage in self.parts.stages:
            last = self.stage(stage, last)
            if last is not None:
                self.stage_output[last] = stage
                self.node_of.update((r.index, last) for b in stage.blocks for r in b.leaves)
        self.head(last)
        self.fpn()
        self.order_columns()
        return self.graph

    def source(self, rec: LayerRecord, *, resize: bool | None = None) -> str | None:
        """The drawn node that produced this record's input (optionally: only an upsampling one,
        or only another), from the producer links the trace recorded."""
        for index in self.producers.get(rec.index, ()):
            if resize is not None and _is_resize(self.report.layers[index]) != resize:
                continue
            if index in self.node_of:
                return self.node_of[index]
        return None

    def layers(self) -> graphviz.Digraph:
        """A model without residual stages (any ``module:factory``): one node per leaf call, in
        execution order, with an edge from whatever produced each of its inputs."""
        report = self.report
        source = self.node(self.graph, "input", _html("input", _detail(_dims(report.input_size))), "input",
                           _FILL["stem"], tuple(report.input_size), "the model's input")
        latest: dict[str, str] = {}
        for rec in report.layers:
            if not rec.is_leaf or not rec.output_shapes:
                continue
            details = " · ".join(x for x in (rec.type, _window(rec)) if x)
            node = self.node(self.graph, node_name(rec) or "model", _html(rec.name or rec.type, _detail(details)),
                             "layer", _FILL["res2"] if rec.weighted else _FILL["stem"], _out(rec), _tooltip(rec))
            tails = [latest[name] for name in dict.fromkeys(rec.input_from) if name in latest]
            for tail in tails or [source]:
                self.edge(tail, node)
            latest[rec.name] = node
        return self.graph

    def stem(self) -> str | None:
        """Window ops (convs, pools) as nodes; norms and activations folded into the op before."""
        stem = self.parts.stem
        if not stem:
            return None
        stride = _stage_strides(self.report).get("stem")
        with self.graph.subgraph(name="cluster_stem") as cluster:
            cluster.attr(label=f"stem · stride {stride}" if stride else "stem", style="rounded",
                         color="#9ca3af", fontsize="10")
            shown: list[tuple[LayerRecord, list[LayerRecord]]] = []
            for rec in stem:
                if self.depth >= 3 or rec.op or not shown:
                    shown.append((rec, []))
                else:
                    shown[-1][1].append(rec)
            last = None
            for rec, folded in shown:
                shape = _out(folded[-1]) if folded else _out(rec)
                # At depth 2+ the output shape is written in the node, as in the blocks below.
                size = f"{_channels(rec)} ch" if self.depth <= 1 else _dims(shape)
                lines = [rec.name, _detail(" · ".join(x for x in (_short_type(rec.type), _window(rec), size) if x))]
                if folded:
                    lines.append(_note("+ " + ", ".join(_short_type(r.type) for r in folded)))
                node = self.node(cluster, node_name(rec), _html(*lines), "stem", _FILL["stem"], shape,
                                 _tooltip(rec))
                self.edge(last, node, label=self.depth <= 1)
                if last is None and self.depth >= 2:
                    self.column_tops.append(node)  # the stem is the first column, beside the stages
                last = node
        self.row_start = last
        return last

    def stage(self, stage: Stage, last: str | None) -> str | None:
        if self.depth >= 2:
            return self.stage_columns(stage, last)
        with self.graph.subgraph(name=f"cluster_{stage.label}") as cluster:
            cluster.attr(label=_esc(self._stage_label(stage)), style="rounded", color="#9ca3af", fontsize="10")
            for start in range(0, len(stage.blocks), BLOCKS_PER_ROW):
                with cluster.subgraph() as row:
                    row.attr(rank="same")
                    for i, block in enumerate(stage.blocks[start:start + BLOCKS_PER_ROW]):
                        last = self.block_node(row, block, stage, last, first_in_row=i == 0)
        return last

    @staticmethod
    def _stage_label(stage: Stage) -> str:
        out = _out(stage.record)
        size = "×".join(map(str, out[2:])) if out and len(out) == 4 else ""
        stride = f"stride {stage.stride}" if stage.stride else ""
        return " · ".join(x for x in (stage.label, stage.record.name, stride, size) if x)

    def stage_columns(self, stage: Stage, last: str | None) -> str | None:
        """Depth 2+: the stage's blocks in columns, read like a newspaper (see :func:`columns`).

        Inside a column each block's convs stack top to bottom and the next block starts under
        its add. Columns stand side by side, the tops of all columns in one rank; the edge that
        carries the data from the foot of one column to the head of the next climbs the gap
        between them (see :meth:`block_cluster`). Each column is a top-level cluster: Graphviz 2.43
        keeps sibling clusters at the top level in declaration order, but not clusters nested in a
        stage cluster. A block type shared by the whole stage is named once, on its columns."""
        types = {(_short_type(b.record.type), _channels(b.record)) for b in stage.blocks}
        drawn = self.drawn[id(stage)]
        split = columns(len(drawn), self.per_column)
        start = 0
        for k, size in enumerate(split):
            with self.graph.subgraph(name=f"cluster_{stage.label}_{k}") as column:
                column.attr(label=self._column_label(stage, types, k, len(split)), style="rounded",
                            color="#9ca3af", fontsize="9", margin="4", **{"class": "column"})
                for i, block in enumerate(drawn[start:start + size]):
                    wrap = i == 0 and bool(self.column_tops)
                    if isinstance(block, Run):
                        last = fork = self.run_node(column, block, stage, last, wrap=wrap,
                                                    group=f"{stage.label}_{k}")
                        if i == 0:
                            self.column_tops.append(fork)
                        continue
                    last, fork = self.block_cluster(column, block, stage, last, wrap=wrap,
                                                    typed=len(types) != 1, group=f"{stage.label}_{k}")
                    if i == 0 and fork is not None:
                        self.column_tops.append(fork)
            start += size
        return last

    def run_node(self, where: graphviz.Digraph, run: Run, stage: Stage, previous: str | None, *, wrap: bool,
                 group: str) -> str:
        """Depth 2+: a run of identical blocks as one node that names its first and last block,
        how many it stands for and the block each of them repeats."""
        first, last = run.blocks[0].record, run.blocks[-1].record
        node = self.node(where, f"{node_name(first)}..{node_name(last)}",
                         _html(f"{first.name} … {last.name}",
                               _detail(f"{len(run.blocks)} blocks, each identical to {run.like.record.name}")),
                         "run", _FILL.get(stage.label, "#f3f4f6"), _out(last),
                         f"{len(run.blocks)} identical blocks: same ops, kernels, strides, output shapes "
                         f"and parameter counts as {run.like.record.name}", style="rounded,filled,dashed",
                         group=group)
        if wrap and previous is not None:
            self.graph.edge(node, previous, dir="back")  # climbs between the columns (see block_cluster)
        else:
            self.edge(previous, node, label=False)
        return node

    def _column_label(self, stage: Stage, types: set[tuple[str, int | None]], k: int, count: int) -> str:
        """The first column names the stage in two short lines (its label, then the block type the
        whole stage shares); the next ones only continue it (``res4 (2/5)``), so a label is
        never wider than the column of blocks under it."""
        part = f" ({k + 1}/{count})" if count > 1 else ""
        if k:
            return _esc(f"{stage.label}{part}")
        out = _out(stage.record)
        size = "×".join(map(str, out[2:])) if out and len(out) == 4 else ""
        stride = f"stride {stage.stride}" if stage.stride else ""
        first = " · ".join(x for x in (stage.label, stage.record.name, stride) if x) + part
        kind = [f"{t} · {c} ch" for t, c in types] if len(types) == 1 else []
        second = " · ".join(x for x in (size, *kind) if x)
        return _html(first, _detail(second)) if second else _esc(first)

    def order_columns(self) -> None:
        """The tops of the columns in one rank, left to right in reading order."""
        tops = self.column_tops
        if len(tops) < 2:
            return
        with self.graph.subgraph() as row:
            row.attr(rank="same")
            for top in tops:
                row.node(top)
        for left, right in zip(tops, tops[1:]):
            self.graph.edge(left, right, style="invis")

    def align(self, node: str) -> None:
        """Start a new row under the previous row's start (an invisible, heavy edge), so rows
        read left to right like lines of text instead of drifting into a staircase."""
        if self.row_start is not None:
            self.graph.edge(self.row_start, node, style="invis", weight="20")
        self.row_start = node

    def _block_lines(self, block: Block, *, typed: bool = True) -> list[str]:
        rec = block.record
        lines = [rec.name, _detail(f"{_short_type(rec.type)} · {_channels(rec)} ch")] if typed else [rec.name]
        names = {r.name for r in block.leaves}
        notes = []
        for step in self.report.downsample:
            for carrier in step.carriers:
                if carrier.block == rec.name:
                    notes.append(f"stride {carrier.stride} in {_short(carrier.name, rec.name)}")
            dilations = sorted({d.dilation for d in step.dilation if d.name in names})
            if dilations:
                notes.append("dilation " + ", ".join(map(str, dilations)))
        if notes:
            lines.append(_note("; ".join(notes)))
        return lines

    def block_node(self, where: graphviz.Digraph, block: Block, stage: Stage, last: str | None, *,
                   first_in_row: bool) -> str:
        """Depth 1: the block as one node, its projection shortcut as a dashed side edge."""
        lines = self._block_lines(block)
        branch = [r for r in block.leaves if block.in_shortcut(r)]
        marked = {}
        if branch:
            # The projection is part of the block: marked on the block, never an edge from the block before.
            lines.append(f'<FONT POINT-SIZE="8" COLOR="{_SHORTCUT_COLOUR}">'
                         f"{_html_text(self._shortcut_label(branch, block))}</FONT>")
            marked = {"color": _SHORTCUT_COLOUR, "penwidth": "1.6", "style": "rounded,filled,dashed"}
        node = self.node(where, node_name(block.record), _html(*lines), "block projection" if branch else "block",
                         _FILL.get(stage.label, "#f3f4f6"), _out(block.record), _tooltip(block.record), **marked)
        # An edge that wraps to the next row must not pull the row's start to the right.
        wrap = {"weight": "0"} if first_in_row and self.row_start is not None else {}
        if first_in_row:
            self.align(node)
        self.edge(last, node, **wrap)
        return node

    def _shortcut_label(self, branch: list[LayerRecord], block: Block) -> str:
        """``shortcut 1×1 conv, stride 2``: the branch's ops and its total stride."""
        ops = [f"{_window(r).split(' ')[0]} {'conv' if r.weighted else r.type}" if _window(r) else r.type
               for r in branch if r.op is not None or r.weighted]
        return f"shortcut {' + '.join(ops) or branch[0].type}, stride {_branch_stride(branch, block)}"

    @staticmethod
    def _shortcut_id(branch: list[LayerRecord]) -> str:
        weighted = [r for r in branch if r.weighted]
        return (weighted or branch)[0].name

    def block_cluster(self, where: graphviz.Digraph, block: Block, stage: Stage, previous: str | None, *,
                      wrap: bool = False, typed: bool = True, group: str = "") -> tuple[str | None, str | None]:
        """Depth 2+: the block as a cluster of its convs and residual add (every leaf at depth 3+).

        The block's input enters at a fork point inside the cluster, so the main path and the
        shortcut (identity or projection) both start and end inside the block. A squeeze-excitation
        module is drawn as a side branch that gates the main path (×). Returns the block's output
        node and its fork point. ``typed``: the label names the block's type and channels (else
        its column does). The main path's nodes (fork, convs, add) share the column's ``group``, so
        Graphviz stacks them in one straight line down the column. The edge into the fork carries no
        shape: the node before writes it."""
        fill = _FILL.get(stage.label, "#f3f4f6")
        with where.subgraph(name=f"cluster_{_dot_id(block.record.name)}") as cluster:
            lines = self._block_lines(block, typed=typed)
            branch = [r for r in block.leaves if block.in_shortcut(r)]
            if branch:
                lines.append(f'<FONT POINT-SIZE="8" COLOR="{_SHORTCUT_COLOUR}">'
                             f"shortcut stride {_html_text(str(_branch_stride(branch, block)))}</FONT>")
            label = f"<{' · '.join([f'<B>{_html_text(lines[0])}</B>', *lines[1:]])}>"
            # The block's name is written at its input, where the main path and the shortcut part:
            # a cluster label would take a row of its own in every column.
            cluster.attr(label=label if previous is None else "", style="rounded,dashed", color="#9ca3af",
                         fontsize="8", margin="3")
            entry: str | None = None
            if previous is not None:
                entry = self.node(cluster, f"{node_name(block.record)}/in", label, "fork", "white", None,
                                  f"input of {block.record.name}", shape="plaintext", margin="0.02,0",
                                  group=group)
                if wrap:
                    # From the foot of one column to the head of the next: declared head to tail
                    # and drawn backwards, the edge is ranked like the columns (it climbs) and
                    # Graphviz routes it through the gap between them, not across a column.
                    self.graph.edge(entry, previous, dir="back", arrowtail="none")
                else:
                    self.edge(previous, entry, label=False, arrowhead="none")
            top = entry
            main, side = entry, entry
            gate: str | None = None  # the last node of a squeeze-excitation branch
            branch_head = self._branch_head(block)
            for rec in block.leaves:
                is_add = _is_add(rec)
                is_gate = rec.kind == "function" and rec.type == "F.mul" and rec.index in block.gate
                if not (self.depth >= 3 or rec.weighted or is_add or is_gate or find(rec.op, WindowOp) is not None
                        or rec is branch_head):
                    continue
                if is_add or is_gate:
                    node = self.node(cluster, node_name(rec), "+" if is_add else "×", "add" if is_add else "gate",
                                     "white", _out(rec), _tooltip(rec), shape="circle", width="0.2", height="0.2",
                                     fixedsize="true", group=group)
                    self.edge(main, node, label=False)
                    if is_gate:
                        if gate is not None:
                            self.edge(gate, node, label=False, style="dotted", **{"class": "se"})
                        main, gate = node, None
                    elif side is entry:
                        # Dotted says identity (the legend): a word beside every block widened the columns.
                        self.edge(entry, node, label=False, style="dotted", weight="0", **{"class": "identity"})
                        main = side = node
                    else:
                        self.edge(side, node, label=False, style="dashed", color=_SHORTCUT_COLOUR, fontcolor=_SHORTCUT_COLOUR)
                        main = side = node
                    top = top or node
                    continue
                name = _short(rec.name, block.record.name)
                # Inside a block the output shape is written in the node, not on the edges (a
                # block's edges are short, and their labels collided with the identity's).
                kind = "" if rec.type == "Conv2d" else _short_type(rec.type)
                details = " · ".join(x for x in (kind, _window(rec)) if x) + f" · {_dims(_out(rec))}"
                # One line per node on the main path, so a column of blocks stays short enough for a
                # printed page; two beside it (the shortcut, the SE branch), so the column stays narrow.
                aside = block.in_shortcut(rec) or rec.index in block.gate
                label = f"<<B>{_html_text(name)}</B>{'<BR/>' if aside else ' '}{_SMALL.format(_html_text(details))}>"
                node = self.node(cluster, node_name(rec), label, "layer", fill, _out(rec), _tooltip(rec),
                                 **({} if aside else {"group": group}))
                top = top or node
                if block.in_shortcut(rec):
                    if side is entry:
                        branch = [r for r in block.leaves if block.in_shortcut(r)]
                        # Its stride is written in the block's label: an xlabel here found no free
                        # place beside the block's name.
                        self.graph.edge(entry, node, tooltip=_esc(self._shortcut_label(branch, block)),
                                        style="dashed", color=_SHORTCUT_COLOUR, fontcolor=_SHORTCUT_COLOUR,
                                        **{"class": "projection", "id": _esc(self._shortcut_id(branch))})
                    else:
                        self.edge(side, node, label=False, style="dashed", color=_SHORTCUT_COLOUR, fontcolor=_SHORTCUT_COLOUR)
                    side = node
                elif rec.index in block.gate:  # squeeze-excitation: a side branch off the main path, not on it
                    if gate is None:
                        self.edge(main, node, label=False, **{"class": "se"})
                    else:
                        self.edge(gate, node, label=False)
                    gate = node
                else:
                    self.edge(main, node, label=False)
                    main = node
        return main, top

    @staticmethod
    def _branch_head(block: Block) -> LayerRecord | None:
        """A shortcut branch without window ops or weights (CIFAR option A) still gets one node."""
        branch = [r for r in block.leaves if block.in_shortcut(r)]
        if any(r.weighted or find(r.op, WindowOp) is not None for r in branch):
            return None
        return branch[0] if branch else None

    def head(self, last: str | None) -> None:
        """Pooling and classifier(s); parallel heads (Hopenet's yaw/pitch/roll) share their input."""
        if not self.parts.head:
            return
        with self.graph.subgraph(name="cluster_head") as cluster:
            # At depth 2+ the head sits beside the middle of the other columns, where a label row
            # would open a gap across all of them; its nodes name themselves.
            cluster.attr(label="head" if self.depth <= 1 else "", style="rounded", color="#9ca3af", fontsize="10",
                         **({} if self.depth <= 1 else {"margin": "4"}))
            for i, rec in enumerate(self.parts.head):
                details = " · ".join(x for x in (rec.type, _window(rec), f"{_channels(rec)} out") if x)
                # At depth 2+ one line, as the convs beside it: a taller node would widen its rank
                # in every column.
                label = (_html(rec.name, _detail(details)) if self.depth <= 1 else
                         f"<<B>{_html_text(rec.name)}</B> {_SMALL.format(_html_text(details))}>")
                node = self.node(cluster, node_name(rec), label, "head", _FILL["head"], _out(rec), _tooltip(rec))
                wrap = {}
                if i == 0 and self.depth <= 1 and self.row_start is not None:
                    wrap = {"weight": "0"}
                    self.align(node)
                self.edge(self.source(rec) or last, node, label=self.depth <= 1, **wrap)
                self.node_of[rec.index] = node

    def fpn(self) -> None:
        """Laterals, top-down upsample + add, output convs, extra levels and one node per level.

        Each pyramid level is drawn as a row beside the trunk stage it reads (lateral → + → 3×3 →
        P level), so the pyramid lines up with the stages; the top-down upsamples climb from the
        row below. Extra levels (P6, P7) hang below the coarsest row.
        """
        records = self.parts.fpn
        if not records:
            return
        pyramid = self.report.structure.pyramid if self.report.structure is not None else None
        levels_ = pyramid.levels if pyramid is not None else ()
        lateral = {lv.lateral for lv in levels_ if lv.lateral is not None}
        self._laterals = frozenset(lateral)
        # Depth 1: shapes on the edges (labels: xlabels found no free place beside the rows). Depth
        # 2+: in the nodes, as in the blocks, and the pyramid reads top down as a column of its own.
        self._fpn_label: dict[str, bool] = {"external": False} if self.depth <= 1 else {"label": False}
        output = {lv.output for lv in levels_ if not lv.extra}
        extra = {i for lv in levels_ if lv.extra for i in lv.records}
        rows: dict[str, list[str]] = {}  # node -> the row (rank) it is drawn in, shared by reference
        upsamples: dict[str, tuple[str | None, LayerRecord]] = {}  # depth 1: upsample -> (its input, record)
        with self.graph.subgraph(name="cluster_fpn") as cluster:
            levels = [k.upper() for k, v in self.report.output_info.items() if not v.head]
            span = f" · {levels[0]}–{levels[-1]}" if levels else ""
            cluster.attr(label=f"FPN{span}", style="rounded", color="#9ca3af", fontsize="10")
            for rec in records:
                node_id = node_name(rec)
                self.node_of[rec.index] = node_id
                role = _fpn_role(rec, lateral, output, extra)
                if role == "upsample" and self.depth <= 1:
                    pass  # drawn as an edge, below
                elif role == "add":
                    self.node(cluster, node_id, "+", "add", "white", _out(rec), _tooltip(rec), shape="circle",
                              width="0.3", height="0.3", fixedsize="true")
                else:
                    detail = _fpn_detail(rec, role, shape=self.depth >= 2)
                    lines = [_short(rec.name, "fpn"), _detail(detail)]
                    far = self._far_stage(rec) if role == "lateral" else None
                    if far is not None:
                        lines.append(_note(f"from {far.label} · {far.record.name}"))
                    self.node(cluster, node_id, _html(*lines), f"fpn {role}", _FILL["fpn"], _out(rec), _tooltip(rec))
                if role == "lateral" and self._far_stage(rec) is not None:
                    rows[node_id] = [node_id]  # its input is named on it: no edge across the columns
                    if not any(self._far_stage(r) for r in records[:records.index(rec)]):
                        self.column_tops.append(node_id)  # the pyramid is the last column
                elif role == "lateral":
                    # The lateral shares its stage's row. Graphviz 2.43 draws a same-rank edge from
                    # a cluster row into another cluster twice, but not when it is declared head to
                    # tail and drawn backwards (dir=back), which looks the same.
                    # At depth 2+ the stages stand in columns: the pyramid's rows lie below them,
                    # coarsest first, and each lateral comes down from the foot of its stage.
                    source = self.source(rec)
                    if source is not None and self.depth >= 2:
                        self.edge(source, node_id, label=False, **{"class": "lateral"})
                        rows[node_id] = [node_id]
                    elif source is not None:
                        # No shape label: Graphviz put it on the block node; the stage's label and
                        # the block's channels give it.
                        self.graph.edge(node_id, source, dir="back",
                                        **{"class": "lateral"})
                        _join(rows, source, node_id)
                elif role == "upsample":
                    source = self.source(rec)
                    if self.depth <= 1:
                        # At block level the upsample is the edge that climbs to the finer row's add.
                        upsamples[node_id] = (source, rec)
                    else:
                        self.edge(source, node_id, **self._fpn_label)
                        _join(rows, source, node_id)
                elif role == "add":
                    side = self.source(rec, resize=False)
                    self.edge(side, node_id, **self._fpn_label)
                    up = self.source(rec, resize=True)
                    if up in upsamples:
                        source, up_rec = upsamples[up]
                        self.graph.edge(source, node_id, label=f"{_fpn_detail(up_rec, 'upsample')} · "
                                        f"{_dims(_out(up_rec))}", constraint="false",
                                        **{"class": "upsample", "id": _esc(up_rec.name)})
                    else:
                        self.edge(up, node_id, **self._fpn_label, **({"constraint": "false"} if self.depth <= 1 else {}))
                    _join(rows, side, node_id)
                elif role == "output":
                    source = self.source(rec)
                    self.edge(source, node_id, **self._fpn_label)
                    _join(rows, source, node_id)
                else:  # extra levels read P5 (or C5) and each other
                    self.edge(self.source(rec), node_id, **self._fpn_label)
                    rows[node_id] = [node_id]
            self.levels(cluster, rows)
        if self.depth <= 1:
            # At depth 2+ the pyramid has no rows: Graphviz 2.43 fails to rank them beside the
            # columns ("trouble in init_rank"), and its column reads top down without them.
            self.rows(self.graph, rows)

    @staticmethod
    def rows(where: graphviz.Digraph, rows: dict[str, list[str]]) -> None:
        """Each row (of two nodes or more) drawn in one rank."""
        seen: set[int] = set()
        for row in rows.values():
            if id(row) in seen or len(row) < 2:
                continue
            seen.add(id(row))
            with where.subgraph() as same:
                same.attr(rank="same")
                for node in row:
                    same.node(node)

    def _far_stage(self, rec: LayerRecord) -> Stage | None:
        """At depth 2+, the stage a lateral reads: the pyramid is drawn as one more column, right of
        the stages' columns, and an edge from a column's foot to it would cross the columns between,
        so the lateral names the stage it reads instead."""
        source = self.source(rec)
        stage = self.stage_output.get(source) if source is not None else None
        return stage if self.depth >= 2 and rec.index in self._laterals else None

    def levels(self, cluster: graphviz.Digraph, rows: dict[str, list[str]]) -> None:
        """One node per pyramid level (the report's outputs), beside the conv or pool that makes it."""
        info = self.report.output_info
        pyramid = self.report.structure.pyramid if self.report.structure is not None else None
        made_by = {lv.name: lv.output for lv in (pyramid.levels if pyramid is not None else ())}
        levels = [name for name, entry in info.items() if not entry.head]
        for level in levels:
            entry = info[level]
            stride = list(entry.stride) if isinstance(entry.stride, tuple) else entry.stride
            rf = entry.receptive_field
            lines = [level.upper(), _detail(_dims(entry.shape))]
            lines.append(_detail(" · ".join(x for x in (f"stride {stride}" if stride is not None else "",
                                                         f"RF {rf[0]}" if rf else "") if x)))
            node = self.node(cluster, level, _html(*lines), "level", _FILL["level"], tuple(entry.shape),
                             f"{level}: {_dims(entry.shape)}, stride {stride}", style="filled", penwidth="1.2")
            source = self.node_of.get(made_by[level]) if level in made_by else None
            self.edge(source, node, **self._fpn_label)
            _join(rows, source, node)


def columns(blocks: int, most: int) -> list[int]:
    """How many blocks each column of a stage holds: at most ``most``, split evenly
    (36 blocks at most 8 → 8, 7, 7, 7, 7)."""
    count = max(1, -(-blocks // most))
    return [blocks // count + (1 if k < blocks % count else 0) for k in range(count)]


def blocks_per_column(stages: list[int], ranks: int) -> int:
    """The column height (in blocks) that brings the depth-2 page closest to A4's height / width,
    for stages of so many blocks, each block ``ranks`` ranks tall."""
    if not stages:
        return 1
    best, best_error = 1, math.inf
    for most in range(1, max(stages) + 1):
        height = max(max(columns(n, most)) for n in stages) * ranks * RANK_PER_COLUMN_WIDTH
        width = sum(len(columns(n, most)) for n in stages)
        error = abs(math.log(height / width / PAGE_RATIO))
        if error <= best_error:
            best, best_error = most, error
    return best


def _join(rows: dict[str, list[str]], anchor: str | None, node: str | None) -> None:
    """Put ``node`` in the same row (rank) as ``anchor``."""
    if anchor is None or node is None:
        return
    row = rows.setdefault(anchor, [anchor])
    if node not in row:
        row.append(node)
    rows[node] = row


def _fpn_role(rec: LayerRecord, lateral: set[int], output: set[int], extra: set[int]) -> str:
    """lateral, output, extra, upsample, add or other: read from the report's pyramid."""
    if rec.index in lateral:
        return "lateral"
    if rec.index in output:
        return "output"
    if rec.index in extra:
        return "extra"
    if _is_resize(rec):
        return "upsample"
    return "add" if _is_add(rec) else "other"


def _is_add(rec: LayerRecord) -> bool:
    """A residual or top-down sum, recorded as a function call (``layer1.0:add``)."""
    return rec.kind == "function" and rec.type == "F.add"


def _branch_stride(branch: list[LayerRecord], block: Block) -> int | float:
    """The shortcut's stride: the product of its ops' strides, or (CIFAR option A, a strided
    slice without a window op) the ratio of the block's input and output heights."""
    strides = [max(w.stride) for r in branch if (w := find(r.op, WindowOp)) is not None]
    if strides:
        return math.prod(strides)
    rec = block.record
    if rec.input_shapes and rec.output_shapes and len(rec.input_shapes[0]) == 4:
        ratio = rec.input_shapes[0][2] / rec.output_shapes[0][2]
        return round(ratio) if abs(ratio - round(ratio)) < 0.5 else ratio
    return 1


def _fpn_detail(rec: LayerRecord, role: str, *, shape: bool = False) -> str:
    """``lateral · 1×1 · 256 ch``; with ``shape`` the output shape instead of the channels."""
    if role == "upsample" and rec.input_shapes and rec.output_shapes:
        factor = rec.output_shapes[0][-1] / rec.input_shapes[0][-1]
        scale = f"×{factor:g}" if factor == int(factor) else f"to {_dims(rec.output_shapes[0])}"
        return f"upsample {scale}"
    words = {"lateral": "lateral", "output": "output"}.get(role, rec.type)
    parts = [words, _window(rec)]
    if shape:
        parts.append(_dims(_out(rec)))
    elif rec.weighted:
        parts.append(f"{_channels(rec)} ch")
    return " · ".join(p for p in parts if p)


def build_graph(report: Report, *, depth: int = 1) -> graphviz.Digraph:
    """The diagram of a report: blocks at ``depth`` 1, convs at 2, every leaf at 3 and more."""
    if depth < 1:
        raise ValueError(f"depth must be 1 or more, not {depth}")
    return _Diagram(report, depth).build()


def counts(report: Report) -> dict[str, int]:
    """How many stage blocks, projection shortcuts and pyramid levels a report's diagram draws."""
    parts = anatomy(report)
    return {
        "layers": sum(1 for r in report.layers if r.is_leaf and r.output_shapes),
        "blocks": sum(len(s.blocks) for s in parts.stages),
        "shortcuts": sum(1 for s in parts.stages for b in s.blocks if b.shortcut),
        "levels": sum(1 for v in report.output_info.values() if not v.head) if parts.fpn else 0,
    }
