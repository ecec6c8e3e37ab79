"""Issue 16 against a real mosquitto: callbacks never kill the network thread, replies only under the reply prefix,
connection failures said at once, exposed password files warned about, stats at QoS 0 retained."""

from __future__ import annotations

import json
import logging
import time

from edge.publish.client import MqttPublisher
from edge.publish.config import MqttConfig
from edge.publish.topics import Topics
from edge.store.spool import PublishSpool
from tests.integration.mqtt_tools import broker_publishes, fake_layer, final_layers, send_command
from tests.reliability import layer_counts, record
from tests.waiting import wait_until

NODE = "box-h"
TOPICS = Topics("lpbf/v1", NODE)


def _cfg(port: int, **kw) -> MqttConfig:
    return MqttConfig(port=port, reconnect_min_s=0.5, reconnect_max_s=1, stats_interval_s=0.5, keepalive_s=5, **kw)


def _events(caplog, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == event]


def test_exception_in_a_callback_does_not_stop_publishing(tmp_path, mosquitto, subscribe, caplog):
    """Issue 16.1: an exception inside on_message ended paho's network thread; no PUBACK was read again."""
    broker = mosquitto()
    sub = subscribe(broker.port, f"{TOPICS.base}/job/#")
    spool = PublishSpool(tmp_path, fsync=False)
    calls = []

    def state():
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("state source broke")
        return {"job": "J"}

    pub = MqttPublisher(_cfg(broker.port), NODE, spool, state_fn=state, command_handler=lambda n, c: {})
    pub.start()
    produced = []
    try:
        assert pub.subscribed.wait(10)
        for n in (1, 2):
            spool.put(fake_layer(TOPICS, "J", n)[1])
            produced.append(n)
        assert pub.wait_drained(10)
        with caplog.at_level(logging.ERROR, logger="edge.publish"):
            send_command(broker.port, f"{TOPICS.base}/cmd/stop_job", b"{}")
            assert wait_until(lambda: _events(caplog, "mqtt_callback_failed"), 10)
        for n in (3, 4, 5):
            spool.put(fake_layer(TOPICS, "J", n)[1])
            produced.append(n)
        assert pub.wait_drained(10), pub.stats()
        assert pub.network_alive() and pub.connected.is_set()
    finally:
        pub.stop()
    rec = _events(caplog, "mqtt_callback_failed")[0]
    assert rec.topic == f"{TOPICS.base}/cmd/stop_job" and "state source broke" in rec.getMessage()
    assert sub.wait_for(lambda ms: sorted(set(final_layers(ms, "J"))) == produced, 10)
    record("exception inside an MQTT callback (on_message)", "commands", rec.getMessage(),
           **layer_counts(produced, final_layers(sub.messages, "J")))


def test_wildcard_response_topic_is_refused_and_publishing_goes_on(tmp_path, mosquitto, subscribe, caplog):
    """Issue 16.1: ResponseTopic `evil/#` used to raise inside on_message and stop all publishing."""
    broker = mosquitto()
    sub = subscribe(broker.port, "#")
    spool = PublishSpool(tmp_path, fsync=False)
    seen = []
    pub = MqttPublisher(_cfg(broker.port), NODE, spool, command_handler=lambda n, c: seen.append(n) or {})
    pub.start()
    produced = []
    try:
        assert pub.subscribed.wait(10)
        spool.put(fake_layer(TOPICS, "J", 1)[1])
        produced.append(1)
        with caplog.at_level(logging.WARNING, logger="edge.publish"):
            send_command(broker.port, f"{TOPICS.base}/cmd/stop_job", b"{}", response_topic="evil/#", correlation=b"c-1")
            assert wait_until(lambda: _events(caplog, "command_refused"), 10)
        for n in range(2, 6):
            spool.put(fake_layer(TOPICS, "J", n)[1])
            produced.append(n)
        assert pub.wait_drained(10), pub.stats()
        health = pub.connection()
    finally:
        pub.stop()
    assert seen == [] and health["connected"] and health["network_loop_alive"]
    rec = _events(caplog, "command_refused")[0]
    assert rec.response_topic == "evil/#" and "wildcard" in rec.getMessage()
    assert sub.wait_for(lambda ms: any(m.topic == TOPICS.cmd_result for m in ms), 5)
    reply = next(m for m in sub.messages if m.topic == TOPICS.cmd_result)
    assert reply.correlation == b"c-1" and json.loads(reply.payload)["ok"] is False
    assert not any(m.topic.startswith("evil") for m in sub.messages)
    assert sub.wait_for(lambda ms: sorted(set(final_layers(ms, "J"))) == produced, 10)
    record("command with ResponseTopic `evil/#`", "commands", rec.getMessage(),
           **layer_counts(produced, final_layers(sub.messages, "J")))


