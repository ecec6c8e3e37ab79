"""Settings of the MQTT publisher (secrets come from the environment or files, never the YAML)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, model_validator

from edge.config_base import Section


class MqttConfig(Section):
    """Broker connection, security, topic prefix and publishing behaviour."""

    enabled: bool = Field(True, description="Publish over MQTT; when false layers are only archived (the spool still "
                          "fills and is sent once enabled).")
    host: str = Field("127.0.0.1", description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker TCP port (8883 is usual with TLS).")
    prefix: str = Field("lpbf/v1", pattern=r"^[^#+]+$", description="Topic prefix; the node id is appended "
                        "(`<prefix>/<node_id>`).")
    client_id: str | None = Field(None, description="MQTT client id; none uses `lpbf-edge-<node_id>`.")
    keepalive_s: int = Field(30, ge=5, le=3600, description="MQTT keepalive in seconds (the broker sends the last will "
                             "after 1.5x this).")
    username: str | None = Field(None, description="MQTT user name (not secret).")
    password_env: str | None = Field("LPBF_MQTT_PASSWORD", description="Environment variable that holds the MQTT "
                                     "password.")
    password_file: str | None = Field(None, description="File whose first line is the MQTT password (used if set, "
                                      "before password_env).")
    tls: bool = Field(False, description="Connect with TLS.")
    ca_file: str | None = Field(None, description="PEM file of the CA that signed the broker certificate; none uses "
                                "the system CAs.")
    cert_file: str | None = Field(None, description="PEM client certificate for mutual TLS (needs key_file).")
    key_file: str | None = Field(None, description="PEM private key of the client certificate.")
    tls_insecure: bool = Field(False, description="Skip the broker host-name check (testing only; the certificate "
                               "chain is still verified).")
    reconnect_min_s: float = Field(0.5, gt=0, description="First reconnect delay in seconds; doubles after each "
                                   "failure.")
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest reconnect delay in seconds.")
    inflight_window: int = Field(16, ge=1, le=1000, description="Spool messages sent but not yet acknowledged at most.")
    stats_interval_s: float = Field(10.0, gt=0, description="Seconds between `<prefix>/<node_id>/stats` messages.")
    ha_discovery: bool = Field(False, description="Publish Home Assistant MQTT discovery configs (retained) on "
                               "connect.")
    ha_prefix: str = Field("homeassistant", description="Home Assistant discovery topic prefix.")
    reply_prefix: str | None = Field(
        None, pattern=r"^[^#+\x00]+/$",
        description="Command replies go to a request's ResponseTopic only under this prefix (ends with '/'); "
                    "none: `<prefix>/<node_id>/reply/`.")
    replay_layers_per_s: float = Field(2.0, gt=0, le=100,
                                       description="Rate at which the `replay` command re-sends archived layers.")
    replay_max_layers: int = Field(1000, ge=1,
                                   description="Most layers one `replay` command may ask for (split longer ranges).")

    @model_validator(mode="after")
    def _tls_pairs(self) -> MqttConfig:
        """A client certificate needs its key and vice versa; both need tls."""
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        if (self.cert_file or self.ca_file) and not self.tls:
            raise ValueError("ca_file/cert_file/key_file are set but tls is false")
        return self

    def password_file_warning(self) -> str | None:
        """A warning when password_file can be read by every local user (the box warns and still uses it)."""
        if not self.password_file:
            return None
        try:
            mode = Path(self.password_file).stat().st_mode
        except OSError:
            return None  # password() reports a missing file
        if mode & 0o004:
            return (f"mqtt.password_file {self.password_file} is readable by every user (mode {mode & 0o777:04o}): "
                    "the MQTT password is exposed; chmod 600 it (owner lpbf-edge) and change the password")
        return None

    def password(self) -> str | None:
        """The password from password_file (first line) or the password_env variable; None if neither is set."""
        if self.password_file:
            try:
                return Path(self.password_file).read_text(encoding="utf-8").splitlines()[0]
            except (OSError, IndexError) as exc:
                raise ValueError(f"mqtt.password_file {self.password_file}: cannot read a password ({exc})") from exc
        if self.password_env:
            return os.environ.get(self.password_env)
        return None
