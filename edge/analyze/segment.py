"""Part segmentation of a layer image: the paper's Sauvola -> prompts -> mask proposals -> area-adaptive loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from scipy import ndimage

from edge.analyze import morph
from edge.analyze.config import AnalyzeConfig


class SegmentationError(ValueError):
    """An image that cannot be segmented at all (wrong type or shape)."""


@dataclass(frozen=True)
class Proposal:
    """One candidate part mask (full image size) with its confidence and stability scores."""

    mask: np.ndarray
    confidence: float
    stability: float


class MaskProposer(Protocol):
    """Turns point prompts into mask proposals (Segment Anything or the classical proposer)."""

    def set_image(self, image: np.ndarray, feature: np.ndarray) -> None:
        """Prepare for prompts on this uint8 image (feature: parts-high map from `part_feature`)."""

    def propose(self, point_xy: tuple[int, int], box: tuple[int, int, int, int], sensitivity: float) -> list[Proposal]:
        """Proposals for one point prompt inside box (x0, y0, x1, y1); sensitivity > 0 grows masks."""


def corner_mask(shape: tuple[int, int], frac: float) -> np.ndarray:
    """True in the four corner squares (side frac x image side) where registration marks sit."""
    m = np.zeros(shape, dtype=bool)
    if frac <= 0:
        return m
    ch, cw = int(round(frac * shape[0])), int(round(frac * shape[1]))
    for ys in (slice(0, ch), slice(shape[0] - ch, shape[0])):
        for xs in (slice(0, cw), slice(shape[1] - cw, shape[1])):
            m[ys, xs] = True
    return m


def drop_faint(mask: np.ndarray, feature: np.ndarray, min_contrast: float, ring_px: int) -> np.ndarray:
    """Remove components whose median feature does not exceed that of the powder ring around them by min_contrast."""
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    keep = np.zeros(n + 1, dtype=bool)
    h, w = mask.shape
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        ys, xs = sl
        b = (slice(max(0, ys.start - 2 * ring_px), min(h, ys.stop + 2 * ring_px)),
             slice(max(0, xs.start - 2 * ring_px), min(w, xs.stop + 2 * ring_px)))
        comp = lab[b] == i
        ring = morph.dilate(comp, iterations=2 * ring_px) & ~morph.dilate(comp, iterations=ring_px) & ~mask[b]
        inside = float(np.median(feature[b][comp]))
        around = float(np.median(feature[b][ring])) if ring.any() else 0.0
        keep[i] = inside - around >= min_contrast
    return keep[lab]


def drop_small(mask: np.ndarray, min_area: int) -> np.ndarray:
    """Remove connected components smaller than min_area pixels."""
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask.astype(bool)
    sizes = np.bincount(lab.ravel())
    keep = sizes >= min_area
    keep[0] = False
    return keep[lab]


def scale_of(width: int, cfg: AnalyzeConfig) -> float:
    """Length scale of pixel thresholds for an image of this width (or the configured fixed scale)."""
    return cfg.pixel_scale if cfg.pixel_scale else width / float(cfg.ref_width_px)


def as_gray(image: np.ndarray) -> np.ndarray:
    """Validate and convert an image to 2-D float64 grey levels 0..255."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        a = a[..., :3].mean(axis=2)
    if a.ndim != 2 or a.size == 0 or min(a.shape) < 16:
        raise SegmentationError(f"expected a 2-D grey image of at least 16x16 px, got shape {a.shape}")
    if a.dtype == np.uint16:
        a = a / 257.0
    return a.astype(np.float64)


