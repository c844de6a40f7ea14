"""Issue 7, robustness: parsers fuzzed with hypothesis, and a user's model left exactly as it was.

Every parser of user input must return a valid result or raise InputError: no other exception
type, whatever it is given.
"""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from typer.testing import CliRunner

import resnet_inspect as ri
from resnet_inspect.checkpoint import Inference, infer
from resnet_inspect.cli import app
from resnet_inspect.inputs import parse_input_size
from resnet_inspect.variants import MAX_BLOCKS, MAX_OUTPUTS, MAX_WIDTH, OPTION_NAMES, parse_layers
from tests.conftest import state_checksum

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Python values a caller might pass where a size or a layer list is expected. Infinity is left out
# here: it is a known bug, pinned by test_infinite_size_is_an_input_error below.
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_infinity=False),
                    st.text(max_size=12), st.binary(max_size=8))
anything = st.one_of(scalars, st.lists(scalars, max_size=6), st.tuples(scalars, scalars),
                     st.dictionaries(st.text(max_size=3), scalars, max_size=3))
# Text built from the characters the size and layer syntaxes use, so the parsers' corners get hit.
size_text = st.text(alphabet="0123456789x×, -+.e\t", max_size=20)


def _valid_or_input_error(parse: Any, value: Any) -> Any:
    try:
        return parse(value)
    except ri.InputError:
        return None


@FUZZ
@given(st.one_of(st.text(max_size=30), size_text, anything))
def test_input_size_parser_returns_nchw_or_input_error(value: Any) -> None:
    size = _valid_or_input_error(parse_input_size, value)
    if size is not None:
        assert len(size) == 4 and all(type(d) is int and 1 <= d <= 1_000_000 for d in size)


@pytest.mark.parametrize("value", [(224, float("inf")), [float("-inf")]])
def test_infinite_size_is_an_input_error(value: Any) -> None:
    with pytest.raises(ri.InputError):
        parse_input_size(value)


@FUZZ
@given(st.lists(st.integers(1, 4096), min_size=1, max_size=4), st.sampled_from(["x", "×", ","]))
def test_well_formed_sizes_normalise_to_nchw(dims: list[int], sep: str) -> None:
    # 224 -> 1x3x224x224; HxW -> batch 1, 3 channels; CxHxW -> batch 1; NCHW as given.
    expected = {1: [1, 3, dims[0], dims[0]], 2: [1, 3, *dims], 3: [1, *dims], 4: dims}[len(dims)]
    assert parse_input_size(sep.join(map(str, dims))) == tuple(expected)
    assert parse_input_size(dims) == tuple(expected)


@FUZZ
@given(st.one_of(st.text(max_size=30), size_text, anything), st.integers(1, 6))
def test_layer_list_parser_returns_positive_counts_or_input_error(value: Any, stages: int) -> None:
    layers = _valid_or_input_error(lambda v: parse_layers(v, stages), value)
    if layers is not None:
        assert len(layers) == stages and all(type(n) is int and 1 <= n <= MAX_BLOCKS for n in layers)
        if isinstance(value, (list, tuple)):  # nothing was coerced: 3.7 is not truncated, True is not 1
            assert all(type(v) is int for v in value), value


# Values of every type for every builder option: get_spec returns a spec whose fields have the
# types the builder needs, or refuses with InputError. "no" must never become a truthy switch.
option_values = st.one_of(scalars, st.lists(st.integers(-3, 1500), max_size=5),
                          st.sampled_from(["3,4,6,3", "2,2,2,2", "3,3,3", "A", "B", "deep", "bottleneck",
                                           "retinanet", "", "none", "frozen_bn"]))


@FUZZ
@given(st.sampled_from(["resnet18", "resnet50", "cifar_resnet20", "hopenet", "maskrcnn_r50_fpn", "resnetv2_50"]),
       st.dictionaries(st.sampled_from(OPTION_NAMES), option_values, max_size=3))
