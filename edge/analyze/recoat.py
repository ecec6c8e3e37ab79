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
    PowderView, blur, fine_noise, illumination, level_map, line_map, mark_map, plate_roi, robust_stats, work_grid,
)
from edge.messages import AnomalyFlag

DETECTORS = ("line", "mark", "level")


def zero_config_view(gray: np.ndarray, cfg: AnalyzeConfig, exclude: np.ndarray | None = None) -> PowderView:
    """The frame judged against itself: a robust smooth illumination field, plate region from its own image."""
    g, f = work_grid(gray, cfg.powder_work_px)
    roi = plate_roi(blur(g, 2.0), cfg.powder_border_frac, cfg.powder_dark_frac, cfg.powder_edge_contrast)
    roi &= ~_to_grid(exclude, g.shape)
    expected = illumination(g, roi, cfg.powder_illum_frac)
    r = (g / expected - 1.0).astype(np.float32)
    return PowderView(r, roi, f, fine_noise(r, roi))


def baseline_view(gray: np.ndarray, base: Baseline, cfg: AnalyzeConfig, exclude: np.ndarray | None = None) -> PowderView:
    """The frame judged against the printer's expected image (pixel by pixel, after matching exposure)."""
    base.check_shape(gray.shape[:2])
    g, f = work_grid(gray, cfg.powder_work_px)
    if g.shape != base.expected.shape:
        import cv2

        g = cv2.resize(g, base.expected.shape[::-1], interpolation=cv2.INTER_AREA)
    own = plate_roi(blur(g, 2.0), cfg.powder_border_frac, cfg.powder_dark_frac, cfg.powder_edge_contrast)
    roi = base.roi & own & ~_to_grid(exclude, g.shape)  # walls that moved are out of both
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
            n = max(5, int(round(cfg.powder_line_len_frac * r.shape[axis])))
            across = 1 - axis
            band = blur(r, cfg.powder_line_width_px, across) - blur(r, 4.0 * cfg.powder_line_width_px, across)
            avg = blur(np.where(roi, band, 0.0), n / 2.0, axis)
            energy[axis] += float(np.median(avg[roi] ** 2)) if roi.any() else 0.0  # median: a local defect does not vote
    # too little anisotropy to tell (ratio < 1.2): the usual mounting, recoater moving along the image's y
    return 1 if energy[1] > 1.2 * energy[0] else 0


@dataclass(frozen=True)
class Thresholds:
    """Detector thresholds in robust sigmas for one frame (baseline-calibrated or zero-config)."""

    line: float
    mark: float
    level: float
    level_min_rel: float


def thresholds(cfg: AnalyzeConfig, base: Baseline | None) -> Thresholds:
    """Zero-config: the configured thresholds widened by zero_config_margin. Baseline: the configured ones, raised to
    baseline_clean_margin times the highest score this printer's clean frames reached (leave-one-out)."""
    if base is None:
        m = cfg.zero_config_margin
        return Thresholds(cfg.powder_line_contrast * m, cfg.powder_mark_contrast * m, cfg.powder_level_contrast * m,
                          cfg.zero_config_level_min_rel)
    c, k = base.clean_scores, cfg.baseline_clean_margin
    return Thresholds(max(cfg.powder_line_contrast, k * c.get("line", 0.0)), max(cfg.powder_mark_contrast, k * c.get("mark", 0.0)),
                      max(cfg.powder_level_contrast, k * c.get("level", 0.0)), cfg.powder_level_min_rel)


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
    return AnomalyFlag(kind, _severity(score, cfg), round(float(score), 3), _bbox(sl, view.factor, view.r.shape),
                       int(round(area_work * view.factor**2)))


def detect_lines(view: PowderView, axis: int, thr: Thresholds, cfg: AnalyzeConfig) -> tuple[list[AnomalyFlag], float]:
    """Streaks and long scratches: thin lines along the travel, at least the averaging length long."""
    n = line_length(view, axis, cfg)
    z = line_map(view.r, view.roi, axis, cfg.powder_line_width_px, n)
    a = np.abs(z)
    stat = float(a[view.roi].max()) if view.roi.any() else 0.0
    lab, _ = ndimage.label(a > cfg.info_frac * thr.line)
    flags = []
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        if sl is None or sl[axis].stop - sl[axis].start < n:
            continue
        comp = lab[sl] == i
        score = float(a[sl][comp].max()) / thr.line
        flags.append(_flag("recoater_streak", score, sl, int(comp.sum()), view, cfg))
    return flags, stat


