"""The demo's summary.html: one self-contained page that reads at a glance in a 1400 px window.

Top: the verdict (states per layer, MQTT delivery) and a strip of layer states; then one card per layer from the
archive (edge.analyze.layer_view): state and its history, the flagged plate, LR|SR zoom crops, flags, times;
last a glossary of every term used.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from edge.analyze.display import FLAG_MEANING, STATE_MEANING, state_color
from edge.analyze.layer_view import CARD_CSS, card_html, load_layer_view, png_bytes, render

PAGE_CSS = CARD_CSS + (
    ".verdict{font-size:1.15em;margin:6px 0}.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;"
    "font-size:.92em;margin:8px 0}.facts dt{color:#555}.facts dd{margin:0}"
    ".strip{display:flex;gap:3px;flex-wrap:wrap;margin:8px 0}.strip a{display:block;width:34px;height:30px;color:#fff;"
    "text-align:center;line-height:30px;text-decoration:none;border-radius:3px;font-size:.85em}"
    ".legend{font-size:.8em;color:#555}.glossary dt{font-weight:bold;margin-top:6px}.glossary dd{margin-left:1.2em}"
    ".mqtt.ok{color:#1a7f37}.mqtt.bad{color:#c62828;font-weight:bold}"
)


def _uri(img) -> str:
    """An 8-bit image as a PNG data URI ('' when None)."""
    return "" if img is None else "data:image/png;base64," + base64.b64encode(png_bytes(img)).decode("ascii")


def state_strip(views: list) -> str:
    """One coloured cell per layer (top half: early webcam state when it differed), linking to its card."""
    cells = []
    for v in views:
        final = state_color(v.state)
        early = v.early["layer_state"] if v.early and v.anomaly else None
        bg = final if early in (None, v.state) else f"linear-gradient(to bottom,{state_color(early)} 50%,{final} 50%)"
        tip = f"layer {v.layer}: {v.state}" + (
            f" (early, from the webcam image: {early})" if early not in (None, v.state) else ""
        )
        cells.append(f"<a href='#layer-{v.layer}' title='{html.escape(tip)}' style='background:{bg}'>{v.layer}</a>")
    return (
        f"<div class='strip'>{''.join(cells)}</div>"
        "<p class='legend'>Layer states in print order (green ok, orange minor, "
        "red critical). A two-colour cell: the top half is the early state from the webcam image, the bottom the final "
        "state from the super-resolved image.</p>"
    )


def _verdict(views: list, verified: dict[int, bool | None]) -> str:
    """'6 layers: 4 ok, 2 minor. All 6 arrived over MQTT with matching checksums.'"""
    counts: dict[str, int] = {}
    for v in views:
        counts[v.state] = counts.get(v.state, 0) + 1
    order = ["critical", "capture_failed", "segmentation_failed", "minor", "ok"]
    parts = [
        f"<b style='color:{state_color(s)}'>{n} {html.escape(s.replace('_', ' '))}</b>"
        for s in sorted(counts, key=lambda s: order.index(s) if s in order else 0)
        for n in [counts[s]]
    ]
    n_ok = sum(1 for v in verified.values() if v)
    mqtt = (
        f"All {n_ok} arrived over MQTT with matching checksums."
        if n_ok == len(views)
        else f"<span class='mqtt bad'>Only {n_ok} of {len(views)} arrived over MQTT with matching checksums.</span>"
    )
    return f"<p class='verdict'>{len(views)} layers: {', '.join(parts)}. {mqtt}</p>"


def _glossary(views: list) -> str:
    """Every state and flag type shown on the page, and the words the cards use."""
    states = sorted({v.state for v in views} | {e["layer_state"] for v in views for e in [v.early] if e})
    types = sorted({f["type"] for v in views for doc in (v.anomaly, v.early) if doc for f in doc["flags"]})
    terms = [
        ("LR", "the webcam image after registration onto the build plate (low resolution)"),
        ("SR", "the super-resolved image: the LR turned by the diffusion model into an image on a 4\u00d7 finer grid"),
        (
            "early / final state",
            "when super-resolution is still busy with an earlier layer, the box first sends the LR "
            "and flags found on it (early), then the SR and the flags found on that (final); "
            "the final state replaces the early one",
        ),
        (
            "\u00d7 threshold",
            "how far a flag's measurement is over the level at which it is reported; from 2\u00d7 "
            "(configurable) a flag is critical, and a minor flag seen on 3 layers in a row becomes critical",
        ),
        ("checksums", "each image's sha256 in the layer's meta message, recomputed by the subscriber"),
    ]
    terms += [(s.replace("_", " "), STATE_MEANING.get(s, "")) for s in states]
    terms += [(t.replace("_", " "), FLAG_MEANING.get(t, "")) for t in types]
    items = "".join(f"<dt>{html.escape(a)}</dt><dd>{html.escape(b)}</dd>" for a, b in terms)
    return f"<section id='glossary'><h2>Words used here</h2><dl class='glossary'>{items}</dl></section>"


def write_summary(
    out: Path,
    archive_root: Path,
    job: str,
    verified: dict[int, bool | None],
    header: dict[str, str],
    title: str = "lpbf-edge demo: simulated build",
) -> Path:
    """Write out/summary.html from the archived layers of `job`; `header` is shown as label: value lines."""
    job_dir = Path(archive_root) / job
    views = []
    for d in sorted(p for p in job_dir.iterdir() if p.is_dir() and p.name.isdigit()) if job_dir.exists() else []:
        v = load_layer_view(d, job, int(d.name))
        if v is not None:
            views.append(v)
    facts = "".join(f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(str(val))}</dd>" for k, val in header.items())
    cards = []
    for v in views:
        ok = verified.get(v.layer)
        mqtt = (
            "<p class='mqtt ok'>Received over MQTT, checksums match.</p>"
            if ok
            else "<p class='mqtt bad'>NOT received complete over MQTT.</p>" if ok is False else ""
        )
        cards.append(card_html(v, lambda which, v=v: _uri(render(v, which, 400 if which == "overview" else 256)), mqtt))
    doc = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<meta name='viewport' content='width=device-width'><style>{PAGE_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{_verdict(views, verified)}{state_strip(views)}<dl class='facts'>{facts}</dl>"
        f"{''.join(cards)}{_glossary(views)}</body></html>"
    )
    path = Path(out) / "summary.html"
    path.write_text(doc, encoding="utf-8")
    return path