def test_builder_options_of_any_type_give_a_typed_spec_or_input_error(name: str, options: dict[str, Any]) -> None:
    spec = _valid_or_input_error(lambda o: ri.get_spec(name, **o), options)
    if spec is None:
        return
    for field in ("stride_in_1x1", "caffe_maxpool", "avg_down", "se", "preact"):
        assert type(getattr(spec, field)) is bool, (field, options)
    for field in ("groups", "width_per_group", "output_stride", "num_classes", "num_bins"):
        assert type(getattr(spec, field)) is int and getattr(spec, field) >= 1, (field, options)
    assert all(type(n) is int and 1 <= n <= MAX_BLOCKS for n in spec.layers)
    assert spec.groups * spec.width_per_group <= MAX_WIDTH and spec.num_classes <= MAX_OUTPUTS


@FUZZ
@given(st.lists(st.integers(1, 500), min_size=4, max_size=4))
def test_well_formed_layer_lists_round_trip(layers: list[int]) -> None:
    assert parse_layers(",".join(map(str, layers))) == tuple(layers)


# -- snapshot files ------------------------------------------------------------------------------

snapshot = pytest.importorskip("resnet_inspect.snapshot", reason="resnet_inspect/snapshot.py is not written yet")


@pytest.fixture(scope="module")
def snapshot_document() -> dict[str, Any]:
    return json.loads(snapshot.dumps(snapshot.take("resnet18", 32)))


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
                                     st.text(max_size=8)),
                           lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                   st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                           max_leaves=12)


def _mutate(document: Any, path: list[int], value: Any) -> Any:
    """Replace the node that ``path`` (indices into sorted keys or list positions) leads to."""
    if not path or not isinstance(document, (dict, list)) or not document:
        return value
    if isinstance(document, dict):
        keys = sorted(document)
        key = keys[path[0] % len(keys)]
        return {**document, key: _mutate(document[key], path[1:], value)}
    index = path[0] % len(document)
    return [*document[:index], _mutate(document[index], path[1:], value), *document[index + 1:]]


def _load_or_input_error(text: str) -> None:
    try:
        snap = snapshot.loads(text, "fuzz.json")
    except ri.InputError:
        return
    assert isinstance(snap, snapshot.Snapshot) and len(snap.input_size) == 4


@FUZZ
@given(st.one_of(st.text(max_size=200), st.text(alphabet='{}[]":,0123456789 \n-.eEtrufalsn', max_size=200)))
def test_snapshot_text_is_parsed_or_refused(text: str) -> None:
    _load_or_input_error(text)


@FUZZ
@given(path=st.lists(st.integers(0, 1000), min_size=1, max_size=4), value=json_values)
def test_damaged_snapshot_documents_are_refused_with_input_error(snapshot_document: dict[str, Any],
                                                                 path: list[int], value: Any) -> None:
    _load_or_input_error(json.dumps(_mutate(snapshot_document, path, value)))


