"""BoxService faults against a real mosquitto and a paho MQTT 5 subscriber (issue 16): a dead laser source, a
broken replay trace, the end of a build with the broker down, a bad job id, health and the systemd watchdog."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from typer.testing import CliRunner

from edge.app import BridgeEvents
from edge.cli import app
from edge.config import Config
from edge.health import check_health
from edge.messages import LayerEvent
from edge.service import EXIT_LEFT_OVER, EXIT_OK, EXIT_SOURCE_FAILED, BoxService
from firmware_bridge.traces import generate_trace
from tests.integration.mqtt_tools import final_layers, send_command
from tests.reliability import layer_counts, record
from tests.unit.test_pipeline import _stages
from tests.waiting import wait_until

NODE = "fb"
BASE = f"lpbf/v1/{NODE}"


def _cfg(root, port: int, **service) -> Config:
    return Config.model_validate({
        "node": {"node_id": NODE, "job": "J"},
        "store": {"root": str(root), "fsync": False, "health_interval_s": 0.2, "health_max_age_s": 5},
        "mqtt": {"port": port, "reconnect_min_s": 0.5, "reconnect_max_s": 1, "keepalive_s": 5, "stats_interval_s": 0.5},
        "bridge": {"source": "daq", "restart_backoff_s": 0.2, "emit_recoat": False},
        "service": {"source_backoff_max_s": 0.8, **service},
    })


class NotifySocket:
    """A unix datagram socket standing in for systemd's NOTIFY_SOCKET; records (time, message)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.got: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.got.append((time.monotonic(), self.sock.recv(4096).decode()))
            except TimeoutError:
                continue

    def since(self, t0: float, prefix: str) -> list[str]:
        return [m for t, m in list(self.got) if t >= t0 and m.startswith(prefix)]

    def close(self) -> None:
        self._stop.set()
        self._t.join(2)
        self.sock.close()


def _health_cli(cfg_path) -> tuple[int, str]:
    r = CliRunner().invoke(app, ["health", "--config", str(cfg_path)])
    return r.exit_code, r.output.strip()


def test_dead_daq_source_is_retried_reported_and_withholds_the_watchdog(tmp_path, mosquitto, subscribe, monkeypatch):
    """Issue 16.3: with no NI driver the service logged once and ran on without a source, health exit 0, watchdog fed.

    Now the DAQ is reopened with backoff, health is degraded (exit 1) and the watchdog withheld after
    service.source_grace_s; once the driver is there the layers flow, health and watchdog recover, nothing lost.
    """
    from firmware_bridge.errors import DaqUnavailableError
    from firmware_bridge.sources.daq import DaqSource, _import_nidaqmx
    from firmware_bridge.sources.replay import TraceReplaySource

    try:
        _import_nidaqmx()
        pytest.skip("an NI-DAQmx driver with a device is present: the missing-driver fault cannot be shown here")
    except DaqUnavailableError:
        pass
    broker = mosquitto()
    sub = subscribe(broker.port, f"{BASE}/#")
    notify = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    cfg = _cfg(tmp_path / "box", broker.port, source_grace_s=1.0)
    cfg_file = tmp_path / "box.yaml"
    cfg_file.write_text(f"store:\n  root: {tmp_path / 'box'}\n  health_max_age_s: 5\n")
    trace = generate_trace(3, seed=5).to_csv(tmp_path / "trace.csv")
    driver_installed, opened = threading.Event(), []

    def make_source():
        opened.append(time.monotonic())
        return TraceReplaySource(trace) if driver_installed.is_set() else DaqSource(cfg.bridge.daq)

    svc = BoxService(cfg, _stages(), BridgeEvents(cfg, make_source, restart=True))
    svc.start()
    try:
        assert wait_until(lambda: any("laser source" in d for d in svc.health_doc("running")["degraded"]), 10)
        time.sleep(0.5)
        code, line = _health_cli(cfg_file)
        t_bad = time.monotonic()
        time.sleep(1.0)
        assert code == 1 and "laser source: failing" in line and "NI-DAQmx" in line, line
        assert notify.since(t_bad, "WATCHDOG=1") == [] and notify.since(t_bad, "STATUS=degraded")
        gaps = [b - a for a, b in zip(opened, opened[1:], strict=False)]
        assert len(opened) >= 3 and gaps[1] > gaps[0] * 1.5  # backoff grows (0.2, 0.4, 0.8 s)
        assert svc.source.snapshot()["state"] == "retrying" and not svc.source_done.is_set()
        driver_installed.set()
        assert wait_until(lambda: svc.source.snapshot()["state"] == "ended", 10)
        assert svc.pipeline.drain(20) and svc.publisher.wait_drained(20)
        t_ok = time.monotonic()
        assert wait_until(lambda: notify.since(t_ok, "WATCHDOG=1"), 5)
        assert _health_cli(cfg_file)[0] == 0
    finally:
        svc.stop(10)
        notify.close()
    assert sub.wait_for(lambda ms: sorted(set(final_layers(ms, "J"))) == [1, 2, 3], 10)
    record("laser source: NI-DAQmx driver missing, installed later", "laser source", line, exit_code=code,
           **layer_counts([1, 2, 3], final_layers(sub.messages, "J")))


