"""The command line's bad-input contract: every kind of bad input (sizes, names, options, factories,
checkpoints, snapshots, output paths, models that cannot be traced) ends in exit code 2 and one clear
paragraph on stderr, never exit 3 and never a traceback.

Each case runs the real CLI (``summary``) and checks the exit code and the message; where the
Python API must refuse the same input, a case calls it directly. Messages are compared after
joining their lines, since the console wraps them at its width.
"""
from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import pickle
import stat
import re
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import resnet_inspect as ri
from resnet_inspect import fileio
from resnet_inspect.cli import app


def run(*args: str) -> tuple[int, str]:
    """Exit code and the output (stdout and stderr) as one line of words.

    With RI_EXIT_LOG set, each run appends "exit code<TAB>test id" to that file, so the tally of
    the bad-input cases by exit code is mechanical (docs/security.md, "What is bounded").
    """
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output
    if os.environ.get("RI_EXIT_LOG"):
        with open(os.environ["RI_EXIT_LOG"], "a", encoding="utf-8") as log:
            log.write(f"{result.exit_code}\t{os.environ.get('PYTEST_CURRENT_TEST', '?').split(' ')[0]}\n")
    return result.exit_code, " ".join(result.output.split())


def floor_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


# -- names and option combinations ---------------------------------------------------------------

@pytest.mark.parametrize("name,suggestion", [("resnet5", "resnet50"), ("resnt101", "resnet101"),
                                             ("retinanet_r50", "retinanet_r50_fpn"), ("hopnet", "hopenet")])
def test_unknown_name_suggests_the_closest(name: str, suggestion: str) -> None:
    code, out = run("summary", name)
    assert code == 2 and f"Unknown model '{name}'" in out and "Did you mean" in out and suggestion in out


def test_unknown_name_without_a_close_match_points_to_list() -> None:
    code, out = run("summary", "transformer")
    assert code == 2 and "Did you mean" not in out and "resnet-inspect list" in out


@pytest.mark.parametrize("args,message", [
    (("hopenet", "--fpn", "maskrcnn"), "--fpn does not apply to hopenet"),
    (("resnet18", "--groups", "32"), "A basic block has no grouped 3x3"),
    (("resnet34", "--width-per-group", "128"), "A basic block has no grouped 3x3"),
    (("resnet50", "--fpn", "retinanet", "--output-stride", "16"), "--fpn needs --output-stride 32"),
    (("resnet50", "--output-stride", "12"), "--output-stride must be 32, 16 or 8, not 12"),
    (("resnet50", "--fpn", "pyramid"), "--fpn must be one of maskrcnn, retinanet"),
    (("resnet50", "--norm", "group"), "Unknown norm 'group'"),
    (("resnet50", "--layers", "3,4"), "4 stages"),
    (("resnet50", "--layers", "3,x,6,3"), "Malformed layer list"),
    (("resnet50", "--groups", "0"), "--groups must be a positive integer, not 0"),
    (("resnet50", "--num-classes", "0"), "--num-classes must be a positive integer, not 0"),
    (("cifar_resnet20", "--fpn", "retinanet"), "four-stage trunk"),
])
def test_bad_option_combinations_are_refused(args: tuple[str, ...], message: str) -> None:
    code, out = run("summary", *args)
    assert code == 2 and out.startswith("Error:") and message in out


# Each refused value through the Python API (the same validation serves both) and through the CLI
# where a flag can express it.
@pytest.mark.parametrize("options,message", [
    ({"stride_in_1x1": "no"}, "is a switch and takes True or False, not 'no'"),
    ({"caffe_maxpool": 1}, "is a switch and takes True or False, not 1"),
    ({"layers": (3, 4, 6.7, 3)}, "Malformed layer list"),
    ({"layers": (3, 4, True, 3)}, "Malformed layer list"),
    ({"groups": True}, "takes a whole number, not True"),
    ({"num_classes": 10.5}, "takes a whole number, not 10.5"),
    ({"num_classes": "10"}, "takes a whole number, not '10'"),
    ({"norm": 1}, "takes a name, not 1"),
])
def test_option_of_the_wrong_type_is_refused_not_coerced(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ri.InputError, match=re.escape(message)):
        ri.get_spec("resnet50", **options)
    with pytest.raises(ri.InputError, match=re.escape(message)):
        ri.build("resnet50", **options)


@pytest.mark.parametrize("args,message", [
    (("resnet50", "--num-classes", "1000001"), "over resnet-inspect's limit of 1,000,000 classes"),
    (("hopenet", "--num-bins", "5000000"), "over resnet-inspect's limit of 1,000,000 bins"),
    (("resnet50", "--width-per-group", "100000"), "= 100000 channels per 3x3 is over resnet-inspect's limit of 1024"),
    (("resnet50", "--groups", "1024", "--width-per-group", "8"), "= 8192 channels per 3x3"),
    (("resnet", "--layers", "99999,1,1,1"), "asks for 99999 blocks in one stage; resnet-inspect builds at most 1000"),
])
def test_huge_values_are_refused_up_front(args: tuple[str, ...], message: str) -> None:
    code, out = run("summary", *args)
    assert code == 2 and out.startswith("Error:") and message in out


def test_block_limit_names_the_deepest_published_net_and_takes_the_limit_itself() -> None:
    # cifar_resnet1202 has 6n+2 = 1202 layers, so n = 200 blocks per stage (He et al. 2015, §4.2).
    deepest = (1202 - 2) // 6
    with pytest.raises(ri.InputError, match=re.escape(f"the deepest variant it knows has {deepest})")):
        ri.get_spec("resnet", layers=[1001, 1, 1, 1])
    assert ri.get_spec("resnet", layers=[1000, 1, 1, 1]).layers == (1000, 1, 1, 1)
    # resnext101_64x4d's 64 × 4 = 256 is the widest 3x3 per group count of the zoo; the limit itself is accepted.
    assert ri.get_spec("resnet50", groups=32, width_per_group=32).groups == 32
    with pytest.raises(ri.InputError, match=re.escape(f"the widest variant it knows has {64 * 4})")):
        ri.get_spec("resnet50", groups=32, width_per_group=33)


