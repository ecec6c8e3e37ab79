"""Labelled LPBF defects: seeded schedule over the build and their visual signatures on one layer."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

DEFECT_TYPES = (
    "recoater_streak",
    "recoater_hopping",
    "incomplete_spreading",
    "super_elevation",
    "debris",
    "part_geometry_deviation",
)
_WEIGHTS = (0.25, 0.15, 0.1, 0.2, 0.15, 0.15)
_DURATION = {  # (min, max) layers an event persists
    "recoater_streak": (3, 8),
    "recoater_hopping": (1, 1),
    "incomplete_spreading": (1, 2),
    "super_elevation": (3, 10),
    "debris": (1, 1),
    "part_geometry_deviation": (3, 8),
}


@dataclass(frozen=True)
class DefectEvent:
    """One defect: type, the layers it is present on, and its fixed parameters (HR pixels unless named _mm)."""

    id: int
    type: str
    first_layer: int
    last_layer: int
    params: dict = field(default_factory=dict)

    def active(self, layer: int) -> bool:
        """Whether the defect shows on this layer."""
        return self.first_layer <= layer <= self.last_layer

    def to_json(self) -> dict:
        """Entry of build.json `defects`."""
        return {
            "id": self.id,
            "type": self.type,
            "first_layer": self.first_layer,
            "last_layer": self.last_layer,
            "params": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.params.items()},
        }


def schedule_defects(rng: np.random.Generator, layers: int, rate: float, part_ids: list[int], n: int,
                     pitch_mm: float) -> list[DefectEvent]:
    """Draw defect events: Poisson(rate) new events per layer, each with a type, duration and parameters."""
    events: list[DefectEvent] = []
    mm = 1.0 / pitch_mm
    for layer in range(1, layers + 1):
        for _ in range(int(rng.poisson(rate))):
            kind = DEFECT_TYPES[int(rng.choice(len(DEFECT_TYPES), p=_WEIGHTS))]
            lo, hi = _DURATION[kind]
            last = min(layers, layer + int(rng.integers(lo, hi + 1)) - 1)
            if kind == "recoater_streak":
                p = {"x": int(rng.integers(int(8 * mm), n - int(8 * mm))), "y0": int(rng.integers(0, n // 2)),
                     "width": int(rng.integers(1, 3)), "depth": float(rng.uniform(30, 45))}
            elif kind == "recoater_hopping":
                p = {"part_id": int(rng.choice(part_ids)), "length_mm": float(rng.uniform(8, 18)),
                     "period_mm": float(rng.uniform(1.2, 2.5)), "amplitude": float(rng.uniform(16, 24))}
            elif kind == "incomplete_spreading":
                p = {"short_mm": float(rng.uniform(4, 14)), "wave_mm": float(rng.uniform(0.5, 2.5)),
                     "phase": float(rng.uniform(0, 6.28))}
            elif kind == "super_elevation":
                p = {"part_id": int(rng.choice(part_ids)), "side_deg": float(rng.choice([90.0, 0.0, 180.0, 270.0])),
                     "gain": float(rng.uniform(1.5, 1.8))}
            elif kind == "debris":
                p = {"cx": int(rng.integers(int(10 * mm), n - int(10 * mm))),
                     "cy": int(rng.integers(int(10 * mm), n - int(10 * mm))),
                     "rx_mm": float(rng.uniform(0.8, 3.0)), "ry_mm": float(rng.uniform(0.5, 1.5)),
                     "angle_deg": float(rng.uniform(0, 180)),
                     "delta": float(rng.choice([-1, 1]) * rng.uniform(45, 70))}
            else:
                p = {"part_id": int(rng.choice(part_ids)), "direction_deg": float(rng.uniform(0, 360)),
                     "radius_mm": float(rng.uniform(0.8, 2.5))}
            events.append(DefectEvent(len(events) + 1, kind, layer, last, p))
    return events


def _bbox(ys: np.ndarray, xs: np.ndarray) -> list[int]:
    """[x, y, w, h] of pixel coordinates."""
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
    return [x0, y0, x1 - x0 + 1, y1 - y0 + 1]


def _label(ev: DefectEvent, layer: int, bbox: list[int], critical: bool) -> dict:
    """One label entry of labels/NNNNN.json."""
    return {"type": ev.type, "bbox": bbox, "severity": "critical" if critical else "minor", "layer": layer,
            "defect_id": ev.id, "layers_persisted": layer - ev.first_layer + 1}


def apply_geometry_deviations(
    mask: np.ndarray, events: list[DefectEvent], layer: int, pitch_mm: float
) -> tuple[list[dict], np.ndarray]:
    """Swell parts in place (a bulge on the boundary, added to the mask); return labels and the bulge pixels."""
    labels = []
    bulge = np.zeros(mask.shape, bool)
    for ev in events:
        if ev.type != "part_geometry_deviation" or not ev.active(layer):
            continue
        pid = ev.params["part_id"]
        ys, xs = np.nonzero(mask == pid)
        if ys.size == 0:
            continue
        cy, cx = ys.mean(), xs.mean()
        a = math.radians(ev.params["direction_deg"])
        dx, dy = math.cos(a), math.sin(a)
        # walk out from the centroid to the last part pixel along the ray
        reach = np.clip(((xs - cx) * dx + (ys - cy) * dy), 0, None)
        on_ray = np.abs(-(xs - cx) * dy + (ys - cy) * dx) < 2.0
        t = float(reach[on_ray].max()) if on_ray.any() else float(reach.max())
        bx, by = int(round(cx + t * dx)), int(round(cy + t * dy))
        rad = max(int(round(ev.params["radius_mm"] / pitch_mm)), 2)
        disk = np.zeros_like(mask)
        cv2.circle(disk, (bx, by), rad, 1, -1)
        add = (disk > 0) & (mask == 0)
        if not add.any():
            continue
        mask[add] = pid
        bulge |= add
        yy, xx = np.nonzero(add)
        labels.append(_label(ev, layer, _bbox(yy, xx), ev.params["radius_mm"] > 1.5))
    return labels, bulge


def apply_surface_defects(
    img: np.ndarray, mask: np.ndarray, events: list[DefectEvent], layer: int, pitch_mm: float,
    powder_mean: float, rng: np.random.Generator,
) -> list[dict]:
    """Draw every surface defect active on this layer into the float image in place; return their labels."""
    n = img.shape[0]
    labels: list[dict] = []
    powder = mask == 0
    for ev in events:
        if not ev.active(layer):
            continue
        p = ev.params
        if ev.type == "recoater_streak":
            x, y0, w = p["x"], p["y0"], p["width"]
            along = 1.0 + 0.15 * np.sin(np.arange(n - y0, dtype=np.float32) / 9.0)[:, None]
            img[y0:, x : x + w] -= p["depth"] * along
            img[y0:, max(x - 1, 0)] += 0.25 * p["depth"]
            img[y0:, min(x + w, n - 1)] += 0.25 * p["depth"]
            crosses_part = bool((mask[y0:, x : x + w] > 0).any())
            labels.append(_label(ev, layer, [max(x - 1, 0), y0, w + 2, n - y0],
                                 crosses_part or layer - ev.first_layer >= 4))
        elif ev.type == "recoater_hopping":
            ys, xs = np.nonzero(mask == p["part_id"])
            if ys.size == 0:
                continue
            y0 = int(ys.max()) + 2
            y1 = min(n, y0 + int(p["length_mm"] / pitch_mm))
            x0, x1 = int(xs.min()), int(xs.max()) + 1
            if y1 - y0 < 4:
                continue
            period = p["period_mm"] / pitch_mm
            band = (p["amplitude"] * np.sin(2 * math.pi * np.arange(y1 - y0, dtype=np.float32) / period))[:, None]
            region = img[y0:y1, x0:x1]
            region += np.where(powder[y0:y1, x0:x1], band, 0.0).astype(np.float32)
            labels.append(_label(ev, layer, [x0, y0, x1 - x0, y1 - y0], p["amplitude"] > 20))
        elif ev.type == "incomplete_spreading":
            xs = np.arange(n, dtype=np.float32)
            wave = (np.sin(2 * math.pi * xs / n * 1.5 + p["phase"])
                    + 0.35 * np.sin(2 * math.pi * xs / n * 7.0 + 2.1 * p["phase"]))
            edge = n - p["short_mm"] / pitch_mm + p["wave_mm"] / pitch_mm * wave / 1.35
            ys = np.arange(n, dtype=np.float32)[:, None]
            bare = (ys >= edge[None, :]) & powder
            smooth = cv2.GaussianBlur(img, (0, 0), 3.0)
            img[bare] = 0.5 * smooth[bare] + 0.08 * (img[bare] - smooth[bare])
            y_top = int(max(0, math.floor(edge.min())))
            labels.append(_label(ev, layer, [0, y_top, n, n - y_top], p["short_mm"] > 8))
        elif ev.type == "super_elevation":
            pid = p["part_id"]
            part = (mask == pid).astype(np.uint8)
            if not part.any():
                continue
            inner = cv2.erode(part, np.ones((7, 7), np.uint8))
            rim = (part > 0) & (inner == 0)
            ys, xs = np.nonzero(part)
            cy, cx = ys.mean(), xs.mean()
            a = math.radians(p["side_deg"])
            yy, xx = np.nonzero(rim)
            side = ((xx - cx) * math.cos(a) + (yy - cy) * math.sin(a)) > 0.35 * np.abs(
                (xs - cx) * math.cos(a) + (ys - cy) * math.sin(a)).max()
            yy, xx = yy[side], xx[side]
            if yy.size < 5:
                continue
            img[yy, xx] = p["gain"] * powder_mean + rng.normal(0, 1.5, yy.size).astype(np.float32)
            labels.append(_label(ev, layer, _bbox(yy, xx), layer - ev.first_layer >= 3))
        elif ev.type == "debris":
            blob = np.zeros((n, n), np.uint8)
            axes = (max(int(p["rx_mm"] / pitch_mm), 2), max(int(p["ry_mm"] / pitch_mm), 2))
            cv2.ellipse(blob, (p["cx"], p["cy"]), axes, p["angle_deg"], 0, 360, 1, -1)
            yy, xx = np.nonzero(blob)
            img[yy, xx] = 0.35 * img[yy, xx] + 0.65 * (powder_mean + p["delta"])
            labels.append(_label(ev, layer, _bbox(yy, xx), 2 * max(p["rx_mm"], p["ry_mm"]) > 4.0))
    return labels
