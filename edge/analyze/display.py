"""What people see of a layer: merged flags, numbered overlays, LR|SR zoom crops, state history, rounded numbers.

Shared by the build report, the demo summary and the web view so the three read the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SEVERITY_RANK = {"minor": 1, "critical": 2}
STATE_COLORS = {
    "ok": "#1a7f37",
    "minor": "#b35900",
    "critical": "#c62828",
}  # anything else (failures) is drawn critical
BOX_BGR = {"critical": (40, 40, 220), "minor": (0, 150, 255)}
PART_BGR = (60, 190, 60)

FLAG_MEANING = {
    "recoater_streak": "a line along the recoater's travel: a damaged blade or a particle dragged through the powder",
    "recoater_hopping": "repeating bands across the travel: the recoater blade bouncing",
    "incomplete_spreading": "an area the powder did not cover",
    "super_elevation": "a part edge standing above the powder (risk of a recoater crash)",
    "debris": "a lump on the powder bed",
    "spatter": "many small ejected particles on the powder",
    "part_geometry_deviation": "a part's outline differs from the expected one (CAD or earlier layers)",
    "sr_uncertain": "the super-resolved image is unreliable here (samples disagree)",
    "laser_in_image": "the laser was still on when the frame was taken",
}

STATE_MEANING = {
    "ok": "no flag that needs attention",
    "minor": "something to watch; printing can go on",
    "critical": "needs a look now (it may end the build)",
    "capture_failed": "no usable camera frame for this layer",
    "segmentation_failed": "parts could not be found on this layer",
    "laser_in_image": "the frame shows the laser on, so it was not analysed",
}


@dataclass(frozen=True)
class ShownFlag:
    """Flags of one type on one part (or overlapping) merged for display: union box, worst severity, top score."""

    type: str
    severity: str
    score: float
    bbox: tuple[int, int, int, int]
    count: int
    layers_persisted: int

    def label(self) -> str:
        """One short line: type, how many, severity and how far over its threshold."""
        many = f" \u00d7{self.count}" if self.count > 1 else ""
        persisted = f", {self.layers_persisted} layers in a row" if self.layers_persisted > 1 else ""
        return f"{self.type.replace('_', ' ')}{many}: {self.severity}, {self.score:.1f}\u00d7 threshold{persisted}"


def _touch(a: tuple, b: tuple, margin: int) -> bool:
    """Whether boxes (x, y, w, h) overlap once each is grown by `margin` px."""
    return not (
        a[0] + a[2] + margin < b[0]
        or b[0] + b[2] + margin < a[0]
        or a[1] + a[3] + margin < b[1]
        or b[1] + b[3] + margin < a[1]
    )


def _part_of(bbox: tuple, labels: np.ndarray | None) -> int:
    """Label of the part the box's centre lies on (0: powder or no mask)."""
    if labels is None:
        return 0
    x, y = int(bbox[0] + bbox[2] // 2), int(bbox[1] + bbox[3] // 2)
    if 0 <= y < labels.shape[0] and 0 <= x < labels.shape[1]:
        return int(labels[y, x])
    return 0


def merge_flags(flags: list[dict], mask: np.ndarray | None = None, margin: int | None = None) -> list[ShownFlag]:
    """Merge flags of one type that overlap (within `margin` px) or sit on the same part; worst first."""
    from scipy import ndimage

    labels = ndimage.label(np.asarray(mask) > 0)[0] if mask is not None and np.asarray(mask).any() else None
    if margin is None:
        margin = 4 if mask is None else max(2, mask.shape[1] // 200)
    groups: list[list[dict]] = []
    for f in flags:
        part = _part_of(tuple(f["bbox"]), labels)
        for g in groups:
            if g[0]["type"] != f["type"]:
                continue
            if any(
                _touch(tuple(o["bbox"]), tuple(f["bbox"]), margin)
                or (part and part == _part_of(tuple(o["bbox"]), labels))
                for o in g
            ):
                g.append(f)
                break
        else:
            groups.append([f])
    shown = [_merge_group(g) for g in groups]
    return sorted(shown, key=lambda s: (-SEVERITY_RANK.get(s.severity, 0), -s.score))


def _merge_group(g: list[dict]) -> ShownFlag:
    """One ShownFlag from a group of raw flag dicts."""
    x0 = min(f["bbox"][0] for f in g)
    y0 = min(f["bbox"][1] for f in g)
    x1 = max(f["bbox"][0] + f["bbox"][2] for f in g)
    y1 = max(f["bbox"][1] + f["bbox"][3] for f in g)
    sev = max((f["severity"] for f in g), key=lambda s: SEVERITY_RANK.get(s, 0))
    return ShownFlag(
        g[0]["type"],
        sev,
        max(float(f["score"]) for f in g),
        (x0, y0, x1 - x0, y1 - y0),
        len(g),
        max(int(f.get("layers_persisted", 1)) for f in g),
    )


def scale_flags(shown: list[ShownFlag], factor: float) -> list[ShownFlag]:
    """The same flags with boxes in another pixel grid (e.g. LR -> SR: factor = scale)."""
    return [
        ShownFlag(
            s.type, s.severity, s.score, tuple(int(round(v * factor)) for v in s.bbox), s.count, s.layers_persisted
        )
        for s in shown
    ]


def _to_width(img: np.ndarray, width: int, nearest: bool = False) -> np.ndarray:
    """Resize to `width` px keeping the aspect ratio."""
    h, w = img.shape[:2]
    size = (width, max(1, round(h * width / w)))
    return cv2.resize(img, size, interpolation=cv2.INTER_NEAREST if nearest or width > w else cv2.INTER_AREA)


def draw_overview(gray: np.ndarray, mask: np.ndarray | None, shown: list[ShownFlag], width: int) -> np.ndarray:
    """BGR image `width` px wide: parts outlined in green, each merged flag boxed with its number (1 = worst)."""
    g = np.clip(np.asarray(gray, dtype=np.float64), 0, 255).astype(np.uint8)
    f = width / g.shape[1]
    out = cv2.cvtColor(_to_width(g, width), cv2.COLOR_GRAY2BGR)
    if mask is not None and np.asarray(mask).any():
        m = _to_width((np.asarray(mask) > 0).astype(np.uint8), width, nearest=True)
        cs, _ = cv2.findContours(m, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, cs, -1, PART_BGR, 1, cv2.LINE_AA)
    taken: list[tuple[int, int]] = []
    for i, s in enumerate(shown, start=1):
        x, y, w, h = (int(round(v * f)) for v in s.bbox)
        c = BOX_BGR.get(s.severity, BOX_BGR["critical"])
        cv2.rectangle(out, (x, y), (x + max(w, 2), y + max(h, 2)), c, 2)
        tx, ty = _tag_spot(x, y, out.shape, taken)
        cv2.rectangle(out, (tx, ty), (tx + 18, ty + 16), c, -1)
        cv2.putText(
            out,
            str(i),
            (tx + 4 - 4 * (i > 9), ty + 13),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
    return out


def _tag_spot(x: int, y: int, shape: tuple, taken: list[tuple[int, int]]) -> tuple[int, int]:
    """Top-left of a 18x16 number tag near (x, y) that does not cover an earlier tag."""
    tx, ty = min(max(0, x), shape[1] - 19), min(max(0, y - 17), shape[0] - 17)
    while any(abs(tx - a) < 19 and abs(ty - b) < 17 for a, b in taken):
        tx = tx + 20 if tx + 39 < shape[1] else 0
        if tx == 0:
            ty = min(ty + 18, shape[0] - 17)
    taken.append((tx, ty))
    return tx, ty


def focus_point(shown: list[ShownFlag], mask: np.ndarray | None, shape: tuple[int, int]) -> tuple[int, int]:
    """Where to zoom (x, y): the worst flag's centre, else the largest part's centre, else the plate centre."""
    if shown:
        x, y, w, h = shown[0].bbox
        return x + w // 2, y + h // 2
    if mask is not None and np.asarray(mask).any():
        from scipy import ndimage

        lab, n = ndimage.label(np.asarray(mask) > 0)
        k = int(np.argmax(np.bincount(lab.ravel())[1:])) + 1
        ys, xs = np.nonzero(lab == k)
        return int(xs.mean()), int(ys.mean())
    return shape[1] // 2, shape[0] // 2


def zoom_pair(
    lr: np.ndarray, sr: np.ndarray, centre_sr: tuple[int, int], lr_side: int = 48, out_px: int = 288
) -> tuple[np.ndarray, np.ndarray]:
    """The same plate window from LR (its pixels enlarged) and SR, both `out_px` square, centred on `centre_sr`."""
    scale = max(1, round(sr.shape[1] / lr.shape[1]))
    side = min(lr_side, lr.shape[0], lr.shape[1])
    cx, cy = centre_sr[0] // scale, centre_sr[1] // scale
    x0 = int(np.clip(cx - side // 2, 0, lr.shape[1] - side))
    y0 = int(np.clip(cy - side // 2, 0, lr.shape[0] - side))
    lr_crop = lr[y0 : y0 + side, x0 : x0 + side]
    sr_crop = sr[y0 * scale : (y0 + side) * scale, x0 * scale : (x0 + side) * scale]
    lr_big = cv2.resize(_u8(lr_crop), (out_px, out_px), interpolation=cv2.INTER_NEAREST)
    sr_big = cv2.resize(
        _u8(sr_crop), (out_px, out_px), interpolation=cv2.INTER_AREA if sr_crop.shape[0] > out_px else cv2.INTER_NEAREST
    )
    return lr_big, sr_big


def _u8(a: np.ndarray) -> np.ndarray:
    """uint8 view of a grey image (16-bit scaled down)."""
    a = np.asarray(a)
    if a.dtype == np.uint16:
        return (a >> 8).astype(np.uint8)
    return np.clip(a, 0, 255).astype(np.uint8)


def state_history(early: dict | None, final: dict) -> dict:
    """A layer's states in the order they went out and why they changed, from the LR-first and final anomaly JSON.

    Returns {"steps": [(when, state)], "changed": bool, "why": [sentences]}.
    """
    steps = []
    if early is not None:
        steps.append(("early, from the webcam image", early["layer_state"]))
    steps.append(("final, from the super-resolved image" if early is not None else "final", final["layer_state"]))
    changed = early is not None and early["layer_state"] != final["layer_state"]
    why: list[str] = []
    if early is not None:
        why = _why(early.get("flags", []), final.get("flags", []))
        if changed and not why:
            why = ["the flags were the same; their persistence over layers moved the state"]
    return {"steps": steps, "changed": changed, "why": why}


def _worst_by_type(flags: list[dict]) -> dict[str, dict]:
    """Per flag type, the flag with the highest score."""
    out: dict[str, dict] = {}
    for f in flags:
        if f["type"] not in out or float(f["score"]) > float(out[f["type"]]["score"]):
            out[f["type"]] = f
    return out


def _why(early_flags: list[dict], final_flags: list[dict]) -> list[str]:
    """Sentences for every flag type whose severity differs between the webcam (LR) and the super-resolved analysis."""
    a, b = _worst_by_type(early_flags), _worst_by_type(final_flags)
    out = []
    for t in sorted(set(a) | set(b)):
        name = t.replace("_", " ")
        if t in a and t not in b:
            out.append(
                f"{name} ({a[t]['severity']}, {a[t]['score']:.1f}\u00d7 threshold on the webcam image) "
                "was not found on the super-resolved image"
            )
        elif t in b and t not in a:
            out.append(
                f"{name} ({b[t]['severity']}, {b[t]['score']:.1f}\u00d7 threshold) "
                "shows only on the super-resolved image"
            )
        elif a[t]["severity"] != b[t]["severity"]:
            out.append(
                f"{name}: {a[t]['score']:.1f}\u00d7 threshold on the webcam image ({a[t]['severity']}), "
                f"{b[t]['score']:.1f}\u00d7 on the super-resolved image ({b[t]['severity']})"
            )
    return out


def fmt_seconds(s: float | None) -> str:
    """Seconds rounded to what matters: 0.35 s, 2.4 s, 24 s, 2 min 31 s."""
    if s is None:
        return "-"
    s = float(s)
    if s < 0.01:
        return "<0.01 s"
    if s < 10:
        return f"{s:.2f} s" if s < 1 else f"{s:.1f} s"
    if s < 60:
        return f"{s:.0f} s"
    m, r = divmod(int(round(s)), 60)
    return f"{m} min {r} s"


def state_color(state: str) -> str:
    """CSS colour of a layer state."""
    return STATE_COLORS.get(state, STATE_COLORS["critical"])
