"""Checkpoints (resnet_inspect.checkpoint): loading one you were handed without running its code, bounding
what it may expand to, and inferring the variant from its keys and shapes, also from fuzzed state dicts."""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from typer.testing import CliRunner

import resnet_inspect as ri
from resnet_inspect.checkpoint import Inference, infer, load_checkpoint, load_model
from resnet_inspect.cli import app
from tests.conftest import TORCHVISION

COUNTER = "num_batches_tracked"
# Spec fields that no tensor shows: a strided conv, a dilated conv and a ceil-mode pool have the
# same weights as their plain twins. Every other field changes some key or shape.
HIDDEN = {"name", "options", "source", "default_input", "stride_in_1x1", "caffe_maxpool", "output_stride"}


def meta_build(name: str, **options: Any) -> nn.Module:
    with torch.device("meta"):
        return ri.build(name, **options)


def shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def cheap_state_dict(model: nn.Module, floats: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """The model's state_dict as stride-0 views of one zero per dtype: every shape right, a few
    bytes on disk, so even wide_resnet101_2 saves in milliseconds."""
    zeros: dict[torch.dtype, torch.Tensor] = {}
    dtypes = {k: floats if v.is_floating_point() else v.dtype for k, v in model.state_dict().items()}
    return {k: zeros.setdefault(dtypes[k], torch.zeros((), dtype=dtypes[k])).expand(v.shape)
            for k, v in model.state_dict().items()}


def weight_fields(spec: ri.ResNetSpec) -> dict[str, Any]:
    fields = {name: getattr(spec, name) for name in spec.__dataclass_fields__ if name not in HIDDEN}
    fields["fpn"] = (spec.fpn.kind, spec.fpn.out_channels) if spec.fpn else None  # upsample mode has no weights
    if spec.head != "classifier":
        del fields["num_classes"]
    if spec.head != "hopenet":
        del fields["num_bins"]
    return fields


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize("name", ri.variants())
def test_every_variant_round_trips_through_a_file(name: str, tmp_path: Path) -> None:
    """Build, save the state_dict, infer it back from the file: the same modules come back, also
    under the prefixes that DataParallel (module.), detectors (backbone.body.) and Lightning
    (model.) add."""
    spec = ri.get_spec(name)
    model = meta_build(name)
    expected = shapes(model)
    path = tmp_path / f"{name}.pth"
    torch.save(cheap_state_dict(model), path)
    loaded = load_checkpoint(path).tensors
    inference = infer(loaded, path=str(path))
    where = f"{name} was inferred as {inference.command}"
    assert inference.exact, f"{where}: {inference.confidence}; missing {inference.missing[:5]}, " \
                            f"unexpected {inference.unexpected[:5]}"
    if (inference.spec.name, inference.options) != (name, {}):  # otherwise it is the very same spec
        assert shapes(meta_build(inference.spec.name, **inference.options)) == expected, where
    assert weight_fields(inference.spec) == weight_fields(spec), where
    # Only a weight-for-weight twin listed earlier may take the name (resnet50_caffe differs from
    # resnet50 only in strides and pooling, which no tensor shows).
    order = ri.variants()
    assert inference.spec.name == name or order.index(inference.spec.name) < order.index(name), where
    assert inference.options == {} or inference.spec.name != name, f"{where}: options on its own name"
    for prefix in ("module.", "backbone.body.", "model."):
        prefixed = infer({prefix + k: v for k, v in loaded.items()})
        assert prefixed.exact and prefixed.prefix == prefix, f"{name} under {prefix!r}: {prefixed.confidence}"
        assert (prefixed.spec, prefixed.options) == (inference.spec, inference.options), f"{name} under {prefix!r}"


@pytest.mark.parametrize(("name", "key", "shape"), [
    ("resnet18", "layer2.1.conv1.weight", (128, 64, 3, 3)),
    ("resnet50", "layer4.0.conv2.weight", (512, 512, 5, 5)),
    ("resnet50", "conv1.weight", (64, 3, 5, 5)),
    ("resnet50", "fc.bias", (10,)),
    ("resnext50_32x4d", "layer3.0.conv2.weight", (512, 8, 3, 3)),
    ("seresnet50", "layer1.0.se.fc1.weight", (8, 256, 1, 1)),
    ("hopenet", "fc_pitch.weight", (66, 1000)),
    ("retinanet_r50_fpn", "fpn.fpn_layer4.weight", (256, 256, 1, 1)),
])
def test_one_wrong_shape_names_the_right_network_and_the_tensor(name: str, key: str, shape: tuple[int, ...]) -> None:
    """A single tensor of the wrong shape must not send inference to a variant that shares no
    key at all (zero conflicts, zero matches): the error names the network the rest of the file
    is, and the tensor that does not fit it, with both shapes."""
    model = meta_build(name)
    state = cheap_state_dict(model)
    state[key] = torch.zeros(()).expand(shape)
    expected = "×".join(map(str, model.state_dict()[key].shape))
    with pytest.raises(ri.InputError) as caught:
        infer(state)
    message = " ".join(str(caught.value).split())
    assert f"The closest is {name}," in message
    assert f"{key} is {'×'.join(map(str, shape))} but {name} needs {expected}" in message


def test_real_checkpoint_is_inspected_with_its_own_tensors(tmp_path: Path) -> None:
    torch.manual_seed(0)
    original = ri.build("resnet18").eval()
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in original.state_dict().items()}, "epoch": 7}, path)

    model, inference = load_model(path)
    assert inference is not None and inference.exact and inference.spec.name == "resnet18"
    assert inference.prefix == "module." and inference.container == "state_dict"
    assert torch.equal(model.conv1.weight, original.conv1.weight)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), original(x))
    assert ri.inspect(model, 64, real=True).totals["params"] == TORCHVISION["resnet18"][0]

    code, out = run("summary", str(path), "--input", "32")
    tensors = sum(1 for k in original.state_dict() if not k.endswith(COUNTER))
    assert code == 0, out
    assert f"resnet18 (exact: every key and shape matches ({tensors} tensors))" in out
    assert "key prefix stripped: 'module.'" in out and "state_dict found under 'state_dict'" in out


