"""One archived layer as people see it: images, merged flags on the SR grid, state history, views, an HTML card.

Reads the box archive's layer folder (`<root>/archive/<job>/<layer:06d>/`: lr.png, sr.png, mask.png, anomaly.json,
anomaly_lr.json when the layer went out early from the webcam image, meta.json). Used by the demo summary and the
web view; both fit a 1400 px wide window.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.analyze.display import (
    FLAG_MEANING,
    STATE_MEANING,
    ShownFlag,
    draw_overview,
    fmt_seconds,
    focus_point,
    merge_flags,
    scale_flags,
    state_color,
    state_history,
    zoom_pair,
)

VIEWS = ("overview", "lr", "sr", "zoom_lr", "zoom_sr")
TIMING_WORDS = {"capture": "capture", "register": "registration", "sr": "super-resolution", "analyze": "analysis"}


@dataclass
class LayerView:
    """What the archive holds for one layer, loaded lazily for the images."""

    job: str
    layer: int
    folder: Path
    meta: dict
    anomaly: dict | None
    early: dict | None
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def state(self) -> str:
        """The final state, else the early one, else 'pending'."""
        doc = self.anomaly or self.early
        return doc["layer_state"] if doc else "pending"

    @property
    def is_final(self) -> bool:
        """The final (SR) analysis is archived."""
        return self.anomaly is not None and bool(self.meta.get("final", True))

    def image(self, name: str) -> np.ndarray | None:
        """lr, sr or mask as a grey array (None when not archived)."""
        if name not in self._cache:
            p = self.folder / f"{name}.png"
            self._cache[name] = cv2.imread(str(p), cv2.IMREAD_UNCHANGED) if p.exists() else None
        return self._cache[name]

    def flags(self) -> list[ShownFlag]:
        """Merged flags of the newest analysis, boxes on the grid of the image they are drawn on (SR when present)."""
        doc = self.anomaly or self.early or {"flags": []}
        base = self.base_image()
        mask = self.image("mask")
        on_lr = doc is self.early or self.meta.get("flags_image") == "lr"
        lr, sr = self.image("lr"), self.image("sr")
        if on_lr and sr is not None and lr is not None and base is sr:
            return scale_flags(merge_flags(doc["flags"]), sr.shape[1] / lr.shape[1])
        mask = mask if mask is not None and base is not None and mask.shape[:2] == base.shape[:2] else None
        return merge_flags(doc["flags"], mask)

    def base_image(self) -> np.ndarray | None:
        """The image flags are drawn on: SR, else LR."""
        sr = self.image("sr")
        return sr if sr is not None else self.image("lr")

    def history(self) -> dict:
        """State history (early webcam analysis -> final SR analysis) with reasons."""
        if self.anomaly is None:
            return {
                "steps": [("early, from the webcam image (SR pending)", self.state)] if self.early else [],
                "changed": False,
                "why": [],
            }
        return state_history(self.early, self.anomaly)


def load_layer_view(folder: Path, job: str, layer: int) -> LayerView | None:
    """The layer in `folder`, or None when nothing readable is archived yet."""

    def read(name: str) -> dict | None:
        """A JSON file of the folder, or None."""
        p = folder / name
        try:
            return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None
        except (OSError, json.JSONDecodeError):
            return None

    meta = read("meta.json")
    anomaly, early = read("anomaly.json"), read("anomaly_lr.json")
    if meta is None and anomaly is None and early is None:
        return None
    return LayerView(job, layer, folder, meta or {}, anomaly, early)


def render(view: LayerView, which: str, width: int = 420) -> np.ndarray | None:
    """One of VIEWS as an 8-bit image: the flagged overview, a whole-plate image, or an LR/SR zoom crop."""
    if which == "overview":
        base = view.base_image()
        if base is None:
            return None
        mask = view.image("mask")
        mask = mask if mask is not None and mask.shape[:2] == base.shape[:2] else None
        return draw_overview(_u8(base), mask, view.flags(), width)
    if which in ("lr", "sr"):
        img = view.image(which)
        if img is None:
            return None
        h, w = img.shape[:2]
        return cv2.resize(_u8(img), (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    lr, sr = view.image("lr"), view.image("sr")
    if lr is None or sr is None:
        return None
    mask = view.image("mask")
    centre = focus_point(
        view.flags(), mask if mask is not None and mask.shape[:2] == sr.shape[:2] else None, sr.shape[:2]
    )
    scale = max(1, round(sr.shape[1] / lr.shape[1]))
    side = max(8, width // (2 * scale))  # SR crop shown at 2x, LR crop at 2*scale x: whole pixels, no blur
    pair = zoom_pair(_u8(lr), _u8(sr), centre, lr_side=side, out_px=width)
    return pair[0] if which == "zoom_lr" else pair[1]


def _u8(a: np.ndarray) -> np.ndarray:
    """8-bit grey."""
    a = np.asarray(a)
    if a.ndim == 3:
        a = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY)
    return (a >> 8).astype(np.uint8) if a.dtype == np.uint16 else a.astype(np.uint8)


def png_bytes(img: np.ndarray) -> bytes:
    """PNG encoding of an 8-bit image."""
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def zoom_caption(view: LayerView) -> str:
    """What the zoom crops show and at what magnification."""
    lr, sr = view.image("lr"), view.image("sr")
    if lr is None or sr is None:
        return ""
    scale = max(1, round(sr.shape[1] / lr.shape[1]))
    where = "around flag 1" if view.flags() else "on the largest part"
    return (
        f"Same plate window {where}: left the webcam image (each camera pixel drawn as a {2 * scale}\u00d7{2 * scale} "
        f"block), right the super-resolved image ({scale}\u00d7 finer grid, drawn 2\u00d7)."
    )


def state_badge(state: str, small: bool = False) -> str:
    """Coloured state label."""
    cls = "badge small" if small else "badge"
    return f"<span class='{cls}' style='background:{state_color(state)}'>{html.escape(state.replace('_', ' '))}</span>"


def history_html(view: LayerView) -> str:
    """'early, from the webcam image: CRITICAL -> final: MINOR, because ...' (or nothing for a single state)."""
    h = view.history()
    if view.anomaly is not None and view.early is not None and not h["changed"]:
        return "<p class='history same'>Went out early from the webcam image too, with the same state.</p>"
    if len(h["steps"]) < 2 and not (len(h["steps"]) == 1 and view.anomaly is None):
        return ""
    steps = " \u2192 ".join(f"{html.escape(when)}: {state_badge(st, small=True)}" for when, st in h["steps"])
    why = ("<br>Why it changed: " + "; ".join(html.escape(w) for w in h["why"])) if h["changed"] else ""
    return f"<p class='history'>{steps}{why}</p>"


def flag_list_html(view: LayerView) -> str:
    """Numbered list of merged flags, matching the numbers drawn on the overview."""
    shown = view.flags()
    if not shown:
        return "<p class='noflags'>No flags.</p>"
    items = "".join(
        f"<li><span class='sev {s.severity}'>{html.escape(s.label())}</span><br>"
        f"<small>{html.escape(FLAG_MEANING.get(s.type, ''))}</small></li>"
        for s in shown
    )
    return f"<ol class='flags'>{items}</ol>"


def timings_html(meta: dict) -> str:
    """Stage times in one line, rounded."""
    t = meta.get("timings_s") or {}
    order = list(TIMING_WORDS) + sorted(k for k in t if k not in TIMING_WORDS)
    parts = [f"{TIMING_WORDS.get(k, k)} {fmt_seconds(t[k])}" for k in order if isinstance(t.get(k), (int, float))]
    joined = html.escape(" \u00b7 ".join(parts))
    return f"<p class='timings'>Time on the box: {joined}</p>" if parts else ""


def card_html(view: LayerView, src: Callable[[str], str], extra: str = "") -> str:
    """A layer card: state and history, the flagged overview, LR|SR zoom crops, the flag list, times, `extra` HTML."""

    def img(which: str, alt: str, cls: str) -> str:
        """An <img> of one view, or a placeholder when it cannot be made."""
        uri = src(which)
        return (
            f"<img class='{cls}' alt='{html.escape(alt)}' src='{uri}'>"
            if uri
            else f"<div class='{cls} missing'>no {alt}</div>"
        )

    zoom = ""
    if view.image("sr") is not None and view.image("lr") is not None:
        zoom = (
            f"<figure class='zoom'><div class='pair'><div><div class='lab'>webcam (LR)</div>"
            f"{img('zoom_lr', 'webcam (LR) crop', 'crop')}</div><div><div class='lab'>super-resolved (SR)</div>"
            f"{img('zoom_sr', 'super-resolved (SR) crop', 'crop')}</div></div>"
            f"<figcaption>{html.escape(zoom_caption(view))}</figcaption></figure>"
        )
    meaning = STATE_MEANING.get(view.state, "")
    return (
        f"<section class='card' id='layer-{view.layer}'><h2>Layer {view.layer} {state_badge(view.state)}"
        f"<small>{html.escape(meaning)}</small></h2>{history_html(view)}"
        f"<div class='row'><figure class='overview'>{img('overview', 'parts and flags', 'ov')}"
        f"<figcaption>Whole plate{' (super-resolved)' if view.image('sr') is not None else ''}: parts outlined green, "
        f"flags boxed and numbered.</figcaption></figure>{zoom}"
        f"<div class='side'>{flag_list_html(view)}{timings_html(view.meta)}{extra}</div></div></section>"
    )


CARD_CSS = (
    "body{font-family:system-ui,sans-serif;margin:20px;color:#222;max-width:1360px}"
    ".card{border:1px solid #ddd;border-radius:6px;padding:10px 14px;margin:14px 0}"
    ".card h2{margin:0 0 6px;font-size:1.2em}"
    ".card h2 small{font-weight:normal;color:#555;margin-left:8px;font-size:.8em}"
    ".badge{color:#fff;border-radius:4px;padding:1px 8px;font-size:.85em;text-transform:uppercase;margin-left:6px}"
    ".badge.small{font-size:.75em;margin-left:2px}"
    ".row{display:flex;gap:14px;align-items:flex-start;flex-wrap:wrap}figure{margin:0}"
    "figcaption{font-size:.8em;color:#555;max-width:420px;margin-top:3px}"
    ".ov{width:400px;display:block}.pair{display:flex;gap:6px}"
    ".crop{width:256px;height:256px;display:block;image-rendering:pixelated}"
    ".missing{background:#eee;color:#777;display:flex;align-items:center;justify-content:center}"
    ".zoom figcaption{max-width:520px}.side{flex:1;min-width:230px;font-size:.9em}"
    "ol.flags{padding-left:1.4em;margin:0}ol.flags li{margin-bottom:4px}.sev.critical{color:#c62828;font-weight:bold}"
    ".sev.minor{color:#b35900}.history{margin:2px 0 8px;font-size:.92em}.timings{color:#555;font-size:.85em}"
    ".noflags{color:#1a7f37}.lab{font-size:.8em;font-weight:bold;color:#444}.history.same{color:#555;font-size:.85em}"
)
