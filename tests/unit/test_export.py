"""ONNX export: GroupNorm stays one node (dynamo, opset 21), dynamic axes, static bucket copies; parity vs torch."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from edge.sr.export import bucket_shapes, export_graph, export_static_buckets, static_copy  # noqa: E402
from tests.sr_fixtures import tiny_bundle, tiny_modules  # noqa: E402

PARITY_ATOL = 1e-4  # float32 torch vs ORT kernels on O(1) activations


class GNBlock(torch.nn.Module):
    """Conv + GroupNorm + SiLU with a timestep-like second input: small enough to export with dynamo in seconds."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 8, 3, padding=1)
        self.norm = torch.nn.GroupNorm(4, 8)
        self.out = torch.nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x, t):
        return self.out(torch.nn.functional.silu(self.norm(self.conv(x)))) + t[:, None, None, None] * 0.01


def _run(path, feeds):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def test_dynamo_export_keeps_groupnorm_one_node_and_dynamic_axes(tmp_path):
    torch.manual_seed(0)
    m = GNBlock().eval()
    p = export_graph(m, (torch.randn(2, 4, 8, 8), torch.ones(2)), tmp_path / "gn.onnx", ("x", "t"), ("out",))
    model = onnx.load(str(p))
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["GroupNormalization"] == 1 and ops["InstanceNormalization"] == 0
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 18
    for b, h, w in ((1, 8, 8), (3, 12, 20)):  # other batch and spatial sizes than exported
        x, t = np.random.default_rng(b).standard_normal((b, 4, h, w)).astype(np.float32), np.arange(b, dtype=np.float32)
        with torch.no_grad():
            ref = m(torch.from_numpy(x), torch.from_numpy(t)).numpy()
        np.testing.assert_allclose(_run(p, {"x": x, "t": t}), ref, atol=PARITY_ATOL)


def test_bundle_graphs_match_torch_at_other_shapes():
    mods = tiny_modules(0)
    d = tiny_bundle()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 12, 8)).astype(np.float32)
    cond = rng.standard_normal((3, 4, 12, 8)).astype(np.float32)
    t = np.array([1, 20, 49], np.float32)
    lr = rng.uniform(-1, 1, (3, 1, 12, 8)).astype(np.float32)
    hr = rng.uniform(-1, 1, (3, 1, 48, 32)).astype(np.float32)
    cases = {
        "denoiser": ({"x": x, "t": t, "cond": cond}, (x, t, cond)),
        "lr_encoder": ({"lr": lr}, (lr,)),
        "hr_encoder": ({"hr": hr}, (hr,)),
        "hr_decoder": ({"latent": x}, (x,)),
        "regression": ({"cond": cond}, (cond,)),
    }
    for name, (feeds, args) in cases.items():
        with torch.no_grad():
            ref = mods[name](*(torch.from_numpy(a) for a in args)).numpy()
        np.testing.assert_allclose(_run(d / f"{name}.onnx", feeds), ref, atol=PARITY_ATOL, err_msg=name)


def test_static_bucket_copies(tmp_path):
    d = tiny_bundle()
    out = export_static_buckets(d, tmp_path, lr=8, buckets=(1, 2), graphs=("denoiser", "hr_decoder"))
    assert set(out) == {("denoiser", 1), ("denoiser", 2), ("hr_decoder", 1), ("hr_decoder", 2)}
    sess = ort.InferenceSession(str(out[("denoiser", 2)]), providers=["CPUExecutionProvider"])
    assert [i.shape for i in sess.get_inputs()] == [[2, 4, 8, 8], [2], [2, 4, 8, 8]]
    assert sess.get_outputs()[0].shape == [2, 4, 8, 8]
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((2, 4, 8, 8)).astype(np.float32), "t": np.array([3, 9], np.float32),
             "cond": rng.standard_normal((2, 4, 8, 8)).astype(np.float32)}
    np.testing.assert_allclose(sess.run(None, feeds)[0], _run(d / "denoiser.onnx", feeds), atol=1e-5)
    assert bucket_shapes("hr_encoder", 4, 16, 4, 4) == {"hr": [4, 1, 64, 64]}
    with pytest.raises(ValueError, match="no input named"):
        static_copy(d / "denoiser.onnx", tmp_path / "bad.onnx", {"y": [1]})
