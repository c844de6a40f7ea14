"""``from resnet_inspect import summary``: torchinfo's call, resnet-inspect's numbers (docs/python.md)."""
from __future__ import annotations

from typing import Any

import pytest
import torch
import torchinfo
from torch import nn

import resnet_inspect as ri
from resnet_inspect import summary
from resnet_inspect.render.notebook import View, plain_text
from resnet_inspect.render.table import count_text, shows_row, summary_rows

from tests.conftest import row

RESNET50_INPUT = (1, 3, 224, 224)


def torchinfo_extra_macs(model: nn.Module, batch: int, conv_outputs: dict[str, tuple[int, int]]) -> int:
    """docs/python.md's closed form, from the model's modules alone: what torchinfo's mult-adds add to
    resnet-inspect's MACs for a net of convs, linear layers and norms, each called once. A conv's
    bias adds N·C_out·H_out·W_out (its output size is given), a Linear's bias N·out_features, and
    every other module with parameters (a norm's affine weight and bias) N·its parameters."""
    extra = 0
    for name, module in model.named_modules():
        own = sum(p.numel() for p in module.parameters(recurse=False))
        if not own:
            continue
        bias = module.bias.numel() if getattr(module, "bias", None) is not None else 0
        if isinstance(module, nn.Conv2d):
            h, w = conv_outputs.get(name, (0, 0))
            assert bias == 0 or name in conv_outputs, f"give the output size of {name}, which has a bias"
            extra += batch * bias * h * w
        elif isinstance(module, nn.Linear):
            extra += batch * bias
        else:
            extra += batch * own
    return extra


def test_resnet50_same_params_as_torchinfo_and_the_documented_macs_difference() -> None:
    model = ri.build("resnet50")
    ours = summary(model, input_size=RESNET50_INPUT, verbose=0)
    theirs = torchinfo.summary(model, input_size=RESNET50_INPUT, verbose=0)
    assert (ours.total_params, ours.trainable_params) == (theirs.total_params, theirs.trainable_params)
    assert ours.total_params == sum(p.numel() for p in model.parameters())
    # resnet50's convs have no bias: the difference is its 53 BatchNorms' affine terms and fc's bias.
    assert theirs.total_mult_adds - ours.total_mult_adds == torchinfo_extra_macs(model, 1, {}) > 0
    assert ours.total_mult_adds == sum(rec.macs for rec in ours.summary_list)


class BiasNet(nn.Module):
    """A conv with a bias (output 8×8 at input 10×10), a BatchNorm and a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, bias=True)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.bn(self.conv(x)), 1))


def test_macs_difference_counts_conv_bias_and_scales_with_the_batch() -> None:
    model = BiasNet()
    ours = summary(model, input_size=(2, 3, 10, 10), verbose=0)
    theirs = torchinfo.summary(model, input_size=(2, 3, 10, 10), verbose=0)
    assert ours.total_params == theirs.total_params
    extra = torchinfo_extra_macs(model, 2, {"conv": (8, 8)})
    assert extra == 2 * 8 * 64 + 2 * 16 + 2 * 5
    assert theirs.total_mult_adds - ours.total_mult_adds == extra


class Tied(nn.Module):
    """Two linear layers that share one weight tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(16, 16)
        self.b = nn.Linear(16, 16)
        self.b.weight = self.a.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


def test_tied_weights_are_counted_once_where_torchinfo_counts_them_twice() -> None:
    model = Tied()
    ours = summary(model, input_size=(2, 16), verbose=0)
    theirs = torchinfo.summary(model, input_size=(2, 16), verbose=0)
    assert ours.total_params == sum(p.numel() for p in model.parameters())
    assert theirs.total_params - ours.total_params == model.a.weight.numel()


def test_the_result_holds_torchinfos_attributes_with_the_engines_figures() -> None:
    result = summary("resnet18", input_size=(1, 3, 224, 224), verbose=0)
    report = result.report
    assert result.summary_list is report.layers
    assert result.total_params == report.totals["params"] == 11_689_512
    assert result.trainable_params == report.totals["trainable_params"]
    assert result.non_trainable_params == 0
    assert result.total_mult_adds == sum(rec.macs for rec in report.layers) == report.totals["macs"]
    assert result.total_output_bytes == report.totals["activation_bytes"]
    assert result.input_size == [(1, 3, 224, 224)]
    assert result.total_input == 3 * 224 * 224 * 4
    assert result.total_param_bytes == 4 * report.totals["params"]
    assert result.to_dict()["totals"]["params"] == report.totals["params"]


