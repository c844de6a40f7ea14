"""resnet-inspect on real torchvision and timm models, against a plain-matmul reference (issue 18).

For each model this prints its parameters, resnet-inspect's MACs, the reference MACs and their
relative difference, and how many layers the shape check marks ✗. The reference is torch's
FlopCounterMode on a real forward with nn.MultiheadAttention's fast path off and the math SDPA
backend, so attention runs as plain matmuls that FlopCounterMode counts (on CPU it counts the
fused kernels as 0). FLOPs / 2 = MACs.

torchvision and timm are the ``compat`` extra (``pip install resnet-inspect[compat]``), not part
of ``make test``. Where neither is installed the script says so and exits 0; ``--zoo`` runs the
same comparison on the test zoo's tiny models (tests/test_zoo.py), which need neither.

A torchvision whose compiled ops (nms, roi_align) cannot load, such as PyPI's CUDA wheel beside a
CPU torch, still has its models in pure Python: ``--without-compiled-ops`` lets it import (the fake
kernels of the missing ops are skipped), and then a detector is compared up to its first data-dependent
operator. resnet-inspect's meta trace stops there (box decoding's ``where``/``nonzero``) and reports
the backbone, pyramid and heads; the reference is FlopCounterMode on the real forward up to the first
missing compiled op (nms), and box decoding in between has no matmul or convolution to count.

Usage: python benchmarks/compat.py [--zoo] [--without-compiled-ops] [--only NAME ...]
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    """One model: how to build it, and what its forward takes (a tensor shape, or a list of images)."""

    name: str
    build: Callable[[], Any]
    shape: tuple[int, ...] = (1, 3, 224, 224)
    images: bool = False  # a detector: a list of 3-D images


def _torchvision_cases() -> list[Case]:
    if importlib.util.find_spec("torchvision") is None:
        return []
    from torchvision import models
    from torchvision.models import detection

    def tv(builder: Callable[..., Any], **kw: Any) -> Callable[[], Any]:
        return lambda: builder(weights=None, **kw)

    cases = [Case(n, tv(getattr(models, n))) for n in
             ("vit_b_16", "swin_t", "convnext_tiny", "densenet121", "efficientnet_b0")]
    cases.append(Case("inception_v3", tv(models.inception_v3, aux_logits=True, init_weights=False), (1, 3, 299, 299)))
    for n in ("fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn", "retinanet_resnet50_fpn", "fcos_resnet50_fpn"):
        cases.append(Case(n, tv(getattr(detection, n), weights_backbone=None), (3, 320, 320), images=True))
    return cases


def _timm_cases() -> list[Case]:
    if importlib.util.find_spec("timm") is None:
        return []
    import timm

    names = ("resnet50", "resnet50d", "seresnext26d_32x4d", "ecaresnet50d", "resnest50d", "res2net50_26w_4s",
             "skresnet18", "resnetrs50", "resnetv2_50x1_bit")
    return [Case(f"timm/{n}", lambda n=n: timm.create_model(n, pretrained=False)) for n in names]


def _zoo_cases() -> list[Case]:
    sys.path.insert(0, str(REPO / "tests"))
    import test_zoo as zoo

    size = (zoo.BATCH, zoo.TOKENS, zoo.EMBED)
    return [Case("zoo/mha", lambda: zoo.MHABlock(True, False), size),
            Case("zoo/sdpa-causal", lambda: zoo.SDPABlock(True), size),
            Case("zoo/densenet", lambda: zoo.DenseNet((2, 2), growth=4, init=8), (1, 3, 32, 32)),
            Case("zoo/detector", zoo.TinyDetector, (3, 32, 48), images=True)]


@contextmanager
def _plain_attention() -> Iterator[None]:
    """Attention as plain matmuls: the math SDPA backend, nn.MultiheadAttention's fast path off."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)