def detect_marks(view: PowderView, thr: Thresholds, cfg: AnalyzeConfig) -> tuple[list[AnomalyFlag], float]:
    """Marks on the powder (scratches across the travel, debris, deformation scars): band-pass blobs of either
    polarity, hysteresis from half the threshold, at least mark_min_area_px."""
    z = blur(mark_map(view.r, view.roi, cfg.powder_mark_sigma_px), cfg.powder_mark_sigma_px)
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
        if areas[i] < min_area:
            continue
        stat = max(stat, float(peaks[i - 1]))
        score = float(peaks[i - 1]) / thr.mark
        if score >= cfg.info_frac:
            h, w = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
            kind = "scratch" if max(h, w) >= 4 * min(h, w) else "debris"
            flags.append(_flag(kind, score, sl, int(areas[i]), view, cfg))
    return flags, stat


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


def drop_marks_on_lines(marks: list[AnomalyFlag], lines: list[AnomalyFlag]) -> list[AnomalyFlag]:
    """A scratch mark inside a streak's box is the streak itself."""
    def inside(m: AnomalyFlag, s: AnomalyFlag) -> bool:
        x, y, w, h = m.bbox
        X, Y, W, H = s.bbox
        return x >= X - 2 and y >= Y - 2 and x + w <= X + W + 2 and y + h <= Y + H + 2

    strong = [s for s in lines if s.severity != "info"]
    return [m for m in marks if not (m.type == "scratch" and any(inside(m, s) for s in strong))]


def powder_flags(view: PowderView, axis: int, thr: Thresholds, cfg: AnalyzeConfig) -> tuple[list[AnomalyFlag], dict[str, float]]:
    """All powder detectors on one view: flags and each detector's raw statistic (robust sigmas)."""
    lines, s_line = detect_lines(view, axis, thr, cfg)
    marks, s_mark = detect_marks(view, thr, cfg)
    level, s_level = detect_level(view, thr, cfg)
    return lines + drop_marks_on_lines(marks, lines) + level, {"line": s_line, "mark": s_mark, "level": s_level}


def clean_scores(gray: np.ndarray, base: Baseline, cfg: AnalyzeConfig) -> dict[str, float]:
    """Detector statistics of a frame against a (leave-one-out) baseline, for calibrating the thresholds."""
    view = baseline_view(np.asarray(gray, np.float32), base, cfg)
    return powder_flags(view, base.travel_axis, thresholds(cfg, None), cfg)[1]


class PowderJudge:
    """Judges the powder of successive frames against a running baseline (or each frame by itself)."""

    def __init__(self, cfg: AnalyzeConfig, baseline: Baseline | None = None):
        self.cfg = cfg
        self.running = RunningBaseline(baseline, cfg.baseline_running_frames) if baseline is not None else None

    def judge(self, gray: np.ndarray, exclude: np.ndarray | None = None) -> tuple[list[AnomalyFlag], dict[str, float], int]:
        """Powder flags of one frame (exclude: full-size mask of pixels that are not powder, e.g. parts), each
        detector's statistic and the recoater travel axis used."""
        cfg = self.cfg
        g = np.asarray(gray, np.float32)
        base = self.running.current if self.running is not None else None
        if base is None:
            view = zero_config_view(g, cfg, exclude)
            axis = travel_axis_of([view.r], view.roi, cfg)
        else:
            view = baseline_view(g, base, cfg, exclude)
            axis = base.travel_axis if cfg.recoater_travel == "auto" else (0 if cfg.recoater_travel == "y" else 1)
        flags, stats = powder_flags(view, axis, thresholds(cfg, base), cfg)
        return flags, stats, axis

    def remember_clean(self, gray: np.ndarray) -> None:
        """A frame judged clean joins the running baseline."""
        if self.running is not None:
            self.running.add_clean(gray, self.cfg.powder_work_px)


class RecoatAnalyzer:
    """Analyse post-spreading (recoat) frames: powder flags with persistence over layers."""

    def __init__(self, cfg: AnalyzeConfig | None = None, baseline: Baseline | None = None):
        from edge.analyze.layer import LayerHistory

        self.cfg = cfg or AnalyzeConfig()
        self.judge = PowderJudge(self.cfg, baseline)
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
        flags, _, _ = self.judge.judge(gray, parts)
        flags = self.history.persist(flags, self.cfg)
        self.history.push(layer, np.zeros(gray.shape, bool), tuple(flags))
        state = layer_state(flags)
        if state == "ok":
            self.judge.remember_clean(gray)
        return LayerAnalysis(state, tuple(flags), np.zeros(gray.shape, bool), {"total": time.perf_counter() - t0})
