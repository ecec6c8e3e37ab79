"""Spreading defects on the powder: streaks along the recoater travel, marks (scratches, debris), uneven or
incomplete powder. Direction and polarity are read from the image or the baseline, thresholds are in units of the
frame's own variation, and with a baseline no lower than what this printer's clean frames reach."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from edge.analyze.baseline import Baseline, RunningBaseline, exposure_normalise
from edge.analyze.config import AnalyzeConfig
from edge.analyze.powder import (
    PowderView,
    blur,
    fine_noise,
    illumination,
    level_map,
    line_map,
    mark_map,
    plate_roi,
    robust_stats,
    work_grid,
)
from edge.messages import AnomalyFlag

DETECTORS = ("line", "mark", "level")


def frame_roi(g: np.ndarray, cfg: AnalyzeConfig, registered: bool) -> np.ndarray:
    """Where a frame's own image allows judging powder. Registered (the box: the frame is the plate, mapped by the
    calibration): everything but the border. A photograph: walls, plate edges, fixtures and shadows are found and
    left out (a dark band across the whole plate then looks like a wall; a registered frame or a baseline tells)."""
    if not registered:
        return plate_roi(blur(g, 2.0), cfg.powder_border_frac, cfg.powder_dark_frac, cfg.powder_edge_contrast)
    roi = np.ones(g.shape, bool)
    b = max(1, int(round(cfg.powder_border_frac * max(g.shape))))
    roi[:b], roi[-b:], roi[:, :b], roi[:, -b:] = False, False, False, False
    return roi


def zero_config_view(
    gray: np.ndarray, cfg: AnalyzeConfig, exclude: np.ndarray | None = None, registered: bool = False
) -> PowderView:
    """The frame judged against itself: a robust smooth illumination field, plate region from its own image."""
    g, f = work_grid(gray, cfg.powder_work_px)
    roi = frame_roi(g, cfg, registered) & ~_to_grid(exclude, g.shape)
    expected = illumination(g, roi, cfg.powder_illum_frac)
    r = (g / expected - 1.0).astype(np.float32)
    return PowderView(r, roi, f, fine_noise(r, roi))


def baseline_view(
    gray: np.ndarray, base: Baseline, cfg: AnalyzeConfig, exclude: np.ndarray | None = None, registered: bool = False
) -> PowderView:
    """The frame judged against the printer's expected image (pixel by pixel, after matching exposure)."""
    base.check_shape(gray.shape[:2])
    g, f = work_grid(gray, cfg.powder_work_px)
    if g.shape != base.expected.shape:
        import cv2

        g = cv2.resize(g, base.expected.shape[::-1], interpolation=cv2.INTER_AREA)
    roi = base.roi & frame_roi(g, cfg, registered) & ~_to_grid(exclude, g.shape)  # walls that moved are out of both
    gn = exposure_normalise(g, base.expected, roi)
    r = (gn / np.maximum(base.expected, 1e-3) - 1.0).astype(np.float32)
    return PowderView(r, roi, gray.shape[1] / g.shape[1], fine_noise(r, roi))