@pytest.mark.parametrize("args,message", [
    (("resnetv2_50", "--stride-in-1x1"), "the pre-activation bottleneck keeps the stride in its 3x3"),
    (("cifar_resnet20", "--caffe-maxpool"), "--caffe-maxpool changes nothing on cifar_resnet20"),
    (("resnet50", "--num-bins", "10"), "--num-bins changes nothing on resnet50: only hopenet has bins"),
    (("maskrcnn_r50_fpn", "--num-classes", "81"), "--num-classes changes nothing on maskrcnn_r50_fpn: it ends in "
                                                   "a feature pyramid"),
    (("resnet50", "--fpn", "retinanet", "--num-classes", "10"), "it ends in a feature pyramid"),
    (("hopenet", "--num-classes", "10"), "use --num-bins"),
    (("cifar_resnet20", "--output-stride", "8"), "--output-stride does not apply to cifar_resnet20"),
    (("cifar_resnet20", "--output-stride", "32"), "--output-stride does not apply to cifar_resnet20"),
    (("resnet50", "--fpn", ""), "--fpn is empty"),
    (("cifar_resnet20", "--stem", "deep"), "the deep stem gives 64 channels but cifar_resnet20's first stage has 16"),
    (("resnetv2_50", "--shortcut", "A"), "with projection shortcuts (B) only"),
])
def test_options_that_would_do_nothing_or_build_wrong_are_refused(args: tuple[str, ...], message: str) -> None:
    code, out = run("summary", *args)
    assert code == 2 and out.startswith("Error:") and message in out
    assert "avg-down" not in out  # resnetv2_50 --shortcut A used to blame --avg-down


@pytest.mark.parametrize("name,options,message", [
    ("resnet50", {"num_classes": 1_000_001}, "limit of 1,000,000 classes"),
    ("resnet50", {"groups": 32, "width_per_group": 64}, "= 2048 channels per 3x3"),
    ("resnet", {"layers": [99999, 1, 1, 1]}, "asks for 99999 blocks in one stage"),
    ("cifar_resnet56", {"caffe_maxpool": True}, "--caffe-maxpool changes nothing"),
    ("resnet50", {"num_bins": 66}, "--num-bins changes nothing"),
    ("retinanet_r50_fpn", {"num_classes": 80}, "it ends in a feature pyramid"),
    ("cifar_resnet20", {"output_stride": 16}, "--output-stride does not apply"),
    ("resnet50", {"fpn": ""}, "--fpn is empty"),
    ("cifar_resnet20", {"stem": "deep-wide"}, "the deep-wide stem gives 128 channels"),
    ("resnetv2_50", {"shortcut": "A"}, "projection shortcuts (B) only"),
])
def test_the_python_api_refuses_the_same(name: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ri.InputError, match=re.escape(message)):
        ri.build(name, **options)


def test_the_same_options_where_they_do_something_still_work() -> None:
    # The refusals above are about the net, not the flag: on a bottleneck / classifier / hopenet
    # the same options change the built modules as their definitions say.
    msra = ri.build("resnet50", stride_in_1x1=True)
    assert msra.layer2[0].conv1.stride == (2, 2) and msra.layer2[0].conv2.stride == (1, 1)
    # A basic block's first conv is a 3x3 under either placement: the MSRA ResNet-18 of the paper's
    # Table 1 is torchvision's, layer for layer.
    basic = ri.build("resnet18", stride_in_1x1=True)
    assert basic.layer2[0].conv1.stride == (2, 2) and basic.layer2[0].conv1.kernel_size == (3, 3)
    assert ri.inspect("resnet18", stride_in_1x1=True).totals == ri.inspect("resnet18").totals
    assert ri.build("hopenet", num_bins=10).fc_yaw.out_features == 10
    assert ri.build("resnet18", num_classes=7).fc.out_features == 7
    wide = ri.build("cifar_resnet20", stem="deep", shortcut="B")
    assert wide.layer1[0].downsample is not None  # 64 stem channels projected to 16 by a 1x1


def test_width_per_group_rounding_to_zero_channels_exits_2() -> None:
    # int(planes * width_per_group / 64) * groups = int(16 * 2 / 64) * 1 = 0 channels in CIFAR's first stage.
    code, out = run("summary", "cifar_resnet20", "--block", "bottleneck", "--width-per-group", "2")
    assert code == 2 and out.startswith("Error:")


def test_width_per_group_rounding_to_zero_channels_is_refused_up_front() -> None:
    code, out = run("summary", "cifar_resnet20", "--block", "bottleneck", "--width-per-group", "2")
    assert code == 2 and "--width-per-group" in out


def test_output_stride_8_with_the_caffe_max_pool_works() -> None:
    code, out = run("summary", "resnet50", "--caffe-maxpool", "--output-stride", "8")
    assert code == 0, out
    # 224 → conv1 112 → ceil-mode pool ⌈(112 − 3)/2⌉ + 1 = 56 → layer2 halves it once; the dilated
    # layer3 and layer4 keep it.
    pooled = math.ceil((floor_out(224, 7, 2, 3) - 3) / 2) + 1
    c5 = floor_out(pooled, 1, 2, 0)
    report = ri.inspect("resnet50", 224, caffe_maxpool=True, output_stride=8)
    assert report.layer("layer4").output_shapes[0] == (1, 2048, c5, c5) == (1, 2048, 28, 28)


# -- inputs --------------------------------------------------------------------------------------

def test_input_too_small_for_hopenets_fixed_avgpool_names_it_and_its_formula() -> None:
    size = floor_out(128, 7, 2, 3)  # conv1
    size = floor_out(size, 3, 2, 1)  # max pool
    for _ in range(3):  # layer2..layer4 halve it
        size = floor_out(size, 1, 2, 0)
    assert size == 4 and floor_out(size, 7, 7, 0) == 0
    code, out = run("summary", "hopenet", "--input", "128")
    assert code == 2 and "avgpool (AvgPool2d)" in out and f"⌊({size} − 7 + 2·0)/7⌋ + 1 = 0" in out


def test_input_too_small_for_the_caffe_max_pool_names_it() -> None:
    stem = floor_out(1, 7, 2, 3)
    assert stem == 1 and math.ceil((stem - 3) / 2) + 1 == 0
    code, out = run("summary", "resnet50", "--caffe-maxpool", "--input", "1")
    assert code == 2 and "maxpool (MaxPool2d)" in out and "⌈(1 − 3 + 2·0)/2⌉ + 1 = 0" in out


def test_degenerate_one_pixel_input_is_a_warning_not_an_error() -> None:
    code, out = run("summary", "resnet50", "--input", "1")
    assert code == 0 and "Warning:" in out and "1×1" in out


