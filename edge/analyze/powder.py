"""The powder bed judged against its own normal: work grid, illumination, region of interest and feature maps.

Every map here is in units of the image's own variation (robust sigmas), so the same thresholds hold for a noisy
webcam and a clean Basler frame. The expected powder comes either from the image itself (zero-config: a robust
smooth illumination field) or from a printer baseline (edge.analyze.baseline: the median of clean frames).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import cv2
import numpy as np

MAD_SIGMA = 1.4826


@dataclass(frozen=True)
class PowderView:
    """A frame on the work grid: relative deviation from the expected powder, pixels judged, scale to full size."""

    r: np.ndarray  # (image / expected) - 1 on the work grid, float32
    roi: np.ndarray  # pixels judged (plate powder, not walls, fixtures, parts or borders)
    factor: float  # full-resolution px per work px
    noise: float  # robust sigma of the fine-scale part of r inside roi (relative units)


def robust_stats(x: np.ndarray) -> tuple[float, float]:
    """(median, 1.4826 MAD) of the values; (0, 1) when empty, sigma floored at 1e-9."""
    if x.size == 0:
        return 0.0, 1.0
    med = float(np.median(x))
    return med, max(MAD_SIGMA * float(np.median(np.abs(x - med))), 1e-9)


def work_grid(gray: np.ndarray, work_px: int) -> tuple[np.ndarray, float]:
    """Area-downsample so the longer side is at most work_px; (float32 image, full px per work px)."""
    h, w = gray.shape
    f = max(1.0, max(h, w) / float(work_px))
    g = gray.astype(np.float32)
    if f > 1.0:
        g = cv2.resize(g, (max(16, int(round(w / f))), max(16, int(round(h / f)))), interpolation=cv2.INTER_AREA)
    return g, f


def blur(x: np.ndarray, sigma: float, axis: int | None = None) -> np.ndarray:
    """Gaussian blur (reflect border), isotropic or along one axis (0 = rows, i.e. vertically)."""
    if sigma <= 0:
        return x
    x = x.astype(np.float32, copy=False)
    if axis is None:
        return cv2.GaussianBlur(x, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    sx, sy = (1e-3, sigma) if axis == 0 else (sigma, 1e-3)
    k = int(2 * np.ceil(3 * sigma) + 1)
    ksize = (1, k) if axis == 0 else (k, 1)
    return cv2.GaussianBlur(x, ksize, sigmaX=sx, sigmaY=sy, borderType=cv2.BORDER_REFLECT)


def masked_blur(x: np.ndarray, mask: np.ndarray, sigma: float, axis: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Normalised convolution: blur of x over mask pixels only, and the blurred mask weight."""
    w = mask.astype(np.float32)
    num = blur(np.where(mask, x, 0).astype(np.float32), sigma, axis)
    den = blur(w, sigma, axis)
    return num / np.maximum(den, 1e-6), den


def _profile(g: np.ndarray, roi: np.ndarray, axis: int, sigma: float) -> np.ndarray:
    """Median of g over roi pixels along `axis` (one value per line across it), gaps filled, smoothed."""
    vals = np.full(g.shape[1 - axis], np.nan, np.float32)
    n = roi.sum(axis=axis)
    gt = g if axis == 0 else g.T
    rt = roi if axis == 0 else roi.T
    for i in np.flatnonzero(n >= max(4, 0.05 * g.shape[axis])):
        vals[i] = np.median(gt[:, i][rt[:, i]])
    ok = np.isfinite(vals)
    if not ok.any():
        return np.full(vals.shape, float(np.median(g)), np.float32)
    idx = np.arange(vals.size)
    vals = np.interp(idx, idx[ok], vals[ok]).astype(np.float32)
    return cv2.GaussianBlur(vals.reshape(1, -1), (0, 0), max(0.5, sigma), borderType=cv2.BORDER_REFLECT).ravel()


