"""Bench building blocks: FLOP counter, matmul rate, peak RSS, quality, the floor's rate and FLOPs per sample."""

from __future__ import annotations

import numpy as np
import pytest

from edge.bench_measure import PeakRSS, count_flops, floor_rate, matmul_rate, quality


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


def test_quality_orders_noisy_above_flat():
    rng = np.random.default_rng(0)
    truth = [rng.integers(0, 256, (32, 32)).astype(np.uint8) for _ in range(2)]
    noisy = [np.clip(t + rng.normal(0, 5, t.shape), 0, 255).astype(np.uint8) for t in truth]
    flat = [np.full_like(t, 128) for t in truth]
    qn, qf = quality(noisy, truth, texture_size=32), quality(flat, truth, texture_size=32)
    assert qn["psnr_db"] > qf["psnr_db"] + 10 and qn["texture_distance"] < qf["texture_distance"]


def test_texture_coeffs_match_the_metrics_cvd():
    from edge.analyze.metrics import CVDSettings, cvd

    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (64, 64)).astype(np.uint8) for _ in range(2))
    assert quality([a], [b])["texture_distance"] == pytest.approx(cvd(a, b, CVDSettings(size=64))[1], rel=1e-5)


def test_bf16_paths_are_held_to_the_bf16_matmul_rate():
    assert floor_rate(True, 200e9, 900e9) == 900e9
    assert floor_rate(False, 200e9, 900e9) == 200e9
    assert floor_rate(True, 200e9, None) == 200e9  # no bf16 measured: fp32 floor


def test_flops_per_sample_follow_the_plan_and_the_distilled_parts(tmp_path):
    """Denoiser FLOPs scale with the plan's steps; a light part's FLOPs come from its manifest entry."""
    pytest.importorskip("torch")
    import json
    import shutil

    from edge.bench_measure import flops_per_sample
    from edge.sr.bundle import MANIFEST, write_bundle
    from edge.sr.resolver import SuperResolver
    from tests.sr_fixtures import tiny_bundle, tiny_modules

    mods = tiny_modules()
    two, four = (flops_per_sample(SuperResolver.from_bundle(tiny_bundle(), sampler="ddim", steps=k), mods)
                 for k in (2, 4))
    assert four["denoiser"] == 2 * two["denoiser"] > 0 and four["decoder"] == two["decoder"] > 0
    assert four["total"] == sum(v for k, v in four.items() if k != "total")
    b = tmp_path / "b"
    shutil.copytree(tiny_bundle(), b)
    shutil.copy(b / "hr_decoder.onnx", b / "hr_decoder_light.onnx")
    m = json.loads((b / MANIFEST).read_text())
    write_bundle(b, {**m, "distilled": {"light_decoder": {"file": "hr_decoder_light.onnx", "flops": 12345}}})
    light = flops_per_sample(SuperResolver.from_bundle(b, sampler="ddim", steps=2, decoder="light"), mods)
    assert light["decoder"] == 12345 and light["denoiser"] == two["denoiser"]
