"""Texture statistics are right on known fields, and sim powder matches the real Risheng photographs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.sim.build import plan_build, render_layer
from edge.sim.config import SimConfig
from edge.sim.texture_stats import grain_contrast, powder_patches, spatter_density, spectral_slope, texture_stats


def _power_law_field(n: int, beta: float, seed: int = 0) -> np.ndarray:
    """Gaussian random field with power spectrum ~ f^-beta."""
    rng = np.random.default_rng(seed)
    f = np.hypot(np.fft.fftfreq(n)[:, None], np.fft.fftfreq(n)[None, :])
    f[0, 0] = 1.0
    spec = (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))) * f ** (-beta / 2)
    return np.real(np.fft.ifft2(spec))


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_spectral_slope_recovers_the_power_law(beta):
    assert spectral_slope(_power_law_field(256, beta)) == pytest.approx(-beta, abs=0.2)


def test_grain_contrast_and_spatter_density_on_known_images():
    flat = np.full((200, 200), 100, np.uint8)
    assert grain_contrast(flat) == 0.0
    rng = np.random.default_rng(0)
    noisy = np.clip(100 + rng.normal(0, 5, (500, 500)), 0, 255).astype(np.uint8)
    assert 0.02 < grain_contrast(noisy) < 0.05
    specks = noisy.copy()
    ys, xs = rng.integers(10, 490, 50), rng.integers(10, 490, 50)
    specks[ys, xs] = 10
    assert spatter_density(specks) > spatter_density(noisy) + 100  # 50 specks in 0.25 Mpx = 200 / Mpx
    with pytest.raises(ValueError, match="2-D"):
        texture_stats(np.zeros((4, 4, 3), np.uint8))


def test_sim_powder_matches_the_real_photographs(realdata):
    cfg = SimConfig(defect_rate=0.0)
    plan = plan_build(1, 0, cfg)
    imgs = render_layer(plan, 1, cameras=False)
    sim = [texture_stats(p) for p in powder_patches(imgs.hr, imgs.mask, plan.pitch_mm)]
    assert len(sim) >= 8
    factor = plan.pitch_mm * 1000 / 30.0  # the Risheng 20 MP camera: ~30 µm/px
    side = int(128 * 3.3)
    real = []
    for name in ("S01.jpg", "S03.jpg", "S05.jpg"):
        img = cv2.imread(str(realdata / "risheng_slm" / name), cv2.IMREAD_GRAYSCALE)
        assert img is not None, name
        for row in (3, 4):  # powder-only boxes left of the rings (see bench/sim_texture_stats.py)
            crop = img[row * side : (row + 1) * side, 2 * side : 3 * side]
            real.append(texture_stats(cv2.resize(crop, (round(side / factor),) * 2, interpolation=cv2.INTER_AREA)))

    def avg(stats, key):
        return float(np.mean([getattr(s, key) for s in stats]))

    assert avg(sim, "grain_contrast") == pytest.approx(avg(real, "grain_contrast"), rel=0.25)
    assert avg(sim, "std") == pytest.approx(avg(real, "std"), rel=0.25)
    assert avg(sim, "mean") == pytest.approx(avg(real, "mean"), rel=0.1)
    assert avg(sim, "spectral_slope") == pytest.approx(avg(real, "spectral_slope"), abs=0.35)
    assert avg(real, "spatter_per_mpx") / 3 < avg(sim, "spatter_per_mpx") < 3 * avg(real, "spatter_per_mpx")
