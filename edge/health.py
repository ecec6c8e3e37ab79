"""Service health: a JSON file the running service rewrites every few seconds, and its check."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from edge.store.atomic import write_json

HEALTH_FILE = "health.json"


def write_health(root: str | Path, doc: dict) -> None:
    """Atomically rewrite `root/health.json` (no fsync: it is rewritten every few seconds)."""
    write_json(Path(root) / HEALTH_FILE, doc, fsync=False)


def _alive(pid: int) -> bool:
    """True when a process with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_health(root: str | Path, max_age_s: float, now: float | None = None) -> tuple[bool, str]:
    """(healthy, one-line reason) from the health file the service keeps rewriting."""
    path = Path(root) / HEALTH_FILE
    now = time.time() if now is None else now
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False, f"no health file at {path} (service not running or store.root differs)"
    except (OSError, json.JSONDecodeError) as exc:
        return False, f"unreadable health file {path}: {exc}"
    status, pid = doc.get("status"), int(doc.get("pid", -1))
    if status != "running":
        return False, f"service status is {status!r} (pid {pid})"
    if not _alive(pid):
        return False, f"service pid {pid} is not running"
    age = now - float(doc.get("heartbeat_unix", 0))
    if age > max_age_s:
        return False, f"heartbeat is {age:.0f} s old (limit {max_age_s:.0f} s)"
    since = doc.get("broker_disconnected_since_unix")
    if doc.get("mqtt_enabled", True) and since is not None and now - float(since) > max_age_s:
        return False, f"not connected to the MQTT broker for {now - float(since):.0f} s: {doc.get('last_error') or 'no reason given'}"
    return True, f"healthy: pid {pid}, version {doc.get('version')}, last layer {doc.get('last_layer')}, spool {doc.get('spool_pending')} pending"
