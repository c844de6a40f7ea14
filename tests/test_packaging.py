"""The package as pip installs it: ``python -m build`` makes an sdist and a wheel that ``twine check``
passes, and the wheel's console script and pytest plugin work in a fresh virtualenv.

Nothing is downloaded. The build runs without isolation (setuptools, build and twine come from the
test extra) on a copy of this checkout, which is left as it was. The fresh venv gets the wheel with
``pip install --no-deps --no-index``, and sees torch and the other dependencies through a .pth file
that names this interpreter's site-packages: a .pth file there is not itself read, so the checkout's
own (editable) install is not imported. Every run is checked to use the venv's resnet_inspect.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import pytest

import resnet_inspect

pytest.importorskip("build", reason="build is in the test extra: pip install -e '.[test]'")
pytest.importorskip("twine", reason="twine is in the test extra: pip install -e '.[test]'")

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "resnet_inspect"
LEFT_OUT = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
                                  ".pytest_cache", ".hypothesis")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel built from a copy of this checkout (tests, docs and all)."""
    root = tmp_path_factory.mktemp("packaging")
    shutil.copytree(REPO, root / "src", ignore=LEFT_OUT)
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(root / "dist"),
                           str(root / "src")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (root / "build.log").write_text(proc.stdout + proc.stderr)
    return root / "dist"


def only(folder: Path, pattern: str) -> Path:
    (found,) = folder.glob(pattern)
    return found


def test_the_build_warns_of_nothing_deprecated(dist: Path) -> None:
    """A deprecation in the build (such as a TOML table for ``project.license``) is a future build
    failure: setuptools names its deadline."""
    log = (dist.parent / "build.log").read_text()
    assert [line for line in log.splitlines() if "deprecat" in line.lower()] == []


def test_twine_check_passes(dist: Path) -> None:
    """The metadata and the README render as PyPI would show them (--strict: warnings fail too)."""
    files = [str(only(dist, "*.whl")), str(only(dist, "*.tar.gz"))]
    proc = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", *files], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_wheel_holds_the_package_and_its_data_and_no_tests(dist: Path) -> None:
    names = zipfile.ZipFile(only(dist, "*.whl")).namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"resnet_inspect", f"resnet_inspect-{resnet_inspect.__version__}.dist-info"}
    source = {path.relative_to(REPO).as_posix() for path in PACKAGE.rglob("*")
              if path.is_file() and "__pycache__" not in path.parts}
    assert source - set(names) == set()  # every module and every template, stylesheet and script
    assert {name for name in source if name.startswith("resnet_inspect/render/templates/")}
    tests = [name for name in names if {"tests", "test"} & set(name.split("/"))
             or name.split("/")[-1].startswith("test_") or name.endswith("conftest.py")]
    assert tests == []
    entry_points = zipfile.ZipFile(only(dist, "*.whl")).read(
        f"resnet_inspect-{resnet_inspect.__version__}.dist-info/entry_points.txt").decode()
    assert "resnet-inspect = resnet_inspect.cli:main" in entry_points
    assert "[pytest11]\nresnet_inspect = resnet_inspect.pytest_plugin" in entry_points


@pytest.fixture(scope="module")
def venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv with the wheel installed, its dependencies lent by this interpreter."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    lent = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    Path(purelib, "lent_dependencies.pth").write_text("".join(f"{path}\n" for path in lent if Path(path).is_dir()))
    proc = run_in(root, [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check",
                         str(only(dist, "*.whl"))], cwd=root.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root


def run_in(venv: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run as from the activated venv, with nothing of this checkout on the path."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(venv), PYTHONNOUSERSITE="1",
               COLUMNS="100")
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)


def test_the_console_script_runs_from_the_wheel(venv: Path, tmp_path: Path) -> None:
    """``resnet-inspect summary resnet18 --format json`` from the venv gives the in-process engine's totals."""
    where = run_in(venv, [str(venv / "bin" / "python"), "-c", "import resnet_inspect; print(resnet_inspect.__file__)"],
                   cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout + where.stderr
    proc = run_in(venv, [str(venv / "bin" / "resnet-inspect"), "summary", "resnet18", "--format", "json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["totals"] == resnet_inspect.inspect("resnet18").totals


PLUGIN_TESTS = '''import sys
from pathlib import Path

from torch import nn

import resnet_inspect.pytest_plugin


def test_the_plugin_comes_from_the_venv():
    assert Path(resnet_inspect.pytest_plugin.__file__).is_relative_to(sys.prefix)


def test_net(shape_snapshot):
    shape_snapshot.check(nn.Sequential(nn.Conv2d(3, 8, 3, stride=STRIDE), nn.ReLU()), input_size=(1, 3, 32, 32))
'''


def outcomes(report: Path) -> dict[str, str]:
    """Each test's outcome from pytest's JUnit XML report: passed, failure, error or skipped."""
    found = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        verdicts = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        found[case.get("name", "")] = verdicts[0] if verdicts else "passed"
    return found


def run_pytest(venv: Path, project: Path, *args: str) -> tuple[int, dict[str, str]]:
    report = project / "report.xml"
    proc = run_in(venv, [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                         f"--junitxml={report}", *args], cwd=project)
    return proc.returncode, outcomes(report)


def test_the_pytest_plugin_works_from_the_wheel(venv: Path, tmp_path: Path) -> None:
    """The shape_snapshot fixture and --shape-update are there; a changed model then fails its test."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "pytest.ini").write_text("[pytest]\ntestpaths = tests\n")
    test_file = tmp_path / "tests" / "test_net.py"
    test_file.write_text(PLUGIN_TESTS.replace("STRIDE", "2"))
    assert run_pytest(venv, tmp_path, "--shape-update") == (0, {"test_the_plugin_comes_from_the_venv": "passed",
                                                                 "test_net": "passed"})
    written = json.loads((tmp_path / "tests" / "__shapes__" / "test_net__test_net.json").read_text())
    side = (32 - 3) // 2 + 1  # O = ⌊(I − K)/S⌋ + 1
    assert [layer["output_shapes"] for layer in written["layers"] if layer["name"] == "0"] == [[[1, 8, side, side]]]
    test_file.write_text(PLUGIN_TESTS.replace("STRIDE", "1"))
    assert run_pytest(venv, tmp_path) == (1, {"test_the_plugin_comes_from_the_venv": "passed", "test_net": "failure"})


def test_the_readme_installs_cpu_torch_first_then_the_package() -> None:
    """The README's pip path, command by command: CPU torch from PyTorch's index, then this package
    from a clone or from git."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    (block,) = [block for block in re.findall(r"```sh\n(.*?)```", text, re.S) if "pip install" in block]
    commands = [shlex.split(line.split("#")[0]) for line in block.splitlines() if line.strip()]
    assert commands[0] == ["pip", "install", "torch", "--index-url", "https://download.pytorch.org/whl/cpu"]
    assert [command[:2] for command in commands] == [["pip", "install"]] * 3
    assert [command[2:] for command in commands[1:]] == [["."], ["git+<this repository's git URL>"]]
