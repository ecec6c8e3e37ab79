"""Powder bed appearance: grain texture, recoater-direction streaking, lighting gradient, spatter."""

from __future__ import annotations

import cv2
import numpy as np

# Weights of the three grain scales (fine / mid / coarse) and the recoater streaking, in units of
# `grain_std`; tuned so the HR powder matches the real photographs' texture statistics
# (bench/sim_texture_stats.py prints the comparison).
GRAIN_WEIGHTS = (0.80, 0.45, 0.30)
STREAK_WEIGHT = 0.35


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
    streak = _unit(cv2.resize(rng.standard_normal((max(n // 96, 3), n // 3), dtype=np.float32), (n, n), interpolation=cv2.INTER_CUBIC))
    a, b, c = GRAIN_WEIGHTS
    return mean + grain_std * (a * fine + b * mid + c * coarse + STREAK_WEIGHT * streak)


def lighting_gain(n: int, gx: float, gy: float, gr: float) -> np.ndarray:
    """Smooth illumination gain: linear gradient (gx, gy per plate width) and radial fall-off gr at the corners."""
    t = (np.arange(n, dtype=np.float32) + 0.5) / n - 0.5
    xs, ys = t[None, :], t[:, None]
    return (1.0 + gx * xs + gy * ys - gr * 2.0 * (xs**2 + ys**2)).astype(np.float32)


def add_spatter(img: np.ndarray, rng: np.random.Generator, mask: np.ndarray, per_mpx: float, depth: float) -> None:
    """Darken spatter particles in place: half scattered uniformly, half within a few mm of fused parts."""
    n = img.shape[0]
    total = int(rng.poisson(per_mpx * img.size / 1e6))
    if total == 0:
        return
    ys = rng.integers(0, n, total)
    xs = rng.integers(0, n, total)
    part_px = np.flatnonzero(mask.ravel())
    if part_px.size:
        near = total // 2
        src = part_px[rng.integers(0, part_px.size, near)]
        sy, sx = np.divmod(src, n)
        off = rng.normal(0, n * 0.03, size=(2, near))
        ys[:near] = np.clip(sy + off[0], 0, n - 1).astype(np.int64)
        xs[:near] = np.clip(sx + off[1], 0, n - 1).astype(np.int64)
    on_powder = mask[ys, xs] == 0
    ys, xs = ys[on_powder], xs[on_powder]
    amp = rng.uniform(0.4, 1.0, ys.size).astype(np.float32) * depth
    np.subtract.at(img, (ys, xs), amp)
    big = rng.random(ys.size) < 0.25  # larger particles cover 2x2 pixels
    np.subtract.at(img, (np.minimum(ys[big] + 1, n - 1), xs[big]), 0.7 * amp[big])
    np.subtract.at(img, (ys[big], np.minimum(xs[big] + 1, n - 1)), 0.7 * amp[big])
