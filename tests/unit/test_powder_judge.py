"""The powder judge's parts on their own: robust illumination, streak and mark maps, registered frames, the running
baseline's part exclusion, the sim's install frames and the install-baseline path of the sim evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from edge.analyze.baseline import RunningBaseline, learn_baseline
from edge.analyze.config import AnalyzeConfig
from edge.analyze.illum import smooth_illumination
from edge.analyze.powder import PowderView, gross_departures, illumination, line_map
from edge.analyze.recoat import RecoatAnalyzer, clean_scores, detect_marks, frame_roi, thresholds

CFG = AnalyzeConfig()
N = 256


def lit_plate(seed: int, band: float | None = None, falloff: float = 0.0) -> np.ndarray:
    """Float powder frame: grain and a smooth lamp field (brighter at the bottom, `falloff` darker towards the top);
    band: a short-feed band across the whole width over the last 14 % of the travel, at that fraction of the light."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:N, 0:N] / N
    light = 100 * (1 + 0.25 * y - 0.2 * (x - 0.5) ** 2) * (1 - falloff * np.exp(-y / 0.08))
    img = light * (1 + 0.04 * rng.standard_normal((N, N)))
    if band is not None:
        img[int(0.86 * N):] *= band
    return img.astype(np.float32)


def test_robust_illumination_does_not_bend_into_a_full_width_band():
    img = lit_plate(1, band=0.55)
    roi = np.ones(img.shape, bool)
    surf = smooth_illumination(img, roi)
    clean = smooth_illumination(lit_plate(1), roi)
    rows = slice(int(0.9 * N), N)
    assert np.abs(surf[rows] / clean[rows] - 1).max() < 0.08  # the band is not taken for light
    flex = illumination(img, roi, CFG.powder_illum_frac)
    assert float(np.median(img[rows] / flex[rows])) < 0.7  # the flexible model is no longer fed the band


def test_soft_falloff_is_light_and_a_stepped_band_is_not():
    roi = np.ones((N, N), bool)
    assert not gross_departures(lit_plate(2, falloff=0.35), roi, 0.2).any()  # 35 % darker towards the top edge, soft
    band = gross_departures(lit_plate(2, band=0.55), roi, 0.2)
    assert band[int(0.9 * N):].mean() > 0.8 and band[: int(0.8 * N)].mean() < 0.01


def test_streak_map_reads_through_spatter_and_parts():
    rng = np.random.default_rng(3)
    r = (0.04 * rng.standard_normal((N, N))).astype(np.float32)
    ys, xs = rng.integers(0, N, 600), rng.integers(0, N, 600)
    r[ys, xs] -= 0.6  # spatter: strong dark single pixels everywhere
    r[:, 120] -= 0.05  # a faint streak, about one grain sigma deep, along the whole travel
    roi = np.ones((N, N), bool)
    roi[90:150, 100:140] = False  # a part interrupts it
    z = np.abs(line_map(r, roi, 0, ((0.5, 2.0), (0.7, 4.0)), N // 2))
    assert z[:, 119:122].max() > 8 and np.delete(z, np.s_[116:125], axis=1).max() < 6


def test_a_bright_particle_is_not_a_mark_but_a_scratch_is():
    n = 512  # the work grid of a 1024 px frame
    rng = np.random.default_rng(4)
    base = (0.04 * rng.standard_normal((n, n))).astype(np.float32)

    def view(r: np.ndarray) -> PowderView:
        return PowderView(r, np.ones((n, n), bool), 2.0, 0.04)

    particle = base.copy()
    particle[200:202, 200:202] += 1.5  # one bright grain, however strong, stays as small as the band-pass
    flags, _ = detect_marks(view(particle), thresholds(CFG, None), CFG)
    assert not [f for f in flags if f.severity != "info"], [f.to_json_dict() for f in flags]
    scratch = base.copy()
    scratch[300:302, 120:220] -= 0.4
    blob = base.copy()
    blob[300:312, 300:314] += 0.3
    for img, kind in ((scratch, "scratch"), (blob, "debris")):
        flags, _ = detect_marks(view(img), thresholds(CFG, None), CFG)
        assert [f.type for f in flags if f.severity != "info"] == [kind]


def test_registered_frames_are_judged_to_the_border_photographs_lose_their_walls():
    img = lit_plate(5)
    img[:, : N // 10] *= 0.2  # a wall in a photograph
    assert frame_roi(img, CFG, registered=True)[:, : N // 10].mean() > 0.6
    assert frame_roi(img, CFG, registered=False)[:, : N // 10].mean() == 0.0


def test_zero_config_registered_recoat_frame_flags_the_band_not_the_clean_plate():
    ok = RecoatAnalyzer(CFG, registered=True).analyze(np.clip(lit_plate(6), 0, 255).astype(np.uint8), 1)
    assert ok.layer_state == "ok", [f.to_json_dict() for f in ok.flags]
    res = RecoatAnalyzer(CFG, registered=True).analyze(np.clip(lit_plate(6, band=0.55), 0, 255).astype(np.uint8), 1)
    assert "incomplete_spreading" in {f.type for f in res.flags if f.severity != "info"}


def test_running_baseline_ignores_excluded_parts():
    frames = [np.clip(lit_plate(s), 0, 255).astype(np.uint8) for s in range(3)]
    base = learn_baseline(frames, CFG)
    run = RunningBaseline(base, keep=5)
    part = np.zeros((N, N), bool)
    part[100:160, 100:160] = True
    for s in range(5):
        f = lit_plate(10 + s)
        f[part] *= 0.5  # a dark part on every recent frame
        run.add_clean(np.clip(f, 0, 255).astype(np.uint8), CFG.powder_work_px, exclude=part)
    exp = run.current.expected
    assert abs(float(exp[120:140, 120:140].mean()) / float(base.expected[120:140, 120:140].mean()) - 1) < 0.03


@pytest.mark.parametrize("registered", [True, False])
def test_clean_scores_cover_every_detector(registered):
    frames = [np.clip(lit_plate(s), 0, 255).astype(np.uint8) for s in range(3)]
    base = learn_baseline(frames, CFG, lambda g, b: clean_scores(g, b, CFG, registered))
    assert set(base.clean_scores) == {"line", "mark", "level"}
    assert all(0 <= v < 12 for v in base.clean_scores.values()), base.clean_scores


def test_sim_install_frames_share_the_builds_light_and_differ_in_grain():
    from edge.sim.build import plan_build, render_powder_frame
    from edge.sim.config import SimConfig

    plan = plan_build(3, 9, SimConfig(hr_size_px=256))
    a, b = render_powder_frame(plan, 0, cameras=False), render_powder_frame(plan, 1, cameras=False)
    assert a.layer == 0 and a.labels == [] and not a.mask.any() and a.lr is None
    assert not np.array_equal(a.hr, b.hr)
    assert np.corrcoef(a.hr.astype(float).ravel(), b.hr.astype(float).ravel())[0, 1] < 0.9
    blocks = [np.asarray(im, float).reshape(4, 64, 4, 64).mean(axis=(1, 3)) for im in (a.hr, b.hr)]
    assert np.abs(blocks[0] / blocks[1] - 1).max() < 0.1  # the same lamp field (64 px blocks: grain averages out)
    with_cams = render_powder_frame(plan, 0)
    assert with_cams.lr is not None and with_cams.webcam is not None
