"""MQTT config, topics, commands, payloads and discovery (no broker needed)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from edge.publish.commands import CommandError, StartJob, parse_command
from edge.publish.config import MqttConfig
from edge.publish.discovery import discovery_messages
from edge.publish.payloads import layer_messages, sha256_hex
from edge.publish.topics import Topics


def test_topics_follow_the_contract():
    """Topic names of docs/mqtt.md."""
    t = Topics("lpbf/v1/", "box-7")
    assert t.availability == "lpbf/v1/box-7/availability" and t.state == "lpbf/v1/box-7/state"
    assert t.layer("J1", 12, "sr") == "lpbf/v1/box-7/job/J1/layer/12/sr"
    assert t.anomaly_latest == "lpbf/v1/box-7/anomaly/latest" and t.stats == "lpbf/v1/box-7/stats"
    assert t.cmd_name("lpbf/v1/box-7/cmd/start_job") == "start_job"


def test_layer_messages_share_one_correlation_and_hash_images():
    """meta first, images, anomaly, then the retained latest; all with the layer UUID."""
    t = Topics("p", "n")
    msgs = layer_messages(t, "J", 3, "uuid-3", {"images": {"sr": {"sha256": sha256_hex(b"SR")}}},
                          {"lr": b"LR", "sr": b"SR"},
                          {"job": "J", "layer": 3, "layer_state": "ok", "flags": []})
    assert [m.kind for m in msgs] == ["meta", "lr", "sr", "anomaly", "latest"]
    assert {m.correlation for m in msgs} == {b"uuid-3"} and all(m.qos == 1 for m in msgs)
    assert [m.retain for m in msgs] == [False, False, False, False, True]
    assert [m.content_type for m in msgs] == ["application/json", "image/png", "image/png", "application/json",
                                              "application/json"]
    assert msgs[3].payload == msgs[4].payload and json.loads(msgs[3].payload)["flags"] == []


def test_commands_valid_and_invalid():
    """Valid payloads parse; bad ones raise one clear CommandError."""
    assert parse_command("start_job", b'{"job": "B-12.a"}') == StartJob(job="B-12.a")
    assert parse_command("stop_job", b"").__class__.__name__ == "StopJob"
    for name, payload, words in [("start_job", b"{", "not JSON"), ("start_job", b'{"job": "../x"}', "job"),
                                 ("stop_job", b'{"force": true}', "force"), ("format_disk", b"{}", "unknown command"),
                                 ("set_job", b'"J"', "JSON object"), ("start_job", b"\xff", "not JSON")]:
        with pytest.raises(CommandError, match=words):
            parse_command(name, payload)


def test_mqtt_config_secrets_and_tls_pairs(tmp_path, monkeypatch):
    """Password from file first, then env; TLS files need tls and come in pairs."""
    monkeypatch.setenv("PW_ENV", "from-env")
    assert MqttConfig(password_env="PW_ENV").password() == "from-env"
    f = tmp_path / "pw"
    f.write_text("from-file\nignored\n")
    assert MqttConfig(password_env="PW_ENV", password_file=str(f)).password() == "from-file"
    with pytest.raises(ValueError, match="password_file"):
        MqttConfig(password_file=str(tmp_path / "missing")).password()
    with pytest.raises(ValidationError, match="together"):
        MqttConfig(tls=True, cert_file="c.pem")
    with pytest.raises(ValidationError, match="tls is false"):
        MqttConfig(ca_file="ca.pem")
    with pytest.raises(ValidationError):
        MqttConfig(prefix="bad/#")


def test_home_assistant_discovery():
    """One retained sensor config per entity, pointing at the box topics and availability."""
    msgs = discovery_messages(Topics("lpbf/v1", "b1"), "homeassistant", "1.2")
    topics = [t for t, _ in msgs]
    assert "homeassistant/sensor/lpbf_edge_b1/layer_state/config" in topics
    cfg = json.loads(dict(msgs)["homeassistant/sensor/lpbf_edge_b1/layer_state/config"])
    assert cfg["state_topic"] == "lpbf/v1/b1/anomaly/latest" and cfg["availability_topic"] == "lpbf/v1/b1/availability"
    assert len({json.loads(p)["unique_id"] for _, p in msgs}) == len(msgs)


def test_home_assistant_critical_sensor_and_latest_sr_image():
    """The problem binary sensor's templates render as Home Assistant would (Jinja2, value_json); the image entity's
    topic filter matches every layer's SR topic and nothing else."""
    jinja2 = pytest.importorskip("jinja2")
    from paho.mqtt.client import topic_matches_sub

    t = Topics("lpbf/v1", "b1")
    msgs = {topic: json.loads(p) for topic, p in discovery_messages(t, "homeassistant", "1.2")}
    crit = msgs["homeassistant/binary_sensor/lpbf_edge_b1/critical_layer/config"]
    assert crit["device_class"] == "problem" and crit["state_topic"] == t.anomaly_latest
    env = jinja2.Environment()
    flag = {"type": "super_elevation", "severity": "critical", "score": 2.3, "bbox": [1, 2, 3, 4], "area_px": 9}

    def render(template: str, state: str) -> str:
        doc = {"job": "J", "layer": 7, "layer_state": state, "flags": [flag] if state != "ok" else []}
        return env.from_string(template).render(value_json=doc)

    assert [render(crit["value_template"], s) for s in ("critical", "minor", "ok")] == ["ON", "OFF", "OFF"]
    on_off = {render(crit["value_template"], "critical"), render(crit["value_template"], "ok")}
    assert on_off == {crit["payload_on"], crit["payload_off"]}
    attrs = json.loads(render(crit["json_attributes_template"], "critical"))
    assert attrs == {"job": "J", "layer": 7, "layer_state": "critical", "flags": ["super_elevation"]}
    img = msgs["homeassistant/image/lpbf_edge_b1/latest_sr/config"]
    assert img["content_type"] == "image/png" and img["availability_topic"] == t.availability
    assert topic_matches_sub(img["image_topic"], t.layer("job-0001", 12, "sr"))
    assert not any(topic_matches_sub(img["image_topic"], t.layer("J", 1, k)) for k in ("lr", "meta", "anomaly"))
    assert not topic_matches_sub(img["image_topic"], Topics("lpbf/v1", "other").layer("J", 1, "sr"))