def test_partial_match_lists_missing_and_unexpected_keys(tmp_path: Path) -> None:
    state = cheap_state_dict(meta_build("resnet34"))
    del state["fc.weight"], state["fc.bias"]
    state["projector.weight"] = torch.zeros(128, 512)
    path = tmp_path / "ssl.pt"
    torch.save(state, path)
    model, inference = load_model(path)
    assert inference is not None and inference.spec.name == "resnet34"
    assert inference.missing == ["fc.weight", "fc.bias"] and inference.unexpected == ["projector.weight"]
    assert inference.confidence.startswith(f"partial: {inference.total - 2} of the model's {inference.total}")
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])  # missing ones become zeros
    code, out = run("summary", str(path), "--input", "64")
    assert code == 0 and "missing keys (2): fc.weight, fc.bias" in out and "unexpected keys (1): projector.weight" in out


def test_detector_checkpoint_keeps_the_backbone_and_lists_the_heads(tmp_path: Path) -> None:
    """A maskrcnn-benchmark detector: backbone under module.backbone., heads beside it."""
    state = {f"module.backbone.{k}": v for k, v in cheap_state_dict(meta_build("maskrcnn_r50_fpn")).items()}
    heads = {"module.rpn.head.conv.weight": torch.zeros(256, 256, 3, 3), "module.roi_heads.box.fc6.weight":
             torch.zeros(1024, 12544)}
    path = tmp_path / "model_final.pth"
    torch.save({"model": {**state, **heads}, "iteration": 90000}, path)
    inference = infer(load_checkpoint(path).tensors)
    assert inference.spec.name == "maskrcnn_r50_fpn" and inference.prefix == "module.backbone."
    assert sorted(inference.unexpected) == sorted(heads) and not inference.missing
    assert inference.spec.norm == "frozen_bn" and "a guess" in " ".join(inference.evidence)
    assert inference.spec.stride_in_1x1 and any("carries the stride" in note for note in inference.unseen)


