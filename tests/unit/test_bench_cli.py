"""`lpbf-edge bench` end to end on the tiny test bundle: report keys, speed-up and quality fields, JSON, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def short_ref_bundle(tmp_path_factory):
    """The tiny bundle with a 10-step DDPM reference (keeps the eager reference within the test budget)."""
    import shutil

    from edge.sr.bundle import MANIFEST, write_bundle
    from tests.sr_fixtures import tiny_bundle

    out = tmp_path_factory.mktemp("b") / "tiny"
    shutil.copytree(tiny_bundle(), out)
    m = json.loads((out / MANIFEST).read_text())
    m["reference"] = {"name": "ddpm", "steps": 10}
    write_bundle(out, m)
    return out


def test_bench_quick_on_tiny_bundle(short_ref_bundle, monkeypatch):
    import edge.bench_cli
    from edge.bench_cli import run_bench

    import torch

    monkeypatch.setattr(edge.bench_cli, "_threads", lambda: 1)  # behaviour, not speed: no thread contention
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # leave the process's thread count alone
    from tests.sr_fixtures import tiny_modules

    lines = []
    rep = run_bench(short_ref_bundle, quick=True, tiles=2, ref_tiles=1, batch=2, seed=0, distill_dir=None, fast=None,
                    only=["ort fused dpmpp_2m10", "box"], echo=lines.append, torch_modules=tiny_modules())
    assert rep["reference"]["name"].startswith("reference torch ddpm") and rep["reference"]["steps"] == 10
    assert rep["fast"]["name"] == "ort fused dpmpp_2m4"
    names = [c["name"] for c in rep["combos"]]
    assert "ort fused dpmpp_2m10" in names and all(c["error"] is None for c in rep["combos"]), rep["combos"]
    assert any(n.startswith("box SuperResolver") for n in names)  # the box's own path is measured too
    # fewer steps on a faster backend: the fast path must beat the 10-step eager reference
    assert rep["speedup"] > 1 and rep["speedup"] == pytest.approx(
        rep["reference"]["s_per_sample"] / rep["fast"]["s_per_sample"])
    assert np.isfinite(rep["fast"]["psnr_delta_db"]) and rep["fast"]["texture_ratio"] > 0
    assert rep["floor"]["s_per_sample"] > 0 and 0 < rep["floor"]["fraction_achieved"]
    # FLOPs scale with steps: 10 steps cost more than 4
    by = {c["name"]: c for c in rep["combos"]}
    assert by["ort fused dpmpp_2m10"]["flops_per_sample"] > rep["fast"]["flops_per_sample"]
    assert rep["reference"]["flops_per_sample"] == pytest.approx(by["ort fused dpmpp_2m10"]["flops_per_sample"])
    json.dumps(rep, default=float)  # JSON-able
    assert any("matmul rate" in m for m in lines)


def test_bench_cli_missing_bundle(tmp_path):
    from edge.cli import app

    res = CliRunner().invoke(app, ["bench", "--quick", "--model", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "nope" in res.output


def test_texture_coeffs_match_the_metrics_cvd():
    from edge.analyze.metrics import CVDSettings, cvd
    from edge.bench_cli import quality

    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (64, 64)).astype(np.uint8) for _ in range(2))
    assert quality([a], [b])["texture_distance"] == pytest.approx(cvd(a, b, CVDSettings(size=64))[1], rel=1e-5)
