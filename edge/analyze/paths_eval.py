"""`lpbf-edge evaluate BUILD --paths hr,bicubic,sr --json FILE`: what the box's analysis gives on each image path.

Per path, every layer goes through the box's own `LayerAnalyzer` (registered frames, default or configured
`analyze` section, the printer baseline a box learns at install from clean spread frames of the same printer when the
build is a sim build) twice: without CAD masks (geometry against the previous layer) and with them (build expected/
or the sim's part geometry). Geometry (2D/3D IoU, roughness) is read from the masks the analyser without CAD masks
returns; detection is scored against the build's defect labels (edge.analyze.scoring). Paths:

- `hr`: the Basler-like HR image (the reference the SR tries to reach);
- `bicubic`: the registered webcam layer (LR) upscaled bicubic;
- `sr`: the box's configured SR stage (edge.sr_stage.SRStage over SuperResolver.from_config, the box's default
  config and profile unless --config says otherwise): the published sample, the estimate `sr.geometry` names for
  geometry, the spread when `sr.uncertainty` is on, and the LR for the artefact checks, exactly as the box hands them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from edge.analyze import roughness as rg
from edge.analyze import volume as vo
from edge.analyze.build_io import Build, expected_masks, open_build
from edge.analyze.config import AnalyzeConfig
from edge.analyze.evaluate import _assign_parts, roughness_part
from edge.analyze.layer import LayerAnalyzer
from edge.analyze.scoring import Score
from edge.sr.config import SRConfig

PATHS = ("hr", "bicubic", "sr")
ROUGHNESS_WINDOW_DEG = 3  # the comparison window (fine boundary detail: where one sample's grain shows)


@dataclass(frozen=True)
class PathInput:
    """What one path hands the analyser for one layer: the image flags are drawn on, the estimate geometry reads
    (None: the image), the SR spread (None: none), the LR the artefact checks confirm on (None: no LR, e.g. HR)."""

    image: np.ndarray
    estimate: np.ndarray | None = None
    std: np.ndarray | None = None
    lr: np.ndarray | None = None

    def analyze(self, analyzer: LayerAnalyzer, layer: int):
        """Run the box's analyser on this input."""
        return analyzer.analyze(self.image, layer, self.std, estimate=self.estimate, lr=self.lr)


def parse_paths(text: str) -> tuple[str, ...]:
    """'hr,bicubic,sr' -> ('hr', 'bicubic', 'sr'); a clear error for unknown or repeated names."""
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in names if p not in PATHS]
    if not names or bad or len(set(names)) != len(names):
        raise ValueError(f"--paths must list some of {', '.join(PATHS)} once each (comma-separated), got {text!r}")
    return names


def sim_plan(build: Build):
    """The sim plan of a sim build (for install frames), else None."""
    if not str(build.meta.get("format", "")).startswith("lpbf-edge-sim-build"):
        return None
    from edge.sim.build import load_plan

    return load_plan(build.path)