def test_broken_replay_trace_exits_non_zero(tmp_path, mosquitto, caplog):
    """Issue 16.3: run_forever returned 0 after a failed replay trace."""
    from firmware_bridge.sources.replay import TraceReplaySource

    broker = mosquitto()
    trace = tmp_path / "bad.csv"
    trace.write_text("time_s,laser_v\n0.0,0.1\n0.001,oops\n")
    cfg = _cfg(tmp_path / "box", broker.port)
    cfg = cfg.model_copy(update={"bridge": cfg.bridge.model_copy(update={"source": "replay"})})
    svc = BoxService(cfg, _stages(), BridgeEvents(cfg, lambda: TraceReplaySource(trace), restart=False))
    code = svc.run_forever(exit_when_source_ends=True)
    assert code == EXIT_SOURCE_FAILED
    msg = next(r.getMessage() for r in caplog.records if getattr(r, "event", None) == "source_failed")
    assert "bad.csv:3" in msg
    record("replayed laser trace with a bad row", "laser source", msg, exit_code=code, produced=0, received=0, lost=0,
           duplicated=0)


def _printer(layers: list[int], gap_s: float = 0.05):
    def run(submit, stop):
        for n in layers:
            if stop.wait(gap_s):
                return
            submit(LayerEvent("layer_complete", n, float(n), float(n), "test-printer"))
    return run


def test_end_of_build_with_broker_down_exits_3_then_delivers_everything(tmp_path, mosquitto, subscribe, caplog):
    """Issue 16.8: at the end of a build the service exited 0 with drained: false."""
    broker = mosquitto()
    sub = subscribe(broker.port, f"{BASE}/job/#")
    broker.stop()
    cfg = _cfg(tmp_path / "box", broker.port, stop_timeout_s=3)
    t0 = time.monotonic()
    code = BoxService(cfg, _stages(), _printer([1, 2, 3, 4])).run_forever(exit_when_source_ends=True)
    took = time.monotonic() - t0
    stopped = [r for r in caplog.records if getattr(r, "event", None) == "service_stopped"][-1]
    assert code == EXIT_LEFT_OVER and not stopped.spool_sent and stopped.spool["pending"] > 0 and took < 3 + 3
    assert "spooled messages" in stopped.getMessage()
    broker.start()
    assert sub.wait_for(lambda ms: sub.subscribes >= 2, 10)
    cfg = cfg.model_copy(update={"service": cfg.service.model_copy(update={"stop_timeout_s": 20})})
    svc = BoxService(cfg, _stages(), _printer([]))
    assert svc.run_forever(exit_when_source_ends=True) == EXIT_OK
    assert sub.wait_for(lambda ms: sorted(set(final_layers(ms, "J"))) == [1, 2, 3, 4], 10)
    counts = layer_counts([1, 2, 3, 4], final_layers(sub.messages, "J"))
    assert counts["lost"] == 0
    record("end of build with the broker down, then a restart with it up", "shutdown",
           f"exit {code}: {stopped.getMessage()}", exit_code=code, **counts)


def test_dotdot_job_id_over_mqtt_is_refused(tmp_path, mosquitto, subscribe):
    """Issue 16.4: set_job {"job": ".."} was accepted; layers landed outside archive/ and went out under job/../."""
    broker = mosquitto()
    sub = subscribe(broker.port, f"{BASE}/#")
    svc = BoxService(_cfg(tmp_path / "box", broker.port), _stages(), None)
    svc.start()
    try:
        assert svc.publisher.subscribed.wait(10)
        send_command(broker.port, f"{BASE}/cmd/set_job", b'{"job": ".."}', response_topic=f"{BASE}/reply/t",
                     correlation=b"1")
        assert sub.wait_for(lambda ms: any(m.topic == f"{BASE}/reply/t" for m in ms), 10)
        for n in (1, 2):
            svc.pipeline.submit(LayerEvent("layer_complete", n, float(n), float(n)))
        assert svc.pipeline.drain(10) and svc.publisher.wait_drained(10)
    finally:
        svc.stop(5)
    reply = json.loads(next(m.payload for m in sub.messages if m.topic == f"{BASE}/reply/t"))
    assert reply["ok"] is False and "starts with '.'" in reply["error"]
    assert sorted(p.name for p in (tmp_path / "box" / "archive").iterdir()) == ["J"]
    assert sorted(p.name for p in (tmp_path / "box").iterdir() if p.is_dir()) == ["archive", "spool"]
    assert not any("/job/../" in m.topic or "/job/./" in m.topic for m in sub.messages)
    record('set_job {"job": ".."}', "commands", reply["error"], **layer_counts([1, 2], final_layers(sub.messages, "J")))


def test_health_reports_every_part(tmp_path, mosquitto):
    """health.json carries broker, source, SR backlog, spool and disk; a too-full disk makes `health` exit 1."""
    broker = mosquitto()
    cfg = _cfg(tmp_path / "box", broker.port, min_free_mb=1e12)
    svc = BoxService(cfg, _stages(), _printer([1]))
    svc.start()
    try:
        assert svc.publisher.connected.wait(10) and wait_until(lambda: svc.source_done.is_set(), 10)
        time.sleep(0.5)
        ok, line = check_health(cfg.store.root, 5)
        doc = json.loads((tmp_path / "box" / "health.json").read_text())
    finally:
        svc.stop(5)
    assert not ok and "disk:" in line and doc["degraded"] and doc["restart_needed"] == []
    broker_part = doc["broker"]
    assert broker_part["connected"] and broker_part["network_loop_alive"] and broker_part["reason_code"] == "Success"
    assert doc["source"]["state"] == "ended" and doc["source"]["events"] == 1
    assert {"backlog", "workers_alive"} <= set(doc["sr"]) and {"pending", "rejected"} <= set(doc["spool"])
    assert doc["disk"]["free_mb"] > 0
    record("free disk below service.min_free_mb", "health", line, exit_code=1)
