"""The pytest plugin (resnet_inspect.pytest_plugin): the ``shape_snapshot`` fixture and ``--shape-update``, driven by pytester.

The expected shapes and MACs are worked out here in closed form; the plugin must report them in
its diff. The last test is the project using the plugin itself (docs/ci.md points to it).
"""
from __future__ import annotations

import json
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch

import resnet_inspect
from resnet_inspect import snapshot as snapshots

pytest_plugins = ["pytester"]

SMALL_NET = """
import torch
from torch import nn

STRIDE = {stride}


def test_small_net(shape_snapshot):
    net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=STRIDE, padding=1), nn.ReLU())
    shape_snapshot.check(net, input_size=(1, 3, 32, 32))
"""


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    """An in-process run without the plugins the checks do not need (hypothesis re-imports itself each run)."""
    return project.runpytest("-p", "no:hypothesispytest", "-p", "no:cacheprovider", *args)


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


@pytest.fixture(scope="module")
def torch_warmed_up() -> None:
    """Trace each kind of model the inner runs trace, once, outside them.

    pytester's in-process runs drop every module imported during the run from sys.modules. torch
    imports some modules lazily on a first trace (functional_call, interpolate), and one of them
    registers a C++ operator library that cannot be registered twice, so a later re-import fails.
    Importing them here, before pytester snapshots sys.modules, keeps them loaded.
    """
    from torch import nn

    snapshots.take("resnet18", 64)
    snapshots.take("cifar_resnet20")
    snapshots.take(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()), 32)
    snapshots.take("resnet18", 64, fpn="retinanet")
    snapshots.take(nn.Sequential(nn.Linear(16, 4), nn.ReLU()), (8, 16))
    snapshots.take(nn.Sequential(nn.Conv1d(4, 6, 5)), (2, 4, 100))


