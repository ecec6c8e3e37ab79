"""Homography fitting with RANSAC and the checks that turn degenerate fits into clear errors."""

from __future__ import annotations

import cv2
import numpy as np

from calib.errors import CalibrationError


def project(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 3x3 homography to Nx2 points."""
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    q = np.column_stack([pts, np.ones(len(pts))]) @ np.asarray(H, dtype=np.float64).T
    if np.any(np.abs(q[:, 2]) < 1e-12):
        raise CalibrationError("homography maps a point to infinity (degenerate)")
    return q[:, :2] / q[:, 2:3]


def _spread_ok(pts: np.ndarray, what: str, min_area_px2: float) -> None:
    """Points must not be (nearly) coincident or collinear."""
    hull = cv2.convexHull(pts.astype(np.float32))
    area = cv2.contourArea(hull)
    if area < min_area_px2:
        raise CalibrationError(
            f"degenerate homography: the {what} points are collinear or too close together (hull area {area:.1f} px^2)"
        )


def fit_homography(src: np.ndarray, dst: np.ndarray, ransac_px: float = 3.0,
                   min_area_px2: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    """Homography src -> dst (Nx2 each, N >= 4) by RANSAC: (H, inlier mask); CalibrationError if degenerate."""
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if len(src) != len(dst):
        raise CalibrationError(f"point lists differ in length ({len(src)} vs {len(dst)})")
    if len(src) < 4:
        raise CalibrationError(f"a homography needs at least 4 point pairs, got {len(src)}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise CalibrationError("point lists contain NaN or infinity")
    _spread_ok(src, "reference", min_area_px2)
    _spread_ok(dst, "webcam", min_area_px2)
    method = cv2.RANSAC if len(src) > 4 else 0
    H, inl = cv2.findHomography(src, dst, method, ransac_px)
    if H is None or not np.isfinite(H).all() or abs(H[2, 2]) < 1e-12:
        raise CalibrationError("degenerate homography: OpenCV found no valid fit for these points")
    H = H / H[2, 2]
    inl = np.ones(len(src), bool) if inl is None else inl.ravel().astype(bool)
    if inl.sum() < 4:
        raise CalibrationError(f"only {int(inl.sum())} of {len(src)} points agree with one homography (need 4)")
    s = np.linalg.svd(H, compute_uv=False)
    if s[-1] / s[0] < 1e-9:
        raise CalibrationError(f"degenerate homography: singular matrix (condition number {s[0] / s[-1]:.2e})")
    # check that the whole src hull maps to a convex, non-flipped region (no mirror, no horizon crossing)
    hull = cv2.convexHull(src.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    w = np.column_stack([hull, np.ones(len(hull))]) @ H.T
    if np.any(w[:, 2] <= 0) and np.any(w[:, 2] >= 0):
        raise CalibrationError("degenerate homography: the plate would cross the camera horizon")
    return H, inl


def reprojection_rms(H: np.ndarray, src: np.ndarray, dst: np.ndarray) -> float:
    """RMS distance (dst units) between H(src) and dst."""
    d = project(H, src) - np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    return float(np.sqrt((d**2).sum(axis=1).mean()))
