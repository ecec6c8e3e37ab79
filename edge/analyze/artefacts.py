"""No flag from an SR artefact: detectors that react to saturation, seams or invented texture confirm on the LR.

The LR is what the webcam measured; the SR image is a model's reading of it. A saturated region, a particle or a
mark the SR image shows but the LR does not is the model's (saturation of a bright corner, a tile seam, hallucinated
grain), so with the LR at hand:

- `laser_in_image` comes from the LR alone (saturation is a sensor fact), its box scaled to the image grid;
- `debris`, `scratch` and `spatter` stay only where the LR shows local contrast there too: the LR residual against a
  median background, in robust sigmas of the whole LR's residual, reaches `lr_confirm_sigma` inside the flag's box
  (spatter: at least `lr_confirm_min_px` such LR pixels in its box, more than chance would give).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import ndimage

from edge.analyze import anomaly as an
from edge.analyze.config import AnalyzeConfig
from edge.messages import AnomalyFlag

CONFIRMED_ON_LR = ("debris", "scratch", "spatter")
_BACKGROUND_LR_PX = 7  # median background window on the LR (a debris blob is 2-5 LR px at the sim's pitch)


def lr_residual_z(lr: np.ndarray) -> np.ndarray:
    """|LR - median background| in robust sigmas of the whole LR's residual."""
    g = np.asarray(lr, dtype=np.float64)
    res = g - ndimage.median_filter(g, size=_BACKGROUND_LR_PX, mode="reflect")
    _, sig = an.robust_sigma(res)
    return np.abs(res) / max(sig, 1e-6)


def _lr_box(bbox, f: float, shape: tuple[int, int], pad: int = 1) -> tuple[slice, slice]:
    """An image-grid [x, y, w, h] box on the LR grid (f = LR px per image px), grown by pad LR px."""
    x, y, w, h = bbox
    x0, y0 = max(0, int(np.floor(x * f)) - pad), max(0, int(np.floor(y * f)) - pad)
    x1, y1 = min(shape[1], int(np.ceil((x + w) * f)) + pad), min(shape[0], int(np.ceil((y + h) * f)) + pad)
    return slice(y0, max(y1, y0 + 1)), slice(x0, max(x1, x0 + 1))


def _scaled(flag: AnomalyFlag, k: float) -> AnomalyFlag:
    """A flag found on the LR, its box and area on an image k times larger."""
    x, y, w, h = flag.bbox
    box = (int(x * k), int(y * k), max(1, int(round(w * k))), max(1, int(round(h * k))))
    return replace(flag, bbox=box, area_px=int(round(flag.area_px * k * k)))


def laser_from_lr(lr: np.ndarray, image_shape: tuple[int, int], cfg: AnalyzeConfig,
                  s_image: float) -> list[AnomalyFlag]:
    """laser_in_image as the LR shows it, on the image grid."""
    k = image_shape[1] / lr.shape[1]
    return [_scaled(f, k) for f in an.detect_laser(np.asarray(lr, dtype=np.float64), cfg, s_image / k)]


def confirm_on_lr(flags: list[AnomalyFlag], lr: np.ndarray | None, image_shape: tuple[int, int],
                  cfg: AnalyzeConfig) -> list[AnomalyFlag]:
    """Drop debris / scratch / spatter flags the LR gives no contrast for (all flags pass when lr is None)."""
    if lr is None or not any(f.type in CONFIRMED_ON_LR for f in flags):
        return flags
    z = lr_residual_z(lr)
    f = lr.shape[1] / image_shape[1]
    hot = z >= cfg.lr_confirm_sigma
    out = []
    for fl in flags:
        if fl.type not in CONFIRMED_ON_LR:
            out.append(fl)
            continue
        box = _lr_box(fl.bbox, f, lr.shape)
        win = hot[box]
        n = int(win.sum())
        if fl.type == "spatter":  # more LR particles in the box than the rest of the LR gives by chance
            rest = max(1, hot.size - win.size)
            chance = (int(hot.sum()) - n) / rest
            keep = n >= cfg.lr_confirm_min_px and n > 2.0 * chance * win.size
        else:
            keep = n > 0
        if keep:
            out.append(fl)
    return out
