"""Config validation names the bad key, its line and why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import Config, ConfigError, parse_config

REPO = Path(__file__).resolve().parents[2]


def test_defaults_validate():
    cfg = parse_config("node:\n  node_id: box-7\n")
    assert cfg.node.node_id == "box-7"
    assert cfg.mqtt.port == 1883


def test_unknown_key_names_line_and_key():
    text = "node:\n  node_id: a\nmqtt:\n  host: x\n  prot: 1883\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    (issue,) = err.value.issues
    assert issue.path == "mqtt.prot"
    assert issue.line == 5
    assert "unknown key" in issue.reason and "did you mean 'port'?" in issue.reason


def test_unknown_keys_suggest_the_nearest_setting_in_line_order():
    text = "wbe:\n  enabled: true\nsr:\n  Steps: 4\nanalyze:\n  zzzzzz: 1\nmqtt:\n  ha_discovry: true\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    got = [(i.line, i.path, i.reason) for i in err.value.issues]
    assert [g[:2] for g in got] == [(1, "wbe"), (4, "sr.Steps"), (6, "analyze.zzzzzz"), (8, "mqtt.ha_discovry")]
    assert "did you mean 'web'?" in got[0][2] and "did you mean 'steps'?" in got[1][2]
    assert "did you mean" not in got[2][2] and "config example" in got[2][2]
    assert "did you mean 'ha_discovery'?" in got[3][2]


def test_bad_value_names_line():
    with pytest.raises(ConfigError) as err:
        parse_config("mqtt:\n  port: 70000\n")
    assert err.value.issues[0].line == 2 and err.value.issues[0].path == "mqtt.port"


def test_yaml_syntax_error_has_line():
    with pytest.raises(ConfigError) as err:
        parse_config("node:\n  node_id: [a\n")
    assert err.value.issues[0].line is not None


def test_every_field_documented():
    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann)

    walk(Config)


def test_example_config_validates_and_cli_reports_errors(tmp_path):
    example = REPO / "configs" / "example.yaml"
    ok = subprocess.run([sys.executable, "-m", "edge.cli", "config", "validate", str(example)], capture_output=True,
                        text=True)
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("sr:\n  steps: 0\n")
    res = subprocess.run([sys.executable, "-m", "edge.cli", "config", "validate", str(bad)], capture_output=True,
                         text=True)
    assert res.returncode == 1
    assert "line 2" in res.stderr and "sr.steps" in res.stderr


def test_example_config_is_current():
    res = subprocess.run([sys.executable, "-m", "edge.cli", "config", "example"], capture_output=True, text=True,
                         check=True)
    assert (REPO / "configs" / "example.yaml").read_text() == res.stdout, (
        "regenerate: lpbf-edge config example > configs/example.yaml")
