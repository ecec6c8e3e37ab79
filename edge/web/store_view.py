"""Read-only listing of a store root (`<root>/archive/<job>/<layer:06d>/`, `<root>/health.json`) for the web view."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from edge.health import HEALTH_FILE, check_health

JOB_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class LayerEntry:
    """One archived layer as `/api/layers` lists it."""

    job: str
    layer: int
    state: str
    stage: str
    early_state: str | None
    flags: int
    t_unix: float | None
    has_sr: bool
    has_lr: bool

    def to_json(self, base_url: str = "") -> dict:
        """JSON object with image URLs (relative to base_url)."""
        u = f"{base_url}/layers/{self.job}/{self.layer}"
        images = {k: f"{u}/{k}.png" for k, ok in (("lr", self.has_lr), ("sr", self.has_sr)) if ok}
        if self.has_lr or self.has_sr:
            images["overview"] = f"{u}/overview.png"
        if self.has_lr and self.has_sr:
            images.update(zoom_lr=f"{u}/zoom_lr.png", zoom_sr=f"{u}/zoom_sr.png")
        return {
            "job": self.job,
            "layer": self.layer,
            "state": self.state,
            "stage": self.stage,
            "early_state": self.early_state,
            "flag_count": self.flags,
            "t_unix": self.t_unix,
            "images": images,
            "page": f"{base_url}/?job={self.job}&layer={self.layer}",
        }


def _read(p: Path) -> dict | None:
    """A JSON object, or None when absent or unreadable (a file being replaced is retried on the next request)."""
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def layer_folder(root: Path, job: str, layer: int) -> Path | None:
    """The archive folder of (job, layer), or None for a name that is not a job id."""
    if not JOB_RE.match(job) or layer < 0:
        return None
    return Path(root) / "archive" / job / f"{layer:06d}"


def read_entry(root: Path, job: str, layer: int) -> LayerEntry | None:
    """One layer's listing entry from its folder (None when nothing is archived for it)."""
    d = layer_folder(root, job, layer)
    if d is None or not d.is_dir():
        return None
    meta, anomaly, early, event = (_read(d / n) for n in ("meta.json", "anomaly.json", "anomaly_lr.json", "event.json"))
    final = anomaly is not None and bool((meta or {}).get("final", True))
    doc = anomaly if final else early
    stage = "final" if final else "early" if early else "pending"
    t = (meta or {}).get("t_event_unix") or (event or {}).get("t_unix")
    return LayerEntry(
        job,
        layer,
        doc["layer_state"] if doc else "pending",
        stage,
        early["layer_state"] if early else None,
        len(doc.get("flags", [])) if doc else 0,
        float(t) if isinstance(t, (int, float)) else None,
        (d / "sr.png").exists(),
        (d / "lr.png").exists(),
    )


def jobs(root: Path) -> list[tuple[str, list[int]]]:
    """(job, layer numbers ascending) for every job in the archive, the job with the newest layer folder first."""
    arch = Path(root) / "archive"
    if not arch.is_dir():
        return []
    out = []
    for jd in arch.iterdir():
        if jd.is_dir() and JOB_RE.match(jd.name):
            layers = sorted(int(p.name) for p in jd.iterdir() if p.is_dir() and p.name.isdigit())
            if layers:
                out.append((jd.name, layers, (jd / f"{layers[-1]:06d}").stat().st_mtime))
    return [(j, ls) for j, ls, _ in sorted(out, key=lambda x: -x[2])]


def list_layers(root: Path, job: str | None = None, limit: int = 200) -> list[LayerEntry]:
    """Archived layers newest first (the newest job's layers from the last down, then the next job), at most `limit`."""
    out: list[LayerEntry] = []
    for j, layers in jobs(root):
        if job is not None and j != job:
            continue
        for n in reversed(layers):
            e = read_entry(root, j, n)
            if e is not None:
                out.append(e)
            if len(out) >= limit:
                return out
    return out


def health(root: Path, max_age_s: float = 30.0) -> dict:
    """The service's health file with a verdict: {"ok", "reason", "age_s", ...the file's fields}."""
    doc = _read(Path(root) / HEALTH_FILE) or {}
    ok, reason = check_health(root, max_age_s)
    hb = doc.get("heartbeat_unix")
    age = round(time.time() - float(hb), 1) if isinstance(hb, (int, float)) else None
    return {"ok": ok, "reason": reason, "age_s": age, **{k: v for k, v in doc.items() if k != "pid"}}