@pytest.mark.parametrize("value,message", [
    ("0", "a dimension of zero or less"),
    ("-3", "Malformed input size '-3'"),
    ("224x-1", "Malformed input size"),
    ("abc", "Malformed input size 'abc'"),
    ("3.5", "Malformed input size '3.5'"),
    ("", "Malformed input size ''"),
    ("1x1x3x224x224", "Malformed input size '1x1x3x224x224'"),
    ("2x0x224x224", "a dimension of zero or less"),
    ("99999999", "unreasonably large"),
])
def test_malformed_input_sizes(value: str, message: str) -> None:
    code, out = run("summary", "resnet18", f"--input={value}")
    assert code == 2 and message in out


# -- module:factory ------------------------------------------------------------------------------

@pytest.fixture
def factories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module of model factories on sys.path, named per test so that imports never collide."""
    name = f"ri_factories_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        MODEL = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
        NOT_CALLABLE = 3

        class Boom(nn.Module):
            def forward(self, x):
                raise RuntimeError("forward exploded")

        BROKEN = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), Boom())

        def good():
            return MODEL

        def broken():
            return BROKEN

        def raises():
            raise ValueError("factory exploded")

        def not_a_module():
            return 42
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


@pytest.mark.parametrize("attr,message", [
    ("missing", "has no callable 'missing'"),
    ("NOT_CALLABLE", "has no callable 'NOT_CALLABLE'"),
    ("raises", "raises() raised ValueError: factory exploded"),
    ("not_a_module", "not_a_module() returned an int, not a torch.nn.Module"),
])
def test_broken_factories(factories: str, attr: str, message: str) -> None:
    code, out = run("summary", f"{factories}:{attr}")
    assert code == 2 and message in out


@pytest.mark.parametrize("source,target,message", [
    ("raise RuntimeError('import exploded')\n", "{m}:make", "Cannot import '{m}' for {m}:make: RuntimeError: import exploded"),
    ("def make(:\n", "{m}:make", "Cannot import '{m}' for {m}:make: SyntaxError"),
    ("import sys\nsys.exit(5)\n", "{m}:make", "Cannot import '{m}' for {m}:make: SystemExit: 5"),
    ("import sys\ndef make():\n    sys.exit(5)\n", "{m}:make", "{m}:make() raised SystemExit: 5"),
    ("", ":make", "':make' is not a factory"),
    ("", "{m}:", "'{m}:' is not a factory"),
])
def test_factory_whose_code_fails_is_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str,
                                                target: str, message: str) -> None:
    """Whatever the user's module does on import or call (raise, fail to parse, sys.exit) ends in
    one paragraph and exit 2: never exit 3 ("a bug in resnet-inspect") and never a silent exit."""
    module = f"ri_failing_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        code, out = run("summary", target.format(m=module))
    finally:
        sys.modules.pop(module, None)
    assert code == 2, out
    assert message.format(m=module) in out


def test_factory_module_that_does_not_exist() -> None:
    code, out = run("summary", "no_such_package_xyz.models:make")
    assert code == 2 and "Cannot import 'no_such_package_xyz.models'" in out


def test_builder_flags_do_not_apply_to_a_factory(factories: str) -> None:
    code, out = run("summary", f"{factories}:good", "--groups", "2")
    assert code == 2 and "apply to variant names" in out


# -- checkpoints ---------------------------------------------------------------------------------

@pytest.fixture
def resnet18_file(tmp_path: Path) -> Path:
    with torch.device("meta"):
        model = ri.build("resnet18")
    zero = torch.zeros(())
    path = tmp_path / "resnet18.pth"
    torch.save({k: zero.to(v.dtype).expand(v.shape) for k, v in model.state_dict().items()}, path)
    return path


def test_truncated_checkpoint(resnet18_file: Path) -> None:
    data = resnet18_file.read_bytes()
    cut = resnet18_file.with_name("cut.pth")
    cut.write_bytes(data[: len(data) // 2])
    code, out = run("summary", str(cut))
    assert code == 2 and f"Cannot read {cut} as a PyTorch checkpoint" in out and "truncated" in out


@pytest.mark.parametrize("content", [b"name,value\nlr,0.1\n", b"", b"PK\x03\x04 not really a zip", bytes(range(256))])
def test_file_that_is_not_a_checkpoint(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    code, out = run("summary", str(path))
    assert code == 2 and f"Cannot read {path}" in out


def test_missing_checkpoint_file(tmp_path: Path) -> None:
    code, out = run("summary", str(tmp_path / "nowhere.pth"))
    assert code == 2 and "No such checkpoint file" in out


class _Payload:
    """Unpickling this calls ``func(*args)``: the classic malicious checkpoint."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


def _payloads(marker: Path) -> dict[str, _Payload]:
    """Payloads that create ``marker``, by the name torch's safe unpickler gives their global."""
    return {"posix.system": _Payload(os.system, f"touch {marker}"),
            "exec": _Payload(exec, f"open({str(marker)!r}, 'w').close()")}


@pytest.mark.parametrize("refused", ["posix.system", "exec"])
@pytest.mark.parametrize("writer", ["torch.save", "pickle protocol 2"])
def test_malicious_reduce_never_runs(refused: str, writer: str, tmp_path: Path) -> None:
    if refused == "posix.system" and os.name != "posix":
        pytest.skip("os.system pickles as posix.system on POSIX only")
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    if writer == "torch.save":
        torch.save({"conv1.weight": torch.zeros(1), "extra": _payloads(marker)[refused]}, path)
    else:  # a plain pickle: the payload is the first global the loader meets
        path.write_bytes(pickle.dumps({"extra": _payloads(marker)[refused]}, protocol=2))
    code, out = run("summary", str(path))
    assert code == 2 and f"the global '{refused}'" in out and "--trust-pickle" in out
    assert not marker.exists()
    # The payload is live: a plain, trusting load runs it. That is what --trust-pickle means.
    code, out = run("--trust-pickle", "summary", str(path))
    assert marker.exists() and code == 2


def test_modern_plain_pickle_is_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"w": _payloads(marker)["exec"]}, protocol=pickle.HIGHEST_PROTOCOL))
    code, out = run("summary", str(path))
    assert code == 2 and "refuses it" in out and "--trust-pickle" in out and not marker.exists()