def test_it_prints_as_the_table_at_the_asked_depth(capsys: pytest.CaptureFixture[str]) -> None:
    result = summary("resnet18", input_size=(1, 3, 224, 224), depth=1, verbose=1)
    printed = capsys.readouterr().out
    assert printed.rstrip("\n") == str(result) == repr(result) == plain_text(result.report, View(depth=1))
    rows = {r.record.name: r for r in summary_rows(result.report, 1) if shows_row(r)}
    assert count_text(rows["layer1"].params) in row(printed, "layer1")
    assert "layer1.0.conv1" not in printed


def test_verbose_0_prints_nothing_and_2_prints_every_layer(capsys: pytest.CaptureFixture[str]) -> None:
    summary("resnet18", depth=1, verbose=0)
    assert capsys.readouterr().out == ""
    summary("resnet18", depth=1, verbose=2)
    printed = capsys.readouterr().out
    assert count_text(ri.inspect("resnet18").layer("layer1.0.conv1").params) in row(printed, "layer1.0.conv1")


def test_col_names_pick_torchinfos_columns_from_the_records() -> None:
    result = summary("resnet18", col_names=["input_size", "output_size", "num_params", "kernel_size",
                                            "mult_adds", "trainable"], depth=2, verbose=0)
    text = str(result)
    header = next(line for line in text.splitlines() if line.split()[:2] == ["Layer", "Type"])
    assert header.split() == ["Layer", "Type", "Input", "shape", "Output", "shape", "Params", "Kernel", "MACs",
                              "Trainable"]
    conv1 = result.report.layer("conv1")
    cells = row(text, "conv1").split()
    assert cells == ["conv1", "Conv2d", "1×3×224×224", "1×64×112×112", count_text(conv1.params), "7×7",
                     count_text(conv1.macs), "True"]
    folded = [r for r in summary_rows(result.report, 2) if r.record.name == "layer1.0"][0]
    assert row(text, "layer1.0").split()[1:] == [f"+{folded.folded}", "BasicBlock", "1×64×56×56", "1×64×56×56",
                                                 count_text(folded.params), "—", count_text(folded.macs), "True"]


@pytest.mark.parametrize("given", [
    {"input_size": (1, 3, 64, 64)},
    {"input_size": [1, 3, 64, 64]},
    {"input_size": [(1, 3, 64, 64)]},
    {"input_size": torch.Size([1, 3, 64, 64])},
    {"input_size": (3, 64, 64), "batch_dim": 0},
    {"input_data": torch.zeros(1, 3, 64, 64)},
    {"input_data": [torch.zeros(1, 3, 64, 64)]},
])
def test_torchinfos_input_forms_give_the_same_trace(given: dict[str, Any]) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU())
    result = summary(model, verbose=0, **given)
    assert result.report.input_size == (1, 3, 64, 64)
    assert result.total_mult_adds == ri.inspect(model, (1, 3, 64, 64)).totals["macs"] == 4 * 27 * 31 * 31


def test_dtypes_and_input_data_set_the_traced_dtype() -> None:
    model = nn.Sequential(nn.Embedding(100, 8), nn.Linear(8, 4))
    by_size = summary(model, input_size=(2, 5), dtypes=[torch.long], verbose=0)
    by_data = summary(model, input_data=torch.zeros(2, 5, dtype=torch.long), verbose=0)
    assert by_size.report.layer("1").output_shapes == by_data.report.layer("1").output_shapes == [(2, 5, 4)]
    assert by_size.total_input == by_data.total_input == 2 * 5 * 8


class ModeSwitch(nn.Module):
    """Returns 3 features in training mode and 2 in eval mode; its second branch stays in eval mode."""

    def __init__(self) -> None:
        super().__init__()
        self.train_head = nn.Linear(4, 3)
        self.eval_head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.train_head(x) if self.training else self.eval_head(x)


@pytest.mark.parametrize(("mode", "start", "features"), [
    (None, True, 2), ("eval", True, 2), ("train", False, 3), ("same", True, 3), ("same", False, 2)])
def test_mode_runs_the_forward_in_that_mode_and_puts_the_modes_back(mode: str | None, start: bool,
                                                                    features: int) -> None:
    model = ModeSwitch().train(start)
    model.eval_head.eval()  # a mixed model: every module's own flag must come back
    result = summary(model, input_size=(2, 4), mode=mode, verbose=0)
    assert result.report.outputs["output"] == (2, features)
    assert model.training is start and model.train_head.training is start and model.eval_head.training is False


