"""Per-layer anomaly detectors on a flat-field-corrected layer image; each returns AnomalyFlags (docs/mqtt.md)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from edge.analyze import morph
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
    axis: int = 0  # recoater travel axis (0: along image y, streaks vertical; 1: along x)


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


def detect_laser(gray: np.ndarray, cfg: AnalyzeConfig, s: float) -> list[AnomalyFlag]:
    """Saturated bright region large enough to be the laser spot / plume or glare."""
    sat = gray >= cfg.laser_saturation
    if not sat.any():
        return []
    lab, n = ndimage.label(morph.closing(sat, iterations=2))
    sizes = ndimage.sum_labels(sat, lab, range(1, n + 1))
    k = int(np.argmax(sizes))
    min_area = cfg.laser_min_area_px * s * s
    if sizes[k] < min_area:
        return []
    sl = ndimage.find_objects(lab)[k]
    return [_flag("laser_in_image", 2 * cfg.critical_score, sl, int(sizes[k]), cfg)]


def _gabor(period: float) -> tuple[np.ndarray, np.ndarray]:
    """Even and odd Gabor kernels along one axis (envelope sigma = one period).

    Scaled so a sinusoid of amplitude A reads A."""
    half = int(np.ceil(3 * period))
    t = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-0.5 * (t / period) ** 2)
    norm = g.sum() / 2.0
    return g * np.cos(2 * np.pi * t / period) / norm, g * np.sin(2 * np.pi * t / period) / norm


def band_energy(z: np.ndarray, weight: np.ndarray, axis: int, periods: np.ndarray, width: int,
                purity: float) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the largest amplitude of a periodic pattern along `axis` (periods in px) in the profile averaged
    across `width` px (coherent across the blade): over all periods (the noise reference), and over periods whose
    share of the local profile variance is at least `purity` (a sinusoid has 1; a single bump or step spreads over
    many periods; 0 where none is). Weight-0 pixels read as the powder level (0)."""
    import cv2

    zf = np.where(weight > 0, z, 0.0).astype(np.float32)
    ksize = (width, 1) if axis == 0 else (1, width)  # cv2 sizes are (cols, rows): average across the travel
    prof = cv2.blur(zf, ksize, borderType=cv2.BORDER_REFLECT)
    best = np.zeros(z.shape, np.float32)
    pure = np.zeros(z.shape, np.float32)
    shape = (-1, 1) if axis == 0 else (1, -1)
    for p in periods:
        even, odd = _gabor(float(p))
        re = cv2.filter2D(prof, -1, even.reshape(shape).astype(np.float32), borderType=cv2.BORDER_REFLECT)
        im = cv2.filter2D(prof, -1, odd.reshape(shape).astype(np.float32), borderType=cv2.BORDER_REFLECT)
        amp2 = re * re + im * im
        g = _gauss1d(float(p)).reshape(shape).astype(np.float32)
        mean = cv2.filter2D(prof, -1, g, borderType=cv2.BORDER_REFLECT)
        var = cv2.filter2D((prof - mean) ** 2, -1, g, borderType=cv2.BORDER_REFLECT)
        ok = amp2 >= 2.0 * purity * var  # a sinusoid of amplitude A has variance A^2 / 2
        amp = np.sqrt(amp2)
        best = np.maximum(best, amp)
        pure = np.where(ok, np.maximum(pure, amp), pure)
    return best, pure