def test_torchvision_detector_backbone_is_a_trunk_under_backbone_body() -> None:
    trunk = {f"backbone.body.{k}": v for k, v in cheap_state_dict(meta_build("resnet50")).items()
             if not k.startswith("fc.")}
    fpn = {"backbone.fpn.inner_blocks.0.0.weight": torch.zeros(256, 256, 1, 1)}
    inference = infer({**trunk, **fpn})
    assert inference.spec.name == "resnet50" and inference.prefix == "backbone.body."
    assert inference.missing == ["fc.weight", "fc.bias"] and inference.unexpected == list(fpn)


@pytest.mark.parametrize("name,options", [
    ("resnet", dict(block="bottleneck", layers=(1, 2, 3, 1), groups=8, width_per_group=16)),
    ("hopenet", dict(num_bins=10)),
    ("cifar_resnet56", dict(num_classes=100)),
    ("resnext50_32x4d", dict(num_classes=10)),
    ("resnet", dict(layers=(2, 3, 4, 5))),
])
def test_custom_numbers_are_read_from_the_shapes(name: str, options: dict[str, Any]) -> None:
    inference = infer(cheap_state_dict(meta_build(name, **options)))
    assert inference.exact and inference.spec.name == name and inference.options == options
    if "groups" in options:
        # torchvision's width: int(planes * width_per_group / 64) * groups = int(64 * 16 / 64) * 8 = 128,
        # in groups of 128 / 8 = 16 input channels.
        model = meta_build(name, **options)
        assert tuple(model.layer1[0].conv2.weight.shape) == (128, 16, 3, 3)
        assert inference.command == "resnet --block bottleneck --groups 8 --layers 1,2,3,1 --width-per-group 16"


def test_norm_is_read_when_it_shows_and_guessed_when_it_does_not() -> None:
    with_counter = infer(cheap_state_dict(meta_build("resnet50")))
    assert with_counter.spec.norm == "bn" and "num_batches_tracked is present" in " ".join(with_counter.evidence)
    # A FrozenBatchNorm2d trunk and a pre-0.4.1 BatchNorm2d checkpoint have the same keys.
    frozen = infer(cheap_state_dict(meta_build("resnet50", norm="frozen_bn")))
    assert frozen.exact and frozen.spec.norm == "bn" and "a guess" in " ".join(frozen.evidence)
    told = infer(cheap_state_dict(meta_build("resnet50", norm="frozen_bn")), overrides={"norm": "frozen_bn"})
    assert told.spec.norm == "frozen_bn"
    # The counter says BatchNorm even on a preset whose own norm is frozen.
    trainable = infer(cheap_state_dict(meta_build("retinanet_r50_fpn", norm="bn")))
    assert trainable.spec.name == "retinanet_r50_fpn" and trainable.spec.norm == "bn"


def test_invisible_options_apply_and_visible_ones_are_refused(tmp_path: Path) -> None:
    state = cheap_state_dict(meta_build("resnet50"))
    moved = infer(state, overrides={"stride_in_1x1": True, "caffe_maxpool": True})
    assert moved.spec.stride_in_1x1 and moved.spec.caffe_maxpool
    assert not any("carries the stride" in note for note in moved.unseen)
    with pytest.raises(ri.InputError, match="--num-classes cannot be set on a checkpoint"):
        infer(state, overrides={"num_classes": 10})
    path = tmp_path / "r50.pth"
    torch.save(state, path)
    code, out = run("summary", str(path), "--groups", "2")
    assert code == 2 and "--groups cannot be set on a checkpoint" in out


