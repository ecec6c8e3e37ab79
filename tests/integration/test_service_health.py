"""Health file check (what the Ansible update playbook runs) and JSON log lines."""

from __future__ import annotations

import json
import logging
import os
import time

from typer.testing import CliRunner

from edge.cli import app
from edge.health import check_health, write_health
from edge.service import JsonFormatter


def _doc(**kw):
    d = {"status": "running", "pid": os.getpid(), "version": "1", "heartbeat_unix": time.time(), "mqtt_enabled": True,
         "broker_disconnected_since_unix": None, "last_layer": 4, "spool_pending": 0}
    d.update(kw)
    return d


def test_health_states(tmp_path):
    """Healthy only with a fresh heartbeat, a live pid, status running and a broker connection."""
    assert check_health(tmp_path, 30)[0] is False and "no health file" in check_health(tmp_path, 30)[1]
    write_health(tmp_path, _doc())
    assert check_health(tmp_path, 30)[0]
    write_health(tmp_path, _doc(heartbeat_unix=time.time() - 100))
    assert "heartbeat" in check_health(tmp_path, 30)[1]
    write_health(tmp_path, _doc(pid=2**22 + 12345))
    assert "not running" in check_health(tmp_path, 30)[1]
    write_health(tmp_path, _doc(status="stopped"))
    assert "stopped" in check_health(tmp_path, 30)[1]
    write_health(tmp_path, _doc(broker_disconnected_since_unix=time.time() - 60, last_error="connection refused"))
    ok, why = check_health(tmp_path, 30)
    assert not ok and "broker" in why and "refused" in why
    write_health(tmp_path, _doc(broker_disconnected_since_unix=time.time() - 5))
    assert check_health(tmp_path, 30)[0]  # a short blip is not a failed update


def test_health_cli_exit_codes(tmp_path):
    """`lpbf-edge health --config` exits 0/1 with one line."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"store:\n  root: {tmp_path}\n")
    r = CliRunner().invoke(app, ["health", "--config", str(cfg)])
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
    write_health(tmp_path, _doc())
    r = CliRunner().invoke(app, ["health", "--config", str(cfg)])
    assert r.exit_code == 0 and r.output.startswith("healthy")


def test_json_log_lines_carry_extra_fields():
    """Every log record becomes one JSON object with its extra fields."""
    rec = logging.LogRecord("edge.pipeline", logging.WARNING, __file__, 1, "layer %d late", (7,), None)
    rec.layer, rec.event = 7, "late"
    doc = json.loads(JsonFormatter().format(rec))
    assert doc["msg"] == "layer 7 late" and doc["layer"] == 7 and doc["level"] == "warning" and doc["event"] == "late"


def test_sd_notify_reaches_the_notify_socket(tmp_path, monkeypatch):
    """READY=1 goes to $NOTIFY_SOCKET as systemd's Type=notify expects."""
    import socket

    from edge.service import sd_notify

    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(path))
        s.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert sd_notify("READY=1")
        assert s.recv(64) == b"READY=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not sd_notify("READY=1")


def test_systemd_unit(tmp_path):
    """The shipped unit runs `lpbf-edge run --config`, Type=notify with a watchdog, restarts on failure.

    systemd accepts it."""
    import configparser
    import shutil
    import subprocess
    from pathlib import Path

    unit = Path(__file__).resolve().parents[2] / "packaging/systemd/lpbf-edge.service"
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read(unit)
    svc = cp["Service"]
    assert svc["Type"] == "notify" and svc["Restart"] == "on-failure" and svc["KillSignal"] == "SIGTERM"
    assert int(svc["WatchdogSec"]) > 0 and svc["ExecStart"].split()[1:3] == ["run", "--config"]
    if shutil.which("systemd-analyze"):
        exe = tmp_path / "lpbf-edge"
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
        copy = tmp_path / "lpbf-edge.service"
        copy.write_text(unit.read_text().replace(svc["ExecStart"].split()[0], str(exe)))
        r = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True)
        bad = [l for l in (r.stdout + r.stderr).splitlines() if "lpbf-edge.service" in l]
        assert not bad, bad
