"""TensorRT import with a version check, and the device facts an engine is tied to (device, SM, TRT, CUDA, L4T)."""

from __future__ import annotations

import re
from pathlib import Path

from trt_build.recipe import DeviceFacts

TRT_MAJOR = 10  # the API this code is written against; JetPack 6.1/6.2 ship TensorRT 10.3
TEGRA_RELEASE = Path("/etc/nv_tegra_release")


class TensorRTUnavailable(RuntimeError):
    """TensorRT (or a CUDA device) is not usable on this machine; the message says why and where it runs."""


def import_trt():
    """The tensorrt module (TensorRT 10.x), or TensorRTUnavailable with the reason."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailable(
            "TensorRT is not importable: engines are built and run on the Jetson box, whose venv sees JetPack's "
            "TensorRT (python3-libnvinfer) through its system site packages") from exc
    version = str(getattr(trt, "__version__", "0"))
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    if major != TRT_MAJOR:
        raise TensorRTUnavailable(f"TensorRT {version} found; this code targets TensorRT {TRT_MAJOR}.x "
                                  "(JetPack 6.1/6.2 ship 10.3)")
    return trt


def l4t_version(path: Path = TEGRA_RELEASE) -> str:
    """'36.4.0' from '# R36 (release), REVISION: 4.0, ...' in /etc/nv_tegra_release; 'none' off Jetson."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "none"
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"{m.group(1)}.{m.group(2)}" if m else "unknown"


def device_facts(device: int = 0, tegra_release: Path = TEGRA_RELEASE) -> DeviceFacts:
    """Facts of CUDA device `device` on this machine (needs TensorRT and cuda-python)."""
    from trt_build.cudart import CudaError, check, runtime

    trt = import_trt()
    rt = runtime()
    try:
        prop = check(rt.cudaGetDeviceProperties(device), f"cudaGetDeviceProperties({device})")
        cuda = int(check(rt.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion"))
    except CudaError as exc:
        raise TensorRTUnavailable(f"no usable CUDA device {device}: {exc}") from exc
    name = prop.name.split(b"\0")[0].decode(errors="replace") if isinstance(prop.name, bytes) else str(prop.name)
    return DeviceFacts(device_name=name.strip(), compute_capability=f"{prop.major}.{prop.minor}",
                       trt_version=str(trt.__version__), cuda_version=f"{cuda // 1000}.{(cuda % 1000) // 10}",
                       l4t_version=l4t_version(tegra_release))
