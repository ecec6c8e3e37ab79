"""`lpbf-edge evaluate BUILD --paths hr,bicubic,sr --json FILE` on a small sim build with the shipped model (real ONNX
Runtime / OpenVINO sessions), and the SR stage the box and the evaluation share (edge.sr_stage)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from edge.sr.bundle import default_bundle_path

pytestmark = pytest.mark.skipif(not (default_bundle_path() / "manifest.json").is_file(),
                                reason="the shipped model bundle models/default is not in this checkout")


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    from edge.sim.build import generate_build
    from edge.sim.config import SimConfig

    return generate_build(tmp_path_factory.mktemp("b") / "build", 4, 303, SimConfig(hr_size_px=256, defect_rate=0.3))


@pytest.fixture(scope="module")
def app():
    from edge.analyze.cli import register

    a = typer.Typer()
    register(a)
    return a


def test_evaluate_paths_writes_every_number_for_every_path(build, app, tmp_path):
    from edge.sr.config import SRConfig
    from edge.sr_stage import SRStage

    target = tmp_path / "ev.json"
    res = CliRunner().invoke(app, ["evaluate", str(build), "--paths", "hr,bicubic,sr", "--json", str(target),
                                   "--install-frames", "1"])
    assert res.exit_code == 0, res.output
    doc = json.loads(target.read_text())
    assert list(doc["paths"]) == ["hr", "bicubic", "sr"] and doc["layers"] == [1, 2, 3, 4]
    assert doc["ground_truth"]["ra_um"] > 0
    for name, p in doc["paths"].items():
        assert 0.0 < p["iou2d"] <= 1.0 and 0.0 < p["iou3d"] <= 1.0, name
        assert p["ra_um"] > 0 and p["rq_um"] >= p["ra_um"], name  # Rq >= Ra for any profile
        for key in ("critical_recall", "clean_false_alarm_rate"):
            assert key in p and key in p["cad"]
        assert p["clean_layers"] + (1 if p["critical_labels"] else 0) >= 1
    # what the box runs is what is measured: the default config's SR stage, geometry on its estimate
    assert doc["sr"] == SRStage(SRConfig()).describe() and "geometry reads regression" in doc["sr"]
    assert doc["paths"]["hr"]["iou2d"] != doc["paths"]["sr"]["iou2d"]  # the paths really differ


def test_evaluate_paths_bad_names_and_missing_ground_truth_are_clear_errors(build, app, tmp_path):
    res = CliRunner().invoke(app, ["evaluate", str(build), "--paths", "hr,webcam"])
    assert res.exit_code == 1 and "--paths must list some of hr, bicubic, sr" in res.output
    res = CliRunner().invoke(app, ["evaluate", str(build)])
    assert res.exit_code == 2 and "--out DIR" in res.output
    bare = tmp_path / "bare"
    (bare / "lr").mkdir(parents=True)
    (bare / "build.json").write_text((build / "build.json").read_text())
    cv2.imwrite(str(bare / "lr" / "00001.png"), np.zeros((64, 64), np.uint8))
    res = CliRunner().invoke(app, ["evaluate", str(bare), "--paths", "hr"])
    assert res.exit_code == 1 and "needs hr/ and masks/" in res.output


def test_sr_stage_spread_and_mean_are_taken_after_the_grain_cap(build):
    from edge.sr.config import SRConfig
    from edge.sr_stage import SRStage

    lr = cv2.imread(str(build / "lr" / "00002.png"), cv2.IMREAD_GRAYSCALE)
    one = SRStage(SRConfig()).run(lr)
    assert one.std is None and one.estimate.shape == one.sample.shape == (256, 256)
    assert not np.array_equal(one.estimate, one.sample)  # geometry reads the regression estimate, not the grain
    two = SRStage(SRConfig(samples=2, uncertainty=True, geometry="mean"))
    out = two.run(lr)
    assert np.array_equal(out.sample, one.sample)  # sample 0 is the published one, seed unchanged
    # with two samples a, b (each grain-capped as published): std = |a - b| / 2 and mean = (a + b) / 2
    b = 2.0 * out.estimate.astype(np.float32) - out.sample.astype(np.float32)  # b recovered from the mean, +-1 level
    assert np.abs(out.std - np.abs(out.sample - b) / 2.0).max() <= 1.01
    assert float(out.std.mean()) > 0.1


def test_box_sr_stage_hands_the_estimate_and_the_lr_to_the_analysis(build):
    from edge.app import sr_stage
    from edge.config import Config
    from edge.messages import LayerEvent, RegisteredLayer

    lr = cv2.imread(str(build / "lr" / "00001.png"), cv2.IMREAD_GRAYSCALE)
    srl = sr_stage(Config())(RegisteredLayer(LayerEvent("layer_complete", 1, 0.0, 0.0), lr, 390.6))
    assert srl.estimate is not None and srl.estimate.shape == srl.sr.shape
    from edge.sr_stage import PixelRegression

    bundle = default_bundle_path()
    assert np.array_equal(srl.estimate, PixelRegression(bundle / "pixel_regression.onnx")(lr))



def test_box_sr_stage_is_warmed_up_with_a_full_batch_before_layer_one(caplog, monkeypatch):
    """The box's SR stage runs one throw-away layer of at least one full tile batch when it is built (so layer 1
    is not the one that compiles the backend's shapes), and says so in the log."""
    import logging

    from edge.app import sr_stage
    from edge.config import Config
    from edge.sr.resolver import SuperResolver

    shapes, real = [], SuperResolver.upscale_many

    def recording(self, images, *a, **k):
        shapes.extend(img.shape for img in images)
        return real(self, images, *a, **k)

    monkeypatch.setattr(SuperResolver, "upscale_many", recording)
    with caplog.at_level(logging.INFO, logger="edge.app"):
        sr_stage(Config())
    assert any(getattr(r, "event", None) == "sr_warmup" for r in caplog.records)
    # 16-px tiles at overlap 4 and 64 tiles a call: a side of 4 + 8 * 12 + 1 = 101 px gives 9 x 9 = 81 tiles > 64
    assert len(shapes) == 1 and min(shapes[0]) >= 101, shapes