def _gauss1d(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian kernel."""
    half = int(np.ceil(3 * sigma))
    t = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-0.5 * (t / sigma) ** 2)
    return g / g.sum()


def detect_hopping(ctx: LayerContext) -> list[AnomalyFlag]:
    """Recoater hopping (chatter): bands across the travel that repeat with a period of about 1-3 mm along it and are
    coherent over a blade width; found as local Gabor energy at those periods (where the pattern is periodic, not a
    single blob or edge), in robust sigmas of the powder's."""
    import cv2

    cfg, s = ctx.cfg, ctx.s
    axis = ctx.axis  # bands vary along the travel axis
    lo, hi = (max(3.0, p * s) for p in cfg.hopping_period_px)
    periods = np.geomspace(lo, max(hi, lo), max(2, int(np.ceil(np.log(max(hi, lo) / lo) / np.log(1.35))) + 1))
    width = max(3, int(cfg.hopping_width_px * s))
    energy, pure = band_energy(ctx.z, ctx.powder, axis, periods, width, cfg.hopping_purity)
    win = (width, int(2 * hi) | 1) if axis == 0 else (int(2 * hi) | 1, width)
    valid = cv2.blur(ctx.powder.astype(np.float32), win) > 0.8  # the whole analysis window lies on powder
    if valid.sum() < 16:
        return []
    med, sig = robust_sigma(energy[valid])
    ze = np.where(valid, (pure - med) / sig, 0.0)
    hit = ze > cfg.hopping_contrast
    lab, n = ndimage.label(hit)
    flags = []
    min_area = width * 2 * lo  # a blade width by two of the shortest periods
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        comp = lab[sl] == i
        area = int(comp.sum())
        if area < min_area or sl[1 - axis].stop - sl[1 - axis].start < width:
            continue  # bands a blade leaves span at least a blade width across the travel
        score = float(ze[sl][comp].max()) / cfg.hopping_contrast
        flags.append(_flag("recoater_hopping", score, sl, area, cfg))
    return flags


def smoothed_z(ctx: LayerContext) -> np.ndarray:
    """z smoothed at the blob scale (so single noisy pixels do not count)."""
    return morph.gaussian(ctx.z, max(0.5, 0.7 * ctx.s))


def detect_spatter(ctx: LayerContext, zs: np.ndarray) -> list[AnomalyFlag]:
    """Spatter: many small particles on the powder (debris and larger marks come from the powder judge)."""
    cfg, s = ctx.cfg, ctx.s
    small = max(1.0, cfg.spatter_max_area_px * s * s)
    n_spatter, spatter_sl = 0, []
    for sign in (1, -1):
        hit = (sign * zs > 0.875 * cfg.blob_contrast) & ctx.powder  # particle extent; its peak must reach blob_contrast
        lab, n = ndimage.label(hit)
        if n == 0:
            continue
        areas = np.bincount(lab.ravel())
        peaks = np.full(n + 1, -np.inf)  # per-label maximum (ndimage.maximum sorts the whole image: 10x slower)
        np.maximum.at(peaks, lab[hit], sign * zs[hit])
        peaks = peaks[1:]
        for i, sl in enumerate(ndimage.find_objects(lab), start=1):
            if areas[i] <= small and peaks[i - 1] > cfg.blob_contrast:
                n_spatter += 1
                spatter_sl.append(sl)
    density = n_spatter / max(ctx.powder.sum() / (s * s), 1.0) * 1e6  # particles per powder megapixel at ref size
    if density >= cfg.spatter_per_mpx:
        return [_flag("spatter", density / cfg.spatter_per_mpx, _union_slices(spatter_sl), n_spatter, cfg)]
    return []


def detect_elevation(ctx: LayerContext, zs: np.ndarray, reference: np.ndarray | None) -> list[AnomalyFlag]:
    """Super-elevation: bright (proud, reflective) material on a part, mostly inside its outline (fused metal is
    normally darker than powder; bright material outside the outline is a geometry deviation instead)."""
    cfg, s = ctx.cfg, ctx.s
    inside = reference if reference is not None and reference.any() else ctx.parts
    if not inside.any():
        return []
    m = max(1, int(round(cfg.elevation_rim_px * s)))
    zone = morph.dilate(inside, iterations=m)
    hit = morph.opening((zs > cfg.elevation_contrast) & zone, iterations=1)
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


def outside_level(ctx: LayerContext, outside: np.ndarray) -> tuple[np.ndarray, float]:
    """Smoothed brightness of `outside` pixels (z units), averaged over outside pixels only so the part does not bleed
    in, and the robust sigma of that smoothed level on powder (its noise)."""
    sig = max(0.7, ctx.cfg.geometry_smooth_px * ctx.s)
    den = morph.gaussian(outside.astype(np.float64), sig)
    ok = outside & (den > 0.2)
    level = np.where(ok, morph.gaussian(np.where(outside, ctx.z, 0.0), sig) / np.maximum(den, 1e-6), 0.0)
    ref = ctx.powder & ok
    if ref.sum() < 16:
        return np.zeros(outside.shape), 1.0
    _, sd = robust_sigma(level[ref])
    return level, sd


def detect_additions(ctx: LayerContext, expected: np.ndarray, explained: np.ndarray | None = None) -> list[AnomalyFlag]:
    """Material outside the expected (CAD) outline, judged on the image rather than on the segmentation: regions
    attached to a part, beyond the boundary tolerance, that are brighter than powder (swollen, proud metal) or about as
    dark as the part itself, by geometry_region sigmas over their extent and geometry_evidence at their peak, and reach
    geometry_min_depth_px or more out of the outline. Dark material counts only beyond geometry_dark_band_px, where the
    darker rim and spatter halo of every part have faded. Regions another flag explains (spreading, hopping bands,
    streaks) are left out."""
    from skimage.morphology import disk

    cfg, s = ctx.cfg, ctx.s
    if expected is None or not expected.any():
        return []
    tol = max(1, int(round(cfg.geometry_tol_px * s)))
    grown = morph.dilate(expected, iterations=tol)
    margin = max(1, int(round(cfg.part_margin_px * s)))
    outside = ~grown & morph.dilate(ctx.powder, iterations=margin + 1)
    if explained is not None:
        outside &= ~explained
    level, sd = outside_level(ctx, outside)
    inner = morph.erode(expected, iterations=tol)
    part_level = float(np.median(ctx.z[inner])) if inner.sum() >= 16 else 0.0
    # hysteresis: a region is where the level departs by geometry_region sigmas, and it must peak at geometry_evidence
    signed = level / sd
    material, core = signed > cfg.geometry_region, signed > cfg.geometry_evidence
    dist = ndimage.distance_transform_edt(~expected)  # px from the expected outline
    band = max(tol, int(round(cfg.geometry_dark_band_px * s)))
    dark = np.zeros_like(material)
    # dark parts: a dark addition must look like them (80 % of their level)
    if part_level < -cfg.geometry_evidence * sd:
        dark = (signed < -cfg.geometry_region) & (level < 0.5 * part_level) & (dist > band)
        material |= dark
        core |= (signed < -cfg.geometry_evidence) & (level < 0.8 * part_level) & (dist > band)
    cand = morph.opening(material & outside, structure=disk(max(1, int(round(0.5 * cfg.geometry_smooth_px * s)))))
    if not cand.any():
        return []
    min_depth = max(2.0, cfg.geometry_min_depth_px * s)
    ref_lab, _ = ndimage.label(expected)
    big = np.bincount(ref_lab.ravel()) >= np.pi * min_depth**2  # bulges grow out of parts, not out of specks
    big[0] = False
    near = morph.dilate(big[ref_lab], iterations=tol + 1)  # just beyond the tolerance band
    near_dark = morph.dilate(big[ref_lab], iterations=band + 1)
    lab, n = ndimage.label(cand)
    flags = []
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        comp = lab[sl] == i
        if not ((near[sl] & comp).any() or (near_dark[sl] & dark[sl] & comp).any()):
            continue  # not attached to a part: debris or a stray part, not a deviation of this one
        depth = float(dist[sl][comp].max())
        # a bulge reaching d out is a cap about as wide as deep: 1.6 d^2 for a half disk, half that is the floor (a
        # thin finger of bright grain is not a swelling); a dark one a full disk of the minimum depth (spatter is
        # smaller)
        is_dark = dark[sl][comp].mean() > 0.5
        min_area = max(0.5 * depth**2, min_depth**2 * (np.pi if is_dark else 1.0))
        if depth < min_depth or comp.sum() < min_area or not core[sl][comp].any():
            continue  # too shallow, too small for its depth or too faint
        if is_dark and np.median(level[sl][comp]) > 0.8 * part_level:
            continue  # fused material is dark throughout; a dark powder blotch only at its centre
        flags.append(_flag("part_geometry_deviation", depth / min_depth, sl, int(comp.sum()), cfg))
    return flags


def detect_geometry(parts: np.ndarray, reference: np.ndarray | None, cfg: AnalyzeConfig, s: float,
                    evidence: np.ndarray | None = None,
                    cad: bool = True, additions: bool = True) -> list[AnomalyFlag]:
    """Part geometry deviation against a reference mask (expected or previous layer): compact added or missing
    regions beyond the boundary tolerance. With `evidence` (the segmentation's parts-high feature map) each
    region must agree with the image: an addition looks like fused material, a dent looks like powder."""
    if reference is None or not reference.any():
        return []
    from skimage.morphology import disk

    tol = max(1, int(round(cfg.geometry_tol_px * s)))
    grown, shrunk = morph.dilate(reference, iterations=tol), morph.erode(reference, iterations=tol)
    min_r = max(1.0, cfg.geometry_min_radius_px * s)
    added, inner_level, halo = parts, None, 0
    if evidence is not None:
        inner_level = float(np.median(evidence[shrunk])) if shrunk.any() else None
    flags = []
    for missing, cand in ((False, added & ~grown), (True, shrunk & ~parts)):
        if not missing and not additions:
            continue
        opened = morph.opening(cand, structure=disk(max(1, int(min_r))))
        if not missing:  # a bulge grows out of an existing part; a separate new part is not a deviation
            lab0, _ = ndimage.label(opened)
            ref_lab, nref = ndimage.label(reference)
            # parts, not specks
            big = np.concatenate([[False], np.bincount(ref_lab.ravel())[1:] >= 4 * np.pi * min_r**2])[ref_lab]
            ring = morph.dilate(big, iterations=tol + 2)
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
            # equivalent radius beyond the tolerance band
            score = (np.sqrt(area / np.pi) + (halo if not missing else 0)) / min_r
            if score >= 1.0:
                flags.append(_flag("part_geometry_deviation", score, sl, area, cfg))
    a_ref, a_now = float(reference.sum()), float(parts.sum())
    rel = abs(a_now - a_ref) / a_ref
    if not flags and evidence is None and rel > cfg.geometry_area_tol:
        ys, xs = np.nonzero(reference | parts)
        sl = (slice(int(ys.min()), int(ys.max()) + 1), slice(int(xs.min()), int(xs.max()) + 1))
        flags.append(_flag("part_geometry_deviation", rel / cfg.geometry_area_tol, sl, int(abs(a_now - a_ref)), cfg))
    return flags


def detect_sr_uncertain(std: np.ndarray | None, cfg: AnalyzeConfig,
                        s: float) -> tuple[list[AnomalyFlag], np.ndarray | None]:
    """Regions of high SR per-pixel spread: one flag each, and the untrusted mask that suppresses texture flags."""
    if std is None:
        return [], None
    high = morph.closing(np.asarray(std, dtype=np.float64) > cfg.sr_std_high, iterations=2)
    lab, n = ndimage.label(high)
    min_area = max(4.0, cfg.sr_uncertain_min_area_px * s * s)
    flags = []
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        area = int((lab[sl] == i).sum())
        if area >= min_area:
            score = float(np.asarray(std)[sl][lab[sl] == i].mean()) / cfg.sr_std_high
            # info: a statement about the SR image, not the print; it never changes the layer's state
            flags.append(replace(_flag("sr_uncertain", score, sl, area, cfg), severity="info"))
    return flags, high


def box_mask(shape: tuple[int, int], flags: list[AnomalyFlag], pad: int) -> np.ndarray:
    """True inside the (padded) boxes of the flags."""
    m = np.zeros(shape, dtype=bool)
    for f in flags:
        x, y, w, h = f.bbox
        m[max(0, y - pad) : y + h + pad, max(0, x - pad) : x + w + pad] = True
    return m


def drop_overlapping(flags: list[AnomalyFlag], kinds: tuple[str, ...], by: list[AnomalyFlag],
                     pad: int) -> list[AnomalyFlag]:
    """Drop flags of `kinds` whose box touches a box of `by` (e.g. debris along a streak)."""
    out = []
    for f in flags:
        x, y, w, h = f.bbox
        hit = f.type in kinds and any(
            x < b.bbox[0] + b.bbox[2] + pad and b.bbox[0] - pad < x + w and y < b.bbox[1] + b.bbox[3] + pad
            and b.bbox[1] - pad < y + h for b in by
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