def test_half_precision_checkpoint_is_traced_in_float32(tmp_path: Path) -> None:
    path = tmp_path / "half.pth"
    torch.save(cheap_state_dict(meta_build("resnet18"), floats=torch.float16), path)
    model, inference = load_model(path)
    assert inference is not None and inference.exact
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert ri.inspect(model, 32, real=True).outputs["output"] == (1, 1000)


def test_integer_weight_is_refused_with_its_key(tmp_path: Path) -> None:
    """An int64 conv weight cannot be traced (it cannot require gradients): exit 2 naming the
    key, not an internal error. The int64 BN counters stay accepted."""
    state = cheap_state_dict(meta_build("resnet18"))
    state["conv1.weight"] = torch.zeros(64, 3, 7, 7, dtype=torch.int64)
    path = tmp_path / "int.pth"
    torch.save(state, path)
    result = CliRunner().invoke(app, ["summary", str(path)])
    assert result.exit_code == 2, result.output
    assert "conv1.weight holds int64" in " ".join(result.output.split())


def test_legacy_format_and_nested_containers_load(tmp_path: Path) -> None:
    state = cheap_state_dict(meta_build("resnet18"))
    legacy = tmp_path / "legacy.pth"
    torch.save({"model": {"state_dict": state}}, legacy, _use_new_zipfile_serialization=False)
    checkpoint = load_checkpoint(legacy)
    assert checkpoint.container == "model.state_dict" and set(checkpoint.tensors) == set(state)


@pytest.mark.parametrize("content,message", [
    ({"epoch": 3, "lr": 0.1}, "holds a dict without tensors (keys: epoch, lr)"),
    (torch.zeros(3), "holds a Tensor, not a state_dict"),
    ([torch.zeros(3)], "holds a list, not a state_dict"),
])
def test_checkpoints_without_a_state_dict_are_refused(content: Any, message: str, tmp_path: Path) -> None:
    path = tmp_path / "odd.pth"
    torch.save(content, path)
    with pytest.raises(ri.InputError, match=re.escape(message)):
        load_checkpoint(path)


def test_whole_pickled_model_is_refused_unless_trusted(tmp_path: Path) -> None:
    path = tmp_path / "whole.pth"
    torch.save(ri.build("resnet18"), path)
    with pytest.raises(ri.InputError, match=r"global 'resnet_inspect\.models\.resnet\.ResNet'.*whole pickled model"):
        load_checkpoint(path)
    code, out = run("summary", str(path))
    assert code == 2 and "--trust-pickle" in out and "whole pickled model" in out

    model, inference = load_model(path, trust_pickle=True)
    assert inference is None and type(model).__name__ == "ResNet"
    code, out = run("--trust-pickle", "summary", str(path), "--input", "64")
    assert code == 0 and "Loaded a whole pickled ResNet" in out


def test_safetensors_needs_its_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(ri.InputError, match="needs the safetensors package"):
        load_checkpoint(path)


def test_safetensors_checkpoint_is_inferred(tmp_path: Path) -> None:
    safetensors_torch = pytest.importorskip("safetensors.torch", reason="safetensors is optional and not installed")
    path = tmp_path / "r18.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in ri.build("resnet18").state_dict().items()}, str(path))
    _, inference = load_model(path)
    assert inference is not None and inference.exact and inference.spec.name == "resnet18"


def _layer_output(data: dict[str, Any], name: str) -> list[int]:
    return next(layer["output_shapes"][0] for layer in data["layers"] if layer["name"] == name)


