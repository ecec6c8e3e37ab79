"""A printer's own normal: the expected powder image learned from a few clean frames, saved as baseline.json.

`learn_baseline` takes clean frames of one camera (same size), brings them to the work grid, scales each to a common
exposure and keeps their per-pixel median (illumination field, walls, fixed patterns, the camera's column pattern).
It then scores every frame against the median of the others (leave-one-out) with the same detectors the box runs,
so the file also holds how high each detector reads on this printer's clean frames. `RunningBaseline` keeps it
current during a job: the median over the install frames and the recent clean layers (robust: one bad layer that
slipped through does not move a median).
"""

from __future__ import annotations

import base64
import json
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.analyze.powder import blur, plate_roi, work_grid

FORMAT = "lpbf-edge-baseline/1"


class BaselineError(ValueError):
    """A baseline that cannot be learned or loaded; the message says what and where."""


@dataclass(frozen=True)
class Baseline:
    """Expected powder image on the work grid, its region of interest, recoater axis and clean detector scores."""

    expected: np.ndarray  # float32, exposure-normalised median of clean frames (median level 100)
    roi: np.ndarray  # bool, pixels the baseline can judge
    source_shape: tuple[int, int]  # (h, w) of the frames it was learned from
    travel_axis: int  # 0: the recoater travels along image rows direction y (streaks vertical); 1: along x
    clean_scores: dict[str, float] = field(default_factory=dict)  # detector -> highest leave-one-out clean score
    n_frames: int = 1

    def check_shape(self, shape: tuple[int, int], where: str = "image") -> None:
        """Raise BaselineError when a frame's aspect ratio differs from the baseline's frames."""
        h, w = self.source_shape
        if abs(shape[0] / shape[1] - h / w) > 0.01:
            raise BaselineError(
                f"{where} is {shape[1]}x{shape[0]} px but the baseline was learned on {w}x{h} px frames: "
                "not the same camera view"
            )


def exposure_normalise(g: np.ndarray, ref: np.ndarray, roi: np.ndarray) -> np.ndarray:
    """Scale g so its median ratio to ref over roi is 1."""
    sel = roi & (ref > 1e-3)
    gain = float(np.median(g[sel] / ref[sel])) if sel.sum() >= 16 else float(np.median(g) / max(np.median(ref), 1e-3))
    return g / max(gain, 1e-6)


def median_expected(frames: list[np.ndarray]) -> np.ndarray:
    """Per-pixel median of frames after bringing each to the first-pass median's exposure (level 100)."""
    stack = np.stack(frames).astype(np.float32)
    ref = np.median(stack, axis=0)
    ref *= 100.0 / max(float(np.median(ref)), 1e-3)
    full = np.ones(ref.shape, bool)
    return np.median(np.stack([exposure_normalise(g, ref, full) for g in stack]), axis=0).astype(np.float32)


def expected_roi(expected: np.ndarray, border_frac: float, dark_frac: float, edge_contrast: float) -> np.ndarray:
    """Region a baseline can judge: plate powder of the expected image, away from its walls and edges."""
    return plate_roi(blur(expected, 1.0), border_frac, dark_frac, edge_contrast)


def learn_baseline(images: list[np.ndarray], cfg, score_fn=None) -> Baseline:
    """Baseline from clean frames of one camera; score_fn(gray, baseline) -> {detector: score} fills clean_scores."""
    if not images:
        raise BaselineError("no frames given: a baseline needs at least one clean frame (3 or more recommended)")
    shape = images[0].shape[:2]
    for i, im in enumerate(images):
        if im.shape[:2] != shape:
            raise BaselineError(
                f"frame {i + 1} is {im.shape[1]}x{im.shape[0]} px, frame 1 is {shape[1]}x{shape[0]} px: "
                "all frames must come from one camera view"
            )
    grids = [work_grid(np.asarray(im, np.float32), cfg.powder_work_px)[0] for im in images]
    exp = median_expected(grids)
    roi = expected_roi(exp, cfg.powder_border_frac, cfg.powder_dark_frac, cfg.powder_edge_contrast)
    from edge.analyze.recoat import travel_axis_of

    axis = travel_axis_of([g / np.maximum(exp, 1e-3) - 1.0 for g in grids], roi, cfg)
    base = Baseline(exp, roi, (int(shape[0]), int(shape[1])), axis, {}, len(images))
    if score_fn is None or len(images) < 2:
        return base
    scores: dict[str, float] = {}
    for i, im in enumerate(images):  # leave-one-out: each frame against the median of the others
        others = median_expected([g for j, g in enumerate(grids) if j != i])
        loo = Baseline(
            others,
            expected_roi(others, cfg.powder_border_frac, cfg.powder_dark_frac, cfg.powder_edge_contrast),
            base.source_shape,
            axis,
            {},
            len(images) - 1,
        )
        for k, v in score_fn(np.asarray(im), loo).items():
            scores[k] = max(scores.get(k, 0.0), float(v))
    return Baseline(exp, roi, base.source_shape, axis, scores, len(images))


