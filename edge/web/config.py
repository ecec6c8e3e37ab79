"""Settings of the read-only web view (the password comes from the environment or a file, never the YAML)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from edge.config_base import Section


class WebConfig(Section):
    """The local web page over the archive: where it listens and who may see it."""

    enabled: bool = Field(
        False, description="Serve the read-only web view from the box service (also: `lpbf-edge serve`)."
    )
    bind: str = Field(
        "127.0.0.1",
        description="Address to listen on; anything but loopback needs a password (or a reverse "
        "proxy in front that listens for the LAN, see docs/operator.md).",
    )
    port: int = Field(8088, ge=1, le=65535, description="TCP port of the web view.")
    username: str = Field("lpbf", description="HTTP basic-auth user name (used when a password is set).")
    password_env: str | None = Field(
        "LPBF_WEB_PASSWORD", description="Environment variable that holds the web view's password."
    )
    password_file: str | None = Field(
        None, description="File whose first line is the web view's password (used before " "password_env)."
    )
    refresh_s: float = Field(10.0, ge=1.0, description="Seconds between the page's checks for a newer layer.")

    def password(self) -> str | None:
        """The password from password_file (first line) or password_env; None when neither is set."""
        if self.password_file:
            try:
                return Path(self.password_file).read_text(encoding="utf-8").splitlines()[0]
            except (OSError, IndexError) as exc:
                raise ValueError(f"web.password_file {self.password_file}: cannot read a password ({exc})") from exc
        if self.password_env:
            return os.environ.get(self.password_env) or None
        return None
