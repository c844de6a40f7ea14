"""``explain``: one layer's shape arithmetic, MACs, receptive field and downsampling, with numbers.

Every number comes from the layer's record (its op, shapes, field and jump) or from the report's
structure tables; this module only lays the arithmetic out. :func:`mac_terms` returns the factors
whose product is the layer's MAC count, so a test can check that the shown product is the count.
"""
from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.text import Text

from ..analysis.blocks import Block
from ..analysis.opdesc import AdaptivePoolOp, AttentionOp, LinearOp, MeanOp, PadOp, ResizeOp, WindowOp, find, main_op
from ..analysis.records import Carrier, DownsampleStep, LayerRecord, Projection, Report
from ..analysis.structure import block_label, leaves_under, shortcut_container
from ..errors import InputError
from ..analysis.shapes import Window, window_output
from ..text import clip, visible, visible_lines
from .table import count_text, model_title, number_text, pair_text, print_section, shape_text, shapes_text

@dataclass(frozen=True)
class MacTerms:
    """MACs = output elements × the factors (each a label and a value)."""

    out_elements: int
    factors: tuple[tuple[str, int], ...]
    elements: str = "output elements"  # a transposed conv scatters from each *input* element

    @property
    def product(self) -> int:
        """The MAC count these factors give."""
        return self.out_elements * math.prod(value for _, value in self.factors)


def find_record(report: Report, name: str) -> LayerRecord:
    """The record called ``name``; an unknown name is bad input, with close names suggested.

    A module called more than once (torchvision's shared ``relu``) is picked by the suffix the
    summary table prints: ``relu (call 2)``; the bare name is its first call.
    """
    call = 0
    repeat = re.fullmatch(r"(.*?)\s*\(call (\d+)\)", name.strip())
    if repeat:
        digits = repeat.group(2)  # thousands of digits would not even convert: any call past 10^9 is absent
        name, call = repeat.group(1), int(digits) - 1 if len(digits) <= 9 else 10**9
    calls = [rec for rec in report.layers if rec.name == name]
    if calls:
        if 0 <= call < len(calls):
            return calls[call]
        raise InputError(f"{report.model} calls {name or 'the root module'} {len(calls)} time"
                         f"{'s' if len(calls) > 1 else ''}: ask for (call 1) to (call {len(calls)}).")
    names = list(dict.fromkeys(rec.name for rec in report.layers if rec.name))
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    close += [n for n in names if n.endswith("." + name) and n not in close][:3]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    examples = [rec.name for rec in report.layers if rec.weighted][:2]
    example = f", such as {' or '.join(examples)}" if examples and not close else ""
    raise InputError(f"{report.model} has no layer '{clip(name)}'.{hint} Layer names are the qualified module names that "
                     f"`resnet-inspect tree` prints{example}.")


def mac_terms(rec: LayerRecord) -> MacTerms | None:
    """The factors of a conv's or a linear layer's MACs, from its op and output shape.

    A conv output element reads C_in/groups input channels through a kH×kW window: one
    multiply-accumulate each. A linear output element reads every input feature once.
    """
    op = main_op(rec.op)
    if op is None or not rec.output_shapes or not rec.weighted:
        return None
    out_elements = math.prod(rec.output_shapes[0])
    if isinstance(op, WindowOp) and op.is_conv:
        return _conv_terms(rec, op, out_elements)
    if isinstance(op, LinearOp):
        return MacTerms(out_elements, (("in_features", op.in_features),))
    return None


