"""The SR source of evaluation and reports: the box's configured SR over a model bundle, else labelled bicubic."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.sr.bundle import BundleError, resolve_bundle_path
from edge.sr.config import SRConfig


def bicubic(lr: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic upscaling by an integer scale (uint8)."""
    return cv2.resize(lr, (lr.shape[1] * scale, lr.shape[0] * scale), interpolation=cv2.INTER_CUBIC)


@dataclass(frozen=True)
class Upscaler:
    """A named LR -> (SR uint8, std or None) function; `is_model` False means the bicubic fallback."""

    name: str
    is_model: bool
    fn: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]
    note: str


def _shown(path: Path) -> str:
    """A path as people read it: relative to the working directory when it lies below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def make_upscaler(scale: int, bundle: str | Path | None = None, sr_cfg: SRConfig | None = None) -> Upscaler:
    """The box's SR (sr_cfg's settings, as edge.service.sr_stage runs them) over the bundle that --model, sr.model,
    $LPBF_MODEL or the shipped models/default names, in that order (edge.sr.bundle.resolve_bundle_path).

    A bundle that was named (--model, sr.model, $LPBF_MODEL) and is missing is an error; a missing shipped default
    falls back to bicubic with a note saying so.
    """
    cfg = sr_cfg or SRConfig()
    path, explicit = resolve_bundle_path(bundle or cfg.model)
    if (path / "manifest.json").is_file():
        from edge.sr.resolver import SuperResolver

        sr = SuperResolver.from_config(cfg.model_copy(update={"model": str(path)}))

        def run(lr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
            res = sr.upscale(
                lr, samples=cfg.samples, reduce=cfg.reduce, uncertainty=cfg.uncertainty and cfg.samples > 1
            )
            return res.sr, res.std

        return Upscaler(f"SR {sr.model_id}", True, run, f"super-resolved with model {sr.model_id} from {_shown(path)}")
    if explicit:
        raise BundleError(
            f"{path}: no model bundle there (no manifest.json); fix --model / sr.model / $LPBF_MODEL "
            "or leave them unset to use the shipped models/default"
        )
    return Upscaler(
        "bicubic (fallback)",
        False,
        lambda lr: (bicubic(lr, scale), None),
        f"NO SR MODEL: {path / 'manifest.json'} not found, so the 'SR' column is plain bicubic upscaling",
    )
