"""Powder judged against the printer's own normal: baseline learning and file, recoat detectors, zero-config."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.analyze.baseline import BaselineError, RunningBaseline, learn_baseline, load_baseline, save_baseline
from edge.analyze.config import AnalyzeConfig
from edge.analyze.layer import layer_state
from edge.analyze.recoat import RecoatAnalyzer, clean_scores
from edge.messages import AnomalyFlag

CFG = AnalyzeConfig()
SIZE = 384
REAL = Path(__file__).resolve().parents[2].parent / "shared" / "realdata" / "pblm_classes"


def plate(seed: int, noise: float = 3.0, defect: str | None = None) -> np.ndarray:
    """A synthetic recoat frame: light falling off towards the top, a dark wall on the left, vertical spreading
    texture (the recoater travels along y), camera noise; optional streak, uneven patch or mark."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    light = 60 + 50 * np.sqrt(y + 0.05) - 15 * (x - 0.5) ** 2
    cols = np.repeat(rng.normal(0, 1.0, (1, SIZE)), SIZE, axis=0)  # faint streaks every layer has
    img = light * (1 + 0.01 * cols) + rng.normal(0, noise, (SIZE, SIZE))
    img[:, : int(0.04 * SIZE) + (np.arange(SIZE)[:, None] * 0).ravel()[0]] *= 0.35  # wall
    if defect == "streak":
        img[40:360, 200:202] -= 14
    elif defect == "patch":
        img[150:260, 100:200] *= 0.8
    elif defect == "mark":
        img[252:255, 278:302] -= 30
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def base():
    """Baseline from four clean synthetic frames."""
    return learn_baseline([plate(s) for s in range(4)], CFG, lambda g, b: clean_scores(g, b, CFG))


def test_baseline_learns_axis_scores_and_round_trips(base, tmp_path):
    assert base.travel_axis == 0 and base.n_frames == 4
    assert set(base.clean_scores) == {"line", "mark", "level"} and base.clean_scores["line"] > 0
    assert base.roi.mean() > 0.6 and not base.roi[:, :10].any()  # the wall and border are not judged
    loaded = load_baseline(save_baseline(base, tmp_path / "b.json"))
    assert loaded.travel_axis == 0 and loaded.source_shape == (SIZE, SIZE)
    assert np.allclose(loaded.expected, base.expected, rtol=1e-3) and (loaded.roi == base.roi).all()


@pytest.mark.parametrize("defect,kind", [("streak", "recoater_streak"), ("patch", "incomplete_spreading"),
                                         ("mark", "scratch")])
def test_baseline_flags_defects_and_not_a_clean_frame(base, defect, kind):
    assert RecoatAnalyzer(CFG, base).analyze(plate(100, noise=4.0), 1).layer_state == "ok"  # noisier, still clean
    res = RecoatAnalyzer(CFG, base).analyze(plate(101, defect=defect), 1)
    assert res.layer_state != "ok"
    assert kind in {f.type for f in res.flags if f.severity != "info"}


def test_direction_is_read_from_the_frames_not_assumed():
    frames = [np.ascontiguousarray(plate(s).T) for s in range(4)]  # recoater along x now
    b = learn_baseline(frames, CFG, lambda g, bb: clean_scores(g, bb, CFG))
    assert b.travel_axis == 1
    res = RecoatAnalyzer(CFG, b).analyze(np.ascontiguousarray(plate(7, defect="streak").T), 1)
    assert "recoater_streak" in {f.type for f in res.flags if f.severity != "info"}


def test_zero_config_clean_ok_and_strong_streak_found():
    assert RecoatAnalyzer(CFG).analyze(plate(11), 1).layer_state == "ok"
    res = RecoatAnalyzer(CFG).analyze(plate(12, defect="streak"), 1)
    assert "recoater_streak" in {f.type for f in res.flags if f.severity != "info"}


def test_info_flags_never_change_state():
    info = AnomalyFlag("recoater_streak", "info", 0.8, (0, 0, 2, 50), 100)
    assert layer_state([info]) == "ok"
    assert layer_state([info, AnomalyFlag("debris", "minor", 1.2, (0, 0, 5, 5), 25)]) == "minor"


def test_baseline_errors_name_the_problem(base, tmp_path):
    with pytest.raises(BaselineError, match="not the same camera view"):
        RecoatAnalyzer(CFG, base).analyze(np.full((SIZE, SIZE * 2), 100, np.uint8), 1)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(BaselineError, match="bad.json"):
        load_baseline(bad)
    with pytest.raises(BaselineError, match="no such file"):
        load_baseline(tmp_path / "missing.json")
    with pytest.raises(BaselineError, match="one camera view"):
        learn_baseline([plate(1), plate(2)[:200]], CFG)


def test_running_baseline_follows_clean_frames_robustly(base):
    run = RunningBaseline(base, keep=5)
    brighter = np.clip(plate(20).astype(float) * 1.0 + 0, 0, 255).astype(np.uint8)
    before = run.current.expected.copy()
    for s in range(5):
        run.add_clean(plate(30 + s), CFG.powder_work_px)
    after = run.current.expected
    assert run.current.n_frames == 9 and not np.array_equal(before, after)
    run.add_clean(np.clip(brighter.astype(int) + 0, 0, 255).astype(np.uint8), CFG.powder_work_px)
    spike = plate(40, defect="mark")
    run.add_clean(spike, CFG.powder_work_px)  # one bad frame that slipped through does not carry its mark
    assert abs(float(run.current.expected[253, 290]) - float(after[253, 290])) < 8


@pytest.mark.skipif(not REAL.is_dir(), reason="needs ../shared/realdata/pblm_classes (real recoat plates)")
def test_real_plates_leave_one_out():
    import cv2

    clean = sorted((REAL / "No_Defect").glob("*.jpg"))
    b = learn_baseline([cv2.imread(str(f), 0) for f in clean[1:]], CFG, lambda g, bb: clean_scores(g, bb, CFG))
    assert RecoatAnalyzer(CFG, b).analyze(cv2.imread(str(clean[0]), 0), 1).layer_state == "ok"
    scratch = cv2.imread(str(sorted((REAL / "Deformation_With_Scratch").glob("*.jpg"))[0]), 0)
    flags = RecoatAnalyzer(CFG, b).analyze(scratch, 1).flags
    assert "recoater_streak" in {f.type for f in flags if f.severity != "info"}
