"""Shared test fixtures: where the seeds and the published reference figures live."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from torch import nn

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
def seed_003() -> str:
    files = sorted(SEEDS.glob("003_*.txt")) if SEEDS.exists() else []
    if not files:
        pytest.skip(f"seed 003 not found under {SEEDS}: the shared/ folder is not beside this checkout")
    return files[0].read_text(encoding="utf-8")


def state_checksum(model: nn.Module) -> str:
    """A digest of every parameter and buffer, to prove that inspecting left a model untouched."""
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().numpy().tobytes())
    return digest.hexdigest()
