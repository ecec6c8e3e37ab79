"""Graph preparation for the TensorRT 10.3 parser and the ONNX lint, on the shipped bundle's real graphs (no torch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trt_build.convert import FP32_MARK, TARGET_OPSET, fp32_nodes, marked_fp32, prepare_graph
from trt_build.lint import errors, lint_file, lint_model

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "models" / "default"
SHAPES = {"x": (2, 4, 16, 16), "cond": (2, 4, 16, 16), "latent": (2, 4, 16, 16), "lr": (2, 1, 16, 16),
          "hr": (2, 1, 64, 64), "t": (2,)}


def _ort(path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _feeds(sess, seed=0):
    rng = np.random.default_rng(seed)
    return {i.name: (rng.uniform(0, 199, SHAPES[i.name]) if i.name == "t" else rng.standard_normal(SHAPES[i.name]))
            .astype(np.float32) for i in sess.get_inputs()}


@pytest.mark.parametrize("graph", ["denoiser", "hr_decoder", "hr_encoder", "lr_encoder"])
def test_prepared_bundle_graph_computes_the_same_and_passes_the_lint(graph, tmp_path):
    src = BUNDLE / f"{graph}.onnx"
    raw = onnx.load(str(src))
    assert any(n.op_type == "GroupNormalization" for n in raw.graph.node)  # the shipped dynamo export
    assert any("opset 21" in str(f) for f in errors(lint_file(src)))  # the lint refuses the raw graph
    prep = prepare_graph(src, tmp_path / "p.onnx")
    model = onnx.load(str(prep.path))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [TARGET_OPSET]
    assert not any(n.op_type == "GroupNormalization" for n in model.graph.node)
    assert prep.group_norms == sum(n.op_type == "GroupNormalization" for n in raw.graph.node)
    assert errors(lint_file(prep.path)) == []
    a, b = _ort(src), _ort(prep.path)
    feeds = _feeds(a)
    ref, got = a.run(None, feeds)[0], b.run(None, feeds)[0]
    np.testing.assert_allclose(got, ref, atol=1e-4 * max(1.0, float(np.abs(ref).max())))


def test_denoiser_fp32_marks_follow_op_patterns(tmp_path):
    """Sin/Cos and the time MLP (the t-only cone) and every normalisation are marked; shape/int nodes never."""
    prep = prepare_graph(BUNDLE / "denoiser.onnx", tmp_path / "d.onnx")
    model = onnx.load(str(prep.path))
    nodes = {n.name: n for n in model.graph.node}
    time_ops = {nodes[n].op_type for n in prep.fp32["cone:t"]}
    assert {"Sin", "Cos", "Gemm"} <= time_ops
    norm_ops = [nodes[n].op_type for n in prep.fp32["normalization"]]
    assert norm_ops.count("InstanceNormalization") == prep.group_norms == 23
    assert sorted(marked_fp32(model)) == prep.fp32_names
    assert all(n.startswith(FP32_MARK) for n in prep.fp32_names)
    marked_types = {nodes[n].op_type for n in prep.fp32_names}
    assert not marked_types & {"Shape", "Reshape", "Expand", "Conv"}  # no int/shape nodes, no U-Net body


def _graph(nodes, inputs, outputs, inits=(), opset=18):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def test_decomposed_layernorm_statistics_are_marked_and_int_shape_nodes_are_not():
    """A hand-written LayerNorm: ReduceMean/Sub/Mul/ReduceMean/Add/Sqrt/Div statistics marked; the int shape chain
    (named like a norm, which the old name match would have pinned) is not."""
    f = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)  # noqa: E731
    axes = numpy_helper.from_array(np.array([-1], np.int64), "axes")
    eps = numpy_helper.from_array(np.array(1e-5, np.float32), "eps")
    nodes = [
        helper.make_node("ReduceMean", ["x", "axes"], ["mu"], name="ln/mean"),
        helper.make_node("Sub", ["x", "mu"], ["d"], name="ln/sub"),
        helper.make_node("Mul", ["d", "d"], ["d2"], name="ln/sq"),
        helper.make_node("ReduceMean", ["d2", "axes"], ["var"], name="ln/var"),
        helper.make_node("Add", ["var", "eps"], ["ve"], name="ln/add_eps"),
        helper.make_node("Sqrt", ["ve"], ["sd"], name="ln/sqrt"),
        helper.make_node("Div", ["d", "sd"], ["n"], name="ln/div"),
        helper.make_node("Shape", ["n"], ["shp"], name="norm/shape"),
        helper.make_node("Reshape", ["n", "shp"], ["y"], name="norm/reshape_int_input"),
    ]
    model = _graph(nodes, [f("x", [2, 8])], [f("y", [2, 8])], [axes, eps])
    found = fp32_nodes(model)
    names = {model.graph.node[i].name for i in found["normalization"]}
    assert names == {"ln/mean", "ln/sq", "ln/var", "ln/add_eps", "ln/sqrt"}
    assert "norm/shape" not in names


def test_fused_step_update_is_marked_downstream_of_coef(tmp_path):
    """In a fused sampler step every node fed by `coef` (the update x0 = p0 x + p1 m, x_prev = ...) stays FP32."""
    from edge.sr.fused import fuse_onnx

    fused = fuse_onnx(BUNDLE / "denoiser.onnx", tmp_path / "fused.onnx")
    prep = prepare_graph(fused, tmp_path / "prep.onnx")
    model = onnx.load(str(prep.path))
    marked = set(prep.fp32["cone:coef"])
    producers = {o: n.name for n in model.graph.node for o in n.output}
    assert producers["x_prev"] in marked and producers["x0"] in marked
    assert errors(lint_file(prep.path)) == []


def test_group_norm_18_per_group_form_is_decomposed_exactly(tmp_path):
    rng = np.random.default_rng(1)
    f = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)  # noqa: E731
    scale, bias = rng.standard_normal(2).astype(np.float32), rng.standard_normal(2).astype(np.float32)
    node = helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], name="gn", num_groups=2, epsilon=1e-5)
    model = _graph([node], [f("x", [1, 4, 3, 3])], [f("y", [1, 4, 3, 3])],
                   [numpy_helper.from_array(scale, "s"), numpy_helper.from_array(bias, "b")])
    onnx.save(model, str(tmp_path / "gn18.onnx"))
    prep = prepare_graph(tmp_path / "gn18.onnx", tmp_path / "out.onnx")
    x = rng.standard_normal((1, 4, 3, 3)).astype(np.float32)
    xg = x.reshape(1, 2, -1)
    ref = ((xg - xg.mean(-1, keepdims=True)) / np.sqrt(xg.var(-1, keepdims=True) + 1e-5)).reshape(x.shape)
    ref = ref * np.repeat(scale, 2)[None, :, None, None] + np.repeat(bias, 2)[None, :, None, None]
    got = _ort(prep.path).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_lint_names_what_the_10_3_parser_refuses():
    f = lambda n, s: helper.make_tensor_value_info(n, TensorProto.FLOAT, s)  # noqa: E731
    i64 = lambda n, s: helper.make_tensor_value_info(n, TensorProto.INT64, s)  # noqa: E731
    nodes = [
        helper.make_node("Resize", ["x", "", "sc"], ["r"], name="aa", mode="linear", antialias=1),
        helper.make_node("Pad", ["r", "pads", "", "axes"], ["p"], name="pad_tensor_axes"),
        helper.make_node("HannWindow", ["n"], ["w"], name="window"),
        helper.make_node("Mystery", ["p"], ["y"], name="custom", domain="com.example"),
    ]
    model = _graph(nodes, [f("x", [1, 1, 4, 4]), i64("axes", [2]), i64("n", [])], [f("y", [1, 1, 8, 8])],
                   [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "sc"),
                    numpy_helper.from_array(np.zeros(4, np.int64), "pads")])
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    text = "\n".join(str(x) for x in errors(lint_model(model, "m")))
    assert "antialias" in text
    assert "Pad input 'axes' must be an initializer" in text
    assert "HannWindow: the parser supports it from TensorRT 10.4" in text
    assert "custom operator domain 'com.example'" in text


def test_without_tensorrt_the_cli_says_where_engines_are_built(tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    from typer.testing import CliRunner

    from edge.cli import app

    res = CliRunner().invoke(app, ["trt", "build", str(BUNDLE), "--engines", str(tmp_path)])
    assert res.exit_code == 2 and "Jetson" in res.output
