"""pytest plugin: shape snapshots inside your own tests.

Registered through the ``pytest11`` entry point, so installing resnet-inspect makes it available::

    def test_backbone(shape_snapshot):
        shape_snapshot.check(my_model, input_size=(1, 3, 512, 512))

The first run fails and says to run ``pytest --shape-update``, which writes
``tests/__shapes__/<test module>__<test name>.json`` under the rootdir. Later runs trace the model
again (on the meta device: cheap) and fail with a readable diff when a layer's shape, params or
MACs, an output or a total changed. ``--shape-update`` rewrites the snapshots that differ.

Nothing heavy is imported until a test calls ``check``, so the plugin costs nothing elsewhere.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest

SNAPSHOT_DIR = Path("tests", "__shapes__")
_WRITTEN = pytest.StashKey[list]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("resnet-inspect", "resnet-inspect shape snapshots")
    group.addoption("--shape-update", action="store_true", dest="shape_update", default=False,
                    help="Write the shape snapshots that shape_snapshot.check() finds missing or different "
                         f"(under <rootdir>/{SNAPSHOT_DIR.as_posix()}/) instead of failing.")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_WRITTEN] = []


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    written = config.stash.get(_WRITTEN, [])
    if written:
        terminalreporter.write_sep("-", f"resnet-inspect: wrote {len(written)} shape snapshot(s)")
        for path in written:
            terminalreporter.write_line(f"  {path}")


class ShapeSnapshot:
    """Compares a model's shape table with the test's snapshot file (see :func:`shape_snapshot`)."""

    def __init__(self, rootdir: Path, stem: str, update: bool, written: list[str]) -> None:
        self.rootdir, self.stem, self.update, self._written = rootdir, stem, update, written
        self._calls = 0

    def path(self, name: str | None = None) -> Path:
        """The snapshot file for this test (``name`` tells several snapshots of one test apart)."""
        suffix = f"__{_file_part(name)}" if name else ""
        return self.rootdir / SNAPSHOT_DIR / f"{self.stem}{suffix}.json"

    def check(self, model: Any, input_size: Any = None, *, name: str | None = None,
              tolerance: str | list[str] | None = None, pad_to: int | None = None, **options: Any) -> Path:
        """Trace ``model`` (an ``nn.Module``, a variant name, a checkpoint file or
        ``package.module:factory``) and compare it with the stored snapshot; fail with a diff when it
        differs. Returns the snapshot's path.

        As in :func:`resnet_inspect.inspect`, a tuple ``input_size`` is the exact input shape of a
        module of your own (``(8, 16)`` for an MLP, ``(2, 4, 100)`` for a Conv1d), and NCHW for a
        variant. Without it a variant uses its own default (224 for a module). ``tolerance`` takes the
        CLI's ``FIELD=VALUE[%]`` strings; ``options`` are builder options for a variant name.

        The stored file is only read and compared, never rebuilt: a factory it names is not imported.
        """
        from . import snapshot as snapshots
        from .render.snapshot_diff import plain_diff

        self._calls += 1
        if name is None and self._calls > 1:
            name = str(self._calls)  # a second unnamed check in one test gets its own file
        path = self.path(name)
        shown = _relative(path, self.rootdir)
        tolerances = snapshots.parse_tolerances([tolerance] if isinstance(tolerance, str) else tolerance)
        new = snapshots.take(model, input_size, pad_to=pad_to, relative_to=path.parent, **options)
        if not path.exists():
            if self.update:
                return self._write(new, path, shown)
            pytest.fail(f"No shape snapshot {shown} yet for {new.model}. Run `pytest --shape-update` to write it, "
                        "then commit it.", pytrace=False)
        try:
            old = snapshots.load(path)
        except snapshots.SnapshotError as exc:
            if self.update:
                return self._write(new, path, shown)
            pytest.fail(f"The shape snapshot cannot be read: {exc} Run `pytest --shape-update` to rewrite it.",
                        pytrace=False)
        diff = snapshots.compare(old, new, tolerances)
        if diff.ok:
            return path
        if self.update:
            return self._write(new, path, shown)
        size = "×".join(map(str, new.input_size))
        pytest.fail(f"{new.model} at {size} no longer matches its shape snapshot {shown}: {plain_diff(diff)}\n"
                    f"If the change is intended, run `pytest --shape-update` and commit {shown}.", pytrace=False)

    def _write(self, new: Any, path: Path, shown: str) -> Path:
        from . import snapshot as snapshots

        path.parent.mkdir(parents=True, exist_ok=True)
        if snapshots.write(new, path):
            self._written.append(shown)
        return path


@pytest.fixture
def shape_snapshot(request: pytest.FixtureRequest) -> ShapeSnapshot:
    """Check a model's shapes, params and MACs against ``tests/__shapes__/<module>__<test>.json``."""
    parts = [_module_part(Path(str(request.node.path)), request.config.rootpath)]
    if request.cls is not None:
        parts.append(request.cls.__name__)
    parts.append(request.node.name)
    return ShapeSnapshot(request.config.rootpath, "__".join(_file_part(p) for p in parts),
                         bool(request.config.getoption("shape_update")), request.config.stash[_WRITTEN])


def _module_part(path: Path, root: Path) -> str:
    """The test module as a dotted path below the rootdir (``tests/`` left out), so that
    ``tests/unit/test_a.py`` and ``tests/integration/test_a.py`` get files of their own while
    ``tests/test_a.py`` is plain ``test_a``."""
    try:
        parts = list(path.relative_to(root).with_suffix("").parts)
    except ValueError:
        parts = [path.stem]
    if len(parts) > 1 and parts[0] == "tests":
        parts = parts[1:]
    return ".".join(parts)


def _file_part(text: str) -> str:
    """A test name as part of a file name: ``test_x[resnet50-224]`` → ``test_x-resnet50-224``.

    Any other character a file name cannot hold is replaced as well, and then a short hash of the
    original name keeps apart ids that would otherwise meet (``[a b]`` and ``[a-b]``).
    """
    plain = re.sub(r"\[(.*)\]$", r"-\1", text)
    safe = _safe(plain)
    if safe == plain:
        return safe
    return f"{safe}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:8]}"


def _safe(text: str) -> str:
    """A file-name-safe form of a test name: ``test_x[resnet50-224]`` → ``test_x-resnet50-224``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "snapshot"


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
