"""Anomaly flags on synthetic layers with one injected defect each; bad input; persistence; SR uncertainty."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge.analyze.config import AnalyzeConfig
from edge.analyze.layer import AnalysisInputError, LayerAnalyzer
from tests.unit.test_analyze_synth import layer, powder

CFG = AnalyzeConfig(ref_width_px=1024)


def _types(res) -> set[str]:
    return {f.type for f in res.flags}


def _hit(res, kind: str, x: int, y: int) -> bool:
    """A flag of this kind whose box contains (x, y) (with a few px of slack)."""
    return any(f.type == kind and f.bbox[0] - 3 <= x <= f.bbox[0] + f.bbox[2] + 3
               and f.bbox[1] - 3 <= y <= f.bbox[1] + f.bbox[3] + 3 for f in res.flags)


@pytest.fixture(scope="module")
def clean():
    return layer(seed=7)


def _analyze(img, lab=None, layer_no=1, std=None, analyzer=None):
    # synthetic layers are plate frames, as the box sees them
    a = analyzer or LayerAnalyzer(CFG, None if lab is None else {layer_no: lab > 0}, registered=True)
    return a.analyze(img, layer_no, std)


def test_clean_layer_is_ok(clean):
    img, lab = clean
    res = _analyze(img, lab)
    assert res.layer_state == "ok" and res.flags == (), [f.to_json_dict() for f in res.flags]
    assert res.mask.shape == img.shape and res.mask.dtype == bool and "total" in res.timings_s


def test_recoater_streak(clean):
    img, lab = clean
    bad = img.astype(float)
    bad[60:, 440:442] -= 35
    res = _analyze(np.clip(bad, 0, 255).astype(np.uint8), lab)
    assert _hit(res, "recoater_streak", 441, 300), [f.to_json_dict() for f in res.flags]


def test_recoater_hopping_bands_below_a_part(clean):
    img, lab = clean
    bad = img.astype(float)
    rows = np.arange(400, 470)
    bad[400:470, 310:420] += (20 * np.sin(2 * np.pi * rows / 9.0))[:, None]
    res = _analyze(np.clip(bad, 0, 255).astype(np.uint8), lab)
    assert _hit(res, "recoater_hopping", 360, 430), [f.to_json_dict() for f in res.flags]


def test_incomplete_spreading(clean):
    """A short-feed band across the whole plate width at the end of the travel, zero-config: the frame's own
    illumination model must not absorb it (robust low-order fit, departures with a step edge left out)."""
    img, lab = clean
    bad = img.astype(float)
    bad[450:, :] = 0.55 * bad[450:, :].mean()
    res = _analyze(np.clip(bad, 0, 255).astype(np.uint8), lab)
    flags = [f.to_json_dict() for f in res.flags]
    assert res.layer_state == "critical" and _hit(res, "incomplete_spreading", 256, 480), flags
    band = [f for f in res.flags if f.type == "incomplete_spreading"]
    assert min(f.bbox[1] for f in band) >= 430 and max(f.bbox[2] for f in band) >= 400  # the band, the whole width


def test_debris_blob_and_spatter(clean):
    img, lab = clean
    bad = img.astype(float)
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    bad[((xx - 80) / 9) ** 2 + ((yy - 420) / 5) ** 2 <= 1] = 175
    res = _analyze(np.clip(bad, 0, 255).astype(np.uint8), lab)
    assert _hit(res, "debris", 80, 420) and "spatter" not in _types(res)
    rng = np.random.default_rng(0)
    sp = bad.copy()
    for x, y in rng.integers(20, 490, (1500, 2)):
        if lab[y, x] == 0:
            sp[y, x] = 30
    res2 = _analyze(np.clip(sp, 0, 255).astype(np.uint8), lab)
    assert "spatter" in _types(res2)


def test_super_elevation_bright_rim(clean):
    img, lab = clean
    bad = img.copy()
    bad[300:303, 320:410] = 190  # top edge of the square stands proud
    res = _analyze(bad, lab)
    assert _hit(res, "super_elevation", 365, 301), [f.to_json_dict() for f in res.flags]


def test_geometry_deviation_against_expected_mask(clean):
    img, lab = clean
    expected = lab > 0
    bad = img.astype(float)
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    bulge = ((xx - 150) ** 2 + (yy - 197) ** 2 <= 14**2) & ~expected
    bad[bulge] = 0.72 * bad[bulge]
    res = _analyze(np.clip(bad, 0, 255).astype(np.uint8), lab)
    assert _hit(res, "part_geometry_deviation", 150, 205), [f.to_json_dict() for f in res.flags]
    missing = img.astype(float)
    # the square was not exposed: powder from an equally vignetted spot
    missing[300:390, 320:410] = img[300:390, 102:192]
    res2 = _analyze(np.clip(missing, 0, 255).astype(np.uint8), lab)
    assert _hit(res2, "part_geometry_deviation", 365, 345)


def test_laser_black_empty_and_saturated_frames(clean):
    img, lab = clean
    hot = img.copy()
    hot[200:240, 50:90] = 255
    res = _analyze(hot, lab)
    assert res.layer_state == "laser_in_image" and _hit(res, "laser_in_image", 70, 220)
    assert _analyze(np.zeros_like(img)).layer_state == "capture_failed"
    assert _analyze(np.zeros((0, 0), np.uint8)).layer_state == "capture_failed"
    full = _analyze(np.full_like(img, 255))
    assert full.layer_state == "laser_in_image"
    none = _analyze(np.full_like(img, 120))
    assert none.layer_state == "ok" and not none.mask.any()


def test_expected_mask_of_other_size_is_resized_or_refused(clean):
    img, lab = clean
    half = (lab[::2, ::2] > 0)
    assert _analyze(img, analyzer=LayerAnalyzer(CFG, [half], registered=True)).layer_state == "ok"
    with pytest.raises(AnalysisInputError, match="not the same plate grid"):
        LayerAnalyzer(CFG, [half[:, :100]]).analyze(img, 1)


def test_persistence_makes_a_minor_flag_critical(clean):
    img, lab = clean
    bad = img.astype(float)
    bad[60:, 440:442] -= 25
    bad = np.clip(bad, 0, 255).astype(np.uint8)
    a = LayerAnalyzer(CFG, [lab > 0] * 4, registered=True)
    results = [a.analyze(bad, k) for k in (1, 2, 3)]
    streaks = [[f for f in r.flags if f.type == "recoater_streak"] for r in results]
    assert all(streaks)
    assert [s[0].layers_persisted for s in streaks] == [1, 2, 3]
    assert streaks[2][0].severity == "critical" and results[2].layer_state == "critical"


def test_sr_uncertain_suppresses_texture_flags(clean):
    img, lab = clean
    bad = img.astype(float)
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    bad[((xx - 80) / 9) ** 2 + ((yy - 420) / 5) ** 2 <= 1] = 175
    bad = np.clip(bad, 0, 255).astype(np.uint8)
    std = np.zeros(img.shape, np.float32)
    std[380:460, 40:130] = 40.0
    res = _analyze(bad, lab, std=std)
    assert "sr_uncertain" in _types(res) and not _hit(res, "debris", 80, 420)
    with pytest.raises(AnalysisInputError, match="std map"):
        _analyze(bad, lab, std=std[:10])


def test_works_on_lr_and_sr_sizes_and_json_shape(clean):
    import cv2

    img, lab = clean
    bad = img.astype(float)
    bad[60:, 440:443] -= 35
    bad = np.clip(bad, 0, 255).astype(np.uint8)
    big = cv2.resize(bad, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    res = LayerAnalyzer(CFG, [lab > 0], registered=True).analyze(big, 1)
    assert _hit(res, "recoater_streak", 883, 600)
    doc = res.anomaly_json("job-1", 1)
    json.dumps(doc)
    assert set(doc) == {"job", "layer", "layer_state", "flags"}
    assert set(doc["flags"][0]) == {"type", "severity", "score", "bbox", "area_px", "layers_persisted"}


def test_without_cad_masks_parts_starting_or_ending_are_not_anomalies(clean):
    img, lab = clean
    fresh = np.clip(powder(seed=8), 0, 255).astype(np.uint8)
    only_disk = np.where(lab > 1, fresh, img)  # layer 1: only the disk is exposed, powder where the others will start
    a = LayerAnalyzer(CFG, registered=True)  # box mode: history only, no expected masks
    first = a.analyze(only_disk, 1)
    second = a.analyze(img, 2)  # ring, wall and square start here
    third = a.analyze(only_disk, 3)  # and end here
    for r in (first, second, third):
        assert r.layer_state == "ok", [f.to_json_dict() for f in r.flags]


def test_bright_smooth_bulge_outside_the_cad_outline_is_a_geometry_deviation(clean):
    """Swollen metal brighter and smoother than powder (as the sim draws it) on the square's right edge: flagged there,
    reaching out of the outline; the same amount of brightening inside the part is no geometry deviation."""
    from scipy import ndimage

    img, lab = clean
    expected = lab > 0
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    disk = (xx - 410) ** 2 + (yy - 345) ** 2 <= 12**2
    bad = img.astype(float)
    smooth = 1.15 * 110 + 0.3 * (ndimage.gaussian_filter(bad, 2.0) - 110)
    bad[disk & ~expected] = smooth[disk & ~expected]
    res = _analyze(np.clip(bad, 0, 255).astype(np.uint8), lab)
    geo = [f for f in res.flags if f.type == "part_geometry_deviation"]
    assert geo and _hit(res, "part_geometry_deviation", 416, 345), [f.to_json_dict() for f in res.flags]
    assert all(f.bbox[0] >= 409 for f in geo)  # outside the outline (the square ends at x = 409)
    assert not any(f.type == "debris" for f in res.flags)  # the bulge is explained, not also debris
    inside = img.astype(float)
    inside[disk & expected] = smooth[disk & expected]
    res2 = _analyze(np.clip(inside, 0, 255).astype(np.uint8), lab)
    assert "part_geometry_deviation" not in _types(res2)


def test_a_single_bright_band_below_a_part_is_not_hopping(clean):
    """Hopping is periodic: one bright stripe across a part's width is not chatter, four cycles are."""
    img, lab = clean
    one = img.astype(float)
    one[400:406, 310:420] += 25
    res = _analyze(np.clip(one, 0, 255).astype(np.uint8), lab)
    assert "recoater_hopping" not in _types(res), [f.to_json_dict() for f in res.flags]
    bands = img.astype(float)
    rows = np.arange(400, 440)
    bands[400:440, 310:420] += (25 * np.sin(2 * np.pi * rows / 10.0))[:, None]
    res2 = _analyze(np.clip(bands, 0, 255).astype(np.uint8), lab)
    assert _hit(res2, "recoater_hopping", 360, 420)


