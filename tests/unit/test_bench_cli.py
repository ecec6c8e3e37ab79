"""`lpbf-edge bench` end to end on the tiny test bundle: SuperResolver with the box config, report keys, errors."""

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
    import torch

    from edge.bench_cli import run_bench
    from edge.sr.config import SRConfig
    from edge.sr.resolver import SuperResolver
    from tests.sr_fixtures import tiny_modules

    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # leave the process's thread count alone
    lines = []
    rep = run_bench(short_ref_bundle, quick=True, crops=3, ref_crops=2, plate_lr=24, repeats=1, echo=lines.append,
                    modules=tiny_modules(), crop=16, seeds=2)
    assert rep["runtime"] == "SuperResolver"
    # the fast path is exactly what the box runs with its default config; the reference is the bundle's 10-step DDPM
    box = SuperResolver.from_config(SRConfig(model=str(short_ref_bundle)))
    assert rep["fast"]["settings"] == box.describe()
    assert "ddpm 10 steps" in rep["reference"]["settings"] and "torch" in rep["reference"]["settings"]
    for key in ("s_per_sample", "psnr_delta_db", "texture_ratio"):
        assert np.isfinite(rep["fast"][key]), key
    assert rep["reference"]["s_per_sample"] > 0
    assert rep["speedup"] == pytest.approx(rep["reference"]["s_per_sample"] / rep["fast"]["s_per_sample"])
    assert rep["speedup"] > 1  # 4 fused steps on ORT beat 10 eager steps
    assert rep["setup"]["seeds"] == [0, 1] and rep["fast"]["samples"] == 6  # quality averaged over 2 seeds
    assert rep["setup"]["tiles_per_crop"] == 9  # a 16-px crop is 3 x 3 overlapping tiles of 8 (overlap 2)
    assert rep["fast"]["s_per_sample"] == pytest.approx(rep["fast"]["s_per_crop"] / 9)
    assert rep["floor"]["s_per_sample"] > 0 and rep["floor"]["fraction_achieved"] > 0
    assert rep["fast"]["flops_by_part"]["denoiser"] * 10 == rep["reference"]["flops_by_part"]["denoiser"] * 4
    plate = rep["plate"]
    assert {"lr", "s", "s_per_tile", "peak_rss_mb"} <= set(plate) and plate["lr"] == 24 and plate["sr"] == 96
    assert plate["tiles"] == 16 and plate["s_per_tile"] == pytest.approx(plate["s"] / 16)  # 24 px: 4 x 4 tiles of 8
    assert 0 < plate["peak_rss_mb"] < 4096
    assert set(rep["targets"]) >= {"speedup_200x", "floor_fraction_0.5", "plate_peak_rss_1gb"}
    json.dumps(rep, default=float)  # JSON-able
    assert any("matmul rate" in m for m in lines) and rep["paths"] == []


def test_bench_cli_missing_bundle_and_bad_config(tmp_path):
    from edge.cli import app

    res = CliRunner().invoke(app, ["bench", "--quick", "--model", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "nope" in res.output
    bad = tmp_path / "box.yaml"
    bad.write_text("sr:\n  batch: 0\n")
    res = CliRunner().invoke(app, ["bench", "--quick", "--config", str(bad)])
    assert res.exit_code == 2 and "sr.batch" in res.output