@pytest.mark.parametrize("zipped", [True, False])
def test_argparse_namespace_next_to_the_weights_is_read_as_data(zipped: bool, tmp_path: Path) -> None:
    """Old training scripts save their argparse options beside the state_dict. The file loads, the
    weights are the saved ones, and the note says the Namespace was allowed."""
    import argparse

    model = ri.build("resnet18")
    path = tmp_path / "with_args.pth"
    torch.save({"state_dict": model.state_dict(), "args": argparse.Namespace(lr=0.1, arch="resnet18")}, path,
               _use_new_zipfile_serialization=zipped)
    code, out = run("summary", str(path))
    assert code == 0 and "state_dict found under 'state_dict'" in out
    assert "note: 'args' holds an argparse.Namespace (training options), read as plain data" in out
    from resnet_inspect.checkpoint import load_model

    loaded, _ = load_model(path)
    assert torch.equal(loaded.conv1.weight, model.conv1.weight)


def test_payload_inside_an_argparse_namespace_still_never_runs(tmp_path: Path) -> None:
    import argparse

    marker = tmp_path / "pwned"
    path = tmp_path / "evil_args.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)},
                "args": argparse.Namespace(lr=_payloads(marker)["exec"])}, path)
    code, out = run("summary", str(path))
    assert code == 2 and "the global 'exec'" in out and "--trust-pickle" in out and not marker.exists()


def test_a_training_object_other_than_namespace_is_named_and_refused(tmp_path: Path) -> None:
    path = tmp_path / "with_config.pth"
    path.write_bytes(pickle.dumps({"state_dict": {}, "cfg": TrainConfig()}, protocol=2))
    code, out = run("summary", str(path))
    assert code == 2 and f"the global '{TrainConfig.__module__}.TrainConfig'" in out
    assert "training state saved next to the weights" in out
    assert "--trust-pickle" in out


class TrainConfig:
    """Stands for a training script's own config class."""


def test_state_dict_that_fits_no_resnet(tmp_path: Path, resnet18_file: Path) -> None:
    state = torch.load(resnet18_file, weights_only=True)
    state["layer2.1.conv1.weight"] = torch.zeros(128, 64, 3, 3)  # resnet18 has 128 in-channels here
    path = tmp_path / "odd.pth"
    torch.save(state, path)
    code, out = run("summary", str(path))
    assert code == 2 and "fit no ResNet" in out
    assert "layer2.1.conv1.weight is 128×64×3×3 but resnet18 needs 128×128×3×3" in out


@pytest.mark.parametrize("state,message", [
    ({"encoder.weight": torch.zeros(8, 4), "decoder.weight": torch.zeros(4, 8)}, "no key names a residual block"),
    ({"layer1.0.conv1.weight": torch.zeros(64, 64, 3, 3), "layer1.0.conv2.weight": torch.zeros(64, 64)},
     "a ResNet's 3x3 conv weight is 4-D"),
    ({"layer1.0.conv2.weight": torch.zeros(64, 48, 3, 3), "layer1.0.conv3.weight": torch.zeros(256, 64, 1, 1)},
     "no grouped bottleneck has these shapes"),
    ({"layer1.0.conv2.weight": torch.zeros(64, 64, 3, 3), "layer1.0.conv3.weight": torch.zeros(0, 64, 1, 1)},
     "no grouped bottleneck has these shapes"),
    ({"layer1.0.conv1.weight": torch.zeros(64, 64, 3, 3), "layer3.0.conv1.weight": torch.zeros(64, 64, 3, 3)},
     "not numbered 1, 2, 3"),
    ({"layer1.0.conv1.weight": torch.zeros(64, 64, 3, 3)}, "Cannot tell the block type"),
])
def test_shapes_that_fit_no_resnet_say_what_does_not_fit(state: dict, message: str, tmp_path: Path) -> None:
    path = tmp_path / "odd.pth"
    torch.save(state, path)
    code, out = run("summary", str(path))
    assert code == 2 and message in out


# -- output paths --------------------------------------------------------------------------------

