"""Helpers of the hardening tests: a paho MQTT 5 command sender, fake layers, what a subscriber got per layer."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

from edge.publish.payloads import layer_messages, sha256_hex
from edge.publish.topics import Topics


def send_command(port: int, topic: str, payload: bytes, response_topic: str | None = None,
                 correlation: bytes | None = None, username: str | None = None, password: str | None = None) -> None:
    """Publish one MQTT 5 command (QoS 1, optional ResponseTopic / CorrelationData) and wait for its PUBACK."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"cmd-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    if username:
        c.username_pw_set(username, password)
    props = Properties(PacketTypes.PUBLISH)
    if response_topic is not None:
        props.ResponseTopic = response_topic
    if correlation is not None:
        props.CorrelationData = correlation
    c.connect("127.0.0.1", port, keepalive=10)
    c.loop_start()
    try:
        info = c.publish(topic, payload, qos=1, properties=props)
        info.wait_for_publish(10)
    finally:
        c.disconnect()
        c.loop_stop()


def fake_layer(topics: Topics, job: str, n: int) -> tuple[str, list]:
    """Spool messages of a fake layer n with distinct image bytes."""
    lid = str(uuid.uuid4())
    lr, sr = os.urandom(300 + n), os.urandom(1200 + n)
    meta = {"job": job, "layer": n, "layer_uuid": lid, "final": True,
            "images": {"lr": {"sha256": sha256_hex(lr)}, "sr": {"sha256": sha256_hex(sr)}}}
    anomaly = {"job": job, "layer": n, "layer_state": "ok", "flags": []}
    return lid, layer_messages(topics, job, n, lid, meta, {"lr": lr, "sr": sr}, anomaly)


def final_layers(messages, job: str) -> list[int]:
    """Layer numbers of every final anomaly a subscriber received for `job` (one entry per delivery)."""
    out = []
    for m in messages:
        if m.topic.endswith("/anomaly") and f"/job/{job}/layer/" in m.topic and m.user.get("stage", "final") == "final":
            out.append(int(json.loads(m.payload)["layer"]))
    return out


def broker_publishes(log: Path, topic_suffix: str) -> list[tuple[int, int, str]]:
    """(qos, retain, topic) of every PUBLISH mosquitto received from the box whose topic ends with topic_suffix."""
    pat = re.compile(r"Received PUBLISH from lpbf-edge\S* \(d\d, q(\d), r(\d), m\d+, '([^']+)'")
    return [(int(q), int(r), t) for q, r, t in pat.findall(log.read_text(errors="replace")) if t.endswith(topic_suffix)]
