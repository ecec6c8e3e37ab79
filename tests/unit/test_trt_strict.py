"""The strict stand-ins bite, the runtime checks every TensorRT/CUDA result, never builds, and the `trt` CLI works."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.trt_standins import standins

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "models" / "default"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """(stand-in tensorrt, stand-in cuda runtime, bundle, FP32 engine folder)."""
    from edge.sr.bundle import load_bundle
    from edge.sr.trt_engines import build_engines

    with standins() as (trt, rt):
        bundle = load_bundle(BUNDLE)
        folder = tmp_path_factory.mktemp("strict") / "engines"
        build_engines(bundle, folder, buckets=(1, 2), precision="fp32", log=lambda _m: None)
        yield trt, rt, bundle, folder


def _fused_engine(env):
    from trt_build.engine import TrtEngine

    _trt, _rt, _bundle, folder = env
    (path,) = folder.glob("denoiser.fused-*.engine")
    return TrtEngine(path)


def _bound(env, batch=1):
    """A fused engine with every tensor bound to its own buffer: (engine, ctx, stream, buffers)."""
    from trt_build.cudart import DeviceBuffer, Stream

    eng, stream = _fused_engine(env), Stream()
    ctx, shapes = eng.context(batch, stream)
    bufs = {n: DeviceBuffer.like(shapes[n], np.float32) for n in eng.inputs + eng.outputs}
    for n, b in bufs.items():
        b.upload(np.zeros(shapes[n], np.float32), stream)
        eng.bind(ctx, n, b.ptr)
    return eng, ctx, stream, bufs


def test_moving_an_address_between_captured_enqueues_fails(env):
    """The old loop rebound `t` to row i of a table at every step inside the capture: the stand-in refuses it."""
    from trt_build.cudart import CudaGraph, DeviceBuffer

    trt = env[0]
    eng, ctx, stream, bufs = _bound(env)
    eng.enqueue(ctx, stream)  # the eager warm-up
    table = DeviceBuffer(4 * 256)

    def rebinding_loop():
        for i in range(3):
            eng.bind(ctx, "t", table.ptr + 256 * i)
            eng.enqueue(ctx, stream)

    with pytest.raises(trt.StrictViolation, match="moved|moves"):
        CudaGraph(stream, rebinding_loop)


def test_capture_needs_an_eager_enqueue_first(env):
    from trt_build.cudart import CudaGraph

    trt = env[0]
    eng, ctx, stream, _bufs = _bound(env)
    with pytest.raises(trt.StrictViolation, match="no eager enqueue"):
        CudaGraph(stream, lambda: eng.enqueue(ctx, stream))


def test_host_copies_cannot_be_captured(env):
    from trt_build.cudart import CudaError, CudaGraph, DeviceBuffer, Stream

    stream, buf = Stream(), DeviceBuffer(64)
    with pytest.raises(CudaError, match="cudaMemcpyAsync\\(host to device\\).*CaptureUnsupported"):
        CudaGraph(stream, lambda: buf.upload(np.zeros(16, np.float32), stream))


def test_shape_before_profile_is_refused_by_the_standin(env):
    trt, _rt, _bundle, _folder = env
    eng = _fused_engine(env)
    ctx = eng.engine.create_execution_context()
    with pytest.raises(trt.StrictViolation, match="before set_optimization_profile_async"):
        ctx.set_input_shape("x", (1, 4, 16, 16))


@pytest.mark.parametrize("call", ["set_optimization_profile_async", "set_input_shape", "set_tensor_address",
                                  "execute_async_v3"])
def test_every_false_from_tensorrt_raises(env, call, monkeypatch):
    """A setter or enqueue that returns False stops the run with the call named, never a silent garbage result."""
    from tensorrt._engine import IExecutionContext

    from trt_build.engine import TrtCallFailed

    monkeypatch.setattr(IExecutionContext, call, lambda self, *a: False)
    eng = _fused_engine(env)
    feeds = {n: np.zeros((1, 4, 16, 16), np.float32) for n in ("x", "cond", "noise", "x0_prev")}
    feeds.update(t=np.zeros(1, np.float32), coef=np.zeros(6, np.float32))
    with pytest.raises(TrtCallFailed, match=call):
        eng.run(feeds)


def test_shape_outside_the_profile_is_refused(env):
    from trt_build.cudart import Stream

    eng = _fused_engine(env)
    ctx = eng.engine.create_execution_context()
    assert ctx.set_optimization_profile_async(0, Stream().handle)
    assert not ctx.set_input_shape("x", (3, 4, 16, 16))  # profile 0 is batch 1
    assert ctx.set_input_shape("x", (1, 4, 16, 16))


def test_runtime_never_builds_and_names_what_is_missing_or_stale(env, tmp_path, monkeypatch):
    from edge.sr.runners import BackendUnavailable
    from edge.sr.runners_trt import TrtRunner

    _trt, rt, bundle, folder = env
    empty = tmp_path / "empty"
    with pytest.raises(BackendUnavailable, match="lpbf-edge trt build"):
        TrtRunner(bundle, engine_dir=empty, precision="fp32")
    assert not empty.exists()  # nothing was built or written
    with pytest.raises(BackendUnavailable, match="precision"):
        TrtRunner(bundle, engine_dir=folder, precision="fp16")
    prop = rt.cudaDeviceProp()
    prop.name = b"Xavier\0"
    monkeypatch.setattr(rt, "cudaDeviceProp", lambda: prop)
    with pytest.raises(BackendUnavailable, match="device_name: engine has 'Stand-in Orin"):
        TrtRunner(bundle, engine_dir=folder, precision="fp32")


def test_trt_cli_build_check_and_refusal(env, tmp_path):
    from edge.cli import app

    _trt, _rt, _bundle, _folder = env
    out = tmp_path / "engines"
    cli = CliRunner()
    res = cli.invoke(app, ["trt", "build", str(BUNDLE), "--engines", str(out), "--buckets", "1,2", "--fp32"])
    assert res.exit_code == 0, res.output
    man = json.loads((out / "manifest.json").read_text())
    assert set(man["engines"]) >= {"denoiser.fused", "hr_decoder", "lr_encoder"}
    assert all(e["buckets"] == [1, 2] for e in man["engines"].values())
    res = cli.invoke(app, ["trt", "build", str(BUNDLE), "--engines", str(out), "--buckets", "1,2", "--fp32"])
    assert res.exit_code == 0 and "building" not in res.output  # every key matched: nothing rebuilt
    res = cli.invoke(app, ["trt", "check", str(BUNDLE), "--engines", str(out), "--fp32", "--atol", "1e-3",
                           "--rtol", "1e-3"])
    assert res.exit_code == 0, res.output
    assert res.output.count("OK ") >= len(man["engines"])
    for e in man["engines"].values():
        e["key"]["l4t_version"] = "35.4.1"
    (out / "manifest.json").write_text(json.dumps(man))
    res = cli.invoke(app, ["trt", "check", str(BUNDLE), "--engines", str(out), "--fp32"])
    assert res.exit_code == 1 and "REFUSED" in res.output and "l4t_version" in res.output


def test_trt_lint_cli_passes_prepared_graphs_and_fails_raw_ones():
    from edge.cli import app

    res = CliRunner().invoke(app, ["trt", "lint", str(BUNDLE)])
    assert res.exit_code == 0, res.output
    assert "denoiser.fused: opset 18, 23 GroupNorm decomposed" in res.output
    res = CliRunner().invoke(app, ["trt", "lint", str(BUNDLE), "--raw"])
    assert res.exit_code == 1 and "opset 21 outside 9..20" in res.output


def test_tensorrt_other_than_10_is_refused_with_the_version(env, monkeypatch):
    from trt_build.device import TensorRTUnavailable, import_trt

    trt = env[0]
    monkeypatch.setattr(trt, "__version__", "8.6.1")
    with pytest.raises(TensorRTUnavailable, match="TensorRT 8.6.1 found; this code targets TensorRT 10"):
        import_trt()