def test_output_into_a_missing_directory(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "dir" / "out.json"
    with pytest.raises(ri.InputError, match="does not exist"):
        fileio.atomic_write(target, "{}")
    code, out = run("summary", "resnet18", "-o", str(target))
    assert code == 2 and "does not exist" in out and not target.parent.exists()


def _unwritable_directory(tmp_path: Path) -> Path:
    """A directory this process cannot create files in. Root ignores permission bits, so there
    the test uses /proc/self, which no one can add files to."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):
        locked.chmod(0o700)
        return Path("/proc/self")
    return locked


def test_output_into_an_unwritable_directory(tmp_path: Path) -> None:
    directory = _unwritable_directory(tmp_path)
    target = directory / "out.json"
    with pytest.raises(ri.InputError, match="is not writable"):
        fileio.check_writable(target)
    code, out = run("summary", "resnet18", "-o", str(target))
    assert code == 2 and "is not writable" in out and not target.exists()


def test_existing_output_is_kept_without_force(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    target.write_text("precious")
    with pytest.raises(ri.InputError, match="already exists; pass --force"):
        fileio.atomic_write(target, "new", force=False)
    code, out = run("summary", "resnet18", "-o", str(target))
    assert code == 2 and "already exists; pass --force" in out and target.read_text() == "precious"
    code, out = run("summary", "resnet18", "-o", str(target), "--force")
    assert code == 0 and target.read_text() != "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


class _FullDisk:
    """A file whose disk fills up halfway through the first write."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def write(self, data: bytes) -> int:
        self.handle.write(data[: len(data) // 2])
        self.handle.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


def test_full_disk_during_a_write_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "summary.json"
    old = b'{"model": "the previous run"}\n' * 100
    target.write_bytes(old)
    digest = hashlib.sha256(old).hexdigest()
    real_fdopen = os.fdopen
    monkeypatch.setattr(fileio.os, "fdopen", lambda fd, *a, **k: _FullDisk(real_fdopen(fd, *a, **k)))

    with pytest.raises(ri.InputError, match="No space left on device"):
        fileio.atomic_write(target, "x" * 100_000)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == digest
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # no temporary file left behind

    code, out = run("summary", "resnet18", "-o", str(target), "--force")
    assert code == 2 and "No space left on device" in out
    assert hashlib.sha256(target.read_bytes()).hexdigest() == digest
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_writing_through_a_symlink_keeps_the_link_and_replaces_its_target(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    real = tmp_path / "real" / "summary.json"
    real.write_text("old")
    real.chmod(0o600)
    link = tmp_path / "summary.json"
    link.symlink_to(real)
    assert fileio.atomic_write(link, "new") == link
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == "new" and (real.stat().st_mode & 0o777) == 0o600
    # the temporary file went beside the target, and nothing is left of it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["real", "summary.json"]
    assert [p.name for p in real.parent.iterdir()] == ["summary.json"]

    code, out = run("summary", "resnet18", "-o", str(link), "--force")
    assert code == 0 and link.is_symlink() and json.loads(real.read_text())["model"] == "resnet18"


def test_a_dangling_symlink_is_kept_and_its_target_created(tmp_path: Path) -> None:
    link = tmp_path / "out.txt"
    link.symlink_to(tmp_path / "made.txt")
    fileio.atomic_write(link, "data")
    assert link.is_symlink() and (tmp_path / "made.txt").read_text() == "data"


def test_a_symlink_loop_is_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(ri.InputError, match="never reaches a file"):
        fileio.atomic_write(a, "x")
    assert a.is_symlink() and b.is_symlink()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
def test_a_fifo_is_refused_and_kept(tmp_path: Path) -> None:
    fifo = tmp_path / "out.txt"
    os.mkfifo(fifo)
    with pytest.raises(ri.InputError, match=re.escape("it is a named pipe (FIFO), not a regular file")):
        fileio.atomic_write(fifo, "x")
    code, out = run("summary", "resnet18", "-o", str(fifo), "--force")
    assert code == 2 and "named pipe (FIFO)" in out
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    link = tmp_path / "link.txt"
    link.symlink_to(fifo)
    with pytest.raises(ri.InputError, match=re.escape(f"{link} (a link to {fifo}): it is a named pipe")):
        fileio.check_writable(link)


def test_a_device_is_refused() -> None:
    with pytest.raises(ri.InputError, match="it is a character device, not a regular file"):
        fileio.check_writable("/dev/null")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.parametrize("error", [
    MemoryError(),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: you tried to "
                 "allocate 411041792 bytes."),
])
def test_real_forward_out_of_memory_suggests_the_meta_trace(error: Exception, monkeypatch: pytest.MonkeyPatch) -> None:
    real_conv = torch.nn.Conv2d._conv_forward

    def conv(self: torch.nn.Conv2d, x: torch.Tensor, *args: Any) -> torch.Tensor:
        if not x.is_meta:
            raise error
        return real_conv(self, x, *args)

    monkeypatch.setattr(torch.nn.Conv2d, "_conv_forward", conv)
    code, out = run("summary", "resnet18", "--real")
    assert code == 2 and out.startswith("Error:") and "Out of memory: drop --real" in out
    assert "at conv1 (Conv2d)" in out  # the first layer that ran for real is named
    code, out = run("summary", "resnet18")  # the suggested meta trace does not allocate, so it runs
    assert code == 0


def test_out_of_memory_while_building_for_real_is_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_memory(self: torch.nn.Conv2d) -> None:
        if not self.weight.is_meta:  # real weights: the allocation "fails" as it would for a huge net
            raise MemoryError()

    monkeypatch.setattr(torch.nn.Conv2d, "reset_parameters", no_memory)
    code, out = run("summary", "resnet18", "--real")
    assert code == 2 and "ran out of memory (MemoryError" in out and "drop --real" in out


def test_a_runtime_error_that_is_not_about_memory_is_not_called_out_of_memory(monkeypatch: pytest.MonkeyPatch
                                                                              ) -> None:
    def broken(self: torch.nn.Conv2d, x: torch.Tensor, *args: Any) -> torch.Tensor:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(torch.nn.Conv2d, "_conv_forward", broken)
    code, out = run("summary", "resnet18", "--real")
    assert code == 2 and "shapes cannot be multiplied" in out and "Out of memory" not in out


# -- the bad-input table ------------------------------------------------------------------------
# Each case makes its files in a fresh folder, then runs the CLI: bad input ends in exit 2 and one
# paragraph that says what is wrong, never exit 3 ("a bug in resnet-inspect") and never a hang.

DIGITS = "9" * 5000  # Python 3.11 refuses int() of over 4300 digits with a ValueError


def _resnet18_state() -> dict[str, torch.Tensor]:
    """resnet18's keys and shapes, each a stride-0 view of one zero (a few bytes on disk)."""
    with torch.device("meta"):
        model = ri.build("resnet18")
    return {k: torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in model.state_dict().items()}


def _save(tmp: Path, name: str, obj: Any, **kwargs: Any) -> str:
    path = tmp / name
    torch.save(obj, path, **kwargs)
    return str(path)


def _with_weight(tmp: Path, tensor: torch.Tensor) -> str:
    """resnet18's state_dict with layer1.0.conv1.weight replaced by ``tensor``."""
    state = _resnet18_state()
    state["layer1.0.conv1.weight"] = tensor
    return _save(tmp, "odd.pth", state)


def _torchscript(tmp: Path) -> str:
    path = tmp / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    return str(path)


def _deflated(tmp: Path, megabytes: int = 64) -> str:
    """A torch.save file re-zipped with deflate: ``megabytes`` of zeros in well under 1 MB."""
    import zipfile

    plain = tmp / "plain.pth"
    torch.save({"layer1.0.conv2.weight": torch.zeros(megabytes * 2**20 // 4)}, plain)
    bomb = tmp / "bomb.pth"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    plain.unlink()
    assert bomb.stat().st_size < 2**20
    return str(bomb)


def _claims_in_directory(tmp: Path, claim: int = 0xFFFFFF00) -> str:
    """A small torch.save file whose zip central directory says each entry inflates to ``claim``
    bytes: the headers are all the loader may read before it decides."""
    path = Path(_save(tmp, "claims.pth", {"layer1.0.conv1.weight": torch.zeros(4)}))
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at != -1:  # each central directory header: the uncompressed size is at offset 24
        data[at + 24:at + 28] = claim.to_bytes(4, "little")
        at = data.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(data))
    return str(path)


def _pickle_claims_storage(tmp: Path) -> str:
    """data.pkl declares a storage of 2^30 floats; the archive holds 16 bytes of it."""
    import struct
    import zipfile

    small = Path(_save(tmp, "small.pth", {"w": torch.ones(4)}))
    with zipfile.ZipFile(small) as src:
        entries = [(info, src.read(info.filename)) for info in src.infolist()]
    path = tmp / "claims_storage.pth"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info, data in entries:
            if info.filename.endswith("data.pkl"):  # BININT1 4 (numel, then size) -> BININT 2^30
                data = data.replace(b"K\x04", b"J" + struct.pack("<i", 2**30))
            dst.writestr(info, data)
    return str(path)


def _legacy_claims_storage(tmp: Path) -> str:
    """A legacy (non-zip) torch.save whose storage header claims 2^31 elements."""
    import struct

    path = Path(_save(tmp, "legacy.pth", {"w": torch.ones(1000)}, _use_new_zipfile_serialization=False))
    data = path.read_bytes()
    at = data.rfind(struct.pack("<q", 1000))
    path.write_bytes(data[:at] + struct.pack("<q", 2**31) + data[at + 8:])
    return str(path)


def _fifo(tmp: Path, name: str) -> str:
    if not hasattr(os, "mkfifo"):
        pytest.skip("named pipes need a POSIX system")
    path = tmp / name
    os.mkfifo(path)
    return str(path)


def _link(tmp: Path, name: str, to: str) -> str:
    if not os.path.exists(to):
        pytest.skip(f"{to} does not exist on this system")
    (tmp / name).symlink_to(to)
    return str(tmp / name)


def _loop(tmp: Path, name: str) -> str:
    (tmp / name).symlink_to(tmp / name)
    return str(tmp / name)


def _sparse_file(tmp: Path, size: int) -> str:
    """A file of ``size`` bytes that takes no disk space (a hole)."""
    path = tmp / "huge.json"
    with open(path, "wb") as handle:
        handle.truncate(size)
    return str(path)


def _snapshot_with(tmp: Path, old: str, new: str) -> str:
    from resnet_inspect import snapshot

    text = snapshot.dumps(snapshot.take("resnet18", 32)).replace(old, new, 1)
    path = tmp / "digits.json"
    path.write_text(text)
    return str(path)


def _factory(tmp: Path, body: str, at_import: bool = False) -> str:
    """A module ``name:make`` in ``tmp`` (on sys.path for the test), whose ``make`` runs ``body``."""
    name = f"ri_case_{abs(hash(tmp)) % 10**8}"
    code = "import sys, os\nfrom torch import nn\n"
    code += (body + "\ndef make():\n    return nn.Conv2d(3, 4, 3)\n") if at_import else \
        f"def make():\n    {body}\n    return nn.Conv2d(3, 4, 3)\n"
    (tmp / f"{name}.py").write_text(code)
    return f"{name}:make"


def _forward(tmp: Path, body: str) -> str:
    """``name:make``: a conv, then a module whose forward runs ``body``."""
    name = f"ri_case_{abs(hash(tmp)) % 10**8}"
    (tmp / f"{name}.py").write_text("import sys\nfrom torch import nn\n"
                                    f"class Odd(nn.Module):\n    def forward(self, x):\n        {body}\n"
                                    "        return x\n"
                                    "def make():\n    return nn.Sequential(nn.Conv2d(3, 3, 1), Odd())\n")
    return f"{name}:make"


def _deep_factory(tmp: Path) -> str:
    return _factory(tmp, "m = nn.Conv2d(3, 3, 1)\n    for _ in range(3000):\n        s = nn.Sequential()\n"
                         "        s.add_module('x', m)\n        m = s\n    return m")


LONG = "a" * 300  # over the 255 bytes a file name may have on Linux and macOS

# (id, argv made from the case's folder, a fragment the one paragraph says). Every case exits 2.
CASES: list[tuple[str, Any, str]] = [
    # numbers: thousands of digits in every int-taking option, sizes that overflow a tensor
    ("input-digits", lambda t: ["summary", "resnet18", "--input", DIGITS], "unreasonably large"),
    ("input-digits-hxw", lambda t: ["summary", "resnet18", "--input", f"224x{DIGITS}"], "unreasonably large"),
    ("layers-digits", lambda t: ["summary", "resnet", "--layers", f"{DIGITS},1,1,1"], "Malformed layer list"),
    *[(f"{flag[2:]}-digits", (lambda flag: lambda t: ["summary", "resnet50", flag, DIGITS])(flag), "is not a valid int")
      for flag in ("--num-classes", "--groups", "--width-per-group", "--output-stride", "--pad-to")],
    ("num-bins-digits", lambda t: ["summary", "hopenet", "--num-bins", DIGITS], "is not a valid int"),
    ("depth-digits", lambda t: ["tree", "resnet18", "--depth", DIGITS], "is not a valid int"),
    ("explain-call-digits", lambda t: ["explain", "resnet18", f"conv1 (call {DIGITS})"], "ask for (call 1)"),
    ("explain-name-100k", lambda t: ["explain", "resnet18", "x" * 100_000], "(100,000 characters)"),
    ("layers-digits-clipped", lambda t: ["summary", "resnet", "--layers", DIGITS], "(5,000 characters)"),
    ("pad-to-huge", lambda t: ["summary", "resnet18", "--pad-to", "99999999999"], "--pad-to must be a positive"),
    ("pad-to-max-int64", lambda t: ["summary", "resnet18", "--pad-to", str(2**63 - 1)], "--pad-to must be a positive"),
    ("pad-to-overflows", lambda t: ["summary", "resnet18", "--input", "1000000x3x1000x1000", "--pad-to", "999999"],
     "more than a tensor can hold"),
    ("input-numel-2^40-squared", lambda t: ["summary", "resnet18", "--input", "1000000x1000000x1000000x1000000"],
     "more than a tensor can hold"),
    ("input-bytes-overflow", lambda t: ["summary", "resnet18", "--input", "1000000x3x1000000x1000000"],
     "more than a tensor can hold"),
    ("snapshot-json-digits", lambda t: ["check", _snapshot_with(t, '"params": ', '"params": ' + DIGITS)],
     "it holds a number of 5,00"),
    ("max-checkpoint-size-malformed", lambda t: ["--max-checkpoint-size", "8Q", "summary", _with_weight(
        t, torch.zeros(64, 64, 3, 3))], "Malformed size '8Q'"),
    # names and paths over the OS limit
    ("checkpoint-name-too-long", lambda t: ["summary", str(t / f"{LONG}.pth")], "longer than the file system allows"),
    ("model-name-too-long", lambda t: ["summary", LONG], "Unknown model"),
    ("factory-name-too-long", lambda t: ["summary", f"{'x' * 5000}:make"], "Cannot import"),
    ("output-name-too-long", lambda t: ["summary", "resnet18", "-o", str(t / f"{LONG}.json")],
     "longer than the file system allows"),
    ("snapshot-name-too-long", lambda t: ["check", str(t / f"{LONG}.json")], "longer than the file system allows"),
    # files that are not regular, or whose reading fails
    ("checkpoint-fifo", lambda t: ["summary", _fifo(t, "weights.pth")], "is a named pipe (FIFO), not a checkpoint"),
    ("checkpoint-dev-zero", lambda t: ["summary", _link(t, "zero.pth", "/dev/zero")], "is a character device"),
    ("checkpoint-link-loop", lambda t: ["summary", _loop(t, "loop.pth")], "never reaches a file (a loop)"),
    # Root reads any file whatever its mode bits, so the failing read is a real one: /proc/self/mem is a
    # regular file whose first bytes (address 0, never mapped) fail with EIO, for root too.
    ("checkpoint-read-fails", lambda t: ["summary", _link(t, "mem.pth", "/proc/self/mem")],
     "Cannot read the checkpoint file"),
    ("check-fifo", lambda t: ["check", _fifo(t, "shapes.json")], "is a named pipe (FIFO), not a snapshot file"),
    ("check-dev-zero", lambda t: ["check", "/dev/zero"], "is a character device, not a snapshot file"),
    ("check-dev-urandom", lambda t: ["check", "/dev/urandom"], "is a character device, not a snapshot file"),
    ("check-link-loop", lambda t: ["check", _loop(t, "loop.json")], "never reaches a file (a loop)"),
    ("check-over-64-MiB", lambda t: ["check", _sparse_file(t, 64 * 2**20 + 1)], "over the 67,108,864 a snapshot"),
    # checkpoints holding what no weight can be
    ("checkpoint-sparse-coo", lambda t: ["summary", _with_weight(t, torch.zeros(64, 64, 3, 3).to_sparse())],
     "is a sparse tensor (sparse_coo)"),
    ("checkpoint-sparse-csr", lambda t: ["summary", _with_weight(t, torch.zeros(64, 576).to_sparse_csr())],
     "is a sparse tensor (sparse_csr)"),
    ("checkpoint-nested", lambda t: ["summary", _with_weight(t, torch.nested.nested_tensor(
        [torch.zeros(2), torch.zeros(3)]))], "is a nested tensor"),
    ("checkpoint-quantized", lambda t: ["summary", _with_weight(t, torch.quantize_per_tensor(
        torch.zeros(64, 64, 3, 3), 0.1, 0, torch.qint8))], "is a quantized tensor (qint8)"),
    ("checkpoint-complex", lambda t: ["summary", _with_weight(t, torch.zeros(64, 64, 3, 3, dtype=torch.complex64))],
     "holds complex64 numbers"),
    ("checkpoint-torchscript", lambda t: ["summary", _torchscript(t)], "is a TorchScript archive"),
    ("checkpoint-holds-an-int", lambda t: ["summary", _save(t, "five.pth", 5)], "holds an int, not a state_dict"),
    # decompression bombs and storage claims, judged before anything is inflated
    ("checkpoint-deflate-bomb", lambda t: ["--max-checkpoint-size", "16M", "summary", _deflated(t)],
     "decompression bomb"),
    ("checkpoint-directory-claims-8-GiB", lambda t: ["summary", _claims_in_directory(t)], "decompression bomb"),
    ("checkpoint-pickle-claims-storage", lambda t: ["summary", _pickle_claims_storage(t)], "Cannot read"),
    ("checkpoint-legacy-claims-storage", lambda t: ["summary", _legacy_claims_storage(t)], "Cannot read"),
    # the user's code: a debugger, a prompt, an exit, a model nested past the recursion limit
    ("factory-breakpoint", lambda t: ["summary", _factory(t, "breakpoint()")], "called breakpoint()"),
    ("factory-breakpoint-on-import", lambda t: ["summary", _factory(t, "breakpoint()", at_import=True)],
     "called breakpoint()"),
    # pdb.Pdb().set_trace() is what pdb.set_trace() does; pytest swaps the module function for its own.
    ("factory-pdb-set-trace", lambda t: ["summary", _factory(t, "import pdb; pdb.Pdb().set_trace()")],
     "read from standard input"),
    ("factory-code-interact", lambda t: ["summary", _factory(t, "import code; code.interact()")],
     "read from standard input"),
    ("factory-input", lambda t: ["summary", _factory(t, "input('size? ')")], "read from standard input"),
    ("factory-sys-exit", lambda t: ["summary", _factory(t, "sys.exit(0)")], "it called sys.exit(0)"),
    ("factory-sys-exit-on-import", lambda t: ["summary", _factory(t, "sys.exit(0)", at_import=True)],
     "it called sys.exit(0)"),
    ("model-nested-too-deep", lambda t: ["summary", _deep_factory(t)], "nested too deep"),
    # a trusted pickle's code (--trust-pickle runs it by design)
    ("trusted-pickle-sys-exit", lambda t: ["--trust-pickle", "summary", _save(t, "exits.pth", {
        "w": _Payload(sys.exit, 0)})], "called sys.exit(0)"),
    ("trusted-pickle-breakpoint", lambda t: ["--trust-pickle", "summary", _save(t, "stops.pth", {
        "w": _Payload(breakpoint)})], "called breakpoint()"),
    ("factory-generator-exit", lambda t: ["summary", _factory(t, "raise GeneratorExit('stop')")],
     "raised GeneratorExit: stop"),
    # the model's own code, run by the trace: its forward
    *[(f"forward-{what}-{command}", (lambda body, command: lambda t: [command, _forward(t, body)])(body, command),
       message)
      for what, body, message in (("sys-exit", "sys.exit(0)", "called sys.exit(0)"),
                                  ("breakpoint", "breakpoint()", "called breakpoint()"),
                                  ("input", "input()", "read from standard input"))
      for command in ("summary", "snapshot")],
]


@pytest.mark.parametrize("make,message", [pytest.param(make, message, id=name) for name, make, message in CASES])
def test_bad_input_table(make: Any, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    try:
        code, out = run(*make(tmp_path))
    finally:
        for name in set(sys.modules) - before:
            if name.startswith("ri_case_"):
                del sys.modules[name]
    assert code == 2, out
    assert message in out, out
    assert "Internal error" not in out and "bug in resnet-inspect" not in out


@pytest.mark.parametrize("body", ["import pdb; pdb.set_trace()", "breakpoint()", "import code; code.interact()"])
def test_a_factory_that_waits_for_a_terminal_does_not_hang(body: str, tmp_path: Path) -> None:
    """The real CLI, with a standard input that stays open and never answers (a CI runner's):
    before the fix it waited for ever at the (Pdb) prompt. The timeout only ends a hang."""
    import subprocess

    target = _factory(tmp_path, body)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]), "PYTHONBREAKPOINT": ""}
    with subprocess.Popen([sys.executable, "-m", "resnet_inspect", "summary", target], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, env=env) as proc:
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"{target} ({body}) left resnet-inspect waiting on standard input")
    assert proc.returncode == 2
    assert b"breakpoint()" in err or b"read from standard input" in err


@pytest.mark.parametrize("bug", [False, True], ids=["bad input", "bug"])
def test_debug_adds_the_traceback_and_keeps_the_exit_code(bug: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """--debug shows the traceback; the verdict stays 2 for bad input and 3 for a bug (it used to become 1)."""
    from resnet_inspect.analysis import inspect as engine

    if bug:
        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("simulated")

        monkeypatch.setattr(engine, "inspect", broken)
    result = CliRunner().invoke(app, ["--debug", "summary", "resnet18" if bug else "resnet5O"])
    assert result.exit_code == (3 if bug else 2), result.output
    assert "Traceback (most recent call last)" in result.stderr
    said = " ".join(result.stderr.split())
    assert ("Internal error: RuntimeError: simulated." if bug else "Unknown model 'resnet5O'") in said


def test_a_255_byte_output_name_is_written(tmp_path: Path) -> None:
    """The longest legal name: the temporary file beside it gets a shortened name, so it fits too."""
    name = "s" * 250 + ".json"
    assert len(name.encode()) == 255
    code, out = run("summary", "resnet18", "-o", str(tmp_path / name))
    assert code == 0, out
    assert json.loads((tmp_path / name).read_text())["model"] == "resnet18"
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left
    multibyte = "é" * 125 + ".json"  # 255 bytes in UTF-8, 130 characters
    assert len(multibyte.encode()) == 255
    fileio.atomic_write(tmp_path / multibyte, "{}")
    assert (tmp_path / multibyte).read_text() == "{}"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permission bits; "
                    "test_bad_input_table[checkpoint-read-fails] covers the failing read as root")
def test_unreadable_checkpoint(tmp_path: Path) -> None:
    path = Path(_save(tmp_path, "locked.pth", _resnet18_state()))
    path.chmod(0)
    code, out = run("summary", str(path))
    assert code == 2 and "permission denied" in out


HUGE = 10**5000  # str() and repr() of it raise ValueError in Python 3.11: no message may try


@pytest.mark.parametrize("call", [
    lambda: ri.get_spec("resnet50", num_classes=HUGE), lambda: ri.get_spec("resnet50", groups=-HUGE),
    lambda: ri.get_spec("resnet", layers=[HUGE, 1, 1, 1]), lambda: ri.build("resnet50", width_per_group=HUGE),
    lambda: ri.get_spec("resnet50", output_stride=HUGE), lambda: ri.inspect("resnet18", HUGE),
    lambda: ri.inspect("resnet18", (HUGE, 224)), lambda: ri.inspect(torch.nn.Linear(2, 2), (HUGE, 2)),
    lambda: ri.inspect("resnet18", 64, pad_to=HUGE),
], ids=["num_classes", "groups", "layers", "width_per_group", "output_stride", "size", "size-tuple", "shape",
        "pad_to"])
def test_integers_of_thousands_of_digits_through_the_api(call: Any) -> None:
    with pytest.raises(ri.InputError, match="thousands of digits|digits, far over"):
        call()


def test_an_os_error_that_is_not_about_a_path_stays_an_internal_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mapping of OSError to bad input is for errors on a path the user gave; any other is a bug
    in resnet-inspect and says so (exit 3), rather than escaping as a traceback."""
    from resnet_inspect.analysis import inspect as engine

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EIO, "simulated")

    monkeypatch.setattr(engine, "inspect", broken)
    result = CliRunner().invoke(app, ["summary", "resnet18"])  # not run(): a simulated bug is no bad-input case
    assert result.exit_code == 3 and "Internal error" in result.output and "Traceback" not in result.output


# -- memory (issue 17) -------------------------------------------------------------------------------
@pytest.mark.parametrize("args,message", [
    (("--fit", "lots"), "--fit: Malformed size 'lots'"),
    (("--fit", "0"), "--fit: Malformed size '0'"),
    (("--fit", "-1G"), "--fit: Malformed size '-1G'"),
    (("--fit", "24XB"), "--fit: Malformed size '24XB'"),
    (("--batch", "0"), "The batch size must be 1 or more, not 0"),
    (("--batch", "-3"), "The batch size must be 1 or more, not -3"),
    (("--dtype", "int8"), "Unknown dtype 'int8'"),
    (("--amp", "fp8"), "Unknown autocast dtype 'fp8'"),
    (("--amp", "bf16", "--dtype", "float16"), "--amp keeps float32 master weights"),
    (("--optimizer", "lamb"), "Unknown optimizer 'lamb'"),
    (("--device", "tpu"), "Unknown device 'tpu'"),
    (("--format", "csv"), "Unknown format 'csv'"),
    (("--freeze", "layer9"), "--freeze layer9: the model has no module of that name"),
    (("--input", "0x32"), "dimension of zero or less"),
])
def test_bad_memory_options_exit_2(args: tuple[str, ...], message: str) -> None:
    code, out = run("memory", "cifar_resnet20", *args)
    assert code == 2 and out.startswith("Error:") and message in out, out


@pytest.mark.parametrize("args,message", [
    # The top-down add of a scale_factor=2 pyramid fails at 800×1333, as summary says (it was exit 3).
    (("retinanet_r50_fpn", "--input", "800x1333", "--train"), "its FPN upsamples by scale_factor=2"),
    # One value per BatchNorm channel in train mode: torch refuses the real step too.
    (("resnet18", "--input", "32", "--train"), "cannot take a training step"),
])
def test_inputs_memory_cannot_follow_exit_2(args: tuple[str, ...], message: str) -> None:
    code, out = run("memory", *args)
    assert code == 2 and out.startswith("Error:") and message in out, out
