"""Directory replay, the capture stage's failure handling, and building cameras from config."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.capture.base import CaptureError
from edge.capture.capture import LayerCapture
from edge.capture.config import BaslerConfig, CaptureConfig
from edge.capture.factory import build_cameras
from edge.capture.replay import DirectoryReplayCamera
from edge.messages import LayerEvent


def _ev(layer, kind="layer_complete"):
    return LayerEvent(kind, layer, 1.0, 2.0, "test")


@pytest.fixture
def frames(tmp_path):
    d = tmp_path / "frames"
    d.mkdir()
    cv2.imwrite(str(d / "00001.png"), np.full((8, 8), 11, np.uint8))
    cv2.imwrite(str(d / "00001_recoat.png"), np.full((8, 8), 12, np.uint8))
    cv2.imwrite(str(d / "00002.png"), np.full((8, 8), 1000, np.uint16))
    cv2.imwrite(str(d / "00003.png"), np.full((8, 8, 3), 50, np.uint8))
    (d / "00004.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return d


def test_replay_serves_frames_by_layer_and_event(frames):
    cam = DirectoryReplayCamera(frames)
    cam.open()
    got = {}
    for ev in (_ev(1), _ev(1, "recoat_done"), _ev(2), _ev(2, "recoat_done"), _ev(3)):
        cam.select(ev)
        f = cam.grab()
        got[(ev.layer, ev.event)] = (int(f.image[0, 0]), f.bit_depth, f.image.ndim)
    assert got[(1, "layer_complete")] == (11, 8, 2)
    assert got[(1, "recoat_done")] == (12, 8, 2)
    assert got[(2, "recoat_done")] == (1000, 16, 2)  # falls back to the layer's frame
    assert got[(3, "layer_complete")] == (50, 8, 2)  # colour converted to mono


def test_replay_errors_name_the_file_or_layer(frames, tmp_path):
    cam = DirectoryReplayCamera(frames)
    cam.select(_ev(4))
    with pytest.raises(CaptureError, match="00004.png"):
        cam.grab()
    cam.select(_ev(9))
    with pytest.raises(CaptureError, match="no frame for layer 9"):
        cam.grab()
    with pytest.raises(CaptureError, match="does not exist"):
        DirectoryReplayCamera(tmp_path / "nope").open()


class _Boom:
    """A camera whose driver crashes (test only)."""

    name = "boom"

    def open(self):
        pass

    def grab(self, timeout_s):
        raise RuntimeError("driver segfault imminent")

    def close(self):
        pass


class _NoOpen(_Boom):
    name = "noopen"

    def open(self):
        raise CaptureError("noopen: no device")


def test_capture_lists_failures_and_keeps_good_frames(frames):
    cap = LayerCapture([DirectoryReplayCamera(frames, name="webcam"), _Boom(), _NoOpen()], timeout_s=1.0)
    cap.open()
    lf = cap.capture(_ev(1))
    lf9 = cap.capture(_ev(9))
    cap.close()
    assert list(lf.frames) == ["webcam"] and lf.event.layer == 1
    assert "RuntimeError" in lf.failed["boom"] and "no device" in lf.failed["noopen"]
    assert lf9.frames == {} and set(lf9.failed) == {"webcam", "boom", "noopen"}


def test_duplicate_camera_names_rejected(frames):
    with pytest.raises(ValueError, match="unique"):
        LayerCapture([DirectoryReplayCamera(frames), DirectoryReplayCamera(frames)])


def test_build_cameras_from_config(frames):
    cams = build_cameras(CaptureConfig(webcam="replay", replay_dir=str(frames),
                                       basler=BaslerConfig(enabled="replay", replay_dir=str(frames))))
    assert [c.name for c in cams] == ["webcam", "basler"]
    assert build_cameras(CaptureConfig(webcam="none")) == []
    with pytest.raises(ValueError, match="replay_dir"):
        build_cameras(CaptureConfig(webcam="replay"))


def test_cli_grab_and_paired_with_replayed_cameras(frames, tmp_path):
    import json

    import typer
    from typer.testing import CliRunner

    from edge.capture import cli as capture_cli
    from firmware_bridge.traces import generate_trace

    cfg = tmp_path / "box.yaml"
    cfg.write_text(
        f"capture:\n  webcam: replay\n  replay_dir: {frames}\n  basler:\n    enabled: replay\n    replay_dir: "
        f"{frames}\n"
        "bridge:\n  recoat_delay_s: 1.5\n"
    )
    app = typer.Typer()
    capture_cli.register(app)
    r = CliRunner().invoke(app, ["capture", "grab", str(tmp_path / "g.png"), "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    assert cv2.imread(str(tmp_path / "g.png"), cv2.IMREAD_UNCHANGED)[0, 0] == 11
    r = CliRunner().invoke(app, ["capture", "grab", str(tmp_path / "g.png"), "--config", str(cfg), "--camera", "nope"])
    assert r.exit_code == 2 and "not configured" in r.output
    trace = generate_trace(4, seed=2).to_csv(tmp_path / "t.csv")
    r = CliRunner().invoke(app, ["capture", "paired", "--out", str(tmp_path / "pairs"), "--trace", str(trace),
                                 "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in (tmp_path / "pairs" / "index.jsonl").read_text().splitlines()]
    assert [(x["layer"], x["event"]) for x in recs][:3] == [(1, "layer_complete"), (1, "recoat_done"),
                                                            (2, "layer_complete")]
    assert recs[0]["frames"] == {"webcam": "webcam/00001.png", "basler": "basler/00001.png"}
    layer4 = [x for x in recs if x["layer"] == 4][0]
    assert "no frame for layer 4" in layer4["failed"]["webcam"] or "00004.png" in layer4["failed"]["webcam"]


def test_cli_bad_config_and_missing_sim_build_are_one_line_each(tmp_path):
    import typer
    from typer.testing import CliRunner

    from edge.capture.cli import grab, paired

    app = typer.Typer()
    app.command("grab")(grab)
    app.command("paired")(paired)
    bad = tmp_path / "bad.yaml"
    bad.write_text("capture:\n  webcam: replay\n  timeout: 3\n")
    r = CliRunner().invoke(app, ["grab", str(tmp_path / "g.png"), "--config", str(bad)])
    assert r.exit_code == 2 and f"{bad}:line 3: capture.timeout" in r.stderr and "Traceback" not in r.output
    sim = tmp_path / "sim.yaml"
    sim.write_text("bridge:\n  source: sim\n")
    r = CliRunner().invoke(app, ["paired", "--out", str(tmp_path / "p"), "--config", str(sim)])
    assert r.exit_code == 2 and "no simulated printer is given" in r.stderr
