"""Parity checker: ONNX Runtime reference vs another real backend (OpenVINO here; TensorRT on the GPU box)."""

from __future__ import annotations

import numpy as np
import pytest

from trt_build.parity import compare, ort_runner, random_feeds

ov = pytest.importorskip("openvino")


def _conv_onnx(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).standard_normal((4, 4, 3, 3)).astype(np.float32)
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), str(path))
    return path


def test_ort_vs_openvino_parity(tmp_path):
    path = _conv_onnx(tmp_path / "c.onnx")
    ref, shapes, names = ort_runner(path)
    assert shapes == {"x": (1, 4, 8, 8)} and names == ["y"]
    core = ov.Core()
    compiled = core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    cand = lambda f: [compiled(f)[0]]  # noqa: E731
    feeds = random_feeds(shapes)
    [p] = compare(ref, cand, feeds, names, atol=1e-4, rtol=1e-4)
    assert p.ok and p.max_abs < 1e-4
    # a candidate that is off by 1% fails a 1e-4 tolerance and says so
    [bad] = compare(ref, lambda f: [compiled(f)[0] * 1.01], feeds, names, atol=1e-4, rtol=1e-4)
    assert not bad.ok and str(bad).startswith("BAD")


def test_random_feeds_timestep_integer():
    f = random_feeds({"x": (2, 4, 4, 4), "t": (2,)}, t_max=9)
    assert f["t"].dtype == np.float32 and np.all(f["t"] == np.round(f["t"])) and f["t"].max() <= 9
