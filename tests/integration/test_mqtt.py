"""MqttPublisher against a real mosquitto: contract, broker outage, ACL refusal, TLS + passwords, commands."""

from __future__ import annotations

import json
import os
import uuid

from edge.publish.client import MqttPublisher
from edge.publish.config import MqttConfig
from edge.publish.discovery import discovery_messages
from edge.publish.payloads import layer_messages, sha256_hex
from edge.publish.topics import Topics
from edge.store.spool import PublishSpool
from tests.reliability import layer_counts, record

NODE = "box-t"


def _layer(topics: Topics, job: str, n: int) -> tuple[str, list]:
    """Spool messages of a fake layer n with distinct image bytes."""
    lid = str(uuid.uuid4())
    lr, sr = os.urandom(300 + n), os.urandom(1200 + n)
    meta = {"job": job, "layer": n, "layer_uuid": lid,
            "images": {"lr": {"sha256": sha256_hex(lr)}, "sr": {"sha256": sha256_hex(sr)}}}
    anomaly = {"job": job, "layer": n, "layer_state": "ok", "flags": []}
    return lid, layer_messages(topics, job, n, lid, meta, {"lr": lr, "sr": sr}, anomaly)


def _cfg(port: int, **kw) -> MqttConfig:
    return MqttConfig(port=port, reconnect_min_s=0.5, reconnect_max_s=1, stats_interval_s=0.5, keepalive_s=5, **kw)


def test_contract_and_lifecycle(tmp_path, mosquitto, subscribe):
    """availability/state retained, per-layer messages share CorrelationData, latest retained, offline at stop.

    Every per-layer message carries one CorrelationData and a ContentType."""
    broker = mosquitto()
    sub = subscribe(broker.port, "lpbf/v1/#")
    ha = subscribe(broker.port, "homeassistant/#")
    spool = PublishSpool(tmp_path, fsync=False)
    topics = Topics("lpbf/v1", NODE)
    lid, msgs = _layer(topics, "J1", 1)
    spool.put(msgs)
    pub = MqttPublisher(_cfg(broker.port, ha_discovery=True), NODE, spool, version="9.9",
                        state_fn=lambda: {"job": "J1", "last_layer": 1}, stats_fn=lambda: {"layers_seen": 1})
    pub.start()
    assert pub.wait_drained(10)
    assert sub.wait_for(lambda ms: any(m.topic == topics.stats for m in ms), 5)
    pub.stop()
    assert sub.wait_for(lambda ms: any(m.topic == topics.availability and m.payload == b"offline" for m in ms), 5)
    by_topic = {m.topic: m for m in sub.messages}
    assert [m.payload for m in sub.messages if m.topic == topics.availability][:1] == [b"online"]
    state = json.loads(by_topic[topics.state].payload)
    assert state["version"] == "9.9" and state["job"] == "J1"
    for kind, ctype in (("meta", "application/json"), ("lr", "image/png"), ("sr", "image/png"),
                        ("anomaly", "application/json")):
        m = by_topic[topics.layer("J1", 1, kind)]
        assert m.correlation == lid.encode() and m.content_type == ctype and not m.retain
        assert m.user == {"stage": "final"}
    meta = json.loads(by_topic[topics.layer("J1", 1, "meta")].payload)
    assert meta["images"]["sr"]["sha256"] == sha256_hex(by_topic[topics.layer("J1", 1, "sr")].payload)
    assert by_topic[topics.anomaly_latest].correlation == lid.encode()
    assert spool.counts() == {"pending": 0, "rejected": 0}
    n_entities = len(discovery_messages(topics, "homeassistant", "9.9"))  # sensors, problem sensor, SR image
    assert n_entities == 6 and ha.wait_for(lambda ms: len({m.topic for m in ms}) == n_entities, 5)
    assert all(json.loads(m.payload)["availability_topic"] == topics.availability for m in ha.messages)
    # retained messages are there for a late subscriber
    late = subscribe(broker.port, "lpbf/v1/#")
    assert late.wait_for(lambda ms: {topics.availability, topics.state,
                                     topics.anomaly_latest} <= {m.topic for m in ms if m.retain}, 5)
    assert [m.payload for m in late.messages if m.topic == topics.availability] == [b"offline"]


