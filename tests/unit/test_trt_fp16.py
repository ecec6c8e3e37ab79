"""FP16 emulation on the CPU (onnxconverter-common float16, FP32-marked nodes blocked) against FP32 ONNX Runtime.

Per engine graph of models/default, prepared as for TensorRT 10.3, on inputs shaped like the box's (latents
N(0,1), images in [-1,1], timesteps across the schedule). Tolerance, documented in docs/jetson.md: the largest
error within 5e-3 of the largest reference value and the RMS error within 3e-3 of the reference RMS (measured:
at most 1.7e-3 and 1.1e-3). The emulation rounds storage and arithmetic to FP16 the way ONNX Runtime's CPU
kernels do; TensorRT's GPU kernels differ, which the device check (`lpbf-edge trt check`) covers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.trt_standins import standins

BUNDLE = Path(__file__).resolve().parents[2] / "models" / "default"
MAX_TOL, RMS_TOL = 5e-3, 3e-3


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """(bundle, [(spec, Prepared)]) for every engine graph, and the stand-ins' fp16_emulation."""
    from edge.sr.bundle import load_bundle
    from edge.sr.trt_engines import engine_specs, prepare_spec

    bundle = load_bundle(BUNDLE)
    tmp = tmp_path_factory.mktemp("fp16")
    with standins():
        from tensorrt._fp16 import fp16_emulation

        yield bundle, [(s, prepare_spec(bundle, s, tmp)) for s in engine_specs(bundle)], fp16_emulation


def _feeds(bundle, spec, seed):
    from edge.sr.trt_engines import spec_shapes

    rng = np.random.default_rng(seed)
    out = {}
    for name, shp in spec_shapes(bundle, spec, 4).items():
        if name == "t":
            out[name] = np.array([199, 150, 60, 3], np.float32)
        elif name == "coef":
            out[name] = np.array([0, 1, 0, 0, 0, 0], np.float32)  # x0 = model output
        elif name in ("lr", "hr"):
            out[name] = rng.uniform(-1, 1, shp).astype(np.float32)
        else:
            out[name] = rng.standard_normal(shp).astype(np.float32)
    return out


def test_fp16_emulation_of_every_engine_graph_is_within_tolerance(prepared):
    import onnx
    import onnxruntime as ort

    from trt_build.convert import marked_fp32

    bundle, graphs, fp16_emulation = prepared
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    worst = {}
    for spec, prep in graphs:
        model = onnx.load(str(prep.path))
        s32 = ort.InferenceSession(str(prep.path), so, providers=["CPUExecutionProvider"])
        s16 = ort.InferenceSession(fp16_emulation(model, marked_fp32(model)).SerializeToString(), so,
                                   providers=["CPUExecutionProvider"])
        names = [o.name for o in s32.get_outputs()]
        k = names.index("x0") if spec.fused else 0
        for seed in range(2):
            feeds = _feeds(bundle, spec, seed)
            ref, got = s32.run(None, feeds)[k], s16.run(None, feeds)[k]
            err = got.astype(np.float64) - ref
            worst[spec.name] = max(worst.get(spec.name, 0.0), float(np.abs(err).max() / np.abs(ref).max()))
            assert np.abs(err).max() <= MAX_TOL * np.abs(ref).max(), (spec.name, worst[spec.name])
            assert np.sqrt(np.mean(err**2)) <= RMS_TOL * np.sqrt(np.mean(ref.astype(np.float64) ** 2)), spec.name
            assert not np.array_equal(got, ref)  # it really ran in FP16
    assert set(worst) >= {"denoiser.fused", "hr_decoder", "lr_encoder", "hr_encoder"}
