"""Shared fixtures. Tests that need ../shared/data skip with a reason when it is absent."""

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared recordings not found at {SHARED_DATA} (not part of the repository)")
    return SHARED_DATA
