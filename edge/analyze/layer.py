"""Single-layer analysis for the box: segmentation, anomaly detectors, persistence over layers (LayerHistory)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from edge.analyze import anomaly as an
from edge.analyze import morph
from edge.analyze.artefacts import confirm_on_lr, laser_from_lr
from edge.analyze.baseline import Baseline
from edge.analyze.config import AnalyzeConfig
from edge.analyze.recoat import PowderJudge
from edge.analyze.segment import SegmentationError, Segmenter, as_gray, corner_mask, flat_field, scale_of
from edge.messages import AnomalyFlag, LayerState

MARKS = ("debris", "scratch")
IMAGE_WIDE = ("spatter", "recoater_hopping", "sr_uncertain", "laser_in_image", "segmentation_failed")


class AnalysisInputError(ValueError):
    """Input that cannot be analysed as given (e.g. an expected mask of another aspect ratio)."""


@dataclass(frozen=True)
class LayerAnalysis:
    """Result of one layer: state, flags, part mask (bool, image size) and timings in seconds."""

    layer_state: LayerState
    flags: tuple[AnomalyFlag, ...]
    mask: np.ndarray
    timings_s: dict[str, float] = field(default_factory=dict)

    def anomaly_json(self, job: str, layer: int) -> dict:
        """The anomaly JSON of docs/mqtt.md#anomaly-json."""
        return {"job": job, "layer": layer, "layer_state": self.layer_state,
                "flags": [f.to_json_dict() for f in self.flags]}