def test_band_energy_reads_sinusoid_amplitude_and_rejects_a_step():
    from edge.analyze.anomaly import band_energy

    n = 256
    y = np.arange(n, dtype=float)[:, None]
    sine = np.repeat(3.0 * np.sin(2 * np.pi * y / 12.0), 64, axis=1)
    w = np.ones_like(sine, dtype=bool)
    amp, pure = band_energy(sine, w, 0, np.array([8.0, 12.0, 16.0]), 16, 0.5)
    mid = (slice(60, 196), slice(20, 44))
    assert abs(float(np.median(amp[mid])) - 3.0) < 0.3 and abs(float(np.median(pure[mid])) - 3.0) < 0.3
    step = np.repeat(np.where(y < n / 2, 0.0, 3.0), 64, axis=1)
    amp_s, pure_s = band_energy(step, w, 0, np.array([8.0, 12.0, 16.0]), 16, 0.5)
    assert amp_s.max() > 0.3  # a step does excite the filters...
    assert pure_s.max() < 0.5 * amp_s.max()  # ...but it is not periodic


def test_hopping_period_range_must_be_ordered():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="hopping_period_px"):
        AnalyzeConfig(hopping_period_px=(30.0, 10.0))
    assert AnalyzeConfig(hopping_period_px=(12.0, 12.0)).hopping_period_px == (12.0, 12.0)
