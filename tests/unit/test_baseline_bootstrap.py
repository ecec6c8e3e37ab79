"""A box without an install baseline learns one from its first clean recoat frames, keeps it, and switches to it."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.analyze.baseline import load_baseline
from edge.analyze.bootstrap import BaselineBootstrap, RecoatStage
from edge.analyze.config import AnalyzeConfig
from edge.analyze.recoat import PowderJudge, RecoatAnalyzer

sys.path.insert(0, str(Path(__file__).parent))
from test_recoat_baseline import plate  # noqa: E402  (the synthetic recoat frames of the baseline tests)

CFG = AnalyzeConfig(baseline_bootstrap_frames=4)
IDENT = {"calib_sha256": "a" * 64, "webcam": "opencv", "device": "/dev/video0", "size": [1920, 1080]}
REAL = Path(__file__).resolve().parents[2].parent / "shared" / "realdata" / "pblm_classes"


def streaked(seed: int, amp: float) -> np.ndarray:
    """A synthetic plate with a vertical streak amp grey levels dark (14: zero-config sees it; 9: it does not)."""
    img = plate(seed).astype(np.float32)
    img[40:360, 200:202] -= amp
    return np.clip(img, 0, 255).astype(np.uint8)


def stage(folder: Path, cfg: AnalyzeConfig = CFG, registered: bool = False, ident: dict = IDENT):
    """A RecoatStage learning into folder, with one extra powder judge (as the layer analysers' are)."""
    other = PowderJudge(cfg, None, registered)
    boot = BaselineBootstrap(cfg, folder, ident, registered=registered)
    return RecoatStage(RecoatAnalyzer(cfg, None, registered), boot, (other,)), other


def test_bootstrap_keeps_bad_frames_out_and_switches_every_judge(tmp_path, caplog):
    st, other = stage(tmp_path / "self")
    assert st.baseline_status()["state"] == "learning" and other.running is None
    seq = [plate(0), plate(1), streaked(40, 14), streaked(41, 9), plate(2)]
    states = [st(im, n + 1).layer_state for n, im in enumerate(seq)]
    assert states[2] != "ok" and states[3] == "ok"  # zero-config refuses the strong streak, passes the faint one
    s = st.baseline_status()
    assert s["state"] == "learning" and s["frames"] == 3 and s["rejected"] == 2  # the faint one disagreed with the rest
    with caplog.at_level(logging.INFO, logger="edge.analyze.bootstrap"):
        st(plate(3), 6)
    s = st.baseline_status()
    assert s["state"] == "ready" and s["frames"] == 4 and Path(s["path"]).is_file()
    assert "baseline_ready" in {getattr(r, "event", None) for r in caplog.records}
    assert st.analyzer.judge.running is not None and other.running is not None
    assert len(list((tmp_path / "self").glob("frame_*.png"))) == 4
    # against its own baseline the box now sees the faint streak zero-config missed, and a clean plate stays clean
    assert st(plate(9), 7).layer_state == "ok"
    res = st(streaked(42, 9), 8)
    assert "recoater_streak" in {f.type for f in res.flags if f.severity != "info"}


def test_bootstrap_survives_a_restart_and_a_moved_camera_starts_again(tmp_path):
    folder = tmp_path / "self"
    st, _ = stage(folder)
    for n in range(2):
        st(plate(n), n + 1)
    st2, _ = stage(folder)  # restart half way: the two frames are still there
    assert st2.baseline_status()["frames"] == 2 and st2.baseline_status()["state"] == "learning"
    for n in range(2, 4):
        st2(plate(n), n + 1)
    assert st2.baseline_status()["state"] == "ready"
    st3, other = stage(folder)  # restart when ready: judged against the kept baseline at once
    assert st3.baseline_status()["state"] == "ready" and other.running is not None
    expected = load_baseline(folder / "baseline.json").expected
    assert np.allclose(st3.boot.baseline.expected, expected)
    moved = {**IDENT, "calib_sha256": "b" * 64}  # re-calibrated camera: another view of the plate
    st4, other4 = stage(folder, ident=moved)
    assert st4.baseline_status()["state"] == "learning" and st4.baseline_status()["frames"] == 0
    assert other4.running is None
    stale = list(tmp_path.glob("self.stale-*"))
    assert len(stale) == 1 and (stale[0] / "baseline.json").is_file()  # set aside, not deleted


def test_service_bootstraps_on_sim_recoat_frames_and_health_says_so(tmp_path):
    from edge.app import analyzers, recoat_analyzer
    from edge.config import Config
    from edge.sim.build import plan_build, render_powder_frame
    from edge.sim.config import SimConfig

    cfg = Config.model_validate({"store": {"root": str(tmp_path / "box")}, "analyze": {"baseline_bootstrap_frames": 3},
                                 "capture": {"grab_on": ["layer_complete", "recoat_done"]}})
    sr_an, lr_an = analyzers(cfg)
    judges = (sr_an.__self__.powder, lr_an.__self__.powder)
    rec = recoat_analyzer(cfg, None, judges)
    assert rec.baseline_status() == {**rec.baseline_status(), "source": "self", "state": "learning", "frames": 0}
    plan = plan_build(4, 7, SimConfig(hr_size_px=512))
    frames = [render_powder_frame(plan, i).lr for i in range(3)]
    for n, fr in enumerate(frames):
        assert rec(fr, n + 1).layer_state == "ok"
    assert rec.baseline_status()["state"] == "ready" and all(j.running is not None for j in judges)
    assert (tmp_path / "box/baseline_self/baseline.json").is_file()
    # with an install baseline the box learns nothing and says where its baseline comes from
    cfg2 = cfg.model_copy(update={"analyze": cfg.analyze.model_copy(
        update={"baseline_path": str(tmp_path / "box/baseline_self/baseline.json")})})
    assert recoat_analyzer(cfg2).baseline_status()["source"] == "install"
    cfg3 = cfg.model_copy(update={"analyze": cfg.analyze.model_copy(update={"baseline_bootstrap_frames": 0})})
    assert recoat_analyzer(cfg3).baseline_status()["source"] == "none"


@pytest.mark.skipif(not (REAL / "No_Defect").is_dir(), reason="needs ../shared/realdata/pblm_classes (real plates)")
def test_real_plates_bootstrap_refuses_a_defective_plate(tmp_path):
    """pblm_classes: 4 clean plates with a defective one among them; the defective plate does not enter and the
    self-learned baseline then judges the other clean plates ok and finds defective ones."""
    clean = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted((REAL / "No_Defect").glob("*.jpg"))]
    bad = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted((REAL / "Powder_Uneven").glob("*.jpg"))[:6]]
    st, _ = stage(tmp_path / "self", AnalyzeConfig(baseline_bootstrap_frames=4))
    for n, im in enumerate([clean[0], clean[1], bad[0], clean[2], clean[3]]):
        st(im, n + 1)
    s = st.baseline_status()
    assert s["state"] == "ready" and s["frames"] == 4 and s["rejected"] == 1
    assert all(st(im, 10 + n).layer_state == "ok" for n, im in enumerate(clean[4:]))
    assert sum(st(im, 20 + n).layer_state != "ok" for n, im in enumerate(bad[1:])) >= 4


def test_health_says_where_the_baseline_comes_from(tmp_path):
    from edge.config import Config
    from edge.pipeline import Stages
    from edge.service import BoxService

    cfg = Config.model_validate({"store": {"root": str(tmp_path / "box")}, "mqtt": {"enabled": False}})
    st, _ = stage(tmp_path / "self")
    svc = BoxService(cfg, Stages(None, None, None, None, analyze_recoat=st), None)
    doc = svc.health_doc("stopped")
    assert doc["analysis_baseline"]["source"] == "self" and doc["analysis_baseline"]["state"] == "learning"
    assert BoxService(cfg, Stages(None, None, None, None), None).health_doc("stopped")["analysis_baseline"] is None
