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


def masked_blur(
    x: np.ndarray, mask: np.ndarray, sigma: float, axis: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
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


def illumination(
    g: np.ndarray, roi: np.ndarray, window_frac: float, outlier_rel: float = 0.2, edge_contrast: float = 0.15
) -> np.ndarray:
    """Robust smooth illumination over roi pixels: a separable row x column median profile (smoothed over 1 % of the
    side, so thin streaks stay out of it), times a coarse masked median of what remains (window_frac of the side).
    Only pixels whose local level lies within outlier_rel of a robust low-order fit of the whole plate feed it, so a
    large dark or bright defect (a short-feed band across the whole width) is not taken for illumination."""
    from scipy import ndimage

    h, w = g.shape
    if roi.sum() < 64:
        roi = np.ones_like(roi)
    roi = roi & ~gross_departures(g, roi, outlier_rel, edge_contrast)
    rows = _profile(g, roi, 1, 0.01 * h)  # one value per row
    cols = _profile(g / rows[:, None], roi, 0, 0.01 * w)
    sep = np.maximum(rows[:, None] * cols[None, :], 1e-3)
    q = np.where(roi, g / sep, np.nan).astype(np.float32)
    n = 64
    shape = (max(8, int(round(n * h / w))), n)
    f = (h / shape[0], w / shape[1])
    cells = q[: int(shape[0] * f[0]) // 1, :].copy()
    small = np.array(
        [
            [np.nanmedian(b) if np.isfinite(b).any() else np.nan for b in np.array_split(r, shape[1], axis=1)]
            for r in np.array_split(cells, shape[0], axis=0)
        ],
        np.float32,
    )
    k = max(3, int(round(window_frac * n)) | 1)
    with warnings.catch_warnings():  # windows wholly outside the plate are filled below
        warnings.simplefilter("ignore", RuntimeWarning)
        med = ndimage.generic_filter(small, np.nanmedian, size=k, mode="nearest")
    med = np.where(np.isfinite(med), med, np.nanmedian(small) if np.isfinite(small).any() else 1.0).astype(np.float32)
    med = cv2.GaussianBlur(med, (0, 0), k / 4.0, borderType=cv2.BORDER_REFLECT)
    return np.maximum(sep * cv2.resize(med, (w, h), interpolation=cv2.INTER_CUBIC), 1e-3)


def gross_departures(g: np.ndarray, roi: np.ndarray, outlier_rel: float, edge_contrast: float = 0.15) -> np.ndarray:
    """Pixels that are defects, not light: regions whose local level (1 % of the side) departs by more than outlier_rel
    from a robust low-order illumination surface of the plate (edge.analyze.illum) AND that are bounded by a step
    (edge_contrast relative change over ~3 px along at least 30 % of their boundary inside the plate; light fades,
    a short-feed band or a bare patch has an edge). Empty when they would be most of roi."""
    from scipy import ndimage

    from edge.analyze.illum import smooth_illumination

    surf = smooth_illumination(g, roi)
    lv, den = masked_blur(np.log(np.maximum(g, 1e-3) / surf), roi, 0.01 * max(g.shape))
    cand = roi & (den > 0.3) & (np.abs(lv) > np.log1p(outlier_rel))
    if not cand.any():
        return cand
    sm = blur(g, 1.5)
    gy, gx = np.gradient(sm)
    step = ndimage.maximum_filter(np.hypot(gx, gy) * 3.0 / np.maximum(sm, 1e-3), size=7) > edge_contrast
    lab, n = ndimage.label(cand)
    out = np.zeros_like(cand)
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        pad = tuple(slice(max(0, a.start - 2), a.stop + 2) for a in sl)
        comp = lab[pad] == i
        rim = ndimage.binary_dilation(comp, iterations=2) & ~comp & roi[pad]  # its boundary inside the plate
        if rim.any() and step[pad][rim].mean() >= 0.3:
            out[pad] |= comp
    return out if out.sum() < 0.5 * roi.sum() else np.zeros_like(roi)


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
        long = [
            i
            for i, sl in enumerate(ndimage.find_objects(lab), start=1)
            if max(sl[0].stop - sl[0].start, sl[1].stop - sl[1].start) >= 0.25 * max(h, w)
        ]
        edges = np.isin(lab, long)
    if edges.any():
        r = max(2, int(round(0.02 * max(h, w))))
        edges = (
            cv2.dilate(edges.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) > 0
        )
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


def line_map(
    r: np.ndarray, roi: np.ndarray, axis: int, bands: tuple[tuple[float, float], ...], length: int
) -> np.ndarray:
    """Thin lines along `axis` (0 = vertical lines): for each (fine, coarse) Gaussian pair a band-pass across the axis
    (over roi pixels only, so walls and parts do not leak in), then the running median over `length` px along the axis
    (a streak holds its contrast along the travel; grain, spatter and single particles do not), in robust sigmas of
    its own distribution; the signed value of the band that reads strongest."""
    across = 1 - axis
    best = np.zeros(r.shape, np.float32)
    for s1, s2 in bands:
        band = masked_blur(r, roi, s1, across)[0] - masked_blur(r, roi, s2, across)[0]
        b = np.where(roi, band, np.nan).astype(np.float32)
        med, ok = _running_median(b if axis == 0 else b.T, length)
        if axis == 1:
            med, ok = med.T, ok.T
        z = zscore(med, roi & ok)
        best = np.where(np.abs(z) > np.abs(best), z, best)
    return best


def _running_median(b: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Median of the finite values of each column over windows of `length` rows (evaluated every length / 8 rows,
    held in between); (medians, where at least half the window was finite)."""
    h = b.shape[0]
    step = max(1, length // 8)
    out = np.zeros(b.shape, np.float32)
    ok = np.zeros(b.shape, bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows (outside the plate)
        for y0 in range(0, h, step):
            lo, hi = max(0, y0 + step // 2 - length // 2), min(h, y0 + step // 2 + length // 2)
            seg = b[lo:hi]
            good = np.isfinite(seg).sum(axis=0) >= max(3, length // 2)
            m = np.nanmedian(seg, axis=0)
            out[y0 : y0 + step] = np.where(good, m, 0.0)
            ok[y0 : y0 + step] = good
    return out, ok


def mark_map(r: np.ndarray, roi: np.ndarray, sigmas: tuple[float, ...]) -> np.ndarray:
    """Marks (scratches, deformation scars, debris): difference of Gaussians at each sigma and 4 sigma over roi pixels,
    each in robust sigmas of its own distribution, signed value of the scale that reads strongest."""
    best = np.zeros(r.shape, np.float32)
    for s in sigmas:
        dog = masked_blur(r, roi, s)[0] - masked_blur(r, roi, 4.0 * s)[0]
        z = zscore(blur(dog, s), roi)
        best = np.where(np.abs(z) > np.abs(best), z, best)
    return best


def level_map(r: np.ndarray, roi: np.ndarray, sigma: float) -> np.ndarray:
    """Low-frequency powder level (relative units) averaged over roi pixels only."""
    lv, den = masked_blur(r, roi, sigma)
    return np.where(den > 0.3, lv, 0.0).astype(np.float32)


def texture_map(r: np.ndarray, roi: np.ndarray, sigma: float) -> np.ndarray:
    """Local roughness: log of the local RMS of the fine-scale part of r over roi (natural-log units)."""
    hp = r - blur(r, 1.5)
    ms, den = masked_blur(hp * hp, roi, sigma)
    return np.where(den > 0.3, 0.5 * np.log(np.maximum(ms, 1e-12)), 0.0).astype(np.float32)
