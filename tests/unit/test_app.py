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


def test_laser_source_replays_the_configured_trace_or_the_one_given(tmp_path):
    from edge.app import laser_source
    from firmware_bridge.traces import generate_trace

    a = generate_trace(1, seed=0).to_csv(tmp_path / "a.csv")
    b = generate_trace(1, seed=1).to_csv(tmp_path / "b.csv")
    cfg = Config.model_validate({"bridge": {"source": "replay", "trace_file": str(a)}})
    laser = laser_source(cfg)
    assert laser.make().name == "replay:a.csv" and not laser.restartable and laser.printer is None
    assert laser_source(cfg, trace=b).make().name == "replay:b.csv"
    over = laser_source(Config(), trace=b, speed=0.0)  # --trace replays even where bridge.source is daq
    assert (over.bridge.source, over.bridge.speedup, over.restartable) == ("replay", 0.0, False)
    assert laser_source(Config()).restartable  # the DAQ is reopened forever
    with pytest.raises(ValueError, match="trace_file or --trace"):
        laser_source(Config.model_validate({"bridge": {"source": "replay"}}))


def test_laser_source_builds_the_sim_printer_from_the_config(tmp_path):
    from edge.app import laser_source

    sim_build = pytest.importorskip("edge.sim.build")
    from edge.sim.config import SimConfig

    folder = sim_build.generate_build(tmp_path / "b", 2, 5, SimConfig(hr_size_px=256, webcam_width_px=640,
                                                                      webcam_height_px=360, webcam_focal_px=470.0))
    cfg = Config.model_validate({"bridge": {"source": "sim", "sim_build_dir": str(folder), "speedup": 0}})
    laser = laser_source(cfg)
    assert laser.printer is not None and laser.printer.layers == 2 and laser.printer.speedup is None
    assert laser.make().name == "sim-printer"
    with pytest.raises(ValueError, match="sim_build_dir or --sim-build"):
        laser_source(Config.model_validate({"bridge": {"source": "sim"}}))
