"""`lpbf-edge watch` against a real mosquitto: a BoxService (cheap stages) and a scripted box (gaps, replays)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("paho.mqtt")


class _Analysis:
    """What an analyser returns: a super_elevation flag whose severity the test chooses."""

    def __init__(self, img: np.ndarray, severity: str, score: float):
        from edge.messages import AnomalyFlag

        self.mask, self.timings_s, self.layer_state = img > 128, {}, severity
        self.flags = (AnomalyFlag("super_elevation", severity, score, (2, 2, 4, 4), 16),)


def _box(root: Path, port: int, layers: int, sr_s: float, **mqtt: object):
    """A BoxService with cheap stages: SR takes `sr_s` (so later layers go out LR-first); LR analysis says critical."""
    import cv2

    from edge.config import Config
    from edge.messages import Frame, LayerEvent, LayerFrames, RegisteredLayer, SRLayer
    from edge.pipeline import Stages
    from edge.service import BoxService

    def capture(ev):
        rng = np.random.default_rng(ev.layer)
        return LayerFrames(ev, {"webcam": Frame("webcam", rng.integers(0, 255, (40, 40), dtype=np.uint8), time.time())})

    def register(fr):
        return RegisteredLayer(fr.event, cv2.resize(fr.frames["webcam"].image, (32, 32)), 400.0)

    def sr(reg):
        time.sleep(sr_s)
        return SRLayer(reg.event, cv2.resize(reg.lr, (128, 128), interpolation=cv2.INTER_CUBIC), None, "cubic-test")

    cfg = Config.model_validate(
        {
            "node": {"node_id": "wbox", "job": "W1"},
            "store": {"root": str(root), "fsync": False},
            "mqtt": {"port": port, "stats_interval_s": 0.5, **mqtt},
        }
    )
    stages = Stages(
        capture, register, sr, lambda i, n, s: _Analysis(i, "minor", 1.4), lambda i, n, s: _Analysis(i, "critical", 2.3)
    )

    def printer(submit, stop):
        for n in range(1, layers + 1):
            submit(LayerEvent("layer_complete", n, float(n), float(n), "test-printer"))
            if stop.wait(0.15):
                return

    return BoxService(cfg, stages, printer)


def test_watch_cli_follows_a_box_verifies_writes_and_alerts(tmp_path, mosquitto):
    """The CLI sees every layer, final ones verified and saved; early critical -> final minor alerted, explained."""
    broker = mosquitto()
    out = tmp_path / "watched"
    exe = Path(sys.executable).with_name("lpbf-edge")
    w = subprocess.Popen(
        [
            str(exe),
            "watch",
            "--broker",
            broker.url(),
            "--node",
            "wbox",
            "--out",
            str(out),
            "--layers",
            "4",
            "--duration",
            "90",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.5)  # subscribed before the box starts publishing
    svc = _box(tmp_path / "box", broker.port, 4, sr_s=0.6)
    svc.start()
    try:
        assert svc.source_done.wait(20)
        svc.pipeline.drain(30)
        svc.publisher.wait_drained(20)
        stdout, stderr = w.communicate(timeout=60)
    finally:
        svc.stop()
        if w.poll() is None:
            w.kill()
    assert w.returncode == 0, stdout + stderr
    lines = stdout.splitlines()
    assert any(line.startswith("box wbox: online") for line in lines)
    finals = [line for line in lines if "wbox/W1 layer" in line and "| final |" in line]
    assert len(finals) == 4 and all("MINOR" in f and "sha256 ok (lr, sr)" in f and "latency" in f for f in finals)
    early = [line for line in lines if "| early" in line]
    assert early, "SR took longer than the layer spacing: later layers must go out LR-first"
    assert any(line.startswith("!!! ALERT CRITICAL: wbox/W1 layer") and "early warning" in line for line in lines)
    assert any("was critical on the webcam image: super elevation: 2.3" in f for f in finals)
    for n in range(1, 5):
        d = out / "W1" / str(n)
        assert (d / "sr.png").read_bytes() == (tmp_path / f"box/archive/W1/{n:06d}/sr.png").read_bytes()
        assert (d / "lr.png").read_bytes() == (tmp_path / f"box/archive/W1/{n:06d}/lr.png").read_bytes()
        assert json.loads((d / "anomaly.json").read_text())["layer_state"] == "minor"
        assert json.loads((d / "meta.json").read_text())["final"] is True
    assert "4 final layers: 4 complete, 0 incomplete" in lines[-1]


def _publish_layer(
    client, base: str, job: str, n: int, corr: str, replayed: bool = False, corrupt_sr: bool = False
) -> None:
    """Publish one layer's final messages as the box would (layer_messages), optionally with a damaged SR image."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from edge.publish.payloads import image_info, layer_messages
    from edge.publish.topics import Topics

    lr, sr = f"lr-{n}".encode(), f"sr-{n}".encode()
    meta = {
        "job": job,
        "layer": n,
        "stage": "final",
        "final": True,
        "t_event_unix": time.time(),
        "images": {"lr": image_info(lr, (8, 8)), "sr": image_info(sr, (32, 32))},
    }
    if replayed:
        meta["replayed"] = True
    anomaly = {"job": job, "layer": n, "layer_state": "ok", "flags": []}
    prefix, node = base.rsplit("/", 1)
    for m in layer_messages(
        Topics(prefix, node), job, n, corr, meta, {"lr": lr, "sr": sr + b"X" if corrupt_sr else sr}, anomaly
    ):
        p = Properties(PacketTypes.PUBLISH)
        p.ContentType, p.CorrelationData, p.UserProperty = m.content_type, m.correlation, [("stage", m.stage)]
        client.publish(m.topic, m.payload, qos=1, retain=m.retain, properties=p).wait_for_publish(5)