def test_device_runs_where_the_model_lives_and_never_moves_it() -> None:
    model = nn.Sequential(nn.Linear(4, 2))
    assert summary(model, input_size=(1, 4), verbose=0).report.device == "meta"
    assert summary(model, input_size=(1, 4), device="meta", verbose=0).report.device == "meta"
    assert summary(model, input_size=(1, 4), device="cpu", verbose=0).report.device == "cpu"
    with torch.device("meta"):
        on_meta = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(ValueError, match="never moves it"):
        summary(on_meta, input_size=(1, 4), device="cpu", verbose=0)
    assert on_meta[0].weight.is_meta


MLP = nn.Sequential(nn.Linear(4, 2))


@pytest.mark.parametrize(("kwargs", "error", "says"), [
    ({"input_size": [(1, 4), (1, 4)]}, ValueError, "one input tensor"),
    ({"input_data": [torch.zeros(1, 4), torch.zeros(1, 4)]}, ValueError, "one input tensor"),
    ({"input_data": {"x": torch.zeros(1, 4)}}, ValueError, "keyword arguments"),
    ({"input_data": "x"}, TypeError, "must be a tensor"),
    ({"input_size": (1, 4), "input_data": torch.zeros(1, 4)}, ValueError, "not both"),
    ({}, ValueError, "Give input_size or input_data"),
    ({"input_size": (1, 4), "mask": None}, TypeError, "mask"),
    ({"input_size": (1, 4), "cache_forward_pass": True}, ValueError, "cache_forward_pass"),
    ({"input_size": (1, 4), "col_width": 30}, ValueError, "col_width"),
    ({"input_size": (1, 4), "row_settings": ["ascii_only"]}, ValueError, "ascii_only"),
    ({"input_size": (1, 4), "col_names": ["output_size", "bogus"]}, ValueError, "bogus"),
    ({"input_size": (1, 4), "col_names": "num_params"}, TypeError, "list of column names"),
    ({"input_size": (1, 4), "verbose": 3}, ValueError, "verbose"),
    ({"input_size": (1, 4), "mode": "test"}, ValueError, "mode"),
    ({"input_size": (1, 4), "depth": 0}, ValueError, "depth"),
    ({"input_size": (1, 4), "depth": 0, "verbose": 2}, ValueError, "depth"),
    ({"input_size": (1, 4), "dtypes": [torch.float32, torch.long]}, ValueError, "one input tensor"),
    ({"input_size": (1, 4), "dtypes": torch.long}, TypeError, "dtypes"),
    ({"input_data": torch.zeros(1, 4), "dtypes": [torch.float32]}, ValueError, "dtypes"),
    ({"input_size": (4,), "batch_dim": 2}, ValueError, "batch_dim"),
    ({"input_size": (1, 4), "device": "nonsense"}, ValueError, "device"),
    ({"input_size": (1, 4), "depth": "all"}, TypeError, "depth"),
])
def test_what_cannot_be_honoured_raises_and_says_why(kwargs: dict[str, Any], error: type[Exception],
                                                     says: str) -> None:
    with pytest.raises(error, match=says):
        summary(MLP, **{"verbose": 0, **kwargs})


def test_torchinfos_enums_are_taken_as_their_names() -> None:
    from torchinfo.enums import ColumnSettings, Mode, RowSettings

    result = summary(MLP, input_size=(1, 4), col_names=[ColumnSettings.NUM_PARAMS], mode=Mode.TRAIN,
                     row_settings=[RowSettings.VAR_NAMES], verbose=0)
    assert result.view.col_names == ("num_params",)


def test_a_real_forward_in_train_mode_leaves_the_norm_statistics_alone() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    result = summary(model, input_size=(2, 3, 8, 8), mode="train", device="cpu", verbose=0)
    assert result.report.device == "cpu" and result.total_params == 3 * 4 * 9 + 4 + 8
    assert model[1].num_batches_tracked.item() == 0 and not model[1].running_mean.any()
    assert model.training is False and model[1].training is False


def test_train_mode_with_another_counter_is_refused() -> None:
    with pytest.raises(ValueError, match="fvcore counter runs in eval mode"):
        summary(MLP, input_size=(1, 4), mode="train", counter="fvcore", verbose=0)