def install_frames(build: Build, k: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(HR, LR) of k clean spread frames of the build's printer (sim builds; [] otherwise or for k = 0)."""
    plan = sim_plan(build) if k > 0 else None
    if plan is None:
        return [], []
    from edge.sim.build import render_powder_frame

    frames = [render_powder_frame(plan, i, cameras=True) for i in range(k)]
    return [f.hr for f in frames], [f.lr for f in frames]


def path_inputs(path: str, hrs: Sequence[np.ndarray], lrs: Sequence[np.ndarray], scale: int, stage=None,
                progress: Callable[[int, int], None] | None = None) -> list[PathInput]:
    """The analyser inputs of every image of a path (SR: one SRStage.run_many call over all images)."""
    if path == "hr":
        return [PathInput(h) for h in hrs]
    if path == "bicubic":
        from edge.sr_stage import bicubic_up

        return [PathInput(bicubic_up(lr, scale), lr=lr) for lr in lrs]
    outs = stage.run_many(list(lrs), progress=progress)
    return [PathInput(o.sample, o.estimate, o.std, lr) for o, lr in zip(outs, lrs, strict=False)]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks (1 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def geometry_scores(masks: list[np.ndarray], gts: list[np.ndarray], pitch_um: float,
                    window_deg: int = ROUGHNESS_WINDOW_DEG) -> dict:
    """2D IoU (mean over layers), 3D IoU (mean over parts, nearest-part assignment), Ra/Rq of the roughness part."""
    iou2d = float(np.mean([_iou(m > 0, g > 0) for m, g in zip(masks, gts, strict=False)]))
    ids = vo.part_ids(gts)
    if not ids:
        return {"iou2d": iou2d, "iou3d": None, "ra_um": None, "rq_um": None, "roughness_part": None}
    per_layer = [_assign_parts(m > 0, g) for m, g in zip(masks, gts, strict=False)]
    empty = np.zeros(gts[0].shape, bool)
    iou3d = float(np.mean([vo.iou_3d(np.stack([d.get(k, empty) for d in per_layer]), vo.stack_masks(gts, part=k))
                           for k in ids]))
    big = roughness_part(gts, ids)
    r = rg.part_roughness([d.get(big, empty) for d in per_layer], window_deg, pitch_um)
    ok = lambda v: float(v) if v is not None and np.isfinite(v) else None  # noqa: E731
    return {"iou2d": iou2d, "iou3d": iou3d, "ra_um": ok(r.ra_um), "rq_um": ok(r.rq_um), "roughness_part": big}


def _learn_baseline(frames: list[PathInput], cfg: AnalyzeConfig):
    """The printer baseline from a path's clean install frames (what `calib baseline --registered` learns)."""
    if not frames:
        return None
    from edge.analyze.baseline import learn_baseline
    from edge.analyze.recoat import clean_scores

    seen = [f.estimate if f.estimate is not None else f.image for f in frames]  # what the powder judge will read
    return learn_baseline(seen, cfg, lambda g, b: clean_scores(g, b, cfg, registered=True))


def score_path(build: Build, inputs: list[PathInput], install: list[PathInput], cfg: AnalyzeConfig,
               expected: dict | None, gts: list[np.ndarray]) -> dict:
    """Geometry and detection numbers of one path (see the module docstring)."""
    hr_w = gts[0].shape[1]  # labels and masks are on the HR grid
    base = _learn_baseline(install, cfg)
    runs = {"plain": LayerAnalyzer(cfg, None, base, registered=True)}
    if expected is not None:
        runs["cad"] = LayerAnalyzer(cfg, expected, _learn_baseline(install, cfg), registered=True)
    scores = {k: Score() for k in runs}
    masks = []
    for L, inp in zip(build.layers, inputs, strict=False):
        labels = build.labels(L)
        f = inp.image.shape[1] / hr_w
        for key, analyzer in runs.items():
            res = inp.analyze(analyzer, L)
            scores[key].add(labels, res.flags, res.layer_state, f, margin=max(2, int(4 * f)))
            if key == "plain":
                masks.append(np.asarray(res.mask) > 0)
    gts_on_grid = [_to_grid(g, m.shape) for g, m in zip(gts, masks, strict=False)]
    out = geometry_scores(masks, gts_on_grid, build.hr_pitch_um * hr_w / masks[0].shape[1])
    plain = scores["plain"].summary()
    out.update(critical_recall=plain["critical_recall"], clean_false_alarm_rate=plain["clean_false_alarm_rate"],
               critical_labels=plain["critical_labels"], clean_layers=plain["clean_layers"],
               clean_false_alarm_types=plain["clean_false_alarm_types"])
    if "cad" in scores:
        cad = scores["cad"].summary()
        out["cad"] = {k: cad[k] for k in ("critical_recall", "clean_false_alarm_rate", "clean_false_alarm_types")}
    else:
        out["cad"] = {"critical_recall": None, "clean_false_alarm_rate": None}
    return out


def _to_grid(gt: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A label mask resized (nearest) to an analysis grid."""
    if gt.shape == tuple(shape[:2]):
        return gt
    import cv2

    return cv2.resize(gt, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


def evaluate_paths(build_dir, paths: Sequence[str], cfg: AnalyzeConfig, sr_cfg: SRConfig | None = None,
                   max_layers: int = 0, install_k: int = 3, echo: Callable[[str], None] = print, stage=None) -> dict:
    """{"build", "layers", "paths": {path: {...}}, "sr": what ran} for a build with hr/, lr/ and masks/."""
    b = open_build(build_dir, max_layers)
    if not (b.has("hr") and b.has("masks")):
        raise FileNotFoundError(f"{b.path}: evaluate --paths needs hr/ and masks/ (ground truth) besides lr/")
    hrs = [b.image("hr", L) for L in b.layers] if "hr" in paths else []
    lrs = [b.image("lr", L) for L in b.layers]
    gts = [b.mask(L) for L in b.layers]
    exp, exp_note = expected_masks(b)
    hr_install, lr_install = install_frames(b, install_k)
    truth = geometry_scores([g > 0 for g in gts], gts, b.hr_pitch_um)  # the parts' own outline roughness
    doc: dict = {"build": str(b.path), "layers": list(b.layers), "expected_masks": exp_note,
                 "install_frames": len(lr_install), "roughness_window_deg": ROUGHNESS_WINDOW_DEG,
                 "ground_truth": {"ra_um": truth["ra_um"], "rq_um": truth["rq_um"]}, "paths": {}}
    if "sr" in paths and stage is None:
        from edge.sr_stage import SRStage

        stage = SRStage(sr_cfg or SRConfig())
    for path in paths:
        t0 = time.perf_counter()
        n = len(lrs)
        if path == "sr":
            doc["sr"] = stage.describe()
            echo(f"sr: {doc['sr']}")
        inputs = path_inputs(path, hrs + hr_install, lrs + lr_install, b.scale, stage)
        t_img = time.perf_counter() - t0
        res = score_path(b, inputs[:n], inputs[n:], cfg, exp, gts)
        res["seconds"] = {"images": round(t_img, 2), "total": round(time.perf_counter() - t0, 2)}
        doc["paths"][path] = res
        echo(f"{path}: iou2d {_f(res['iou2d'])} iou3d {_f(res['iou3d'])} Ra {_f(res['ra_um'])} um, critical recall "
             f"{_f(res['critical_recall'])}, clean false alarms {_f(res['clean_false_alarm_rate'])} "
             f"(CAD {_f(res['cad']['critical_recall'])} / {_f(res['cad']['clean_false_alarm_rate'])}); "
             f"{res['seconds']['total']:.0f} s")
    return doc


def _f(v) -> str:
    """A number for the progress line."""
    return "-" if v is None else f"{v:.3f}"
