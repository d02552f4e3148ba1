"""Shared test configuration."""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# numba kernels compile on first use: a per-example deadline would measure compilation, not the code.
settings.register_profile(
    "medloss", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.load_profile("medloss")

DATA = Path(__file__).parent / "data"


@pytest.fixture
def data_dir() -> Path:
    return DATA
