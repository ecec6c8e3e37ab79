"""MQTT topic names of DESIGN.md section 4 (`<prefix>/<node_id>/...`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    """All topics of one box."""

    prefix: str
    node_id: str

    @property
    def base(self) -> str:
        """`<prefix>/<node_id>`."""
        return f"{self.prefix.rstrip('/')}/{self.node_id}"

    @property
    def availability(self) -> str:
        """online/offline, retained, also the last will."""
        return f"{self.base}/availability"

    @property
    def state(self) -> str:
        """Retained state JSON."""
        return f"{self.base}/state"

    @property
    def stats(self) -> str:
        """Periodic stats JSON."""
        return f"{self.base}/stats"

    @property
    def anomaly_latest(self) -> str:
        """Latest anomaly JSON, retained."""
        return f"{self.base}/anomaly/latest"

    @property
    def cmd_filter(self) -> str:
        """Subscription for commands."""
        return f"{self.base}/cmd/#"

    @property
    def cmd_result(self) -> str:
        """Replies to commands (unless the request named a ResponseTopic)."""
        return f"{self.base}/cmd/result"

    def cmd_name(self, topic: str) -> str:
        """Command name from a command topic (`<base>/cmd/<name>` -> name)."""
        return topic[len(self.base) + len("/cmd/"):]

    def layer(self, job: str, layer: int, kind: str) -> str:
        """`<base>/job/<job>/layer/<n>/<kind>` with kind meta|lr|sr|anomaly|recoat|recoat_anomaly."""
        return f"{self.base}/job/{job}/layer/{layer}/{kind}"
