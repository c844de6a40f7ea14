"""Shared test fixtures: where the seeds and the published reference figures live, and the check
that every model any test hands to the engine comes back exactly as it was."""
from __future__ import annotations

import functools
import hashlib
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.modules import module as module_globals
from torch.nn.parameter import is_lazy

from resnet_inspect.errors import InputError

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SEEDS = SHARED / "seeds"
PUBLISHED = SHARED / "reference" / "published.md"

# torchvision's model documentation, as quoted in shared/reference/published.md:
# name -> (params, GMACs @ 224). Used as the independent reference when that file is absent.
TORCHVISION = {
    "resnet18": (11_689_512, 1.81),
    "resnet34": (21_797_672, 3.66),
    "resnet50": (25_557_032, 4.09),
    "resnet101": (44_549_160, 7.80),
    "resnet152": (60_192_808, 11.51),
    "resnext50_32x4d": (25_028_904, 4.23),
    "resnext101_32x8d": (88_791_336, 16.41),
    "resnext101_64x4d": (83_455_272, 15.46),
    "wide_resnet50_2": (68_883_240, 11.40),
    "wide_resnet101_2": (126_886_696, 22.75),
}
# He et al. 2015, Table 1: multiply-adds (x1e9) of the MSRA nets (stride in the first 1x1).
PAPER_TABLE1 = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8, "resnet101": 7.6, "resnet152": 11.3}


def published_torchvision() -> dict[str, tuple[int, float]]:
    """The torchvision table, read from published.md when it is there (CI), else the copy above."""
    if not PUBLISHED.exists():
        return TORCHVISION
    table = {}
    for line in PUBLISHED.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[2] in ("basic", "bottleneck") and cells[4].replace(",", "").isdigit():
            table[cells[0]] = (int(cells[4].replace(",", "")), float(cells[5]))
    return table


def published_paper_table1() -> dict[str, float]:
    """He et al.'s Table 1, read from published.md when it is there (CI), else the copy above."""
    if not PUBLISHED.exists():
        return PAPER_TABLE1
    text = PUBLISHED.read_text(encoding="utf-8")
    section = text[text.index("Table 1"):]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] in ("depth", "FLOPs (×10⁹)"):
            rows[cells[0]] = cells[1:]
        if len(rows) == 2:
            break
    return {f"resnet{d}": float(f) for d, f in zip(rows["depth"], rows["FLOPs (×10⁹)"])}


@pytest.fixture(scope="session")
def paper_table1() -> dict[str, float]:
    table = published_paper_table1()
    assert table == PAPER_TABLE1, "published.md and the Table 1 figures quoted in conftest.py disagree"
    return table


@pytest.fixture(scope="session")
def torchvision_table() -> dict[str, tuple[int, float]]:
    table = published_torchvision()
    assert set(table) == set(TORCHVISION), "published.md no longer lists the ten torchvision classifiers"
    assert table == TORCHVISION, "published.md and the figures quoted in conftest.py disagree"
    return table


@pytest.fixture(scope="session")
def maskrcnn_benchmark_print() -> str:
    files = sorted(SEEDS.glob("003_*.txt")) if SEEDS.exists() else []
    if not files:
        pytest.skip(f"the printed maskrcnn-benchmark R-50-FPN structure (003_*.txt) is not under {SEEDS}: the shared/ folder is not beside this checkout")
    return files[0].read_text(encoding="utf-8")


def state_checksum(model: nn.Module) -> str:
    """A digest of every parameter and buffer, to prove that inspecting left a model untouched."""
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


# -- the model is never changed ----------------------------------------------------------------------
# Every call into the engine's entry points with an nn.Module is fingerprinted before and after,
# also when the call raises: a test that changes a model fails, whatever the test itself checks.

ENTRY_POINTS = (("resnet_inspect.analysis.inspect", "inspect"), ("resnet_inspect.analysis.inspect", "run_trace"),
                ("resnet_inspect.analysis.counters", "fvcore_by_module"),
                ("resnet_inspect.analysis.counters", "torch_by_module"),
                ("resnet_inspect.analysis.memory", "analyze_memory"), ("resnet_inspect.analysis.memory", "peak_of"),
                ("resnet_inspect.analysis.memory", "saved_for_backward"), ("resnet_inspect.analysis.memory", "fit_batch"),
                ("resnet_inspect.analysis.memory_measure", "measured_peak"))
GLOBAL_HOOKS = [n for n in dir(module_globals)
                if n.startswith("_global_") and isinstance(getattr(module_globals, n), dict)]


COPIED_BYTES = 1 << 16  # storages up to 4 MB are copied; larger ones are summed as 64-bit words


