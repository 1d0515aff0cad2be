"""Shared test fixtures: offline env, a fixed seed, and the location of ../shared/real_samples."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

REPO = Path(__file__).resolve().parents[1]
REAL_SAMPLES = REPO.parent / "shared" / "real_samples"


@pytest.fixture
def real_samples() -> Path:
    """The real sample data beside the repo (../shared/real_samples), or skip with the reason."""
    if not REAL_SAMPLES.is_dir():
        pytest.skip(f"real samples not found at {REAL_SAMPLES} (they sit at ../shared beside the repo in CI)")
    return REAL_SAMPLES


@pytest.fixture
def one_thread():
    """The test machine's 2 cores are shared; one intra-op thread avoids oversubscription stalls."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
