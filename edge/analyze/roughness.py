"""Surface roughness from layer masks: polar contour profiles r(theta), low-pass fluctuation, Ra / Rq / Rz (ISO 4287).

Rz here is the ISO 4287 maximum height of the profile (highest peak minus deepest valley) within each of
5 equal sampling lengths, averaged over the 5 (the usual Rz of ISO 4287/4288, not the old ten-point Rz(JIS)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from edge.analyze.volume import largest_contour

N_THETA = 360


def polar_profile(mask: np.ndarray, n_theta: int = N_THETA) -> np.ndarray | None:
    """Radius (px) of the largest outer contour about the mask centroid on a uniform theta grid, or None."""
    c = largest_contour(mask)
    if c is None or len(c) < 8:
        return None
    cy, cx = ndimage.center_of_mass(mask)
    th = np.arctan2(c[:, 0] - cy, c[:, 1] - cx)
    r = np.hypot(c[:, 0] - cy, c[:, 1] - cx)
    order = np.argsort(th)
    th, r = th[order], r[order]
    grid = np.linspace(-np.pi, np.pi, n_theta, endpoint=False)
    # periodic interpolation; for non-star-shaped contours several radii share a theta: the interpolation averages
    th_ext = np.concatenate([th - 2 * np.pi, th, th + 2 * np.pi])
    r_ext = np.concatenate([r, r, r])
    return np.interp(grid, th_ext, r_ext)


def fluctuation(r: np.ndarray, window: int) -> np.ndarray:
    """r minus its circular moving average over `window` samples (the low-pass form)."""
    if window < 1:
        raise ValueError(f"window must be >= 1 sample, got {window}")
    return r - ndimage.uniform_filter1d(r.astype(np.float64), size=window, mode="wrap")


@dataclass(frozen=True)
class Roughness:
    """Ra, Rq, Rz in micrometres."""

    ra_um: float
    rq_um: float
    rz_um: float


def iso_params(h_um: np.ndarray, n_sampling: int = 5) -> Roughness:
    """Ra (mean |h|), Rq (rms h), Rz (mean over n sampling lengths of peak-to-valley) of a profile (mean removed)."""
    h = np.asarray(h_um, dtype=np.float64).ravel()
    if h.size < n_sampling * 2:
        raise ValueError(f"profile too short for {n_sampling} sampling lengths: {h.size} samples")
    h = h - h.mean()
    segs = np.array_split(h, n_sampling)
    rz = float(np.mean([s.max() - s.min() for s in segs]))
    return Roughness(float(np.mean(np.abs(h))), float(np.sqrt(np.mean(h**2))), rz)


def height_map(masks: list[np.ndarray], window: int, pitch_um: float, n_theta: int = N_THETA) -> np.ndarray:
    """(layers, n_theta) fluctuation map in micrometres over the layers where the part exists (NaN elsewhere)."""
    rows = []
    for m in masks:
        r = polar_profile(m, n_theta)
        rows.append(np.full(n_theta, np.nan) if r is None else fluctuation(r, window) * pitch_um)
    return np.array(rows)


def part_roughness(masks: list[np.ndarray], window: int, pitch_um: float) -> Roughness:
    """Ra/Rq/Rz of a part: ISO parameters per layer profile, averaged over layers."""
    hm = height_map(masks, window, pitch_um)
    per = [iso_params(row) for row in hm if np.isfinite(row).all()]
    if not per:
        return Roughness(float("nan"), float("nan"), float("nan"))
    return Roughness(*(float(np.mean([getattr(p, k) for p in per])) for k in ("ra_um", "rq_um", "rz_um")))


def roughness_vs_window(masks: list[np.ndarray], windows: list[int], pitch_um: float) -> dict[int, Roughness]:
    """Roughness of one part for each low-pass window size (samples of the 360-point profile = degrees)."""
    return {w: part_roughness(masks, w, pitch_um) for w in windows}


def plot_roughness_vs_window(curves: dict[str, dict[int, Roughness]], path, title: str = "") -> None:
    """Ra/Rq/Rz against window size, one line per source (HR, SR, bicubic), to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2), dpi=100)
    for ax, key, label in zip(axes, ("ra_um", "rq_um", "rz_um"), ("Ra", "Rq", "Rz"), strict=False):
        for name, curve in curves.items():
            ws = sorted(curve)
            ax.plot(ws, [getattr(curve[w], key) for w in ws], marker="o", label=name)
        ax.set_xlabel("low-pass window (deg)")
        ax.set_ylabel(f"{label} (µm)")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
