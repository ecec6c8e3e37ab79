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

    from edge.sr.fused import FusedOrtLoop, fuse_onnx
    from edge.sr.plan import plan_steps
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


def test_trt_runner_matches_ort_runner_on_tiny_bundle(tmp_path):
    from edge.sr.bundle import load_bundle
    from edge.sr.runners import OrtRunner
    from edge.sr.runners_trt import TrtRunner
    from tests.sr_fixtures import tiny_bundle

    bundle = load_bundle(tiny_bundle())
    trt_r, ort_r = TrtRunner.from_bundle(bundle, cache_dir=tmp_path, buckets=(1, 4)), OrtRunner(bundle)
    rng = np.random.default_rng(0)
    h = bundle.lr_patch
    lr = rng.uniform(-1, 1, (3, 1, h, h)).astype(np.float32)  # batch 3 is padded to the bucket of 4
    z = rng.standard_normal((3, 4, h, h)).astype(np.float32)
    t = np.full(3, 20, np.float32)
    for a, b in [(trt_r.encode_lr(lr), ort_r.encode_lr(lr)), (trt_r.denoise(z, t, z), ort_r.denoise(z, t, z)),
                 (trt_r.decode(z), ort_r.decode(z))]:
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=5e-2 * max(1.0, float(np.abs(b).max())))


def test_trt_cli_refuses_foreign_engine(tmp_path):
    """An engine cache written for another GPU is refused by `trt check` with the differing field named."""
    from typer.testing import CliRunner

    from edge.cli import app
    from tests.sr_fixtures import tiny_bundle

    res = CliRunner().invoke(app, ["trt", "build", str(tiny_bundle()), "--cache", str(tmp_path), "--buckets", "1"])
    assert res.exit_code == 0, res.output
    import json

    man = json.loads((tmp_path / "manifest.json").read_text())
    for e in man["engines"].values():
        e["key"]["compute_capability"] = "1.0"
    (tmp_path / "manifest.json").write_text(json.dumps(man))
    res = CliRunner().invoke(app, ["trt", "check", str(tiny_bundle()), "--cache", str(tmp_path), "--buckets", "1"])
    assert res.exit_code == 1 and "REFUSED" in res.output and "compute_capability" in res.output
