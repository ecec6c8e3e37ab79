"""Home Assistant discovery against a real mosquitto: what an HA instance subscribing to the configs would get."""

from __future__ import annotations

import json

import pytest

from tests.integration.test_watch import _box

jinja2 = pytest.importorskip("jinja2")


def test_discovered_entities_receive_the_latest_sr_and_the_critical_state(tmp_path, mosquitto, subscribe):
    """The retained configs name topics on which the box's SR images and anomaly/latest really arrive; the problem
    sensor turns ON for the early critical state and OFF for the final minor one."""
    from paho.mqtt.client import topic_matches_sub

    broker = mosquitto()
    sub = subscribe(broker.port, "#")
    svc = _box(tmp_path / "box", broker.port, 3, sr_s=0.6, ha_discovery=True)
    svc.start()
    try:
        assert svc.source_done.wait(20) and svc.pipeline.drain(30) and svc.publisher.wait_drained(20)
    finally:
        svc.stop()
    configs = {m.topic: json.loads(m.payload) for m in sub.messages if m.topic.startswith("homeassistant/")}
    image = configs["homeassistant/image/lpbf_edge_wbox/latest_sr/config"]
    problem = configs["homeassistant/binary_sensor/lpbf_edge_wbox/critical_layer/config"]
    srs = [m.payload for m in sub.messages if topic_matches_sub(image["image_topic"], m.topic)]
    assert srs and srs[-1] == (tmp_path / "box/archive/W1/000003/sr.png").read_bytes()
    assert srs[-1][:8] == b"\x89PNG\r\n\x1a\n" and image["content_type"] == "image/png"
    template = jinja2.Environment().from_string(problem["value_template"])
    states = [
        template.render(value_json=json.loads(m.payload)) for m in sub.messages if m.topic == problem["state_topic"]
    ]
    assert "ON" in states and states[-1] == "OFF"  # early critical from the webcam image, then the final minor state
    assert all(c["availability_topic"] == "lpbf/v1/wbox/availability" for c in configs.values())
