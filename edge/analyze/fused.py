"""The freshly fused area of a layer image as a two-class problem that the image calibrates itself.

Two local features, both in robust sigmas of the image: brightness (a median first, so the bright specks on fused
walls do not lift it, then a Gaussian) and roughness (log of the Gaussian mean of the fine high-pass energy). Fused
metal departs from powder in either, with a sign that depends on the printer's light (darker and rougher in the
melt photographs, darker and smoother in the sim). Pixels with strong evidence seed the fused class, plainly
powder-like pixels seed the powder class; a linear discriminant (class means, pooled covariance) is refitted on its
own labels a few times, and a pixel is fused when it lies on the fused side of the midpoint between the class means
and is connected to pixels clearly off the powder (hysteresis).
Both features are symmetric local averages, so the midpoint sits on the true edge: no dilation bias. Components that
never reach the fused class mean (faint earlier layers showing through fresh powder, shadows) and components that are
thin along most of their length at the scale of a plate edge or fixture are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from edge.analyze import morph
from edge.analyze.config import AnalyzeConfig


@dataclass(frozen=True)
class TwoClass:
    """A fitted fused/powder discriminant: projection weights, decision level and the class means' projections."""

    w: np.ndarray
    level: float
    fused_mean: float
    powder_mean: float

    def separation(self) -> float:
        """Distance between the class means along the projection (> 0)."""
        return abs(self.fused_mean - self.powder_mean)


def _robust_z(x: np.ndarray) -> np.ndarray:
    """(x - median) / (1.4826 MAD) over the whole image (the powder is the larger class)."""
    med = float(np.median(x))
    return ((x - med) / max(1.4826 * float(np.median(np.abs(x - med))), 1e-9)).astype(np.float32)


def features(corr: np.ndarray, s: float, cfg: AnalyzeConfig) -> np.ndarray:
    """(h, w, 2) brightness and roughness of a flat-field corrected image, in robust sigmas; s = pixel scale."""
    c = corr.astype(np.float32)
    k = max(3, int(2 * round(cfg.fused_median_px * s) + 1))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)) > 0
    bright = cv2.GaussianBlur(ndimage.median_filter(c, footprint=disk), (0, 0), cfg.fused_smooth_px * s)
    hp = np.abs(c - cv2.GaussianBlur(c, (0, 0), 1.0))
    rough = np.log(cv2.GaussianBlur(hp, (0, 0), cfg.fused_texture_px * s) + 1e-4)
    return np.stack([_robust_z(bright), _robust_z(rough)], axis=-1)


def polarity(z: np.ndarray) -> int:
    """-1 when the feature's low tail (below -3 sigma) is heavier than its high tail, else +1."""
    return -1 if float(np.mean(z < -3)) >= float(np.mean(z > 3)) else 1


def fit_two_class(f: np.ndarray, seed_sigma: float, iters: int = 3, valid: np.ndarray | None = None) -> TwoClass | None:
    """Self-trained linear discriminant: seeds where either feature departs from powder by seed_sigma (fused) or by
    less than 1 sigma (powder), then refits on its own labels; None when there is no fused evidence."""
    valid = np.ones(f.shape[:2], bool) if valid is None else valid
    pols = [polarity(f[..., k][valid]) for k in range(f.shape[-1])]
    evidence = np.max([p * f[..., k] for k, p in enumerate(pols)], axis=0)
    fg, bg = valid & (evidence > seed_sigma), valid & (evidence < 1.0)
    model = None
    for _ in range(iters):
        if fg.sum() < 16 or bg.sum() < 16:
            return model
        mf, mb = f[fg].mean(axis=0), f[bg].mean(axis=0)
        cov = 0.5 * (np.cov(f[fg].T) + np.cov(f[bg].T)) + 1e-6 * np.eye(f.shape[-1])
        w = np.linalg.solve(cov, mf - mb)
        pf, pb = float(mf @ w), float(mb @ w)
        model = TwoClass(w, 0.5 * (pf + pb), pf, pb)
        proj = f @ w
        fg, bg = valid & (proj > model.level), valid & (proj <= model.level)
    return model


def _powder_stats(proj: np.ndarray, powder: np.ndarray) -> tuple[float, float]:
    """(median, robust sigma) of the projection over powder pixels."""
    v = proj[powder] if powder.any() else proj.ravel()
    med = float(np.median(v))
    return med, max(1.4826 * float(np.median(np.abs(v - med))), 1e-9)


def clean_components(mask: np.ndarray, proj: np.ndarray, level: float, s: float, cfg: AnalyzeConfig) -> np.ndarray:
    """Fill holes that are small or not powder, drop small components and those whose summed evidence is not
    significant."""
    pmed, noise = _powder_stats(proj, ~mask)
    holes = ndimage.binary_fill_holes(mask) & ~mask
    lab, n = ndimage.label(holes)
    if n:
        # a hole is powder (a ring's inside) when it reads like powder; a patch of weaker scan texture inside a solid
        # part lies between the classes and is part of it
        fill = np.bincount(lab.ravel()) < (cfg.fused_hole_px * s) ** 2
        fill[1:] |= np.asarray(ndimage.median(proj, lab, np.arange(1, n + 1))) > pmed + cfg.fused_powder_sigma * noise
        fill[0] = False
        mask = mask | fill[lab]
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    excess = np.asarray(ndimage.mean(proj, lab, np.arange(1, n + 1))) - level
    # mean excess over the decision level in powder sigmas times the square root of its independent samples (area
    # over the correlation area of the features): spatter clusters are small and barely above the level
    z = excess / noise * np.sqrt(sizes[1:] / (2.0 * cfg.fused_smooth_px * s) ** 2)
    keep = np.zeros(n + 1, bool)
    keep[1:] = (sizes[1:] >= cfg.min_part_area_px * s * s) & (z >= cfg.fused_min_significance)
    return keep[lab]


