"""The web view's HTTP server: Waitress (multi-threaded, pure Python) running the Bottle app in a background thread.

Why these two: Bottle is one module with no dependencies (routing, static files, basic auth in a few lines);
Waitress is a production WSGI server with no dependencies that runs the same on x86 and the Jetson's ARM, and
can be started and stopped from inside the box service. Both are pinned in pyproject.toml (extra `web`).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from pathlib import Path

from edge.web.app import make_app
from edge.web.config import WebConfig

log = logging.getLogger("edge.web")


class WebError(RuntimeError):
    """The web view cannot start; the message says what to do."""


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebServer:
    """Serve a store root read-only on cfg.bind:cfg.port until stop()."""

    def __init__(self, root: str | Path, cfg: WebConfig, title: str = "lpbf-edge", health_max_age_s: float = 30.0):
        self.root, self.cfg = Path(root), cfg
        password = cfg.password()
        if not is_loopback(cfg.bind) and not password:
            raise WebError(
                f"web view on {cfg.bind}: anything but loopback needs a password (set ${cfg.password_env} or "
                "web.password_file), or keep bind 127.0.0.1 behind a reverse proxy (docs/operator.md)"
            )
        self.app = make_app(
            self.root,
            title=title,
            refresh_s=cfg.refresh_s,
            username=cfg.username,
            password=password,
            health_max_age_s=health_max_age_s,
        )
        self._map: dict = {}
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """http://host:port/ actually listened on."""
        host, port = (
            (self._server.effective_host, self._server.effective_port)
            if self._server
            else (self.cfg.bind, self.cfg.port)
        )
        return f"http://{'[' + host + ']' if ':' in str(host) else host}:{port}/"

    def start(self) -> WebServer:
        """Bind and serve in a daemon thread; WebError when the port cannot be bound."""
        from waitress.server import create_server

        try:
            self._server = create_server(
                self.app,
                map=self._map,
                host=self.cfg.bind,
                port=self.cfg.port,
                threads=4,
                ident="lpbf-edge",
                clear_untrusted_proxy_headers=True,
            )
        except (OSError, socket.gaierror) as exc:
            raise WebError(f"web view cannot listen on {self.cfg.bind}:{self.cfg.port}: {exc}") from exc
        self._thread = threading.Thread(target=self._server.run, name="web", daemon=True)
        self._thread.start()
        log.info("web view listening", extra={"event": "web_started", "url": self.url, "root": str(self.root)})
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        if self._server is None:
            return
        from waitress import wasyncore

        self._server.task_dispatcher.shutdown()
        wasyncore.close_all(self._map)
        if self._thread is not None:
            self._thread.join(5)
        self._server = None
