"""A frame's own illumination, robust to defects that cover large parts of the plate (zero-config powder judge).

The illumination of a powder bed (lamp fall-off, vignetting) is smooth over the whole plate; a spreading defect (a
short-feed band at the end of the travel, a dark vein, a bare patch) has edges. So the field is modelled as a
low-order surface (tensor Legendre polynomial in log brightness, which makes gains additive) fitted to cell medians
of the plate by Tukey-weighted least squares raised one degree at a time: cells that disagree with the smooth fit (a
band spanning the whole width included) get no weight, and the fit cannot bend into a band with sharp edges the way
a running median or a row profile does.
"""

from __future__ import annotations

import numpy as np

TUKEY_C = 4.685  # Tukey biweight constant (95 % efficiency for Gaussian residuals)


def cell_medians(
    log_g: np.ndarray, roi: np.ndarray, cell: int, min_cover: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median of log_g over roi pixels of each cell x cell block: (values, cell-centre y, cell-centre x); NaN where
    roi covers less than min_cover of the block."""
    h, w = log_g.shape
    ny, nx = max(1, h // cell), max(1, w // cell)
    hh, ww = ny * cell, nx * cell
    blocks = log_g[:hh, :ww].reshape(ny, cell, nx, cell).transpose(0, 2, 1, 3).reshape(ny, nx, -1)
    rb = roi[:hh, :ww].reshape(ny, cell, nx, cell).transpose(0, 2, 1, 3).reshape(ny, nx, -1)
    vals = np.where(rb, blocks, np.nan)
    cover = rb.mean(axis=2)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(vals, axis=2)
    med[cover < min_cover] = np.nan
    yc = (np.arange(ny) + 0.5) * cell
    xc = (np.arange(nx) + 0.5) * cell
    return med.astype(np.float64), yc, xc


def _unit(c: np.ndarray, n: int) -> np.ndarray:
    """Pixel coordinates -> [-1, 1] over an axis of n pixels."""
    return 2.0 * c / max(n, 1) - 1.0


def tukey_weights(e: np.ndarray, floor: float) -> np.ndarray:
    """Tukey biweights of residuals e with a MAD scale (at least floor)."""
    s = max(1.4826 * float(np.median(np.abs(e - np.median(e)))), floor)
    u = e / (TUKEY_C * s)
    return np.where(np.abs(u) < 1.0, (1.0 - u * u) ** 2, 0.0)


def robust_surface(
    yy: np.ndarray, xx: np.ndarray, v: np.ndarray, degree: tuple[int, int], floor: float = 0.01, iters: int = 3
) -> np.ndarray:
    """Tensor Legendre coefficients (degree along y, along x) of a robust fit to samples v at (yy, xx) in [-1, 1]:
    Tukey-weighted least squares raised one degree at a time from a constant, each start weighted by the previous
    fit's residuals, so cells the smooth field cannot reach (a dark band at the end of the plate) never get a say."""
    w = np.ones(v.size)
    coef = np.zeros(1)
    for d in range(max(degree) + 1):
        dy, dx = min(d, degree[0]), min(d, degree[1])
        a = np.polynomial.legendre.legvander2d(yy, xx, (dy, dx))
        for _ in range(iters):
            sw = np.sqrt(w)
            if (w > 0).sum() < 2 * a.shape[1]:
                break
            coef = np.linalg.lstsq(a * sw[:, None], v * sw, rcond=None)[0]
            w = tukey_weights(v - a @ coef, floor)
        coef = coef.reshape(dy + 1, dx + 1)
    return coef


def smooth_illumination(g: np.ndarray, roi: np.ndarray, degree: tuple[int, int] = (4, 4), cell: int = 8) -> np.ndarray:
    """Robust smooth illumination of g over roi: exp of a tensor Legendre surface of degree (along y, along x) fitted
    to log cell medians; the whole image is filled from the fit (float32, > 0)."""
    h, w = g.shape
    log_g = np.log(np.maximum(g.astype(np.float64), 1e-3))
    if roi.sum() < 64:
        roi = np.ones_like(roi, bool)
    cell = max(2, min(cell, min(h, w) // 8))
    med, yc, xc = cell_medians(log_g, roi, cell)
    yy, xx = np.meshgrid(_unit(yc, h), _unit(xc, w), indexing="ij")
    ok = np.isfinite(med)
    dy, dx = degree
    while ok.sum() < 3 * (dy + 1) * (dx + 1) and (dy > 0 or dx > 0):  # too few cells for this degree: lower it
        dy, dx = max(0, dy - 1), max(0, dx - 1)
    if not ok.any():
        return np.full(g.shape, max(float(np.median(g)), 1e-3), np.float32)
    coef = robust_surface(yy[ok], xx[ok], med[ok], (dy, dx))
    ys = _unit(np.arange(h) + 0.5, h)
    xs = _unit(np.arange(w) + 0.5, w)
    surf = np.polynomial.legendre.leggrid2d(ys, xs, coef)
    return np.exp(surf).astype(np.float32)