def illumination(g: np.ndarray, roi: np.ndarray, window_frac: float) -> np.ndarray:
    """Robust smooth illumination over roi pixels: a separable row x column median profile (smoothed over 1 % of the
    side, so thin streaks stay out of it), times a coarse masked median of what remains (window_frac of the side)."""
    from scipy import ndimage

    h, w = g.shape
    if roi.sum() < 64:
        roi = np.ones_like(roi)
    rows = _profile(g, roi, 1, 0.01 * h)  # one value per row
    cols = _profile(g / rows[:, None], roi, 0, 0.01 * w)
    sep = np.maximum(rows[:, None] * cols[None, :], 1e-3)
    q = np.where(roi, g / sep, np.nan).astype(np.float32)
    n = 64
    shape = (max(8, int(round(n * h / w))), n)
    f = (h / shape[0], w / shape[1])
    cells = q[: int(shape[0] * f[0]) // 1, :].copy()
    small = np.array([[np.nanmedian(b) if np.isfinite(b).any() else np.nan for b in np.array_split(r, shape[1], axis=1)]
                      for r in np.array_split(cells, shape[0], axis=0)], np.float32)
    k = max(3, int(round(window_frac * n)) | 1)
    with warnings.catch_warnings():  # windows wholly outside the plate are filled below
        warnings.simplefilter("ignore", RuntimeWarning)
        med = ndimage.generic_filter(small, np.nanmedian, size=k, mode="nearest")
    med = np.where(np.isfinite(med), med, np.nanmedian(small) if np.isfinite(small).any() else 1.0).astype(np.float32)
    med = cv2.GaussianBlur(med, (0, 0), k / 4.0, borderType=cv2.BORDER_REFLECT)
    return np.maximum(sep * cv2.resize(med, (w, h), interpolation=cv2.INTER_CUBIC), 1e-3)


def plate_roi(expected: np.ndarray, border_frac: float, dark_frac: float, edge_contrast: float) -> np.ndarray:
    """Pixels where powder can be judged: not the image border, not much darker than the plate, not near strong steps
    of the expected image (walls, plate edges, fixtures)."""
    h, w = expected.shape
    level = float(np.median(expected))
    roi = expected >= dark_frac * level
    b = max(1, int(round(border_frac * max(h, w))))
    roi[:b], roi[-b:], roi[:, :b], roi[:, -b:] = False, False, False, False
    sm = blur(expected, 1.5)
    gy, gx = np.gradient(sm)
    step = np.hypot(gx, gy) * 3.0 / np.maximum(sm, 1e-3)  # relative change over ~3 px
    edges = step > edge_contrast
    if edges.any():  # walls, plate edges and fixtures are long; a compact bright or dark blob is a defect to judge
        from scipy import ndimage

        lab, _ = ndimage.label(edges)
        long = [i for i, sl in enumerate(ndimage.find_objects(lab), start=1)
                if max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start) >= 0.25 * max(h, w)]
        edges = np.isin(lab, long)
    if edges.any():
        r = max(2, int(round(0.02 * max(h, w))))
        edges = cv2.dilate(edges.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) > 0
        roi &= ~edges
    return roi


def fine_noise(r: np.ndarray, roi: np.ndarray) -> float:
    """Robust sigma of the fine-scale (sigma 1.5 px high-pass) part of r inside roi."""
    hp = r - blur(r, 1.5)
    return robust_stats(hp[roi])[1] if roi.any() else robust_stats(hp)[1]


def zscore(x: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """(x - median) / robust sigma with the statistics of roi pixels; 0 outside roi."""
    med, sig = robust_stats(x[roi]) if roi.sum() >= 16 else robust_stats(x)
    return np.where(roi, (x - med) / sig, 0.0).astype(np.float32)


def line_map(r: np.ndarray, roi: np.ndarray, axis: int, width: float, length: int) -> np.ndarray:
    """Thin lines along `axis` (0 = vertical lines): a band-pass across the axis averaged over `length` px along it,
    in robust sigmas of its own distribution over roi."""
    across = 1 - axis
    band = blur(r, max(0.7, width / 2.0), across) - blur(r, 4.0 * width, across)
    k = (1, length) if axis == 0 else (length, 1)
    m = roi.astype(np.float32)
    num = _box_along(np.where(roi, band, 0), length, axis)
    den = _box_along(m, length, axis)
    avg = np.where(den > 0.5, num / np.maximum(den, 1e-6), 0.0)
    return zscore(avg, roi & (den > 0.5))


def _box_along(x: np.ndarray, length: int, axis: int) -> np.ndarray:
    """Mean over `length` px along axis (0 = down the columns)."""
    ksize = (1, length) if axis == 0 else (length, 1)  # cv2 sizes are (cols, rows)
    return cv2.blur(x.astype(np.float32), ksize, borderType=cv2.BORDER_REFLECT)


def mark_map(r: np.ndarray, roi: np.ndarray, sigma: float) -> np.ndarray:
    """Small marks (scratches, deformation, debris): difference of Gaussians at sigma and 4 sigma, robust sigmas."""
    return zscore(blur(r, sigma) - blur(r, 4.0 * sigma), roi)


def level_map(r: np.ndarray, roi: np.ndarray, sigma: float) -> np.ndarray:
    """Low-frequency powder level (relative units) averaged over roi pixels only."""
    lv, den = masked_blur(r, roi, sigma)
    return np.where(den > 0.3, lv, 0.0).astype(np.float32)


def texture_map(r: np.ndarray, roi: np.ndarray, sigma: float) -> np.ndarray:
    """Local roughness: log of the local RMS of the fine-scale part of r over roi (natural-log units)."""
    hp = r - blur(r, 1.5)
    ms, den = masked_blur(hp * hp, roi, sigma)
    return np.where(den > 0.3, 0.5 * np.log(np.maximum(ms, 1e-12)), 0.0).astype(np.float32)
