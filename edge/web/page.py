"""HTML of the web view: health, the job's timeline of states, one layer's card (the latest by default)."""

from __future__ import annotations

import html
import json
import time

from edge.analyze.display import STATE_MEANING, fmt_seconds, state_color
from edge.analyze.layer_view import CARD_CSS, LayerView, card_html
from edge.web.store_view import LayerEntry

PAGE_CSS = CARD_CSS + (
    "header{display:flex;gap:18px;align-items:baseline;flex-wrap:wrap}header h1{margin:0;font-size:1.4em}"
    ".health{padding:4px 10px;border-radius:4px;font-size:.9em}"
    ".health.ok{background:#e6f4ea}.health.bad{background:#fde7e7}"
    ".timeline{display:flex;gap:2px;flex-wrap:wrap;margin:8px 0}.timeline a{display:block;min-width:26px;height:24px;"
    "color:#fff;font-size:.75em;text-align:center;line-height:24px;text-decoration:none;"
    "border-radius:2px;padding:0 2px}"
    ".timeline a.sel{outline:3px solid #222}.legend{font-size:.8em;color:#555}"
    ".links a{margin-right:10px;font-size:.85em}"
    ".jobs{font-size:.85em}.jobs a{margin-right:8px}"
)

_SCRIPT = """<script>
const shown = %s, follow = %s;
async function poll() {
  try {
    const r = await fetch('api/layers?limit=1', {cache: 'no-store'});
    const l = (await r.json())[0];
    if (follow && l && (l.job + '/' + l.layer + '/' + l.stage + '/' + l.state) !== shown) location.reload();
  } catch (e) {}
}
setInterval(poll, %d);
</script>"""


def health_html(h: dict) -> str:
    """One line: is the box service running and healthy, broker, spool, heartbeat."""
    status = h.get("status")
    if status is None:
        return "<span class='health bad'>No health file in this store: the box service has not run here.</span>"
    if status != "running":
        head = f"Box service {html.escape(str(status))}"
    else:
        head = "Box running and healthy" if h["ok"] else f"Box unhealthy: {html.escape(h['reason'])}"
    bits = [head]
    if status == "running" and h.get("mqtt_enabled", True):
        bits.append("broker connected" if h.get("broker_connected") else "broker NOT connected")
    if h.get("spool_pending"):
        bits.append(f"{h['spool_pending']} messages waiting to be sent")
    if h.get("age_s") is not None:
        bits.append(f"last heartbeat {fmt_seconds(h['age_s'])} ago")
    if h.get("last_error") and not h["ok"]:
        bits.append(f"last error: {html.escape(str(h['last_error']))}")
    joined = " | ".join(bits)
    return f"<span class='health {'ok' if h['ok'] else 'bad'}'>{joined}</span>"


def timeline_html(entries: list[LayerEntry], selected: tuple[str, int] | None) -> str:
    """The job's layers in print order, coloured by state (top half: the early state when it differed)."""
    cells = []
    for e in sorted(entries, key=lambda e: e.layer):
        final = state_color(e.state)
        differs = e.stage == "final" and e.early_state not in (None, e.state)
        bg = f"linear-gradient(to bottom,{state_color(e.early_state)} 50%,{final} 50%)" if differs else final
        if e.stage == "pending":
            bg = "#999"
        tip = f"layer {e.layer}: {e.state}" + (" (early, SR pending)" if e.stage == "early" else "")
        tip += f"; early from the webcam image: {e.early_state}" if differs else ""
        sel = " class='sel'" if selected == (e.job, e.layer) else ""
        cells.append(
            f"<a{sel} href='?job={e.job}&amp;layer={e.layer}' title='{html.escape(tip)}' style='background:{bg}'>"
            f"{e.layer}</a>"
        )
    return (
        f"<div class='timeline'>{''.join(cells)}</div><p class='legend'>Green ok, orange minor, red critical, grey not "
        "analysed yet. Two colours: top the early state from the webcam image, bottom the final state from the "
        "super-resolved image. Click a layer to see it.</p>"
    )


def page_html(
    title: str,
    health: dict,
    jobs: list[str],
    job: str | None,
    entries: list[LayerEntry],
    view: LayerView | None,
    follow: bool,
    refresh_s: float,
) -> str:
    """The whole page."""
    sel = (view.job, view.layer) if view else None
    others = "".join(f"<a href='?job={html.escape(j)}'>{html.escape(j)}</a>" for j in jobs if j != job)
    head = f"<header><h1>{html.escape(title)}</h1>{health_html(health)}</header>" + (
        f"<p class='jobs'>Other jobs in the archive: {others}</p>" if others else ""
    )
    if view is None:
        body = "<p>No layers archived yet. This page shows each layer once the box has captured it.</p>"
    else:
        u = f"layers/{view.job}/{view.layer}"
        links = (
            f"<p class='links'><a href='{u}/lr.png'>full webcam (LR) image</a><a href='{u}/sr.png'>full super-resolved "
            f"(SR) image</a><a href='{u}/anomaly.json'>anomaly JSON</a><a href='{u}/meta.json'>meta JSON</a></p>"
        )
        when = f"<p class='legend'>{html.escape(_when(view))}</p>"
        card = card_html(view, lambda which: f"{u}/{which}.png" if _has(view, which) else "", links + when)
        body = (
            f"<h2>Job {html.escape(view.job)}: {len(entries)} layers</h2>{timeline_html(entries, sel)}"
            + (
                "<p class='legend'>Showing the latest layer; the page reloads when a newer one arrives.</p>"
                if follow
                else "<p class='legend'><a href='./'>Follow the latest layer</a></p>"
            )
            + card
        )
    shown = f"{view.job}/{view.layer}/{'final' if view and view.is_final else 'early'}/{view.state}" if view else ""
    script = _SCRIPT % (json.dumps(shown), "true" if follow else "false", int(refresh_s * 1000))
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<meta name='viewport' content='width=device-width'><style>{PAGE_CSS}</style></head><body>{head}{body}"
        f"<p class='legend'>States: "
        + "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in STATE_MEANING.items())
        + f".</p>{script}</body></html>"
    )


def _has(view: LayerView, which: str) -> bool:
    """Whether an image of the card can be made for this layer."""
    lr, sr = (view.folder / "lr.png").exists(), (view.folder / "sr.png").exists()
    return {"overview": lr or sr, "lr": lr, "sr": sr}.get(which, lr and sr)


def _when(view: LayerView) -> str:
    """'Layer ended 3 min 12 s ago (box clock).'"""
    t = view.meta.get("t_event_unix")
    return (
        f"Layer ended {fmt_seconds(max(0.0, time.time() - float(t)))} ago (box clock)."
        if isinstance(t, (int, float))
        else ""
    )
