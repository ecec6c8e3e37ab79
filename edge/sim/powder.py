"""Powder bed appearance: grain texture, recoater-direction streaking, lighting gradient, spatter."""

from __future__ import annotations

import cv2
import numpy as np

# Weights of the three grain scales (fine / mid / coarse) and the recoater streaking, in units of
# `grain_std`; tuned so the HR powder matches the real photographs' texture statistics
# (bench/sim_texture_stats.py prints the comparison).
GRAIN_WEIGHTS = (1.20, 0.20, 0.25)
STREAK_WEIGHT = 0.30


def _unit(a: np.ndarray) -> np.ndarray:
    """Scale a zero-mean field to unit std."""
    return a / max(float(a.std()), 1e-6)


def powder_texture(rng: np.random.Generator, n: int, mean: float, grain_std: float) -> np.ndarray:
    """Fresh powder layer (float32, grey levels): multi-scale grain plus streaks along the recoater travel (+y)."""
    fine = _unit(cv2.GaussianBlur(rng.standard_normal((n, n), dtype=np.float32), (0, 0), 0.7))
    mid = _unit(cv2.GaussianBlur(rng.standard_normal((n, n), dtype=np.float32), (0, 0), 2.0))
    cn = max(n // 24, 4)
    coarse = _unit(cv2.resize(rng.standard_normal((cn, cn), dtype=np.float32), (n, n), interpolation=cv2.INTER_CUBIC))
    # recoater travel is along +y: a field that varies fast in x and slowly in y gives vertical streaks
    streak = _unit(cv2.resize(rng.standard_normal((max(n // 96, 3), n // 3), dtype=np.float32), (n, n),
                              interpolation=cv2.INTER_CUBIC))
    a, b, c = GRAIN_WEIGHTS
    return mean + grain_std * (a * fine + b * mid + c * coarse + STREAK_WEIGHT * streak)


def lighting_gain(n: int, gx: float, gy: float, gr: float) -> np.ndarray:
    """Smooth illumination gain: linear gradient (gx, gy per plate width) and radial fall-off gr at the corners."""
    t = (np.arange(n, dtype=np.float32) + 0.5) / n - 0.5
    xs, ys = t[None, :], t[:, None]
    return (1.0 + gx * xs + gy * ys - gr * 2.0 * (xs**2 + ys**2)).astype(np.float32)


def add_spatter(img: np.ndarray, rng: np.random.Generator, mask: np.ndarray, per_mpx: float, depth: float,
                pitch_mm: float) -> None:
    """Darken spatter particles on powder in place; denser within a few mm of fused parts.

    Random draws do not depend on the mask (it only accepts or rejects candidates), so a local change
    of the parts changes the spatter only locally.
    """
    n = img.shape[0]
    total = int(rng.poisson(4 * per_mpx * img.size / 1e6))
    ys = rng.integers(0, n, total)
    xs = rng.integers(0, n, total)
    u = rng.random(total)
    amp = rng.uniform(0.4, 1.0, total).astype(np.float32) * depth
    big = rng.random(total) < 0.5  # larger particles cover more than one pixel
    if total == 0:
        return
    fused = (mask > 0).astype(np.uint8)
    dist = cv2.distanceTransform(1 - fused, cv2.DIST_L2, 3) * pitch_mm if fused.any() else np.full(mask.shape, 1e9,
                                                                                                   np.float32)
    keep = (u < 0.25 + 0.75 * np.exp(-dist[ys, xs] / 3.0)) & (fused[ys, xs] == 0)
    ys, xs, amp, big = ys[keep], xs[keep], amp[keep], big[keep]
    np.subtract.at(img, (ys, xs), amp)
    np.subtract.at(img, (np.minimum(ys[big] + 1, n - 1), xs[big]), 0.7 * amp[big])
    np.subtract.at(img, (ys[big], np.minimum(xs[big] + 1, n - 1)), 0.7 * amp[big])
