"""Flat-field / vignetting correction: a smooth polynomial gain fitted to a uniform powder layer."""

from __future__ import annotations

import cv2
import numpy as np

from calib.errors import CalibrationError


def _design(xs: np.ndarray, ys: np.ndarray, degree: int) -> np.ndarray:
    """2-D polynomial terms x^i y^j (i + j <= degree) of normalised coordinates in [-1, 1]."""
    return np.column_stack([xs**i * ys**j for i in range(degree + 1) for j in range(degree + 1 - i)])


def _norm(size: int, n: int) -> np.ndarray:
    """n sample positions across an image of `size` pixels, normalised to [-1, 1]."""
    return (np.arange(n) + 0.5) / n * 2 - 1 if size else np.zeros(0)


def fit_flat(img: np.ndarray, degree: int = 4, iterations: int = 4, clip_sigma: float = 2.5) -> np.ndarray:
    """Polynomial coefficients of the smooth illumination of a uniform powder image (parts/dots down-weighted)."""
    if img.ndim != 2 or min(img.shape) < 16:
        raise CalibrationError(f"flat-field fit needs a mono image of at least 16x16, got {img.shape}")
    k = max(1, min(img.shape) // 64)
    small = cv2.resize(img.astype(np.float32), (img.shape[1] // k, img.shape[0] // k), interpolation=cv2.INTER_AREA)
    small = cv2.medianBlur(small, 5)
    ys, xs = np.meshgrid(_norm(img.shape[0], small.shape[0]), _norm(img.shape[1], small.shape[1]), indexing="ij")
    A, b = _design(xs.ravel(), ys.ravel(), degree), small.ravel().astype(np.float64)
    keep = b > 0
    coef = np.zeros(A.shape[1])
    for _ in range(iterations):
        coef, *_ = np.linalg.lstsq(A[keep], b[keep], rcond=None)
        r = b - A @ coef
        s = r[keep].std()
        keep = np.abs(r) < clip_sigma * max(s, 1e-6)
        if keep.sum() < A.shape[1] * 4:
            raise CalibrationError("flat-field fit: too few uniform powder pixels (is this a powder layer?)")
    return coef


def surface(coef: np.ndarray, shape: tuple[int, int], degree: int) -> np.ndarray:
    """Evaluate the illumination polynomial over an image of `shape`."""
    ys, xs = np.meshgrid(_norm(shape[0], shape[0]), _norm(shape[1], shape[1]), indexing="ij")
    return (_design(xs.ravel(), ys.ravel(), degree) @ coef).reshape(shape)


def gain_map(coef: np.ndarray, shape: tuple[int, int], degree: int) -> np.ndarray:
    """Per-pixel gain that flattens the illumination to its mean (float32)."""
    s = surface(coef, shape, degree)
    if s.min() <= 0:
        raise CalibrationError("flat-field surface is not positive everywhere (fit to a dark or empty image?)")
    return (s.mean() / s).astype(np.float32)


def uniformity(img: np.ndarray) -> float:
    """Relative spread (std / mean) of the smooth component of an image: 0 for perfectly flat lighting."""
    k = max(1, min(img.shape) // 32)
    small = cv2.resize(img.astype(np.float32), (img.shape[1] // k, img.shape[0] // k), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(cv2.medianBlur(small, 5), (0, 0), 2)
    return float(small.std() / max(small.mean(), 1e-6))
