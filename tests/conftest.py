import os
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# Outputs of the ISBI 2012 organisers' Java code (Fiji) on small synthetic stacks: see tests/fixtures/README.md.
GOLDEN = Path(__file__).resolve().parent / "fixtures" / "isbi2012_fiji_golden.npz"


def _data_root() -> Path:
    return Path(os.environ.get("UNETLIB_DATA", ROOT / "data"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real datasets; tests that need them are skipped (with the reason) when absent."""
    root = _data_root()
    if not (root / "isbi2012").is_dir():
        pytest.skip(f"real datasets not found at {root}: set UNETLIB_DATA (see README)")
    return root


@pytest.fixture(scope="session")
def golden():
    return np.load(GOLDEN)  # shipped with the tests: the equivalence tests never skip


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    np.random.seed(0)
    yield
