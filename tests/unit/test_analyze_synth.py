"""Synthetic powder-bed layers with known parts and defects, shared by the analysis tests."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

N = 512


def powder(seed: int = 0, n: int = N, vignette: float = 0.35, grain: float = 9.0) -> np.ndarray:
    """Float powder-bed image: grain texture, mild vertical recoat texture, vignetting."""
    rng = np.random.default_rng(seed)
    img = 110 + grain * ndimage.gaussian_filter(rng.normal(0, 1.6, (n, n)), 0.8)
    img += 2.0 * ndimage.gaussian_filter1d(rng.normal(0, 1, n), 3)[None, :]
    yy, xx = (np.mgrid[:n, :n] - n / 2) / (n / 2)
    return img * (1 - vignette * (xx**2 + yy**2) / 2)


def parts_mask(n: int = N) -> np.ndarray:
    """Label image: 1 disk, 2 ring, 3 thin wall (4 px), 4 square."""
    yy, xx = np.mgrid[:n, :n]
    lab = np.zeros((n, n), np.uint8)
    lab[(xx - 150) ** 2 + (yy - 150) ** 2 <= 45**2] = 1
    r = np.hypot(xx - 360, yy - 150)
    lab[(r >= 28) & (r <= 45)] = 2
    lab[120:400, 250:254] = 3  # thin wall
    lab[300:390, 320:410] = 4
    return lab


def layer(seed: int = 0, n: int = N, contrast: float = 0.72,
          faint_square: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 image, label mask) of a clean layer: dark fused parts with scan texture on powder."""
    img = powder(seed, n)
    lab = parts_mask(n)
    rng = np.random.default_rng(seed + 100)
    scan = 1 + 0.03 * np.sin(np.arange(n) / 2.0)[None, :] + 0.02 * rng.normal(0, 1, (n, n))
    for k in range(1, 5):
        c = 0.88 if (faint_square and k == 4) else contrast
        img = np.where(lab == k, img * c * scan, img)
    return np.clip(img, 0, 255).astype(np.uint8), lab


def test_synthetic_layer_has_parts_darker_than_powder():
    img, lab = layer()
    assert img[lab > 0].mean() < 0.85 * img[lab == 0].mean()
    assert set(np.unique(lab)) == {0, 1, 2, 3, 4}