def _pack(a: np.ndarray) -> dict:
    """Array -> JSON-safe dict (zlib + base64)."""
    raw = np.ascontiguousarray(a)
    return {
        "dtype": str(raw.dtype),
        "shape": list(raw.shape),
        "zlib_b64": base64.b64encode(zlib.compress(raw.tobytes(), 6)).decode("ascii"),
    }


def _unpack(d: dict, where: str) -> np.ndarray:
    """JSON dict -> array, with a clear error."""
    try:
        buf = zlib.decompress(base64.b64decode(d["zlib_b64"]))
        return np.frombuffer(buf, dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()
    except (KeyError, ValueError, TypeError, zlib.error) as exc:
        raise BaselineError(f"{where}: corrupt array ({exc})") from exc


def save_baseline(base: Baseline, path: str | Path) -> Path:
    """Write baseline.json atomically."""
    p = Path(path)
    doc = {
        "format": FORMAT,
        "n_frames": base.n_frames,
        "source_shape": list(base.source_shape),
        "travel_axis": "y" if base.travel_axis == 0 else "x",
        "clean_scores": {k: round(v, 4) for k, v in base.clean_scores.items()},
        "expected": _pack(base.expected.astype(np.float16)),
        "roi": _pack(np.packbits(base.roi.astype(np.uint8))),
    }
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(doc) + "\n", encoding="utf-8")
    tmp.replace(p)
    return p


def load_baseline(path: str | Path) -> Baseline:
    """Read baseline.json; BaselineError names the file and what is wrong."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BaselineError(
            f"{p}: no such file (make one with `lpbf-edge calib baseline FRAME... --out {p.name}`)"
        ) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BaselineError(f"{p}: not a baseline JSON file ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BaselineError(
            f"{p}: format is {doc.get('format') if isinstance(doc, dict) else None!r}, expected {FORMAT!r}"
        )
    try:
        exp = _unpack(doc["expected"], f"{p} expected").astype(np.float32)
        roi = np.unpackbits(_unpack(doc["roi"], f"{p} roi"))[: exp.size].reshape(exp.shape).astype(bool)
        axis = {"y": 0, "x": 1}[doc["travel_axis"]]
        shape = (int(doc["source_shape"][0]), int(doc["source_shape"][1]))
        scores = {str(k): float(v) for k, v in doc.get("clean_scores", {}).items()}
        return Baseline(exp, roi, shape, axis, scores, int(doc.get("n_frames", 1)))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise BaselineError(f"{p}: missing or bad field ({exc})") from exc


class RunningBaseline:
    """The install baseline kept current with the most recent clean frames (per-pixel median of both)."""

    def __init__(self, base: Baseline, keep: int):
        self.install = base
        self.recent: deque[np.ndarray] = deque(maxlen=max(0, keep))
        self._current = base

    @property
    def current(self) -> Baseline:
        """The baseline to judge the next frame against."""
        return self._current

    def add_clean(self, gray: np.ndarray, work_px: int, exclude: np.ndarray | None = None) -> None:
        """Add a frame judged clean (exclude: full-size mask of pixels that are not powder, e.g. parts, which do not
        vote); the expected image becomes the per-pixel median of the install and recent frames' powder."""
        if self.recent.maxlen == 0:
            return
        g = work_grid(np.asarray(gray, np.float32), work_px)[0]
        if g.shape != self.install.expected.shape:
            return
        g = exposure_normalise(g, self.install.expected, self.install.roi)
        if exclude is not None and np.any(exclude):
            ex = work_grid(np.asarray(exclude, np.float32), work_px)[0] > 0
            if ex.shape == g.shape:
                g = np.where(ex, np.nan, g).astype(np.float32)
        self.recent.append(g)
        weight = min(self.install.n_frames, len(self.recent) + 1)  # the install median stands for its frames
        stack = [self.install.expected] * weight + list(self.recent)
        exp = np.nanmedian(np.stack(stack), axis=0).astype(np.float32)  # install frames fill what parts covered
        b = self.install
        self._current = Baseline(
            exp, b.roi, b.source_shape, b.travel_axis, b.clean_scores, b.n_frames + len(self.recent)
        )
