"""A baseline the box learns by itself when none was installed: the first clean recoat frames of its printer.

`BaselineBootstrap` collects recoat frames the zero-config judge calls clean, keeps only those that also agree with
the others (each frame against the median of the rest: a frame whose detector statistics stand out from the
others' is dropped, so a defect too faint for zero-config does not enter), and once it holds
`baseline_bootstrap_frames` of them learns the baseline exactly as `lpbf-edge calib baseline` does. Frames and the
baseline live in a folder of the box's state dir together with the camera/calibration identity they were taken
with; another identity (a re-calibrated or moved camera) sets the folder aside and starts again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import cv2
import numpy as np

from edge.analyze.baseline import Baseline, BaselineError, learn_baseline, load_baseline, median_expected, save_baseline
from edge.analyze.config import AnalyzeConfig
from edge.analyze.powder import work_grid

log = logging.getLogger("edge.analyze.bootstrap")

IDENTITY_FILE = "identity.json"
BASELINE_FILE = "baseline.json"


def identity_digest(identity: dict) -> str:
    """Short stable digest of an identity dict (camera, calibration, frame size)."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _write_atomic(path: Path, data: bytes) -> None:
    """Write bytes so a reader sees the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class BaselineBootstrap:
    """Learns the printer's baseline from the first clean recoat frames; persisted in `folder`, tied to `identity`."""

    def __init__(self, cfg: AnalyzeConfig, folder: str | Path, identity: dict, registered: bool = True):
        self.cfg, self.folder, self.registered = cfg, Path(folder), registered
        self.identity = {**identity, "work_px": cfg.powder_work_px}
        self.digest = identity_digest(self.identity)
        self.want = max(2, cfg.baseline_bootstrap_frames)
        self.frames: list[np.ndarray] = []
        self.names: list[str] = []
        self.rejected = 0
        self.baseline: Baseline | None = None
        self._open()

    # ---- persistence -------------------------------------------------------------------------------------
    def _open(self) -> None:
        """Load what an earlier run collected with the same identity; set aside a folder of another identity."""
        idf = self.folder / IDENTITY_FILE
        if self.folder.exists() and any(self.folder.iterdir()):
            try:
                stored = json.loads(idf.read_text(encoding="utf-8")).get("digest")
            except (OSError, ValueError, AttributeError):
                stored = None
            if stored != self.digest:
                aside = self.folder.with_name(f"{self.folder.name}.stale-{time.strftime('%Y%m%dT%H%M%S')}")
                self.folder.rename(aside)
                log.warning("self-learned baseline set aside: camera or calibration changed",
                            extra={"event": "baseline_invalidated", "old": stored, "new": self.digest,
                                   "moved_to": str(aside)})
        self.folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(idf, (json.dumps({"digest": self.digest, "identity": self.identity}, indent=1, default=str)
                            + "\n").encode())
        for p in sorted(self.folder.glob("frame_*.png")):
            im = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
            if im is not None:
                self.frames.append(im)
                self.names.append(p.name)
        if (self.folder / BASELINE_FILE).exists():
            try:
                self.baseline = load_baseline(self.folder / BASELINE_FILE)
            except BaselineError as exc:
                log.error("self-learned baseline unreadable, learning again: %s", exc,
                          extra={"event": "baseline_unreadable"})

    def _store_frame(self, gray: np.ndarray) -> str:
        """Save one accepted frame (lossless PNG) and return its file name."""
        n = 1 + max([int(s[6:12]) for s in self.names if s[6:12].isdigit()], default=0)
        name = f"frame_{n:06d}.png"
        ok, buf = cv2.imencode(".png", np.clip(np.rint(gray), 0, 255).astype(np.uint8))
        if ok:
            _write_atomic(self.folder / name, buf.tobytes())
        return name

    def _drop(self, i: int) -> None:
        """Remove candidate i (memory and disk)."""
        (self.folder / self.names[i]).unlink(missing_ok=True)
        del self.frames[i], self.names[i]
        self.rejected += 1

    # ---- learning ------------------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """True once the baseline has been learned."""
        return self.baseline is not None

    def offer(self, gray: np.ndarray, clean: bool) -> Baseline | None:
        """Offer a recoat frame the zero-config judge called clean (or not); returns the baseline when it is learned
        by this call, else None."""
        if self.ready:
            return None
        if not clean:
            self.rejected += 1
            return None
        g = np.asarray(gray)
        if self.frames and g.shape != self.frames[0].shape:
            log.warning("recoat frame size changed during bootstrap: starting again",
                        extra={"event": "baseline_bootstrap_reset", "was": list(self.frames[0].shape),
                               "now": list(g.shape)})
            while self.frames:
                self._drop(0)
        self.frames.append(g)
        self.names.append(self._store_frame(g))
        if len(self.frames) < self.want:
            return None
        self._drop_outliers()
        if len(self.frames) < self.want:
            return None
        return self._learn()

    def _drop_outliers(self) -> None:
        """Drop, one at a time, the frame whose statistics against the median of the others stand out most, while
        one does (see outlier_index)."""
        while len(self.frames) >= 3:
            i = outlier_index(self.frames, self.cfg, self.registered)
            if i is None:
                return
            log.info("recoat frame left out of the self-learned baseline: it disagrees with the others",
                     extra={"event": "baseline_bootstrap_outlier", "frame": self.names[i]})
            self._drop(i)

    def _learn(self) -> Baseline:
        """Learn, save and keep the baseline from the accepted frames."""
        from edge.analyze.recoat import clean_scores

        cfg, reg = self.cfg, self.registered
        base = learn_baseline(self.frames, cfg, lambda g, b: clean_scores(g, b, cfg, reg))
        save_baseline(base, self.folder / BASELINE_FILE)
        self.baseline = base
        log.info("self-learned baseline ready: the powder is now judged against this printer's own normal",
                 extra={"event": "baseline_ready", "frames": len(self.frames), "rejected": self.rejected,
                        "path": str(self.folder / BASELINE_FILE), "clean_scores": base.clean_scores})
        return base

    def status(self) -> dict:
        """What health reports about the analysis baseline."""
        return {"source": "self", "state": "ready" if self.ready else "learning", "frames": len(self.frames),
                "frames_needed": self.want, "rejected": self.rejected, "identity": self.digest,
                "path": str(self.folder / BASELINE_FILE) if self.ready else None}


