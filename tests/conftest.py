"""Shared fixtures: real-data location, hardware-marker skips."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("LPBF_REALDATA", REPO.parent / "shared" / "realdata"))


def _has_cuda_trt() -> str | None:
    """None when TensorRT + cuda-python + a CUDA device are usable, else the reason they are not."""
    for mod in ("tensorrt", "cuda"):
        if importlib.util.find_spec(mod) is None:
            return (f"{mod} is not installed: the gpu tests run on the Jetson/CUDA box (tests/unit/test_trt_*.py run "
                    "the same path here through the stand-ins)")
    try:
        from trt_build.device import device_facts

        device_facts()
    except Exception as exc:  # no driver, no device, wrong TensorRT major: say which
        return f"no usable TensorRT/CUDA device: {exc}"
    return None


def _has_daq() -> str | None:
    """None when an NI-DAQmx driver with a device is present, else why not."""
    try:
        import nidaqmx.system

        if not list(nidaqmx.system.System.local().devices):
            return "NI-DAQmx driver present but no DAQ device attached"
    except Exception as exc:  # driver missing raises a DaqNotFoundError or OSError
        return f"NI-DAQmx driver not available: {type(exc).__name__}"
    return None


def pytest_collection_modifyitems(config, items):
    """Skip gpu/daq-marked tests with a clear reason on machines without that hardware."""
    gpu_reason, daq_reason = _has_cuda_trt(), _has_daq()
    for item in items:
        if gpu_reason and "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=gpu_reason))
        if daq_reason and "daq" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=daq_reason))


@pytest.fixture(scope="session")
def realdata() -> Path:
    """Folder of the real MIT-licensed powder-bed photographs; skip when absent."""
    if not (REALDATA / "README.md").exists():
        pytest.skip(f"real photographs not found at {REALDATA} (set LPBF_REALDATA)")
    return REALDATA


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch intra-op thread for a module of tiny models: spinning threads on a shared 2-core box slow them ~10x."""
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