def test_cifar_checkpoint_is_traced_at_its_own_32x32(tmp_path: Path) -> None:
    import json

    model = ri.build("cifar_resnet20").eval()
    path = tmp_path / "cifar20.pth"
    torch.save(model.state_dict(), path)
    result = CliRunner().invoke(app, ["summary", str(path), "-f", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["input_size"] == [1, 3, 32, 32]
    seen: dict[str, tuple[int, ...]] = {}
    model.layer3.register_forward_hook(lambda m, i, o: seen.update(layer3=tuple(o.shape)))
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    assert tuple(_layer_output(data, "layer3")) == seen["layer3"] == (1, 64, 8, 8)
    # --input still wins over the inferred default
    result = CliRunner().invoke(app, ["summary", str(path), "-f", "json", "--input", "64"])
    assert result.exit_code == 0 and json.loads(result.stdout)["input_size"] == [1, 3, 64, 64]


def test_huge_stride0_checkpoint_is_inspected_without_allocating_its_claimed_size(tmp_path: Path) -> None:
    """A file of a few KB can claim a 300,000-class classifier by saving expand()ed views (torch.save
    keeps the one stored number and the zero strides). Widening half precision to float32 and
    filling a missing tensor must cost what the file holds, not what the shapes claim."""
    classes = 300_000
    state = cheap_state_dict(meta_build("resnet18", num_classes=classes), floats=torch.float16)
    del state["layer1.0.conv1.weight"]
    path = tmp_path / "huge.pth"
    torch.save(state, path)
    assert path.stat().st_size < 100_000
    model, inference = load_model(path)
    assert inference is not None and inference.spec.num_classes == classes
    assert inference.missing == ["layer1.0.conv1.weight"]
    assert tuple(model.fc.weight.shape) == (classes, 512) and model.fc.weight.dtype == torch.float32
    # One float32 number behind each of these, though they claim 153,600,000 and 36,864 elements.
    assert model.fc.weight.untyped_storage().nbytes() == 4
    assert model.layer1[0].conv1.weight.untyped_storage().nbytes() == 4
    assert sum(t.untyped_storage().nbytes() for t in model.state_dict().values()) < 1_000_000
    # torchvision's resnet18 has 11,689,512 parameters, 512 × 1000 + 1000 of them in fc.
    trunk = 11_689_512 - (512 * 1000 + 1000)
    report = ri.inspect(model, 32)
    assert report.device == "meta" and report.totals["params"] == trunk + 512 * classes + classes


def test_widening_half_precision_keeps_every_value(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ri.build("resnet18").half()
    path = tmp_path / "half.pth"
    torch.save(model.state_dict(), path)
    loaded, _ = load_model(path)
    for key, value in model.state_dict().items():
        widened = loaded.state_dict()[key]
        assert widened.dtype == (torch.float32 if value.is_floating_point() else value.dtype)
        assert torch.equal(widened, value.float() if value.is_floating_point() else value), key


def test_checkpoint_claiming_absurd_sizes_is_refused(tmp_path: Path) -> None:
    state = cheap_state_dict(meta_build("resnet18"))
    zero = torch.zeros(())
    state["fc.weight"], state["fc.bias"] = zero.expand(10_000_000, 512), zero.expand(10_000_000)
    path = tmp_path / "absurd.pth"
    torch.save(state, path)
    code, out = run("summary", str(path))
    assert code == 2 and "claims 10,000,000 classes, over resnet-inspect's limit of 1,000,000" in out
    assert "fc.weight is 10000000×512" in out


@pytest.mark.parametrize("wrap,container", [
    (lambda sd: {"teacher": sd, "epoch": 3}, "teacher"),  # DINO-style distillation
    (lambda sd: {"state_dict_ema": sd, "optimizer": {"state": {}}}, "state_dict_ema"),  # timm train.py
    (lambda sd: {"model_ema": sd}, "model_ema"),
    (lambda sd: {"ema": sd, "updates": 100}, "ema"),
    (lambda sd: {"state_dict": sd, "state_dict_ema": {}}, "state_dict"),  # the trained weights come first
    (lambda sd: {"state_dict_ema": {"module": sd}}, "state_dict_ema.module"),
    (lambda sd: {"weights": sd, "args": {"lr": 0.1}}, "weights"),  # an unlisted name holding the tensors
])
def test_state_dict_under_a_container_key_is_found_and_named(wrap: Any, container: str, tmp_path: Path) -> None:
    state = cheap_state_dict(meta_build("resnet18"))
    path = tmp_path / "wrapped.pth"
    torch.save(wrap(state), path)
    checkpoint = load_checkpoint(path)
    assert checkpoint.container == container and set(checkpoint.tensors) == set(state)
    code, out = run("summary", str(path))
    assert code == 0 and f"state_dict found under '{container}'" in out and "resnet18 (exact" in out


# -- what a checkpoint may expand to is bounded before it is read ----------------------------------

def _deflated_checkpoint(path: Path, megabytes: int) -> Path:
    """A resnet18-shaped key holding ``megabytes`` of zeros, re-zipped with deflate (a few hundred KB)."""
    import zipfile

    plain = path.with_suffix(".plain")
    torch.save({"layer1.0.conv2.weight": torch.zeros(megabytes * 2**20 // 4)}, plain)
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    plain.unlink()
    return path


def test_the_expansion_bound_reads_the_zip_directory_and_takes_a_keyword(tmp_path: Path) -> None:
    from resnet_inspect.checkpoint import MAX_CHECKPOINT_BYTES

    bomb = _deflated_checkpoint(tmp_path / "bomb.pth", 32)
    assert bomb.stat().st_size < 2**20 and MAX_CHECKPOINT_BYTES == 4 * 2**30
    with pytest.raises(ri.InputError, match=r"inflate to 32\.0 MiB \(33,\d{3},\d{3} bytes\), over the limit of 16\.0 MiB "
                       r"\(16,777,216 bytes\) .*decompression bomb"):
        load_checkpoint(bomb, max_bytes=16 * 2**20)
    with pytest.raises(ri.InputError, match="decompression bomb"):
        load_model(bomb, max_bytes=16 * 2**20)
    # Under the bound the file is read as usual; this one is still refused, by torch, for what it is.
    with pytest.raises(ri.InputError) as caught:
        load_checkpoint(bomb, max_bytes=64 * 2**20)
    assert "decompression bomb" not in str(caught.value)


def test_a_legacy_pickle_is_bounded_by_its_size_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "legacy.pth"
    torch.save({"w": torch.zeros(1024)}, path, _use_new_zipfile_serialization=False)
    size = path.stat().st_size
    with pytest.raises(ri.InputError, match=re.escape(f"it is {size / 1024:.1f} KiB ({size:,} bytes), over the limit of 1.0 KiB (1,024 bytes)")):
        load_checkpoint(path, max_bytes=1024)
    assert load_checkpoint(path, max_bytes=size).tensors["w"].shape == (1024,)


def test_max_checkpoint_size_flag_raises_the_bound(tmp_path: Path) -> None:
    bomb = _deflated_checkpoint(tmp_path / "bomb.pth", 32)
    refused = CliRunner().invoke(app, ["--max-checkpoint-size", "16M", "summary", str(bomb)])
    assert refused.exit_code == 2 and "--max-checkpoint-size 1G" in " ".join(refused.output.split())
    raised = CliRunner().invoke(app, ["--max-checkpoint-size", "1G", "summary", str(bomb)])
    assert raised.exit_code == 2 and "decompression bomb" not in raised.output  # past the bound, refused by torch


@pytest.mark.parametrize("text,size", [("4G", 4 * 2**30), ("512M", 512 * 2**20), ("1.5GiB", 3 * 2**29),
                                       ("100", 100), ("8 kb", 8192)])
def test_byte_sizes(text: str, size: int) -> None:
    from resnet_inspect.checkpoint import parse_byte_size

    assert parse_byte_size(text) == size


@pytest.mark.parametrize("text", ["", "0", "G", "-1G", "4X", "1" * 5000])
def test_malformed_byte_sizes(text: str) -> None:
    from resnet_inspect.checkpoint import parse_byte_size

    with pytest.raises(ri.InputError, match="Malformed size"):
        parse_byte_size(text)


@pytest.mark.parametrize("path", ["a\x00b.pth", "x" * 300 + ".pth", "/dev/zero"])
def test_paths_no_file_can_have_are_input_errors(path: str) -> None:
    with pytest.raises(ri.InputError, match="Cannot read"):
        load_checkpoint(path)


# -- any state dict is inferred or refused with InputError (fuzzed) --------------------------------

block_prefix = st.one_of(
    st.builds("layer{}.{}.".format, st.integers(0, 5), st.integers(0, 3)),
    st.builds("stages.{}.blocks.{}.".format, st.integers(0, 4), st.integers(0, 3)))
rests = st.sampled_from(["conv1.weight", "conv2.weight", "conv3.weight", "bn1.running_mean", "bn1.num_batches_tracked",
                         "downsample.0.weight", "se.fc1.weight"])
state_keys = st.one_of(
    st.builds(str.__add__, st.sampled_from(["", "module.", "backbone.body.", "body."]),
              st.builds(str.__add__, block_prefix, rests)),
    st.sampled_from(["conv1.weight", "fc.weight", "fc_yaw.weight", "head.fc.weight", "fpn.fpn_inner1.weight",
                     "fpn.top_blocks.p6.weight", "stem.conv1.weight", "bn1.num_batches_tracked"]),
    st.text(max_size=20))
tensor_shapes = st.lists(st.sampled_from([0, 1, 3, 4, 16, 32, 64, 128, 256, 1000]), max_size=4).map(tuple)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(state_keys, tensor_shapes, max_size=14))
def test_any_state_dict_is_inferred_or_refused(state: dict[str, tuple[int, ...]]) -> None:
    tensors = {k: torch.empty(shape, device="meta") for k, shape in state.items()}
    try:
        inference = infer(tensors, path="fuzz.pth")
    except ri.InputError:
        return
    assert isinstance(inference, Inference) and inference.spec.name in ri.variants()


conv_shapes = st.tuples(*[st.sampled_from([0, 1, 2, 3, 4, 7, 16, 48, 64, 128, 256])] * 4)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["layer1.0.conv1.weight", "layer1.0.conv2.weight", "layer1.0.conv3.weight",
                                        "layer2.0.conv2.weight", "conv1.weight", "fc.weight"]), conv_shapes))
def test_first_block_shapes_are_inferred_or_refused(state: dict[str, tuple[int, ...]]) -> None:
    """The arithmetic on the first block's tensor_shapes (groups, width, planes) meets zeros and odd sizes."""
    try:
        infer({k: torch.empty(shape, device="meta") for k, shape in state.items()}, path="fuzz.pth")
    except ri.InputError:
        pass


@pytest.fixture(scope="module")
def variant_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
    small = ["resnet18", "resnet50", "resnext50_32x4d", "hopenet", "retinanet_r50_fpn", "cifar_resnet20",
             "resnet50d", "resnetv2_50", "seresnet50"]
    with torch.device("meta"):
        return {name: {k: tuple(v.shape) for k, v in ri.build(name).state_dict().items()}
                for name in small if name in ri.variants()}


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_real_state_dicts_are_inferred_or_refused(variant_shapes: dict[str, dict[str, tuple[int, ...]]],
                                                          data: st.DataObject) -> None:
    """Start from a real variant's state_keys and tensor_shapes, then drop state_keys, reshape tensors, add strays."""
    name = data.draw(st.sampled_from(sorted(variant_shapes)))
    state = dict(variant_shapes[name])
    names = sorted(state)
    for key in data.draw(st.lists(st.sampled_from(names), max_size=6)):
        state.pop(key, None)
    for key in data.draw(st.lists(st.sampled_from(names), max_size=4)):
        state[key] = data.draw(tensor_shapes)
    state.update(data.draw(st.dictionaries(state_keys, tensor_shapes, max_size=3)))
    prefix = data.draw(st.sampled_from(["", "module.", "backbone.body.", "model."]))
    tensors = {prefix + k: torch.empty(shape, device="meta") for k, shape in state.items()}
    try:
        inference = infer(tensors, path="fuzz.pth")
    except ri.InputError:
        return
    assert inference.spec.name in ri.variants() and 0 < inference.matched <= inference.total