def frame_scores(frames: list[np.ndarray], cfg: AnalyzeConfig, registered: bool) -> list[dict[str, float]]:
    """Detector statistics of each frame against the median of the other frames (baseline-style view)."""
    from edge.analyze.baseline import expected_roi
    from edge.analyze.recoat import clean_scores, travel_axis_of

    grids = [work_grid(np.asarray(f, np.float32), cfg.powder_work_px)[0] for f in frames]
    shape = (int(frames[0].shape[0]), int(frames[0].shape[1]))
    full = median_expected(grids)
    full_roi = expected_roi(full, cfg.powder_border_frac, cfg.powder_dark_frac, cfg.powder_edge_contrast)
    axis = travel_axis_of([g / np.maximum(full, 1e-3) - 1.0 for g in grids], full_roi, cfg)
    out = []
    for i, f in enumerate(frames):
        others = median_expected([g for j, g in enumerate(grids) if j != i])
        roi = expected_roi(others, cfg.powder_border_frac, cfg.powder_dark_frac, cfg.powder_edge_contrast)
        out.append(clean_scores(f, Baseline(others, roi, shape, axis, {}, len(frames) - 1), cfg, registered))
    return out


def outlier_index(frames: list[np.ndarray], cfg: AnalyzeConfig, registered: bool) -> int | None:
    """Index of the frame that disagrees most with the others, or None when all agree. A frame disagrees when one of
    its statistics (against the median of the others) passes both the configured baseline threshold and
    baseline_clean_margin x the median of that statistic over all frames: the frames calibrate each other, so a
    printer whose clean frames all read high is not refused a baseline."""
    scores = frame_scores(frames, cfg, registered)
    floor = {"line": cfg.powder_line_contrast, "mark": cfg.powder_mark_contrast, "level": cfg.powder_level_contrast}
    worst, worst_excess = None, 1.0
    for k, thr in floor.items():
        vals = np.array([s.get(k, 0.0) for s in scores])
        limit = max(thr, cfg.baseline_clean_margin * float(np.median(vals)))
        i = int(np.argmax(vals))
        if vals[i] / limit > worst_excess:
            worst, worst_excess = i, vals[i] / limit
    return worst


class RecoatStage:
    """The box's recoat analyser as a pipeline stage: zero-config until a self-learned baseline is ready (when a
    bootstrap is given), then that baseline, for the recoat frames and for the other powder judges handed in (the
    layer analysers); `baseline_status()` is what health shows."""

    def __init__(self, analyzer, boot: BaselineBootstrap | None = None, judges: tuple = (), status: dict | None = None):
        self.analyzer, self.boot, self.judges = analyzer, boot, tuple(judges)
        self._status = status or {"source": "none", "state": "zero-config"}
        if boot is not None and boot.ready:
            self._switch(boot.baseline)

    def _switch(self, base: Baseline) -> None:
        """From now on every powder judge works against base."""
        for judge in (self.analyzer.judge, *self.judges):
            judge.use_baseline(base)

    def __call__(self, image: np.ndarray, layer: int, _std: np.ndarray | None = None):
        """Analyse one recoat frame; a clean one may complete the self-learned baseline."""
        analysis = self.analyzer.analyze(image, layer)
        if self.boot is None or self.boot.ready or analysis.layer_state == "capture_failed":
            return analysis
        from edge.analyze.segment import as_gray

        clean = analysis.layer_state == "ok" and all(f.severity == "info" for f in analysis.flags)
        base = self.boot.offer(as_gray(np.asarray(image)), clean)
        if base is not None:
            self._switch(base)
        return analysis

    def baseline_status(self) -> dict:
        """Where the powder judges' baseline comes from and, while learning, how far along it is."""
        return self.boot.status() if self.boot is not None else dict(self._status)
