"""Shared test configuration."""

from pathlib import Path

import pytest
import torch
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


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip the tests marked ``cuda`` without a CUDA device, in one place: ``python -m pytest -m cuda`` selects every
    test of a CUDA code path, and a new one only needs ``@pytest.mark.cuda`` (``benchmarks/gpu_check.sh``)."""
    if item.get_closest_marker("cuda") is not None and not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")


@pytest.fixture(autouse=True)
def _cuda_tests_in_full_float32(request: pytest.FixtureRequest):
    """The ``cuda`` tests compare with CPU values: float32 cuDNN convolutions in full precision there, not in TF32
    (torch's default for cuDNN on Ampere and later GPUs, about 1e-3 relative)."""
    if request.node.get_closest_marker("cuda") is None:
        yield
        return
    cudnn = torch.backends.cudnn
    with cudnn.flags(enabled=cudnn.enabled, benchmark=cudnn.benchmark, deterministic=cudnn.deterministic,
                     allow_tf32=False):
        yield
