"""The box's super-resolution stage: LR layers -> the published sample, the estimate geometry reads, the spread.

One code path for the box (edge.app.sr_stage) and for `lpbf-edge evaluate --paths ... sr` (edge.analyze.paths_eval),
so what is measured is what the box runs. The sample is what people see (and what texture metrics read); the
estimate is a posterior-mean-like image that segmentation, 3D and roughness read (never the grain of one sample);
`sr.geometry` says which estimate (docs/analysis.md measures the candidates):

- `regression`: the bundle's pixel regression CNN (the estimate the denoiser is conditioned on, trained with an L1
  loss: a median/mean estimate), one call on the whole LR layer;
- `mean`: the mean of `sr.samples` grain-capped samples (the same ones the spread is taken over);
- `bicubic`: bicubic upscaling of the LR;
- `sample`: the published sample itself (what the box did before);
- `auto` (default): regression when the bundle ships it, else mean with sr.samples >= 2, else bicubic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge.imaging import to_u8, to_unit
from edge.sr.config import SRConfig

Progress = Callable[[int, int], None]
SEED_STRIDE = 7919  # sample j of a layer runs with seed sr.seed + j * SEED_STRIDE


@dataclass(frozen=True)
class SROutput:
    """One layer out of the SR stage: sample (uint8, published; the mean with sr.reduce mean), estimate (uint8,
    geometry), std (float32 gray levels, after the grain cap; None without the spread), model, timings."""

    sample: np.ndarray
    estimate: np.ndarray
    std: np.ndarray | None
    model_id: str
    timings_s: dict[str, float] = field(default_factory=dict)


def bicubic_up(lr: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic upscaling by an integer scale (uint8)."""
    return cv2.resize(lr, (lr.shape[1] * scale, lr.shape[0] * scale), interpolation=cv2.INTER_CUBIC)


def resolve_geometry(cfg: SRConfig, bundle) -> tuple[str, str]:
    """(the estimate geometry reads, why when auto chose it) for sr.geometry and the bundle; clear errors."""
    has_reg = bundle.has_graph("pixel_regression")
    choice = cfg.geometry
    if choice == "auto":
        if has_reg:
            return "regression", ""
        if cfg.samples >= 2:
            return "mean", " (auto: the bundle has no pixel_regression.onnx)"
        return "bicubic", " (auto: the bundle has no pixel_regression.onnx and sr.samples is 1)"
    if choice == "regression" and not has_reg:
        from edge.sr.bundle import BundleError

        raise BundleError(f"{bundle.path}: sr.geometry 'regression' needs the bundle's pixel_regression.onnx; "
                          "set sr.geometry to auto, mean (with sr.samples >= 2), bicubic or sample")
    if choice == "mean" and cfg.samples < 2:
        raise ValueError("sr.geometry 'mean' needs sr.samples >= 2 (the mean of one sample is its grain)")
    return choice, ""


class PixelRegression:
    """The bundle's pixel regression graph (LR -> HR in one call, fully convolutional) on ONNX Runtime."""

    def __init__(self, path, threads: int | None = None):
        from edge.sr.runners import ort_session

        self.session = ort_session(path, threads)
        self.name = self.session.get_inputs()[0].name

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        """uint8 LR -> uint8 HR estimate."""
        y = self.session.run(None, {self.name: to_unit(lr)[None, None]})[0][0, 0]
        return to_u8(y)


class SRStage:
    """The configured SuperResolver plus the geometry estimate (`sr.geometry`) and the spread (`sr.samples` >= 2)."""

    def __init__(self, cfg: SRConfig | None = None, resolver=None):
        from edge.sr.resolver import SuperResolver

        self.cfg = cfg = cfg or SRConfig()
        self.resolver = resolver or SuperResolver.from_config(cfg)
        self.scale = self.resolver.scale
        self.geometry, self.geometry_why = resolve_geometry(cfg, self.resolver.bundle)
        self.regression = None
        if self.geometry == "regression":
            self.regression = PixelRegression(self.resolver.bundle.graph("pixel_regression"))

    def describe(self) -> str:
        """What runs: the resolver line, the geometry estimate and the number of samples."""
        return (f"{self.resolver.describe()}; geometry reads {self.geometry}{self.geometry_why}; "
                f"{self.cfg.samples} sample(s){', spread on' if self.spread else ''}")

    @property
    def spread(self) -> bool:
        """Whether the per-pixel spread is computed (sr.uncertainty with sr.samples >= 2)."""
        return self.cfg.uncertainty and self.cfg.samples > 1

    def run(self, lr: np.ndarray) -> SROutput:
        """One layer."""
        return self.run_many([lr])[0]

    def run_many(self, lrs: Sequence[np.ndarray], progress: Progress | None = None) -> list[SROutput]:
        """Several layers, their tiles sharing batches (edge.sr.resolver.SuperResolver.upscale_many).

        With sr.samples K >= 2 (for the spread, the mean estimate or a published mean) the K samples are K calls
        with seeds seed, seed + SEED_STRIDE, ..., each grain-capped as the published sample is: spread and mean are
        taken over what the box would publish, after the grain cap (the resolver's own spread is taken before it).
        """
        cfg = self.cfg
        stacks = self._samples(lrs, progress)
        out = []
        for i, lr in enumerate(lrs):
            t = time.perf_counter()
            runs = [s[i] for s in stacks]
            sample, std, mean = runs[0].sr, None, None
            if len(runs) > 1:
                stack = np.stack([r.sr for r in runs]).astype(np.float32)
                mean = np.clip(np.rint(stack.mean(0)), 0, 255).astype(np.uint8)
                std = stack.std(0) if self.spread else None
            if self.geometry == "regression":
                est = self.regression(lr)
            elif self.geometry == "bicubic":
                est = bicubic_up(lr, self.scale)
            else:
                est = mean if self.geometry == "mean" else sample
            published = mean if cfg.reduce == "mean" and mean is not None else sample
            timings = dict(runs[0].timings_s, samples=float(len(runs)), estimate=time.perf_counter() - t)
            out.append(SROutput(published, est, std, runs[0].model_id, timings))
        return out

    def _samples(self, lrs: Sequence[np.ndarray], progress: Progress | None) -> list[list]:
        """K lists of SRResults (one per sample seed); one list when a single sample is all that is needed."""
        cfg, res = self.cfg, self.resolver
        k = cfg.samples if (self.spread or self.geometry == "mean" or cfg.reduce == "mean") else 1
        seed0, stacks = res.seed, []
        try:
            for j in range(k):
                res.seed = seed0 + SEED_STRIDE * j
                stacks.append(res.upscale_many(lrs, samples=1, reduce="sample", progress=progress))
        finally:
            res.seed = seed0
        return stacks
