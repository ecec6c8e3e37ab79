"""Settings of the MQTT publisher (secrets come from the environment or files, never the YAML)."""

from __future__ import annotations

from pydantic import Field

from edge.config_base import Section


class MqttConfig(Section):
    """Broker connection and topic prefix."""

    host: str = Field("127.0.0.1", description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker TCP port.")
    prefix: str = Field("lpbf/v1", description="Topic prefix; the node id is appended.")
    username: str | None = Field(None, description="MQTT user name (not secret).")
    password_env: str | None = Field("LPBF_MQTT_PASSWORD", description="Environment variable that holds the MQTT password.")
    password_file: str | None = Field(None, description="File whose first line is the MQTT password (used if set).")
