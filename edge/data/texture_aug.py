"""Structured-texture augmentations of HR training patches (applied before the LR is made from them).

Real powder beds carry texture with a direction: recoater streaks along the recoater's travel, scan tracks on
melted parts, sparkle on bright powder lit from one side, grain elongated by the spreading. The sim builds and the
shared photographs hold little of it, so a model trained on them paints one isotropic grain. These functions add
such texture to an HR patch (uint8 in, uint8 out, all randomness from the caller's generator) and rescale the
grain per detail band, so the LR made afterwards carries each one's footprint and the model must read it.
Directions are drawn near 0 rad (along x); the training stream's random dihedral transform turns them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from edge.data.degrade import anisotropic_gaussian_kernel


@dataclass(frozen=True)
class TextureAug:
    """Probabilities (each drawn independently per patch) and ranges of the structured-texture augmentations."""

    band_gain_prob: float = 0.0  # rescale the grain of two detail bands by log-uniform gains
    band_gain: tuple[float, float] = (0.35, 2.5)  # range of the common gain
    band_tilt: tuple[float, float] = (0.6, 1.7)  # range of the finest band's extra gain (changes the grain's scale)
    smear_prob: float = 0.0  # elongate the grain along one direction (energy kept)
    streak_prob: float = 0.0  # recoater streaks
    track_prob: float = 0.0  # scan tracks (periodic stripes in a region)
    sparkle_prob: float = 0.0  # directional sparkle (elongated bright specks with a shadow)

    def __post_init__(self) -> None:
        """Validate so a bad setting fails when the dataset is built."""
        for name in ("band_gain_prob", "smear_prob", "streak_prob", "track_prob", "sparkle_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"TextureAug.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("band_gain", "band_tilt"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"TextureAug.{name} must be (lo, hi) with 0 < lo <= hi, got {(lo, hi)}")

    @property
    def active(self) -> bool:
        """True when any augmentation can fire."""
        return any(getattr(self, n) > 0 for n in ("band_gain_prob", "smear_prob", "streak_prob", "track_prob",
                                                   "sparkle_prob"))

    def to_json(self) -> dict:
        """Plain dict for manifests."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def structured(cls) -> TextureAug:
        """The mix the grain-conditioned denoiser is trained with (docs/sr_quality.md)."""
        return cls(band_gain_prob=0.5, smear_prob=0.15, streak_prob=0.1, track_prob=0.08, sparkle_prob=0.12)


