"""Put the strict TensorRT/CUDA stand-ins (tests/standins) on the import path for a block of tests, then remove them.

They replace `tensorrt` and `cuda` (cuda-python) only inside `standins()`; the default import path never sees
them, and a real TensorRT on the machine is restored afterwards.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

STANDINS = Path(__file__).resolve().parent / "standins"
_PREFIXES = ("tensorrt", "cuda")


def _ours(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in _PREFIXES)


@contextmanager
def standins():
    """Yield (tensorrt stand-in, cuda runtime stand-in) with a fresh fake device."""
    from trt_build import cudart

    saved = {k: v for k, v in sys.modules.items() if _ours(k)}
    for k in saved:
        del sys.modules[k]
    sys.path.insert(0, str(STANDINS))
    cudart.reset_runtime()
    try:
        import cuda.bindings.runtime as rt
        import tensorrt as trt

        assert Path(trt.__file__).is_relative_to(STANDINS) and Path(rt.__file__).is_relative_to(STANDINS)
        rt._reset()
        yield trt, rt
    finally:
        sys.path.remove(str(STANDINS))
        for k in [k for k in sys.modules if _ours(k)]:
            del sys.modules[k]
        sys.modules.update(saved)
        cudart.reset_runtime()