@FUZZ
@given(st.binary(max_size=300))
def test_snapshot_bytes_are_read_or_refused(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("snap") / "fuzz.json"
    path.write_bytes(data)
    try:
        snapshot.load(path)
    except ri.InputError:
        pass


# -- checkpoints ---------------------------------------------------------------------------------

block_prefix = st.one_of(
    st.builds("layer{}.{}.".format, st.integers(0, 5), st.integers(0, 3)),
    st.builds("stages.{}.blocks.{}.".format, st.integers(0, 4), st.integers(0, 3)))
rests = st.sampled_from(["conv1.weight", "conv2.weight", "conv3.weight", "bn1.running_mean", "bn1.num_batches_tracked",
                         "downsample.0.weight", "se.fc1.weight"])
keys = st.one_of(
    st.builds(str.__add__, st.sampled_from(["", "module.", "backbone.body.", "body."]),
              st.builds(str.__add__, block_prefix, rests)),
    st.sampled_from(["conv1.weight", "fc.weight", "fc_yaw.weight", "head.fc.weight", "fpn.fpn_inner1.weight",
                     "fpn.top_blocks.p6.weight", "stem.conv1.weight", "bn1.num_batches_tracked"]),
    st.text(max_size=20))
shapes = st.lists(st.sampled_from([0, 1, 3, 4, 16, 32, 64, 128, 256, 1000]), max_size=4).map(tuple)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(keys, shapes, max_size=14))
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
    """The arithmetic on the first block's shapes (groups, width, planes) meets zeros and odd sizes."""
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
    """Start from a real variant's keys and shapes, then drop keys, reshape tensors, add strays."""
    name = data.draw(st.sampled_from(sorted(variant_shapes)))
    state = dict(variant_shapes[name])
    names = sorted(state)
    for key in data.draw(st.lists(st.sampled_from(names), max_size=6)):
        state.pop(key, None)
    for key in data.draw(st.lists(st.sampled_from(names), max_size=4)):
        state[key] = data.draw(shapes)
    state.update(data.draw(st.dictionaries(keys, shapes, max_size=3)))
    prefix = data.draw(st.sampled_from(["", "module.", "backbone.body.", "model."]))
    tensors = {prefix + k: torch.empty(shape, device="meta") for k, shape in state.items()}
    try:
        inference = infer(tensors, path="fuzz.pth")
    except ri.InputError:
        return
    assert inference.spec.name in ri.variants() and 0 < inference.matched <= inference.total


# -- the user's model is left exactly as it was --------------------------------------------------

def _hooks(model: nn.Module) -> list[int]:
    return [len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()]


@pytest.fixture
def user_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A module of the user's own, imported by the CLI through ``module:factory``."""
    name = f"ri_user_models_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class Boom(nn.Module):
            def forward(self, x):
                raise RuntimeError("the user's forward failed")

        def _prepare(model):
            torch.manual_seed(0)
            model.train()
            model[2].eval()  # a mixed mode that a blanket .train()/.eval() would not restore
            model[0].weight.requires_grad_(False)  # a frozen layer
            model.calls = []
            model[2].register_forward_hook(lambda m, i, o: model.calls.append(tuple(o.shape)))
            return model

        GOOD = _prepare(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1)))
        BROKEN = _prepare(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), Boom()))

        def good():
            return GOOD

        def broken():
            return BROKEN
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = __import__(name)
    yield name, module
    sys.modules.pop(name, None)


@pytest.mark.parametrize("factory,real", [("good", False), ("good", True), ("broken", False), ("broken", True)])
def test_cli_leaves_the_users_model_as_it_was(user_models: Any, factory: str, real: bool) -> None:
    name, module = user_models
    model = getattr(module, factory.upper())
    before = (state_checksum(model), _hooks(model), [m.training for m in model.modules()],
              [p.requires_grad for p in model.parameters()])
    running_mean = model[1].running_mean.clone()
    args = ["summary", f"{name}:{factory}", "--input", "16"] + (["--real"] if real else [])
    result = CliRunner().invoke(app, args)
    output = " ".join(result.output.split())
    if factory == "broken":
        assert result.exit_code == 2 and "the user's forward failed" in output
    else:
        assert result.exit_code == 0, output
    after = (state_checksum(model), _hooks(model), [m.training for m in model.modules()],
             [p.requires_grad for p in model.parameters()])
    assert after == before
    assert torch.equal(model[1].running_mean, running_mean)  # a train-mode BN did not update its statistics
    assert all(not t.is_meta for t in [*model.parameters(), *model.buffers()])
    # The user's own hook is still there and still works.
    model.calls.clear()
    with torch.no_grad():
        try:
            model(torch.zeros(1, 3, 16, 16))
        except RuntimeError as exc:  # the broken model still fails after its hooked ReLU
            assert "the user's forward failed" in str(exc) and factory == "broken"
    assert model.calls == [(1, 8, 14, 14)]
