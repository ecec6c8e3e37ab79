"""Every labelled defect is visible where its label says, with its own signature; unlabelled areas are untouched."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from edge.sim.build import plan_build, render_layer
from edge.sim.config import SimConfig
from edge.sim.defects import DEFECT_TYPES, DefectEvent
from edge.sim.geometry import render_mask

CFG = SimConfig(hr_size_px=512, defect_rate=0.0)


def _ring(shape, bbox, inner: int, outer: int) -> np.ndarray:
    """Boolean frame from `inner` to `outer` px outside a bbox."""
    x, y, w, h = bbox
    out = np.zeros(shape, bool)
    out[max(y - outer, 0) : y + h + outer, max(x - outer, 0) : x + w + outer] = True
    out[max(y - inner, 0) : y + h + inner, max(x - inner, 0) : x + w + inner] = False
    return out


def _check_signature(lab: dict, hr: np.ndarray, clean: np.ndarray, mask: np.ndarray, nominal: np.ndarray) -> None:
    """Type-specific contrast of one labelled defect against its surroundings (or the clean layer)."""
    x, y, w, h = lab["bbox"]
    img = hr.astype(np.float64)
    powder = mask == 0
    kind = lab["type"]
    if kind == "recoater_streak":
        rows = slice(y, y + h)
        core = img[rows, x + 1 : x + w - 1].mean(axis=1)
        side = np.concatenate([img[rows, max(x - 4, 0) : x - 1], img[rows, x + w + 1 : x + w + 4]], axis=1).mean(axis=1)
        ok = powder[rows, max(x - 4, 0) : x + w + 4].all(axis=1)
        assert ok.sum() > 20 and (side[ok] - core[ok]).mean() > 10, kind  # a dark thin line along the travel
        assert w <= 6 and h > 8 * w  # thin and parallel to the recoater travel (+y)
    elif kind == "recoater_hopping":
        sel = powder[y : y + h, x : x + w]
        prof = np.nanmean(np.where(sel, img[y : y + h, x : x + w], np.nan), axis=1)
        prof_clean = np.nanmean(np.where(sel, clean[y : y + h, x : x + w].astype(np.float64), np.nan), axis=1)
        assert np.nanstd(prof) > 2.5 * np.nanstd(prof_clean), kind  # bands across the travel direction
    elif kind == "incomplete_spreading":
        below = img[y + h // 2 : y + h][powder[y + h // 2 : y + h]]
        above = img[max(y - 30, 0) : y - 5][powder[max(y - 30, 0) : y - 5]]
        assert above.mean() - below.mean() > 20 and y + h == hr.shape[0], kind  # short feed at the far end
    elif kind == "super_elevation":
        inside = img[y : y + h, x : x + w]
        around = img[_ring(img.shape, lab["bbox"], 4, 12) & powder]
        assert np.percentile(inside, 95) > around.mean() + 25, kind  # bright part edge
    elif kind == "debris":
        core = img[y + h // 4 : y + h - h // 4, x + w // 4 : x + w - w // 4]
        around = img[_ring(img.shape, lab["bbox"], 4, 10)]
        assert abs(core.mean() - around.mean()) > 15, kind
    elif kind == "part_geometry_deviation":
        grown = np.zeros_like(mask, dtype=bool)
        grown[y : y + h, x : x + w] = (mask > 0)[y : y + h, x : x + w] & (nominal == 0)[y : y + h, x : x + w]
        assert grown.sum() > 10, kind  # the part really grew inside the box
        core = cv2.erode((nominal > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert img[grown].mean() > img[core].mean() + 20, kind  # swollen material stands proud
    else:
        pytest.fail(f"unknown defect type {kind}")


def _check_layer(plan, clean_plan, layer: int) -> list[dict]:
    """Render a layer with and without defects; check localisation and each signature."""
    dirty = render_layer(plan, layer, cameras=False)
    clean = render_layer(clean_plan, layer, cameras=False)
    nominal = render_mask(plan.parts, plan.z_mm(layer), plan.n, plan.pitch_mm)
    diff = np.abs(dirty.hr.astype(np.int16) - clean.hr.astype(np.int16))
    labelled = np.zeros(diff.shape, np.uint8)
    for lab in dirty.labels:
        x, y, w, h = lab["bbox"]
        assert lab["layer"] == layer and w > 0 and h > 0
        assert diff[y : y + h, x : x + w].max() > 15, lab  # something changed inside the box
        labelled[y : y + h, x : x + w] = 1
        _check_signature(lab, dirty.hr, clean.hr, dirty.mask, nominal)
    geo = np.zeros(diff.shape, bool)
    for lab in dirty.labels:
        if lab["type"] == "part_geometry_deviation":
            x, y, w, h = lab["bbox"]
            geo[y : y + h, x : x + w] = True
    assert not ((dirty.mask > 0) & (nominal == 0) & ~geo).any()  # parts grew only where labelled
    near = cv2.dilate(labelled, np.ones((21, 21), np.uint8)) > 0
    assert (diff[~near] > 6).mean() < 1e-3  # nothing unlabelled was drawn
    return dirty.labels


def _event(i: int, kind: str, params: dict) -> DefectEvent:
    return DefectEvent(i, kind, 1, 1, params)


def test_every_defect_type_shows_its_signature_where_labelled():
    plan = plan_build(2, 21, CFG)
    ring = next(p for p in plan.parts if p.kind == "ring").id
    square = next(p for p in plan.parts if p.kind == "square").id
    n = plan.n
    events_a = [
        _event(1, "recoater_streak", {"x": 40, "y0": 30, "width": 2, "depth": 35.0}),
        _event(2, "recoater_hopping", {"part_id": ring, "length_mm": 12.0, "period_mm": 1.8, "amplitude": 20.0}),
        _event(3, "super_elevation", {"part_id": square, "side_deg": 90.0, "gain": 1.6}),
        _event(4, "debris", {"cx": n // 2, "cy": 30, "rx_mm": 2.5, "ry_mm": 1.2, "angle_deg": 30.0, "delta": -55.0}),
    ]
    events_b = [
        _event(5, "incomplete_spreading", {"short_mm": 10.0, "wave_mm": 1.5, "phase": 1.0}),
        _event(6, "part_geometry_deviation", {"part_id": ring, "direction_deg": 45.0, "radius_mm": 2.0}),
    ]
    seen = set()
    for events in (events_a, events_b):
        labels = _check_layer(dataclasses.replace(plan, defects=events), plan, 1)
        assert len(labels) == len(events)
        seen |= {lab["type"] for lab in labels}
    assert seen == set(DEFECT_TYPES)


@pytest.mark.parametrize("seed", [4, 5])
def test_scheduled_defects_are_visible_and_persist(seed):
    cfg = SimConfig(hr_size_px=512, defect_rate=1.0)
    plan = plan_build(8, seed, cfg)
    clean_plan = plan_build(8, seed, CFG)
    persisted = {}
    for layer in (2, 5, 8):
        for lab in _check_layer(plan, clean_plan, layer):
            persisted[lab["defect_id"]] = max(persisted.get(lab["defect_id"], 0), lab["layers_persisted"])
    lasting = [e for e in plan.defects if e.type in ("recoater_streak", "super_elevation")
               and e.last_layer < plan.layers]
    assert lasting and all(e.last_layer - e.first_layer + 1 >= 3 for e in lasting)  # they persist over layers
    assert max(persisted.values()) >= 3


def test_severity_follows_the_defect_extent():
    plan = plan_build(2, 21, CFG)
    small = _event(1, "debris", {"cx": 256, "cy": 30, "rx_mm": 1.0, "ry_mm": 0.6, "angle_deg": 0.0, "delta": 50.0})
    big = _event(2, "incomplete_spreading", {"short_mm": 12.0, "wave_mm": 1.0, "phase": 0.0})
    labels = render_layer(dataclasses.replace(plan, defects=[small, big]), 1, cameras=False).labels
    assert [lab["severity"] for lab in labels] == ["minor", "critical"]
