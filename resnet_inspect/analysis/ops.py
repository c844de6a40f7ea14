"""Counting rules: one small function per operator, looked up by the operator's name.

Convention (see docs/conventions.md): **one multiply-accumulate = one MAC**. Only convolutions
and linear layers produce MACs, which is what torchvision's tables and the ResNet paper report;
FLOPs are 2 x MACs. Everything else an operator does is an "other op", one per element:
a bias add, a normalisation's scale and shift (2 per element), an activation, a pooling window's
comparisons or adds (one per window element), a residual add, an upsampled element.

Rules see the operator's bound arguments and, once it has run, its output. Called before the
operator runs (``out=None``) they only derive the analytic output shape, so an input too small
for a window is caught with the formula in hand.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .opdesc import AdaptivePoolOp, AttentionOp, LinearOp, MatMulOp, MeanOp, OpDesc, PadOp, ResizeOp, WindowOp
from .shapes import Window, window_output, window_working


@dataclass
class OpStats:
    """What one operator call did."""

    macs: int = 0
    other_ops: int = 0
    windows: tuple[Window, Window] | None = None
    analytic_shape: tuple[int, ...] | None = None
    working: list[str] = field(default_factory=list)
    weighted: bool = False
    upsample: tuple[float, float] | None = None
    invalid: str | None = None  # why the operator cannot accept this input, if known in advance
    op: OpDesc | None = None
    global_field: bool = False  # every output position sees the whole input (attention)


@dataclass(frozen=True)
class Rule:
    params: tuple[str, ...]
    defaults: dict[str, Any]
    count: Callable[[dict[str, Any], Any], OpStats]

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        bound = dict(self.defaults)
        bound.update(zip(self.params, args))
        bound.update(kwargs)
        return bound


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple, torch.Size)):
        return (int(value[0]), int(value[-1])) if len(value) else (1, 1)
    return int(value), int(value)


def _numel(out: Any) -> int:
    if isinstance(out, torch.Tensor):
        return out.numel()
    if isinstance(out, (list, tuple)):
        return sum(_numel(o) for o in out)
    return 0


def _windowed(x: torch.Tensor, channels: int, windows: tuple[Window, Window], stats: OpStats,
              **conv: int) -> OpStats:
    """A 2-D window's shape and working; ``conv`` holds a convolution's groups and channels."""
    height, width = x.shape[-2], x.shape[-1]
    out_hw = (window_output(height, windows[0]), window_output(width, windows[1]))
    stats.windows = windows
    stats.analytic_shape = (*x.shape[:-3], channels, *out_hw)
    stats.working = [f"H: {window_working(height, windows[0])}", f"W: {window_working(width, windows[1])}"]
    h, w = windows
    stats.op = WindowOp(kernel=(h.kernel, w.kernel), stride=(h.stride, w.stride), padding=(h.padding, w.padding),
                        dilation=(h.dilation, w.dilation), ceil_mode=h.ceil_mode, **conv)
    return stats


def _conv2d(a: dict[str, Any], out: Any) -> OpStats:
    x, weight = a["input"], a["weight"]
    kh, kw = weight.shape[-2], weight.shape[-1]
    sh, sw = _pair(a["stride"])
    dh, dw = _pair(a["dilation"])
    padding = a["padding"]
    if isinstance(padding, str):  # "valid" or "same" (stride 1 only)
        ph, pw = (0, 0) if padding == "valid" else (dh * (kh - 1) // 2, dw * (kw - 1) // 2)
    else:
        ph, pw = _pair(padding)
    stats = _windowed(x, weight.shape[0], (Window(kh, sh, ph, dh), Window(kw, sw, pw, dw)), OpStats(weighted=True),
                      groups=int(a["groups"]), in_channels=int(x.shape[-3]), out_channels=int(weight.shape[0]))
    if isinstance(padding, str) and padding == "same":
        stats.analytic_shape = (*x.shape[:-3], weight.shape[0], x.shape[-2], x.shape[-1])
    if out is not None:
        n = _numel(out)
        # weight.shape[1] is in_channels / groups: each output element reads that many channels.
        stats.macs = n * weight.shape[1] * kh * kw
        stats.other_ops = n if a.get("bias") is not None else 0
    return stats


def _ntuple(value: Any, n: int) -> tuple[int, ...]:
    if isinstance(value, (list, tuple, torch.Size)):
        return tuple(int(v) for v in value) if len(value) == n else (int(value[0]),) * n
    return (int(value),) * n


_AXES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


def _conv_nd(nd: int) -> Callable[[dict[str, Any], Any], OpStats]:
    """Conv1d and Conv3d: the 2-D rule's arithmetic along every spatial dimension."""
    def rule(a: dict[str, Any], out: Any) -> OpStats:
        x, weight = a["input"], a["weight"]
        kernel = tuple(int(k) for k in weight.shape[2:])
        stride, dilation = _ntuple(a["stride"], nd), _ntuple(a["dilation"], nd)
        padding = a["padding"]
        if isinstance(padding, str):  # "valid" or "same" (stride 1 only)
            padding = tuple(0 if padding == "valid" else d * (k - 1) // 2 for k, d in zip(kernel, dilation))
        padding = _ntuple(padding, nd)
        windows = [Window(k, st, p, d) for k, st, p, d in zip(kernel, stride, padding, dilation)]
        sizes = x.shape[-nd:]
        stats = OpStats(weighted=True)
        stats.analytic_shape = (*x.shape[:-nd - 1], weight.shape[0],
                                *(window_output(i, w) for i, w in zip(sizes, windows)))
        if a["padding"] == "same":
            stats.analytic_shape = (*x.shape[:-nd - 1], weight.shape[0], *sizes)
        stats.working = [f"{axis}: {window_working(i, w)}" for axis, i, w in zip(_AXES[nd], sizes, windows)]
        stats.op = WindowOp(kernel=kernel, stride=stride, padding=padding, dilation=dilation,
                            groups=int(a["groups"]), in_channels=int(x.shape[-nd - 1]),
                            out_channels=int(weight.shape[0]))
        if min(stats.analytic_shape[-nd:]) <= 0:
            stats.invalid = "the window no longer fits: " + "; ".join(stats.working)
        if out is not None:
            n = _numel(out)
            stats.macs = n * weight.shape[1] * math.prod(kernel)
            stats.other_ops = n if a.get("bias") is not None else 0
        return stats
    return rule


def _conv_transpose(nd: int) -> Callable[[dict[str, Any], Any], OpStats]:
    """A transposed conv scatters every input element over a kernel's worth of outputs:
    MACs = input elements × (out_channels / groups) × kernel size, and along each dimension
    O = (I − 1)·S − 2P + D·(K − 1) + output_padding + 1."""
    def rule(a: dict[str, Any], out: Any) -> OpStats:
        x, weight = a["input"], a["weight"]  # weight: (in_channels, out_channels / groups, *kernel)
        groups = int(a["groups"])
        kernel = tuple(int(k) for k in weight.shape[2:])
        stride, padding = _ntuple(a["stride"], nd), _ntuple(a["padding"], nd)
        extra, dilation = _ntuple(a["output_padding"], nd), _ntuple(a["dilation"], nd)
        sizes = tuple(int(i) for i in x.shape[-nd:])
        outs = [(i - 1) * st - 2 * p + d * (k - 1) + e + 1
                for i, st, p, d, k, e in zip(sizes, stride, padding, dilation, kernel, extra)]
        stats = OpStats(weighted=True)
        stats.analytic_shape = (*x.shape[:-nd - 1], weight.shape[1] * groups, *outs)
        stats.working = [f"{axis}: ({i} − 1)·{st} − 2·{p} + {d}·({k} − 1) + {e} + 1 = {o}"
                         for axis, i, st, p, d, k, e, o in
                         zip(_AXES[nd], sizes, stride, padding, dilation, kernel, extra, outs)]
        stats.op = WindowOp(kernel=kernel, stride=stride, padding=padding, dilation=dilation, output_padding=extra,
                            groups=groups, in_channels=int(x.shape[-nd - 1]),
                            out_channels=int(weight.shape[1] * groups), transposed=True)
        if nd == 2:
            # For the receptive field: each output position gathers ⌈K/S⌉ input positions per
            # dimension (a window of that size at stride 1), and the grid becomes S times finer.
            stats.windows = (Window(-(-kernel[0] // stride[0]), 1, 0), Window(-(-kernel[1] // stride[1]), 1, 0))
            stats.upsample = (float(stride[0]), float(stride[1]))
        if out is not None:
            stats.macs = x.numel() * weight.shape[1] * math.prod(kernel)
            stats.other_ops = _numel(out) if a.get("bias") is not None else 0
        return stats
    return rule


def _matmul(first: str, second: str) -> Callable[[dict[str, Any], Any], OpStats]:
    """Matrix products: each output element sums over the shared dimension, k MACs."""
    def rule(a: dict[str, Any], out: Any) -> OpStats:
        # Not ``weighted``: a product of activations (attention) is no layer of the paper's depth.
        stats = OpStats()
        k = int(a[first].shape[-1])
        stats.op = MatMulOp(k)
        if out is not None:
            stats.macs = _numel(out) * k
        return stats
    return rule


def _sdpa(a: dict[str, Any], out: Any) -> OpStats:
    """``F.scaled_dot_product_attention``: Q·Kᵀ gives L×S scores per head, E MACs each, and A·V
    gives L×Ev outputs per head, S MACs each. Query heads may outnumber key heads (grouped-query
    attention); each query head still does the full work.

    A causal mask is not halved: torch's FlopCounterMode does not halve it either
    (torch/utils/flop_counter.py, "We aren't accounting for causal attention here"), and the math
    backend computes every score before masking. The softmax is one other op per score.
    """
    q, k, v = a["query"], a["key"], a["value"]
    length, source = int(q.shape[-2]), int(k.shape[-2])
    head_dim, value_dim = int(q.shape[-1]), int(v.shape[-1])
    batch_heads = math.prod(int(d) for d in q.shape[:-2])
    heads = int(q.shape[-3]) if q.dim() >= 3 else 1
    stats = OpStats(global_field=True, op=AttentionOp(heads, length, source, head_dim, value_dim,
                                                      causal=bool(a.get("is_causal"))))
    if out is not None:
        scores = batch_heads * length * source
        stats.macs = scores * head_dim + scores * value_dim
        stats.other_ops = scores
    return stats


def _mha_macs(length: int, source: int, batch: int, embed: int, kdim: int, vdim: int, proj_in: tuple[bool, bool, bool]) -> int:
    """MACs of multi-head attention: the in-projections of Q, K and V (those that run), the
    attention over all heads (Q·Kᵀ and A·V, ``embed`` MACs per score summed over the heads), and
    the out-projection."""
    q_in, k_in, v_in = proj_in
    projections = (length * embed * embed * q_in + source * kdim * embed * k_in + source * vdim * embed * v_in
                   + length * embed * embed)
    return batch * (projections + 2 * length * source * embed)


def _mha_forward(a: dict[str, Any], out: Any) -> OpStats:
    """``F.multi_head_attention_forward`` (``nn.MultiheadAttention`` off its fast path): inputs are
    (L, N, E), or (L, E) unbatched; a bias_k/bias_v or a zero-attention column adds one key."""
    q, k, v = a["query"], a["key"], a["value"]
    embed, heads = int(q.shape[-1]), int(a["num_heads"])
    length, batch = int(q.shape[0]), (int(q.shape[1]) if q.dim() == 3 else 1)
    static_k, static_v = a.get("static_k"), a.get("static_v")
    source = int(k.shape[0]) if static_k is None else int(static_k.shape[1])
    source += (a.get("bias_k") is not None) + bool(a.get("add_zero_attn"))
    stats = OpStats(weighted=True, global_field=True,
                    op=AttentionOp(heads, length, source, embed // heads, embed // heads,
                                   causal=bool(a.get("is_causal")), projections=True))
    if out is not None:
        stats.macs = _mha_macs(length, source, batch, embed, int(k.shape[-1]), int(v.shape[-1]),
                               (True, static_k is None, static_v is None))
        stats.other_ops = batch * heads * length * source  # the softmax, one per score
    return stats


def _native_mha(a: dict[str, Any], out: Any) -> OpStats:
    """``torch._native_multi_head_attention`` (the fast path): batch-first (N, L, E) inputs."""
    q, k = a["query"], a["key"]
    embed, heads = int(a["embed_dim"]), int(a["num_head"])
    length, source = int(q.shape[-2]), int(k.shape[-2])
    batch = int(q.shape[0]) if q.dim() == 3 else 1
    stats = OpStats(weighted=True, global_field=True,
                    op=AttentionOp(heads, length, source, embed // heads, embed // heads, projections=True))
    if out is not None:
        stats.macs = _mha_macs(length, source, batch, embed, embed, embed, (True, True, True))
        stats.other_ops = batch * heads * length * source
    return stats


def _norm(affine_key: str) -> Callable[[dict[str, Any], Any], OpStats]:
    """Group, layer and instance norm compute their statistics at run time: fvcore's estimate of
    4 ops per element (mean, variance, subtract, divide), 5 with the affine scale and shift."""
    def rule(a: dict[str, Any], out: Any) -> OpStats:
        per_element = 5 if a.get(affine_key) is not None else 4
        return OpStats(other_ops=per_element * _numel(out) if out is not None else 0)
    return rule


def _linear(a: dict[str, Any], out: Any) -> OpStats:
    x, weight = a["input"], a["weight"]
    stats = OpStats(weighted=True)
    stats.op = LinearOp(in_features=int(weight.shape[1]), out_features=int(weight.shape[0]))
    if x.shape[-1] != weight.shape[1]:
        stats.invalid = (f"it expects {weight.shape[1]} input features but receives {x.shape[-1]} "
                         f"(input shape {tuple(x.shape)})")
    if out is not None:
        n = _numel(out)
        stats.macs = n * weight.shape[1]
        stats.other_ops = n if a.get("bias") is not None else 0
    return stats


def _pool(ceil_key: str = "ceil_mode", has_dilation: bool = True) -> Callable[[dict[str, Any], Any], OpStats]:
    def rule(a: dict[str, Any], out: Any) -> OpStats:
        x = a["input"]
        kh, kw = _pair(a["kernel_size"])
        stride = a["stride"]
        sh, sw = _pair(stride) if stride not in (None, [], ()) else (kh, kw)
        ph, pw = _pair(a["padding"])
        dh, dw = _pair(a["dilation"]) if has_dilation else (1, 1)
        ceil = bool(a[ceil_key])
        stats = _windowed(x, x.shape[-3], (Window(kh, sh, ph, dh, ceil), Window(kw, sw, pw, dw, ceil)), OpStats())
        if ph > kh // 2 or pw > kw // 2:
            stats.invalid = f"its padding ({ph}, {pw}) exceeds half its kernel ({kh}, {kw})"
        if out is not None:
            first = out[0] if isinstance(out, tuple) else out
            stats.other_ops = _numel(first) * kh * kw  # one compare (max) or add (avg) per window element
        return stats
    return rule


def adaptive_size(a: dict[str, Any]) -> tuple[int, int]:
    """Output size of an adaptive pool: its ``output_size``, where None keeps the input's."""
    size, x = a["output_size"], a["input"]
    oh, ow = (size, size) if isinstance(size, int) else tuple(size)
    return (x.shape[-2] if oh is None else oh, x.shape[-1] if ow is None else ow)


def _adaptive_pool(a: dict[str, Any], out: Any) -> OpStats:
    x = a["input"]
    oh, ow = adaptive_size(a)
    # No analytic shape: an adaptive pool's output is its output_size by definition, so a
    # "check" could not fail.
    stats = OpStats()
    # For the receptive field an adaptive pool acts like a window of about input/output.
    windows = []
    for size_in, size_out in ((x.shape[-2], oh), (x.shape[-1], ow)):
        stride = max(size_in // max(size_out, 1), 1)
        windows.append(Window(max(size_in - (size_out - 1) * stride, 1), stride, 0))
    stats.windows = (windows[0], windows[1])
    stats.op = AdaptivePoolOp((int(oh), int(ow)))
    if out is not None:
        stats.other_ops = x.numel()
    return stats


def _elementwise(per_element: int = 1) -> Callable[[dict[str, Any], Any], OpStats]:
    def rule(a: dict[str, Any], out: Any) -> OpStats:
        return OpStats(other_ops=per_element * _numel(out) if out is not None else 0)
    return rule


def interpolate_size(a: dict[str, Any]) -> tuple[int, int] | None:
    """Output size of ``F.interpolate``: the given ``size``, or ⌊input × scale_factor⌋."""
    x, size, scale = a["input"], a.get("size"), a.get("scale_factor")
    if size is not None:
        return _pair(size)
    if scale is not None:
        sh, sw = (scale, scale) if isinstance(scale, (int, float)) else (scale[0], scale[-1])
        return math.floor(x.shape[-2] * sh), math.floor(x.shape[-1] * sw)
    return None


def _interpolate(a: dict[str, Any], out: Any) -> OpStats:
    # No analytic shape to check: the meta trace derives the output from the same rule, so the
    # check could not fail there (the real trace gives identical records, which tests verify).
    x = a["input"]
    stats = OpStats(op=ResizeOp(mode=a.get("mode"), scale_factor=a.get("scale_factor"), size=a.get("size")))
    hw = interpolate_size(a)
    if hw is not None:
        stats.upsample = (hw[0] / x.shape[-2], hw[1] / x.shape[-1])
    if out is not None:
        stats.other_ops = _numel(out)
    return stats


def _pad(a: dict[str, Any], out: Any) -> OpStats:
    """Constant padding (option A's zero channels): no arithmetic, but a shape to check."""
    x, pads = a["input"], list(a["pad"])
    shape = list(x.shape)
    working = []
    labels = {1: "C", 2: "H", 3: "W"} if x.dim() == 4 else {}
    for i in range(len(pads) // 2):
        dim = x.dim() - 1 - i
        before, after = pads[2 * i], pads[2 * i + 1]
        shape[dim] += before + after
        if before or after:
            working.append(f"{labels.get(dim, f'dim {dim}')}: {x.shape[dim]} + {before} + {after} = {shape[dim]}")
    return OpStats(analytic_shape=tuple(shape), working=working,
                   op=PadOp(tuple(int(p) for p in pads), a.get("mode", "constant")))


def _mean(a: dict[str, Any], out: Any) -> OpStats:
    """A mean over dimensions (SE's squeeze): one add per input element."""
    x = a["input"]
    dims = a.get("dim")
    reduced = sorted({d % x.dim() for d in (range(x.dim()) if dims is None else
                                           dims if isinstance(dims, (list, tuple)) else [dims])})
    keep = bool(a.get("keepdim"))
    shape = tuple(1 if i in reduced else n for i, n in enumerate(x.shape) if keep or i not in reduced)
    stats = OpStats(other_ops=x.numel() if out is not None else 0, analytic_shape=shape,
                    op=MeanOp(tuple(reduced), keep),
                    working=[f"mean over dimension{'s' if len(reduced) > 1 else ''} "
                             f"{', '.join(str(d) for d in reduced)} of {'×'.join(map(str, x.shape))}"
                             f"{' (kept as 1)' if keep else ''}"])
    if dims is not None and x.dim() == 4 and reduced == [2, 3]:
        # A global spatial mean: a window over the whole map for the receptive field.
        stats.windows = (Window(x.shape[-2], x.shape[-2], 0), Window(x.shape[-1], x.shape[-1], 0))
    return stats


_CONV = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_MAXPOOL = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_AVGPOOL = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override")
_CONV_T = ("input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation")
_BINARY = ("input", "other")
_MHA = ("query", "key", "value", "embed_dim_to_check", "num_heads", "in_proj_weight", "in_proj_bias", "bias_k",
        "bias_v", "add_zero_attn", "dropout_p", "out_proj_weight", "out_proj_bias", "training", "key_padding_mask",
        "need_weights", "attn_mask", "use_separate_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight",
        "static_k", "static_v", "average_attn_weights", "is_causal")

RULES: dict[str, Rule] = {
    "conv2d": Rule(_CONV, {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}, _conv2d),
    "conv1d": Rule(_CONV, {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}, _conv_nd(1)),
    "conv3d": Rule(_CONV, {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}, _conv_nd(3)),
    **{f"conv_transpose{nd}d": Rule(_CONV_T, {"bias": None, "stride": 1, "padding": 0, "output_padding": 0,
                                               "groups": 1, "dilation": 1}, _conv_transpose(nd)) for nd in (1, 2, 3)},
    "linear": Rule(("input", "weight", "bias"), {"bias": None}, _linear),
    "embedding": Rule(("input", "weight"), {}, lambda a, out: OpStats()),  # a lookup: no arithmetic
    **{name: Rule(("input", "other"), {}, _matmul("input", "other")) for name in ("matmul", "mm", "bmm")},
    "addmm": Rule(("input", "mat1", "mat2"), {}, _matmul("mat1", "mat2")),
    "baddbmm": Rule(("input", "batch1", "batch2"), {}, _matmul("batch1", "batch2")),
    "scaled_dot_product_attention": Rule(("query", "key", "value", "attn_mask", "dropout_p", "is_causal"),
                                         {"is_causal": False}, _sdpa),
    "multi_head_attention_forward": Rule(_MHA, {}, _mha_forward),
    "native_multi_head_attention": Rule(("query", "key", "value", "embed_dim", "num_head"), {}, _native_mha),
    "group_norm": Rule(("input", "num_groups", "weight", "bias", "eps"), {"weight": None}, _norm("weight")),
    "layer_norm": Rule(("input", "normalized_shape", "weight", "bias", "eps"), {"weight": None}, _norm("weight")),
    "instance_norm": Rule(("input", "running_mean", "running_var", "weight", "bias"), {"weight": None},
                          _norm("weight")),
    "max_pool2d": Rule(_MAXPOOL, {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False}, _pool()),
    "avg_pool2d": Rule(_AVGPOOL, {"stride": None, "padding": 0, "ceil_mode": False}, _pool(has_dilation=False)),
    "adaptive_avg_pool2d": Rule(("input", "output_size"), {}, _adaptive_pool),
    "adaptive_max_pool2d": Rule(("input", "output_size"), {}, _adaptive_pool),
    "batch_norm": Rule(("input",), {}, _elementwise(2)),  # scale and shift per element (eval mode)
    "pad": Rule(("input", "pad", "mode", "value"), {"mode": "constant"}, _pad),
    "mean": Rule(("input", "dim", "keepdim"), {"dim": None}, _mean),
    "interpolate": Rule(("input", "size", "scale_factor", "mode"), {"size": None, "scale_factor": None}, _interpolate),
    **{name: Rule(_BINARY, {}, _elementwise()) for name in ("add", "sub", "mul", "div")},
    **{name: Rule(("input",), {}, _elementwise()) for name in (
        "relu", "relu6", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid")},
    "prelu": Rule(("input", "weight"), {}, _elementwise()),
}

# Names under which the same operator reaches a TorchFunctionMode.
_ALIASES = {"iadd": "add", "radd": "add", "isub": "sub", "rsub": "sub", "imul": "mul", "rmul": "mul",
            "truediv": "div", "itruediv": "div", "_max_pool2d": "max_pool2d", "boolean_dispatch": "max_pool2d"}


def op_name(func: Any) -> str:
    """Normalised operator name: ``Tensor.add_``, ``__iadd__`` and ``torch.add`` are all ``add``."""
    name = getattr(func, "__name__", "") or ""
    name = name.strip("_")
    return _ALIASES.get(name, name)