class TensorPrint:
    """Identity, type, device, dtype, layout, version and (for real tensors) the bits of its
    storage, taken once per storage: a copy, or for a large storage (a real ResNet's weights) the
    wrapping sum of its 64-bit words, which any single changed word changes."""

    def __init__(self, t: torch.Tensor, storages: dict[tuple[int, int], torch.Tensor] | None) -> None:
        self.tensor = t
        self.meta = (id(t), type(t), t.device, t.dtype, t.requires_grad, t._version,
                     None if is_lazy(t) else (tuple(t.shape), t.stride(), t.storage_offset()))
        self.real = not (is_lazy(t) or t.is_meta or t.layout != torch.strided or t.is_nested)
        self.bits = None
        if self.real and storages is not None:
            key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
            if key not in storages:
                storages[key] = _bits(t)
            self.bits = storages[key]

    def same_as(self, now: TensorPrint) -> bool:
        """Whether ``now`` (a fingerprint taken without copies) shows the tensor as it was."""
        if self.meta != now.meta or self.real != now.real:
            return False
        if self.bits is None:
            return True
        words = _words(now.tensor)
        if self.bits.shape == words.shape:  # a copy: bit for bit (NaN == NaN)
            return torch.equal(self.bits, words)
        return torch.equal(self.bits, _checksum(words))


def _bits(t: torch.Tensor) -> torch.Tensor:
    words = _words(t)
    return words.clone() if words.numel() * words.element_size() <= COPIED_BYTES else _checksum(words)


def _checksum(words: torch.Tensor) -> torch.Tensor:
    return words.sum(dtype=torch.int64).reshape(1, 1)  # a shape no copied storage has


def _words(t: torch.Tensor) -> torch.Tensor:
    """The whole storage under a tensor, as integers of the widest size that divides it."""
    storage = t.untyped_storage()
    dtype = next(d for d in (torch.int64, torch.int32, torch.int16, torch.uint8)
                 if storage.nbytes() % d.itemsize == 0)
    return torch.empty(0, dtype=dtype, device=t.device).set_(storage, 0, (storage.nbytes() // dtype.itemsize,))


def _tensor_items(value: Any, depth: int = 0) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif depth < 4 and isinstance(value, (list, tuple)):
        for v in value:
            yield from _tensor_items(v, depth + 1)
    elif depth < 4 and isinstance(value, dict):
        for v in value.values():
            yield from _tensor_items(v, depth + 1)


def fingerprint(model: nn.Module, copies: bool = True) -> dict[str, Any]:
    """What a trace must leave alone: per module its class, attribute names, training flag, hook
    dicts, submodules, and every tensor it holds (parameters, buffers, tensor-bearing attributes).
    ``copies=False`` (the state afterwards, compared with one taken before) copies no bits."""
    result: dict[str, Any] = {"global_hooks": {n: list(getattr(module_globals, n).items()) for n in GLOBAL_HOOKS}}
    storages: dict[tuple[int, int], torch.Tensor] | None = {} if copies else None
    for name, module in model.named_modules(remove_duplicate=False):
        state = module.__dict__
        result[f"{name}#{id(module)}"] = {
            "class": type(module), "training": module.training, "attrs": sorted(state),
            "containers": {k: [(key, id(v)) for key, v in value.items()] for k, value in state.items()
                           if isinstance(value, dict) and not k.startswith(("_parameters", "_buffers"))},
            "tensors": {f"{k}[{i}]": TensorPrint(t, storages) for k, value in state.items()
                        for i, t in enumerate(_tensor_items(value))},
        }
    return result


def differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What changed between a fingerprint and a later one (``copies=False``), one line per
    difference (empty: nothing did)."""
    found = [f"{key}: {'added' if key not in before else 'gone'}" for key in before.keys() ^ after.keys()]
    for key in before.keys() & after.keys():
        old, new = before[key], after[key]
        if key == "global_hooks":
            found += [f"global hooks {n} changed" for n in old if old[n] != new[n]]
            continue
        found += [f"{key}: {field} changed" for field in ("class", "training", "attrs", "containers")
                  if old[field] != new[field]]
        for tname in old["tensors"].keys() | new["tensors"].keys():
            a, b = old["tensors"].get(tname), new["tensors"].get(tname)
            if a is None or b is None or not a.same_as(b):
                found.append(f"{key}: tensor {tname} changed")
    return sorted(found)


def assert_unchanged(model: nn.Module, before: dict[str, Any]) -> None:
    changed = differences(before, fingerprint(model, copies=False))
    assert not changed, f"the model was changed by resnet-inspect: {'; '.join(changed[:8])}"


class StateCheck:
    """The suite-wide check's state: whether a checked call is running, and what it found."""

    def __init__(self) -> None:
        self.active = False
        self.found: list[str] = []  # kept for the teardown too, in case a caller swallows the error

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            model = args[0] if args else kwargs.get("model_or_name", kwargs.get("model"))
            if self.active:
                return fn(*args, **kwargs)
            if not isinstance(model, nn.Module):  # a variant name: the model inspect() builds is its own
                self.active = True
                try:
                    return fn(*args, **kwargs)
                finally:
                    self.active = False
            before = fingerprint(model)
            self.active = True
            try:
                return fn(*args, **kwargs)
            finally:
                self.active = False
                changed = differences(before, fingerprint(model, copies=False))
                if changed:
                    self.found.append(f"{fn.__name__}({type(model).__name__}): {'; '.join(changed[:8])}")
                    raise AssertionError(f"the model was changed by resnet-inspect: {self.found[-1]}")
        return wrapper


@pytest.fixture(autouse=True)
def model_state_is_checked(monkeypatch: pytest.MonkeyPatch) -> Iterator[StateCheck]:
    """Wrap the engine's entry points, wherever they were imported to, in the fingerprint check.
    A change fails the call, and the test at teardown even if something caught the error (the
    CLI turns an unexpected exception into exit code 3)."""
    import resnet_inspect.analysis.counters
    import resnet_inspect.analysis.inspect
    import resnet_inspect.analysis.memory
    import resnet_inspect.analysis.memory_measure  # noqa: F401

    check = StateCheck()
    for module_name, attr in ENTRY_POINTS:
        original = getattr(sys.modules[module_name], attr)
        wrapped = check.wrap(original)
        for name, module in list(sys.modules.items()):
            ours = name == "resnet_inspect" or name.startswith("resnet_inspect.")
            if ours and getattr(module, attr, None) is original:
                monkeypatch.setattr(module, attr, wrapped)
    yield check
    assert not check.found, f"the model was changed by resnet-inspect: {check.found}"


# -- fuzzing parsers of user input (hypothesis) ----------------------------------------------------
# Every parser of user input must return a valid result or raise InputError: no other exception
# type, whatever it is given. The size, layer-list, option, snapshot and checkpoint parsers share these.

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Python values a caller might pass where a size or a layer list is expected. Infinity is left out
# here: it is a known bug, pinned by tests/test_inputs.py::test_infinite_size_is_an_input_error.
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_infinity=False),
                    st.text(max_size=12), st.binary(max_size=8))
