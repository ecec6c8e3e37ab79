"""Simulated printer: its laser signal through the real detector and its cameras through the capture stage."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from edge.capture.capture import LayerCapture
from firmware_bridge.bridge import run_bridge
from firmware_bridge.config import BridgeConfig
from firmware_bridge.detector import LayerDetector

sim_build = pytest.importorskip("edge.sim.build")
from edge.sim.config import SimConfig  # noqa: E402
from edge.sim.printer import SimPrinter  # noqa: E402

CFG = SimConfig(hr_size_px=256, webcam_width_px=640, webcam_height_px=360, webcam_focal_px=470.0)


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return sim_build.generate_build(tmp_path_factory.mktemp("pr") / "b", 3, 5, CFG)


def test_signal_gives_one_event_per_layer_at_the_true_edge_in_sped_up_time(build):
    pr = SimPrinter(build, speedup=40.0, recoat_s=1.5, base_layer_s=0.8, s_per_area=5.0)
    det = LayerDetector(BridgeConfig(recoat_delay_s=0.5), source="sim")
    t0 = time.monotonic()
    events = list(run_bridge(pr.laser_source, det))
    wall = time.monotonic() - t0
    done = [e for e in events if e.event == "layer_complete"]
    assert [e.layer for e in done] == [1, 2, 3]
    assert np.abs(np.array([e.t_off_s for e in done]) - np.array(pr.layer_ends)).max() < 0.02
    assert [e.layer for e in events if e.event == "recoat_done"] == [1, 2, 3]
    assert 0.7 * pr.duration_s / 40 < wall < pr.duration_s / 40 + 2.0  # paced, not instant
    assert pr.completed_layer == 3


def test_cameras_serve_the_event_layer(build):
    pr = SimPrinter(build, speedup=None, recoat_s=1.5)
    cap = LayerCapture([pr.camera("webcam"), pr.camera("basler")], timeout_s=1.0)
    cap.open()
    det = LayerDetector(BridgeConfig(emit_recoat=False), source="sim")
    frames = [cap.capture(e) for e in run_bridge(pr.laser_source, det)]
    cap.close()
    assert len(frames) == 3
    for lf in frames:
        name = f"{lf.event.layer:05d}.png"
        assert np.array_equal(lf.frames["webcam"].image, cv2.imread(str(build / "webcam" / name), cv2.IMREAD_UNCHANGED))
        assert np.array_equal(lf.frames["basler"].image, cv2.imread(str(build / "hr" / name), cv2.IMREAD_UNCHANGED))


def test_printer_from_plan_renders_through_the_sim_api():
    plan = sim_build.plan_build(2, 5, CFG)
    pr = SimPrinter(plan=plan, speedup=None)
    cam = pr.camera("webcam")
    cam.open()
    from edge.messages import LayerEvent

    cam.select(LayerEvent("layer_complete", 2, 0.0, 0.0))
    assert cam.grab(1.0).image.shape == (360, 640)
    cam.select(LayerEvent("layer_complete", 9, 0.0, 0.0))
    with pytest.raises(Exception, match="no layer 9"):
        cam.grab(1.0)


def test_bad_build_dir(tmp_path):
    with pytest.raises(ValueError, match="not a sim build"):
        SimPrinter(tmp_path)


def test_printer_bridge_capture_calib_end_to_end(build):
    from calib.register import register

    pr = SimPrinter(build, speedup=None)
    web1 = cv2.imread(str(build / "webcam" / "00001.png"), cv2.IMREAD_GRAYSCALE)
    hr1 = cv2.imread(str(build / "hr" / "00001.png"), cv2.IMREAD_GRAYSCALE)
    cal = register(web1, 256, 4, reference=hr1)
    cap = LayerCapture([pr.camera("webcam")], timeout_s=1.0)
    cap.open()
    det = LayerDetector(BridgeConfig(emit_recoat=False), source="sim")
    regs = [cal.register_layer(cap.capture(e)) for e in run_bridge(pr.laser_source, det)]
    cap.close()
    assert [r.event.layer for r in regs] == [1, 2, 3]
    for r in regs:
        truth = cv2.imread(str(build / "lr" / f"{r.event.layer:05d}.png"), cv2.IMREAD_GRAYSCALE)
        assert r.lr.shape == truth.shape == (64, 64)
        assert np.abs(r.lr.astype(int) - truth).mean() < 1.5


def test_bridge_sim_command_prints_each_layer_with_its_true_end(build):
    import json

    import typer
    from typer.testing import CliRunner

    from edge import bridge_cli

    app = typer.Typer()
    bridge_cli.register(app)
    res = CliRunner().invoke(app, ["bridge", "sim", str(build), "--speedup", "0"])
    assert res.exit_code == 0, res.output
    done = [json.loads(line) for line in res.stdout.splitlines() if '"layer_complete"' in line]
    assert [d["layer"] for d in done] == [1, 2, 3]
    assert max(abs(d["t_off_s"] - d["true_t_off_s"]) for d in done) < 0.02
