"""Calibration accuracy on a real sim build, against its known homography and lr/ truth."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from calib.measure import measure_build
from calib.register import Calibration
from edge.messages import Frame, LayerEvent, LayerFrames

sim_build = pytest.importorskip("edge.sim.build")
from edge.sim.config import SimConfig  # noqa: E402


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    cfg = SimConfig(hr_size_px=512, webcam_width_px=960, webcam_height_px=540, webcam_focal_px=700.0)
    return sim_build.generate_build(tmp_path_factory.mktemp("simb") / "b", 2, 11, cfg)


def test_registration_error_on_sim_build(build, tmp_path):
    res = measure_build(build, overlay_path=tmp_path / "ov.png")
    assert res["grid_rms_lr_px"] < 0.15 and res["corner_rms_lr_px"] < 0.2
    assert res["image_mae"] < 0.6 and res["image_psnr_db"] > 45
    assert res["pitch_um_lr"] == pytest.approx(100_000 / 128)
    assert cv2.imread(str(tmp_path / "ov.png")).shape == (128, 256, 3)


def test_register_layer_message(build, tmp_path):
    res_cal = tmp_path / "c.json"
    from calib.register import register

    web = cv2.imread(str(build / "webcam" / "00001.png"), cv2.IMREAD_GRAYSCALE)
    hr = cv2.imread(str(build / "hr" / "00001.png"), cv2.IMREAD_GRAYSCALE)
    register(web, 512, 4, reference=hr).save(res_cal)
    cal = Calibration.load(res_cal)
    ev = LayerEvent("layer_complete", 1, 1.0, 2.0, "sim")
    rl = cal.register_layer(LayerFrames(ev, {"webcam": Frame("webcam", web, 0.0)}))
    lr = cv2.imread(str(build / "lr" / "00001.png"), cv2.IMREAD_GRAYSCALE)
    assert rl.lr.shape == lr.shape and np.abs(rl.lr.astype(int) - lr).mean() < 0.6 and rl.event is ev
    with pytest.raises(Exception, match="no webcam frame"):
        cal.register_layer(LayerFrames(ev, {}, {"webcam": "timeout"}))
