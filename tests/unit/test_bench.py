"""Bench building blocks: FLOP counter, matmul rate, peak RSS, combo planning, static-batch chunking, quality."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge.bench_cli import (Graph, PeakRSS, _extras, count_flops, floor_rate, matmul_rate, per_sample_time, plan_combos,
                             quality)

MAN = {"schedule": {"kind": "cosine", "timesteps": 200}, "sampler": {"name": "dpmpp_2m", "steps": 12},
       "reference": {"name": "ddpm", "steps": 200}}


def test_flop_counter_counts_a_linear_layer():
    torch = pytest.importorskip("torch")
    lin = torch.nn.Linear(64, 32, bias=False)
    assert count_flops(lin, torch.zeros(5, 64)) == 2 * 5 * 64 * 32


def test_matmul_rate_is_plausible():
    rate = matmul_rate("float32", n=256, min_s=0.05)
    assert 1e8 < rate < 1e14


def test_peak_rss_sees_a_big_allocation():
    with PeakRSS() as small:
        np.ones(1000)
    with PeakRSS() as big:
        a = np.ones(64 * 2**20 // 8)  # 64 MiB touched
        a.sum()
    assert big.peak_bytes - small.peak_bytes > 40 * 2**20


def test_plan_combos_reference_fast_and_extras(tmp_path):
    ref, combos, fast = plan_combos(MAN, {"student": [], "decoder": []}, quick=True, bf16=False)
    assert (ref.backend, ref.sampler, ref.steps) == ("torch", "ddpm", 200)
    assert fast in [c.name for c in combos] and "fused" in fast and "dpmpp_2m12" in fast
    assert not any("bf16" in c.name for c in combos)
    full = plan_combos(MAN, {"student": [], "decoder": []}, quick=False, bf16=True)[1]
    assert len(full) > len(combos) and any("bf16" in c.name for c in full) and any(c.sampler == "ddim" for c in full)
    # distilled parts found through their reports appear as combos
    (tmp_path / "denoiser_student2.onnx").write_bytes(b"x")
    (tmp_path / "hr_decoder_light.onnx").write_bytes(b"x")
    (tmp_path / "student2_report.json").write_text(json.dumps({"file": "denoiser_student2.onnx", "steps": 2}))
    (tmp_path / "decoder_report.json").write_text(json.dumps({"file": "hr_decoder_light.onnx", "flops": 5}))
    ex = _extras(tmp_path, MAN, tmp_path)
    assert len(ex["student"]) == 1 and len(ex["decoder"]) == 1
    names = [c.name for c in plan_combos(MAN, ex, quick=True, bf16=False)[1]]
    assert {"ort student2 + light decoder", "ort fused student2", "ort fused student2 + light decoder"} <= set(names)


def test_graph_chunks_to_static_batch():
    calls = []
    g = Graph(lambda a, b: calls.append(len(a)) or a + b, static_batch=2)
    out = g(np.ones((6, 3)), np.ones((6, 3)))
    assert calls == [2, 2, 2] and out.shape == (6, 3) and np.all(out == 2)
    with pytest.raises(ValueError, match="multiple"):
        g(np.ones((3, 3)), np.ones((3, 3)))


def test_per_sample_time_and_quality():
    items = [np.full((2, 8, 8), i, np.uint8) for i in range(3)]
    outs, s = per_sample_time(lambda x: x.copy(), items)
    assert len(outs) == 3 and s >= 0
    rng = np.random.default_rng(0)
    truth = [rng.integers(0, 256, (32, 32)).astype(np.uint8) for _ in range(2)]
    noisy = [np.clip(t + rng.normal(0, 5, t.shape), 0, 255).astype(np.uint8) for t in truth]
    flat = [np.full_like(t, 128) for t in truth]
    qn, qf = quality(noisy, truth, texture_size=32), quality(flat, truth, texture_size=32)
    assert qn["psnr_db"] > qf["psnr_db"] + 10 and qn["texture_distance"] < qf["texture_distance"]


def test_bundle_fast_path_falls_back_when_the_cpu_lacks_bf16(tmp_path):
    (tmp_path / "denoiser_student2.onnx").write_bytes(b"x")
    (tmp_path / "hr_decoder_light.onnx").write_bytes(b"x")
    (tmp_path / "student2_report.json").write_text(json.dumps({"file": "denoiser_student2.onnx", "steps": 2}))
    (tmp_path / "decoder_report.json").write_text(json.dumps({"file": "hr_decoder_light.onnx", "flops": 5}))
    ex = _extras(tmp_path, MAN, tmp_path)
    man = {**MAN, "fast_path": {"bench_names": ["openvino-bf16 student2 + light decoder", "ort fused student2 + light decoder"]}}
    assert plan_combos(man, ex, quick=True, bf16=True)[2] == "openvino-bf16 student2 + light decoder"
    assert plan_combos(man, ex, quick=True, bf16=False)[2] == "ort fused student2 + light decoder"
    # a bundle naming only paths this machine cannot run keeps the built-in default
    odd = {**MAN, "fast_path": {"bench_names": ["tensorrt student1"]}}
    assert plan_combos(odd, ex, quick=True, bf16=False)[2] == plan_combos(MAN, ex, quick=True, bf16=False)[2]


def test_bf16_paths_are_held_to_the_bf16_matmul_rate():
    assert floor_rate("openvino-bf16", 200e9, 900e9) == 900e9
    assert floor_rate("openvino-f32", 200e9, 900e9) == 200e9
    assert floor_rate("ort", 200e9, 900e9) == 200e9
    assert floor_rate("openvino-bf16", 200e9, None) == 200e9  # no bf16 measured: fp32 floor
