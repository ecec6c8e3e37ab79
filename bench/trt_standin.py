"""The Jetson path on this CPU through the strict stand-ins: FP16 emulation error per engine graph, and the
SuperResolver on the tensorrt backend (FP32 and FP16 engines) against the ONNX Runtime fused path.

    python bench/trt_standin.py [--json runs/bench/trt_standin.json]

Numbers from this script are what docs/jetson.md reports. The stand-ins emulate TensorRT on ONNX Runtime; they
prove the path (graph preparation, engine keys, CUDA-graph loop, bucket handling) and bound FP16 storage error,
not TensorRT's speed or its GPU kernels' numerics.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.sr.bundle import load_bundle  # noqa: E402
from edge.sr.trt_engines import build_engines, engine_specs, prepare_spec, spec_shapes  # noqa: E402
from tests.trt_standins import standins  # noqa: E402

BUNDLE = REPO / "models" / "default"


def fp16_errors(bundle, tmp: Path) -> dict:
    """Per engine graph: max |err| / max |ref| and RMS err / RMS ref of FP16 emulation, pinned and unpinned."""
    import onnx
    import onnxruntime as ort
    from tensorrt._fp16 import fp16_emulation

    from trt_build.convert import marked_fp32

    so = ort.SessionOptions()
    so.log_severity_level = 3
    out = {}
    for spec in engine_specs(bundle):
        prep = prepare_spec(bundle, spec, tmp)
        model = onnx.load(str(prep.path))
        ref_sess = ort.InferenceSession(str(prep.path), so, providers=["CPUExecutionProvider"])
        k = [o.name for o in ref_sess.get_outputs()].index("x0") if spec.fused else 0
        row = {}
        for label, block in (("pinned", marked_fp32(model)), ("unpinned", [])):
            sess = ort.InferenceSession(fp16_emulation(model, block).SerializeToString(), so,
                                        providers=["CPUExecutionProvider"])
            worst = [0.0, 0.0]
            for seed in range(4):
                rng = np.random.default_rng(seed)
                feeds = {}
                for name, shp in spec_shapes(bundle, spec, 4).items():
                    if name == "t":
                        feeds[name] = np.array([199, 150, 60, 3], np.float32)
                    elif name == "coef":
                        feeds[name] = np.array([0, 1, 0, 0, 0, 0], np.float32)
                    elif name in ("lr", "hr"):
                        feeds[name] = rng.uniform(-1, 1, shp).astype(np.float32)
                    else:
                        feeds[name] = rng.standard_normal(shp).astype(np.float32)
                ref, got = ref_sess.run(None, feeds)[k].astype(np.float64), sess.run(None, feeds)[k]
                worst[0] = max(worst[0], float(np.abs(got - ref).max() / np.abs(ref).max()))
                worst[1] = max(worst[1], float(np.sqrt(np.mean((got - ref) ** 2)) / np.sqrt(np.mean(ref**2))))
            row[label] = {"max_rel": worst[0], "rms_rel": worst[1]}
        out[spec.name] = {"fp32_marked_nodes": len(prep.fp32_names), **row}
        print(f"{spec.name:26s} marked {len(prep.fp32_names):3d}  pinned max {row['pinned']['max_rel']:.2e} "
              f"rms {row['pinned']['rms_rel']:.2e}  unpinned max {row['unpinned']['max_rel']:.2e} "
              f"rms {row['unpinned']['rms_rel']:.2e}")
    return out


def sr_against_ort(bundle, tmp: Path) -> dict:
    """Gray-level differences of SuperResolver(tensorrt, FP32 / FP16 engines) from the ORT fused path."""
    from edge.sr.resolver import SuperResolver

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :80]
    img = np.clip(120 + 50 * np.sin(xx / 5.0) * np.cos(yy / 7.0) + rng.normal(0, 12, xx.shape), 0, 255)
    img = img.astype(np.uint8)
    ref = SuperResolver.from_bundle(BUNDLE, backend="ort", fused=True, batch=8).upscale(img, samples=2, reduce="mean")
    out = {}
    for precision in ("fp32", "fp16"):
        folder = tmp / precision
        t0 = time.perf_counter()
        build_engines(bundle, folder, precision=precision, log=lambda _m: None)
        build_s = time.perf_counter() - t0
        sr = SuperResolver.from_bundle(BUNDLE, backend="tensorrt", engine_dir=folder, precision=precision, batch=8)
        got = sr.upscale(img, samples=2, reduce="mean")
        d = np.abs(got.sr.astype(int) - ref.sr.astype(int))
        out[precision] = {"max_gray": int(d.max()), "mean_gray": float(d.mean()), "standin_build_s": round(build_s, 1)}
        print(f"SR {img.shape} x4, 2 antithetic samples, mean: {precision} engines vs ORT fused: max |diff| "
              f"{d.max()} gray levels, mean {d.mean():.4f}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, default=None, help="Write the numbers here.")
    args = ap.parse_args()
    bundle = load_bundle(BUNDLE)
    with tempfile.TemporaryDirectory() as tmp, standins():
        result = {"model_id": bundle.model_id, "fp16_emulation": fp16_errors(bundle, Path(tmp)),
                  "superresolver": sr_against_ort(bundle, Path(tmp))}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
