"""BoxService as a real process against a real mosquitto: SIGKILL mid-layer, broker restart, SIGTERM drain, health.

The child process runs the real service code (store, pipeline, publisher, signals, health) with cheap
in-test capture/SR stages so the reliability checks stay inside the test budget.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from edge.health import check_health
from edge.publish.payloads import sha256_hex
from tests.reliability import layer_counts, record
from tests.waiting import wait_until

N_LAYERS = 6
HERE = Path(__file__).resolve()


def _child(root: str, port: int) -> int:
    """Service process: printer resumes after the last layer the box numbered, SR takes 0.4 s per layer."""
    import cv2
    import numpy as np

    from edge.config import Config
    from edge.messages import AnomalyFlag, Frame, LayerEvent, LayerFrames, RegisteredLayer, SRLayer
    from edge.pipeline import Stages
    from edge.service import BoxService, setup_json_logging

    class Analysis:
        def __init__(self, img):
            self.mask, self.layer_state, self.timings_s = img > 200, "minor", {}
            self.flags = (AnomalyFlag("debris", "minor", 1.0, (1, 2, 3, 4), int((img > 200).sum())),)

    def capture(ev):
        rng = np.random.default_rng(ev.layer)  # the "printer" shows the same plate for the same layer
        return LayerFrames(ev, {"webcam": Frame("webcam", rng.integers(0, 255, (60, 80), dtype=np.uint8), time.time())})

    def register(fr):
        return RegisteredLayer(fr.event, cv2.resize(fr.frames["webcam"].image, (32, 32), interpolation=cv2.INTER_AREA),
                               400.0)

    def sr(reg):
        time.sleep(0.4)
        return SRLayer(reg.event, cv2.resize(reg.lr, (128, 128), interpolation=cv2.INTER_CUBIC), None, "cubic-test")

    cfg = Config.model_validate({
        "node": {"node_id": "svc", "job": "J"},
        "store": {"root": root, "health_interval_s": 0.2, "fsync": True},
        "mqtt": {"port": port, "reconnect_min_s": 0.5, "reconnect_max_s": 1, "keepalive_s": 5, "stats_interval_s": 0.5},
    })
    svc = BoxService(cfg, Stages(capture, register, sr, lambda i, n, s: Analysis(i), lambda i, n, s: Analysis(i)), None)

    def printer(submit, stop):
        _, last = svc.state.current()
        for n in range(last + 1, N_LAYERS + 1):
            if stop.wait(0.3):
                return
            submit(LayerEvent("layer_complete", n, float(n), float(n), "test-printer"))

    svc.events = printer
    setup_json_logging()
    return svc.run_forever(exit_when_source_ends=True)


def _spawn(root: Path, port: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(HERE.parents[2]))
    return subprocess.Popen([sys.executable, str(HERE), str(root), str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(root.parent / "service.log", "ab"))


def test_sigkill_mid_layer_and_broker_restart_lose_nothing(tmp_path, mosquitto, subscribe):
    """Kill -9 during SR, restart the broker, restart the service: layers 1..N each once, in order, byte-identical."""
    broker = mosquitto()
    sub = subscribe(broker.port, "lpbf/v1/svc/#")
    root = tmp_path / "box"
    root.mkdir()
    proc = _spawn(root, broker.port)
    try:
        assert wait_until(lambda: (root / "archive/J/000003/event.json").exists(),
                          30), (tmp_path / "service.log").read_text()[-3000:]
        ok, reason = check_health(root, 5.0)
        assert ok, reason
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        ok, reason = check_health(root, 5.0)
        assert not ok and "not running" in reason
        assert sub.wait_for(lambda ms: any(m.topic.endswith("availability") and m.payload == b"offline" for m in ms),
                            10)
        broker.stop()
        broker.start()
        assert wait_until(lambda: sub.subscribes >= 2, 10)  # the test's subscriber is back before the box
        proc = _spawn(root, broker.port)
        assert proc.wait(60) == 0, (tmp_path / "service.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    def finals(ms) -> list[dict]:
        """Final anomaly of each layer: on SR, or capture_failed when the kill hit before the frame was on disk."""
        return [json.loads(m.payload) for m in ms if m.topic.endswith("/anomaly") and m.user.get("stage") == "final"]

    done = lambda ms: {d["layer"] for d in finals(ms)}
    assert sub.wait_for(lambda ms: done(ms) == set(range(1, N_LAYERS + 1)), 15), sorted(done(sub.messages))
    msgs = [m for m in sub.messages if "/job/J/layer/" in m.topic]
    corr: dict[int, set] = {}
    for m in msgs:
        corr.setdefault(int(m.topic.split("/layer/")[1].split("/")[0]), set()).add(m.correlation)
    assert sorted(corr) == list(range(1, N_LAYERS + 1)) and all(len(c) == 1 for c in corr.values())
    first_final = [d["layer"] for d in finals(msgs)]
    assert sorted(set(first_final)) == list(range(1, N_LAYERS + 1)) and first_final == sorted(first_final)
    lost = {d["layer"] for d in finals(msgs) if d["layer_state"] == "capture_failed"}
    assert all(set(d) == {"job", "layer", "layer_state", "flags"} for d in finals(msgs))
    assert len(lost) <= 1  # only a layer whose frame was not yet on disk at the kill
    for n in sorted(set(range(1, N_LAYERS + 1)) - lost):
        sr = [m.payload for m in msgs if m.topic == f"lpbf/v1/svc/job/J/layer/{n}/sr"]
        assert sr and set(sr) == {(root / f"archive/J/{n:06d}/sr.png").read_bytes()}
        metas = [json.loads(m.payload) for m in msgs if m.topic == f"lpbf/v1/svc/job/J/layer/{n}/meta"
                 and json.loads(m.payload)["final"]]
        assert metas[-1]["images"]["sr"]["sha256"] == sha256_hex(sr[0])
    assert not list((root / "spool/pending").iterdir())
    # clean SIGTERM-style exit
    assert [m.payload for m in sub.messages if m.topic.endswith("availability")][-1] == b"offline"
    ok, reason = check_health(root, 5.0)
    assert not ok and "stopped" in reason
    record("SIGKILL during SR, broker restarted, service restarted", "delivery",
           f"{len(lost)} layer(s) published as capture_failed (frame not on disk at the kill)", exit_code=0,
           **layer_counts(list(range(1, N_LAYERS + 1)), [d["layer"] for d in finals(msgs)]))


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1], int(sys.argv[2])))


def test_sigterm_drains_queued_layers_and_goes_offline(tmp_path, mosquitto, subscribe):
    """SIGTERM stops the printer feed, finishes the layers seen, empties the spool, publishes offline, exits 0."""
    broker = mosquitto()
    sub = subscribe(broker.port, "lpbf/v1/svc/#")
    root = tmp_path / "box"
    root.mkdir()
    proc = _spawn(root, broker.port)
    try:
        assert wait_until(lambda: (root / "archive/J/000002/event.json").exists(), 30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    seen = sorted(int(d.name) for d in (root / "archive/J").iterdir())
    assert seen and seen == list(range(1, len(seen) + 1))
    for n in seen:
        assert json.loads((root / f"archive/J/{n:06d}/meta.json").read_text())["final"]
    assert not list((root / "spool/pending").iterdir())
    assert sub.wait_for(lambda ms: [m.payload for m in ms if m.topic.endswith("availability")][-1:] == [b"offline"], 5)
    finals = {json.loads(m.payload)["layer"] for m in sub.messages if m.topic.endswith("/anomaly")
              and m.user.get("stage") == "final"}
    assert finals == set(seen)


def test_run_cli_with_sim_printer(tmp_path, mosquitto, subscribe, tiny_bundle):
    """`lpbf-edge run --config` wires the real stages and exits 0 at the end of the build.

    The stages: sim printer, calibration, SR bundle, analysis."""
    from edge.demo import calibrate
    from edge.sim.build import generate_build
    from edge.sim.config import SimConfig

    broker = mosquitto()
    sub = subscribe(broker.port, "lpbf/v1/cli-box/#")
    build = generate_build(tmp_path / "build", 2, 5, SimConfig(hr_size_px=512, scale=4))
    cal = calibrate(build, tmp_path)
    cfg = tmp_path / "box.yaml"
    cfg.write_text(f"node:\n  node_id: cli-box\n  job: B1\nbridge:\n  source: sim\n  emit_recoat: false\n"
                   f"capture:\n  webcam: none\n  grab_on: [layer_complete]\ncalib:\n  file: {cal}\n"
                   f"sr:\n  model: {tiny_bundle}\nstore:\n  root: {tmp_path / 'box'}\nmqtt:\n  port: {broker.port}\n")
    exe = Path(sys.executable).with_name("lpbf-edge")
    r = subprocess.run([str(exe), "run", "--config", str(cfg), "--sim-build", str(build), "--speed", "40"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    logs = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
    assert {"service_started", "layer_spooled", "service_stopped"} <= {d.get("event") for d in logs}
    finals = lambda ms: {json.loads(m.payload)["layer"] for m in ms if m.topic.endswith("/anomaly")
                         and m.user.get("stage") == "final"}
    assert sub.wait_for(lambda ms: finals(ms) == {1, 2}, 10)
    meta = json.loads((tmp_path / "box/archive/B1/000002/meta.json").read_text())
    assert meta["model_id"].startswith("tiny-test") and meta["images"]["sr"]["width"] == 512


def test_run_cli_refuses_bad_setups(tmp_path):
    """Missing pieces give one clear line and a non-zero exit, not a traceback."""
    cfg = tmp_path / "box.yaml"
    cfg.write_text(f"bridge:\n  source: replay\nstore:\n  root: {tmp_path}\n")
    exe = Path(sys.executable).with_name("lpbf-edge")
    r = subprocess.run([str(exe), "run", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "--trace" in r.stderr and "Traceback" not in r.stderr
    cfg.write_text("mqtt:\n  port: 99999\n")
    r = subprocess.run([str(exe), "run", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "mqtt.port" in r.stderr


def test_broker_down_during_build_then_back(tmp_path, mosquitto, subscribe):
    """The broker dies while layers keep coming: after it returns every layer arrives in order, byte-identical."""
    broker = mosquitto()
    sub = subscribe(broker.port, "lpbf/v1/svc/job/#")
    root = tmp_path / "box"
    root.mkdir()
    proc = _spawn(root, broker.port)
    try:
        assert wait_until(lambda: (root / "archive/J/000001/meta.json").exists(), 30)
        broker.stop()
        # layers 2-4 seen while it is down
        assert wait_until(lambda: (root / "archive/J/000004/event.json").exists(), 30)
        assert list((root / "spool/pending").iterdir())
        broker.start()
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    sr_topic = lambda n: f"lpbf/v1/svc/job/J/layer/{n}/sr"
    # what the broker accepted (its log): every SR layer once, in order, with the archived size
    srs = [(t, size) for t, size in broker.received() if t.endswith("/sr")]
    assert [t for t, _ in srs] == [sr_topic(n) for n in range(1, N_LAYERS + 1)]
    for n, (_, size) in enumerate(srs, 1):
        assert size == (root / f"archive/J/{n:06d}/sr.png").stat().st_size
    # and what a subscriber got is byte-identical (it may miss messages sent before it re-subscribed:
    # mosquitto 2.0.11 does not restore its session after a restart)
    got = [m for m in sub.messages if m.topic.endswith("/sr")]
    assert got and all(m.payload == (root / f"archive/J/{int(m.topic.split('/')[-2]):06d}/sr.png").read_bytes()
                       for m in got)
    record("broker down for layers 2-4 of a build, then back", "delivery",
           "broker log: every SR layer accepted once, in order, archived size", exit_code=0,
           **layer_counts(list(range(1, N_LAYERS + 1)), [int(t.split("/layer/")[1].split("/")[0]) for t, _ in srs]))


def test_job_commands_steer_the_service(tmp_path, mosquitto, subscribe):
    """start_job switches the job of the next layers and the retained state; a malformed command changes nothing."""
    import paho.mqtt.publish as single

    from edge.config import Config
    from edge.messages import LayerEvent
    from edge.service import BoxService
    from tests.unit.test_pipeline import _stages

    broker = mosquitto()
    sub = subscribe(broker.port, "lpbf/v1/cmdbox/#")
    cfg = Config.model_validate({"node": {"node_id": "cmdbox", "job": "A"},
                                 "store": {"root": str(tmp_path), "fsync": False},
                                 "mqtt": {"port": broker.port, "reconnect_min_s": 0.5, "reconnect_max_s": 1}})
    svc = BoxService(cfg, _stages(), None)
    svc.start()
    try:
        assert svc.publisher.subscribed.wait(10)
        svc.pipeline.submit(LayerEvent("layer_complete", 1, 1.0, 1.0))
        assert svc.pipeline.drain(10)
        for payload in (b'{"job": "bad job"}', b'{"job": "B-2"}'):
            single.single("lpbf/v1/cmdbox/cmd/start_job", payload, qos=1, hostname="127.0.0.1", port=broker.port)
        assert sub.wait_for(lambda ms: sum(m.topic.endswith("cmd/result") for m in ms) == 2, 10)
        svc.pipeline.submit(LayerEvent("layer_complete", 2, 2.0, 2.0))
        assert svc.pipeline.drain(10) and svc.publisher.wait_drained(10)
    finally:
        svc.stop(5)
    results = [json.loads(m.payload) for m in sub.messages if m.topic.endswith("cmd/result")]
    assert [r["ok"] for r in results] == [False, True] and results[1]["job"] == "B-2"
    assert sub.wait_for(lambda ms: any(m.topic == "lpbf/v1/cmdbox/job/B-2/layer/1/sr" for m in ms), 5)
    assert any(m.topic == "lpbf/v1/cmdbox/job/A/layer/1/sr" for m in sub.messages)
    states = [json.loads(m.payload) for m in sub.messages if m.topic.endswith("/state")]
    assert states[-1]["job"] == "B-2" and states[-1]["job_active"] is True
