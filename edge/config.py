"""The box's single YAML config: pydantic sections, and validation that names the bad key and its line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from calib.config import CalibConfig
from edge.analyze.config import AnalyzeConfig
from edge.capture.config import CaptureConfig
from edge.config_base import Section
from edge.publish.config import MqttConfig
from edge.service_config import ServiceConfig
from edge.sim.config import SimConfig
from edge.sr.config import SRConfig
from edge.store.config import StoreConfig
from edge.store.jobs import JOB_ID_PATTERN
from edge.web.config import WebConfig
from firmware_bridge.config import BridgeConfig


class NodeConfig(Section):
    """Identity of this box and the job it is watching."""

    node_id: str = Field("box-01", pattern=r"^[A-Za-z0-9_-]+$", description="Node id used in MQTT topics (letters, "
                         "digits, _ and -).")
    job: str = Field("job-0001", pattern=JOB_ID_PATTERN,
                     description="Current build job id (1-64 of A-Z a-z 0-9 _ - ., no leading '.'; set over MQTT too).")


class Config(Section):
    """Root of the box configuration file."""

    node: NodeConfig = Field(default_factory=NodeConfig, description="Box identity and current job.")
    bridge: BridgeConfig = Field(default_factory=BridgeConfig, description="Laser-signal layer detection.")
    capture: CaptureConfig = Field(default_factory=CaptureConfig, description="Cameras.")
    calib: CalibConfig = Field(default_factory=CalibConfig, description="Webcam-to-plate registration.")
    sr: SRConfig = Field(default_factory=SRConfig, description="Super-resolution model and backend.")
    analyze: AnalyzeConfig = Field(default_factory=AnalyzeConfig, description="Segmentation and anomaly thresholds.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="Layer archive and publish spool.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="MQTT broker and topics.")
    web: WebConfig = Field(default_factory=WebConfig, description="Read-only local web view of the archive.")
    service: ServiceConfig = Field(default_factory=ServiceConfig, description="Stop budget, health limits, watchdog.")
    sim: SimConfig = Field(default_factory=SimConfig, description="Synthetic build generator and simulated printer.")


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config file, located by dotted key path and 1-based line."""

    path: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "line ?"
        return f"{where}: {self.path}: {self.reason}"


class ConfigError(ValueError):
    """A config file that cannot be used; `issues` says which keys, where and why."""

    def __init__(self, file: Path, issues: list[ConfigIssue]):
        self.file = file
        self.issues = issues
        super().__init__("\n".join(f"{file}:{i}" for i in issues))


def _line_of(doc: object, loc: tuple) -> int | None:
    """1-based line of the deepest key in `loc` that exists in the round-trip YAML tree."""
    node, line = doc, None
    for key in loc:
        lc = getattr(node, "lc", None)
        try:
            if lc is not None and isinstance(key, str) and hasattr(node, "keys") and key in node:
                line = lc.key(key)[0] + 1
            elif lc is not None and isinstance(key, int) and isinstance(node, list) and key < len(node):
                line = lc.item(key)[0] + 1
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
    return line


def parse_config(text: str, file: Path = Path("<string>")) -> Config:
    """Parse and validate YAML text; raise ConfigError naming each bad key and its line."""
    try:
        doc = YAML(typ="rt").load(text) or {}
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(file, [ConfigIssue("<yaml>", line, str(getattr(exc, "problem", exc)))]) from exc
    if not isinstance(doc, dict):
        raise ConfigError(file, [ConfigIssue("<root>", 1, "the top level must be a mapping of sections")])
    try:
        return Config.model_validate(_plain(doc))
    except ValidationError as exc:
        issues = [
            ConfigIssue(".".join(str(p) for p in err["loc"]) or "<root>", _line_of(doc, err["loc"]), _reason(err))
            for err in exc.errors()
        ]
        issues.sort(key=lambda i: i.line if i.line is not None else 1 << 30)
        raise ConfigError(file, issues) from exc


def _reason(err: dict) -> str:
    """Human reason for one pydantic error; an unknown key names the nearest valid one."""
    if err["type"] == "extra_forbidden":
        near = nearest_key(tuple(str(p) for p in err["loc"]))
        if near:
            return f"unknown key; did you mean {near!r}?"
        return "unknown key (not a setting of this section; `lpbf-edge config example` lists every setting)"
    return err["msg"]


def section_at(loc: tuple[str, ...]) -> type[Section] | None:
    """The config section a dotted key path leads to (Config for ()), or None when it leaves the sections."""
    model: type[Section] = Config
    for part in loc:
        field = model.model_fields.get(part)
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, Section)):
            return None
        model = ann
    return model


def nearest_key(loc: tuple[str, ...]) -> str | None:
    """The valid key of the enclosing section closest in spelling to loc[-1] (None when nothing is close)."""
    import difflib

    model = section_at(loc[:-1]) if loc else None
    if model is None:
        return None
    keys = list(model.model_fields)
    lowered = {k.lower(): k for k in keys}
    if loc[-1].lower() in lowered:
        return lowered[loc[-1].lower()]
    near = difflib.get_close_matches(loc[-1].lower().replace("-", "_"), keys, n=1, cutoff=0.6)
    return near[0] if near else None


def _plain(node: object) -> object:
    """Round-trip YAML tree -> plain dicts/lists for pydantic."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def load_config(path: str | Path | None) -> Config:
    """Load a config file (None -> all defaults); errors name the file, line and key."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(p, [ConfigIssue("<file>", None, f"cannot read: {exc}")]) from exc
    return parse_config(text, p)


def example_yaml(model: type[Section] = Config, indent: int = 0) -> str:
    """Render the documented example config: every field with its description as a comment."""
    import json

    pad, lines = " " * indent, []
    for name, field in model.model_fields.items():
        ann = field.annotation
        lines.append(f"{pad}# {field.description}")
        if isinstance(ann, type) and issubclass(ann, Section):
            lines.append(f"{pad}{name}:")
            lines.append(example_yaml(ann, indent + 2))
        else:
            default = field.get_default(call_default_factory=True)
            lines.append(f"{pad}{name}: {json.dumps(default)}")
    return "\n".join(lines)
