"""Scan texture of fused regions: hexagonal islands, hatch lines rotating per layer, contour track, glints."""

from __future__ import annotations

import math

import cv2
import numpy as np


def hex_islands(n: int, radius_px: float, offset: tuple[float, float], step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Axial (q, r) hex-cell indices for pointy-top hexagons of circumradius radius_px.

    With step > 1 the indices are evaluated at the centres of step x step blocks (an n/step grid).
    """
    c = (np.arange(0, n, step, dtype=np.float32) + (step - 1) / 2)
    x = (c + offset[0])[None, :]
    y = (c + offset[1])[:, None]
    qf = (math.sqrt(3) / 3 * x - y / 3) / radius_px
    rf = np.broadcast_to((2 / 3) * y / radius_px, qf.shape)
    sf = -qf - rf
    q, r, s = np.rint(qf), np.rint(rf), np.rint(sf)
    dq, dr, ds = np.abs(q - qf), np.abs(r - rf), np.abs(s - sf)
    fix_q = (dq > dr) & (dq > ds)
    fix_r = ~fix_q & (dr > ds)
    q = np.where(fix_q, -r - s, q)
    r = np.where(fix_r, -q - s, r)
    return q.astype(np.int32), r.astype(np.int32)


def scan_modulation(
    n: int, layer: int, pitch_mm: float, island_mm: float, rotation_deg: float, rng: np.random.Generator
) -> np.ndarray:
    """Relative brightness modulation (float32, around 1) of fused material for this layer's scan strategy."""
    radius = island_mm / pitch_mm / math.sqrt(3)  # flat-to-flat ~ island_mm
    step = int(max(1, min(4, radius // 12)))  # islands are large: find them on a coarse grid, then upsample
    q, r = hex_islands(n, radius, tuple(rng.uniform(0, 2 * radius, 2)), step)
    parity = ((q + 2 * r) % 2).astype(np.uint8)
    # per-island brightness from a hash of its indices (islands are scanned at different times)
    q64, r64 = q.astype(np.int64), r.astype(np.int64)
    h = ((q64 * 73856093) ^ (r64 * 19349663) ^ ((layer * 83492791) & 0x7FFFFFFF)) & 1023
    island = (h.astype(np.float32) / 1023.0 - 0.5) * 0.16
    if step > 1:
        parity = cv2.resize(parity, (n, n), interpolation=cv2.INTER_NEAREST)[:n, :n]
        island = cv2.resize(island, (n, n), interpolation=cv2.INTER_NEAREST)[:n, :n]
    base = math.radians((layer * rotation_deg) % 180.0)
    k = 2 * math.pi / max(0.5 / pitch_mm, 3.0)  # visible track ridges every ~0.5 mm, at least 3 px
    xs = np.arange(n, dtype=np.float32)[None, :] * k
    ys = np.arange(n, dtype=np.float32)[:, None] * k
    hatch_a = np.sin(xs * math.cos(base) + ys * math.sin(base))
    hatch_b = np.sin(xs * math.cos(base + math.pi / 2) + ys * math.sin(base + math.pi / 2))  # neighbours: 90° turned
    hatch = np.where(parity > 0, hatch_b, hatch_a)
    return (1.0 + 0.06 * hatch + island).astype(np.float32)


def contour_track(mask: np.ndarray) -> np.ndarray:
    """Boolean ring of part pixels on the part boundary (the laser's contour pass)."""
    fused = (mask > 0).astype(np.uint8)
    inner = cv2.erode(fused, np.ones((3, 3), np.uint8))
    return (fused > 0) & (inner == 0)


def add_glints(img: np.ndarray, u: np.ndarray, where: np.ndarray, density: float, amp: float) -> None:
    """Bright specular glints (melt-track ripples, sintered particles) where u < density inside `where`, in place.

    `u` is a uniform [0, 1) field drawn once per layer, so glints stay put when the mask changes elsewhere.
    """
    hit = where & (u < density)
    img[hit] += amp * (0.3 + 0.7 * u[hit] / density)
