"""Powder-texture statistics used to match synthetic powder to real photographs."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class TextureStats:
    """Summary of a powder patch: grey level, grain contrast, spectrum slope, bright-spatter density."""

    mean: float
    std: float
    grain_contrast: float
    spectral_slope: float
    spatter_per_mpx: float

    def as_dict(self) -> dict[str, float]:
        """Plain dict for JSON/tables."""
        return asdict(self)


def radial_psd(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum (Hann-windowed): (frequency in cycles/px, power)."""
    a = img.astype(np.float64)
    a = a - a.mean()
    win = np.outer(np.hanning(a.shape[0]), np.hanning(a.shape[1]))
    p = np.abs(np.fft.fft2(a * win)) ** 2
    fy = np.fft.fftfreq(a.shape[0])[:, None]
    fx = np.fft.fftfreq(a.shape[1])[None, :]
    r = np.hypot(fy, fx)
    bins = np.linspace(0, 0.5, 65)
    idx = np.digitize(r.ravel(), bins)
    power = np.bincount(idx, weights=p.ravel(), minlength=len(bins) + 1)[1 : len(bins)]
    count = np.bincount(idx, minlength=len(bins) + 1)[1 : len(bins)]
    f = 0.5 * (bins[1:] + bins[:-1])
    ok = count > 0
    return f[ok], power[ok] / count[ok]


def spectral_slope(img: np.ndarray, fmin: float = 0.02, fmax: float = 0.35) -> float:
    """Slope of log power vs log frequency over [fmin, fmax] cycles/px (0 = white, -2 = Brownian)."""
    f, p = radial_psd(img)
    sel = (f >= fmin) & (f <= fmax) & (p > 0)
    return float(np.polyfit(np.log(f[sel]), np.log(p[sel]), 1)[0])


def grain_contrast(img: np.ndarray, sigma: float = 3.0) -> float:
    """Std of the fine-grain residual (image minus Gaussian(sigma)) relative to the local mean."""
    a = img.astype(np.float32)
    low = cv2.GaussianBlur(a, (0, 0), sigma)
    return float(np.std(a - low) / max(float(low.mean()), 1e-6))


def spatter_density(img: np.ndarray, k: float = 5.0) -> float:
    """Isolated specks, dark or bright (fine residual beyond k robust sigmas), per megapixel."""
    a = img.astype(np.float32)
    res = a - cv2.GaussianBlur(a, (0, 0), 4.0)
    mad = float(np.median(np.abs(res - np.median(res)))) * 1.4826 + 1e-6
    hot = (np.abs(res) > k * mad).astype(np.uint8)
    n, _ = cv2.connectedComponents(hot, connectivity=8)
    return float((n - 1) / (img.size / 1e6))


def texture_stats(img: np.ndarray) -> TextureStats:
    """All powder-texture statistics of one grayscale uint8 patch."""
    if img.ndim != 2:
        raise ValueError(f"texture_stats expects a 2-D grayscale patch, got shape {img.shape}")
    return TextureStats(
        mean=float(img.mean()),
        std=float(img.std()),
        grain_contrast=grain_contrast(img),
        spectral_slope=spectral_slope(img),
        spatter_per_mpx=spatter_density(img),
    )


def powder_patches(hr: np.ndarray, mask: np.ndarray, pitch_mm: float, size: int = 128,
                   clearance_mm: float = 2.0) -> list[np.ndarray]:
    """Non-overlapping size x size patches of pure powder: no part within clearance_mm, no corner fiducials."""
    n = hr.shape[0]
    m = max(int(round(clearance_mm / pitch_mm)), 1)
    near = cv2.dilate((mask > 0).astype(np.uint8), np.ones((2 * m + 1, 2 * m + 1), np.uint8))
    c = int(0.12 * n)  # corner squares hold the fiducials
    near[:c, :c] = near[:c, -c:] = near[-c:, :c] = near[-c:, -c:] = 1
    taken = np.zeros_like(near)
    out = []
    step = max(size // 4, 1)
    for y in range(0, n - size + 1, step):
        for x in range(0, n - size + 1, step):
            if not near[y : y + size, x : x + size].any() and not taken[y : y + size, x : x + size].any():
                taken[y : y + size, x : x + size] = 1
                out.append(hr[y : y + size, x : x + size])
    return out