def _allow_missing_compiled_ops() -> None:
    """Let torchvision import when its _C extension does not load: its fake (meta) kernels for the
    missing operators are skipped instead of failing the import."""
    import torch.library

    register = torch.library.register_fake

    def tolerant(op: Any, fn: Any = None, /, **kwargs: Any) -> Any:
        def decorate(f: Any) -> Any:
            try:
                return register(op, **kwargs)(f)
            except RuntimeError:  # "operator torchvision::nms does not exist": _C did not load
                return f
        return decorate(fn) if fn is not None else decorate

    torch.library.register_fake = tolerant


def _compiled_ops_load() -> bool:
    import torch

    try:
        torch.ops.torchvision.nms
    except (AttributeError, RuntimeError):
        return False
    return True


def _reference_macs_to_missing_op(model: Any, inputs: Any) -> int:
    """FlopCounterMode on the real forward until it reaches a compiled op that did not load."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with _plain_attention(), FlopCounterMode(display=False) as counter, torch.no_grad():
        try:
            model(inputs)
        except RuntimeError as exc:
            if "custom C++ ops" not in str(exc) and "torchvision::" not in str(exc):
                raise
    return counter.get_total_flops() // 2


def _reference_macs(model: Any, inputs: Any) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with _plain_attention(), FlopCounterMode(display=False) as counter, torch.no_grad():
        model(inputs)
    return counter.get_total_flops() // 2


def measure(case: Case) -> dict[str, Any]:
    """Params, MACs (resnet-inspect), reference MACs, relative difference and ✗ count of one model."""
    import torch

    from resnet_inspect import inspect

    torch.manual_seed(0)
    model = case.build().eval()
    if case.images and not case.name.startswith("zoo/") and not _compiled_ops_load():
        # Without nms the real forward cannot finish: compare up to the data-dependent stop.
        images = [torch.rand(case.shape)]
        report = inspect(model, input_data=[images], label=case.name)
        reference = _reference_macs_to_missing_op(model, images)
        stop = report.stopped
        where = stop.layer or "the root module's own code" if stop is not None else ""
        label = f"{case.name} (to {stop.op} in {where})" if stop is not None else case.name
        return {"model": label, "params": report.totals["params"], "macs": report.totals["macs"],
                "reference": reference, "diff": (report.totals["macs"] - reference) / reference,
                "bad_shapes": sum(1 for r in report.layers if r.shape_ok is False)}
    if case.images:
        # A data-dependent op (box decoding) stops a meta trace: the real forward runs it all.
        images = [torch.rand(case.shape)]
        report = inspect(model, input_data=[images], real=True, label=case.name)
        reference = _reference_macs(model, images)
    else:
        report = inspect(model, case.shape, label=case.name)
        reference = _reference_macs(model, torch.randn(case.shape))
    macs = report.totals["macs"]
    return {"model": case.name, "params": report.totals["params"], "macs": macs, "reference": reference,
            "diff": (macs - reference) / reference if reference else float("nan"),
            "bad_shapes": sum(1 for r in report.layers if r.shape_ok is False)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", action="store_true", help="the test zoo's tiny models (no torchvision/timm)")
    parser.add_argument("--only", nargs="*", default=None, help="model names to run")
    parser.add_argument("--without-compiled-ops", action="store_true",
                        help="import a torchvision whose compiled ops do not load (see the module's docstring)")
    args = parser.parse_args(argv)
    if args.without_compiled_ops:
        _allow_missing_compiled_ops()
    cases = _zoo_cases() if args.zoo else _torchvision_cases() + _timm_cases()
    if not cases:
        print("compat: neither torchvision nor timm is installed (pip install 'resnet-inspect[compat]'); "
              "nothing to compare. --zoo runs the test zoo's models instead.")
        return 0
    if args.only:
        cases = [c for c in cases if c.name in args.only]
    print("| Model | Params | MACs | Reference MACs | Difference | Shape ✗ |")
    print("|---|---:|---:|---:|---:|---:|")
    worst = 0.0
    for case in cases:
        row = measure(case)
        worst = max(worst, abs(row["diff"]))
        print(f"| {row['model']} | {row['params']:,} | {row['macs']:,} | {row['reference']:,} | "
              f"{100 * row['diff']:+.2f}% | {row['bad_shapes']} |", flush=True)
    print(f"\nLargest difference: {100 * worst:.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