def test_broker_down_then_back_delivers_everything_in_order(tmp_path, mosquitto, subscribe):
    """Layers spooled while the broker is down arrive after it is back, in spool order and byte-identical."""
    broker = mosquitto()
    sub = subscribe(broker.port, "lpbf/v1/+/job/#")
    broker.stop()
    spool = PublishSpool(tmp_path, fsync=False)
    topics = Topics("lpbf/v1", NODE)
    # the box retries every 3 s, the test subscriber every 1 s: the subscriber is back first
    pub = MqttPublisher(_cfg(broker.port).model_copy(update={"reconnect_min_s": 3, "reconnect_max_s": 3}), NODE, spool)
    pub.start()
    sent = []
    for n in range(1, 5):
        msgs = _layer(topics, "J2", n)[1]
        sent += msgs
        spool.put(msgs)
    assert not pub.connected.wait(1.0)
    assert spool.counts()["pending"] == len(sent)
    broker.start()
    assert sub.ready.wait(5) and pub.wait_drained(20), pub.stats()
    pub.stop()
    # the broker accepted every message once, in spool order, with the spooled size (its log)
    assert [(t, n) for t, n in broker.received() if "/job/" in t] == [(m.topic, len(m.payload))
                                                                      for m in sent if m.kind != "latest"]
    # and a subscriber gets them byte-identical and in order
    want = [(m.topic, m.payload) for m in sent if m.kind != "latest"]
    assert sub.wait_for(lambda ms: len(ms) >= len(want), 10), (len(sub.messages), len(want))
    assert [(m.topic, m.payload) for m in sub.messages] == want
    record("broker down while 4 layers are spooled, then back", "delivery", "spool sent in order after reconnect",
           **layer_counts([1, 2, 3, 4], [int(m.topic.split("/layer/")[1].split("/")[0]) for m in sub.messages
                                         if m.topic.endswith("/anomaly")]))


def test_acl_denied_topic_is_reported_and_kept(tmp_path, mosquitto, subscribe):
    """PUBACK 135 (not authorized) moves the message to spool/rejected, counts it and keeps the rest flowing."""
    acl = ("user box\ntopic readwrite lpbf/v1/box-t/availability\ntopic readwrite lpbf/v1/box-t/state\n"
           "topic readwrite lpbf/v1/box-t/cmd/#\ntopic write lpbf/v1/box-t/job/+/layer/+/meta\n"
           "user watcher\ntopic read #\n")
    broker = mosquitto(users={"box": "pw-box", "watcher": "pw-w"}, acl=acl)
    sub = subscribe(broker.port, "lpbf/v1/#", username="watcher", password="pw-w")
    pwfile = tmp_path / "pw"
    pwfile.write_text("pw-box\n")
    spool = PublishSpool(tmp_path, fsync=False)
    topics = Topics("lpbf/v1", NODE)
    _, msgs = _layer(topics, "J3", 1)
    spool.put(msgs)
    pub = MqttPublisher(_cfg(broker.port, username="box", password_file=str(pwfile)), NODE, spool)
    pub.start()
    assert pub.wait_drained(10)
    pub.stop()
    assert spool.counts() == {"pending": 0, "rejected": len(msgs) - 1}
    assert pub.counters["rejected"] == len(msgs) - 1 and "135" in pub.last_error
    assert spool.unpublished_layers() == {("J3", 1)}
    reasons = sorted(spool.rejected_dir.glob("*.reason.json"))
    assert "Not authorized" in json.loads(reasons[0].read_text())["reason"]
    assert sub.wait_for(lambda ms: any(m.topic == topics.layer("J3", 1, "meta") for m in ms), 5)
    assert not any(m.topic == topics.layer("J3", 1, "sr") for m in sub.messages)
    # after the ACL is fixed the operator can resend what was refused
    assert spool.requeue_rejected() == len(msgs) - 1
    record("broker ACL denies the layer topics (PUBACK 135)", "delivery",
           f"kept in spool/rejected: {pub.last_error}; requeue_rejected resends them", produced=1, received=0, lost=0,
           duplicated=0)