def _to_grid(mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """A full-size boolean mask on the work grid (any pixel of a cell set sets the cell)."""
    if mask is None or not np.any(mask):
        return np.zeros(shape, bool)
    import cv2

    return cv2.resize(np.asarray(mask, np.float32), shape[::-1], interpolation=cv2.INTER_AREA) > 0


def line_length(view: PowderView, axis: int, cfg: AnalyzeConfig) -> int:
    """Averaging length along the travel (px on the work grid)."""
    return max(5, int(round(cfg.powder_line_len_frac * view.r.shape[axis])))


def line_bands(cfg: AnalyzeConfig, fine: bool) -> tuple[tuple[float, float], ...]:
    """Across-travel band-passes of the streak detector (Gaussian sigma pairs, work px): (w/2, 4w) always, (w/2, 2w)
    only against a baseline, whose expected image removes the camera's fixed column pattern that a frame by itself
    cannot tell from a one-pixel streak."""
    w = cfg.powder_line_width_px
    wide = (max(0.7, w / 2.0), 4.0 * w)
    return ((0.5 * w, 2.0 * w), wide) if fine else (wide,)


def travel_axis_of(rs: list[np.ndarray], roi: np.ndarray, cfg: AnalyzeConfig) -> int:
    """Recoater travel axis from the powder's own streak texture: fine structure averaged along the travel keeps
    more energy than averaged across it over most of the plate (spreading leaves its grain drawn out along the
    blade's path); the config
    wins when it names an axis."""
    if cfg.recoater_travel != "auto":
        return 0 if cfg.recoater_travel == "y" else 1
    energy = [0.0, 0.0]
    for r in rs:
        for axis in (0, 1):
            n = max(5, int(round(r.shape[axis] / 8)))
            across = 1 - axis
            band = blur(r, cfg.powder_line_width_px, across) - blur(r, 4.0 * cfg.powder_line_width_px, across)
            avg = blur(np.where(roi, band, 0.0), n / 2.0, axis)
            energy[axis] += (
                float(np.median(avg[roi] ** 2)) if roi.any() else 0.0
            )  # median: a local defect does not vote
    # too little anisotropy to tell (ratio < 1.2): the usual mounting, recoater moving along the image's y
    return 1 if energy[1] > 1.2 * energy[0] else 0


@dataclass(frozen=True)
class Thresholds:
    """Detector thresholds in robust sigmas for one frame (baseline-calibrated or zero-config)."""

    line: float
    mark: float
    level: float
    level_min_rel: float
    fine_lines: bool = False  # the fine streak band (needs a baseline)


def thresholds(cfg: AnalyzeConfig, base: Baseline | None) -> Thresholds:
    """Zero-config: the configured thresholds widened by zero_config_margin. Baseline: the configured ones, raised to
    baseline_clean_margin times the highest score this printer's clean frames reached (leave-one-out)."""
    if base is None:
        m = cfg.zero_config_margin
        return Thresholds(
            cfg.powder_line_contrast * m,
            cfg.powder_mark_contrast * m,
            cfg.powder_level_contrast * m,
            cfg.zero_config_level_min_rel,
        )
    c, k = base.clean_scores, cfg.baseline_clean_margin
    return Thresholds(
        max(cfg.powder_line_contrast, k * c.get("line", 0.0)),
        max(cfg.powder_mark_contrast, k * c.get("mark", 0.0)),
        max(cfg.powder_level_contrast, k * c.get("level", 0.0)),
        cfg.powder_level_min_rel,
        True,
    )


def _bbox(sl: tuple[slice, slice], f: float, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Work-grid slice -> full-resolution [x, y, w, h]."""
    ys, xs = sl
    x0, y0 = int(xs.start * f), int(ys.start * f)
    return (x0, y0, max(1, int(round(xs.stop * f)) - x0), max(1, int(round(ys.stop * f)) - y0))


def _severity(score: float, cfg: AnalyzeConfig) -> str:
    """info below 1 (weak evidence, never changes a layer's state), critical from critical_score."""
    if score < 1.0:
        return "info"
    return "critical" if score >= cfg.critical_score else "minor"


def _flag(kind: str, score: float, sl, area_work: int, view: PowderView, cfg: AnalyzeConfig) -> AnomalyFlag:
    """Flag in full-resolution coordinates."""
    return AnomalyFlag(
        kind,
        _severity(score, cfg),
        round(float(score), 3),
        _bbox(sl, view.factor, view.r.shape),
        int(round(area_work * view.factor**2)),
    )


def detect_lines(view: PowderView, axis: int, thr: Thresholds, cfg: AnalyzeConfig) -> tuple[list[AnomalyFlag], float]:
    """Streaks and long scratches: thin lines along the travel that hold their contrast over the median window."""
    n = line_length(view, axis, cfg)
    z = line_map(view.r, view.roi, axis, line_bands(cfg, thr.fine_lines), n)
    a = np.abs(z)
    stat = float(a[view.roi].max()) if view.roi.any() else 0.0
    hit = a > cfg.info_frac * thr.line
    bridge = np.ones((n // 4, 1) if axis == 0 else (1, n // 4), bool)  # one streak across the parts that interrupt it
    lab, _ = ndimage.label(ndimage.binary_dilation(hit, bridge))
    lab = np.where(hit, lab, 0)
    flags = []
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        if (
            sl is None or sl[axis].stop - sl[axis].start < n // 4
        ):  # the median window holds it over >= 1/4 of its length
            continue
        comp = lab[sl] == i
        score = float(a[sl][comp].max()) / thr.line
        flags.append(_flag("recoater_streak", score, sl, int(comp.sum()), view, cfg))
    return flags, stat


def detect_marks(view: PowderView, thr: Thresholds, cfg: AnalyzeConfig) -> tuple[list[AnomalyFlag], float]:
    """Marks on the powder (scratches across the travel, debris, deformation scars): band-pass blobs of either
    polarity, hysteresis from half the threshold, at least mark_min_area_px above half their own peak."""
    z = mark_map(view.r, view.roi, cfg.powder_mark_sigmas_px)
    a = np.where(view.roi, np.abs(z), 0.0)
    s = view.r.shape[1] * view.factor / float(cfg.ref_width_px)  # image width / reference width
    min_area = max(3.0, cfg.powder_mark_min_area_px * s * s / view.factor**2)
    lab, n = ndimage.label(a > 0.5 * cfg.info_frac * thr.mark)
    if n == 0:
        return [], 0.0
    areas = np.bincount(lab.ravel())
    peaks = ndimage.maximum(a, lab, np.arange(1, n + 1))
    flags, stat = [], 0.0
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        # its core (above half its own peak): a single bright particle stays as small as the band-pass however strong
        core = (lab[sl] == i) & (a[sl] >= 0.5 * peaks[i - 1])
        if areas[i] < min_area or int(core.sum()) < min_area:
            continue
        stat = max(stat, float(peaks[i - 1]))
        score = float(peaks[i - 1]) / thr.mark
        if score >= cfg.info_frac:
            kind = "scratch" if elongation(core) >= 4.0 else "debris"
            flags.append(_flag(kind, score, sl, int(areas[i]), view, cfg))
    return flags, stat


def elongation(region: np.ndarray) -> float:
    """Ratio of the principal axes (second moments) of a boolean region; 1 for a disc, large for a line."""
    ys, xs = np.nonzero(region)
    if ys.size < 3:
        return 1.0
    ev = np.linalg.eigvalsh(np.cov(np.vstack([ys, xs]).astype(np.float64)) + np.eye(2) / 12.0)  # + pixel size
    return float(np.sqrt(ev[1] / max(ev[0], 1e-9)))


def detect_level(view: PowderView, thr: Thresholds, cfg: AnalyzeConfig) -> tuple[list[AnomalyFlag], float]:
    """Uneven or incomplete powder: a low-passed level that departs from the plate's by thr.level robust sigmas of
    its own spread and by at least level_min_rel (relative brightness), over level_min_area_frac of the plate."""
    if view.roi.sum() < 64:
        return [], 0.0
    lv = level_map(view.r, view.roi, cfg.powder_level_sigma_frac * max(view.r.shape))
    med, sig = robust_stats(lv[view.roi])
    dev = np.where(view.roi, np.abs(lv - med), 0.0)
    unit = max(thr.level * sig, thr.level_min_rel)  # one threshold, in relative brightness
    stat = float(dev.max()) / sig
    lab, n = ndimage.label(dev > cfg.info_frac * unit)
    min_area = cfg.powder_level_min_area_frac * view.roi.sum()
    flags = []
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        comp = lab[sl] == i
        area = int(comp.sum())
        if area < min_area:
            continue
        score = float(np.percentile(dev[sl][comp], 90)) / unit
        flags.append(_flag("incomplete_spreading", score, sl, area, view, cfg))
    return flags, stat


def _inside_frac(m: tuple[int, int, int, int], s: tuple[int, int, int, int], pad: int) -> float:
    """Share of box m ([x, y, w, h]) that lies inside box s grown by pad."""
    x0, y0 = max(m[0], s[0] - pad), max(m[1], s[1] - pad)
    x1, y1 = min(m[0] + m[2], s[0] + s[2] + pad), min(m[1] + m[3], s[1] + s[3] + pad)
    return max(0, x1 - x0) * max(0, y1 - y0) / max(1, m[2] * m[3])


def drop_explained_marks(
    marks: list[AnomalyFlag], lines: list[AnomalyFlag], level: list[AnomalyFlag]
) -> list[AnomalyFlag]:
    """A scratch mark inside a streak's box is the streak itself; a mark mostly inside an uneven-powder region is its
    edge."""
    strong_lines = [s.bbox for s in lines if s.severity != "info"]
    strong_level = [s.bbox for s in level if s.severity != "info"]
    return [
        m
        for m in marks
        if not (m.type == "scratch" and any(_inside_frac(m.bbox, s, 2) >= 1.0 for s in strong_lines))
        and not any(_inside_frac(m.bbox, s, 2) >= 0.5 for s in strong_level)
    ]


def powder_flags(
    view: PowderView, axis: int, thr: Thresholds, cfg: AnalyzeConfig
) -> tuple[list[AnomalyFlag], dict[str, float]]:
    """All powder detectors on one view: flags and each detector's raw statistic (robust sigmas)."""
    lines, s_line = detect_lines(view, axis, thr, cfg)
    marks, s_mark = detect_marks(view, thr, cfg)
    level, s_level = detect_level(view, thr, cfg)
    return lines + drop_explained_marks(marks, lines, level) + level, {"line": s_line, "mark": s_mark, "level": s_level}


def clean_scores(gray: np.ndarray, base: Baseline, cfg: AnalyzeConfig, registered: bool = False) -> dict[str, float]:
    """Detector statistics of a frame against a (leave-one-out) baseline, for calibrating the thresholds."""
    view = baseline_view(np.asarray(gray, np.float32), base, cfg, None, registered)
    return powder_flags(view, base.travel_axis, thresholds(cfg, base), cfg)[1]


class PowderJudge:
    """Judges the powder of successive frames against a running baseline (or each frame by itself)."""

    def __init__(self, cfg: AnalyzeConfig, baseline: Baseline | None = None, registered: bool = False):
        self.cfg = cfg
        self.registered = registered  # frames registered to the plate (the box) rather than photographs
        self.running = RunningBaseline(baseline, cfg.baseline_running_frames) if baseline is not None else None

    def judge(
        self, gray: np.ndarray, exclude: np.ndarray | None = None
    ) -> tuple[list[AnomalyFlag], dict[str, float], int]:
        """Powder flags of one frame (exclude: full-size mask of pixels that are not powder, e.g. parts), each
        detector's statistic and the recoater travel axis used."""
        cfg = self.cfg
        g = np.asarray(gray, np.float32)
        base = self.running.current if self.running is not None else None
        if base is None:
            view = zero_config_view(g, cfg, exclude, self.registered)
            axis = travel_axis_of([view.r], view.roi, cfg)
        else:
            view = baseline_view(g, base, cfg, exclude, self.registered)
            axis = base.travel_axis if cfg.recoater_travel == "auto" else (0 if cfg.recoater_travel == "y" else 1)
        flags, stats = powder_flags(view, axis, thresholds(cfg, base), cfg)
        return flags, stats, axis

    def remember_clean(self, gray: np.ndarray, exclude: np.ndarray | None = None) -> None:
        """A frame judged clean joins the running baseline (its powder only: exclude marks parts and the like)."""
        if self.running is not None:
            self.running.add_clean(gray, self.cfg.powder_work_px, exclude)


class RecoatAnalyzer:
    """Analyse post-spreading (recoat) frames: powder flags with persistence over layers."""

    def __init__(self, cfg: AnalyzeConfig | None = None, baseline: Baseline | None = None, registered: bool = False):
        from edge.analyze.layer import LayerHistory

        self.cfg = cfg or AnalyzeConfig()
        self.registered = registered
        self.judge = PowderJudge(self.cfg, baseline, registered)
        self.history = LayerHistory()

    def analyze(self, image: np.ndarray, layer: int, parts: np.ndarray | None = None):
        """LayerAnalysis of one recoat frame (parts: a mask of earlier parts to leave out, optional)."""
        from edge.analyze.layer import LayerAnalysis, layer_state
        from edge.analyze.segment import SegmentationError, as_gray

        t0 = time.perf_counter()
        try:
            gray = as_gray(np.asarray(image) if image is not None else np.zeros((0, 0)))
        except SegmentationError:
            return LayerAnalysis("capture_failed", (), np.zeros((0, 0), bool), {"total": time.perf_counter() - t0})
        if float(gray.mean()) < self.cfg.dark_frame_max:
            return LayerAnalysis("capture_failed", (), np.zeros(gray.shape, bool), {"total": time.perf_counter() - t0})
        skip = parts
        if self.registered:  # registration marks sit in the corners of a registered plate frame
            from edge.analyze.segment import corner_mask

            skip = corner_mask(gray.shape, self.cfg.ignore_corner_frac) | (
                False if parts is None else np.asarray(parts, bool)
            )
        flags, _, _ = self.judge.judge(gray, skip)
        flags = self.history.persist(flags, self.cfg)
        self.history.push(layer, np.zeros(gray.shape, bool), tuple(flags))
        state = layer_state(flags)
        if state == "ok":
            self.judge.remember_clean(gray, skip)
        return LayerAnalysis(state, tuple(flags), np.zeros(gray.shape, bool), {"total": time.perf_counter() - t0})