def test_watch_asks_for_missed_and_corrupt_layers_and_accepts_the_replay(tmp_path, mosquitto):
    """Layer 2 never sent, layer 4's SR damaged: one replay request each (JSON, ResponseTopic under <p>/reply/), the
    replayed layers (same CorrelationData, meta replayed: true) are verified and saved."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from edge.watch.subscriber import Broker, Watcher

    broker = mosquitto()
    base = "lpbf/v1/sbox"
    requests: list = []
    box = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="scripted-box", protocol=mqtt.MQTTv5)
    subscribed = threading.Event()
    box.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{base}/cmd/replay", qos=1)
    box.on_subscribe = lambda *a: subscribed.set()
    box.on_message = lambda c, u, msg: requests.append(msg)
    box.connect("127.0.0.1", broker.port)
    box.loop_start()
    assert subscribed.wait(10)
    lines: list[str] = []
    w = Watcher(
        Broker("127.0.0.1", broker.port),
        node="sbox",
        out=tmp_path / "w",
        replay_missing=True,
        echo=lines.append,
        settle_s=0.3,
        gap_settle_s=1.0,
        retry_s=60.0,
    )
    w.start()
    stop = threading.Event()
    t = threading.Thread(target=w.run, args=(stop,), daemon=True)
    t.start()
    try:
        corr = {n: str(uuid.uuid4()) for n in range(1, 6)}
        for n in (1, 3, 4, 5):
            _publish_layer(box, base, "J7", n, corr[n], corrupt_sr=n == 4)
        end = time.monotonic() + 15
        while len(requests) < 2 and time.monotonic() < end:
            time.sleep(0.05)
        asked = sorted((json.loads(r.payload)["from"], json.loads(r.payload)["to"]) for r in requests)
        assert asked == [(2, 2), (4, 4)], lines
        for r in requests:
            assert json.loads(r.payload)["job"] == "J7"
            rt = r.properties.ResponseTopic
            assert rt.startswith(f"{base}/reply/") and "+" not in rt and "#" not in rt
            reply = Properties(PacketTypes.PUBLISH)
            reply.CorrelationData = r.properties.CorrelationData
            box.publish(
                rt, json.dumps({"command": "replay", "ok": True, "layers": 1}).encode(), qos=1, properties=reply
            )
        for n in (2, 4):
            _publish_layer(box, base, "J7", n, corr[n], replayed=True)
        end = time.monotonic() + 15
        while not all(
            w.finals.get(("sbox", "J7", n)) is not None and w.finals[("sbox", "J7", n)].ok for n in range(1, 6)
        ):
            assert time.monotonic() < end, lines
            time.sleep(0.05)
    finally:
        stop.set()
        t.join(5)
        w.stop()
        box.loop_stop()
    assert w.finals[("sbox", "J7", 4)].replayed and w.finals[("sbox", "J7", 2)].replayed
    assert (tmp_path / "w/J7/4/sr.png").read_bytes() == b"sr-4" and (tmp_path / "w/J7/2/lr.png").read_bytes() == b"lr-2"
    assert any("INCOMPLETE" in line and "sr image sha256" in line for line in lines), "\n".join(lines)
    assert sum("box accepted the replay" in line for line in lines) == 2
    assert w.gaps.missing() == []
