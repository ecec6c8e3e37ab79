"""Per-layer anomaly detectors on a flat-field-corrected layer image; each returns AnomalyFlags (DESIGN.md section 4)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from edge.analyze.config import AnalyzeConfig
from edge.messages import AnomalyFlag

TEXTURE_TYPES = ("recoater_streak", "debris", "spatter", "super_elevation")


@dataclass(frozen=True)
class LayerContext:
    """What every detector needs: grey image, corrected image, robust z, powder region, parts, length scale."""

    gray: np.ndarray
    z: np.ndarray  # robust z-score of the flat-field corrected image, statistics from powder pixels
    powder: np.ndarray  # powder pixels (parts and their margin excluded)
    parts: np.ndarray  # part mask
    s: float  # length scale of pixel thresholds
    cfg: AnalyzeConfig


def robust_sigma(x: np.ndarray) -> tuple[float, float]:
    """(median, 1.4826 MAD) of the values."""
    if x.size == 0:
        return 0.0, 1.0
    med = float(np.median(x))
    return med, max(1.4826 * float(np.median(np.abs(x - med))), 1e-6)


def severity(score: float, cfg: AnalyzeConfig) -> str:
    """minor, or critical when the score reaches critical_score (score 1 = at threshold)."""
    return "critical" if score >= cfg.critical_score else "minor"


def _flag(kind: str, score: float, sl: tuple[slice, slice], area: int, cfg: AnalyzeConfig) -> AnomalyFlag:
    """AnomalyFlag from a (rows, cols) slice."""
    ys, xs = sl
    bbox = (int(xs.start), int(ys.start), int(xs.stop - xs.start), int(ys.stop - ys.start))
    return AnomalyFlag(kind, severity(score, cfg), round(float(score), 3), bbox, int(area))


def _union_slices(sls: list[tuple[slice, slice]]) -> tuple[slice, slice]:
    """Bounding slice of several slices."""
    return (
        slice(min(s[0].start for s in sls), max(s[0].stop for s in sls)),
        slice(min(s[1].start for s in sls), max(s[1].stop for s in sls)),
    )


def _line_like(sl: tuple[slice, slice]) -> bool:
    """A long thin box (streaks and scratches, not debris)."""
    h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
    return max(h, w) > 6 * min(h, w)


def detect_laser(gray: np.ndarray, cfg: AnalyzeConfig, s: float) -> list[AnomalyFlag]:
    """Saturated bright region large enough to be the laser spot / plume or glare."""
    sat = gray >= cfg.laser_saturation
    if not sat.any():
        return []
    lab, n = ndimage.label(ndimage.binary_closing(sat, iterations=2))
    sizes = ndimage.sum_labels(sat, lab, range(1, n + 1))
    k = int(np.argmax(sizes))
    min_area = cfg.laser_min_area_px * s * s
    if sizes[k] < min_area:
        return []
    sl = ndimage.find_objects(lab)[k]
    return [_flag("laser_in_image", 2 * cfg.critical_score, sl, int(sizes[k]), cfg)]


def detect_streaks(ctx: LayerContext) -> list[AnomalyFlag]:
    """Recoater streaks: long thin lines along the recoater travel, found on a cross-travel high-pass image."""
    cfg, s = ctx.cfg, ctx.s
    axis = 0 if cfg.recoater_travel == "y" else 1  # streaks run along the travel axis
    z = np.where(ctx.powder, ctx.z, 0.0)
    hp = z - ndimage.gaussian_filter1d(z, max(2.0, 6 * s), axis=1 - axis)
    length = max(5, int(cfg.streak_min_len_frac * z.shape[axis]))
    w = ctx.powder.astype(float)
    num = ndimage.uniform_filter1d(hp, length, axis=axis)
    den = ndimage.uniform_filter1d(w, length, axis=axis)
    line = np.where(den > 0.5, num / np.maximum(den, 1e-6), 0.0)
    med, sig = robust_sigma(line[den > 0.5])
    zl = np.abs(line - med) / sig
    hit = zl > cfg.streak_contrast
    flags = []
    lab, n = ndimage.label(hit)
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        extent = sl[axis].stop - sl[axis].start
        width = sl[1 - axis].stop - sl[1 - axis].start
        if extent < length or width > max(4, 0.05 * z.shape[1 - axis]):
            continue
        score = float(zl[lab == i].max()) / cfg.streak_contrast
        flags.append(_flag("recoater_streak", score, sl, int((lab == i).sum()), cfg))
    return flags


def detect_hopping(ctx: LayerContext) -> list[AnomalyFlag]:
    """Recoater hopping: chatter bands across the travel direction, coherent over a few mm of blade width."""
    cfg, s = ctx.cfg, ctx.s
    axis = 0 if cfg.recoater_travel == "y" else 1  # bands vary along the travel axis
    z = np.where(ctx.powder, ctx.z, 0.0)
    hp = ndimage.gaussian_filter1d(z, max(0.7, 1.5 * s), axis=axis) - ndimage.gaussian_filter1d(z, max(2.0, 12 * s), axis=axis)
    coherent = ndimage.uniform_filter1d(hp, max(3, int(cfg.hopping_width_px * s)), axis=1 - axis)
    energy = np.sqrt(np.maximum(ndimage.uniform_filter1d(coherent**2, max(3, int(cfg.hopping_width_px * s)), axis=axis), 0))
    valid = ndimage.uniform_filter(ctx.powder.astype(float), max(3, int(cfg.hopping_width_px * s))) > 0.8
    med, sig = robust_sigma(energy[valid])
    ze = np.where(valid, (energy - med) / sig, 0.0)
    hit = ze > cfg.hopping_contrast
    lab, n = ndimage.label(hit)
    flags = []
    min_area = (cfg.hopping_width_px * s) ** 2
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        area = int((lab[sl] == i).sum())
        if area < min_area:
            continue
        score = float(ze[sl][lab[sl] == i].max()) / cfg.hopping_contrast
        flags.append(_flag("recoater_hopping", score, sl, area, cfg))
    return flags


def detect_spreading(ctx: LayerContext) -> list[AnomalyFlag]:
    """Incomplete spreading: a large low-frequency region deviating from the powder level."""
    cfg, s = ctx.cfg, ctx.s
    sig = max(2.0, 0.015 * ctx.z.shape[1])
    zl = ndimage.gaussian_filter(np.where(ctx.powder, ctx.z, 0.0), sig)
    wl = ndimage.gaussian_filter(ctx.powder.astype(float), sig)
    m = np.where(wl > 0.3, zl / np.maximum(wl, 1e-6), 0.0)
    med, _ = robust_sigma(m[wl > 0.3])
    dev = np.abs(m - med)  # in pixel-noise sigmas: a real shortfall shifts the mean level by several
    hit = dev > cfg.spreading_contrast
    lab, n = ndimage.label(hit)
    min_area = cfg.spreading_min_area_frac * hit.size
    flags = []
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        area = int((lab[sl] == i).sum())
        if area < min_area:
            continue
        score = float(dev[sl][lab[sl] == i].mean()) / cfg.spreading_contrast * np.sqrt(area / min_area) / 2
        flags.append(_flag("incomplete_spreading", max(score, 1.0), sl, area, cfg))
    return flags


def smoothed_z(ctx: LayerContext) -> np.ndarray:
    """z smoothed at the blob scale (so single noisy pixels do not count)."""
    return ndimage.gaussian_filter(ctx.z, max(0.5, 0.7 * ctx.s))


def detect_debris_spatter(ctx: LayerContext, zs: np.ndarray) -> list[AnomalyFlag]:
    """Debris (larger dark or bright blobs on powder) and spatter (many small particles on powder)."""
    cfg, s = ctx.cfg, ctx.s
    small = max(1.0, cfg.spatter_max_area_px * s * s)
    debris_min = max(2.0, cfg.debris_min_area_px * s * s)
    flags: list[AnomalyFlag] = []
    n_spatter, spatter_sl = 0, []
    for sign in (1, -1):
        lo = min(cfg.blob_contrast, cfg.debris_contrast)
        hit = (sign * zs > lo) & ctx.powder
        lab, n = ndimage.label(hit)
        if n == 0:
            continue
        areas = np.bincount(lab.ravel())
        peaks = ndimage.maximum(sign * zs, lab, range(1, n + 1))
        for i, sl in enumerate(ndimage.find_objects(lab), start=1):
            area = int(areas[i])
            if area <= small:
                if peaks[i - 1] > cfg.blob_contrast:
                    n_spatter += 1
                    spatter_sl.append(sl)
            elif area >= debris_min and not _line_like(sl) and peaks[i - 1] > cfg.debris_contrast:
                score = float(peaks[i - 1]) / cfg.debris_contrast * np.sqrt(area / debris_min)
                flags.append(_flag("debris", score, sl, area, cfg))
    density = n_spatter / max(ctx.powder.sum() / (s * s), 1.0) * 1e6  # particles per powder megapixel at ref size
    if density >= cfg.spatter_per_mpx:
        flags.append(_flag("spatter", density / cfg.spatter_per_mpx, _union_slices(spatter_sl), n_spatter, cfg))
    return flags


def detect_elevation(ctx: LayerContext, zs: np.ndarray, reference: np.ndarray | None) -> list[AnomalyFlag]:
    """Super-elevation: bright (proud, reflective) material on a part, mostly inside its outline (fused metal is
    normally darker than powder; bright material outside the outline is a geometry deviation instead)."""
    cfg, s = ctx.cfg, ctx.s
    inside = reference if reference is not None and reference.any() else ctx.parts
    if not inside.any():
        return []
    m = max(1, int(round(cfg.elevation_rim_px * s)))
    zone = ndimage.binary_dilation(inside, iterations=m)
    hit = ndimage.binary_opening((zs > cfg.elevation_contrast) & zone, iterations=1)
    lab, n = ndimage.label(hit)
    min_area = max(3.0, cfg.elevation_min_area_px * s * s)
    flags = []
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        comp = lab[sl] == i
        area = int(comp.sum())
        if area < min_area or inside[sl][comp].mean() < 0.5:
            continue
        score = float(zs[sl][comp].mean()) / cfg.elevation_contrast * np.sqrt(area / min_area) / 2
        flags.append(_flag("super_elevation", max(score, 1.0), sl, area, cfg))
    return flags


def detect_geometry(parts: np.ndarray, reference: np.ndarray | None, cfg: AnalyzeConfig, s: float, evidence: np.ndarray | None = None,
                    cad: bool = True) -> list[AnomalyFlag]:
    """Part geometry deviation against a reference mask (expected or previous layer): compact added or missing
    regions beyond the boundary tolerance. With `evidence` (the segmentation's parts-high feature map) each
    region must agree with the image: an addition looks like fused material, a dent looks like powder."""
    if reference is None or not reference.any():
        return []
    from skimage.morphology import disk

    tol = max(1, int(round(cfg.geometry_tol_px * s)))
    grown, shrunk = ndimage.binary_dilation(reference, iterations=tol), ndimage.binary_erosion(reference, iterations=tol)
    min_r = max(1.0, cfg.geometry_min_radius_px * s)
    added, inner_level, halo = parts, None, 0
    if evidence is not None:
        inner_level = float(np.median(evidence[shrunk])) if shrunk.any() else None
    flags = []
    for missing, cand in ((False, added & ~grown), (True, shrunk & ~parts)):
        opened = ndimage.binary_opening(cand, structure=disk(max(1, int(min_r))))
        if not missing:  # a bulge grows out of an existing part; a separate new part is not a deviation
            lab0, _ = ndimage.label(opened)
            ref_lab, nref = ndimage.label(reference)
            big = np.concatenate([[False], np.bincount(ref_lab.ravel())[1:] >= 4 * np.pi * min_r**2])[ref_lab]  # parts, not specks
            ring = ndimage.binary_dilation(big, iterations=tol + 2)
            touching = np.unique(lab0[ring & (lab0 > 0)])
            opened = np.isin(lab0, touching[touching > 0])
        if missing and not cad:
            ref_lab, _ = ndimage.label(reference)
            kept = np.asarray(ndimage.mean(parts, ref_lab, range(1, ref_lab.max() + 1)))
            ended = np.concatenate([[False], kept < 0.5])[ref_lab]
            opened &= ~ended
        lab, n = ndimage.label(opened)
        for i, sl in enumerate(ndimage.find_objects(lab), start=1):
            comp = lab[sl] == i
            area = int(comp.sum())
            if evidence is not None:
                level = float(np.median(evidence[sl][comp]))
                if missing and (level > 0.5 * cfg.feature_min or inner_level is None or inner_level < cfg.feature_min):
                    continue
                if not missing and level < cfg.feature_min:
                    continue
            score = (np.sqrt(area / np.pi) + (halo if not missing else 0)) / min_r  # equivalent radius beyond the tolerance band
            if score >= 1.0:
                flags.append(_flag("part_geometry_deviation", score, sl, area, cfg))
    a_ref, a_now = float(reference.sum()), float(parts.sum())
    rel = abs(a_now - a_ref) / a_ref
    if not flags and evidence is None and rel > cfg.geometry_area_tol:
        ys, xs = np.nonzero(reference | parts)
        sl = (slice(int(ys.min()), int(ys.max()) + 1), slice(int(xs.min()), int(xs.max()) + 1))
        flags.append(_flag("part_geometry_deviation", rel / cfg.geometry_area_tol, sl, int(abs(a_now - a_ref)), cfg))
    return flags


def detect_sr_uncertain(std: np.ndarray | None, cfg: AnalyzeConfig, s: float) -> tuple[list[AnomalyFlag], np.ndarray | None]:
    """Regions where the SR per-pixel spread is high: one flag each, and the untrusted mask used to suppress texture flags."""
    if std is None:
        return [], None
    high = ndimage.binary_closing(np.asarray(std, dtype=np.float64) > cfg.sr_std_high, iterations=2)
    lab, n = ndimage.label(high)
    min_area = max(4.0, cfg.sr_uncertain_min_area_px * s * s)
    flags = []
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        area = int((lab[sl] == i).sum())
        if area >= min_area:
            flags.append(_flag("sr_uncertain", float(np.asarray(std)[sl][lab[sl] == i].mean()) / cfg.sr_std_high, sl, area, cfg))
    return flags, high


def box_mask(shape: tuple[int, int], flags: list[AnomalyFlag], pad: int) -> np.ndarray:
    """True inside the (padded) boxes of the flags."""
    m = np.zeros(shape, dtype=bool)
    for f in flags:
        x, y, w, h = f.bbox
        m[max(0, y - pad) : y + h + pad, max(0, x - pad) : x + w + pad] = True
    return m


def drop_overlapping(flags: list[AnomalyFlag], kinds: tuple[str, ...], by: list[AnomalyFlag], pad: int) -> list[AnomalyFlag]:
    """Drop flags of `kinds` whose box touches a box of `by` (e.g. debris along a streak)."""
    out = []
    for f in flags:
        x, y, w, h = f.bbox
        hit = f.type in kinds and any(
            x < b.bbox[0] + b.bbox[2] + pad and b.bbox[0] - pad < x + w and y < b.bbox[1] + b.bbox[3] + pad and b.bbox[1] - pad < y + h for b in by
        )
        if not hit:
            out.append(f)
    return out


def suppress_untrusted(flags: list[AnomalyFlag], untrusted: np.ndarray | None) -> list[AnomalyFlag]:
    """Drop texture-based flags whose box lies mostly where the SR spread is high."""
    if untrusted is None:
        return flags
    out = []
    for f in flags:
        x, y, w, h = f.bbox
        if f.type in TEXTURE_TYPES and w > 0 and h > 0 and untrusted[y : y + h, x : x + w].mean() > 0.5:
            continue
        out.append(f)
    return out
