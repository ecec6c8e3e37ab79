"""Parametric 3D parts (rings, dog-bones, squares, lattice, thin wall, overhang) and their per-layer masks."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

PART_KINDS = ("ring", "dogbone", "square", "lattice", "thin_wall", "overhang")
_SHIFT = 4  # sub-pixel bits for OpenCV drawing
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class Part:
    """One part: kind, centre and in-plane size in mm, rotation, height, and how its section changes with z."""

    id: int
    kind: str
    center_mm: tuple[float, float]
    size_mm: tuple[float, float]
    angle_deg: float
    height_mm: float
    params: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """Parametric description for build.json."""
        return {
            "id": self.id,
            "kind": self.kind,
            "center_mm": [round(v, 4) for v in self.center_mm],
            "size_mm": [round(v, 4) for v in self.size_mm],
            "angle_deg": round(self.angle_deg, 4),
            "height_mm": round(self.height_mm, 4),
            "z_dependence": {k: (round(v, 5) if isinstance(v, float) else v) for k, v in self.params.items()},
        }


def _rot(pts: np.ndarray, deg: float) -> np.ndarray:
    """Rotate Nx2 points about the origin by deg (image coords, y down)."""
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return pts @ np.array([[c, s], [-s, c]])


def _to_px(pts_mm: np.ndarray, pitch_mm: float) -> np.ndarray:
    """mm (plate frame, origin at the top-left plate corner) -> fixed-point pixel coordinates for cv2."""
    px = pts_mm / pitch_mm - 0.5
    return np.round(px * _ONE).astype(np.int32)


def _fill(mask: np.ndarray, pts_mm: np.ndarray, value: int, pitch_mm: float) -> None:
    """Fill one polygon given in mm."""
    cv2.fillPoly(mask, [_to_px(pts_mm, pitch_mm)], int(value), lineType=cv2.LINE_8, shift=_SHIFT)


def _rect(cx: float, cy: float, w: float, h: float, deg: float) -> np.ndarray:
    """Corners of a w x h rectangle centred at (cx, cy), rotated by deg."""
    base = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
    return _rot(base, deg) + (cx, cy)


def _dogbone_outline(length: float, grip_w: float, gauge_w: float, gauge_len: float) -> np.ndarray:
    """Outline of a flat tensile bar along x, centred at the origin, with tapered shoulders."""
    hl, hg = length / 2, gauge_len / 2
    shoulder = (hl - hg) * 0.35
    gw, ww = grip_w / 2, gauge_w / 2
    top = [(-hl, -gw), (-hg - shoulder, -gw), (-hg, -ww), (hg, -ww), (hg + shoulder, -gw), (hl, -gw)]
    bottom = [(x, -y) for x, y in reversed(top)]
    return np.array(top + bottom, dtype=np.float64)


def draw_part(mask: np.ndarray, part: Part, z_mm: float, pitch_mm: float, label: int | None = None) -> None:
    """Rasterise the cross-section of `part` at height z_mm into `mask` with its label (nothing above its top)."""
    if z_mm >= part.height_mm:
        return
    lab = part.id if label is None else label
    cx, cy = part.center_mm
    w, h = part.size_mm
    p = part.params
    if part.kind == "ring":
        r_out = w / 2 + p["radius_slope"] * z_mm
        r_in = max(r_out - p["wall_mm"], 0.0)
        c = tuple(int(v) for v in _to_px(np.array([cx, cy]), pitch_mm))
        cv2.circle(mask, c, int(round(r_out / pitch_mm * _ONE)), int(lab), -1, cv2.LINE_8, _SHIFT)
        if r_in > 0:
            cv2.circle(mask, c, int(round(r_in / pitch_mm * _ONE)), 0, -1, cv2.LINE_8, _SHIFT)
    elif part.kind == "dogbone":
        gauge = max(p["gauge_w_mm"] + p["gauge_slope"] * z_mm, 0.4)
        outline = _dogbone_outline(w, h, gauge, p["gauge_len_mm"])
        _fill(mask, _rot(outline, part.angle_deg) + (cx, cy), lab, pitch_mm)
    elif part.kind == "square":
        _fill(mask, _rect(cx, cy, w, h, part.angle_deg + p["twist_deg_per_mm"] * z_mm), lab, pitch_mm)
    elif part.kind == "lattice":
        _draw_lattice(mask, part, z_mm, pitch_mm, lab)
    elif part.kind == "thin_wall":
        _fill(mask, _rect(cx, cy, w, h, part.angle_deg), lab, pitch_mm)
    elif part.kind == "overhang":
        grow = p["overhang_mm_per_mm"] * z_mm
        x0 = -w / 2
        pts = np.array([[x0, -h / 2], [x0 + w + grow, -h / 2], [x0 + w + grow, h / 2], [x0, h / 2]])
        _fill(mask, _rot(pts, part.angle_deg) + (cx, cy), lab, pitch_mm)
    else:
        raise ValueError(f"unknown part kind {part.kind!r}; expected one of {PART_KINDS}")


def _draw_lattice(mask: np.ndarray, part: Part, z_mm: float, pitch_mm: float, lab: int) -> None:
    """Frame plus inclined struts: strut positions slide with z, so the stack forms inclined plates."""
    cx, cy = part.center_mm
    w, h = part.size_mm
    p = part.params
    strut, cell = p["strut_mm"], p["cell_mm"]
    frame = [
        _rect(0, -h / 2 + strut / 2, w, strut, 0),
        _rect(0, h / 2 - strut / 2, w, strut, 0),
        _rect(-w / 2 + strut / 2, 0, strut, h, 0),
        _rect(w / 2 - strut / 2, 0, strut, h, 0),
    ]
    shift = (z_mm * p["strut_slope"]) % cell
    xs = np.arange(-w / 2 + shift, w / 2, cell)
    frame += [_rect(x, 0, strut, h, 0) for x in xs if abs(x) < w / 2 - strut]
    ys = np.arange(-h / 2 + cell / 2, h / 2, cell)
    frame += [_rect(0, y, w, strut, 0) for y in ys if abs(y) < h / 2 - strut]
    for poly in frame:
        _fill(mask, _rot(poly, part.angle_deg) + (cx, cy), lab, pitch_mm)


def layout_parts(rng: np.random.Generator, plate_mm: float, max_height_mm: float) -> list[Part]:
    """A seeded plate layout: 12 parts on a 4 x 3 slot grid away from the fiducials and the far-end strip."""
    kinds = ["ring", "ring", "ring", "ring", "dogbone", "dogbone", "square", "square", "lattice", "thin_wall",
             "overhang", "ring"]
    order = rng.permutation(len(kinds))
    s = plate_mm / 100.0
    x_lo, x_hi, y_lo, y_hi = 12 * s, 88 * s, 12 * s, 82 * s
    cols, rows = 4, 3
    sw, sh = (x_hi - x_lo) / cols, (y_hi - y_lo) / rows
    parts: list[Part] = []
    for slot, k in enumerate(order):
        kind = kinds[k]
        r, c = divmod(slot, cols)
        cx = x_lo + (c + 0.5) * sw + rng.uniform(-0.08, 0.08) * sw
        cy = y_lo + (r + 0.5) * sh + rng.uniform(-0.08, 0.08) * sh
        height = float(rng.uniform(0.6, 1.0) * max_height_mm)
        zspan = max(height, 2.0 * s)  # section changes are spread over the part height
        pid = slot + 1
        if kind == "ring":
            d = rng.uniform(0.45, 0.65) * sw
            part = Part(pid, kind, (cx, cy), (d, d), 0.0, height,
                        {"wall_mm": float(rng.uniform(0.12, 0.22) * d),
                         "radius_slope": float(rng.uniform(-0.25, 0.25) * d / 2 / zspan)})
        elif kind == "dogbone":
            vertical = rng.random() < 0.5
            length = (0.85 * sh if vertical else 0.85 * sw)
            grip = rng.uniform(0.22, 0.3) * length
            part = Part(pid, kind, (cx, cy), (length, grip), 90.0 * vertical + rng.uniform(-5, 5), height,
                        {"gauge_w_mm": float(0.5 * grip), "gauge_len_mm": float(0.45 * length),
                         "gauge_slope": float(-rng.uniform(0.1, 0.4) * 0.5 * grip / zspan)})
        elif kind == "square":
            side = rng.uniform(0.4, 0.55) * sw
            part = Part(pid, kind, (cx, cy), (side, side), float(rng.uniform(0, 90)), height,
                        {"twist_deg_per_mm": float(rng.choice([-1, 1]) * rng.uniform(20, 45) / zspan)})
        elif kind == "lattice":
            side = 0.75 * min(sw, sh)
            part = Part(pid, kind, (cx, cy), (side, side), float(rng.uniform(-10, 10)), height,
                        {"strut_mm": 0.08 * side, "cell_mm": 0.25 * side,
                         "strut_slope": float(2.0 * 0.25 * side / zspan)})
        elif kind == "thin_wall":
            part = Part(pid, kind, (cx, cy), (0.8 * sw, float(rng.uniform(0.45, 0.7)) * s), float(rng.uniform(-60, 60)),
                        height,
                        {"note": "constant section"})
        else:  # overhang
            part = Part(pid, kind, (cx - 0.15 * sw, cy), (0.45 * sw, 0.3 * sh), 0.0, height,
                        {"overhang_mm_per_mm": float(rng.uniform(0.3, 0.6) * 0.45 * sw / zspan)})
        parts.append(part)
    return parts


def render_mask(parts: list[Part], z_mm: float, size_px: int, pitch_mm: float) -> np.ndarray:
    """uint8 label image of all part sections at height z_mm (0 = powder, k = part k)."""
    mask = np.zeros((size_px, size_px), np.uint8)
    for part in parts:
        draw_part(mask, part, z_mm, pitch_mm)
    return mask
