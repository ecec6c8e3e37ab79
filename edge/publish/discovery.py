"""Home Assistant MQTT discovery: sensors for the layer state, last layer and job of a box."""

from __future__ import annotations

import json

from edge.publish.topics import Topics


def discovery_messages(topics: Topics, ha_prefix: str, version: str) -> list[tuple[str, bytes]]:
    """(topic, retained JSON payload) for each Home Assistant entity of this box."""
    node = topics.node_id
    device = {"identifiers": [f"lpbf_edge_{node}"], "name": f"LPBF edge {node}", "manufacturer": "lpbf-edge", "sw_version": version}
    sensors = {
        "layer_state": ("Layer state", topics.anomaly_latest, "{{ value_json.layer_state }}"),
        "last_layer": ("Last layer", topics.anomaly_latest, "{{ value_json.layer }}"),
        "flag_count": ("Anomaly flags", topics.anomaly_latest, "{{ value_json.flags | count }}"),
        "job": ("Job", topics.state, "{{ value_json.job }}"),
    }
    out = []
    for key, (name, state_topic, template) in sensors.items():
        cfg = {
            "name": name, "unique_id": f"lpbf_edge_{node}_{key}", "state_topic": state_topic,
            "value_template": template, "availability_topic": topics.availability,
            "payload_available": "online", "payload_not_available": "offline", "device": device,
        }
        out.append((f"{ha_prefix}/sensor/lpbf_edge_{node}/{key}/config", json.dumps(cfg, sort_keys=True).encode()))
    return out
