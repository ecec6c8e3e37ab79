"""What `watch` prints per layer stage (state, flags, latency, alert) and writes under `DIR/<job>/<layer>/`."""

from __future__ import annotations

import json
from pathlib import Path

from edge.analyze.display import fmt_seconds, merge_flags, state_history
from edge.store.atomic import write_bytes, write_json
from edge.watch.assemble import StageDone

STAGE_WORDS = {"lr": "early (webcam image, SR pending)", "final": "final"}


def _flags_text(anomaly: dict | None, limit: int = 3) -> str:
    """'3 flags: super elevation \u00d72 (critical, 2.4\u00d7 threshold), debris (minor, 1.3\u00d7 threshold)'.

    Touching flags of one type are merged (no part mask here, unlike the pages).
    """
    flags = (anomaly or {}).get("flags") or []
    if not flags:
        return "no flags"
    shown = merge_flags(flags)
    parts = [f"{s.type.replace('_', ' ')}{_times(s.count)} ({s.severity}, {s.score:.1f}\u00d7 threshold)"
             for s in shown]
    more = f", +{len(parts) - limit} more" if len(parts) > limit else ""
    return f"{len(flags)} flag{'s' * (len(flags) != 1)}: " + ", ".join(parts[:limit]) + more


def _times(count: int) -> str:
    """' \u00d74' for four merged flags, '' for one."""
    return f" \u00d7{count}" if count > 1 else ""


def latency_s(d: StageDone) -> float | None:
    """Seconds from the end of the layer (meta t_event_unix, box clock) to this stage arriving here."""
    t0 = d.meta.get("t_event_unix")
    return None if not isinstance(t0, (int, float)) else max(0.0, d.t_received - float(t0))


def layer_line(d: StageDone, early: StageDone | None = None) -> str:
    """One line per layer stage: job, layer, stage, state, flags, latency, checksums, state change."""
    state = (d.anomaly or {}).get("layer_state") or d.meta.get("layer_state") or "unknown"
    bits = [
        f"{d.node}/{d.job} layer {d.layer}",
        STAGE_WORDS.get(d.stage, d.stage),
        state.upper(),
        _flags_text(d.anomaly),
        f"latency {fmt_seconds(latency_s(d))}",
    ]
    imgs = ", ".join(sorted(d.images)) or "no images"
    bits.append(f"sha256 ok ({imgs})" if d.ok else "INCOMPLETE: " + "; ".join(d.problems))
    if d.replayed:
        bits.append("replayed")
    if d.stage == "final" and early is not None and early.anomaly is not None and d.anomaly is not None:
        h = state_history(early.anomaly, d.anomaly)
        if h["changed"]:
            bits.append(f"was {early.anomaly['layer_state']} on the webcam image: " + "; ".join(h["why"]))
    return " | ".join(bits)


def alert_line(d: StageDone) -> str | None:
    """A clear alert for a critical (or failed) layer, else None."""
    state = (d.anomaly or {}).get("layer_state")
    if state not in ("critical", "capture_failed", "segmentation_failed"):
        return None
    when = "early warning from the webcam image, final state follows" if d.stage == "lr" else "final"
    what = _flags_text(d.anomaly, limit=5) if state == "critical" else d.meta.get("failure") or state.replace("_", " ")
    return f"!!! ALERT {state.upper()}: {d.node}/{d.job} layer {d.layer} ({when}): {what}"


def write_stage(out: Path, d: StageDone, early: StageDone | None = None) -> Path:
    """Write the verified images, meta.json, anomaly.json and history.json of a stage; returns the layer folder."""
    folder = Path(out) / d.job / str(d.layer)
    for kind, data in d.images.items():
        write_bytes(folder / f"{kind}.png", data, fsync=False)
    write_json(folder / "meta.json", d.meta, fsync=False)
    if d.anomaly is not None:
        write_json(folder / "anomaly.json", d.anomaly, fsync=False)
    hist_path = folder / "history.json"
    try:
        history = json.loads(hist_path.read_text(encoding="utf-8")) if hist_path.exists() else []
    except (OSError, json.JSONDecodeError):
        history = []
    history.append(
        {
            "stage": d.stage,
            "layer_state": (d.anomaly or {}).get("layer_state"),
            "flags": len((d.anomaly or {}).get("flags") or []),
            "t_received_unix": round(d.t_received, 3),
            "latency_s": latency_s(d),
            "verified": d.ok,
            "problems": d.problems,
            "replayed": d.replayed,
        }
    )
    if early is not None and early.anomaly is not None:
        write_json(folder / "anomaly_lr.json", early.anomaly, fsync=False)
    write_json(folder / "history.json", history, fsync=False)
    return folder
