"""Runners over the tiny bundle: ORT settings, ORT == torch, OpenVINO f32 ~ ORT (and bf16 with a loose tolerance)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytest.importorskip("torch")

from edge.sr.bundle import load_bundle  # noqa: E402
from edge.sr.runners import (  # noqa: E402
    BackendUnavailable,
    OpenVinoRunner,
    OrtRunner,
    TorchRunner,
    make_runner,
    openvino_bf16_supported,
    physical_cores,
)
from edge.sr.samplers import SamplerSpec, sample  # noqa: E402
from tests.sr_fixtures import tiny_bundle, tiny_modules  # noqa: E402

# ORT vs torch: same float32 math, different kernels/summation order -> 1e-4 abs on O(1) outputs.
ORT_TORCH_ATOL = 1e-4
# OpenVINO f32 vs ORT: same, 1e-4. bf16 keeps 8 mantissa bits (rel. 4e-3 per op) -> 5e-2 abs after the U-Net.
OV_F32_ATOL, OV_BF16_ATOL = 1e-4, 5e-2


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(tiny_bundle())


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    return {
        "lr": rng.uniform(-1, 1, (3, 1, 8, 12)).astype(np.float32),
        "hr": rng.uniform(-1, 1, (3, 1, 32, 48)).astype(np.float32),
        "x": rng.standard_normal((3, 4, 8, 12)).astype(np.float32),
        "t": np.array([0, 17, 49], np.float32),
        "cond": rng.standard_normal((3, 4, 8, 12)).astype(np.float32),
    }


def _all(r, d):
    return {
        "encode_lr": r.encode_lr(d["lr"]).copy(), "encode_hr": r.encode_hr(d["hr"]).copy(),
        "denoise": r.denoise(d["x"], d["t"], d["cond"]).copy(), "decode": r.decode(d["x"]).copy(),
        "estimate": r.estimate(d["cond"]).copy(),
    }


def test_ort_session_settings(bundle):
    r = OrtRunner(bundle)
    so = r.sessions["denoiser"].get_session_options()
    assert so.intra_op_num_threads == physical_cores() >= 1
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    a = r.denoise(np.zeros((1, 4, 8, 8), np.float32), np.zeros(1, np.float32), np.zeros((1, 4, 8, 8), np.float32))
    b = r.denoise(np.ones((1, 4, 8, 8), np.float32), np.zeros(1, np.float32), np.zeros((1, 4, 8, 8), np.float32))
    assert a is b  # preallocated output buffer reused per shape (IOBinding)


def test_ort_matches_torch(bundle, inputs):
    ort_out = _all(OrtRunner(bundle), inputs)
    torch_out = _all(TorchRunner({k: v for k, v in tiny_modules(0).items() if k != "latent_scale_factor"}), inputs)
    assert ort_out["encode_hr"].shape == (3, 4, 8, 12) and ort_out["decode"].shape == (3, 1, 32, 48)
    for k in ort_out:
        np.testing.assert_allclose(ort_out[k], torch_out[k], atol=ORT_TORCH_ATOL, err_msg=k)


def test_openvino_f32_matches_ort_and_reshapes_statically(bundle, inputs):
    ov_r = OpenVinoRunner(bundle, precision="f32")
    ov_out, ort_out = _all(ov_r, inputs), _all(OrtRunner(bundle), inputs)
    for k in ov_out:
        np.testing.assert_allclose(ov_out[k], ort_out[k], atol=OV_F32_ATOL, err_msg=k)
    n = len(ov_r._compiled)
    ov_r.denoise(inputs["x"], inputs["t"], inputs["cond"])
    assert len(ov_r._compiled) == n  # same shape: reuses the compiled static model
    ov_r.denoise(inputs["x"][:1], inputs["t"][:1], inputs["cond"][:1])
    assert len(ov_r._compiled) == n + 1
    req = ov_r._compiled[("denoiser", (("x", (1, 4, 8, 12)), ("t", (1,)), ("cond", (1, 4, 8, 12))))]
    assert req.get_compiled_model().get_property("INFERENCE_PRECISION_HINT").to_string() == "f32"


def test_openvino_bf16_only_where_supported(bundle, inputs):
    if not openvino_bf16_supported():
        with pytest.raises(BackendUnavailable, match="bf16"):
            OpenVinoRunner(bundle, precision="bf16")
        return
    out = OpenVinoRunner(bundle, precision="bf16").denoise(inputs["x"], inputs["t"], inputs["cond"])
    ref = OrtRunner(bundle).denoise(inputs["x"], inputs["t"], inputs["cond"])
    err = np.abs(out - ref).max()
    assert err <= OV_BF16_ATOL and err > 0  # really ran in bf16, and within tolerance


def test_sampler_chain_same_on_every_backend(bundle):
    """A full 4-step DPM-Solver++ chain over ORT, OpenVINO and torch gives the same latent."""
    sched = bundle.manifest.make_schedule()
    cond = np.random.default_rng(1).standard_normal((2, 4, 8, 8)).astype(np.float32)
    spec = SamplerSpec("dpmpp_2m", 4)
    mods = {k: v for k, v in tiny_modules(0).items() if k != "latent_scale_factor"}
    outs = [sample(r.denoise, sched, cond, cond.shape, spec, bundle.prediction, rng=np.random.default_rng(2))
            for r in (OrtRunner(bundle), OpenVinoRunner(bundle), TorchRunner(mods))]
    for o in outs[1:]:
        np.testing.assert_allclose(o, outs[0], atol=5e-4)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_tensorrt_backend_says_why_it_is_unavailable(bundle):
    with pytest.raises(BackendUnavailable, match="TensorRT.*not installed.*--backend ort"):
        make_runner(bundle, "tensorrt")


def test_unknown_backend(bundle):
    with pytest.raises(ValueError, match="unknown backend"):
        make_runner(bundle, "cuda")
