"""Drawing of part contours and anomaly flags on a layer image."""

from __future__ import annotations

import cv2
import numpy as np

from edge.messages import AnomalyFlag

COLORS = {"critical": (40, 40, 230), "minor": (0, 190, 255)}  # BGR


def draw_flags(gray: np.ndarray, mask: np.ndarray | None, flags: tuple[AnomalyFlag, ...] | list[AnomalyFlag],
               state: str) -> np.ndarray:
    """BGR image: parts outlined in green, flags as boxes with type labels, layer state in the corner."""
    g = np.clip(np.asarray(gray, dtype=np.float64), 0, 255).astype(np.uint8)
    out = cv2.cvtColor(g, cv2.COLOR_GRAY2BGR)
    th = max(1, round(out.shape[1] / 600))
    fs = max(0.35, out.shape[1] / 1600)
    if mask is not None and mask.any():
        cs, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, cs, -1, (60, 200, 60), th)
    for f in flags:
        x, y, w, h = f.bbox
        c = COLORS.get(f.severity, (255, 255, 255))
        cv2.rectangle(out, (x, y), (x + max(w, 1) - 1, y + max(h, 1) - 1), c, th)
        label = f"{f.type} {f.score:.1f}" + (f" x{f.layers_persisted}" if f.layers_persisted > 1 else "")
        cv2.putText(out, label, (x + 2, max(12, y - 3)), cv2.FONT_HERSHEY_SIMPLEX, fs, c, th, cv2.LINE_AA)
    cv2.putText(out, state, (8, int(28 * fs * 2)), cv2.FONT_HERSHEY_SIMPLEX, fs * 1.5, COLORS.get(state, (60, 200, 60)),
                th + 1, cv2.LINE_AA)
    return out
