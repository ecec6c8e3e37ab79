"""TensorRT on a CUDA box: engine build + cache, parity with ONNX Runtime, CUDA-graph sampler loop."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

SHAPE = (2, 4, 16, 16)


@pytest.fixture(scope="module")
def denoiser_onnx(tmp_path_factory):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(8, 4, 3, padding=1)
            self.norm = torch.nn.GroupNorm(2, 4)

        def forward(self, x, t, cond):
            return self.norm(self.conv(torch.cat([x, cond], 1))) * torch.cos(t[:, None, None, None] / 50.0)

    path = tmp_path_factory.mktemp("trt") / "denoiser.onnx"
    x = torch.zeros(SHAPE)
    torch.onnx.export(Net().eval(), (x, torch.zeros(SHAPE[0]), x), str(path), input_names=["x", "t", "cond"],
                      output_names=["out"], opset_version=18, dynamo=False)
    return path


def test_build_cache_and_parity(denoiser_onnx, tmp_path):
    from edge.sr.runners_trt import engine_for
    from trt_build.parity import check_engine

    logs = []
    e1 = engine_for(denoiser_onnx, tmp_path, log=logs.append)
    assert engine_for(denoiser_onnx, tmp_path, log=logs.append) == e1  # cached, not rebuilt
    assert sum("refusing" in m for m in logs) == 1  # only the first (empty cache) call
    for p in check_engine(denoiser_onnx, e1, atol=2e-2, rtol=2e-2):
        assert p.ok, str(p)


def test_cuda_graph_loop_matches_cpu_loop(denoiser_onnx, tmp_path):
    import onnxruntime as ort

    from edge.sr.fused import FusedOrtLoop, fuse_onnx, plan_steps
    from edge.sr.runners_trt import TrtEngine, TrtGraphLoop, engine_for

    acp = np.cumprod(1 - np.linspace(1e-4, 0.02, 200))
    plan = plan_steps(acp, np.linspace(199, 0, 10).round().astype(int), "dpmpp_2m", "v_prediction")
    rng = np.random.default_rng(0)
    x, cond = rng.standard_normal(SHAPE).astype(np.float32), rng.standard_normal(SHAPE).astype(np.float32)
    fuse_onnx(denoiser_onnx, tmp_path / "fused.onnx")
    cpu = FusedOrtLoop(ort.InferenceSession(str(tmp_path / "fused.onnx")), plan, SHAPE[0], SHAPE[1:]).run(x, cond)
    loop = TrtGraphLoop(TrtEngine(engine_for(denoiser_onnx, tmp_path, buckets=(SHAPE[0],))), plan, SHAPE[0], SHAPE[1:])
    a, b = loop.run(x, cond), loop.run(x, cond)
    np.testing.assert_array_equal(a, b)  # replay is deterministic
    np.testing.assert_allclose(a, cpu, atol=5e-2 * max(1.0, float(np.abs(cpu).max())))