def log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """One draw, uniform in log between lo and hi."""
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _to_u8(x: np.ndarray) -> np.ndarray:
    """float image -> uint8, rounded and clipped."""
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _lowpass(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian low-pass (reflecting borders)."""
    return cv2.GaussianBlur(x, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT_101)


def scale_detail_bands(hr: np.ndarray, gains: tuple[float, float], scale: int = 4) -> np.ndarray:
    """HR with detail band (0.375 s .. 0.15 s px Gaussian splits) x gains[0] and the finer rest x gains[1]."""
    x = hr.astype(np.float32)
    coarse, fine = _lowpass(x, 0.375 * scale), _lowpass(x, 0.15 * scale)
    return _to_u8(coarse + gains[0] * (fine - coarse) + gains[1] * (x - fine))


def smear_grain(hr: np.ndarray, rng: np.random.Generator, scale: int = 4) -> np.ndarray:
    """Grain (detail above the LR Nyquist) smeared along a direction near x, its energy kept: elongated grain."""
    x = hr.astype(np.float32)
    low = _lowpass(x, 0.375 * scale)
    d = x - low
    theta = rng.normal(0.0, 0.15)
    k = anisotropic_gaussian_kernel(rng.uniform(0.8, 2.2), 0.35, theta)
    ds = cv2.filter2D(d, -1, k, borderType=cv2.BORDER_REFLECT_101)
    gain = np.sqrt((d ** 2).mean() / max(float((ds ** 2).mean()), 1e-6))
    return _to_u8(low + min(gain, 4.0) * ds)


def _coords(shape: tuple[int, int], theta: float) -> tuple[np.ndarray, np.ndarray]:
    """(along, across) pixel coordinates for direction theta (radians from +x)."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    c, s = np.cos(theta), np.sin(theta)
    return c * xx + s * yy, -s * xx + c * yy


def _smooth_noise(n: int, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """1-D Gaussian-smoothed white noise of unit std."""
    v = cv2.GaussianBlur(rng.standard_normal((1, n)).astype(np.float32), (0, 0), sigmaX=max(sigma, 0.3))[0]
    return v / max(float(v.std()), 1e-6)


def add_recoater_streaks(hr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A few thin lines along a direction near x (dark or bright, 0.4-2 px wide) plus a weak across-profile."""
    h, w = hr.shape
    along, across = _coords(hr.shape, rng.normal(0.0, 0.03))
    off = float(across.min())
    n = int(np.ceil(across.max() - off)) + 2
    u = np.arange(n, dtype=np.float32)
    prof = rng.uniform(0.0, 3.0) * _smooth_noise(n, rng.uniform(2.0, 8.0), rng)
    for _ in range(1 + rng.poisson(2.0)):
        u0, width = rng.uniform(0, n), rng.uniform(0.4, 2.0)
        prof += rng.choice([-1.0, 1.0], p=[0.6, 0.4]) * rng.uniform(3.0, 20.0) * np.exp(-0.5 * ((u - u0) / width) ** 2)
    m = int(np.ceil(along.max() - along.min())) + 2
    mod = 1.0 + 0.3 * _smooth_noise(m, rng.uniform(8.0, 40.0), rng)
    img = np.interp(across - off, u, prof) * np.interp(along - along.min(), np.arange(m, dtype=np.float32), mod)
    return _to_u8(hr.astype(np.float32) + img.astype(np.float32))


def _soft_region(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A soft-edged random ellipse (or, a third of the time, the whole patch) as a 0..1 float mask."""
    h, w = shape
    if rng.random() < 0.33:
        return np.ones(shape, np.float32)
    m = np.zeros(shape, np.float32)
    centre = (int(rng.uniform(0, w)), int(rng.uniform(0, h)))
    axes = (int(rng.uniform(0.2, 0.7) * w), int(rng.uniform(0.2, 0.7) * h))
    cv2.ellipse(m, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    return _lowpass(m, 1.5)


def add_scan_tracks(hr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Periodic stripes (period 3-8 px, ridged profile, wandering phase) at a random angle inside a soft region."""
    along, across = _coords(hr.shape, rng.uniform(0, np.pi))
    period = rng.uniform(3.0, 8.0)
    m = int(np.ceil(along.max() - along.min())) + 2
    wander = 0.4 * period * _smooth_noise(m, rng.uniform(5.0, 20.0), rng)
    phase = 2 * np.pi * (across + np.interp(along - along.min(), np.arange(m, dtype=np.float32), wander)) / period
    ridge = np.abs(np.sin(phase / 2)) ** rng.uniform(0.5, 2.0)
    amp = rng.uniform(3.0, 14.0)
    img = amp * (ridge - ridge.mean()) * _soft_region(hr.shape, rng)
    return _to_u8(hr.astype(np.float32) + img)


def add_directional_sparkle(hr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sparse bright specks elongated along one direction, each with a weaker shadow displaced across the light."""
    h, w = hr.shape
    density = log_uniform(rng, 0.001, 0.01)  # specks per HR px^2
    n = rng.poisson(density * h * w)
    if n == 0:
        return hr
    theta = rng.normal(0.0, 0.3)
    deltas = np.zeros((h, w), np.float32)
    ys, xs = rng.integers(0, h, n), rng.integers(0, w, n)
    np.add.at(deltas, (ys, xs), rng.lognormal(np.log(rng.uniform(12.0, 40.0)), 0.6, n).astype(np.float32))
    sx, sy = rng.uniform(0.7, 2.5), rng.uniform(0.35, 0.8)
    k = anisotropic_gaussian_kernel(sx, sy, theta) * (2 * np.pi * sx * sy)  # peak 1: a speck's amplitude is its delta
    bright = cv2.filter2D(deltas, -1, k, borderType=cv2.BORDER_CONSTANT)
    shift = np.float32([[1, 0, -1.5 * np.sin(theta)], [0, 1, 1.5 * np.cos(theta)]])
    shadow = cv2.warpAffine(bright, shift, (w, h), borderMode=cv2.BORDER_CONSTANT)
    return _to_u8(hr.astype(np.float32) + bright - rng.uniform(0.2, 0.5) * shadow)


def augment_texture(hr: np.ndarray, rng: np.random.Generator, aug: TextureAug, scale: int = 4) -> np.ndarray:
    """Apply each augmentation of `aug` with its probability (grain bands, smear, sparkle, streaks, tracks)."""
    if rng.random() < aug.band_gain_prob:
        g = log_uniform(rng, *aug.band_gain)
        hr = scale_detail_bands(hr, (g, g * log_uniform(rng, *aug.band_tilt)), scale)
    if rng.random() < aug.smear_prob:
        hr = smear_grain(hr, rng, scale)
    if rng.random() < aug.sparkle_prob:
        hr = add_directional_sparkle(hr, rng)
    if rng.random() < aug.streak_prob:
        hr = add_recoater_streaks(hr, rng)
    if rng.random() < aug.track_prob:
        hr = add_scan_tracks(hr, rng)
    return hr
