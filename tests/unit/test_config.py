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
    assert "unknown key" in issue.reason


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
    ok = subprocess.run([sys.executable, "-m", "edge.cli", "config", "validate", str(example)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("sr:\n  steps: 0\n")
    res = subprocess.run([sys.executable, "-m", "edge.cli", "config", "validate", str(bad)], capture_output=True, text=True)
    assert res.returncode == 1
    assert "line 2" in res.stderr and "sr.steps" in res.stderr


def test_example_config_is_current():
    res = subprocess.run([sys.executable, "-m", "edge.cli", "config", "example"], capture_output=True, text=True, check=True)
    assert (REPO / "configs" / "example.yaml").read_text() == res.stdout, "regenerate: lpbf-edge config example > configs/example.yaml"
