"""The TensorRT path on a real Jetson/CUDA box: the same tests as tests/unit/test_trt_runtime.py, with the real
TensorRT 10 and cuda-python in place of the stand-ins, plus the parity check of every engine."""

from __future__ import annotations

import numpy as np
import pytest

from tests.unit.test_trt_runtime import (  # noqa: F401 (collected here with the real-device fixture below)
    BUNDLE,
    TrtEnv,
    test_fast_profile_runs_the_student_and_light_parts_on_tensorrt,
    test_fp16_engines_stay_close_to_fp32,
    test_graph_loop_matches_the_cpu_fused_loop,
    test_runner_graphs_match_ort_with_bucket_padding,
    test_superresolver_tensorrt_backend_runs_the_graph_loop_like_the_cpu,
)

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def trt_env(tmp_path_factory):
    """Engines of models/default built on this device (FP32 and FP16)."""
    from edge.sr.bundle import load_bundle
    from edge.sr.trt_engines import build_engines

    bundle = load_bundle(BUNDLE)
    root = tmp_path_factory.mktemp("trt-engines")
    engines = {p: root / p for p in ("fp32", "fp16")}
    for precision, folder in engines.items():
        build_engines(bundle, folder, precision=precision)
    # FP16 tolerance on the device: the CPU emulation's bound (docs/jetson.md) until measured on a Jetson
    yield TrtEnv(bundle, engines, fp16_gray_tol=3.0, cuda=None)


def test_every_engine_agrees_with_onnx_runtime(trt_env):
    """`lpbf-edge trt check` on the device: every FP16 engine within 5e-2 of ORT on the prepared graph."""
    from typer.testing import CliRunner

    from edge.cli import app

    res = CliRunner().invoke(app, ["trt", "check", str(BUNDLE), "--engines", str(trt_env.engines["fp16"])])
    assert res.exit_code == 0, res.output
    assert "REFUSED" not in res.output and "BAD" not in res.output


def test_graph_replay_is_deterministic(trt_env):
    from edge.sr.resolver import SuperResolver

    img = np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)
    sr = SuperResolver.from_bundle(BUNDLE, backend="tensorrt", engine_dir=trt_env.engines["fp16"], batch=8)
    np.testing.assert_array_equal(sr.upscale(img).sr, sr.upscale(img).sr)
