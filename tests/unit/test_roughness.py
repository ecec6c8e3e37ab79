"""Roughness on a sinusoidal wall with known Ra / Rq / Rz."""

from __future__ import annotations

import numpy as np
import pytest

from edge.analyze import roughness as rg


def _wavy_disk(n: int = 512, r0: float = 180.0, amp: float = 4.0, k: int = 30) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n] - n / 2 + 0.5
    th = np.arctan2(yy, xx)
    return np.hypot(xx, yy) <= r0 + amp * np.sin(k * th)


def test_iso_params_of_pure_sine_match_closed_form():
    t = np.linspace(0, 2 * np.pi * 10, 5000, endpoint=False)
    p = rg.iso_params(3.0 * np.sin(t))
    assert p.ra_um == pytest.approx(2 * 3 / np.pi, rel=1e-3)
    assert p.rq_um == pytest.approx(3 / np.sqrt(2), rel=1e-3)
    assert p.rz_um == pytest.approx(6.0, rel=1e-3)


def test_sinusoidal_wall_roughness_in_micrometres():
    amp_px, pitch = 4.0, 25.0
    mask = _wavy_disk(amp=amp_px)
    r = rg.polar_profile(mask)
    assert r.mean() == pytest.approx(180, abs=1.0)
    # window = one period (12 deg) removes the sine from the mean line only, keeping the wall waviness
    res = rg.part_roughness([mask, mask], window=12, pitch_um=pitch)
    a_um = amp_px * pitch
    assert res.ra_um == pytest.approx(2 * a_um / np.pi, rel=0.1)
    assert res.rq_um == pytest.approx(a_um / np.sqrt(2), rel=0.1)
    assert res.rz_um == pytest.approx(2 * a_um, rel=0.12)


def test_smooth_circle_is_nearly_flat_and_window_trend():
    smooth = _wavy_disk(amp=0.0)
    assert rg.part_roughness([smooth], 12, 25.0).ra_um < 10  # pixelisation only (< 0.4 px)
    curve = rg.roughness_vs_window([_wavy_disk()], [2, 12, 60], 25.0)
    assert curve[2].ra_um < curve[12].ra_um  # a window shorter than the period keeps most of the sine in the mean line


def test_empty_and_bad_input():
    assert rg.polar_profile(np.zeros((32, 32), bool)) is None
    assert np.isnan(rg.part_roughness([np.zeros((32, 32), bool)], 5, 10).ra_um)
    with pytest.raises(ValueError, match="window"):
        rg.fluctuation(np.ones(10), 0)


def test_plot(tmp_path):
    curve = rg.roughness_vs_window([_wavy_disk(256, 90, 2, 20)], [4, 18], 25.0)
    p = tmp_path / "r.png"
    rg.plot_roughness_vs_window({"HR": curve, "bicubic": curve}, p)
    assert p.stat().st_size > 5000
