"""evaluate / report / analyze commands on a small sim build; the HTML report rendered in headless Chromium."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

pytestmark = pytest.mark.skipif(importlib.util.find_spec("edge.sim.build") is None, reason="sim generator "
                                "(edge.sim.build) not importable yet")


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    from edge.sim.build import generate_build
    from edge.sim.config import SimConfig

    return generate_build(tmp_path_factory.mktemp("b") / "build", 3, 21, SimConfig(hr_size_px=256))


@pytest.fixture(scope="module")
def app():
    from edge.analyze.cli import register

    a = typer.Typer()
    register(a)
    return a


@pytest.fixture(scope="module")
def small_cfg(tmp_path_factory):
    p = tmp_path_factory.mktemp("cfg") / "box.yaml"
    p.write_text("analyze:\n  cvd_size: 64\n", encoding="utf-8")
    return p


@pytest.fixture
def no_default_model(tmp_path, monkeypatch):
    """A checkout without models/default and no $LPBF_MODEL: the bicubic fallback must be announced."""
    import edge.sr.bundle

    monkeypatch.delenv("LPBF_MODEL", raising=False)
    monkeypatch.setattr(edge.sr.bundle, "default_bundle_path", lambda: tmp_path / "no-models" / "default")


def test_evaluate_writes_tables_csv_and_plots(build, app, small_cfg, tmp_path, no_default_model):
    out = tmp_path / "ev"
    res = CliRunner().invoke(app, ["evaluate", str(build), "--out", str(out), "--config", str(small_cfg),
                                   "--cvd-patches", "1"])
    assert res.exit_code == 0, res.output
    assert "NO SR MODEL" in res.output
    md = (out / "evaluation.md").read_text()
    for heading in ("## Patch metrics", "## Part metrics", "## Roughness"):
        assert heading in md
    rows = (out / "patch_metrics.csv").read_text().splitlines()
    assert rows[0].startswith("layer,source,mae,psnr,ssim") and len(rows) == 1 + 3
    parts = (out / "part_metrics.csv").read_text().splitlines()
    assert len(parts) > 2 and all(0.0 <= float(r.split(",")[2]) <= 1.0 for r in parts[1:])
    assert (out / "roughness_vs_window.png").stat().st_size > 5000


def test_evaluate_bad_build_is_a_clear_error(app, tmp_path):
    res = CliRunner().invoke(app, ["evaluate", str(tmp_path), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "no build.json" in res.output


def test_report_html_is_self_contained_and_renders(build, app, tmp_path, no_default_model):
    target = tmp_path / "report.html"
    res = CliRunner().invoke(app, ["report", str(build), "--out", str(target)])
    assert res.exit_code == 0, res.output
    page = target.read_text()
    assert 'src="http' not in page and "<link" not in page and page.count("data:image/png;base64,") >= 5
    assert 'id="sr-fallback"' in page  # bicubic fallback said on the page, not silently
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update",
             "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'chr'}"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", target.as_uri()], capture_output=True, text=True,
                         timeout=90).stdout
    for sec in ("summary", "thumbnails", "timeline", "preview3d", "roughness", "glossary", "anomaly-json"):
        assert f'id="{sec}"' in dom, sec
    from tests.browser import Chromium

    with Chromium(1400, 900) as c:
        c.open(target.as_uri())
        assert c.overflow_px() == 0  # reads at 1400 px without a horizontal scrollbar
        assert c.evaluate("document.querySelectorAll('.card').length") >= 1
        assert c.evaluate("Array.from(document.images).every(i => i.naturalWidth > 0)")
        shot = c.screenshot(tmp_path / "shot.png")
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[1] == 1400 and img.std() > 10  # a rendered page, not a blank one


def test_report_and_evaluate_take_model_and_lpbf_model(build, app, tmp_path, tiny_bundle, monkeypatch):
    """--model and $LPBF_MODEL name the bundle wherever the command runs; a named bundle that is missing is an error."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LPBF_MODEL", str(tiny_bundle))
    res = CliRunner().invoke(app, ["report", str(build), "--out", str(tmp_path / "r.html"), "--max-layers", "1"])
    assert res.exit_code == 0, res.output
    assert "super-resolved with model tiny-test" in res.output and str(tiny_bundle) in res.output
    monkeypatch.setenv("LPBF_MODEL", str(tmp_path / "gone"))
    res = CliRunner().invoke(app, ["report", str(build), "--out", str(tmp_path / "r2.html")])
    assert res.exit_code == 1 and "no model bundle there" in res.output and "gone" in res.output
    res = CliRunner().invoke(app, ["evaluate", str(build), "--out", str(tmp_path / "ev"),
                                   "--model", str(tmp_path / "nope")])
    assert res.exit_code == 1 and "no model bundle there" in res.output and "nope" in res.output
    res = CliRunner().invoke(app, ["report", str(build), "--out", str(tmp_path / "r3.html"), "--max-layers", "1",
                                   "--model", str(tiny_bundle)])
    assert res.exit_code == 0 and "tiny-test" in res.output


def test_analyze_cli_json_and_drawing(build, app, tmp_path):
    src = build / "hr" / "00002.png"
    res = CliRunner().invoke(app, ["analyze", str(src), "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "a" / "00002.json").read_text())
    assert doc["layer"] == 2 and doc["layer_state"] in ("ok", "minor", "critical", "segmentation_failed",
                                                        "laser_in_image")
    drawn = cv2.imread(str(tmp_path / "a" / "00002.png"))
    assert drawn.shape[:2] == cv2.imread(str(src), cv2.IMREAD_GRAYSCALE).shape and drawn.ndim == 3
    assert np.abs(drawn[..., 1].astype(int) - drawn[..., 0]).max() > 50  # coloured overlay drawn
