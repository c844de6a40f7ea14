"""A zoo of tiny models for the patterns beyond the ResNet family (issue 18): attention,
concatenation, normalisations that reduce internally, compiled helpers, detector-style heads.

Each model is a few lines, needs neither torchvision nor timm, and is checked against arithmetic
done by hand or with plain matmuls: torch's FlopCounterMode on a real forward with
``nn.MultiheadAttention``'s fast path off and the math SDPA backend (which decomposes attention
into matmuls that FlopCounterMode counts; on CPU it counts the fused kernels as 0).
"""
from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from resnet_inspect import inspect

# -- attention ----------------------------------------------------------------------------------

BATCH, TOKENS, EMBED, HEADS = 2, 5, 16, 2


class MHABlock(nn.Module):
    """A ViT block's attention: nn.MultiheadAttention, then a linear head."""

    def __init__(self, batch_first: bool, need_weights: bool) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(EMBED, HEADS, batch_first=batch_first)
        self.fc = nn.Linear(EMBED, 4)
        self.need_weights = need_weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.attn(x, x, x, need_weights=self.need_weights)
        return self.fc(y)


class SDPABlock(nn.Module):
    """A fused QKV projection and F.scaled_dot_product_attention, causal or not."""

    def __init__(self, causal: bool) -> None:
        super().__init__()
        self.qkv = nn.Linear(EMBED, 3 * EMBED)
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, _ = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, HEADS, EMBED // HEADS).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)