@pytest.fixture
def project(torch_warmed_up: None, pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini("[pytest]\n")  # pins the rootdir, under which tests/__shapes__/ goes
    return pytester


def test_registered_as_a_pytest11_entry_point() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert found.get("resnet_inspect") == "resnet_inspect.pytest_plugin"


def test_missing_snapshot_then_update_then_pass(project: pytest.Pytester) -> None:
    project.makepyfile(test_backbone="""
        def test_backbone(shape_snapshot):
            shape_snapshot.check("resnet18", input_size=(1, 3, 64, 64))
    """)
    stored = project.path / "tests" / "__shapes__" / "test_backbone__test_backbone.json"
    first = run(project)
    first.assert_outcomes(failed=1)
    first.stdout.fnmatch_lines(["*No shape snapshot tests/__shapes__/test_backbone__test_backbone.json yet for "
                                "resnet18. Run `pytest --shape-update` to write it*"])
    assert not stored.exists()

    update = run(project, "--shape-update")
    update.assert_outcomes(passed=1)
    update.stdout.fnmatch_lines(["*resnet-inspect: wrote 1 shape snapshot(s)*",
                                 "*tests/__shapes__/test_backbone__test_backbone.json"])
    assert stored.read_text() == snapshots.dumps(snapshots.take("resnet18", 64))

    run(project).assert_outcomes(passed=1)
    again = run(project, "--shape-update")  # nothing differs: nothing is written
    again.assert_outcomes(passed=1)
    assert "wrote" not in again.stdout.str()


def test_mismatch_fails_with_a_readable_diff(project: pytest.Pytester) -> None:
    project.makepyfile(test_net=SMALL_NET.format(stride=2))
    run(project, "--shape-update").assert_outcomes(passed=1)
    stored = project.path / "tests" / "__shapes__" / "test_net__test_small_net.json"
    assert json.loads(stored.read_text())["built_from"] == "object"

    project.makepyfile(test_net=SMALL_NET.format(stride=1))
    result = run(project)
    result.assert_outcomes(failed=1)
    old, new = conv_out(32, 3, 2, 1), conv_out(32, 3, 1, 1)
    old_macs, new_macs = 8 * 3 * 9 * old * old, 8 * 3 * 9 * new * new
    growth = f"{(new_macs - old_macs) / old_macs * 100:+.2f}%"
    stored_name = "tests/__shapes__/test_net__test_small_net.json"
    result.stdout.fnmatch_lines([
        f"*Sequential at 1×3×32×32 no longer matches its shape snapshot {stored_name}:"
        " 3 layers changed, 0 removed, 0 added; outputs, totals differ*",
        f"*~ 0 (Conv2d)  output: 1×8×{old}×{old} → 1×8×{new}×{new}; MACs: {old_macs:,} → {new_macs:,} ({growth})",
        f"*~ 1 (ReLU)  output: 1×8×{old}×{old} → 1×8×{new}×{new}",
        f"*~ total MACs: {old_macs:,} → {new_macs:,} ({growth})",
        f"*If the change is intended, run `pytest --shape-update` and commit {stored_name}.",
    ])
    output = result.stdout.str()
    assert "pytest_plugin.py" not in output and "Traceback" not in output  # a message, not a stack

    run(project, "--shape-update").assert_outcomes(passed=1)
    assert json.loads(stored.read_text())["totals"]["macs"] == new_macs
    run(project).assert_outcomes(passed=1)


def test_names_tolerance_and_a_broken_file(project: pytest.Pytester) -> None:
    project.makepyfile(test_names="""
        import pytest

        @pytest.mark.parametrize("width", [10, 20])
        def test_heads(shape_snapshot, width):
            shape_snapshot.check("resnet18", input_size=32, num_classes=width)
            shape_snapshot.check("cifar_resnet20", tolerance="macs=1%")
    """)
    run(project, "--shape-update").assert_outcomes(passed=2)
    shapes = project.path / "tests" / "__shapes__"
    assert sorted(p.name for p in shapes.iterdir()) == [
        "test_names__test_heads-10.json", "test_names__test_heads-10__2.json",
        "test_names__test_heads-20.json", "test_names__test_heads-20__2.json"]
    assert json.loads((shapes / "test_names__test_heads-20.json").read_text())["options"] == {"num_classes": 20}

    cifar = shapes / "test_names__test_heads-10__2.json"
    doc = json.loads(cifar.read_text())
    doc["totals"]["macs"] += doc["totals"]["macs"] // 200  # +0.5%: within the test's 1% tolerance
    cifar.write_text(json.dumps(doc))
    run(project).assert_outcomes(passed=2)

    cifar.write_text(cifar.read_text()[:100])
    broken = run(project)
    broken.assert_outcomes(passed=1, failed=1)
    broken.stdout.fnmatch_lines(["*The shape snapshot cannot be read: *test_names__test_heads-10__2.json, line 1, "
                                 "column *: is not valid JSON*Run `pytest --shape-update` to rewrite it.*"])


# -- the project uses its own plugin ---------------------------------------------------------------

def test_resnet18_fpn_backbone(shape_snapshot) -> None:  # type: ignore[no-untyped-def]
    """A backbone that is not a named variant: resnet18 with a RetinaNet pyramid, built as a module
    (on the meta device: no weights are allocated). Its snapshot is tests/__shapes__/."""
    with torch.device("meta"):
        model = resnet_inspect.build("resnet18", fpn="retinanet")
    path = shape_snapshot.check(model, input_size=(1, 3, 320, 320))
    stored = json.loads(Path(path).read_text())
    # P3-P7 at strides 8..128 of a 320×320 input, 256 channels each (closed form, not the file)
    p6 = conv_out(320 // 32, 3, 2, 1)
    sides = [320 // 8, 320 // 16, 320 // 32, p6, conv_out(p6, 3, 2, 1)]
    assert sorted(stored["outputs"].values(), key=lambda shape: -shape[2]) == [[1, 256, s, s] for s in sides]


def test_snapshot_files_never_collide(project: pytest.Pytester) -> None:
    """Same-named modules in two folders, and ids that sanitise alike, each get a file of their own."""
    body = """
        import pytest

        @pytest.mark.parametrize("label", ["a b", "a-b"])
        def test_net(shape_snapshot, label):
            shape_snapshot.check("resnet18", input_size={size})
    """
    for folder, size in (("unit", 32), ("integration", 64)):
        (project.path / "tests" / folder).mkdir(parents=True)
        (project.path / "tests" / folder / "test_same.py").write_text(
            textwrap.dedent(body.format(size=size)))
    run(project, "--shape-update", "--import-mode=importlib").assert_outcomes(passed=4)
    stored = sorted(p.name for p in (project.path / "tests" / "__shapes__").iterdir())
    assert len(stored) == 4 and len({s.rsplit("__", 1)[0] for s in stored}) == 2
    assert {s.split("__")[0] for s in stored} == {"unit.test_same", "integration.test_same"}
    # "a-b" keeps its plain name; "a b" (a space) gets a hash of the id, so the two never meet.
    assert "unit.test_same__test_net-a-b.json" in stored
    sizes = {json.loads((project.path / "tests" / "__shapes__" / s).read_text())["input_size"][2] for s in stored}
    assert sizes == {32, 64}
    run(project, "--import-mode=importlib").assert_outcomes(passed=4)


def test_checking_an_aliased_model_leaves_its_weights(project: pytest.Pytester) -> None:
    """shape_snapshot.check on a model that holds one conv under two names (``m.alias = m.conv``) and
    repeats a ModuleList entry: the weights are the same tensors, on the CPU, bit for bit, after the
    check writes the snapshot and after it compares with it (issue 13)."""
    project.makepyfile(test_aliased="""
        import torch
        from torch import nn

        class Aliased(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 3, 3, padding=1)
                self.alias = self.conv
                first = nn.Conv2d(3, 3, 1)
                self.repeated = nn.ModuleList([first, nn.Conv2d(3, 3, 1), first])

            def forward(self, x):
                x = self.alias(self.conv(x))
                for layer in self.repeated:
                    x = layer(x)
                return x

        def test_aliased(shape_snapshot):
            model = Aliased()
            before = {n: (p, p.detach().clone()) for n, p in model.named_parameters(remove_duplicate=False)}
            shape_snapshot.check(model, input_size=(1, 3, 16, 16))
            after = dict(model.named_parameters(remove_duplicate=False))
            assert after.keys() == before.keys()
            for name, (tensor, bits) in before.items():
                assert after[name] is tensor, name
                assert tensor.device.type == "cpu" and torch.equal(tensor, bits), name
            assert model(torch.ones(1, 3, 16, 16)).shape == (1, 3, 16, 16)
    """)
    run(project, "--shape-update").assert_outcomes(passed=1)
    run(project).assert_outcomes(passed=1)


# -- exact input shapes, and a snapshot file is never rebuilt by the plugin -----------------------------

def test_a_modules_exact_input_shape(project: pytest.Pytester) -> None:
    project.makepyfile(test_exact_inputs="""
        from torch import nn

        def test_mlp(shape_snapshot):
            shape_snapshot.check(nn.Sequential(nn.Linear(16, 4), nn.ReLU()), input_size=(8, 16))

        def test_conv1d(shape_snapshot):
            shape_snapshot.check(nn.Sequential(nn.Conv1d(4, 6, 5)), input_size=(2, 4, 100))
    """)
    run(project, "--shape-update").assert_outcomes(passed=2)
    shapes = project.path / "tests" / "__shapes__"
    mlp = json.loads((shapes / "test_exact_inputs__test_mlp.json").read_text())
    conv = json.loads((shapes / "test_exact_inputs__test_conv1d.json").read_text())
    assert (mlp["input_size"], mlp["outputs"]) == ([8, 16], {"output": [8, 4]})
    assert (conv["input_size"], conv["outputs"]) == ([2, 4, 100], {"output": [2, 6, 100 - 5 + 1]})
    run(project).assert_outcomes(passed=2)


def test_the_stored_file_never_names_code_to_run(project: pytest.Pytester) -> None:
    """The plugin compares with its file and never rebuilds from it, so a factory written into the file
    (here one whose import leaves a marker) is not imported: the test fails with a diff instead."""
    marker = project.path / "imported.marker"
    project.makepyfile(plugin_marker_mod=f"""
        import pathlib
        pathlib.Path({str(marker)!r}).write_text("imported")

        def make():
            raise AssertionError("never called")
    """)
    project.makepyfile(test_net="""
        def test_net(shape_snapshot):
            shape_snapshot.check("resnet18", input_size=(1, 3, 64, 64))
    """)
    run(project, "--shape-update").assert_outcomes(passed=1)
    stored = project.path / "tests" / "__shapes__" / "test_net__test_net.json"
    doc = json.loads(stored.read_text())
    doc.update(model="plugin_marker_mod:make", built_from="factory")
    stored.write_text(json.dumps(doc))
    result = run(project)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*build built from: factory → variant*"])
    assert not marker.exists()