def test_tls_client_cert_and_password(tmp_path, mosquitto, subscribe, monkeypatch):
    """TLS with a generated CA, client certificate and a password from the environment."""
    broker = mosquitto(tls=True, users={"box": "s3cret", "watcher": "w"})
    sub = subscribe(broker.port, "lpbf/v1/#", tls=broker.tls, username="watcher", password="w")
    monkeypatch.setenv("TEST_MQTT_PW", "s3cret")
    spool = PublishSpool(tmp_path, fsync=False)
    topics = Topics("lpbf/v1", NODE)
    lid, msgs = _layer(topics, "J4", 7)
    spool.put(msgs)
    cfg = _cfg(broker.port, tls=True, ca_file=str(broker.tls["ca"]), cert_file=str(broker.tls["client_cert"]),
               key_file=str(broker.tls["client_key"]), username="box", password_env="TEST_MQTT_PW")
    pub = MqttPublisher(cfg, NODE, spool)
    pub.start()
    assert pub.wait_drained(10), pub.stats()
    pub.stop()
    assert sub.wait_for(lambda ms: any(m.topic == topics.layer("J4", 7, "sr") and m.correlation == lid.encode()
                                       for m in ms), 5)


def test_wrong_password_is_reported_not_published(tmp_path, mosquitto, monkeypatch):
    """A refused CONNECT keeps everything in the spool and says why."""
    broker = mosquitto(users={"box": "right"})
    monkeypatch.setenv("TEST_MQTT_PW", "wrong")
    spool = PublishSpool(tmp_path, fsync=False)
    spool.put(_layer(Topics("lpbf/v1", NODE), "J5", 1)[1])
    pub = MqttPublisher(_cfg(broker.port, username="box", password_env="TEST_MQTT_PW"), NODE, spool)
    pub.start()
    assert not pub.wait_drained(1.0)
    pub.stop(drain_timeout=0)
    assert spool.counts()["pending"] == 5 and "refused" in (pub.last_error or "")
    record("wrong MQTT password", "connection", pub.last_error, produced=1, received=0, lost=0, duplicated=0)


def test_commands_validated(tmp_path, mosquitto, subscribe):
    """Valid commands reach the handler; malformed ones are rejected with a reason on cmd/result."""
    broker = mosquitto()
    topics = Topics("lpbf/v1", NODE)
    sub = subscribe(broker.port, topics.cmd_result)
    seen = []
    pub = MqttPublisher(_cfg(broker.port), NODE, PublishSpool(tmp_path, fsync=False),
                        command_handler=lambda name, cmd: seen.append((name, cmd))
                        or {"job": getattr(cmd, "job", None)})
    pub.start()
    assert pub.subscribed.wait(10)
    import paho.mqtt.publish as single

    bad = [("start_job", b"{not json"), ("start_job", b'{"job": "has space"}'), ("start_job", b'{"job": "a", "x": 1}'),
           ("reboot", b"{}"), ("set_job", b"[1]")]
    for name, payload in bad + [("start_job", b'{"job": "B-2"}')]:
        single.single(f"{topics.base}/cmd/{name}", payload, qos=1, hostname="127.0.0.1", port=broker.port)
    assert sub.wait_for(lambda ms: len(ms) >= len(bad) + 1, 10)
    pub.stop()
    results = [json.loads(m.payload) for m in sub.messages]
    assert [r["ok"] for r in results] == [False] * len(bad) + [True]
    assert all(r["error"] for r in results[:-1]) and "unknown command" in results[3]["error"]
    assert [(n, c.job) for n, c in seen] == [("start_job", "B-2")]
    assert pub.counters["commands_rejected"] == len(bad)
