"""docs/mqtt.md is the MQTT contract the code cites: its topics and anomaly JSON match what the box publishes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import get_args

from edge.publish.topics import Topics
from lpbf_common.messages import AnomalyFlag, LayerResult, LayerState

DOC = Path(__file__).resolve().parents[2] / "docs" / "mqtt.md"


def _section(title: str) -> str:
    """Text of one `## title` section of docs/mqtt.md."""
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def test_every_topic_the_box_builds_is_in_the_topic_table():
    table = DOC.read_text(encoding="utf-8").split("\n## ")[0]
    documented = set(re.findall(r"^\| `(<p>/[^`]+)`", table, flags=re.M))
    t = Topics("lpbf/v1", "<node>")
    built = {t.availability, t.state, t.stats, t.anomaly_latest, t.cmd_result}
    built |= {t.layer("<job>", "<n>", kind) for kind in ("meta", "lr", "sr", "recoat", "recoat_anomaly", "anomaly")}
    assert {topic.replace(t.base, "<p>") for topic in built} <= documented


def test_anomaly_json_example_has_exactly_the_published_keys():
    example = json.loads(re.search(r"```json\n(.*?)```", _section("Anomaly JSON"), flags=re.S).group(1))
    flag = AnomalyFlag("debris", "minor", 1.4, (310, 122, 18, 11), 140)
    result = LayerResult("job-0001", 12, "uuid", "minor", (flag,), None, None, None, "model")
    assert example == result.anomaly_json()


def test_every_layer_state_is_documented():
    section = _section("Anomaly JSON")
    missing = [s for s in get_args(LayerState) if f"`{s}`" not in section]
    assert not missing, f"docs/mqtt.md#anomaly-json does not name the layer states {missing}"