anything = st.one_of(scalars, st.lists(scalars, max_size=6), st.tuples(scalars, scalars),
                     st.dictionaries(st.text(max_size=3), scalars, max_size=3))
# Text built from the characters the size and layer syntaxes use, so the parsers' corners get hit.
size_text = st.text(alphabet="0123456789x×, -+.e\t", max_size=20)


def valid_or_input_error(parse: Any, value: Any) -> Any:
    """``parse(value)``, or None when it raises InputError; any other exception fails the test."""
    try:
        return parse(value)
    except InputError:
        return None


# -- driving the CLI in-process (typer's CliRunner) -----------------------------------------------

def run_cli(*args: str, env: dict[str, str] | None = None) -> Any:
    """``resnet-inspect ARGS`` through typer's CliRunner; the result has exit_code, stdout, output."""
    from typer.testing import CliRunner

    from resnet_inspect.cli import app

    return CliRunner().invoke(app, list(args), env=env)


def flat(text: str) -> str:
    """Rich wraps errors at the console width: compare with whitespace collapsed."""
    return " ".join(text.split())


def row(output: str, name: str, after: str = "") -> str:
    """The plain-text table row whose first cell is ``name`` (in the part after ``after``)."""
    for line in (output.split(after, 1)[-1] if after else output).splitlines():
        cells = line.split()
        if cells and cells[0] == name:
            return line
    raise AssertionError(f"no row for {name} in:\n{output}")


# A user's module whose root forward calls a function op itself (sigmoid, which saves its output for the
# backward): what the root saves is filed under the root, not under a child.
ROOT_SAVING_NET = (
    "import torch\nfrom torch import nn\n\n"
    "class Net(nn.Module):\n"
    "    def __init__(self):\n"
    "        super().__init__()\n"
    "        self.conv = nn.Conv2d(3, 4, 3)\n\n"
    "    def forward(self, x):\n"
    "        return torch.sigmoid(self.conv(x))\n\n"
    "def build():\n"
    "    return Net()\n")


def importable_module(folder: Path, name: str, source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Write ``name``.py into ``folder``, make it the working directory and put it on sys.path."""
    (folder / f"{name}.py").write_text(source, encoding="utf-8")
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))


def python_calls(func: Callable[[], Any]) -> int:
    """Python function calls made by ``func()`` (C calls, the json encoder's included, not counted)."""
    count = 0

    def watch(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        if event == "call":
            count += 1

    sys.setprofile(watch)
    try:
        func()
    finally:
        sys.setprofile(None)
    return count
