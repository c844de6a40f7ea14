"""A zoo of tiny models for the patterns beyond the ResNet family (issue 18): attention,
concatenation, normalisations that reduce internally, compiled helpers, detector-style heads.

Each model is a few lines, needs neither torchvision nor timm, and is checked against arithmetic
done by hand or with plain matmuls: torch's FlopCounterMode on a real forward with
``nn.MultiheadAttention``'s fast path off and the math SDPA backend (which decomposes attention
into matmuls that FlopCounterMode counts; on CPU it counts the fused kernels as 0).
"""
from __future__ import annotations

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