def _conv_terms(rec: LayerRecord, op: WindowOp, out_elements: int) -> MacTerms:
    """A conv's factors: per output element (per input element when transposed), channels × window."""
    groups, kernel = op.groups or 1, op.kernel
    window = tuple(zip({1: ("kL",), 2: ("kH", "kW"), 3: ("kD", "kH", "kW")}[len(kernel)], kernel))
    if op.transposed and rec.input_shapes:
        out_channels = op.out_channels or 0
        label = f"C_out/groups = {out_channels}/{groups}" if groups > 1 else "C_out"
        return MacTerms(math.prod(rec.input_shapes[0]), ((label, out_channels // groups), *window),
                        "input elements")
    in_channels = op.in_channels or 0
    label = f"C_in/groups = {in_channels}/{groups}" if groups > 1 else "C_in"
    return MacTerms(out_elements, ((label, in_channels // groups), *window))


def block_of(report: Report, rec: LayerRecord) -> Block | None:
    """The residual block a record belongs to (from the report's structure), if any: a leaf's
    own block, or the block holding every leaf of a module."""
    structure = report.structure
    if structure is None:
        return None
    leaves = [rec.index] if rec.is_leaf else leaves_under(report.layers, rec)
    hits = [structure.block_of(i) for i in leaves]
    if not hits or any(hit is None for hit in hits):
        return None
    blocks = {id(hit[1]): hit[1] for hit in hits if hit is not None}
    if len(blocks) != 1:
        return None
    block = next(iter(blocks.values()))
    # A module around the block (a stage of one block) is not part of it.
    inside = rec.is_leaf or (block.container is not None and rec.index >= block.container)
    return block if inside else None


def _projection_of(report: Report, rec: LayerRecord, block: Block | None) -> Projection | None:
    """The downsampling table's entry for the shortcut this record is (part of), if any."""
    if block is None or not block.shortcut.records:
        return None
    holder = shortcut_container(report.layers, block)
    entry = next((p for step in report.downsample for p in step.projection if p.shortcut == holder.name), None)
    inside = rec.index in leaves_under(report.layers, holder) or (
        not rec.is_leaf and holder.index < rec.index and set(leaves_under(report.layers, rec))
        <= set(leaves_under(report.layers, holder)))
    if entry is not None and (rec.name == entry.name or inside):
        return entry
    return None


def _subtree(report: Report, rec: LayerRecord) -> list[LayerRecord]:
    """Every record nested in a module: its own, its children's and its direct function calls."""
    from .nesting import name_index

    prefix = rec.name
    if not prefix:
        return list(report.layers)
    index = name_index(report.layers)
    own = [i for i in index.named(prefix) if report.layers[i].call == rec.call]
    return [report.layers[i] for i in sorted({*own, *index.nested(prefix)})]


def _mark(ok: bool | None) -> str:
    return "" if ok is None else " ✓ the traced forward agrees" if ok else " ✗ the traced forward DISAGREES"


# -- the four sections ------------------------------------------------------------------------

def shape_lines(report: Report, rec: LayerRecord) -> list[str]:
    """Per-dimension arithmetic of the output shape, with the numbers filled in."""
    out = shapes_text(rec.output_shapes)
    inp = ", ".join(shape_text(s) for s in rec.input_shapes) or "—"
    lines = [f"input {inp} → output {out}"]
    op = main_op(rec.op)
    handler = _SHAPE_LINES.get(type(op))
    explained = handler(rec, op) if handler is not None else None
    if explained is not None:
        lines.extend(explained)
    elif rec.is_leaf:
        lines.append("element-wise: the output has the input's shape")
    else:
        lines.extend(_changing_children(report, rec))
    return lines


def _analytic(rec: LayerRecord) -> str:
    return f"analytic {shape_text(rec.analytic_shape)}{_mark(rec.shape_ok)}"


def _window_shape_lines(rec: LayerRecord, op: WindowOp) -> list[str]:
    """A 2-D conv or pool: O = ⌊(I + 2P − D·(K−1) − 1)/S⌋ + 1 per dimension, and the channels."""
    if len(op.kernel) != 2 or op.transposed:
        return _other_window_lines(rec, op)
    k, s, p, d = op.kernel[0], op.stride[0], op.padding[0], op.dilation[0]
    padded = find(rec.op, PadOp) is not None  # an explicit F.pad before or after the window
    rounding = "⌈ ⌉ (ceil_mode=True: a partial window at the edge still gives an output)" if op.ceil_mode else "⌊ ⌋"
    lines = ["O = ⌊(I − K + 2P)/S⌋ + 1, or with dilation D: O = ⌊(I + 2P − D·(K−1) − 1)/S⌋ + 1 "
             f"(Dumoulin & Visin 2016); rounding {rounding}",
             f"K = {pair_text(op.kernel)}, S = {pair_text(op.stride)}, P = {pair_text(op.padding)}, "
             f"D = {pair_text(op.dilation)}", *rec.working]
    if op.is_conv:
        groups = op.groups or 1
        in_groups = f" (in {groups} groups of {(op.in_channels or 0) // groups})" if groups > 1 else ""
        lines.append(f"C: the conv has {op.out_channels} filters, so {op.in_channels} → "
                     f"{op.out_channels} channels{in_groups}")
    elif rec.output_shapes and not padded:
        lines.append(f"C: pooling works per channel, so C stays {rec.output_shapes[0][-3]}")
    keeps = rec.input_shapes and rec.output_shapes and rec.input_shapes[0][-2:] == rec.output_shapes[0][-2:]
    if s == 1 and keeps and padded:
        lines.append("With S = 1, the explicit padding before the window (F.pad, 'same' padding as timm's "
                     "AvgPool2dSame does it) keeps the size.")
    elif s == 1 and keeps and 2 * p == d * (k - 1):
        lines.append(f"With S = 1, P = {p} = (D·(K−1))/2 = ({d}·({k}−1))/2 keeps the size (Dumoulin & Visin 2016).")
    lines.append(_analytic(rec))
    return lines


def _linear_shape_lines(rec: LayerRecord, op: LinearOp) -> list[str]:
    return [f"features: {op.in_features} → {op.out_features} (a Linear layer keeps the batch dimension)"]


def _adaptive_shape_lines(rec: LayerRecord, op: AdaptivePoolOp) -> list[str]:
    return [f"H×W: an adaptive pool's output is its output_size, {shape_text(op.output_size)}, "
            "whatever the input size"]


def _pad_shape_lines(rec: LayerRecord, op: PadOp) -> list[str]:
    return ["A parameter-free shortcut (option A): the new channels are zeros, padded onto the input",
            *rec.working, _analytic(rec)]


def _mean_shape_lines(rec: LayerRecord, op: MeanOp) -> list[str]:
    return [f"A mean over dimensions {', '.join(map(str, op.dims))}"
            + (" (H and W: a global average pool, the squeeze of squeeze-and-excitation)"
               if op.is_global_spatial else ""),
            _analytic(rec)]


def _resize_shape_lines(rec: LayerRecord, op: ResizeOp) -> list[str] | None:
    if not (rec.input_shapes and rec.output_shapes):
        return None
    (ih, iw), (oh, ow) = rec.input_shapes[0][-2:], rec.output_shapes[0][-2:]
    how = f"scale_factor {op.scale_factor}" if op.scale_factor is not None else f"size {op.size}"
    return [f"H: {ih} → {oh}, W: {iw} → {ow} ({op.mode} upsampling by {how})", _analytic(rec)]


# The shape section of each operator family (each handler takes its own op type); None from a
# handler falls back to the generic text.
def _attention_shape_lines(rec: LayerRecord, op: AttentionOp) -> list[str]:
    """Each of L queries attends to S keys in every head: the output keeps the queries' positions."""
    lines = [f"attention: {op.heads} head{'s' if op.heads > 1 else ''}, {op.queries} queries × {op.keys} keys, "
             f"{op.head_dim} features per head for Q·Kᵀ and {op.value_dim} for A·V"
             + (" (causal mask: counted in full)" if op.causal else "")]
    if op.projections:
        lines.append("with its in-projection (Q, K, V) and out-projection: the output has the query's shape")
    return lines


_SHAPE_LINES: dict[type, Callable[[LayerRecord, Any], list[str] | None]] = {
    AttentionOp: _attention_shape_lines, WindowOp: _window_shape_lines, LinearOp: _linear_shape_lines, AdaptivePoolOp: _adaptive_shape_lines,
    PadOp: _pad_shape_lines, MeanOp: _mean_shape_lines, ResizeOp: _resize_shape_lines,
}


def _changing_children(report: Report, rec: LayerRecord) -> list[str]:
    """A module's windows that change the shape, each with its working."""
    changes = [r for r in _subtree(report, rec)[1:] if r.is_leaf and find(r.op, WindowOp) is not None
               and r.input_shapes and r.output_shapes and r.input_shapes[0][-3:] != r.output_shapes[0][-3:]]
    return [f"{child.name}: {shape_text(child.input_shapes[0][-3:])} → "
            f"{shape_text(child.output_shapes[0][-3:])}  ({'; '.join(child.working)})" for child in changes]


def _other_window_lines(rec: LayerRecord, op: WindowOp) -> list[str]:
    """A 1-D or 3-D conv, or a transposed conv: the formula, its numbers per dimension, the channels."""
    def dims(values: tuple[int, ...]) -> str:
        return str(values[0]) if len(set(values)) == 1 else "×".join(map(str, values))

    if op.transposed:
        lines = ["O = (I − 1)·S − 2P + D·(K − 1) + output_padding + 1 (a transposed conv spreads each input "
                 "position over a window, so it upsamples by S)"]
        extra = f", output_padding = {dims(op.output_padding or (0,))}"
    else:
        lines = ["O = ⌊(I + 2P − D·(K−1) − 1)/S⌋ + 1 along every spatial dimension (Dumoulin & Visin 2016)"]
        extra = ""
    lines.append(f"K = {dims(op.kernel)}, S = {dims(op.stride)}, P = {dims(op.padding)}, "
                 f"D = {dims(op.dilation)}{extra}")
    lines.extend(rec.working)
    groups = f" (in {op.groups} groups)" if (op.groups or 1) > 1 else ""
    lines.append(f"C: {op.in_channels} → {op.out_channels} channels{groups}")
    lines.append(_analytic(rec))
    return lines


def mac_lines(report: Report, rec: LayerRecord) -> list[str]:
    """The MACs formula with numbers, and the other element operations."""
    lines = []
    terms = mac_terms(rec)
    out_shape = rec.output_shapes[0] if rec.output_shapes else ()
    macs = terms.product if terms is not None else rec.macs
    if terms is not None:
        names = " × ".join(label.split(" = ")[0] for label, _ in terms.factors)
        lines.append(f"MACs = {terms.elements} × {names}")
        pieces = " × ".join(str(value) for _, value in terms.factors)
        counted = rec.input_shapes[0] if terms.elements == "input elements" else out_shape
        lines.append(f"     = ({shape_text(counted)} = {count_text(terms.out_elements)}) × {pieces}")
        lines.append(f"     = {count_text(terms.product)}")
        if terms.product != rec.macs:
            lines.append(f"The {report.counter} counter reports {count_text(rec.macs)} for this layer.")
    elif rec.is_leaf:
        lines.append(f"MACs = {count_text(rec.macs)}: only convolutions and linear layers multiply-accumulate in "
                     "this package's convention; everything else is counted as other ops.")
    else:
        parts = [r for r in _subtree(report, rec) if r.macs]
        macs = total = sum(r.macs for r in parts)
        shown = " + ".join(f"{count_text(r.macs)} ({r.name})" for r in parts[:8])
        more = f" + {len(parts) - 8} more" if len(parts) > 8 else ""
        lines.append(f"MACs = {shown}{more} = {count_text(total)}" if parts else "MACs = 0")
    if rec.other_ops:
        lines.append(f"Other ops: {count_text(rec.other_ops)}{_other_formula(rec)}")
    lines.append(f"FLOPs = 2 × MACs = {count_text(2 * macs)}")
    return lines


def _other_formula(rec: LayerRecord) -> str:
    """Explain an other-ops count when it is a simple multiple of the elements (else say nothing)."""
    out_n = math.prod(rec.output_shapes[0]) if rec.output_shapes else 0
    in_n = math.prod(rec.input_shapes[0]) if rec.input_shapes else 0
    window = find(rec.op, WindowOp)
    candidates = []
    if window is not None and not window.is_conv:
        kh, kw = window.kernel
        candidates.append((out_n * kh * kw,
                           f"{count_text(out_n)} outputs × {kh}·{kw} window elements (one compare or add each)"))
    if find(rec.op, AdaptivePoolOp) is not None:
        candidates.append((in_n, f"one add per input element ({count_text(in_n)})"))
    candidates.append((2 * out_n, f"2 × {count_text(out_n)} elements (a scale and a shift each)"))
    bias = " — the bias add" if rec.weighted else ""
    candidates.append((out_n, f"one per output element ({count_text(out_n)}){bias}"))
    for value, text in candidates:
        if value == rec.other_ops:
            return f" = {text}"
    return ""


def _producer(report: Report, rec: LayerRecord, rf: float, jump: float) -> LayerRecord | None:
    """The latest earlier record whose output looks like this layer's input (shape, field and jump)."""
    if not rec.input_shapes:
        return None
    for prev in reversed(report.layers[:rec.index]):
        if prev.name and rec.name.startswith((prev.name + ".", prev.name + ":")):
            continue  # a module that encloses this layer has not produced its output yet
        if (prev.output_shapes and prev.output_shapes[0] == rec.input_shapes[0] and prev.receptive_field
                and prev.receptive_field[0] == rf and prev.jump and prev.jump[0] == jump):
            return prev
    return None


def receptive_field_lines(report: Report, rec: LayerRecord) -> list[str]:
    """The field r and jump j of the output, and how they follow from the input's."""
    if rec.receptive_field is None or rec.jump is None:
        return ["No receptive field: this output does not come from the image through this layer."]
    if rec.global_field:
        return ["Global: attention ran on the way to this output (every query attends to every key), so each "
                "position depends on the whole input. A window's receptive field and jump do not apply."]
    lines = []
    window_op = find(rec.op, WindowOp)
    dims = ("H", "W") if rec.receptive_field[0] != rec.receptive_field[1] or rec.jump[0] != rec.jump[1] else ("H=W",)
    for index, dim in enumerate(dims):
        r_out, j_out = rec.receptive_field[index], rec.jump[index]
        window = _window(rec, index)
        if window_op is not None and window_op.transposed and len(window_op.kernel) == 2 and rec.is_leaf:
            k, s = window_op.kernel[index], window_op.stride[index]
            reach = -(-k // s)
            j_in = j_out * s
            r_in = r_out - (reach - 1) * j_in
            lines.append(f"{dim}: input field r_in = {number_text(r_in)}, jump j_in = {number_text(j_in)}")
            lines.append(f"    a transposed conv: each output position gathers ⌈K/S⌉ = ⌈{k}/{s}⌉ = {reach} input "
                         "positions")
            lines.append(f"    r_out = r_in + (⌈K/S⌉ − 1)·j_in = {number_text(r_in)} + ({reach} − 1)·"
                         f"{number_text(j_in)} = {number_text(r_out)}")
            lines.append(f"    j_out = j_in / S = {number_text(j_in)} / {s} = {number_text(j_out)}")
        elif window is not None and rec.is_leaf:
            k, s, d = window
            k_eff = d * (k - 1) + 1
            j_in = j_out / s
            r_in = r_out - (k_eff - 1) * j_in
            source = _producer(report, rec, r_in, j_in)
            where = f" (the output of {source.name}, {source.type})" if source is not None and source.name else ""
            if source is None and r_in == 1 and j_in == 1:
                where = " (the input image: one pixel, one pixel apart)"
            lines.append(f"{dim}: input field r_in = {number_text(r_in)}, jump j_in = {number_text(j_in)}{where}")
            keff_text = f"k_eff = D·(K−1)+1 = {d}·({k}−1)+1 = {k_eff}" if d > 1 else f"k_eff = K = {k_eff}"
            lines.append(f"    {keff_text}")
            lines.append(f"    r_out = r_in + (k_eff − 1)·j_in = {number_text(r_in)} + ({k_eff} − 1)·"
                         f"{number_text(j_in)} = {number_text(r_out)}")
            lines.append(f"    j_out = j_in·S = {number_text(j_in)}·{s} = {number_text(j_out)}")
        elif find(rec.op, ResizeOp) is not None and rec.input_shapes and rec.output_shapes:
            scale = rec.output_shapes[0][-2 + index] / rec.input_shapes[0][-2 + index]
            lines.append(f"{dim}: r = {number_text(r_out)} (upsampling adds no context); "
                         f"j_out = j_in / {number_text(scale)} = {number_text(j_out * scale)} / {number_text(scale)} "
                         f"= {number_text(j_out)}")
        elif rec.is_leaf:
            many = len(rec.input_shapes) > 1 or rec.type in ("F.add", "F.sub", "F.mul")
            lines.append(f"{dim}: r = {number_text(r_out)}, j = {number_text(j_out)}: "
                         + ("the wider field of its inputs (a sum reaches as far as its widest input)" if many
                            else "unchanged from its input (element-wise)"))
        else:
            lines.append(f"{dim}: r = {number_text(r_out)}, j = {number_text(j_out)} at the module's output")
    lines.append(f"Each output position sees a {_pair(rec.receptive_field)} patch of the input image; neighbouring "
                 f"positions are {pair_text(rec.jump)} input pixels apart.")
    return lines


def _pair(values: tuple[float, float]) -> str:
    return "×".join(number_text(v) for v in values)


def _window_of(rec: LayerRecord) -> WindowOp:
    """The window of a record known to run one."""
    window = find(rec.op, WindowOp)
    assert window is not None, rec.name
    return window


def _window(rec: LayerRecord, index: int) -> tuple[int, int, int] | None:
    """Kernel, stride and dilation of one dimension, for a conv, a pool or an adaptive pool."""
    window, mean, adaptive = find(rec.op, WindowOp), find(rec.op, MeanOp), find(rec.op, AdaptivePoolOp)
    if window is not None:
        return window.kernel[index], window.stride[index], window.dilation[index]
    if mean is not None and mean.is_global_spatial and rec.input_shapes:  # one window over the whole map
        size_in = rec.input_shapes[0][-2 + index]
        return size_in, size_in, 1
    if adaptive is not None and rec.input_shapes:
        # As the trace treats it: a window of about input/output (see analysis/ops.py).
        size_in, size_out = rec.input_shapes[0][-2 + index], adaptive.output_size[index]
        stride = max(size_in // max(size_out, 1), 1)
        return max(size_in - (size_out - 1) * stride, 1), stride, 1
    return None


def downsample_lines(report: Report, rec: LayerRecord) -> list[str]:
    """Whether this layer changes the resolution, and why (or why not)."""
    entry = next((step for step in report.downsample if step.stage == rec.stage), None)
    window, mean = find(rec.op, WindowOp), find(rec.op, MeanOp)
    adaptive = find(rec.op, AdaptivePoolOp)
    found = block_of(report, rec)
    block = block_label(report.layers, found) if found is not None else ""
    lines: list[str] = []
    in_hw = rec.input_shapes[0][-2:] if rec.input_shapes and len(rec.input_shapes[0]) == 4 else None
    out_hw = rec.output_shapes[0][-2:] if rec.output_shapes and len(rec.output_shapes[0]) == 4 else None
    stride = max(window.stride) if window is not None else 1
    dilation = max(window.dilation) if window is not None else 1
    projection = _projection_of(report, rec, found)
    if projection is not None:
        p = projection
        # "kind" spells out the branch's ops (ResNet-D: an average pool, then a 1×1 conv).
        part = "" if rec.name == p.name else "part of "
        lines.append(f"This is {part}the projection shortcut of {block or rec.parent}: {p.kind}; stride {p.stride} in "
                     f"all. It exists because {p.reason}: the identity could not be added to the block's output. "
                     "The rule (torchvision's _make_layer): project when stride ≠ 1 or in_channels ≠ "
                     "planes × expansion.")
        if p.note:
            lines.append(f"The shortcut {p.note}.")
    if window is not None and window.transposed and rec.is_leaf:
        lines.append(f"It upsamples: a transposed conv with stride {stride} takes {shape_text(in_hw)} to "
                     f"{shape_text(out_hw)}." if stride > 1 else "It keeps the resolution: a transposed conv with "
                     "stride 1.")
    elif window is not None and rec.is_leaf:
        if stride > 1:
            lines.append(f"It downsamples: stride {stride} takes {shape_text(in_hw)} to {shape_text(out_hw)}.")
            if _in_extra_level(report, rec):
                lines.append(f"It builds an extra pyramid level above the trunk's last stage, at {stride}× the "
                             "stride of the level it reads (retinanet: P6 and P7 by stride-2 convs; maskrcnn: P6 by a stride-2 "
                             "max pool).")
        else:
            lines.append(f"It does not downsample: stride 1, and its padding keeps {shape_text(in_hw)}"
                         + (" unchanged." if in_hw == out_hw else f" to {shape_text(out_hw)}."))
        if dilation > 1:
            k = max(window.kernel)
            why = ""
            if "output_stride" in report.options:
                why = f" (output stride {report.options['output_stride']}: dilation replaces the last strides)"
            lines.append(f"Dilation {dilation}: the {k}×{k} taps are spread {dilation} pixels apart, so the field "
                         f"grows as if the layer were strided while the resolution stays{why}.")
    elif adaptive is not None:
        lines.append(f"A global pool, not a strided downsample: it averages {shape_text(in_hw)} down to "
                     f"{shape_text(adaptive.output_size)} whatever the input size.")
    elif find(rec.op, ResizeOp) is not None:
        lines.append(f"It upsamples {shape_text(in_hw)} → {shape_text(out_hw)}: the FPN's top-down path brings a "
                     "coarser level to the lateral's resolution before the add.")
    elif mean is not None and mean.is_global_spatial:
        lines.append(f"A global average, not a strided downsample: it reduces {shape_text(in_hw)} to one value per "
                     "channel. In a squeeze-and-excitation module that value only gates its channel, so the block's "
                     "resolution is unchanged.")
    elif find(rec.op, PadOp) is not None:
        lines.append("It does not downsample: a stride-1 option-A shortcut only pads zero channels.")
    elif rec.is_leaf:
        lines.append("It cannot change the resolution: it has no window and no stride.")
    elif in_hw is not None and out_hw is not None:
        verb = "keeps" if in_hw == out_hw else "takes"
        target = "." if in_hw == out_hw else f" to {shape_text(out_hw)}."
        lines.append(f"The module {verb} {shape_text(in_hw)}{target}")
    if found is not None:
        lines.extend(_block_stride_lines(report, rec, found, entry))
    elif rec.stage == "stem" and entry is not None:
        carriers = ", ".join(f"{c.name} (stride {c.stride})" for c in entry.carriers)
        lines.append(f"The stem divides the resolution by {entry.stride}: {shape_text(entry.size_before)} → "
                     f"{shape_text(entry.size_after)}, through {carriers}.")
        if window is not None and window.ceil_mode and in_hw is not None:
            # What PyTorch's usual stem pool (padding 1, floor) would give on the same input.
            k, s = window.kernel[0], window.stride[0]
            usual = tuple(window_output(size, Window(k, s, k // 2)) for size in in_hw)
            same = "the same size" if usual == tuple(out_hw or ()) else "a different size"
            lines.append(f"ceil_mode=True with padding 0 is Caffe's max pool (the MSRA release): it rounds up. torchvision's "
                         f"pool (padding {k // 2}, rounding down) would give {shape_text(usual)} here, {same}.")
    return lines


def _in_extra_level(report: Report, rec: LayerRecord) -> bool:
    """Whether a leaf belongs to a pyramid level beyond the trunk's strides (P6, P7)."""
    pyramid = report.structure.pyramid if report.structure is not None else None
    return pyramid is not None and any(rec.index in level.records for level in pyramid.levels if level.extra)


def _block_stride_lines(report: Report, rec: LayerRecord, found: Block, entry: DownsampleStep | None) -> list[str]:
    """Which conv of the block carries the stride, and what the alternative placement would be."""
    lines = []
    block = block_label(report.layers, found)
    leaves = [rec.index] if rec.is_leaf else leaves_under(report.layers, rec)
    in_shortcut = bool(found.shortcut.records) and set(leaves) <= {*found.shortcut.records, *found.idle}
    first = report.structure is not None and any(s.blocks[0] is found for s in report.structure.stages)
    carriers = [c for c in (entry.carriers if entry is not None else ()) if c.block == block]
    members = [r for r in (report.layers[i] for i in found.main) if r.weighted and find(r.op, WindowOp) is not None]
    kernels = [_window_of(r).kernel[0] for r in members]
    bottleneck = kernels[:3] == [1, 3, 1]
    if not carriers:
        dilated = [r for r in members if max(_window_of(r).dilation) > 1]
        if entry is not None and entry.dilation_replaces_stride and first:
            lines.append(f"{block} would downsample, but output stride {report.options.get('output_stride')} replaces "
                         "this stage's stride with dilation, so the resolution stays.")
        elif dilated:
            listed = ", ".join(f"{r.name} d={max(_window_of(r).dilation)}" for r in dilated)
            lines.append(f"{block} is dilated ({listed}) instead of strided.")
        else:
            lines.append(f"{block} keeps the resolution: only the first block of a stage (from res3 on) is strided.")
        return lines
    carrier = carriers[0]
    lines.append(f"In {block} the stride sits in {carrier.name} ({carrier.kernel}×{carrier.kernel}, stride "
                 f"{carrier.stride}).")
    if bottleneck and not in_shortcut:
        lines.extend(_placement_lines(members[0], carrier))
    if rec.name != carrier.name and rec.is_leaf and rec.weighted and not in_shortcut:
        lines.append(f"So {rec.name} runs at stride 1.")
    return lines


def _placement_lines(conv1: LayerRecord, carrier: Carrier) -> list[str]:
    """The bottleneck's two stride placements, with conv1's MACs under each (same channels, so
    its MACs scale with its output area; the 3×3's output size, hence its MACs, is the same)."""
    if not conv1.input_shapes or not conv1.output_shapes:
        return []
    in_h, in_w = conv1.input_shapes[0][-2:]
    out_h, out_w = conv1.output_shapes[0][-2:]
    s = carrier.stride
    if carrier.kernel == 1:
        small, large = conv1.output_shapes[0][-2:], (in_h, in_w)
        full = conv1.macs // (out_h * out_w) * (in_h * in_w)
        return [f"That is the MSRA/Caffe placement (stride_in_1x1=True, as in maskrcnn-benchmark): the first 1×1 reads one "
                f"pixel in every {s}×{s}, so it skips {s * s - 1} of every {s * s} input positions, and the 3×3 runs "
                f"at {shape_text(small)}. torchvision puts the stride in the 3×3 (--stride-in-3x3): {conv1.name} then "
                f"runs at {shape_text(large)}, {count_text(full)} MACs instead of {count_text(conv1.macs)}, and "
                "no input position is skipped."]
    reduced = conv1.macs // (out_h * out_w) * ((out_h - 1) // s + 1) * ((out_w - 1) // s + 1)
    return [f"That is torchvision's placement (stride_in_1x1=False, 'ResNet v1.5'): {conv1.name} runs at full "
            f"resolution, {shape_text((out_h, out_w))}, and the 3×3, which sees every position, downsamples. "
            f"MSRA/Caffe put the stride in the first 1×1 (--stride-in-1x1): {conv1.name} would cost {count_text(reduced)} MACs "
            f"instead of {count_text(conv1.macs)}, but skip {s * s - 1} of every {s * s} input positions."]


# -- rendering --------------------------------------------------------------------------------

def print_explain(report: Report, layer: str, console: Console) -> None:
    """Explain one layer in four sections: shape, MACs, receptive field, downsampling."""
    explain_record(report, find_record(report, layer), console)


def explain_record(report: Report, rec: LayerRecord, console: Console, calls: int | None = None) -> None:
    """Explain one record (as :func:`print_explain` does for a name): used for every layer of an HTML
    report, which counts each name's ``calls`` once for all records."""
    if calls is None:
        calls = sum(1 for r in report.layers if r.name == rec.name)
    title = Text(f"{visible(rec.name)} ", style="bold")
    title.append(f"({visible(rec.type)}) in {model_title(report)} at {shape_text(report.input_size)}, stage {rec.stage or '—'}")
    console.print(title)
    if calls > 1:
        console.print(f"This module is called {calls} times; this is call {rec.call + 1} (name it "
                      f"'{rec.name} (call N)' for another).")
    sections = (("Shape", shape_lines(report, rec)), ("MACs", mac_lines(report, rec)),
                ("Receptive field and jump", receptive_field_lines(report, rec)),
                ("Downsampling", downsample_lines(report, rec)))
    for heading, lines in sections:
        print_section(console, heading, Text(visible_lines("\n".join(lines))))
