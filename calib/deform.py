"""The paper's refinement: Hough circles of ring parts in both views, centre displacements -> deformation map."""

from __future__ import annotations

import cv2
import numpy as np
from scipy.interpolate import RBFInterpolator
from scipy.spatial import cKDTree

from calib.errors import CalibrationError


def detect_circles(img: np.ndarray, min_radius: int, max_radius: int, min_dist: float | None = None) -> np.ndarray:
    """Circles (Nx3: x, y, r) found by cv2.HoughCircles (gradient-alt) on a lightly smoothed mono image."""
    if img.ndim != 2:
        raise CalibrationError(f"circle detection needs a mono image, got shape {img.shape}")
    u8 = img if img.dtype == np.uint8 else cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    u8 = cv2.GaussianBlur(u8, (0, 0), 1.0)
    c = cv2.HoughCircles(
        u8, cv2.HOUGH_GRADIENT_ALT, dp=1.5, minDist=min_dist or max(2.0, min_radius), param1=60, param2=0.75,
        minRadius=int(min_radius), maxRadius=int(max_radius),
    )
    if c is None:
        return np.zeros((0, 3))
    edges = _edge_points(u8)
    return np.array([_refine_circle(edges, ci) for ci in c.reshape(-1, 3).astype(np.float64)])


def _edge_points(u8: np.ndarray) -> np.ndarray:
    """Canny edge pixels (Nx2, x y) of a smoothed image."""
    e = cv2.Canny(u8, 20, 60, L2gradient=True)
    ys, xs = np.nonzero(e)
    return np.column_stack([xs, ys]).astype(np.float64)


def _refine_circle(edges: np.ndarray, c: np.ndarray, band: float = 2.0, rounds: int = 3) -> np.ndarray:
    """Sub-pixel circle by least-squares (Kasa) fit to edge pixels near the Hough circle; Hough value if too few."""
    x, y, r = c
    for _ in range(rounds):
        d = np.hypot(edges[:, 0] - x, edges[:, 1] - y)
        sel = edges[np.abs(d - r) < band]
        if len(sel) < max(12, int(2 * np.pi * r * 0.5)):  # need at least half the circumference
            return c
        A = np.column_stack([2 * sel[:, 0], 2 * sel[:, 1], np.ones(len(sel))])
        b = (sel**2).sum(axis=1)
        (x, y, k), *_ = np.linalg.lstsq(A, b, rcond=None)
        r = float(np.sqrt(max(k + x * x + y * y, 1e-9)))
    return np.array([x, y, r])


def part_centres(circles: np.ndarray, merge_px: float) -> np.ndarray:
    """Merge concentric circles (a ring's inner and outer edge) into one centre each (Nx2)."""
    if len(circles) == 0:
        return np.zeros((0, 2))
    tree = cKDTree(circles[:, :2])
    seen = np.zeros(len(circles), bool)
    out = []
    for i in range(len(circles)):
        if seen[i]:
            continue
        group = [j for j in tree.query_ball_point(circles[i, :2], merge_px) if not seen[j]]
        seen[group] = True
        out.append(circles[group, :2].mean(axis=0))
    return np.array(out)


def match_points(ref: np.ndarray, img: np.ndarray, max_dist: float) -> tuple[np.ndarray, np.ndarray]:
    """Mutual nearest-neighbour pairs closer than max_dist: (ref_matched, img_matched)."""
    if len(ref) == 0 or len(img) == 0:
        return np.zeros((0, 2)), np.zeros((0, 2))
    d1, j = cKDTree(img).query(ref)
    _, i_back = cKDTree(ref).query(img)
    keep = [(i, j[i]) for i in range(len(ref)) if d1[i] <= max_dist and i_back[j[i]] == i]
    if not keep:
        return np.zeros((0, 2)), np.zeros((0, 2))
    a, b = zip(*keep, strict=False)
    return ref[list(a)], img[list(b)]


