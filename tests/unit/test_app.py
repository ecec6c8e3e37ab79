"""The composition root (edge.app): the register stage and the laser-source selection built from the config."""

from __future__ import annotations

import numpy as np
import pytest

from calib.errors import CalibrationError
from calib.register import Calibration
from edge.app import register_stage
from edge.config import Config
from edge.messages import Frame, LayerEvent, LayerFrames

HR, SCALE, WEB = 256, 4, (320, 240)


def _calibration(tmp_path) -> tuple[Calibration, Config]:
    """A stored calibration (plate grid scaled 0.8 and shifted into the webcam view) and a config naming it."""
    H = np.array([[0.8, 0.0, 40.0], [0.0, 0.8, 10.0], [0.0, 0.0, 1.0]])
    cal = Calibration(H, WEB, HR, SCALE, plate_mm=120.0)
    path = cal.save(tmp_path / "calibration.json")
    return cal, Config.model_validate({"calib": {"file": str(path)}})


def test_register_stage_is_the_calibrations_register_layer(tmp_path):
    cal, cfg = _calibration(tmp_path)
    web = np.random.default_rng(0).integers(0, 256, (WEB[1], WEB[0]), dtype=np.uint8)
    frames = LayerFrames(LayerEvent("layer_complete", 3, 1.0, 1.1), {"webcam": Frame("webcam", web, 1.2)})
    reg = register_stage(cfg)(frames)
    assert reg.lr.shape == (HR // SCALE, HR // SCALE)
    np.testing.assert_array_equal(reg.lr, cal.apply(web))
    assert reg.pitch_um == pytest.approx(120_000.0 / (HR // SCALE))  # the plate's pitch, not a default of 0
    assert reg.event.layer == 3 and reg.raw is frames


def test_register_stage_names_the_missing_frame_and_why(tmp_path):
    _, cfg = _calibration(tmp_path)
    frames = LayerFrames(LayerEvent("layer_complete", 5, 1.0, 1.1), {}, failed={"webcam": "timeout after 5.0 s"})
    with pytest.raises(CalibrationError, match="layer 5: no webcam frame to register .timeout after 5.0 s"):
        register_stage(cfg)(frames)


def test_register_stage_needs_a_calibration_file():
    with pytest.raises(ValueError, match="calib.file is not set"):
        register_stage(Config())
