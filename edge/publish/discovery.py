"""Home Assistant MQTT discovery: layer sensors, a problem binary sensor for critical layers, the latest SR image."""

from __future__ import annotations

import json

from edge.publish.topics import Topics

CRITICAL_TEMPLATE = "{{ 'ON' if value_json.layer_state == 'critical' else 'OFF' }}"
ATTRIBUTES_TEMPLATE = (
    "{{ {'job': value_json.job, 'layer': value_json.layer, 'layer_state': value_json.layer_state, "
    "'flags': value_json.flags | map(attribute='type') | list} | tojson }}"
)


def latest_sr_filter(topics: Topics) -> str:
    """Subscription matching every layer's SR image of this box (the image entity shows the newest that arrived)."""
    return f"{topics.base}/job/+/layer/+/sr"


def discovery_messages(topics: Topics, ha_prefix: str, version: str) -> list[tuple[str, bytes]]:
    """(topic, retained JSON payload) for each Home Assistant entity of this box."""
    node = topics.node_id
    device = {
        "identifiers": [f"lpbf_edge_{node}"],
        "name": f"LPBF edge {node}",
        "manufacturer": "lpbf-edge",
        "sw_version": version,
    }
    common = {
        "availability_topic": topics.availability,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device,
    }
    entities: list[tuple[str, str, dict]] = []
    sensors = {
        "layer_state": ("Layer state", topics.anomaly_latest, "{{ value_json.layer_state }}"),
        "last_layer": ("Last layer", topics.anomaly_latest, "{{ value_json.layer }}"),
        "flag_count": ("Anomaly flags", topics.anomaly_latest, "{{ value_json.flags | count }}"),
        "job": ("Job", topics.state, "{{ value_json.job }}"),
    }
    for key, (name, state_topic, template) in sensors.items():
        entities.append(("sensor", key, {"name": name, "state_topic": state_topic, "value_template": template}))
    entities.append(
        (
            "binary_sensor",
            "critical_layer",
            {
                "name": "Critical layer",
                "device_class": "problem",
                "state_topic": topics.anomaly_latest,
                "value_template": CRITICAL_TEMPLATE,
                "payload_on": "ON",
                "payload_off": "OFF",
                "json_attributes_topic": topics.anomaly_latest,
                "json_attributes_template": ATTRIBUTES_TEMPLATE,
            },
        )
    )
    entities.append(
        (
            "image",
            "latest_sr",
            {
                "name": "Latest super-resolved layer",
                "image_topic": latest_sr_filter(topics),
                "content_type": "image/png",
            },
        )
    )
    out = []
    for component, key, cfg in entities:
        cfg = {**cfg, "unique_id": f"lpbf_edge_{node}_{key}", **common}
        out.append((f"{ha_prefix}/{component}/lpbf_edge_{node}/{key}/config", json.dumps(cfg, sort_keys=True).encode()))
    return out
