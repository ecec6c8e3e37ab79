"""Parity of an engine (or any backend) against the ONNX Runtime reference on the same random inputs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Runner = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


@dataclass(frozen=True)
class Parity:
    """Worst-case differences of one output."""

    output: str
    max_abs: float
    max_rel: float
    ref_absmax: float
    ok: bool

    def __str__(self) -> str:
        flag = "OK " if self.ok else "BAD"
        return (f"{flag} {self.output}: max|diff| {self.max_abs:.3g}, max rel {self.max_rel:.3g} "
                f"(|ref| max {self.ref_absmax:.3g})")


def random_feeds(shapes: dict[str, tuple[int, ...]], seed: int = 0, t_max: int = 199) -> dict[str, np.ndarray]:
    """Standard-normal inputs; an input named like a timestep gets integer indices in [0, t_max]."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name, shp in shapes.items():
        if name.lower() in ("t", "timestep", "timesteps"):
            feeds[name] = rng.integers(0, t_max + 1, size=shp).astype(np.float32)
        else:
            feeds[name] = rng.standard_normal(shp).astype(np.float32)
    return feeds


def compare(reference: Runner, candidate: Runner, feeds: dict[str, np.ndarray], names: list[str],
            atol: float, rtol: float) -> list[Parity]:
    """Run both on the same feeds; an output passes when |c - r| <= atol + rtol*|r| everywhere."""
    ref, got = reference(feeds), candidate(feeds)
    if len(ref) != len(got):
        raise ValueError(f"reference gave {len(ref)} outputs, candidate {len(got)}")
    out = []
    for name, r, c in zip(names, ref, got, strict=False):
        r, c = np.asarray(r, np.float64), np.asarray(c, np.float64)
        if r.shape != c.shape:
            raise ValueError(f"output {name}: shape {c.shape} != reference {r.shape}")
        diff = np.abs(c - r)
        rel = diff / np.maximum(np.abs(r), 1e-6)
        ok = bool(np.all(diff <= atol + rtol * np.abs(r)))
        out.append(Parity(name, float(diff.max()), float(rel.max()), float(np.abs(r).max()), ok))
    return out


def ort_runner(onnx_path: Path, shapes: dict[str, tuple[int, ...]] | None = None
               ) -> tuple[Runner, dict[str, tuple[int, ...]], list[str]]:
    """ONNX Runtime CPU reference: (run function, input shapes, output names); dynamic graphs need `shapes`."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    if shapes is None:
        shapes = {}
        for i in sess.get_inputs():
            if any(not isinstance(d, int) for d in i.shape):
                raise ValueError(f"{onnx_path}: input {i.name} has dynamic shape {i.shape}; pass static shapes")
            shapes[i.name] = tuple(i.shape)
    names = [o.name for o in sess.get_outputs()]
    return (lambda feeds: sess.run(None, feeds)), shapes, names


def check_engine(onnx_path: Path, engine_path: Path, atol: float = 5e-2, rtol: float = 5e-2, seed: int = 0,
                 shapes: dict[str, tuple[int, ...]] | None = None) -> list[Parity]:
    """Compare a TensorRT engine with ONNX Runtime on the same random inputs (on the box, or with the stand-ins)."""
    from trt_build.engine import TrtEngine

    ref, shapes, names = ort_runner(onnx_path, shapes)
    eng = TrtEngine(engine_path)
    return compare(ref, eng.run, random_feeds(shapes, seed), names, atol, rtol)
