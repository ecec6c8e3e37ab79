"""What people see of a layer: merged flags, numbered overview, LR|SR close-ups, state history, rounding."""

from __future__ import annotations

import numpy as np

from edge.analyze.display import draw_overview, fmt_seconds, focus_point, merge_flags, state_history, zoom_pair


def _flag(t: str, sev: str, score: float, bbox: list[int]) -> dict:
    return {"type": t, "severity": sev, "score": score, "bbox": bbox, "area_px": 10, "layers_persisted": 1}


def test_overlapping_flags_of_one_type_on_one_part_merge_worst_first():
    """Four super_elevation boxes on one ring (as in the demo's layer 4) become one entry; other types stay apart."""
    mask = np.zeros((200, 200), np.uint8)
    mask[40:120, 40:120] = 255
    flags = [
        _flag("super_elevation", "minor", 1.2, [45, 45, 10, 10]),
        _flag("super_elevation", "minor", 1.5, [100, 45, 10, 10]),
        _flag("super_elevation", "critical", 2.1, [45, 100, 10, 10]),
        _flag("super_elevation", "minor", 1.0, [100, 100, 10, 10]),
        _flag("debris", "minor", 1.1, [150, 150, 4, 4]),
        _flag("super_elevation", "minor", 1.3, [170, 20, 5, 5]),
    ]
    shown = merge_flags(flags, mask)
    assert [(s.type, s.count, s.severity) for s in shown] == [
        ("super_elevation", 4, "critical"),
        ("super_elevation", 1, "minor"),
        ("debris", 1, "minor"),
    ]
    assert shown[0].bbox == (45, 45, 65, 65) and shown[0].score == 2.1
    assert "\u00d74: critical, 2.1\u00d7 threshold" in shown[0].label()
    # without a mask only touching boxes merge
    assert len(merge_flags(flags)) == 6


def test_overview_is_drawn_at_display_width_with_numbered_boxes():
    gray = np.full((800, 800), 128, np.uint8)
    shown = merge_flags([_flag("debris", "critical", 3.0, [400, 400, 40, 40])])
    img = draw_overview(gray, None, shown, 400)
    assert img.shape == (400, 400, 3)
    box = img[200:222, 200:222]
    assert (np.abs(box[..., 2].astype(int) - box[..., 0]) > 100).any()  # the red box, scaled to half size


def test_zoom_pair_shows_the_same_window_at_whole_pixel_magnification():
    lr = np.zeros((64, 64), np.uint8)
    lr[30:34, 30:34] = 255
    sr = np.kron(lr, np.ones((4, 4), np.uint8))
    a, b = zoom_pair(
        lr,
        sr,
        focus_point(merge_flags([_flag("debris", "minor", 1, [120, 120, 16, 16])]), None, sr.shape),
        lr_side=16,
        out_px=128,
    )
    assert a.shape == b.shape == (128, 128)
    assert np.array_equal(a, b)  # an SR that is exactly the LR's pixels enlarged shows the same picture


def test_state_history_says_why_it_changed():
    early = {
        "layer_state": "critical",
        "flags": [
            _flag("super_elevation", "critical", 2.01, [1, 1, 2, 2]),
            _flag("debris", "minor", 1.1, [5, 5, 1, 1]),
        ],
    }
    final = {
        "layer_state": "minor",
        "flags": [_flag("super_elevation", "minor", 1.54, [4, 4, 8, 8]), _flag("spatter", "minor", 1.2, [9, 9, 9, 9])],
    }
    h = state_history(early, final)
    assert h["changed"] and [s for _, s in h["steps"]] == ["critical", "minor"]
    text = " ".join(h["why"])
    assert (
        "super elevation: 2.0\u00d7 threshold on the webcam image (critical), "
        "1.5\u00d7 on the super-resolved image (minor)"
        in text
    )
    assert "debris (minor, 1.1\u00d7 threshold on the webcam image) was not found on the super-resolved image" in text
    assert "spatter (minor, 1.2\u00d7 threshold) shows only on the super-resolved image" in text
    assert not state_history(None, final)["changed"] and len(state_history(None, final)["steps"]) == 1


def test_seconds_rounded_to_what_matters():
    assert [fmt_seconds(s) for s in (0.004, 0.0532, 2.04, 24.1842, 101.1, None)] == [
        "<0.01 s",
        "0.05 s",
        "2.0 s",
        "24 s",
        "1 min 41 s",
        "-",
    ]