def patch_shift(reference: np.ndarray, registered: np.ndarray, centre: np.ndarray, size: int) -> np.ndarray:
    """Sub-pixel shift (dx, dy) of the registered view against the reference in a window around a part centre."""
    h = max(8, size // 2)
    x, y = int(round(centre[0])), int(round(centre[1]))
    if x - h < 0 or y - h < 0 or x + h > reference.shape[1] or y + h > reference.shape[0]:
        return np.array([np.nan, np.nan])
    a = reference[y - h : y + h, x - h : x + h].astype(np.float64)
    b = registered[y - h : y + h, x - h : x + h].astype(np.float64)
    win = cv2.createHanningWindow((2 * h, 2 * h), cv2.CV_64F)
    (dx, dy), response = cv2.phaseCorrelate(a - a.mean(), b - b.mean(), win)
    return np.array([dx, dy]) if response > 0.05 else np.array([np.nan, np.nan])


def deformation_grid(ref_pts: np.ndarray, disp: np.ndarray, size: int, step: int, smoothing: float = 1.0) -> np.ndarray:
    """Thin-plate RBF of displacements at ref_pts, sampled on a coarse grid (size//step+1)^2 x 2 (LR px)."""
    g = np.arange(0, size + step, step, dtype=np.float64)
    gx, gy = np.meshgrid(g, g)
    rbf = RBFInterpolator(ref_pts, disp, kernel="thin_plate_spline", smoothing=smoothing, degree=1)
    return rbf(np.column_stack([gx.ravel(), gy.ravel()])).reshape(len(g), len(g), 2)


def dense_field(grid: np.ndarray, step: int, size: int) -> np.ndarray:
    """Upsample a coarse deformation grid to a dense size x size x 2 field (bilinear)."""
    xs = np.arange(size, dtype=np.float32) / step
    mx, my = np.meshgrid(xs, xs)
    out = np.empty((size, size, 2), np.float32)
    for k in range(2):
        out[..., k] = cv2.remap(grid[..., k].astype(np.float32), mx, my, cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
    return out


def estimate_deformation(
    registered: np.ndarray,
    reference: np.ndarray,
    min_radius: int,
    max_radius: int,
    min_circles: int = 3,
    max_shift: float = 6.0,
    step: int = 8,
    anchors: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, dict]:
    """Deformation grid d (LR px) such that corrected(p) = registered(p + d(p)); raises when too few circles."""
    if registered.shape != reference.shape:
        raise CalibrationError(f"registered view {registered.shape} and reference {reference.shape} differ in size")
    merge = max(2.0, 0.5 * min_radius)
    c_reg = part_centres(detect_circles(registered, min_radius, max_radius), merge)
    c_ref = part_centres(detect_circles(reference, min_radius, max_radius), merge)
    ref_m, reg_m = match_points(c_ref, c_reg, max_shift)
    info = {"circles_reference": int(len(c_ref)), "circles_webcam": int(len(c_reg)), "matched": int(len(ref_m))}
    if len(ref_m) < min_circles:
        raise CalibrationError(
            f"too few circles for the deformation map: {len(ref_m)} matched part centres "
            f"(reference {len(c_ref)}, webcam {len(c_reg)}; need {min_circles}); "
            "build ring parts, widen the radius range, or register with the homography only"
        )
    disp = np.array([patch_shift(reference, registered, c, int(2.2 * max_radius)) for c in ref_m])
    ok = np.isfinite(disp).all(axis=1) & (np.linalg.norm(np.nan_to_num(disp, nan=1e9), axis=1) <= max_shift)
    ref_m, disp = ref_m[ok], disp[ok]
    info["matched"] = int(len(ref_m))
    if len(ref_m) < min_circles:
        raise CalibrationError(f"too few circles for the deformation map: only {len(ref_m)} part patches correlate "
                               f"(need {min_circles})")
    info["mean_shift_px"] = float(np.linalg.norm(disp, axis=1).mean())
    if anchors is not None and len(anchors[0]):  # fiducials: known residuals of the homography fit pin the corners
        ref_m = np.vstack([ref_m, np.asarray(anchors[0], dtype=np.float64).reshape(-1, 2)])
        disp = np.vstack([disp, np.asarray(anchors[1], dtype=np.float64).reshape(-1, 2)])
    grid = deformation_grid(ref_m, disp, registered.shape[0], step, smoothing=float(len(ref_m)) * 0.1)
    info["points"] = np.round(ref_m, 3).tolist()
    info["shifts"] = np.round(disp, 3).tolist()
    return grid, info
