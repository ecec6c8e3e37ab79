"""Metrics against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from edge.analyze import metrics as m


def _texture(seed: int = 0, n: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(ndimage.gaussian_filter(rng.normal(128, 60, (n, n)), 0.8), 0, 255)


def test_mae_and_psnr_match_hand_formula():
    a = _texture(0)
    b = np.clip(a + np.random.default_rng(1).normal(0, 5, a.shape), 0, 255)
    assert m.mae(a, b) == pytest.approx(np.abs(a - b).sum() / a.size)
    mse = ((a - b) ** 2).sum() / a.size
    assert m.psnr(a, b) == pytest.approx(10 * np.log10(255.0**2 / mse), rel=1e-9)
    assert m.psnr(a, a) == float("inf")


def _ssim_direct(a: np.ndarray, b: np.ndarray, sigma: float = 1.5) -> float:
    """SSIM from Wang et al. 2004 with an explicit truncated Gaussian window (independent of skimage)."""
    r = int(3.5 * sigma + 0.5)
    ax = np.arange(-r, r + 1)
    g = np.exp(-(ax[:, None] ** 2 + ax[None, :] ** 2) / (2 * sigma**2))
    g /= g.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for y in range(r, a.shape[0] - r):
        for x in range(r, a.shape[1] - r):
            pa, pb = a[y - r : y + r + 1, x - r : x + r + 1], b[y - r : y + r + 1, x - r : x + r + 1]
            ma, mb = (g * pa).sum(), (g * pb).sum()
            va, vb = (g * (pa - ma) ** 2).sum(), (g * (pb - mb) ** 2).sum()
            cab = (g * (pa - ma) * (pb - mb)).sum()
            vals.append(((2 * ma * mb + c1) * (2 * cab + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_matches_direct_gaussian_window():
    a = _texture(2, 32)
    b = ndimage.gaussian_filter(a, 1.0)
    assert m.ssim(a, b) == pytest.approx(_ssim_direct(a, b), abs=2e-3)
    assert m.ssim(a, a) == pytest.approx(1.0)
    assert m.ssim(a, b) < 0.95


def test_shape_mismatch_is_clear_error():
    with pytest.raises(ValueError, match="same shape"):
        m.mae(np.zeros((4, 4)), np.zeros((4, 5)))


def test_hf_energy_ratio_drops_with_blur():
    a = _texture(3)
    assert m.hf_energy_ratio(a, a) == pytest.approx(1.0)
    r1 = m.hf_energy_ratio(ndimage.gaussian_filter(a, 0.7), a)
    r2 = m.hf_energy_ratio(ndimage.gaussian_filter(a, 1.5), a)
    assert 1.0 > r1 > r2 > 0


def test_cvd_zero_for_identical_and_grows_with_blur():
    s = m.CVDSettings(size=64, l_angles=4)  # paper uses 512 (~11 s per image on this CPU); small here for speed
    a = _texture(4)
    d0, n0 = m.cvd(a, a, s)
    assert d0 == 0.0 and n0 == 0.0
    d1, n1 = m.cvd(ndimage.gaussian_filter(a, 0.7), a, s)
    d2, n2 = m.cvd(ndimage.gaussian_filter(a, 2.0), a, s)
    assert 0 < d1 < d2 and 0 < n1 < n2
    assert n1 == pytest.approx(d1 / np.linalg.norm(m.wph_coeffs(a, s)))


def test_wph_operator_is_built_without_forking(monkeypatch):
    """pywph's filters are built in this process: a fork() from a process with inference threads can deadlock."""
    import os

    pytest.importorskip("pywph")
    from edge.analyze import metrics

    def no_fork(*_a, **_k):
        raise AssertionError("os.fork called while building the wavelet operator")

    monkeypatch.setattr(os, "fork", no_fork)
    metrics._wph_op.cache_clear()
    op = metrics._wph_op(32, 3, 4, 0)
    assert op.psi_f.shape[0] > 0 and op.psi_f.shape[1:] == (32, 32) and np.isfinite(np.abs(op.psi_f)).all()
