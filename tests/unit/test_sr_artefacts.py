"""No flag from an SR artefact: saturation and marks the LR does not show raise no flag (edge.analyze.artefacts)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.analyze.artefacts import confirm_on_lr, laser_from_lr
from edge.analyze.config import AnalyzeConfig
from edge.analyze.layer import LayerAnalyzer
from edge.messages import AnomalyFlag


@pytest.fixture(scope="module")
def clean_layer1(tmp_path_factory):
    """Layer 1 of a small sim build without defects: (LR, bicubic x4 of it)."""
    from edge.sim.build import generate_build
    from edge.sim.config import SimConfig

    b = generate_build(tmp_path_factory.mktemp("b") / "build", 1, 7, SimConfig(hr_size_px=512, defect_rate=0.0))
    lr = cv2.imread(str(b / "lr" / "00001.png"), cv2.IMREAD_GRAYSCALE)
    return lr, cv2.resize(lr, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)


def _saturated_corner(img: np.ndarray) -> np.ndarray:
    """The SR artefact that used to raise laser_in_image: a bright saturated patch near a plate corner."""
    out = img.copy()
    h, w = out.shape
    out[int(0.12 * h): int(0.12 * h) + 40, int(0.8 * w): int(0.8 * w) + 40] = 255
    return out


def test_sr_saturated_corner_no_longer_raises_laser_on_clean_layer_1(clean_layer1):
    lr, up = clean_layer1
    sr = _saturated_corner(up)
    cfg = AnalyzeConfig()
    before = LayerAnalyzer(cfg, registered=True).analyze(sr, 1)  # the SR image alone: the old false alarm
    assert before.layer_state == "laser_in_image"
    now = LayerAnalyzer(cfg, registered=True).analyze(sr, 1, estimate=up, lr=lr)
    assert now.layer_state != "laser_in_image"
    assert not any(f.type == "laser_in_image" for f in now.flags)


def test_laser_seen_by_the_webcam_is_still_flagged(clean_layer1):
    lr, up = clean_layer1
    lr_sat = lr.copy()
    lr_sat[100:115, 60:75] = 255  # 15x15 LR px saturated: the laser plume in the webcam frame
    up_sat = cv2.resize(lr_sat, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    res = LayerAnalyzer(AnalyzeConfig(), registered=True).analyze(up_sat, 1, estimate=up_sat, lr=lr_sat)
    assert res.layer_state == "laser_in_image"
    laser = [f for f in res.flags if f.type == "laser_in_image"]
    x, y, w, h = laser[0].bbox  # found on the LR, drawn on the SR grid
    assert 230 <= x <= 245 and 390 <= y <= 405 and 50 <= w <= 70 and 50 <= h <= 70


def test_laser_from_lr_scales_the_box_and_area():
    lr = np.full((64, 64), 100, np.uint8)
    lr[10:30, 20:40] = 255
    flags = laser_from_lr(lr, (256, 256), AnalyzeConfig(), 0.25)
    assert len(flags) == 1 and flags[0].bbox == (80, 40, 80, 80) and flags[0].area_px == 400 * 16


def _flag(kind: str, bbox: tuple[int, int, int, int]) -> AnomalyFlag:
    return AnomalyFlag(kind, "minor", 1.0, bbox, bbox[2] * bbox[3])


def test_marks_stay_only_where_the_lr_shows_them():
    rng = np.random.default_rng(0)
    lr = np.clip(rng.normal(110, 2.0, (128, 128)), 0, 255).astype(np.uint8)
    lr[40:43, 40:43] = 60  # a real piece of debris: 3x3 LR px, dark
    flags = [_flag("debris", (156, 156, 20, 20)),  # over the LR blob (SR grid x4)
             _flag("debris", (400, 300, 20, 20)),  # the SR's own mark: flat LR there
             _flag("recoater_streak", (0, 0, 512, 4))]  # not an artefact-prone type: untouched
    out = confirm_on_lr(flags, lr, (512, 512), AnalyzeConfig())
    assert [(f.type, f.bbox[0]) for f in out] == [("debris", 156), ("recoater_streak", 0)]
    assert confirm_on_lr(flags, None, (512, 512), AnalyzeConfig()) == flags  # no LR: nothing to confirm on


def test_spatter_needs_more_lr_particles_than_chance():
    rng = np.random.default_rng(1)
    lr = np.clip(rng.normal(110, 3.0, (128, 128)), 0, 255).astype(np.uint8)
    ys, xs = rng.integers(70, 120, 60), rng.integers(70, 120, 60)
    lr[ys, xs] = 70  # a cluster of single-pixel particles in the lower right
    spatter_real = _flag("spatter", (280, 280, 200, 200))
    spatter_sr = _flag("spatter", (20, 20, 200, 200))
    out = confirm_on_lr([spatter_real, spatter_sr], lr, (512, 512), AnalyzeConfig())
    assert out == [spatter_real]
