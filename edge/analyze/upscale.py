"""The SR source for evaluation and reports: the default model bundle when present, else clearly labelled bicubic."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

DEFAULT_BUNDLE = Path("models/default")


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


def make_upscaler(scale: int, bundle: str | Path | None = None, samples: int = 1) -> Upscaler:
    """The SR model from `bundle` (default models/default) if its manifest exists, else bicubic with a note saying so."""
    path = Path(bundle) if bundle else DEFAULT_BUNDLE
    if (path / "manifest.json").is_file():
        from edge.sr.resolver import SuperResolver

        sr = SuperResolver.from_bundle(path)

        def run(lr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
            res = sr.upscale(lr, samples=samples, uncertainty=samples > 1)
            return res.sr, res.std

        return Upscaler(f"SR {sr.model_id}", True, run, f"super-resolved with model {sr.model_id} from {path}")
    return Upscaler(
        "bicubic (fallback)",
        False,
        lambda lr: (bicubic(lr, scale), None),
        f"NO SR MODEL: {path / 'manifest.json'} not found, so the 'SR' column is plain bicubic upscaling",
    )