def fused_mask(
    gray: np.ndarray,
    flat: np.ndarray,
    s: float,
    cfg: AnalyzeConfig,
    offset: float = 0.0,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, TwoClass | None]:
    """Mask of the fused area (offset shifts the decision level by that many quarters of the class separation: < 0
    grows, > 0 shrinks), the projection map and the model; valid: pixels that may be fused (e.g. not the corners)."""
    f = features(gray / np.maximum(flat, 1e-3), s, cfg)
    model = fit_two_class(f, cfg.fused_seed_sigma, valid=valid)
    if model is None:
        return np.zeros(gray.shape, bool), np.zeros(gray.shape, np.float32), None
    sign = 1.0 if model.fused_mean > model.powder_mean else -1.0
    proj = sign * (f @ model.w).astype(np.float32)
    model = TwoClass(model.w * sign, sign * model.level, sign * model.fused_mean, sign * model.powder_mean)
    # hysteresis: a fused region holds pixels at least fused_powder_sigma of the powder's own spread off the powder
    # (with a small fused class the classes' midpoint can sink into the powder's texture), and grows from them to the
    # midpoint between the classes, where the level crossing sits on the true edge; a faint part whose pixels mostly
    # read between the two levels is kept whole instead of being cut down to its strongest specks
    pmed, noise = _powder_stats(proj, proj <= model.level if valid is None else valid & (proj <= model.level))
    shift = 0.25 * offset * model.separation()
    level = max(model.level, pmed + cfg.fused_powder_sigma * noise) + shift
    mask = hysteresis(proj, min(model.level + shift, level), level)
    if valid is not None:
        mask &= valid
    return clean_components(mask, proj, level, s, cfg), proj, model


def hysteresis(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Pixels above low that are connected (8-neighbours) to a pixel above high."""
    lab, n = ndimage.label(x > low, structure=np.ones((3, 3), bool))
    if n == 0:
        return np.zeros(x.shape, bool)
    keep = np.zeros(n + 1, bool)
    keep[np.unique(lab[x > high])] = True
    keep[0] = False
    return keep[lab]


def evidence_map(proj: np.ndarray, model: TwoClass | None, powder: np.ndarray) -> np.ndarray:
    """The projection in robust sigmas of the powder's own spread along it (parts high, powder about 0)."""
    if model is None or not powder.any():
        return np.zeros(proj.shape, np.float32)
    med = float(np.median(proj[powder]))
    sig = max(1.4826 * float(np.median(np.abs(proj[powder] - med))), 1e-9)
    return ((proj - med) / sig).astype(np.float32)


def segment_classifier(
    gray: np.ndarray,
    s: float,
    cfg: AnalyzeConfig,
    expected_area_px: float | None = None,
    region: np.ndarray | None = None,
):
    """Segmentation by the self-fitted classifier; with an expected area the decision level is bisected (within +-1
    class separation) until the area is within [area_low, area_high] of it or stops changing (then failed); with a
    region (expected parts), only components touching it are kept."""
    from edge.analyze.segment import Segmentation, corner_mask, flat_field

    valid = ~corner_mask(gray.shape, cfg.ignore_corner_frac)
    flat = flat_field(gray, cfg)
    offset, lo, hi, seen, failed, it = 0.0, -4.0, 4.0, [], False, 0
    for it in range(1, cfg.max_prompt_iterations + 1):  # noqa: B007 - `it` is read after the loop
        mask, proj, model = fused_mask(gray, flat, s, cfg, offset, valid)
        if region is not None and mask.any():
            lab, _ = ndimage.label(mask)
            touch = np.unique(
                lab[morph.dilate(region, iterations=max(1, int(round(cfg.dilation_px * s)))) & (lab > 0)]
            )
            mask = np.isin(lab, touch[touch > 0])
        if not expected_area_px:
            break
        ratio = mask.sum() / float(expected_area_px)
        seen.append(int(mask.sum()))
        if cfg.area_low <= ratio <= cfg.area_high:
            break
        if len(seen) >= 3 and len(set(seen[-3:])) == 1:
            failed = True
            break
        lo, hi = (lo, offset) if ratio < cfg.area_low else (offset, hi)  # bisection: a lower level grows the mask
        offset = 0.5 * (lo + hi)
    else:
        failed = bool(expected_area_px)
    labels, k = ndimage.label(mask)
    areas = tuple(int(a) for a in ndimage.sum_labels(mask, labels, range(1, k + 1))) if k else ()
    pol = -1 if model is None or model.w[0] < 0 else 1  # brightness weight: fused darker (-1) or brighter (+1)
    return Segmentation(mask, labels, it, failed, pol, (), areas, evidence_map(proj, model, valid & ~mask))
