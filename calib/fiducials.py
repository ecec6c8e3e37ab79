"""Detect bright round fiducial dots and order them so they can be matched between views."""

from __future__ import annotations

import cv2
import numpy as np

from calib.errors import CalibrationError


def detect_dots(
    img: np.ndarray,
    min_radius_px: float = 3.0,
    max_radius_px: float = 60.0,
    min_contrast: float = 40.0,
    min_fill: float = 0.75,
    count: int | None = None,
) -> np.ndarray:
    """Centres (Nx2, x y, sub-pixel) of bright round blobs, strongest first; at most `count`."""
    if img.ndim != 2:
        raise CalibrationError(f"fiducial detection needs a mono image, got shape {img.shape}")
    f = img.astype(np.float32)
    k = max(1, int(max_radius_px // 4))  # blur a downsampled copy: same background, 100x faster
    small = cv2.resize(f, (max(1, f.shape[1] // k), max(1, f.shape[0] // k)), interpolation=cv2.INTER_AREA)
    bg = cv2.resize(cv2.GaussianBlur(small, (0, 0), 3 * max_radius_px / k), (f.shape[1], f.shape[0]),
                    interpolation=cv2.INTER_LINEAR)
    contrast = f - bg
    thr = max(min_contrast, 0.5 * float(np.percentile(contrast, 99.99)))  # half the brightest blobs' contrast
    mask = (contrast > thr).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    found = []
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        if not (np.pi * min_radius_px**2 <= area <= np.pi * max_radius_px**2):
            continue
        comp = (lab[y : y + h, x : x + w] == i).astype(np.uint8)
        m = cv2.moments(comp, binaryImage=True)
        mu20, mu02, mu11 = m["mu20"] / area, m["mu02"] / area, m["mu11"] / area
        common = np.sqrt(max(((mu20 - mu02) / 2) ** 2 + mu11**2, 0.0))
        l1, l2 = (mu20 + mu02) / 2 + common, (mu20 + mu02) / 2 - common
        if l2 <= 0:
            continue
        fill = area / (4 * np.pi * np.sqrt(l1 * l2))  # area / area of the moment-equivalent ellipse
        if fill < min_fill or l1 / l2 > 9.0:
            continue
        weights = np.clip(contrast[y : y + h, x : x + w], 0, None) * comp
        s = weights.sum()
        yy, xx = np.mgrid[y : y + h, x : x + w]
        cx, cy = (weights * xx).sum() / s, (weights * yy).sum() / s
        found.append((float(contrast[y : y + h, x : x + w][comp > 0].mean()) * area, cx, cy))
    found.sort(reverse=True)
    pts = np.array([(cx, cy) for _, cx, cy in found], dtype=np.float64).reshape(-1, 2)
    return pts[:count] if count is not None else pts


def cyclic_order(pts: np.ndarray) -> np.ndarray:
    """Indices of points sorted by angle around their centroid (image y down: clockwise on screen)."""
    c = pts.mean(axis=0)
    return np.argsort(np.arctan2(pts[:, 1] - c[1], pts[:, 0] - c[0]))


def cyclic_candidates(ref: np.ndarray, img: np.ndarray) -> list[np.ndarray]:
    """All rotations of the cyclic correspondence ref[i] <-> img[perm[i]] (same point count, convex layout)."""
    if len(ref) != len(img):
        raise CalibrationError(f"found {len(img)} fiducials in the webcam image but the reference has {len(ref)}")
    ro, io = cyclic_order(ref), cyclic_order(img)
    out = []
    for k in range(len(ref)):
        perm = np.empty(len(ref), dtype=int)
        perm[ro] = np.roll(io, -k)
        out.append(perm)
    return out
