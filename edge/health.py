"""Service health: a JSON file the running service rewrites every few seconds, what is degraded, and its check."""

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


def _age(now: float, since: float | None) -> float:
    """Seconds since `since` (0 when unknown)."""
    return 0.0 if since is None else max(0.0, now - float(since))


def assess(doc: dict, limits, now: float) -> tuple[list[str], list[str]]:
    """(degraded reasons, the subset a restart may fix) of a health document; limits: a ServiceConfig."""
    bad, restart = [], []
    broker = doc.get("broker") or {}
    if broker.get("enabled"):
        if not broker.get("network_loop_alive", True) or not broker.get("workers_alive", True):
            restart.append("broker: the MQTT network or spool-drain thread is not running")
        down = _age(now, broker.get("disconnected_since_unix"))
        since = broker.get("disconnected_since_unix")
        if not broker.get("connected") and since is not None and down > limits.broker_grace_s:
            bad.append(f"broker: not connected for {down:.0f} s ({broker.get('reason_code')}): "
                       f"{broker.get('last_error') or 'no reason given'}")
    src = doc.get("source") or {}
    failing = _age(now, src.get("state_since_unix"))
    if src.get("state") == "failed":
        restart.append(f"laser source: failed: {src.get('last_error')}")
    elif src.get("state") == "retrying" and failing > limits.source_grace_s:
        restart.append(f"laser source: failing for {failing:.0f} s, {src.get('restarts')} reopen attempts: "
                       f"{src.get('last_error')}")
    expected, gap = src.get("expected_layer_s"), src.get("seconds_since_event")
    if doc.get("job_active") and src.get("state") == "running" and expected and gap is not None \
            and gap > limits.late_factor * expected:
        bad.append(f"laser source: no layer end for {gap:.0f} s, expected one every {expected:.0f} s "
                   f"({src.get('expected_from')}); send stop_job when the build is over")
    sr = doc.get("sr") or {}
    if not sr.get("workers_alive", True):
        restart.append("pipeline: a capture or SR worker thread is not running")
    if sr.get("backlog", 0) > limits.max_sr_backlog:
        bad.append(f"sr: {sr['backlog']} layers wait for super-resolution (limit {limits.max_sr_backlog})")
    spool = doc.get("spool") or {}
    if spool.get("pending", 0) > limits.max_spool_pending:
        bad.append(f"spool: {spool['pending']} messages wait to be published (limit {limits.max_spool_pending})")
    disk = doc.get("disk") or {}
    if disk.get("free_mb") is not None and disk["free_mb"] < limits.min_free_mb:
        bad.append(f"disk: {disk['free_mb']:.0f} MiB free under {doc.get('root')} (limit {limits.min_free_mb:.0f} MiB)")
    return bad + restart, restart


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
    degraded = doc.get("degraded")
    if degraded:
        return False, f"degraded (pid {pid}): " + "; ".join(degraded)
    since = doc.get("broker_disconnected_since_unix")
    if degraded is None and doc.get("mqtt_enabled", True) and since is not None and now - float(since) > max_age_s:
        reason = doc.get("last_error") or "no reason given"
        return False, f"not connected to the MQTT broker for {now - float(since):.0f} s: {reason}"
    source = (doc.get("source") or {}).get("state", "n/a")
    warn = "".join(f"; warning: {w}" for w in doc.get("warnings") or [])
    return True, (f"healthy: pid {pid}, version {doc.get('version')}, last layer {doc.get('last_layer')}, "
                  f"source {source}, spool {doc.get('spool_pending')} pending{warn}")
