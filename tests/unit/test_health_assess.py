"""What health calls degraded, and what a restart may fix (pure: no service, no broker)."""

from __future__ import annotations

import configparser
import os
import time
from pathlib import Path

from edge.health import assess, check_health, write_health
from edge.service_config import ServiceConfig
from edge.source_monitor import SourceMonitor

NOW = 1_000_000.0
LIMITS = ServiceConfig(broker_grace_s=30, source_grace_s=60, late_factor=3, max_sr_backlog=5, max_spool_pending=100,
                       min_free_mb=100)


def _doc(**parts) -> dict:
    doc = {"job_active": True, "root": "/r",
           "broker": {"enabled": True, "connected": True, "disconnected_since_unix": None, "network_loop_alive": True,
                      "workers_alive": True},
           "source": {"state": "running", "state_since_unix": NOW - 500, "seconds_since_event": 5.0,
                      "expected_layer_s": 20.0},
           "sr": {"backlog": 1, "workers_alive": True}, "spool": {"pending": 3}, "disk": {"free_mb": 5000.0}}
    for k, v in parts.items():
        doc[k] = {**doc[k], **v} if isinstance(v, dict) else v
    return doc


def test_healthy_box_has_nothing_to_say():
    assert assess(_doc(), LIMITS, NOW) == ([], [])


def test_each_part_degrades_on_its_own():
    cases = {
        "broker": _doc(broker={"connected": False, "disconnected_since_unix": NOW - 31, "last_error": "refused"}),
        "laser source: no layer end": _doc(source={"seconds_since_event": 61.0}),
        "sr:": _doc(sr={"backlog": 6}),
        "spool:": _doc(spool={"pending": 101}),
        "disk:": _doc(disk={"free_mb": 99.0}),
    }
    for word, doc in cases.items():
        bad, restart = assess(doc, LIMITS, NOW)
        assert len(bad) == 1 and bad[0].startswith(word.split(":")[0]) and restart == [], (word, bad)


def test_restartable_problems():
    """Dead threads and a source failing past its grace are what a restart (the watchdog) may fix."""
    for doc, word in [(_doc(broker={"network_loop_alive": False}), "network"),
                      (_doc(sr={"workers_alive": False}), "worker"),
                      (_doc(source={"state": "retrying", "state_since_unix": NOW - 61, "last_error": "no driver"}),
                       "no driver"),
                      (_doc(source={"state": "failed", "last_error": "bad trace"}), "bad trace")]:
        bad, restart = assess(doc, LIMITS, NOW)
        assert restart and word in restart[0] and restart[0] in bad


def test_short_outages_and_idle_printers_are_not_degraded():
    assert assess(_doc(broker={"connected": False, "disconnected_since_unix": NOW - 29}), LIMITS, NOW) == ([], [])
    assert assess(_doc(source={"state": "retrying", "state_since_unix": NOW - 59}), LIMITS, NOW) == ([], [])
    assert assess(_doc(job_active=False, source={"seconds_since_event": 9999.0}), LIMITS, NOW) == ([], [])
    assert assess(_doc(source={"seconds_since_event": 9999.0, "expected_layer_s": None}), LIMITS, NOW) == ([], [])
    assert assess(_doc(source={"state": "ended", "seconds_since_event": 9999.0}), LIMITS, NOW) == ([], [])


def test_check_health_reports_degraded_parts(tmp_path):
    doc = {"status": "running", "pid": os.getpid(), "heartbeat_unix": time.time(), "degraded": ["disk: 3 MiB free"]}
    write_health(tmp_path, doc)
    ok, why = check_health(tmp_path, 30)
    assert not ok and "disk: 3 MiB free" in why
    write_health(tmp_path, dict(doc, degraded=[], warnings=["password file exposed"]))
    ok, why = check_health(tmp_path, 30)
    assert ok and "password file exposed" in why


def test_source_monitor_learns_the_layer_pace():
    m = SourceMonitor()
    assert m.expected() == (None, "unknown")
    for _ in range(4):
        m.event("layer_complete")
        time.sleep(0.05)
    exp, basis = m.expected()
    assert basis == "learned" and 0.04 < exp < 0.5
    m.update("retrying", "device gone", 2.0)
    snap = m.snapshot()
    assert snap["state"] == "retrying" and not snap["alive"] and snap["restarts"] == 1
    assert snap["last_error"] == "device gone"
    assert SourceMonitor(expected_layer_s=30).expected() == (30, "config")


def test_systemd_stop_budget_fits_timeout_stop_sec():
    """The service's stop budget (plus a margin for interpreter exit) stays inside TimeoutStopSec; exit 3 is a stop."""
    unit = Path(__file__).resolve().parents[2] / "packaging/systemd/lpbf-edge.service"
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read(unit)
    svc = cp["Service"]
    assert ServiceConfig().stop_timeout_s + 10 <= int(svc["TimeoutStopSec"])
    assert svc["SuccessExitStatus"].split() == ["3"]
    assert int(svc["WatchdogSec"]) >= 2 * 5  # at least two heartbeats (store.health_interval_s = 5) per watchdog period