def test_replies_only_under_the_reply_prefix(tmp_path, mosquitto, subscribe, caplog):
    """Issue 16.2: a client the ACL keeps off the box's topics got the box to publish there under its credentials."""
    acl = (f"user box\ntopic readwrite {TOPICS.base}/#\n"
           f"user mallory\ntopic write {TOPICS.base}/cmd/#\ntopic read {TOPICS.base}/reply/#\n"
           "user watcher\ntopic read #\n")
    broker = mosquitto(users={"box": "pw-box", "mallory": "pw-m", "watcher": "pw-w"}, acl=acl)
    sub = subscribe(broker.port, "#", username="watcher", password="pw-w")
    pw = tmp_path / "pw"
    pw.write_text("pw-box\n")
    pw.chmod(0o600)
    pub = MqttPublisher(_cfg(broker.port, username="box", password_file=str(pw)), NODE,
                        PublishSpool(tmp_path, fsync=False),
                        command_handler=lambda n, c: {"job": getattr(c, "job", None)})
    pub.start()
    targets = [f"{TOPICS.base}/job/J/layer/999/anomaly", TOPICS.availability, f"{TOPICS.base}/reply",
               f"{TOPICS.base}/replyx/a", f"{TOPICS.base}/reply/+", "lpbf/v1/other-box/reply/x"]
    try:
        assert pub.subscribed.wait(10)
        with caplog.at_level(logging.WARNING, logger="edge.publish"):
            for i, target in enumerate(targets):
                send_command(broker.port, f"{TOPICS.base}/cmd/set_job", b'{"job": "X"}', response_topic=target,
                             correlation=f"c{i}".encode(), username="mallory", password="pw-m")
            send_command(broker.port, f"{TOPICS.base}/cmd/set_job", b'{"job": "Y"}',
                         response_topic=f"{TOPICS.base}/reply/mallory", correlation=b"ok", username="mallory",
                         password="pw-m")
            assert sub.wait_for(lambda ms: any(m.topic == f"{TOPICS.base}/reply/mallory" for m in ms), 10)
    finally:
        pub.stop()
    refused = _events(caplog, "command_refused")
    assert [r.response_topic for r in refused] == targets
    others = [t for t in targets if t != TOPICS.availability]
    assert not any(m.topic in others or m.topic.startswith("lpbf/v1/other-box") for m in sub.messages)
    assert {m.payload for m in sub.messages if m.topic == TOPICS.availability} <= {b"online", b"offline"}
    ok = next(m for m in sub.messages if m.topic == f"{TOPICS.base}/reply/mallory")
    assert json.loads(ok.payload) == {"command": "set_job", "ok": True, "job": "Y"} and ok.correlation == b"ok"
    record("command with ResponseTopic on the box's own layer/availability topics", "commands", refused[0].getMessage(),
           exit_code=None)


def test_tls_without_client_certificate_is_reported_at_once(tmp_path, mosquitto, caplog):
    """Issue 16.7: nothing was logged for 45 s and last_error stayed null."""
    broker = mosquitto(tls=True)
    spool = PublishSpool(tmp_path, fsync=False)
    spool.put(fake_layer(TOPICS, "J", 1)[1])
    pub = MqttPublisher(_cfg(broker.port, tls=True, ca_file=str(broker.tls["ca"])), NODE, spool)
    t0 = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="edge.publish"):
        pub.start()
        try:
            assert wait_until(lambda: pub.last_error is not None, 5)
            took = time.monotonic() - t0
        finally:
            pub.stop(drain_timeout=0)
    conn = pub.connection()
    assert "certificate" in pub.last_error and not conn["connected"] and conn["disconnected_since_unix"] is not None
    failed = _events(caplog, "mqtt_connect_failed")
    assert failed and "certificate" in failed[0].getMessage() and took < 5
    assert spool.counts()["pending"] == 5  # nothing lost: it waits in the spool
    record("TLS broker requires a client certificate, box has none", "connection",
           f"after {took:.1f} s: {failed[0].getMessage()}", produced=1, received=0, lost=0, duplicated=0)


def test_broker_down_is_reported_from_on_connect_fail(tmp_path, mosquitto, caplog):
    """A refused TCP connect sets last_error with the OS reason (on_connect_fail), logged once per reason per minute."""
    broker = mosquitto()
    broker.stop()
    pub = MqttPublisher(_cfg(broker.port), NODE, PublishSpool(tmp_path, fsync=False))
    with caplog.at_level(logging.ERROR, logger="edge.publish"):
        pub.start()
        try:
            assert wait_until(lambda: pub.counters["connect_failures"] >= 3, 10)
        finally:
            pub.stop(drain_timeout=0)
    assert "refused" in pub.last_error.lower() and pub.connection()["reason_code"] == "connect failed"
    assert len(_events(caplog, "mqtt_connect_failed")) == 1


def test_world_readable_password_file_is_warned_about(tmp_path, mosquitto, caplog):
    """Issue 16.7: a password file every local user can read was accepted silently; now warned (log + health)."""
    broker = mosquitto(users={"box": "pw-box"})
    pw = tmp_path / "pw"
    pw.write_text("pw-box\n")
    pw.chmod(0o644)
    spool = PublishSpool(tmp_path, fsync=False)
    spool.put(fake_layer(TOPICS, "J", 1)[1])
    with caplog.at_level(logging.WARNING, logger="edge.publish"):
        pub = MqttPublisher(_cfg(broker.port, username="box", password_file=str(pw)), NODE, spool)
    pub.start()
    try:
        assert pub.wait_drained(10)
    finally:
        pub.stop()
    [rec] = _events(caplog, "mqtt_password_file_exposed")
    assert "0644" in rec.getMessage() and "chmod 600" in rec.getMessage()
    assert pub.connection()["warnings"] == [rec.getMessage()]
    record("MQTT password file readable by everyone (0644)", "connection", rec.getMessage(), produced=1, received=1,
           lost=0, duplicated=0)


def test_stats_go_out_at_qos0_retained(tmp_path, mosquitto, subscribe):
    """Issue 16.8: stats at QoS 1 every 10 s filled offline subscribers' queues (360 messages an hour)."""
    broker = mosquitto()
    pub = MqttPublisher(_cfg(broker.port), NODE, PublishSpool(tmp_path, fsync=False), stats_fn=lambda: {"x": 1})
    pub.start()
    try:
        assert pub.connected.wait(10)
        time.sleep(1.6)
        late = subscribe(broker.port, TOPICS.stats)
        assert late.wait_for(lambda ms: any(m.retain for m in ms), 5)
    finally:
        pub.stop()
    sent = broker_publishes(broker.log, "/stats")
    assert len(sent) >= 2 and {(q, r) for q, r, _ in sent} == {(0, 1)}