class NativeMHA(nn.Module):
    """What nn.MultiheadAttention's fast path calls: torch._native_multi_head_attention."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(EMBED, HEADS, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.attn
        return torch._native_multi_head_attention(x, x, x, EMBED, HEADS, a.in_proj_weight, a.in_proj_bias,
                                                  a.out_proj.weight, a.out_proj.bias, None, False)[0]


def plain_matmul_macs(model: nn.Module, x: torch.Tensor) -> int:
    """The reference: FlopCounterMode on a real forward, fast path off (training mode, dropout 0)
    and the math SDPA backend, so attention runs as plain matmuls. FLOPs / 2 = MACs."""
    mode = model.training
    try:
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
            model.train()(x)
    finally:
        model.train(mode)
    return counter.get_total_flops() // 2


def mha_by_hand(length: int, source: int) -> int:
    """Per batch element: Q, K, V and out projections (E×E each per token) and Q·Kᵀ + A·V
    (L·S·E each, summed over the heads)."""
    return BATCH * (3 * length * EMBED * EMBED + length * EMBED * EMBED + 2 * length * source * EMBED)


@pytest.mark.parametrize("batch_first, need_weights", [(True, False), (False, True)],
                         ids=["fast-path-eligible", "fast-path-off"])
@pytest.mark.parametrize("real", [False, True], ids=["meta", "real"])
def test_multihead_attention_counts_projections_and_attention(batch_first: bool, need_weights: bool,
                                                              real: bool) -> None:
    """In eval mode under no_grad with batch_first and no weights asked for, nn.MultiheadAttention
    would take its fused fast path; either way the trace counts the in-projection, Q·Kᵀ, A·V and
    out_proj, and out_proj is not "never called"."""
    model = MHABlock(batch_first, need_weights)
    shape = (BATCH, TOKENS, EMBED) if batch_first else (TOKENS, BATCH, EMBED)
    report = inspect(model, shape, real=real)
    fc = BATCH * TOKENS * EMBED * 4
    assert report.totals["macs"] == mha_by_hand(TOKENS, TOKENS) + fc
    assert report.totals["macs"] == plain_matmul_macs(model, torch.randn(shape))
    assert report.uncalled == []
    assert report.totals["params"] == sum(r.params for r in report.layers)
    attention = next(r for r in report.layers if r.type == "F.multi_head_attention_forward")
    assert attention.global_field and attention.weighted
    assert report.output_info["output"].global_field
    assert report.output_info["output"].stride is None  # a token sequence has no grid


def test_native_multihead_attention_fast_path_op() -> None:
    model = NativeMHA()
    report = inspect(model, (BATCH, TOKENS, EMBED))
    assert report.totals["macs"] == mha_by_hand(TOKENS, TOKENS)
    assert report.uncalled == []


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_sdpa_counts_both_products(causal: bool) -> None:
    """Q·Kᵀ and A·V: B·H·L·S·E_head each. A causal mask is not halved, as torch's flop counter
    does not halve it (torch/utils/flop_counter.py) and the math backend computes every score."""
    model = SDPABlock(causal)
    report = inspect(model, (BATCH, TOKENS, EMBED))
    head_dim = EMBED // HEADS
    attention = 2 * BATCH * HEADS * TOKENS * TOKENS * head_dim
    qkv = BATCH * TOKENS * EMBED * 3 * EMBED
    assert report.layer(":scaled_dot_product_attention").macs == attention
    assert report.totals["macs"] == qkv + attention
    assert report.totals["macs"] == plain_matmul_macs(model, torch.randn(BATCH, TOKENS, EMBED))
    assert report.layer(":scaled_dot_product_attention").global_field
    assert report.layer("qkv").global_field is False


def test_explain_says_an_attention_field_is_global() -> None:
    from resnet_inspect.render.explain import receptive_field_lines
    report = inspect(SDPABlock(False), (BATCH, TOKENS, EMBED))
    lines = receptive_field_lines(report, report.layer(":scaled_dot_product_attention"))
    assert lines[0].startswith("Global")


# -- concatenation: a DenseNet (Huang et al. 2017, torchvision's layout) -----------------------

class DenseLayer(nn.Module):
    """BN-ReLU-1×1 conv (bn_size × growth channels), BN-ReLU-3×3 conv (growth channels), on the
    concatenation of every earlier feature map of the block."""

    def __init__(self, channels: int, growth: int, bn_size: int) -> None:
        super().__init__()
        self.norm1, self.relu1 = nn.BatchNorm2d(channels), nn.ReLU()
        self.conv1 = nn.Conv2d(channels, bn_size * growth, 1, bias=False)
        self.norm2, self.relu2 = nn.BatchNorm2d(bn_size * growth), nn.ReLU()
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(features, 1)
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class DenseBlock(nn.ModuleDict):
    def __init__(self, layers: int, channels: int, growth: int, bn_size: int) -> None:
        super().__init__({f"denselayer{i + 1}": DenseLayer(channels + i * growth, growth, bn_size)
                          for i in range(layers)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class DenseNet(nn.Module):
    """torchvision's DenseNet layout: a 7×7/2 conv and 3×3/2 max pool, dense blocks joined by
    transitions (BN-ReLU-1×1 conv halving the channels, 2×2/2 average pool), a classifier."""

    def __init__(self, blocks: tuple[int, ...], growth: int, init: int, bn_size: int = 4, classes: int = 10) -> None:
        super().__init__()
        stages: list[tuple[str, nn.Module]] = [
            ("conv0", nn.Conv2d(3, init, 7, 2, 3, bias=False)), ("norm0", nn.BatchNorm2d(init)),
            ("relu0", nn.ReLU()), ("pool0", nn.MaxPool2d(3, 2, 1))]
        channels = init
        for i, layers in enumerate(blocks):
            stages.append((f"denseblock{i + 1}", DenseBlock(layers, channels, growth, bn_size)))
            channels += layers * growth
            if i + 1 < len(blocks):
                stages.append((f"transition{i + 1}", nn.Sequential(
                    nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, channels // 2, 1, bias=False),
                    nn.AvgPool2d(2, 2))))
                channels //= 2
        stages.append(("norm5", nn.BatchNorm2d(channels)))
        self.features = nn.Sequential(OrderedDict(stages))
        self.classifier = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(F.relu(self.features(x)), 1)
        return self.classifier(torch.flatten(x, 1))


def test_concatenation_follows_every_operand_for_field_and_depth() -> None:
    """Two dense blocks of two layers, at 32×32. Field r and jump j, by hand:
    conv0 7×7/2: r 7, j 2; pool0 3×3/2: r 7 + 2·2 = 11, j 4.
    Block 1, each 3×3 adds 2·4: denselayer1 r 19, denselayer2 r 27; the block's cat takes the
    widest, 27 (before: the widest *largest* operand, the block input, r 11).
    transition1: 1×1, then 2×2/2 pool: r 27 + 1·4 = 31, j 8.
    Block 2, each 3×3 adds 2·8: r 47, then 63. Global pool over 4×4: r 63 + 3·8 = 87.
    Depth on the longest path: conv0, 2 × 2 convs, transition conv, 2 × 2 convs, fc = 11."""
    report = inspect(DenseNet((2, 2), growth=4, init=8), (1, 3, 32, 32))
    field = {name: report.layer(name).receptive_field for name in (
        "features.denseblock1.denselayer1.conv2", "features.denseblock1.denselayer2.conv2",
        "features.transition1.3", "features.denseblock2.denselayer2.conv2")}
    assert field == {"features.denseblock1.denselayer1.conv2": (19, 19),
                     "features.denseblock1.denselayer2.conv2": (27, 27),
                     "features.transition1.3": (31, 31),
                     "features.denseblock2.denselayer2.conv2": (63, 63)}
    assert report.output_info["output"].receptive_field == (87, 87)
    assert report.output_info["output"].depth == 11
    assert report.depth.counted == 11


def test_densenet121_is_121_layers_deep() -> None:
    """Huang et al. 2017's DenseNet-121: 1 stem conv + (6 + 12 + 24 + 16) layers × 2 convs
    + 3 transition convs = 120 convs, + 1 fc = 121, all on the longest path."""
    with torch.device("meta"):
        model = DenseNet((6, 12, 24, 16), growth=32, init=64, classes=1000)
    report = inspect(model, (1, 3, 224, 224))
    assert report.depth.counted == 121
    path = [report.layer(name) for name in report.depth.path]
    assert sum(1 for r in path if r.type == "Conv2d") == 120
    assert sum(1 for r in path if r.type == "Linear") == 1


# -- the shape check applies where its formula does ---------------------------------------------

class FilterResponseNorm(nn.Module):
    """Singh & Krishnan 2020 (timm's FilterResponseNorm): x / sqrt(mean over H, W of x² + ε),
    scaled, shifted and thresholded. The mean is a reduction inside the layer, not its output."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.tau = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = nn.Parameter(torch.full((1,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nu2 = x.pow(2).mean(dim=(2, 3), keepdim=True)
        x = x * torch.rsqrt(nu2 + self.eps.abs())
        return torch.maximum(x * self.weight + self.bias, self.tau)


class LastLevelMaxPool(nn.Module):
    """torchvision.ops.feature_pyramid_network.LastLevelMaxPool: takes the list of levels and
    appends a 1×1/2 max pool of the last one (P5 in an FPN)."""

    def forward(self, x: list[torch.Tensor], y: list[torch.Tensor],
                names: list[str]) -> tuple[list[torch.Tensor], list[str]]:
        names.append("pool")
        x.append(F.max_pool2d(x[-1], 1, 2, 0))
        return x, names


class TwoLevels(nn.Module):
    """conv → FRN (P2), a stride-2 conv (P3), and LastLevelMaxPool on P3."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.frn = FilterResponseNorm(8)
        self.down = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.extra = LastLevelMaxPool()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        p2 = self.frn(self.conv(x))
        p3 = self.down(p2)
        levels, names = self.extra([p2, p3], [p2, p3], ["p2", "p3"])
        return dict(zip(names, levels))


def test_shape_check_applies_to_the_op_that_defines_the_output() -> None:
    """No false ✗: the FRN's mean is not checked against the layer's output, and the extra block
    is checked against the level it pools (⌊(8 − 1)/2⌋ + 1 = 4), not against P2. The FRN keeps
    the conv's field (3), and the pooled level P3's (3 + 2·1 = 5) with stride 2 · 2 = 4."""
    report = inspect(TwoLevels(), (1, 3, 16, 16))
    assert [r.name for r in report.layers if r.shape_ok is False] == []
    assert report.layer("frn").analytic_shape is None
    assert report.layer("extra").analytic_shape == (1, 8, 4, 4) and report.layer("extra").shape_ok is True
    assert report.layer("frn").receptive_field == (3, 3)
    pool = report.output_info["pool"]
    assert (pool.shape, pool.stride, pool.receptive_field) == ((1, 8, 4, 4), 4, (5, 5))


# -- compiled helpers ----------------------------------------------------------------------------

def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


class GatedNet(nn.Module):
    """A conv, a gate computed by a helper function (compiled or not), a pooled linear head."""

    def __init__(self, gate: object) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8, 2)
        self.gate = gate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.gate(self.conv(x)).mean((2, 3)))


def _facts(report: object) -> list[tuple[object, ...]]:
    return [(r.name, r.type, r.macs, r.other_ops, r.output_shapes, r.receptive_field, r.path_depth)
            for r in report.layers]  # type: ignore[attr-defined]


@pytest.mark.parametrize("real", [False, True], ids=["meta", "real"])
def test_a_compiled_helper_is_traced_like_a_plain_one(real: bool) -> None:
    """Dynamo must not trace into the tracer's hooks: the compiled helper runs eagerly during the
    trace, so the records equal those of the same model with the plain function."""
    compiled = torch.compile(swish, backend="eager")
    plain = inspect(GatedNet(swish), (1, 3, 8, 8), real=real)
    traced = inspect(GatedNet(compiled), (1, 3, 8, 8), real=real)
    assert _facts(traced) == _facts(plain)
    assert traced.layer(":mul").other_ops == 8 * 6 * 6  # the gate's product was seen
    assert torch.equal(compiled(torch.ones(2)), swish(torch.ones(2)))  # and the helper still works


# -- detectors: a list of images, a data-dependent op after the heads -----------------------------

class TinyDetector(nn.Module):
    """torchvision's detector layout in miniature: a list of 3-D images padded into one batch, a
    two-level backbone with an FPN (1×1 laterals, a nearest upsample-and-add, 3×3 outputs), a
    shared 3×3 classification head, and box decoding that keeps the positions over a threshold
    with ``nonzero``, whose output size depends on the values."""

    def __init__(self, decode: bool = True) -> None:
        super().__init__()
        self.c3 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.c4 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.lateral3, self.lateral4 = nn.Conv2d(8, 8, 1), nn.Conv2d(16, 8, 1)
        self.out3, self.out4 = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 2, 3, padding=1)
        self.decode = decode

    def forward(self, images: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        height = max(int(i.shape[-2]) for i in images)
        width = max(int(i.shape[-1]) for i in images)
        x = torch.stack([F.pad(i, (0, width - i.shape[-1], 0, height - i.shape[-2])) for i in images])
        c3 = self.c3(x)
        c4 = self.c4(c3)
        p4 = self.out4(self.lateral4(c4))
        p3 = self.out3(self.lateral3(c3) + F.interpolate(self.lateral4(c4), size=c3.shape[-2:]))
        logits = [self.head(p) for p in (p3, p4)]
        if not self.decode:
            return {"p3": logits[0], "p4": logits[1]}
        scores = torch.cat([l.flatten(1) for l in logits], 1).sigmoid()
        keep = torch.nonzero(scores > 0.5)
        return {"boxes": keep, "scores": scores[keep[:, 0], keep[:, 1]]}


def _detector_macs(sizes: list[tuple[int, int]]) -> int:
    """By hand, for a batch of len(sizes) images padded to the largest: per image, C_out·H·W
    output elements × C_in·k·k each. The second lateral runs twice (once for P4, once for P3)."""
    n, h, w = len(sizes), max(s[0] for s in sizes), max(s[1] for s in sizes)
    h3, w3 = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    h4, w4 = (h3 - 1) // 2 + 1, (w3 - 1) // 2 + 1
    at3, at4 = h3 * w3, h4 * w4
    per_image = (8 * at3 * 3 * 9 + 16 * at4 * 8 * 9 + 2 * 8 * at4 * 16 + 8 * at3 * 8
                 + 8 * at4 * 8 * 9 + 8 * at3 * 8 * 9 + 2 * at3 * 8 * 9 + 2 * at4 * 8 * 9)
    return n * per_image


IMAGES = [(32, 48), (40, 24)]  # H, W: padded to 40×48


def test_a_list_of_images_is_traced_on_meta() -> None:
    images = [torch.randn(3, h, w) for h, w in IMAGES]
    report = inspect(TinyDetector(decode=False), input_data=[images])
    assert report.stopped is None
    assert report.totals["macs"] == _detector_macs(IMAGES)
    assert report.outputs == {"p3": (2, 2, 20, 24), "p4": (2, 2, 10, 12)}
    assert report.input_size == (3, 32, 48)
    # P4: c3 (3) + c4 3×3 at jump 2 (7) + out4 3×3 at jump 4 (15) + head at jump 4 (23).
    assert report.output_info["p4"].receptive_field == (23, 23) and report.output_info["p4"].stride == 4


def test_a_data_dependent_op_stops_the_meta_trace_after_the_heads() -> None:
    """Everything before nonzero is reported (backbone, FPN, heads); the stop names the op and
    the layer; a real forward runs it all and counts the same MACs."""
    images = [torch.randn(3, h, w) for h, w in IMAGES]
    model = TinyDetector()
    report = inspect(model, input_data=[images])
    assert report.stopped is not None
    assert (report.stopped.op, report.stopped.layer, report.stopped.layer_type) == ("nonzero", "", "TinyDetector")
    assert report.totals["macs"] == _detector_macs(IMAGES)
    assert {"c3", "c4", "lateral3", "lateral4", "out3", "out4", "head"} <= {r.name for r in report.layers}
    # What reached nonzero stands for the outputs: scores > 0.5, 2 × (20·24 + 10·12) · 2 classes,
    # deepest through P3: c3, c4, lateral4, out3, head = 5 weighted layers.
    assert report.outputs == {"output": (2, 1200)}
    assert report.output_info["output"].depth == 5
    assert report.to_dict()["stopped"]["op"] == "nonzero"
    real = inspect(model, input_data=[images], real=True)
    assert real.stopped is None and real.totals["macs"] == report.totals["macs"]
    assert set(real.outputs) == {"boxes", "scores"}
    assert all(i.shape == (3, h, w) for i, (h, w) in zip(images, IMAGES))  # the caller's images untouched


def test_input_data_as_a_dict_of_keyword_tensors() -> None:
    class Masked(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.conv(x) * mask

    report = inspect(Masked(), input_data={"x": torch.zeros(1, 3, 8, 8), "mask": torch.ones(1, 1, 8, 8)})
    assert report.totals["macs"] == 4 * 8 * 8 * 3 * 9
    assert report.outputs == {"output": (1, 4, 8, 8)}


def test_cli_takes_a_list_of_images_and_stops_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--input "[3x32x48, 3x40x24]"`` is a list of images; the meta trace stops at nonzero
    with exit code 0 and says where in the JSON; --real traces the rest."""
    import json
    import sys
    from pathlib import Path

    from conftest import run_cli

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.setitem(sys.modules, "zoo_models", sys.modules[__name__])
    meta = run_cli("summary", "zoo_models:TinyDetector", "--input", "[3x32x48, 3x40x24]", "--format", "json")
    assert meta.exit_code == 0, meta.output
    data = json.loads(meta.stdout)
    assert data["stopped"]["op"] == "nonzero" and data["totals"]["macs"] == _detector_macs(IMAGES)
    real = run_cli("summary", "zoo_models:TinyDetector", "--input", "[3x32x48, 3x40x24]", "--real", "--format", "json")
    assert real.exit_code == 0, real.output
    assert "stopped" not in json.loads(real.stdout) and set(json.loads(real.stdout)["outputs"]) == {"boxes", "scores"}


def test_input_shapes_parse_to_a_list_of_images_or_keyword_tensors() -> None:
    from resnet_inspect.inputs import InputData, parse_input_data

    assert parse_input_data("[3x32x48, 3×40×24]") == InputData(images=((3, 32, 48), (3, 40, 24)))
    assert parse_input_data("{x: 1x3x8x8, mask: 1x1x8x8}") == InputData(named=(("x", (1, 3, 8, 8)),
                                                                               ("mask", (1, 1, 8, 8))))


@pytest.mark.parametrize("text", ["[3x32x48", "[]", "[3xx4]", "{x 1x3}", "{x: 1x3, x: 1x3}", "[0x3x4]", "{1: 3}"])
def test_malformed_input_shapes_are_input_errors(text: str) -> None:
    from resnet_inspect.errors import InputError
    from resnet_inspect.inputs import parse_input_data

    with pytest.raises(InputError):
        parse_input_data(text)


# -- torchvision's FPN extra block, drawn from P5 -------------------------------------------------

class ListFPN(nn.Module):
    """torchvision's FeaturePyramidNetwork layout: inner (lateral) and layer (output) blocks, a
    nearest upsample-and-add top-down, then extra_blocks on the list of results."""

    def __init__(self, channels: list[int], out: int) -> None:
        super().__init__()
        self.inner_blocks = nn.ModuleList(nn.Conv2d(c, out, 1) for c in channels)
        self.layer_blocks = nn.ModuleList(nn.Conv2d(out, out, 3, padding=1) for _ in channels)
        self.extra_blocks = LastLevelMaxPool()

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        names, x = list(features), list(features.values())
        last = self.inner_blocks[-1](x[-1])
        results = [self.layer_blocks[-1](last)]
        for idx in range(len(x) - 2, -1, -1):
            lateral = self.inner_blocks[idx](x[idx])
            last = lateral + F.interpolate(last, size=lateral.shape[-2:], mode="nearest")
            results.insert(0, self.layer_blocks[idx](last))
        results, names = self.extra_blocks(results, x, names)
        return OrderedDict(zip(names, results))


class ResNetFPN(nn.Module):
    """Our resnet18 trunk with a torchvision-style FPN on its four stages."""

    def __init__(self) -> None:
        super().__init__()
        from resnet_inspect.models.resnet import build_model
        from resnet_inspect.variants import get_spec

        self.body = build_model(get_spec("resnet18"))
        self.fpn = ListFPN([64, 128, 256, 512], 16)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b = self.body
        x = b.maxpool(b.relu(b.bn1(b.conv1(x))))
        features = OrderedDict()
        for i, stage in enumerate((b.layer1, b.layer2, b.layer3, b.layer4)):
            x = stage(x)
            features[str(i)] = x
        return self.fpn(features)


def test_fpn_extra_block_is_fed_from_p5_and_drawn_so() -> None:
    """At 64×64 the levels have strides 4 … 32 (16×16 … 2×2); the extra block's own output is
    the pooled P5, 1×1 at stride 64, and the diagram feeds it from P5's output conv."""
    from resnet_inspect.render.graph import build_graph

    report = inspect(ResNetFPN(), (1, 3, 64, 64))
    extra = report.layer("fpn.extra_blocks")
    assert extra.output_shapes[0] == (1, 16, 1, 1) and extra.jump == (64, 64)
    assert report.output_info["pool"].stride == 64
    levels = {lv.name: lv.stride for lv in report.structure.pyramid.levels}
    assert levels == {"0": 4, "1": 8, "2": 16, "3": 32, "pool": 64}
    edges = [line.split("[")[0].strip() for line in build_graph(report).source.splitlines() if "->" in line]
    into = [e.split("->")[0].strip().strip('"') for e in edges if e.endswith('"fpn.extra_blocks"')]
    assert into == ["fpn.layer_blocks.3"]
    assert any(line.startswith('"fpn.extra_blocks" -> pool') and 'label="16×1×1"' in line
               for line in (l.strip() for l in build_graph(report).source.splitlines()))


def test_weights_used_functionally_by_a_parent_are_not_never_called() -> None:
    """A parent that runs a child's weights itself (timm attention's F.linear on qkv.weight, as
    nn.MultiheadAttention does with out_proj): the child is not listed as never called, and its
    parameters are counted at the operator that used them."""
    class FunctionalProj(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(EMBED, EMBED)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.linear(x, self.proj.weight, self.proj.bias)

    report = inspect(FunctionalProj(), (BATCH, TOKENS, EMBED))
    assert report.uncalled == []
    assert report.layer(":linear").params == EMBED * EMBED + EMBED
    assert report.layer(":linear").macs == BATCH * TOKENS * EMBED * EMBED


class TinyViT(nn.Module):
    """A 4×4/4 patch embedding, two pre-norm encoder blocks (attention, a 2-layer MLP), a mean
    over the tokens and a linear classifier."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(EMBED), nn.LayerNorm(EMBED)
            self.attn = nn.MultiheadAttention(EMBED, HEADS, batch_first=True)
            self.mlp = nn.Sequential(nn.Linear(EMBED, 2 * EMBED), nn.GELU(), nn.Linear(2 * EMBED, EMBED))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.ln1(x)
            x = x + self.attn(y, y, y, need_weights=False)[0]
            return x + self.mlp(self.ln2(x))

    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, EMBED, 4, 4)
        self.blocks = nn.Sequential(self.Block(), self.Block())
        self.head = nn.Linear(EMBED, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.patch(x).flatten(2).transpose(1, 2))
        return self.head(x.mean(1))


def test_vit_depth_reads_attention_and_fc_once_each() -> None:
    """Longest path: the patch conv, per block the attention and the MLP's two linears, the
    classifier: 1 + 2 · (1 + 2) + 1 = 8, written as one term per kind. The field before the
    first attention is the patch (4); from it on it is global."""
    report = inspect(TinyViT(), (1, 3, 16, 16))
    assert report.depth.counted == 8
    assert report.depth.formula == "1 conv + 2 attention + 5 fc = 8"
    assert report.layer("blocks.0.ln1").global_field is False
    assert report.layer("blocks.0.mlp.0").global_field is True
    assert report.output_info["output"].global_field and report.output_info["output"].stride is None


def test_explain_describes_attention_shapes() -> None:
    from resnet_inspect.render.explain import shape_lines
    report = inspect(SDPABlock(True), (BATCH, TOKENS, EMBED))
    lines = shape_lines(report, report.layer(":scaled_dot_product_attention"))
    assert not any("element-wise" in line for line in lines)
    assert report.layer(":scaled_dot_product_attention").op.to_dict() == {
        "heads": HEADS, "queries": TOKENS, "keys": TOKENS, "head_dim": EMBED // HEADS, "value_dim": EMBED // HEADS,
        "causal": True, "projections": False}


@pytest.mark.parametrize("bad", [{"x": 3}, [1, 2], {1: torch.zeros(1)}, "image"])
def test_input_data_without_tensors_is_an_input_error(bad: object) -> None:
    from resnet_inspect.errors import InputError

    with pytest.raises(InputError, match="tensor"):
        inspect(TinyDetector(), input_data=bad)


def test_input_data_with_another_counter_is_an_input_error() -> None:
    from resnet_inspect.errors import InputError

    with pytest.raises(InputError, match="analytic"):
        inspect(TinyDetector(decode=False), input_data=[[torch.zeros(3, 8, 8)]], counter="torch")


def test_traces_in_threads_put_the_compile_stance_back() -> None:
    """The eager stance is process-wide: two overlapping traces, the first finishing first, must
    leave it as it was (a per-trace set-and-restore would leave force_eager behind)."""
    import threading

    import torch._dynamo  # noqa: F401  (with dynamo loaded, a trace sets the stance)
    from torch._dynamo import eval_frame

    both_inside, first_done = threading.Barrier(2), threading.Event()

    class Waits(nn.Module):
        def __init__(self, last: bool) -> None:
            super().__init__()
            self.conv, self.last = nn.Conv2d(3, 4, 1), last

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            both_inside.wait(timeout=60)
            if self.last:
                first_done.wait(timeout=60)
            return self.conv(x)

    def first() -> None:
        inspect(Waits(False), (1, 3, 4, 4))
        first_done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=inspect, args=(Waits(True), (1, 3, 4, 4)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert eval_frame._stance.stance == "default"