def _box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """IoU of two [x, y, w, h] boxes."""
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw, ih = max(0, min(ax1, bx1) - max(a[0], b[0])), max(0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


class LayerHistory:
    """What the box remembers between layers: previous part masks/areas and flags (for persistence)."""

    def __init__(self, keep: int = 5):
        self.keep = keep
        self.masks: list[np.ndarray] = []
        self.flags: tuple[AnomalyFlag, ...] = ()
        self.last_layer: int | None = None

    def previous_mask(self, shape: tuple[int, int]) -> np.ndarray | None:
        """The last part mask of the same shape, or None."""
        for m in reversed(self.masks):
            if m.shape == shape:
                return m
        return None

    def persist(self, flags: list[AnomalyFlag], cfg: AnalyzeConfig) -> list[AnomalyFlag]:
        """Set layers_persisted from matching flags of the previous layer; long-lived minor flags become critical."""
        out = []
        for f in flags:
            n = 1
            for p in self.flags:
                if p.type == f.type and (f.type in IMAGE_WIDE or _box_iou(p.bbox, f.bbox) >= cfg.persist_iou):
                    n = max(n, p.layers_persisted + 1)
            escalate = n >= cfg.critical_persist_layers and f.type not in ("sr_uncertain",) and f.severity != "info"
            sev = "critical" if escalate else f.severity
            out.append(replace(f, layers_persisted=n, severity=sev))
        return out

    def push(self, layer: int, mask: np.ndarray, flags: tuple[AnomalyFlag, ...]) -> None:
        """Remember this layer's mask and flags."""
        self.masks = (self.masks + [mask])[-self.keep :]
        self.flags = flags
        self.last_layer = layer


def layer_state(flags: list[AnomalyFlag]) -> LayerState:
    """Layer state from flags: special states first, then the worst severity (info flags never count)."""
    types = {f.type for f in flags}
    if "laser_in_image" in types:
        return "laser_in_image"
    if "segmentation_failed" in types:
        return "segmentation_failed"
    counted = [f for f in flags if f.severity != "info" and f.type != "sr_uncertain"]
    if any(f.severity == "critical" for f in counted):
        return "critical"
    return "minor" if any(f.severity != "info" for f in flags) else "ok"


class LayerAnalyzer:
    """Analyse layer images one by one (LR or SR size); keeps a LayerHistory for persistence and geometry."""

    def __init__(self, cfg: AnalyzeConfig | None = None,
                 expected_masks: Mapping[int, np.ndarray] | Sequence[np.ndarray] | None = None,
                 baseline: Baseline | None = None, registered: bool = False):
        self.cfg = cfg or AnalyzeConfig()
        self.registered = registered  # frames registered to the plate (the box, sim builds) rather than photographs
        self.expected = expected_masks
        self.history = LayerHistory()
        self.segmenter = Segmenter(self.cfg, registered=registered)
        self.powder = PowderJudge(self.cfg, baseline, registered)

    def expected_mask(self, layer: int, shape: tuple[int, int]) -> np.ndarray | None:
        """Expected part mask of a layer (1-based) resized to the image grid; clear error for another aspect ratio."""
        if self.expected is None:
            return None
        if isinstance(self.expected, Mapping):
            m = self.expected.get(layer)
        else:
            m = self.expected[layer - 1] if 1 <= layer <= len(self.expected) else None
        if m is None:
            return None
        m = np.asarray(m)
        if m.ndim != 2:
            raise AnalysisInputError(f"expected mask of layer {layer} must be 2-D, got shape {m.shape}")
        if m.shape != shape:
            if abs(m.shape[0] / m.shape[1] - shape[0] / shape[1]) > 0.01:
                raise AnalysisInputError(
                    f"expected mask of layer {layer} is {m.shape[1]}x{m.shape[0]} px but the image is "
                    f"{shape[1]}x{shape[0]}: not the same plate grid"
                )
            m = cv2.resize((m > 0).astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
        return m > 0

    def analyze(self, image_uint8: np.ndarray, layer: int, std: np.ndarray | None = None,
                estimate: np.ndarray | None = None, lr: np.ndarray | None = None) -> LayerAnalysis:
        """Flags for one layer image; never raises on bad image content (returns capture_failed instead).

        SR layers (edge.sr_stage): image = the published sample (flags are drawn on its grid), estimate = the
        posterior-mean-like image every measurement reads (None: the image), std = the samples' spread, lr = the
        webcam layer artefact-prone flags confirm on (edge.analyze.artefacts).
        """
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        img = np.asarray(image_uint8) if image_uint8 is not None else np.zeros((0, 0))
        try:
            gray = as_gray(img if estimate is None else estimate)
        except SegmentationError:
            return LayerAnalysis("capture_failed", (), np.zeros(img.shape[:2] if img.ndim >= 2 else (0, 0), bool),
                                 {"total": time.perf_counter() - t0})
        if estimate is not None and np.asarray(estimate).shape[:2] != img.shape[:2]:
            raise AnalysisInputError(f"SR estimate is {np.asarray(estimate).shape} but the image is {img.shape}")
        if std is not None and np.asarray(std).shape[:2] != gray.shape:
            raise AnalysisInputError(f"SR std map is {np.asarray(std).shape} but the image is {gray.shape}")
        if lr is not None:
            lr = as_gray(lr)
        if float(gray.mean()) < self.cfg.dark_frame_max:
            res = LayerAnalysis("capture_failed", (), np.zeros(gray.shape, bool), {"total": time.perf_counter() - t0})
            self.history.push(layer, res.mask, ())
            return res
        cfg, s = self.cfg, scale_of(gray.shape[1], self.cfg)
        # saturation is a sensor fact: with the LR at hand the laser is read there, never from an SR artefact
        flags: list[AnomalyFlag] = an.detect_laser(gray, cfg, s) if lr is None else laser_from_lr(lr, gray.shape,
                                                                                                  cfg, s)
        expected = self.expected_mask(layer, gray.shape)
        prev = self.history.previous_mask(gray.shape)
        # the paper's area loop needs a known expected area (CAD); a previous layer is no such thing when parts start or
        # end
        exp_area = float(expected.sum()) if expected is not None else None
        t = time.perf_counter()
        seg = self.segmenter.segment(np.where(gray >= cfg.laser_saturation, np.median(gray), gray), exp_area or None,
                                     region=expected)
        timings["segment"] = time.perf_counter() - t
        mask = seg.mask
        if seg.failed:
            flags.append(an.AnomalyFlag("segmentation_failed", "critical", float(seg.iterations),
                                        (0, 0, gray.shape[1], gray.shape[0]), int(mask.sum())))
        t = time.perf_counter()
        margin = max(1, int(round(cfg.part_margin_px * s)))
        tol = max(1, int(round(cfg.geometry_tol_px * s)))
        # with CAD the expected outline (plus what the segmentation found within its tolerance) is the part; anything
        # beyond it is judged on the image (geometry, hopping bands), not absorbed into the part by the segmentation
        outline = expected | (mask & morph.dilate(expected, iterations=tol)) if expected is not None else mask
        for m in self.history.masks[-3:] if expected is None else []:  # without CAD: a part seen lately is not powder
            if m.shape == mask.shape:
                outline = outline | m
        parts_grown = morph.dilate(outline, iterations=margin) if outline.any() else outline
        sat = gray >= cfg.laser_saturation
        powder = ~parts_grown & ~morph.dilate(sat, iterations=margin) & ~corner_mask(gray.shape, cfg.ignore_corner_frac)
        border = np.ones_like(powder)
        border[margin:-margin, margin:-margin] = False
        powder &= ~border
        if powder.sum() < 0.05 * powder.size:  # almost no powder visible: use every non-saturated pixel for statistics
            powder = ~sat
        corr = gray / flat_field(gray, cfg, ~powder)
        med, sig = an.robust_sigma(corr[powder])
        powder_flags, _, axis = self.powder.judge(gray, ~powder)  # streaks, marks, uneven powder vs the normal
        ctx = an.LayerContext(gray, (corr - med) / sig, powder, mask, s, cfg, axis)
        zs = an.smoothed_z(ctx)
        # streaks and uneven powder explain their regions; marks (debris, scratches) do not: a periodic band or a
        # bulge next to a part reads as a mark too, and the more specific detectors below decide what it is
        strong = [f for f in powder_flags if f.severity != "info" and f.type not in MARKS]
        explained = an.box_mask(gray.shape, strong, 2 * margin)
        geometry: list[AnomalyFlag] = []
        if powder.any():
            ctx = replace(ctx, powder=ctx.powder & ~explained)
            hopping = an.detect_hopping(ctx)
            explained |= an.box_mask(gray.shape, hopping, 0)
            if expected is not None:
                geometry = an.detect_additions(ctx, expected, explained)
            # debris comes from the powder judge's marks (against the printer's normal); spatter counts small particles
            spatter = an.detect_spatter(ctx, zs)
            powder_flags = an.drop_overlapping(powder_flags, MARKS, hopping + geometry, margin)
            flags += powder_flags + hopping + spatter
        reference = expected if expected is not None else prev
        flags += an.detect_elevation(ctx, zs, reference)
        flags += geometry + an.detect_geometry(mask, reference, cfg, s, seg.feature, cad=expected is not None,
                                               additions=expected is None)
        sr_flags, untrusted = an.detect_sr_uncertain(std, cfg, s)
        flags = confirm_on_lr(an.suppress_untrusted(flags, untrusted), lr, gray.shape, cfg) + sr_flags
        timings["detect"] = time.perf_counter() - t
        flags = self.history.persist(flags, cfg)
        self.history.push(layer, mask, tuple(flags))
        state = layer_state(flags)
        if state == "ok":
            self.powder.remember_clean(gray, ~powder)  # parts and their margins do not become "normal powder"
        timings["total"] = time.perf_counter() - t0
        return LayerAnalysis(state, tuple(flags), mask, timings)