def flat_field(gray: np.ndarray, cfg: AnalyzeConfig, exclude: np.ndarray | None = None) -> np.ndarray:
    """Smooth illumination (vignetting) estimate; pixels in `exclude` (parts) are left out (normalised convolution)."""
    import cv2

    h, w_ = gray.shape
    f = max(1, int(min(h, w_) // 128))  # work on a <= ~256 px grid: the flat field is smooth anyway
    small = cv2.resize(gray, (max(1, w_ // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    wt = (np.ones_like(small) if exclude is None
          else cv2.resize((~exclude).astype(np.float64), small.shape[::-1], interpolation=cv2.INTER_AREA))
    sigma = max(1.0, cfg.flat_sigma_frac * small.shape[1])
    num = morph.gaussian(small * wt, sigma)
    den = morph.gaussian(wt, sigma)
    fallback = morph.gaussian(small, sigma)
    flat = np.where(den > 0.05, num / np.maximum(den, 1e-3), fallback)
    return np.maximum(cv2.resize(flat, (w_, h), interpolation=cv2.INTER_LINEAR), 1.0)


def _robust_z(x: np.ndarray, ref: np.ndarray | None = None) -> np.ndarray:
    """(x - median) / (1.4826 MAD) using the statistics of `ref` pixels (default all)."""
    r = x if ref is None else x[ref]
    if r.size < 16:
        r = x.ravel()
    med = float(np.median(r))
    mad = 1.4826 * float(np.median(np.abs(r - med)))
    return (x - med) / max(mad, 1e-6)


def choose_polarity(corr: np.ndarray, cfg: AnalyzeConfig) -> int:
    """-1 when parts look darker than powder, +1 when brighter (config or the heavier smoothed tail)."""
    if cfg.part_polarity != "auto":
        return -1 if cfg.part_polarity == "dark" else 1
    z = _robust_z(morph.gaussian(corr, 2.0))
    return -1 if float(np.mean(z < -3)) >= float(np.mean(z > 3)) else 1


def part_feature(gray: np.ndarray, cfg: AnalyzeConfig) -> tuple[np.ndarray, int]:
    """Parts-high feature map (robust sigmas) and polarity.

    The map combines multi-scale flat-field corrected intensity and local texture."""
    s = scale_of(gray.shape[1], cfg)
    w = max(3, int(round(cfg.texture_window * s)) | 1)
    exclude = None
    feat, pol = np.zeros_like(gray), -1
    for _ in range(2):  # second pass re-estimates the flat field and powder statistics without the parts of the first
        corr = gray / flat_field(gray, cfg, exclude)
        pol = choose_polarity(corr, cfg)
        powder = None if exclude is None else ~exclude
        # each scale normalised by its own powder noise: small scales keep thin walls, large ones find faint parts
        z_int = np.max(
            [pol * _robust_z(morph.gaussian(corr, sg * max(s, 0.5)), powder) for sg in cfg.feature_scales_px],
            axis=0,
        )
        mean = ndimage.uniform_filter(corr, w)
        tex = np.sqrt(np.maximum(ndimage.uniform_filter(corr**2, w) - mean**2, 0))
        z_tex = _robust_z(morph.gaussian(tex, w / 4.0), powder)
        # fused metal is smoother (sim, recoated) or rougher (spatter-rich) than powder
        feat = np.maximum(z_int, np.abs(z_tex))
        exclude = feat > cfg.feature_min
    return feat, pol


def sauvola_mask(gray: np.ndarray, cfg: AnalyzeConfig, polarity: int = -1) -> np.ndarray:
    """Plain Sauvola threshold of the raw image (parts = darker than the local threshold for polarity -1)."""
    from skimage.filters import threshold_sauvola

    s = scale_of(gray.shape[1], cfg)
    win = max(3, int(round(cfg.sauvola_window * s)) | 1)
    img = gray if polarity < 0 else 255.0 - gray
    return img < threshold_sauvola(img, window_size=win, k=cfg.sauvola_k, r=128.0)


def plain_sauvola_segment(image: np.ndarray, cfg: AnalyzeConfig) -> np.ndarray:
    """Baseline: Sauvola on the raw image + small-object removal (what the refinement must beat)."""
    gray = as_gray(image)
    pol = choose_polarity(gray / flat_field(gray, cfg), cfg)
    s = scale_of(gray.shape[1], cfg)
    return drop_small(sauvola_mask(gray, cfg, pol), max(1, int(cfg.min_part_area_px * s * s)))


class ClassicalProposer:
    """Region growing from a prompt on the feature map; stability = IoU across threshold offsets."""

    def __init__(self, cfg: AnalyzeConfig):
        self.cfg = cfg
        self.feature = np.zeros((1, 1))

    def set_image(self, image: np.ndarray, feature: np.ndarray) -> None:
        """Keep the feature map (the classical proposer works on it, not on raw grey levels)."""
        self.feature = feature
        self._cache: dict = {}

    def _grow(self, roi: np.ndarray, pt: tuple[int, int], t: float, key: tuple) -> np.ndarray:
        """Connected region of roi > t containing pt (small gaps closed); labelling cached per box and level."""
        ck = (key, round(t, 9))
        lab = self._cache.get(ck)
        if lab is None:
            m = morph.closing(roi > t, structure=np.ones((3, 3)), iterations=1)
            lab = ndimage.label(m)[0]
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[ck] = lab
        k = lab[pt[1], pt[0]]
        return lab == k if k > 0 else np.zeros(roi.shape, dtype=bool)

    def propose(self, point_xy: tuple[int, int], box: tuple[int, int, int, int], sensitivity: float) -> list[Proposal]:
        """One proposal per prompt: grown region, Otsu separability as confidence, threshold-offset IoU as stability."""
        from skimage.filters import threshold_otsu

        x0, y0, x1, y1 = box
        # cap very strong responses (glints, bright rims) so they do not set the threshold for the whole part
        roi = np.minimum(self.feature[y0:y1, x0:x1], 3.0 * self.cfg.feature_min)
        if roi.size < 16 or float(roi.max() - roi.min()) < 1e-6:
            return []
        ck = ("otsu", box)
        if ck not in self._cache:
            self._cache[ck] = (float(threshold_otsu(roi)), float(roi.std()))
        t, spread = self._cache[ck]
        t = max(t - 0.25 * sensitivity * spread, 0.5 * self.cfg.feature_min)  # never into plain powder
        pt = (point_xy[0] - x0, point_xy[1] - y0)
        m = self._grow(roi, pt, t, box)
        if not m.any():
            return []
        lo, hi = self._grow(roi, pt, t - 0.1 * spread, box), self._grow(roi, pt, t + 0.1 * spread, box)
        stability = float(np.logical_and(lo, hi).sum() / max(np.logical_or(lo, hi).sum(), 1))
        fg, bg = roi[m], roi[~m]
        conf = 0.0
        if fg.size and bg.size:
            between = fg.size * bg.size / roi.size**2 * (fg.mean() - bg.mean()) ** 2
            conf = float(between / max(roi.var(), 1e-9))
        full = np.zeros(self.feature.shape, dtype=bool)
        full[y0:y1, x0:x1] = m
        return [Proposal(full, conf, stability)]


@dataclass(frozen=True)
class Segmentation:
    """Result: part mask, labelled parts, loop iterations, failure flag and the prompts used."""

    mask: np.ndarray
    labels: np.ndarray
    iterations: int
    failed: bool
    polarity: int
    prompts: tuple[tuple[int, int], ...] = ()
    areas: tuple[int, ...] = field(default_factory=tuple)
    feature: np.ndarray | None = None  # parts-high evidence map (robust sigmas) the masks were grown on


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks (1 when both empty)."""
    u = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / u) if u else 1.0


def refine_boundary(mask: np.ndarray, fine: np.ndarray, band: int, polarity: int) -> np.ndarray:
    """Reassign pixels in a band around each part to the nearer of the part / local powder levels of `fine`."""
    if band < 1 or not mask.any():
        return mask
    out = mask.copy()
    lab, n = ndimage.label(mask)
    h, w = mask.shape
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        ys, xs = sl
        b = (slice(max(0, ys.start - 3 * band), min(h, ys.stop + 3 * band)),
             slice(max(0, xs.start - 3 * band), min(w, xs.stop + 3 * band)))
        m, f = lab[b] == i, fine[b]
        inner = morph.erode(m, iterations=band)
        grown = morph.dilate(m, iterations=band)
        ring = morph.dilate(m, iterations=2 * band) & ~grown & ~(lab[b] > 0)
        if inner.sum() < 4 or ring.sum() < 4:
            continue
        mu_in, mu_out = float(np.median(f[inner])), float(np.median(f[ring]))
        noise = 1.4826 * float(np.median(np.abs(f[ring] - mu_out))) + 1e-6
        if polarity * (mu_in - mu_out) < 2.0 * noise:  # no intensity contrast: keep the texture-based boundary
            continue
        zone = grown & ~inner
        part_like = np.abs(f - mu_in) < np.abs(f - mu_out)
        new = inner | (zone & part_like)
        new = morph.opening(new, iterations=1) | inner
        out[b] = (out[b] & ~m) | new
    return out


def make_proposer(cfg: AnalyzeConfig) -> MaskProposer:
    """Segment Anything when a checkpoint is configured, else the classical proposer."""
    if cfg.sam_checkpoint:
        from edge.analyze.sam import SamProposer

        return SamProposer(cfg.sam_checkpoint, cfg.sam_model_type)
    return ClassicalProposer(cfg)


class Segmenter:
    """The paper's segmentation pipeline with a pluggable mask proposer."""

    def __init__(self, cfg: AnalyzeConfig | None = None, proposer: MaskProposer | None = None,
                 registered: bool = False):
        self.cfg = cfg or AnalyzeConfig()
        # the paper's prompt pipeline when asked for (or 'auto' on registered plate frames), for Segment Anything and
        # for any other given proposer; else the self-fitted classifier
        method = self.cfg.segment_method
        if method == "auto":
            method = "prompts" if registered else "classifier"
        self.prompted = proposer is not None or method == "prompts" or bool(self.cfg.sam_checkpoint)
        self.proposer = proposer or make_proposer(self.cfg)

    def candidates(self, feature: np.ndarray, s: float) -> tuple[np.ndarray, int]:
        """Sauvola on the feature ('ink') image, dilation, connected components (small ones dropped)."""
        from skimage.filters import threshold_sauvola
        from skimage.morphology import disk

        ink = np.clip(128.0 - 16.0 * feature, 0, 255)
        win = max(3, int(round(self.cfg.sauvola_window * s)) | 1)
        binary = ink < threshold_sauvola(ink, window_size=win, k=self.cfg.sauvola_k, r=128.0)
        # Sauvola misses the interior of parts wider than its window: strong feature pixels always count
        binary |= feature > 1.5 * self.cfg.feature_min
        binary &= feature > self.cfg.feature_min
        binary = drop_small(binary, max(1, int(self.cfg.min_part_area_px * s * s / 4)))
        r = int(round(self.cfg.dilation_px * s))
        if r > 0:
            binary = morph.dilate(binary, structure=disk(r))
        binary = drop_small(binary, max(1, int(self.cfg.min_part_area_px * s * s)))
        return ndimage.label(binary)

    def prompts(self, comp: np.ndarray, n_random: int, rng: np.random.Generator) -> list[tuple[int, int]]:
        """Distance-transform maximum plus random interior points of one component (x, y)."""
        dist = ndimage.distance_transform_edt(comp)
        y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
        pts = [(int(x), int(y))]
        inner = np.argwhere(dist >= max(1.0, 0.3 * dist.max()))
        if len(inner) and n_random:
            for iy, ix in inner[rng.choice(len(inner), size=min(n_random, len(inner)), replace=False)]:
                pts.append((int(ix), int(iy)))
        return pts

    def _one_pass(self, comps: np.ndarray, n: int, sensitivity: float, n_random: int) -> tuple[np.ndarray, list]:
        """Proposals for all components, filtered by confidence/stability, de-duplicated, unioned."""
        cfg, rng = self.cfg, np.random.default_rng(self.cfg.seed)
        union = np.zeros(comps.shape, dtype=bool)
        used: list[tuple[int, int]] = []
        h, w = comps.shape
        for i, sl in enumerate(ndimage.find_objects(comps), start=1):
            if sl is None:
                continue
            comp = comps[sl] == i
            ys, xs = sl
            my, mx = max(4, (ys.stop - ys.start) // 2), max(4, (xs.stop - xs.start) // 2)
            box = (max(0, xs.start - mx), max(0, ys.start - my), min(w, xs.stop + mx), min(h, ys.stop + my))
            accepted: list[np.ndarray] = []
            for px, py in self.prompts(comp, n_random, rng):
                pt = (px + xs.start, py + ys.start)
                used.append(pt)
                for p in self.proposer.propose(pt, box, sensitivity):
                    if p.confidence < cfg.min_confidence or p.stability < cfg.min_stability:
                        continue
                    if any(_iou(p.mask, a) > cfg.dedup_iou for a in accepted):
                        continue
                    accepted.append(p.mask)
            for a in accepted:
                union |= a
        return union, used

    def _finish(self, mask: np.ndarray, gray: np.ndarray, feature: np.ndarray, pol: int, s: float,
                region: np.ndarray | None) -> np.ndarray:
        """Boundary refinement, majority smoothing, removal of faint, small and (given a region) stray components."""
        cfg = self.cfg
        if region is not None:
            lab, n = ndimage.label(mask)
            touching = np.unique(lab[region & (lab > 0)])
            mask = np.isin(lab, touching[touching > 0])
        if cfg.refine_boundary and mask.any():
            corr = gray / flat_field(gray, cfg, mask)
            fine = morph.gaussian(corr, 1.5 * max(s, 0.5))
            mask = refine_boundary(mask, fine, max(1, int(round(cfg.texture_window * s / 2 + 1))), pol)
            mask = morph.gaussian(mask.astype(np.float32), 1.5 * max(s, 0.5)) > 0.5  # majority smoothing
        mask = drop_faint(mask, feature, cfg.part_contrast_min, max(2, int(round(cfg.texture_window * s))))
        return drop_small(mask, max(1, int(cfg.min_part_area_px * s * s)))

    def segment(self, image: np.ndarray, expected_area_px: float | None = None,
                region: np.ndarray | None = None) -> Segmentation:
        """Segment parts; with an expected area, retry prompts until within [area_low, area_high] of it (or the mask
        stops changing: then it has failed early); with a region (expected parts), keep only parts touching it."""
        cfg = self.cfg
        gray = as_gray(image)
        s = scale_of(gray.shape[1], cfg)
        if not self.prompted:
            from edge.analyze.fused import segment_classifier

            return segment_classifier(gray, s, cfg, expected_area_px, region)
        feature, pol = part_feature(gray, cfg)
        feature[corner_mask(gray.shape, cfg.ignore_corner_frac)] = min(0.0, float(feature.min()))
        self.proposer.set_image(np.clip(gray, 0, 255).astype(np.uint8), feature)
        comps, n = self.candidates(feature, s)
        if region is not None:
            region = morph.dilate(region, iterations=max(1, int(round(cfg.dilation_px * s))))
            keep = np.unique(comps[region & (comps > 0)])
            comps, n = ndimage.label(np.isin(comps, keep[keep > 0]))
        sensitivity, n_random, it, failed = 0.0, cfg.random_prompts, 0, False
        mask, used = np.zeros(gray.shape, dtype=bool), []
        areas_seen: list[int] = []
        for it in range(1, cfg.max_prompt_iterations + 1):  # noqa: B007 - `it` is read after the loop
            raw, used = self._one_pass(comps, n, sensitivity, n_random)
            mask = self._finish(raw, gray, feature, pol, s, region)
            if not expected_area_px:
                break
            areas_seen.append(int(mask.sum()))
            if len(areas_seen) >= 3 and len(set(areas_seen[-3:])) == 1:  # prompts no longer change the mask
                failed = not (cfg.area_low <= mask.sum() / float(expected_area_px) <= cfg.area_high)
                break
            ratio = mask.sum() / float(expected_area_px)
            if cfg.area_low <= ratio <= cfg.area_high:
                break
            if ratio < cfg.area_low:  # too small: more prompts, grow
                sensitivity += 0.5
                n_random += 2
            else:  # too large: shrink
                sensitivity -= 0.5
        else:
            failed = bool(expected_area_px)
        labels, k = ndimage.label(mask)
        areas = tuple(int(a) for a in ndimage.sum_labels(mask, labels, range(1, k + 1))) if k else ()
        return Segmentation(mask, labels, it, failed, pol, tuple(used), areas, feature)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two masks of the same shape."""
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    return _iou(a.astype(bool), b.astype(bool))
